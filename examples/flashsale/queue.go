package flashsale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
)

// QueueConfig names the purchase work queue: a JetStream stream with
// work-queue retention (a message is gone once acked) and the durable pull
// consumer the workers share.
type QueueConfig struct {
	// Stream is the stream's name, such as "FLASHSALE".
	Stream string
	// Subject is the subject purchases are published on, such as
	// "flashsale.purchases"; the stream captures only it.
	Subject string
	// Consumer is the durable consumer's name, such as "workers".
	Consumer string
	// Workers is the size of the worker pool, and the consumer's
	// MaxAckPending: the server hands out no more unacked messages than
	// there are workers, so the backlog stays in the stream, where it is
	// durable and measurable, not in client buffers.
	Workers int
	// AckWait is how long a delivered message may stay unacked before the
	// server delivers it again (default 30s): the time a crashed worker's
	// messages take to come back.
	AckWait time.Duration
}

func (c QueueConfig) validate() error {
	switch {
	case c.Stream == "" || c.Subject == "" || c.Consumer == "":
		return fmt.Errorf("flashsale: queue %q on %q, consumer %q: want a stream, a subject and a consumer", c.Stream, c.Subject, c.Consumer)
	case c.Workers < 1:
		return fmt.Errorf("flashsale: queue with %d workers: want 1 or more", c.Workers)
	case c.AckWait < 0:
		return fmt.Errorf("flashsale: queue ack wait %v is negative", c.AckWait)
	}
	return nil
}

// Queue is the producers' handle on the purchase work queue.
type Queue struct {
	cfg    QueueConfig
	js     jetstream.JetStream
	stream jetstream.Stream
}

// OpenQueue creates the stream and the workers' consumer (or updates them
// to cfg) and returns a handle to publish on. It owns nothing that needs
// closing; Delete removes the stream and its consumer.
func OpenQueue(ctx context.Context, js jetstream.JetStream, cfg QueueConfig) (*Queue, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "switchyard flash-sale purchases (switchyard.flashsale.v1.PurchaseRequest)",
		Subjects:    []string{cfg.Subject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  2 * time.Minute, // the window in which a repeated purchase id is dropped
	})
	if err != nil {
		return nil, fmt.Errorf("flashsale: stream %s: %w", cfg.Stream, err)
	}
	_, err = stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "switchyard flash-sale workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.Workers,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("flashsale: consumer %s on %s: %w", cfg.Consumer, cfg.Stream, err)
	}
	return &Queue{cfg: cfg, js: js, stream: stream}, nil
}

// Enqueue publishes a purchase and returns once JetStream has stored it
// (the publish is acknowledged): from then on the purchase survives a
// restart of the workers or of the server (with file storage). The
// purchase id is the message id, so a second publish of the same purchase
// within two minutes is acknowledged as a duplicate and not stored again.
func (q *Queue) Enqueue(ctx context.Context, req *flashsalev1.PurchaseRequest) (*jetstream.PubAck, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("flashsale: encoding purchase %q: %w", req.GetPurchaseId(), err)
	}
	ack, err := q.js.Publish(ctx, q.cfg.Subject, data, jetstream.WithMsgID(req.GetPurchaseId()), jetstream.WithExpectStream(q.cfg.Stream))
	if err != nil {
		return nil, fmt.Errorf("flashsale: enqueueing purchase %q: %w", req.GetPurchaseId(), err)
	}
	return ack, nil
}

// Depth returns the messages in the stream: purchases enqueued and not
// yet acked (waiting, or in a worker's hands).
func (q *Queue) Depth(ctx context.Context) (int64, error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("flashsale: stream %s: %w", q.cfg.Stream, err)
	}
	return int64(info.State.Msgs), nil
}

// Delete removes the stream, its messages and its consumer.
func (q *Queue) Delete(ctx context.Context) error {
	if err := q.js.DeleteStream(ctx, q.cfg.Stream); err != nil {
		return fmt.Errorf("flashsale: deleting stream %s: %w", q.cfg.Stream, err)
	}
	return nil
}

// Processed is what a worker did with one delivered message.
type Processed struct {
	// PurchaseID is the purchase's (empty for a message that does not
	// decode).
	PurchaseID string
	// Result is the store's answer, when Err is nil.
	Result Result
	// Err is why the purchase failed: the message was nakked (to come back
	// after the nak delay), or terminated when it can never succeed.
	Err error
	// Delivery counts the deliveries of the message, 1 for the first.
	Delivery uint64
	// Acked says the server confirmed the ack; a purchase applied but not
	// acked comes back, and the store absorbs it as a duplicate.
	Acked bool
	// At is when the worker finished with the message.
	At time.Time
}

// The workers' timings.
const (
	// purchaseTimeout bounds one purchase (capacity, lock, read, write); a
	// purchase that runs out is nakked.
	purchaseTimeout = 30 * time.Second
	// pollWait is how long one pull waits for a message: the longest Close
	// waits for an idle worker.
	pollWait = 250 * time.Millisecond
	// nakDelay is how long a failed purchase waits before it is delivered
	// again.
	nakDelay = 100 * time.Millisecond
)

type workerOptions struct {
	observe func(Processed)
	log     *slog.Logger
}

// WorkerOption configures StartWorkers.
type WorkerOption func(*workerOptions)

// WithObserver has fn called, from the worker's goroutine, after each
// message a worker has finished with. It must be quick.
func WithObserver(fn func(Processed)) WorkerOption {
	return func(o *workerOptions) { o.observe = fn }
}

// WithWorkerLogger sets where workers log (default slog.Default()).
func WithWorkerLogger(l *slog.Logger) WorkerOption { return func(o *workerOptions) { o.log = l } }

// Workers is a fixed pool pulling purchases from the queue's consumer and
// running them through a Shop, each worker one message at a time. Close
// (graceful) or Crash (abrupt) stops it.
type Workers struct {
	opts    workerOptions
	cons    jetstream.Consumer
	shop    *Shop
	ctx     context.Context // ends at Crash: purchases in flight give up
	cancel  context.CancelFunc
	stop    atomic.Bool // no more pulls
	crashed atomic.Bool // no more acks or naks
	dying   atomic.Bool // each worker stops after its next applied purchase, unacked
	held    atomic.Int64
	wg      sync.WaitGroup
	done    chan struct{}
	once    sync.Once
}

// StartWorkers starts cfg.Workers workers on the queue cfg names (which
// OpenQueue must have created), through js — a connection of the
// workers' own, so that the producers' connection is not theirs. Each
// worker pulls one message, runs Shop.Purchase, and acks once the store
// has applied the purchase (SOLD_OUT counts as applied), or naks it to
// come back 100ms later; a purchase gets 30s. The workers' goroutines are
// the pool's; Close or Crash ends them.
func StartWorkers(ctx context.Context, js jetstream.JetStream, cfg QueueConfig, shop *Shop, opts ...WorkerOption) (*Workers, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	o := workerOptions{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	if err != nil {
		return nil, fmt.Errorf("flashsale: consumer %s on %s: %w", cfg.Consumer, cfg.Stream, err)
	}
	w := &Workers{opts: o, cons: cons, shop: shop, done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go w.run()
	}
	go func() { w.wg.Wait(); close(w.done) }()
	return w, nil
}

// run is one worker: pull, purchase, ack, until stopped.
func (w *Workers) run() {
	defer w.wg.Done()
	for !w.stop.Load() {
		msg, err := w.cons.Next(jetstream.FetchMaxWait(pollWait))
		if err != nil {
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
				w.opts.log.Debug("flashsale: worker pull failed", "err", err)
				w.pause(pollWait)
			}
			continue
		}
		if died := w.handle(msg); died {
			return
		}
	}
}

// pause waits d, or less if the pool is crashing.
func (w *Workers) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.ctx.Done():
	}
}

// handle runs one message's purchase and acks, naks or terminates it. It
// reports whether the worker died holding it (see CrashAfterApply).
func (w *Workers) handle(msg jetstream.Msg) (died bool) {
	p := Processed{Delivery: 1}
	if meta, err := msg.Metadata(); err == nil {
		p.Delivery = meta.NumDelivered
	}
	req := &flashsalev1.PurchaseRequest{}
	if err := proto.Unmarshal(msg.Data(), req); err != nil {
		p.Err = fmt.Errorf("%w: message does not decode: %w", ErrInvalidPurchase, err)
		_ = msg.TermWithReason("does not decode as switchyard.flashsale.v1.PurchaseRequest")
		w.observe(p)
		return false
	}
	p.PurchaseID = req.GetPurchaseId()
	ctx, cancel := context.WithTimeout(w.ctx, purchaseTimeout)
	defer cancel()
	p.Result, p.Err = w.shop.Purchase(ctx, req)
	if w.crashed.Load() {
		return true // a crashed worker acks nothing: the message comes back
	}
	if p.Err == nil && w.dying.Load() {
		// Killed between the store's write and the ack: the message comes
		// back after AckWait, and the store answers it as a duplicate.
		w.held.Add(1)
		w.observe(p)
		return true
	}
	switch {
	case errors.Is(p.Err, ErrInvalidPurchase), errors.Is(p.Err, ErrUnknownItem):
		_ = msg.TermWithReason(p.Err.Error()) // it would fail every time
	case p.Err != nil:
		_ = msg.NakWithDelay(nakDelay)
	default:
		actx, acancel := context.WithTimeout(w.ctx, 5*time.Second)
		err := msg.DoubleAck(actx)
		acancel()
		p.Acked = err == nil
		if err != nil {
			w.opts.log.Warn("flashsale: ack failed; the purchase will come back as a duplicate", "purchase", p.PurchaseID, "err", err)
		}
	}
	p.At = time.Now()
	w.observe(p)
	return false
}

func (w *Workers) observe(p Processed) {
	if p.At.IsZero() {
		p.At = time.Now()
	}
	if w.opts.observe != nil {
		w.opts.observe(p)
	}
}

// Done is closed once every worker has stopped.
func (w *Workers) Done() <-chan struct{} { return w.done }

// Close stops the pool gracefully: no more pulls; purchases in hand run to
// their end and are acked or nakked. It waits for every worker (an idle
// one ends its pull first, within the poll time). It is safe to call more
// than once, and after Crash.
func (w *Workers) Close() error {
	w.once.Do(func() { w.stop.Store(true) })
	<-w.done
	w.cancel()
	return nil
}

// Crash stops the pool as a killed process would stop: no more pulls,
// purchases in flight are cancelled, and no message in hand is acked or
// nakked — even one whose purchase the store has already applied. Those
// messages come back after the queue's AckWait, to whatever workers run
// then. It waits for every worker to stop.
func (w *Workers) Crash() {
	w.crashed.Store(true)
	w.stop.Store(true)
	w.cancel()
	<-w.done
}

// CrashAfterApply stops the pool as processes killed between the store's
// write and the ack would stop — the window every at-least-once consumer
// has. Worker by worker: each runs the purchase it holds, or pulls the
// next, and stops as soon as the store has applied one, without acking
// it. Those messages come back after the queue's AckWait, to whatever
// workers run then, and the store absorbs them as duplicates. It returns
// once every worker has stopped, with how many messages they left applied
// but unacked; if ctx ends first (no message came), the workers still
// running crash as in Crash. The observer is told of each held purchase
// (Acked false).
func (w *Workers) CrashAfterApply(ctx context.Context) (held int) {
	w.dying.Store(true)
	select {
	case <-w.done:
	case <-ctx.Done():
		w.Crash()
	}
	return int(w.held.Load())
}
