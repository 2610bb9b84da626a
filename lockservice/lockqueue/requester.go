package lockqueue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// EnqueueOption configures Enqueue (and a Requester's enqueues).
type EnqueueOption func(*enqueueOptions)

type enqueueOptions struct {
	contentType string
	deadline    time.Time
}

// WithJSON sends the request as JSON (protojson), and so gets the reply
// as JSON, instead of binary protobuf.
func WithJSON() EnqueueOption { return WithContentType(mq.ContentTypeJSON) }

// WithContentType sends the request in contentType: mq.ContentTypeProtobuf
// (the default) or mq.ContentTypeJSON.
func WithContentType(contentType string) EnqueueOption {
	return func(o *enqueueOptions) { o.contentType = contentType }
}

// WithDeadline sets the request's deadline (Switchyard-Deadline) to t
// instead of the context's: the request is dropped, never granted, once
// it has passed.
func WithDeadline(t time.Time) EnqueueOption {
	return func(o *enqueueOptions) { o.deadline = t }
}

// Enqueue publishes req to the queue (QueueSubject) for the workers to
// grant, with replyTo as the subject that its outcome is published to
// (a lockv1.AcquireResponse, or an error reply as package mq writes them,
// each carrying the request id in Switchyard-Request-Id). The request id
// is required (INVALID_ARGUMENT without one); it goes in Nats-Msg-Id, so
// that publishing the same request again within the stream's duplicates
// window stores nothing (PubAck.Duplicate). The deadline is ctx's (or
// WithDeadline's); ctx also bounds the publish.
//
// Errors are status errors: INVALID_ARGUMENT for a bad request id, reply
// subject or content type; RESOURCE_EXHAUSTED when the queue is full
// (publish later); UNAVAILABLE when there is no queue (no worker has
// created it) or no connection; DEADLINE_EXCEEDED or CANCELLED when ctx
// ended first.
func Enqueue(ctx context.Context, js jetstream.JetStream, req *lockv1.AcquireRequest, replyTo string, opts ...EnqueueOption) (*jetstream.PubAck, error) {
	var o enqueueOptions
	for _, opt := range opts {
		opt(&o)
	}
	rid := req.GetRequestId()
	if rid == "" {
		return nil, status.Error(codes.InvalidArgument, "lockqueue: a queued acquire needs a request id")
	}
	if err := lockservice.CheckRequestID(rid); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "lockqueue: %s", status.Convert(err).Message())
	}
	if !publishable(replyTo) {
		return nil, status.Errorf(codes.InvalidArgument, "lockqueue: reply subject %s is not a subject one can publish to", mq.Quote(replyTo))
	}
	ct := o.contentType
	if ct == "" {
		ct = mq.ContentTypeProtobuf
	}
	data, err := mq.Marshal(ct, req)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "lockqueue: %v", err)
	}
	meta := mq.Meta{ContentType: ct, Deadline: o.deadline}
	if d, ok := ctx.Deadline(); ok && meta.Deadline.IsZero() {
		meta.Deadline = d
	}
	m := &nats.Msg{Subject: QueueSubject, Header: meta.Header(), Data: data}
	m.Header.Set(HeaderReplyTo, replyTo)
	ack, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(rid), jetstream.WithExpectStream(QueueStream))
	if err != nil {
		return nil, publishError(ctx, err)
	}
	return ack, nil
}

// publishError maps an error of publishing to the queue to a status.
func publishError(ctx context.Context, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return status.Errorf(codes.DeadlineExceeded, "lockqueue: enqueueing: %v", err)
	case ctx.Err() != nil, errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "lockqueue: enqueueing: %v", err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return status.Errorf(codes.Unavailable, "lockqueue: no queue stream %s answers on %s (has no worker started?): %v", QueueStream, QueueSubject, err)
	case errors.As(err, &apiErr) && (strings.Contains(apiErr.Description, "maximum") || strings.Contains(apiErr.Description, "resource")):
		return status.Errorf(codes.ResourceExhausted, "lockqueue: the queue is full: %v", err)
	case errors.As(err, &apiErr) && apiErr.Code == 400:
		return status.Errorf(codes.InvalidArgument, "lockqueue: enqueueing: %v", err)
	}
	return status.Errorf(codes.Unavailable, "lockqueue: enqueueing: %v", err)
}

// Requester queues acquires and waits for their outcomes on one inbox
// subscription of its own. It is safe for concurrent use. Close it when
// done.
type Requester struct {
	js    jetstream.JetStream
	inbox string
	sub   *nats.Subscription
	opts  []EnqueueOption

	mu      sync.Mutex
	closed  bool
	done    chan struct{}             // closed by Close
	pending map[string]chan *nats.Msg // by request id, until answered
}

// NewRequester subscribes to a new inbox of js's connection for the
// replies to the acquires it queues with opts.
func NewRequester(js jetstream.JetStream, opts ...EnqueueOption) (*Requester, error) {
	nc := js.Conn()
	r := &Requester{js: js, inbox: nc.NewInbox(), opts: opts, done: make(chan struct{}), pending: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(r.inbox, r.deliver)
	if err != nil {
		return nil, fmt.Errorf("lockqueue: subscribing to the requester's inbox: %w", err)
	}
	r.sub = sub
	if err := nc.FlushTimeout(apiTimeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("lockqueue: flushing the requester's subscription: %w", err)
	}
	return r, nil
}

// Inbox is the subject the Requester's replies come to.
func (r *Requester) Inbox() string { return r.inbox }

// deliver hands a reply to the request awaiting it; a reply for a request
// already answered (a duplicate) or forgotten is dropped.
func (r *Requester) deliver(m *nats.Msg) {
	rid := mq.HeaderValue(m.Header, mq.HeaderRequestID)
	r.mu.Lock()
	ch := r.pending[rid]
	delete(r.pending, rid)
	r.mu.Unlock()
	if ch != nil {
		ch <- m // buffered, and this is its only send
	}
}

// Pending is a queued acquire awaiting its outcome.
type Pending struct {
	r   *Requester
	rid string
	ack *jetstream.PubAck
	ch  chan *nats.Msg
}

// PubAck is JetStream's acknowledgement of the enqueue: Duplicate says
// that the request id was queued before, within the duplicates window,
// and nothing was stored (an earlier Submit's outcome may still come).
func (p *Pending) PubAck() *jetstream.PubAck { return p.ack }

// RequestID is the request's id.
func (p *Pending) RequestID() string { return p.rid }

// Submit queues req (see Enqueue) and returns once JetStream has stored
// it, with its outcome to Wait for. req needs a request id, which no
// other outcome of this Requester is awaited under (ALREADY_EXISTS). Wait
// (or Close the Requester) for every Pending, or it is kept.
func (r *Requester) Submit(ctx context.Context, req *lockv1.AcquireRequest) (*Pending, error) {
	rid := req.GetRequestId()
	if rid == "" {
		return nil, status.Error(codes.InvalidArgument, "lockqueue: a queued acquire needs a request id")
	}
	p := &Pending{r: r, rid: rid, ch: make(chan *nats.Msg, 1)}
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "lockqueue: the requester is closed")
	case r.pending[rid] != nil:
		r.mu.Unlock()
		return nil, status.Errorf(codes.AlreadyExists, "lockqueue: request %q is awaited already", rid)
	}
	r.pending[rid] = p.ch // before publishing: the reply may come at once
	r.mu.Unlock()
	ack, err := Enqueue(ctx, r.js, req, r.inbox, r.opts...)
	if err != nil {
		p.forget()
		return nil, err
	}
	p.ack = ack
	return p, nil
}

// Wait waits for the outcome until ctx ends: the lease, or the error the
// worker answered (a status error, as mq.StatusFromMsg reads it), or
// DEADLINE_EXCEEDED or CANCELLED when ctx ends first, or UNAVAILABLE when
// the Requester is closed. After it returns the request is no longer
// awaited (a later reply is dropped); call it once.
func (p *Pending) Wait(ctx context.Context) (*lockv1.Lease, error) {
	var err error
	select {
	case m := <-p.ch:
		return decodeReply(m)
	case <-ctx.Done():
		code := codes.Canceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = codes.DeadlineExceeded
		}
		err = status.Errorf(code, "lockqueue: waiting for request %q: %v", p.rid, ctx.Err())
	case <-p.r.done:
		err = status.Errorf(codes.Unavailable, "lockqueue: waiting for request %q: the requester is closed", p.rid)
	}
	p.forget()
	select {
	case m := <-p.ch: // answered meanwhile
		return decodeReply(m)
	default:
		return nil, err
	}
}

func (p *Pending) forget() {
	p.r.mu.Lock()
	if p.r.pending[p.rid] == p.ch {
		delete(p.r.pending, p.rid)
	}
	p.r.mu.Unlock()
}

// Acquire queues req and waits for its lease until ctx ends (Submit, then
// Wait). ctx's deadline is the request's: the workers never grant it
// after that. A request without a deadline waits at most the workers'
// MaxWait.
func (r *Requester) Acquire(ctx context.Context, req *lockv1.AcquireRequest) (*lockv1.Lease, error) {
	p, err := r.Submit(ctx, req)
	if err != nil {
		return nil, err
	}
	return p.Wait(ctx)
}

// Close stops the Requester: its subscription ends, and Waits still
// waiting end with UNAVAILABLE. It is safe to call more than once.
func (r *Requester) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.pending = map[string]chan *nats.Msg{}
	close(r.done)
	r.mu.Unlock()
	if err := r.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("lockqueue: unsubscribing the requester: %w", err)
	}
	return nil
}

// decodeReply reads a worker's reply (mq.DecodeReply): an error reply as
// its status error, or the lease.
func decodeReply(m *nats.Msg) (*lockv1.Lease, error) {
	resp := &lockv1.AcquireResponse{}
	if err := mq.DecodeReply(m, resp); err != nil {
		return nil, err
	}
	if resp.GetLease() == nil {
		return nil, status.Error(codes.Internal, "lockqueue: a reply without a lease")
	}
	return resp.GetLease(), nil
}
