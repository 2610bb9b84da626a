package lockmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// DefaultMaxInFlight is how many requests a Door handles at once by
// default (WithMaxInFlight).
const DefaultMaxInFlight = 4096

// Door is one replica's NATS front door: a micro service answering the
// lock service's subjects with a lockservice.Server. Close ends it.
type Door struct {
	nc       *nats.Conn
	svc      micro.Service
	cancels  *nats.Subscription // CancelSubject
	log      *slog.Logger
	inFlight chan struct{} // a slot per request being handled

	ctx  context.Context // ends at Close: handlers still running give up
	stop context.CancelFunc

	mu      sync.Mutex
	closed  bool
	waiting map[string]map[*waiter]struct{} // acquires in flight, by request id
	wg      sync.WaitGroup                  // handlers
	once    sync.Once
	err     error
}

type options struct {
	log         *slog.Logger
	maxInFlight int
	events      bool
	eventsType  string
}

// Option configures Serve.
type Option func(*options)

// WithLogger sets where the door logs; default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMaxInFlight bounds the requests the door handles at once (a
// blocking acquire counts while it waits); beyond it a request is
// answered RESOURCE_EXHAUSTED at once. Default DefaultMaxInFlight.
func WithMaxInFlight(n int) Option { return func(o *options) { o.maxInFlight = n } }

// WithEvents makes the door also stand in the election of the lock
// service's broadcaster (lockservice.Server.Broadcast) and, while elected,
// publish every lock event on EventSubject, encoded in contentType
// (Publisher). Run it on every replica: one publishes at a time, and
// another takes over when it goes.
func WithEvents(contentType string) Option {
	return func(o *options) { o.events, o.eventsType = true, contentType }
}

// Serve starts srv's NATS front door on nc: the shared subjects in queue
// group QueueGroup and the replica's own, as the micro service
// ServiceName, so that `nats micro ls` and `nats micro info` find it.
// Each request is handled in a goroutine of its own (a blocking acquire
// must not hold up the others), owned by the Door. nc stays the caller's;
// Close the Door before nc and before srv.
func Serve(nc *nats.Conn, srv *lockservice.Server, opts ...Option) (*Door, error) {
	o := options{log: slog.Default(), maxInFlight: DefaultMaxInFlight}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxInFlight < 1 {
		return nil, fmt.Errorf("lockmq: max in flight %d: want 1 or more", o.maxInFlight)
	}
	var publish lockservice.Publish
	if o.events {
		var err error
		if publish, err = Publisher(nc, o.eventsType); err != nil {
			return nil, err
		}
	}
	replica := srv.Replica()
	d := &Door{nc: nc, log: o.log.With("replica", replica), inFlight: make(chan struct{}, o.maxInFlight), waiting: map[string]map[*waiter]struct{}{}}
	d.ctx, d.stop = context.WithCancel(context.Background())

	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     ServiceVersion,
		Description: "Switchyard's distributed lock service (switchyard.lock.v1) over NATS",
		Metadata:    map[string]string{"replica": replica},
		QueueGroup:  QueueGroup,
	})
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("lockmq: adding the micro service: %w", err)
	}
	d.svc = svc
	d.cancels, err = nc.Subscribe(CancelSubject, d.cancel)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lockmq: subscribing to %s: %w", CancelSubject, err), d.Close())
	}
	hopts := []mq.HandlerOption{mq.WithBaseContext(d.ctx), mq.WithHandlerLogger(d.log)}
	acquire := mq.Handler(func() *lockv1.AcquireRequest { return &lockv1.AcquireRequest{} },
		func(ctx context.Context, meta mq.Meta, req *lockv1.AcquireRequest) (*lockv1.AcquireResponse, error) {
			if err := requestID(meta, req); err != nil {
				return nil, err
			}
			ctx, done := d.cancellable(ctx, req.GetRequestId())
			defer done()
			return srv.Acquire(ctx, req)
		}, hopts...)
	tryAcquire := mq.Handler(func() *lockv1.AcquireRequest { return &lockv1.AcquireRequest{} },
		func(ctx context.Context, meta mq.Meta, req *lockv1.AcquireRequest) (*lockv1.AcquireResponse, error) {
			if err := requestID(meta, req); err != nil {
				return nil, err
			}
			req.Wait = false
			return srv.Acquire(ctx, req)
		}, hopts...)
	describe := mq.Handler(func() *lockv1.DescribeRequest { return &lockv1.DescribeRequest{} },
		func(ctx context.Context, _ mq.Meta, req *lockv1.DescribeRequest) (*lockv1.DescribeResponse, error) {
			return srv.Describe(ctx, req)
		}, hopts...)
	list := mq.Handler(func() *lockv1.ListRequest { return &lockv1.ListRequest{} },
		func(ctx context.Context, _ mq.Meta, req *lockv1.ListRequest) (*lockv1.ListResponse, error) {
			return srv.List(ctx, req)
		}, hopts...)
	keepAlive := mq.Handler(func() *lockv1.KeepAliveRequest { return &lockv1.KeepAliveRequest{} },
		func(ctx context.Context, _ mq.Meta, req *lockv1.KeepAliveRequest) (*lockv1.KeepAliveResponse, error) {
			return srv.KeepAlive(ctx, req)
		}, hopts...)
	release := mq.Handler(func() *lockv1.ReleaseRequest { return &lockv1.ReleaseRequest{} },
		func(ctx context.Context, _ mq.Meta, req *lockv1.ReleaseRequest) (*lockv1.ReleaseResponse, error) {
			return srv.Release(ctx, req)
		}, hopts...)

	type endpoint struct {
		name, subject string
		h             micro.Handler
		req, resp     proto.Message
	}
	endpoints := []endpoint{
		{"acquire", AcquireSubject, acquire, &lockv1.AcquireRequest{}, &lockv1.AcquireResponse{}},
		{"try_acquire", TryAcquireSubject, tryAcquire, &lockv1.AcquireRequest{}, &lockv1.AcquireResponse{}},
		{"describe", DescribeSubject, describe, &lockv1.DescribeRequest{}, &lockv1.DescribeResponse{}},
		{"list", ListSubject, list, &lockv1.ListRequest{}, &lockv1.ListResponse{}},
		{"replica_acquire", ReplicaSubject(replica, OpAcquire), acquire, &lockv1.AcquireRequest{}, &lockv1.AcquireResponse{}},
		{"keep_alive", ReplicaSubject(replica, OpKeepAlive), keepAlive, &lockv1.KeepAliveRequest{}, &lockv1.KeepAliveResponse{}},
		{"release", ReplicaSubject(replica, OpRelease), release, &lockv1.ReleaseRequest{}, &lockv1.ReleaseResponse{}},
	}
	for _, e := range endpoints {
		meta := map[string]string{
			"request":  string(proto.MessageName(e.req)),
			"response": string(proto.MessageName(e.resp)),
		}
		if err := svc.AddEndpoint(e.name, d.async(e.h), micro.WithEndpointSubject(e.subject), micro.WithEndpointMetadata(meta)); err != nil {
			return nil, errors.Join(fmt.Errorf("lockmq: endpoint %s: %w", e.subject, err), d.Close())
		}
	}
	if publish != nil {
		d.wg.Go(func() {
			if err := srv.Broadcast(d.ctx, publish); err != nil {
				d.log.Error("lockmq: the event broadcaster stopped", "error", err)
			}
		})
	}
	// Serve returns once the server has the subscriptions: a request sent
	// after it finds a responder.
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		return nil, errors.Join(fmt.Errorf("lockmq: flushing the subscriptions: %w", err), d.Close())
	}
	return d, nil
}

// async runs h in a goroutine of the Door's, within the in-flight bound.
func (d *Door) async(h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			d.refuse(r, codes.Unavailable, "the replica is closing; retry elsewhere")
			return
		}
		select {
		case d.inFlight <- struct{}{}:
		default:
			d.mu.Unlock()
			d.refuse(r, codes.ResourceExhausted, fmt.Sprintf("the replica handles %d requests already, its limit", cap(d.inFlight)))
			return
		}
		d.wg.Add(1)
		d.mu.Unlock()
		dr := detach(d.nc, r)
		go func() {
			defer d.wg.Done()
			defer func() { <-d.inFlight }()
			h.Handle(dr)
		}()
	})
}

// waiter is one acquire in flight that a cancel can end.
type waiter struct{ cancel context.CancelFunc }

// cancellable registers an acquire under its request id so that a
// message on CancelSubject can end its wait. done unregisters it. Several
// acquires may share a request id (a requester's retries, which the
// Server joins): each is registered apart, and a cancel ends them all.
func (d *Door) cancellable(ctx context.Context, rid string) (context.Context, func()) {
	if rid == "" {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &waiter{cancel: cancel}
	d.mu.Lock()
	ws := d.waiting[rid]
	if ws == nil {
		ws = map[*waiter]struct{}{}
		d.waiting[rid] = ws
	}
	ws[w] = struct{}{}
	d.mu.Unlock()
	return ctx, func() {
		d.mu.Lock()
		delete(ws, w)
		if len(ws) == 0 {
			delete(d.waiting, rid) // ws is still d.waiting[rid]: it goes only once empty
		}
		d.mu.Unlock()
		cancel()
	}
}

// cancel handles a message on CancelSubject: it ends every acquire
// waiting here with the message's request id.
func (d *Door) cancel(m *nats.Msg) {
	rid := mq.HeaderValue(m.Header, mq.HeaderRequestID)
	if rid == "" {
		return
	}
	d.mu.Lock()
	ws := d.waiting[rid]
	cancels := make([]context.CancelFunc, 0, len(ws))
	for w := range ws {
		cancels = append(cancels, w.cancel)
	}
	d.mu.Unlock()
	if len(cancels) > 0 {
		d.log.Debug("lockmq: acquire cancelled by its requester", "request_id", rid, "waits", len(cancels))
	}
	for _, cancel := range cancels {
		cancel()
	}
}

// refuse answers r with an error without decoding it.
func (d *Door) refuse(r micro.Request, code codes.Code, msg string) {
	if r.Reply() == "" {
		return
	}
	meta, _ := mq.ParseMeta(nats.Header(r.Headers()), time.Now())
	if err := mq.RespondError(r, meta, status.Error(code, msg)); err != nil {
		d.log.Warn("lockmq: cannot send reply", "subject", r.Subject(), "error", err)
	}
}

// requestID takes the Switchyard-Request-Id header as the request id when
// the body has none; both, differing, are INVALID_ARGUMENT.
func requestID(meta mq.Meta, req *lockv1.AcquireRequest) error {
	id, err := mq.MergeRequestID(req.GetRequestId(), meta.RequestID, mq.HeaderRequestID)
	if err != nil {
		return err
	}
	req.RequestId = id
	return nil
}

// Close stops the door: it stops taking requests, ends the waits of the
// requests in flight (their callers get CANCELLED or the server's answer)
// and waits for their handlers. It is safe to call more than once. To
// move waiting acquires to other replicas first, drain the Server
// (lockservice.Server.Drain) before.
func (d *Door) Close() error {
	d.once.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		if d.svc != nil {
			if err := d.svc.Stop(); err != nil {
				d.err = fmt.Errorf("lockmq: stopping the micro service: %w", err)
			}
		}
		if d.cancels != nil {
			if err := d.cancels.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				d.err = errors.Join(d.err, fmt.Errorf("lockmq: unsubscribing from %s: %w", CancelSubject, err))
			}
		}
		d.stop()
		d.wg.Wait()
	})
	return d.err
}

// detached is a request answered outside micro's handler call: micro
// reads what its own Request recorded once the handler returns, so a
// handler that answers later must not use it. Its replies are published
// on nc to the request's reply subject. micro's stats then count
// requests taken, not their outcomes or durations; the Prometheus
// metrics of the lock service and the gRPC-code figures are the outcome
// record.
type detached struct {
	nc             *nats.Conn
	subject, reply string
	headers        micro.Headers
	data           []byte
}

var _ micro.Request = (*detached)(nil)

func detach(nc *nats.Conn, r micro.Request) *detached {
	return &detached{nc: nc, subject: r.Subject(), reply: r.Reply(), headers: r.Headers(), data: r.Data()}
}

func (r *detached) Respond(data []byte, opts ...micro.RespondOpt) error {
	m := &nats.Msg{Subject: r.reply, Data: data}
	for _, o := range opts {
		o(m)
	}
	return r.send(m)
}

func (r *detached) RespondJSON(v any, opts ...micro.RespondOpt) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("lockmq: %w", err)
	}
	return r.Respond(b, opts...)
}

func (r *detached) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	if code == "" || description == "" {
		return micro.ErrArgRequired
	}
	m := &nats.Msg{Subject: r.reply, Data: data, Header: nats.Header{
		micro.ErrorHeader:     []string{description},
		micro.ErrorCodeHeader: []string{code},
	}}
	for _, o := range opts {
		o(m)
	}
	return r.send(m)
}

func (r *detached) send(m *nats.Msg) error {
	if r.reply == "" {
		return mq.ErrNoReply
	}
	return r.nc.PublishMsg(m)
}

func (r *detached) Data() []byte           { return r.data }
func (r *detached) Headers() micro.Headers { return r.headers }
func (r *detached) Subject() string        { return r.subject }
func (r *detached) Reply() string          { return r.reply }
