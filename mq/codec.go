package mq

import (
	"fmt"
	"mime"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The headers of the wire contract (see the package doc). Names are
// written as spelled here and matched without regard to case on receipt.
const (
	// HeaderContentType is the body's encoding: ContentTypeProtobuf
	// (the default) or ContentTypeJSON.
	HeaderContentType = "Content-Type"
	// HeaderAccept, on a request, asks for the reply in another encoding.
	HeaderAccept = "Accept"
	// HeaderRequestID is an opaque request id: at most MaxRequestIDLen
	// bytes of printable ASCII.
	HeaderRequestID = "Switchyard-Request-Id"
	// HeaderDeadline is the request's absolute deadline, time.RFC3339Nano
	// in UTC.
	HeaderDeadline = "Switchyard-Deadline"
	// HeaderTimeout is the request's deadline as a Go duration counted
	// from when the responder received it (for `nats req -H`).
	HeaderTimeout = "Switchyard-Timeout"
	// HeaderTraceParent is the W3C Trace Context traceparent.
	HeaderTraceParent = "traceparent"
	// HeaderTraceState is the W3C Trace Context tracestate.
	HeaderTraceState = "tracestate"
	// HeaderErrorCode, on an error reply, is the gRPC status code as a
	// decimal number (micro's error code header).
	HeaderErrorCode = micro.ErrorCodeHeader
	// HeaderError, on an error reply, is the status message (micro's
	// error header).
	HeaderError = micro.ErrorHeader
)

// The content types of the wire contract.
const (
	// ContentTypeProtobuf is binary protobuf, the default.
	ContentTypeProtobuf = "application/protobuf"
	// ContentTypeXProtobuf is accepted on receipt as ContentTypeProtobuf.
	ContentTypeXProtobuf = "application/x-protobuf"
	// ContentTypeJSON is the proto3 JSON mapping (protojson).
	ContentTypeJSON = "application/json"
)

// HeaderValue returns h's first value for the header called name,
// matching the name exactly first and then without regard to case, with
// surrounding space trimmed; "" if there is none. It is how this package
// reads every header of the wire contract.
func HeaderValue(h nats.Header, name string) string {
	if h == nil {
		return ""
	}
	if v, ok := h[name]; ok && len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return strings.TrimSpace(v[0])
		}
	}
	return ""
}

// parseContentType maps a Content-Type value to ContentTypeProtobuf or
// ContentTypeJSON ("" for an empty value), ignoring parameters such as
// charset. Anything else wraps ErrContentType.
func parseContentType(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return "", fmt.Errorf("%w %q", ErrContentType, v)
	}
	switch mt {
	case ContentTypeProtobuf, ContentTypeXProtobuf:
		return ContentTypeProtobuf, nil
	case ContentTypeJSON:
		return ContentTypeJSON, nil
	}
	return "", fmt.Errorf("%w %q", ErrContentType, v)
}

// contentTypeOrDefault is parseContentType with an empty value taken as
// ContentTypeProtobuf, the contract's default.
func contentTypeOrDefault(v string) (string, error) {
	ct, err := parseContentType(v)
	if err != nil || ct != "" {
		return ct, err
	}
	return ContentTypeProtobuf, nil
}

// parseAccept returns the first content type this package speaks in an
// Accept value (a comma-separated list), or "".
func parseAccept(v string) string {
	for part := range strings.SplitSeq(v, ",") {
		if ct, err := parseContentType(part); err == nil && ct != "" {
			return ct
		}
	}
	return ""
}

// RequestContentType returns the content type of a request with headers
// h: ContentTypeProtobuf or ContentTypeJSON, protobuf when the header is
// absent. Any other value is an InvalidArgument status error wrapping
// ErrContentType.
func RequestContentType(h nats.Header) (string, error) {
	ct, err := contentTypeOrDefault(HeaderValue(h, HeaderContentType))
	if err != nil {
		return "", newError(codes.InvalidArgument, err.Error(), err)
	}
	return ct, nil
}

// Marshal encodes m as contentType (protobuf or JSON; x-protobuf is
// protobuf). Errors wrap ErrContentType or ErrEncode.
func Marshal(contentType string, m proto.Message) ([]byte, error) {
	ct, err := contentTypeOrDefault(contentType)
	if err != nil {
		return nil, err
	}
	return marshal(ct, m)
}

func marshal(ct string, m proto.Message) ([]byte, error) {
	var b []byte
	var err error
	if ct == ContentTypeJSON {
		b, err = protojson.Marshal(m)
	} else {
		b, err = proto.Marshal(m)
	}
	if err != nil {
		return nil, fmt.Errorf("%w as %s: %w", ErrEncode, ct, err)
	}
	return b, nil
}

// Unmarshal decodes data, encoded as contentType, into into. It is strict:
// a JSON field that into does not have is an error. An empty body is the
// empty message in either encoding. Errors wrap ErrContentType or
// ErrDecode.
func Unmarshal(contentType string, data []byte, into proto.Message) error {
	ct, err := contentTypeOrDefault(contentType)
	if err != nil {
		return err
	}
	return unmarshal(ct, data, into, false)
}

// unmarshal decodes data as ct; lenient discards unknown JSON fields (for
// replies, which newer responders may extend).
func unmarshal(ct string, data []byte, into proto.Message, lenient bool) error {
	if len(data) == 0 {
		proto.Reset(into)
		return nil
	}
	var err error
	if ct == ContentTypeJSON {
		err = protojson.UnmarshalOptions{DiscardUnknown: lenient}.Unmarshal(data, into)
	} else {
		err = proto.Unmarshal(data, into)
	}
	if err != nil {
		return fmt.Errorf("%w as %s: %w", ErrDecode, ct, err)
	}
	return nil
}

// DecodeBody decodes a request's body into into, strictly, in the content
// type its headers h give. Errors are InvalidArgument status errors
// wrapping ErrContentType or ErrDecode.
func DecodeBody(h nats.Header, data []byte, into proto.Message) error {
	ct, err := RequestContentType(h)
	if err != nil {
		return err
	}
	if err := unmarshal(ct, data, into, false); err != nil {
		return newError(codes.InvalidArgument, err.Error(), err)
	}
	return nil
}
