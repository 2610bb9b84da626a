package mq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	// The standard error details (ErrorInfo, RetryInfo, ...) are
	// registered, so that a JSON error body with them decodes in any
	// program that uses this package.
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The package's sentinel errors. Errors that travel as replies, or that
// Request returns, are also gRPC status errors: status.Code gives their
// code and errors.Is matches these sentinels (and, where there is one, the
// NATS or context error underneath).
var (
	// ErrNoReply is returned for a request without a reply subject, which
	// nothing can answer.
	ErrNoReply = errors.New("mq: request has no reply subject")
	// ErrContentType is wrapped by InvalidArgument errors for a
	// Content-Type (or WithContentType) that is neither protobuf nor JSON.
	ErrContentType = errors.New("mq: unsupported content type")
	// ErrDecode is wrapped by errors for a body that does not parse:
	// InvalidArgument for a request, Internal for a reply.
	ErrDecode = errors.New("mq: cannot decode body")
	// ErrEncode is wrapped by errors for a message that cannot be encoded:
	// InvalidArgument for a request, Internal for a reply.
	ErrEncode = errors.New("mq: cannot encode body")
	// ErrHeader is wrapped by InvalidArgument errors for a Switchyard
	// header with a bad value.
	ErrHeader = errors.New("mq: invalid header")
	// ErrDeadline is wrapped by DeadlineExceeded errors: a request whose
	// deadline had passed when it arrived, or a requester that stopped
	// waiting.
	ErrDeadline = errors.New("mq: deadline exceeded")
	// ErrTooLarge is wrapped by ResourceExhausted errors for a message
	// larger than the connection's maximum payload.
	ErrTooLarge = errors.New("mq: message too large")
	// ErrNoResponders is wrapped by Unavailable errors for a request that
	// nobody subscribes to.
	ErrNoResponders = errors.New("mq: no responders")
	// ErrUnavailable is wrapped by Unavailable errors for a connection that
	// is closed, draining or cut off.
	ErrUnavailable = errors.New("mq: connection unavailable")
	// ErrPanic is wrapped by the Internal error that answers a request
	// whose handler panicked.
	ErrPanic = errors.New("mq: handler panicked")
	// ErrRequest is wrapped by Request's errors for failures of NATS that
	// no other sentinel names (Unknown, or InvalidArgument for a bad
	// subject or header).
	ErrRequest = errors.New("mq: request failed")
	// ErrReply is wrapped by the errors of Respond and RespondError when
	// NATS would not send the reply.
	ErrReply = errors.New("mq: cannot send reply")
	// ErrConnect is wrapped by Connect's errors.
	ErrConnect = errors.New("mq: cannot connect")
	// ErrDrain is wrapped by Drain's error when its context or nats.go's
	// drain timeout ended first and the connection was closed at once.
	ErrDrain = errors.New("mq: drain incomplete")
)

// internalMessage is the message of every Internal error reply made from
// an error that is not a status: its text stays in the server's log.
const internalMessage = "internal error"

// maxErrorHeader bounds the Nats-Service-Error header; the body carries
// the whole message.
const maxErrorHeader = 1024

// statusError is a gRPC status error that also wraps the errors it came
// from, so that status.Code and errors.Is both work on it.
type statusError struct {
	st     *status.Status
	causes []error
}

func (e *statusError) Error() string              { return e.st.String() }
func (e *statusError) GRPCStatus() *status.Status { return e.st }
func (e *statusError) Unwrap() []error            { return e.causes }

// newError returns a status error with code and msg that wraps causes.
func newError(code codes.Code, msg string, causes ...error) error {
	return &statusError{st: status.New(code, msg), causes: causes}
}

// errorf returns a status error whose message is sentinel's text followed
// by the formatted detail, wrapping sentinel and every %w argument.
func errorf(code codes.Code, sentinel error, format string, args ...any) error {
	wrapped := fmt.Errorf("%w"+format, append([]any{sentinel}, args...)...)
	causes := []error{sentinel}
	if u, ok := wrapped.(interface{ Unwrap() []error }); ok {
		causes = u.Unwrap()
	}
	return newError(code, wrapped.Error(), causes...)
}

// toStatus converts any error to the status that goes on the wire: a
// status error keeps its code, message and details; a context error
// becomes DeadlineExceeded or Canceled; anything else is Internal with a
// generic message, so no raw NATS, ZooKeeper or Go error text leaks.
func toStatus(err error) *status.Status {
	if err == nil {
		return status.New(codes.Internal, internalMessage)
	}
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.OK {
			return status.New(codes.Unknown, st.Message())
		}
		return st
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, context.Canceled.Error())
	}
	return status.New(codes.Internal, internalMessage)
}

// ErrorHeaders converts err to a gRPC status (see the package doc) and
// returns the headers and body of the error reply that carries it, the
// body a google.rpc.Status in contentType (protobuf if contentType is not
// one this package speaks).
func ErrorHeaders(err error, contentType string) (nats.Header, []byte) {
	st := toStatus(err)
	return statusHeaders(st, contentType)
}

func statusHeaders(st *status.Status, contentType string) (nats.Header, []byte) {
	ct, cerr := contentTypeOrDefault(contentType)
	if cerr != nil {
		ct = ContentTypeProtobuf
	}
	body, err := marshal(ct, st.Proto())
	if err != nil {
		// Details JSON cannot resolve: send code and message alone.
		body, _ = marshal(ct, &spb.Status{Code: int32(st.Code()), Message: st.Message()})
	}
	h := nats.Header{}
	h.Set(HeaderContentType, ct)
	h.Set(HeaderErrorCode, strconv.Itoa(int(st.Code())))
	h.Set(HeaderError, errorHeaderText(st))
	return h, body
}

// errorHeaderText is st's message fit for a header: never empty (micro
// requires a description), one line, bounded.
func errorHeaderText(st *status.Status) string {
	msg := st.Message()
	if msg == "" {
		msg = st.Code().String()
	}
	return HeaderText(msg, maxErrorHeader)
}

// HeaderText makes s fit for a header value: control characters (line
// breaks among them) become spaces, and it is cut to at most n bytes at a
// rune boundary, invalid UTF-8 dropped.
func HeaderText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// StatusFromMsg returns nil if msg is a success reply, or else the error
// it carries as a gRPC status error (status.Code and status.Convert work
// on it): the google.rpc.Status in its body, with its details, when that
// parses and agrees with the Nats-Service-Error-Code header; otherwise the
// code and message from the two headers. A code header that is not a gRPC
// code number is Unknown, its text kept in the message.
func StatusFromMsg(msg *nats.Msg) error {
	if msg == nil {
		return nil
	}
	codeText := HeaderValue(msg.Header, HeaderErrorCode)
	desc := HeaderValue(msg.Header, HeaderError)
	if codeText == "" && desc == "" {
		return nil
	}
	n, err := strconv.Atoi(codeText)
	if err != nil || n <= int(codes.OK) || n > int(codes.Unauthenticated) {
		return status.Errorf(codes.Unknown, "%s (%s %q)", desc, HeaderErrorCode, codeText)
	}
	code := codes.Code(n)
	if ct, cerr := contentTypeOrDefault(HeaderValue(msg.Header, HeaderContentType)); cerr == nil && len(msg.Data) > 0 {
		var body spb.Status
		if unmarshal(ct, msg.Data, &body, true) == nil && body.GetCode() == int32(code) {
			return status.FromProto(&body).Err()
		}
	}
	return status.Error(code, desc)
}
