package mq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// replier is what answering needs of a request, micro's or a plain
// message.
type replier interface {
	subject() string
	reply() string
	header() nats.Header
	data() []byte
	// send publishes a reply; an error reply goes with the error headers
	// set in h.
	send(h nats.Header, body []byte) error
}

type microReplier struct{ r micro.Request }

func (m microReplier) subject() string     { return m.r.Subject() }
func (m microReplier) reply() string       { return m.r.Reply() }
func (m microReplier) header() nats.Header { return nats.Header(m.r.Headers()) }
func (m microReplier) data() []byte        { return m.r.Data() }
func (m microReplier) send(h nats.Header, body []byte) error {
	if code := h.Get(HeaderErrorCode); code != "" {
		// Through Error, so that micro counts the request as failed.
		return m.r.Error(code, h.Get(HeaderError), body, micro.WithHeaders(micro.Headers(h)))
	}
	return m.r.Respond(body, micro.WithHeaders(micro.Headers(h)))
}

type msgReplier struct{ m *nats.Msg }

func (m msgReplier) subject() string     { return m.m.Subject }
func (m msgReplier) reply() string       { return m.m.Reply }
func (m msgReplier) header() nats.Header { return m.m.Header }
func (m msgReplier) data() []byte        { return m.m.Data }
func (m msgReplier) send(h nats.Header, body []byte) error {
	return m.m.RespondMsg(&nats.Msg{Subject: m.m.Reply, Header: h, Data: body})
}

// publishReplier answers a request that did not come as a NATS request
// (one taken from a stream, say) by publishing to a subject of its own.
type publishReplier struct {
	nc        *nats.Conn
	to        string
	requestID string
}

func (p publishReplier) subject() string     { return p.to }
func (p publishReplier) reply() string       { return p.to }
func (p publishReplier) header() nats.Header { return nil }
func (p publishReplier) data() []byte        { return nil }
func (p publishReplier) send(h nats.Header, body []byte) error {
	if p.requestID != "" {
		h.Set(HeaderRequestID, p.requestID)
	}
	return p.nc.PublishMsg(&nats.Msg{Subject: p.to, Header: h, Data: body})
}

// isMaxPayload reports whether err is NATS refusing a message above the
// maximum payload. micro's Respond keeps only the text of the NATS error,
// hence the second test.
func isMaxPayload(err error) bool {
	return errors.Is(err, nats.ErrMaxPayload) || strings.Contains(err.Error(), nats.ErrMaxPayload.Error())
}

func noReply(rp replier) error {
	return fmt.Errorf("%w (subject %s)", ErrNoReply, rp.subject())
}

// Decode parses a micro request's headers (ParseMeta) and decodes its body
// strictly into into. received is when the request arrived. Errors are
// status errors, ready for RespondError; the Meta is returned with them.
func Decode(r micro.Request, into proto.Message, received time.Time) (Meta, error) {
	return decode(microReplier{r}, into, received)
}

func decode(rp replier, into proto.Message, received time.Time) (Meta, error) {
	meta, err := ParseMeta(rp.header(), received)
	if err != nil {
		return meta, err
	}
	if err := unmarshal(meta.ContentType, rp.data(), into, false); err != nil {
		return meta, newError(codes.InvalidArgument, err.Error(), err)
	}
	return meta, nil
}

// Respond answers a micro request with resp, in meta's reply content
// type. If resp cannot be encoded, the requester gets Internal instead; if
// the reply is larger than the connection's maximum payload, it gets
// ResourceExhausted; either way Respond returns the error (wrapping
// ErrEncode or ErrTooLarge) for the caller to log. A request without a
// reply subject is ErrNoReply.
func Respond(r micro.Request, meta Meta, resp proto.Message) error {
	return respond(microReplier{r}, meta, resp)
}

// RespondMsg is Respond for a plain NATS message.
func RespondMsg(msg *nats.Msg, meta Meta, resp proto.Message) error {
	return respond(msgReplier{msg}, meta, resp)
}

// RespondError answers a micro request with err as an error reply (see
// ErrorHeaders), through micro's Request.Error so that micro counts it. A
// request without a reply subject is ErrNoReply.
func RespondError(r micro.Request, meta Meta, err error) error {
	return respondError(microReplier{r}, meta, err)
}

// RespondMsgError is RespondError for a plain NATS message.
func RespondMsgError(msg *nats.Msg, meta Meta, err error) error {
	return respondError(msgReplier{msg}, meta, err)
}

// PublishReply publishes the reply to a request described by meta to
// subject over nc, for a request that did not come with a NATS reply
// subject of its own (one taken from a JetStream stream, say): resp, or
// with err not nil the error reply of err (see ErrorHeaders), in meta's
// reply content type, and meta.RequestID, if any, in
// Switchyard-Request-Id so that a requester awaiting several replies on
// subject can tell them apart; a request id that may not go in that
// header (CheckRequestID fails) is left out. Encoding failures and replies
// above nc's maximum payload are answered and reported as Respond does (an
// error reply whose details do not fit goes with its headers alone). An
// empty subject is ErrNoReply.
func PublishReply(nc *nats.Conn, subject string, meta Meta, resp proto.Message, err error) error {
	if nc == nil {
		return fmt.Errorf("%w to %s: no connection", ErrReply, subject)
	}
	rp := publishReplier{nc: nc, to: subject}
	if CheckRequestID(meta.RequestID) == nil {
		rp.requestID = meta.RequestID
	}
	if err != nil {
		return respondError(rp, meta, err)
	}
	return respond(rp, meta, resp)
}

func respond(rp replier, meta Meta, resp proto.Message) error {
	if rp.reply() == "" {
		return noReply(rp)
	}
	ct := meta.ReplyContentType()
	body, err := marshal(ct, resp)
	if err != nil {
		return errors.Join(err, respondError(rp, meta, newError(codes.Internal, internalMessage, err)))
	}
	h := nats.Header{}
	h.Set(HeaderContentType, ct)
	err = rp.send(h, body)
	if err != nil && isMaxPayload(err) {
		tooLarge := errorf(codes.ResourceExhausted, ErrTooLarge, ": the reply to %s is %d bytes, more than the connection's maximum payload", rp.subject(), len(body))
		return errors.Join(tooLarge, respondError(rp, meta, tooLarge))
	}
	if err != nil {
		return fmt.Errorf("%w to %s: %w", ErrReply, rp.subject(), err)
	}
	return nil
}

func respondError(rp replier, meta Meta, err error) error {
	if rp.reply() == "" {
		return noReply(rp)
	}
	st := toStatus(err)
	h, body := statusHeaders(st, meta.ReplyContentType())
	serr := rp.send(h, body)
	if serr != nil && isMaxPayload(serr) {
		// The details do not fit: the headers still carry code and message.
		serr = rp.send(h, nil)
	}
	if serr != nil {
		return fmt.Errorf("%w (an error) to %s: %w", ErrReply, rp.subject(), serr)
	}
	return nil
}

// HandlerOption configures Handler and MsgHandler.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	ctx context.Context
	log *slog.Logger
}

// WithBaseContext makes ctx the parent of every call's context, so that
// ending it (a service shutting down) cancels calls in flight. Default
// context.Background().
func WithBaseContext(ctx context.Context) HandlerOption {
	return func(o *handlerOptions) { o.ctx = ctx }
}

// WithHandlerLogger sets where Handler logs what it cannot tell the
// requester: requests without a reply subject, the text of errors it
// answers as Internal, panics, failed replies. Default slog.Default().
func WithHandlerLogger(l *slog.Logger) HandlerOption {
	return func(o *handlerOptions) { o.log = l }
}

// HandlerFunc handles one decoded request. ctx ends at the request's
// deadline (see Meta.Context). A status error is the reply as it is; a
// context error is DeadlineExceeded or Canceled; any other error is
// Internal, its text logged but not sent.
type HandlerFunc[Req, Resp proto.Message] func(ctx context.Context, meta Meta, req Req) (Resp, error)

// Handler adapts fn to a micro endpoint handler. For each request it
// parses the headers and decodes the body strictly into newReq() (bad
// input is answered with an error reply and fn is not called), calls fn
// with a context that ends at the request's deadline, and answers with
// its response or its error (see HandlerFunc). A panic in fn is recovered,
// logged with its stack, and answered with Internal; the endpoint keeps
// serving. A request without a reply subject is logged and dropped before
// fn is called, since no one could learn its outcome.
//
// The request's arrival time, from which Switchyard-Timeout counts, is
// taken when the handler starts on it. micro calls an endpoint's handler
// for one request at a time, so fn runs on the endpoint's subscription
// goroutine and a Conn's Drain waits for it; a fn that waits (an acquire
// in line) holds up the endpoint's later requests meanwhile.
func Handler[Req, Resp proto.Message](newReq func() Req, fn HandlerFunc[Req, Resp], opts ...HandlerOption) micro.Handler {
	o := handlerOpts(opts)
	return micro.HandlerFunc(func(r micro.Request) {
		serve(o, microReplier{r}, time.Now(), newReq, fn)
	})
}

// MsgHandler is Handler for a plain subscription (nc.Subscribe or
// nc.QueueSubscribe).
func MsgHandler[Req, Resp proto.Message](newReq func() Req, fn HandlerFunc[Req, Resp], opts ...HandlerOption) nats.MsgHandler {
	o := handlerOpts(opts)
	return func(msg *nats.Msg) {
		serve(o, msgReplier{msg}, time.Now(), newReq, fn)
	}
}

func handlerOpts(opts []HandlerOption) handlerOptions {
	o := handlerOptions{ctx: context.Background(), log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func serve[Req, Resp proto.Message](o handlerOptions, rp replier, received time.Time, newReq func() Req, fn HandlerFunc[Req, Resp]) {
	log, subject := o.log, rp.subject() // attributes at the log calls: most requests log nothing
	if rp.reply() == "" {
		log.Warn("mq: request dropped", "subject", subject, "error", noReply(rp))
		return
	}
	var meta Meta
	answered := false
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		log.Error("mq: handler panicked", "subject", subject, "panic", p, "request_id", meta.RequestID, "stack", string(debug.Stack()))
		if answered {
			return
		}
		if err := respondError(rp, meta, newError(codes.Internal, internalMessage, ErrPanic)); err != nil {
			log.Error("mq: cannot send reply", "subject", subject, "error", err, "request_id", meta.RequestID)
		}
	}()

	req := newReq()
	meta, err := decode(rp, req, received)
	if err != nil {
		log.Debug("mq: bad request", "subject", subject, "error", err, "request_id", meta.RequestID)
		err = respondError(rp, meta, err)
		answered = true
		if err != nil {
			log.Error("mq: cannot send reply", "subject", subject, "error", err, "request_id", meta.RequestID)
		}
		return
	}
	ctx, cancel := meta.Context(o.ctx)
	defer cancel()
	resp, err := fn(ctx, meta, req)
	if err != nil {
		if _, ok := status.FromError(err); !ok && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			log.Error("mq: handler failed", "subject", subject, "error", err, "request_id", meta.RequestID)
		}
		err = respondError(rp, meta, err)
	} else {
		err = respond(rp, meta, resp)
	}
	answered = true
	if err != nil {
		log.Error("mq: cannot send reply", "subject", subject, "error", err, "request_id", meta.RequestID)
	}
}
