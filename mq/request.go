package mq

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// CallOption configures one Request.
type CallOption func(*callOptions)

type callOptions struct {
	contentType             string
	accept                  string
	requestID               string
	traceParent, traceState string
}

// WithJSON sends the request as JSON (and so gets the reply as JSON)
// instead of binary protobuf.
func WithJSON() CallOption { return WithContentType(ContentTypeJSON) }

// WithContentType sends the request in contentType: ContentTypeProtobuf
// (the default), ContentTypeXProtobuf or ContentTypeJSON. Another value
// makes Request fail with InvalidArgument before sending.
func WithContentType(contentType string) CallOption {
	return func(o *callOptions) { o.contentType = contentType }
}

// WithAccept asks for the reply in contentType rather than the request's.
func WithAccept(contentType string) CallOption {
	return func(o *callOptions) { o.accept = contentType }
}

// WithRequestID sends id as Switchyard-Request-Id. An id that is not at
// most MaxRequestIDLen bytes of printable ASCII makes Request fail with
// InvalidArgument before sending.
func WithRequestID(id string) CallOption {
	return func(o *callOptions) { o.requestID = id }
}

// WithTraceContext sends W3C Trace Context headers. An invalid
// traceparent is left out, with its tracestate.
func WithTraceContext(traceParent, traceState string) CallOption {
	return func(o *callOptions) { o.traceParent, o.traceState = traceParent, traceState }
}

// Request sends req to subject over nc and decodes the reply into resp.
// The request carries Content-Type, Switchyard-Deadline from ctx's
// deadline, and the request id and trace context given as options. Every
// error is a gRPC status error (status.Code works on it): an error reply
// as the responder sent it; no responders Unavailable; ctx's deadline or a
// NATS timeout DeadlineExceeded; ctx canceled Canceled; a request larger
// than nc's maximum payload ResourceExhausted, without sending it; a
// closed or draining connection Unavailable; a reply that does not decode
// Internal. Errors made here wrap this package's sentinels and the NATS
// or context error underneath, for errors.Is.
func Request(ctx context.Context, nc *nats.Conn, subject string, req, resp proto.Message, opts ...CallOption) error {
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	ct, err := contentTypeOrDefault(o.contentType)
	if err != nil {
		return newError(codes.InvalidArgument, err.Error(), err)
	}
	accept, err := parseContentType(o.accept)
	if err != nil {
		return newError(codes.InvalidArgument, err.Error(), err)
	}
	if err := CheckRequestID(o.requestID); err != nil {
		return err
	}
	data, err := marshal(ct, req)
	if err != nil {
		return newError(codes.InvalidArgument, err.Error(), err)
	}
	meta := Meta{ContentType: ct, Accept: accept, RequestID: o.requestID}
	if validTraceParent(o.traceParent) {
		meta.TraceParent, meta.TraceState = o.traceParent, o.traceState
	}
	if d, ok := ctx.Deadline(); ok {
		meta.Deadline = d
	}
	reply, err := RequestMsg(ctx, nc, &nats.Msg{Subject: subject, Header: meta.Header(), Data: data})
	if err != nil {
		return err
	}
	return decodeReplyBody(reply, resp, "from", subject) // RequestMsg has read its status
}

// DecodeReply reads a reply of the wire contract, however it came (a
// request's reply, or one published to a subject the requester listens
// on): an error reply is returned as its status error (StatusFromMsg);
// a success reply's body is decoded into into, leniently (unknown JSON
// fields are ignored), in its Content-Type. A reply whose Content-Type
// or body does not decode is an Internal status error wrapping
// ErrContentType or ErrDecode.
func DecodeReply(msg *nats.Msg, into proto.Message) error {
	if msg == nil {
		return newError(codes.Internal, "mq: no reply", ErrDecode)
	}
	if err := StatusFromMsg(msg); err != nil {
		return err
	}
	return decodeReplyBody(msg, into, "on", msg.Subject)
}

// decodeReplyBody decodes the body of a success reply into into; prep and
// subject name the reply in an error ("mq: reply from orders"), which is
// the only time they are put together.
func decodeReplyBody(msg *nats.Msg, into proto.Message, prep, subject string) error {
	ct, err := contentTypeOrDefault(HeaderValue(msg.Header, HeaderContentType))
	if err == nil {
		err = unmarshal(ct, msg.Data, into, true)
	}
	if err != nil {
		return newError(codes.Internal, fmt.Sprintf("mq: reply %s %s: %v", prep, subject, err), err)
	}
	return nil
}

// RequestMsg sends msg as a request over nc and returns the reply. It
// checks the size against nc's maximum payload and maps errors as Request
// does; an error reply is returned together with its status error (from
// StatusFromMsg). It sets no headers: see Meta.WriteHeader.
func RequestMsg(ctx context.Context, nc *nats.Conn, msg *nats.Msg) (*nats.Msg, error) {
	if nc == nil {
		return nil, newError(codes.Unavailable, ErrUnavailable.Error()+": no connection", ErrUnavailable)
	}
	if msg == nil {
		return nil, newError(codes.InvalidArgument, ErrRequest.Error()+": no message", ErrRequest)
	}
	if err := ctx.Err(); err != nil {
		return nil, requestError(msg.Subject, err)
	}
	if limit := nc.MaxPayload(); limit > 0 {
		if size := int64(msg.Size() - len(msg.Subject) - len(msg.Reply)); size > limit {
			return nil, errorf(codes.ResourceExhausted, ErrTooLarge, ": the request to %s is %d bytes, the connection's maximum payload %d", msg.Subject, size, limit)
		}
	}
	reply, err := nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return nil, requestError(msg.Subject, err)
	}
	return reply, StatusFromMsg(reply)
}

// requestError maps an error from sending a request to a status error.
func requestError(subject string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return newError(codes.Unavailable, fmt.Sprintf("%v on %s", ErrNoResponders, subject), ErrNoResponders, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return newError(codes.DeadlineExceeded, fmt.Sprintf("%v waiting for a reply on %s", ErrDeadline, subject), ErrDeadline, err)
	case errors.Is(err, context.Canceled):
		return newError(codes.Canceled, fmt.Sprintf("mq: request to %s canceled", subject), err)
	case errors.Is(err, nats.ErrMaxPayload):
		return newError(codes.ResourceExhausted, fmt.Sprintf("%v: the request to %s exceeds the connection's maximum payload", ErrTooLarge, subject), ErrTooLarge, err)
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrInvalidConnection):
		return newError(codes.Unavailable, fmt.Sprintf("%v: request to %s: %v", ErrUnavailable, subject, err), ErrUnavailable, err)
	case errors.Is(err, nats.ErrBadSubject), errors.Is(err, nats.ErrBadHeaderMsg), errors.Is(err, nats.ErrInvalidMsg):
		return newError(codes.InvalidArgument, fmt.Sprintf("%v: subject %q: %v", ErrRequest, subject, err), ErrRequest, err)
	}
	return newError(codes.Unknown, fmt.Sprintf("%v: subject %s: %v", ErrRequest, subject, err), ErrRequest, err)
}
