package lockqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// Timeouts of the Worker's own JetStream calls.
const (
	apiTimeout = 10 * time.Second
	// unknownErrorGrace is how long a Worker that does not know why a
	// message failed waits before dead-lettering it on its advisory, so
	// that the Worker that handled its last delivery, which does, goes
	// first (the first dead letter is the one kept).
	unknownErrorGrace = 250 * time.Millisecond
	// maxSweep bounds the messages one sweep dead-letters.
	maxSweep = 1000
	// lastErrors is how many sequences' last errors a Worker remembers.
	lastErrors = 4096
)

// Worker consumes QueueStream for one replica: it grants queued acquires
// with the replica's lockservice.Server and answers each on its reply
// subject, and dead-letters the messages that cannot be granted. Start
// one per replica; Close it before the Server, the replica's front door
// and the NATS connection.
type Worker struct {
	js      jetstream.JetStream
	srv     *lockservice.Server
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu    sync.Mutex // guards queue and cons, which ensure replaces
	queue jetstream.Stream
	cons  jetstream.Consumer
	// recreating serialises recreate: the pullers that found one consumer
	// gone recreate it once between them.
	recreating sync.Mutex

	ctx  context.Context // ends at Close
	stop context.CancelFunc
	wg   sync.WaitGroup // pullers and the advisory loop
	adv  *nats.Subscription
	advq chan maxDeliveries

	errMu    sync.Mutex
	lastErr  map[uint64]string // by stream sequence: why its last delivery here failed
	errOrder []uint64          // ring of lastErr's keys, oldest at errNext
	errNext  int

	once sync.Once
	err  error
}

// maxDeliveries is the part of JetStream's MAX_DELIVERIES advisory
// (io.nats.jetstream.advisory.v1.max_deliver) that a Worker reads.
type maxDeliveries struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`

	arrived time.Time // when the Worker received it (not in the JSON)
}

// Start makes sure that QueueStream, DeadStream and the consumer exist
// with cfg's settings (creating or updating them), subscribes to the
// max-deliveries advisory and starts consuming for srv with at most
// cfg.Concurrency requests at once. ctx bounds the setup only; the Worker
// runs until Close. js's connection and srv stay the caller's.
func Start(ctx context.Context, js jetstream.JetStream, srv *lockservice.Server, cfg Config) (*Worker, error) {
	if js == nil || srv == nil {
		return nil, errors.New("lockqueue: Start needs a JetStream context and a lock server")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		js: js, srv: srv, cfg: cfg, metrics: m,
		log:      cfg.Logger.With("replica", srv.Replica()),
		advq:     make(chan maxDeliveries, 1024),
		lastErr:  make(map[uint64]string, lastErrors),
		errOrder: make([]uint64, lastErrors),
	}
	w.ctx, w.stop = context.WithCancel(context.Background())
	if err := w.ensure(ctx); err != nil {
		w.stop()
		return nil, err
	}
	w.adv, err = js.Conn().Subscribe(MaxDeliveriesAdvisory, w.onAdvisory)
	if err != nil {
		w.stop()
		return nil, fmt.Errorf("lockqueue: subscribing to %s: %w", MaxDeliveriesAdvisory, err)
	}
	// The server has the advisory subscription before the first pull.
	if err := js.Conn().FlushTimeout(apiTimeout); err != nil {
		return nil, errors.Join(fmt.Errorf("lockqueue: flushing the advisory subscription: %w", err), w.Close())
	}
	w.wg.Go(w.advisories)
	for range cfg.Concurrency {
		w.wg.Go(w.pull)
	}
	return w, nil
}

// Close stops the Worker: it stops pulling, ends the waits of the
// acquires in flight (their messages are handed back with a Nak, so that
// another replica takes them; an acquire granted meanwhile is answered
// first) and waits for its goroutines. It is safe to call more than once.
func (w *Worker) Close() error {
	w.once.Do(func() {
		if w.adv != nil {
			if err := w.adv.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				w.err = fmt.Errorf("lockqueue: unsubscribing from the advisory: %w", err)
			}
		}
		w.stop()
		w.wg.Wait()
	})
	return w.err
}

// ensure creates or updates the streams and the consumer.
func (w *Worker) ensure(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	queue, err := w.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        QueueStream,
		Description: "Switchyard lock service: queued acquire requests (package lockqueue)",
		Subjects:    []string{QueueSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  w.cfg.Duplicates,
		MaxMsgs:     w.cfg.MaxMsgs,
		Discard:     jetstream.DiscardNew,
		Replicas:    w.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("lockqueue: stream %s: %w", QueueStream, err)
	}
	dup := w.cfg.Duplicates
	if w.cfg.DeadMaxAge > 0 && dup > w.cfg.DeadMaxAge {
		dup = w.cfg.DeadMaxAge
	}
	if _, err := w.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadStream,
		Description: "Switchyard lock service: queued acquire requests that could not be granted (package lockqueue)",
		Subjects:    []string{DeadSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  dup,
		MaxAge:      w.cfg.DeadMaxAge,
		Replicas:    w.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("lockqueue: stream %s: %w", DeadStream, err)
	}
	cons, err := queue.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       Consumer,
		Description:   "Switchyard lock service replicas granting queued acquires",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.cfg.AckWait,
		MaxDeliver:    w.cfg.MaxDeliver,
		MaxAckPending: w.cfg.MaxAckPending,
		FilterSubject: QueueSubject,
		Replicas:      w.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("lockqueue: consumer %s: %w", Consumer, err)
	}
	w.mu.Lock()
	w.queue, w.cons = queue, cons
	w.mu.Unlock()
	return nil
}

// recreate runs ensure for a puller that found the queue or its
// consumer, failed, gone, unless another puller has already replaced
// failed: one recreation, not one per puller.
func (w *Worker) recreate(failed jetstream.Consumer) error {
	w.recreating.Lock()
	defer w.recreating.Unlock()
	if w.consumer() != failed {
		return nil
	}
	return w.ensure(w.ctx)
}

func (w *Worker) consumer() jetstream.Consumer {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cons
}

func (w *Worker) stream() jetstream.Stream {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queue
}

// pull takes one message at a time and handles it: each of the
// Concurrency pullers is one request in flight at most, and nothing is
// buffered beyond them (a buffered message's AckWait would run while it
// sat there).
func (w *Worker) pull() {
	backoff := 100 * time.Millisecond
	for w.ctx.Err() == nil {
		cons := w.consumer()
		msg, err := cons.Next(jetstream.FetchContext(w.ctx))
		switch {
		case err == nil:
			backoff = 100 * time.Millisecond
			w.handle(msg)
			continue
		case w.ctx.Err() != nil:
			return
		case errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrNoMessages):
			continue
		}
		w.log.Warn("lockqueue: pulling a message", "err", err)
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrNoResponders) {
			if err := w.recreate(cons); err != nil && w.ctx.Err() == nil {
				w.log.Warn("lockqueue: recreating the queue", "err", err)
			}
		}
		select {
		case <-time.After(backoff):
		case <-w.ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// request is one queued acquire as a Worker sees it.
type request struct {
	msg        jetstream.Msg // nil for a message read from the stream (advisory, sweep)
	seq        uint64        // in QueueStream
	deliveries uint64
	stored     time.Time // when JetStream stored it
	header     nats.Header
	data       []byte

	meta    mq.Meta
	replyTo string // "" when missing or not a subject
	rid     string // Nats-Msg-Id
	req     *lockv1.AcquireRequest

	deadline time.Time
	capped   bool // deadline is MaxWait's cap, not the requester's own
}

// handle decides the fate of one delivery; it always ends the delivery
// with an Ack, a Nak or a Term (or, if those fail, leaves it to AckWait).
func (w *Worker) handle(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		w.log.Error("lockqueue: a message without JetStream metadata", "subject", m.Subject(), "err", err)
		return
	}
	r := &request{msg: m, seq: md.Sequence.Stream, deliveries: md.NumDelivered, stored: md.Timestamp, header: m.Headers(), data: m.Data()}
	if err := w.parse(r); err != nil {
		w.reject(r, err, "bad request: ")
		return
	}
	if !time.Now().Before(r.deadline) {
		w.expired(r)
		return
	}
	w.acquire(r)
}

// parse reads r's headers and body (see the package doc). Its errors are
// INVALID_ARGUMENT: the message can never be granted.
func (w *Worker) parse(r *request) error {
	r.replyTo = replyTarget(r.header)
	r.rid = mq.HeaderValue(r.header, HeaderMsgID)
	meta, err := mq.ParseMeta(r.header, r.stored)
	r.meta = meta
	if err != nil && status.Code(err) != codes.DeadlineExceeded { // a deadline before the message was stored is past: handled below
		return err
	}
	if rt := mq.HeaderValue(r.header, HeaderReplyTo); r.replyTo == "" && rt != "" {
		return status.Errorf(codes.InvalidArgument, "%s %s is not a subject one can publish to", HeaderReplyTo, mq.Quote(rt))
	}
	req := &lockv1.AcquireRequest{}
	if err := mq.DecodeBody(r.header, r.data, req); err != nil {
		return err
	}
	switch {
	case r.replyTo == "":
		return status.Errorf(codes.InvalidArgument, "no %s header: nowhere to send the outcome", HeaderReplyTo)
	case r.rid == "":
		return status.Errorf(codes.InvalidArgument, "no %s header: a queued acquire carries its request id there", HeaderMsgID)
	}
	id, err := mq.MergeRequestID(req.GetRequestId(), r.rid, HeaderMsgID)
	if err != nil {
		return err
	}
	req.RequestId = id
	if meta.RequestID != "" && meta.RequestID != r.rid {
		return status.Errorf(codes.InvalidArgument, "request id %s in %s and %s in %s differ", mq.Quote(meta.RequestID), mq.HeaderRequestID, mq.Quote(r.rid), HeaderMsgID)
	}
	req.Wait = true
	r.req = req
	r.deadline, r.capped = r.stored.Add(w.cfg.MaxWait), true
	if d := meta.Deadline; !d.IsZero() && d.Before(r.deadline) {
		r.deadline, r.capped = d, false
	}
	return nil
}

// acquire waits for the lock at this replica until r's deadline,
// reporting progress to JetStream meanwhile, and answers.
func (w *Worker) acquire(r *request) {
	ctx, cancel := context.WithDeadline(w.ctx, r.deadline)
	defer cancel()
	stop := w.inProgress(r.msg)
	resp, err := w.srv.Acquire(ctx, r.req)
	lease := resp.GetLease()
	if replica, ok := lockclient.OtherReplica(err); ok && replica != w.srv.Replica() {
		// The request's node lives at another replica: a delivery there
		// is still waiting, or was granted and could not send its reply.
		// Ask that replica's front door, which answers with the lease.
		lease, err = w.forward(ctx, replica, r)
		if err != nil && w.ctx.Err() == nil && ctx.Err() == nil {
			stop()
			w.log.Info("lockqueue: the request's lease is at another replica, which did not answer here; dropped",
				"seq", r.seq, "request_id", r.rid, "lock", r.req.GetName(), "replica_holding", replica, "err", err)
			w.metrics.drop(dropOtherReplica) // before the ack, as ack says
			w.ack(r)
			return
		}
	}
	stop()
	if err == nil && lease == nil {
		err = status.Error(codes.Internal, "the lock server granted no lease")
	}
	w.outcome(ctx, r, lease, err)
}

// forward asks replica's NATS front door for the lease of r's request id.
func (w *Worker) forward(ctx context.Context, replica string, r *request) (*lockv1.Lease, error) {
	resp := &lockv1.AcquireResponse{}
	err := mq.Request(ctx, w.js.Conn(), lockmq.ReplicaSubject(replica, lockmq.OpAcquire), r.req, resp, mq.WithRequestID(r.rid))
	if err != nil {
		return nil, err
	}
	return resp.GetLease(), nil
}

// outcome answers r with what its acquire (under ctx) came to.
func (w *Worker) outcome(ctx context.Context, r *request, lease *lockv1.Lease, err error) {
	log := w.log.With("seq", r.seq, "delivery", r.deliveries, "request_id", r.rid, "lock", r.req.GetName())
	if err == nil {
		w.granted(r, lease)
		return
	}
	code := status.Code(err)
	ended := code == codes.DeadlineExceeded || code == codes.Canceled
	retryable := ended || code == codes.Unavailable || code == codes.ResourceExhausted || code == codes.Aborted
	switch {
	case code == codes.FailedPrecondition:
		log.Info("lockqueue: a duplicate of a request granted before, whose lease has ended; dropped", "err", err)
		w.metrics.drop(dropDuplicate) // before the ack, as ack says
		w.ack(r)
	case retryable && w.ctx.Err() != nil:
		// Closing: another replica takes it now.
		log.Debug("lockqueue: handing the request back: the worker is closing", "err", err)
		w.nak(r, 0)
	case ended && ctx.Err() != nil:
		w.expired(r)
	case retryable:
		w.retry(r, err)
	default:
		w.reject(r, err, "")
	}
}

// granted sends the lease to the requester and acknowledges the message.
// If the reply cannot be sent the message is delivered again, and the
// acquire then finds the same lease (here) or names this replica
// (elsewhere, whose worker asks here): the requester still gets it.
func (w *Worker) granted(r *request, lease *lockv1.Lease) {
	log := w.log.With("seq", r.seq, "request_id", r.rid, "lock", lease.GetName(), "token", lease.GetToken())
	if err := w.reply(r, &lockv1.AcquireResponse{Lease: lease}, nil); err != nil {
		log.Warn("lockqueue: cannot send a grant; it will be sent again on redelivery", "err", err)
		w.remember(r.seq, "sending the grant: "+err.Error())
		w.nak(r, w.retryDelay(r))
		return
	}
	w.metrics.grant() // answered; counted before the ack, as ack says
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	if err := r.msg.DoubleAck(ctx); err != nil {
		log.Warn("lockqueue: acknowledging a grant; a redelivery will be answered with the same lease", "err", err)
	}
	w.forget(r.seq)
	log.Debug("lockqueue: granted")
}

// expired drops r, whose deadline has passed: never granted, not dead.
// A requester that still waits (the deadline was MaxWait's cap) is told.
func (w *Worker) expired(r *request) {
	w.log.Debug("lockqueue: the request's deadline has passed; dropped", "seq", r.seq, "request_id", r.rid, "deadline", r.deadline, "capped", r.capped)
	if r.capped {
		err := status.Errorf(codes.DeadlineExceeded, "the request waited in the queue for %v, the most it may (MaxWait)", w.cfg.MaxWait)
		if rerr := w.reply(r, nil, err); rerr != nil {
			w.log.Warn("lockqueue: cannot send a reply", "seq", r.seq, "request_id", r.rid, "err", rerr)
		}
	}
	w.metrics.drop(dropDeadline) // before the ack, as ack says
	w.ack(r)
	w.forget(r.seq)
}

// retry hands r back for a later delivery, remembering why.
func (w *Worker) retry(r *request, err error) {
	d := w.retryDelay(r)
	w.log.Debug("lockqueue: retrying later", "seq", r.seq, "delivery", r.deliveries, "request_id", r.rid, "delay", d, "err", err)
	w.remember(r.seq, errorText(err))
	w.nak(r, d)
}

// retryDelay is RetryDelay doubled for each delivery before this one, at
// most AckWait.
func (w *Worker) retryDelay(r *request) time.Duration {
	d := w.cfg.RetryDelay
	for i := uint64(1); i < r.deliveries && d < w.cfg.AckWait; i++ {
		d *= 2
	}
	return min(d, w.cfg.AckWait)
}

// reject dead-letters r with err's status as the reason, tells the
// requester, and terminates the message. Without a dead letter it does
// not terminate: the message is delivered again. An err that is not a
// status is INTERNAL: its text goes in the dead letter's reason, and the
// requester gets mq's "internal error" without it.
func (w *Worker) reject(r *request, err error, prefix string) {
	st, ok := status.FromError(err)
	if !ok {
		st = status.New(codes.Internal, err.Error())
	}
	reason := fmt.Sprintf("%s%s: %s", prefix, codeName(st.Code()), st.Message())
	log := w.log.With("seq", r.seq, "delivery", r.deliveries, "request_id", r.rid, "reason", reason)
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	dup, derr := w.deadLetter(ctx, r.header, r.data, r.seq, r.deliveries, reason, st.Code())
	if derr != nil {
		log.Error("lockqueue: cannot dead-letter a message; it will be delivered again", "err", derr)
		w.remember(r.seq, reason)
		w.nak(r, w.retryDelay(r))
		return
	}
	if !dup {
		log.Warn("lockqueue: dead-lettered")
		if rerr := w.reply(r, nil, err); rerr != nil {
			log.Warn("lockqueue: cannot send a reply", "err", rerr)
		}
		w.metrics.died()
	}
	if terr := r.msg.TermWithReason(mq.HeaderText(reason, 256)); terr != nil {
		log.Warn("lockqueue: terminating a dead-lettered message", "err", terr)
	}
	w.forget(r.seq)
}

// ack ends r's delivery with an Ack. Its callers count r (metrics)
// before, as reject and abandonedMsg count a dead letter before the Term
// or delete: once JetStream has removed a message from the work queue,
// the Worker that handled it has counted it. Counting first counts
// nothing twice that counting after would not: the count never depended
// on the ack's outcome (an Ack is not confirmed; a failed or lost one
// means a redelivery, handled and counted anew either way).
func (w *Worker) ack(r *request) {
	if err := r.msg.Ack(); err != nil {
		w.log.Warn("lockqueue: acknowledging a message", "seq", r.seq, "err", err)
	}
}

func (w *Worker) nak(r *request, delay time.Duration) {
	var err error
	if delay > 0 {
		err = r.msg.NakWithDelay(delay)
	} else {
		err = r.msg.Nak()
	}
	if err != nil {
		w.log.Warn("lockqueue: handing a message back; AckWait will", "seq", r.seq, "err", err)
	}
}

// inProgress tells JetStream every AckWait/3 that m is being worked on,
// until the function it returns is called.
func (w *Worker) inProgress(m jetstream.Msg) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(w.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := m.InProgress(); err != nil {
					w.log.Debug("lockqueue: reporting progress", "err", err)
				}
			}
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
}

// reply publishes r's outcome to its reply subject (mq.PublishReply):
// resp, or the error reply of err, in the encoding the request asked for,
// with its request id (r.rid; PublishReply leaves out one that may not go
// in a header). Nothing is sent for a request without a reply subject.
func (w *Worker) reply(r *request, resp proto.Message, err error) error {
	if r.replyTo == "" {
		return nil
	}
	meta := r.meta
	meta.RequestID = r.rid
	return mq.PublishReply(w.js.Conn(), r.replyTo, meta, resp, err)
}

// onAdvisory takes a max-deliveries advisory off the subscription's
// goroutine.
func (w *Worker) onAdvisory(m *nats.Msg) {
	a := maxDeliveries{arrived: time.Now()}
	if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
		w.log.Warn("lockqueue: a max-deliveries advisory that does not parse", "data", mq.Quote(string(m.Data)), "err", err)
		return
	}
	if a.Stream != QueueStream || a.Consumer != Consumer {
		return
	}
	select {
	case w.advq <- a:
	default:
		w.log.Warn("lockqueue: too many max-deliveries advisories at once; a sweep will find the message", "seq", a.StreamSeq)
	}
}

// advisories dead-letters the messages that hit MaxDeliver, as their
// advisories come and by sweeps (at the start and every SweepInterval).
func (w *Worker) advisories() {
	w.sweep()
	t := time.NewTicker(w.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case a := <-w.advq:
			w.abandoned(a.StreamSeq, a.Deliveries, a.arrived)
		case <-t.C:
			w.sweep()
		}
	}
}

// sweep dead-letters the messages that JetStream gave up on without the
// advisory having been handled. The consumer's figures tell whether there
// are any: a message stored that is neither waiting for its first
// delivery nor awaiting an acknowledgement is one. Which ones they are it
// does not tell, so the sweep takes the delivered messages stored longer
// ago than MaxWait plus AckWait: none of them can be granted any more
// (MaxWait caps every deadline), and a worker that still had one would
// have dropped it by then.
func (w *Worker) sweep() {
	ctx, cancel := context.WithTimeout(w.ctx, apiTimeout)
	defer cancel()
	queue := w.stream()
	ci, err := w.consumer().Info(ctx)
	if err != nil {
		if w.ctx.Err() == nil {
			w.log.Warn("lockqueue: sweep: consumer info", "err", err)
		}
		return
	}
	si, err := queue.Info(ctx)
	if err != nil {
		if w.ctx.Err() == nil {
			w.log.Warn("lockqueue: sweep: stream info", "err", err)
		}
		return
	}
	if si.State.Msgs <= ci.NumPending+uint64(ci.NumAckPending) {
		return // none given up on
	}
	cutoff := time.Now().Add(-w.cfg.MaxWait - w.cfg.AckWait)
	for seq, n := si.State.FirstSeq, 0; seq <= ci.Delivered.Stream && n < maxSweep && w.ctx.Err() == nil; n++ {
		raw, err := queue.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(QueueSubject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return
		}
		if err != nil {
			if w.ctx.Err() == nil {
				w.log.Warn("lockqueue: sweep: reading the queue", "seq", seq, "err", err)
			}
			return
		}
		if raw.Sequence > ci.Delivered.Stream || raw.Time.After(cutoff) {
			return // not delivered yet, or too recent to tell
		}
		w.abandonedMsg(ctx, raw, uint64(ci.Config.MaxDeliver), true)
		seq = raw.Sequence + 1
	}
}

// abandoned dead-letters message seq of QueueStream, which JetStream
// delivered deliveries times and gave up on, as its advisory (received
// at arrived) said. Not knowing the last error, it waits until
// unknownErrorGrace after arrived: a backlog of advisories waits once, not
// once each.
func (w *Worker) abandoned(seq, deliveries uint64, arrived time.Time) {
	if _, known := w.lastError(seq); !known {
		if wait := time.Until(arrived.Add(unknownErrorGrace)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-w.ctx.Done():
				t.Stop()
				return
			}
		}
	}
	ctx, cancel := context.WithTimeout(w.ctx, apiTimeout)
	defer cancel()
	raw, err := w.stream().GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		w.forget(seq)
		return // dead-lettered by another worker already
	}
	if err != nil {
		if w.ctx.Err() == nil {
			w.log.Warn("lockqueue: reading a message that hit MaxDeliver; a sweep will", "seq", seq, "err", err)
		}
		return
	}
	w.abandonedMsg(ctx, raw, deliveries, false)
}

// abandonedMsg dead-letters raw with the reason, answers its requester
// UNAVAILABLE (the first time) and deletes it from the work queue.
func (w *Worker) abandonedMsg(ctx context.Context, raw *jetstream.RawStreamMsg, deliveries uint64, swept bool) {
	seq := raw.Sequence
	last, known := w.lastError(seq)
	if !known {
		last = "the last error is not known here"
	}
	reason := fmt.Sprintf("delivered %d times without success: %s", deliveries, last)
	if swept {
		reason = fmt.Sprintf("given up on by JetStream after at most %d deliveries (found by a sweep: its advisory was missed): %s", deliveries, last)
	}
	log := w.log.With("seq", seq, "request_id", mq.HeaderValue(raw.Header, HeaderMsgID), "reason", reason)
	dup, err := w.deadLetter(ctx, raw.Header, raw.Data, seq, deliveries, reason, codes.Unavailable)
	if err != nil {
		log.Error("lockqueue: cannot dead-letter a message that hit MaxDeliver; a sweep will", "err", err)
		return
	}
	if !dup {
		log.Warn("lockqueue: dead-lettered")
		r := &request{seq: seq, header: raw.Header, replyTo: replyTarget(raw.Header), rid: mq.HeaderValue(raw.Header, HeaderMsgID)}
		r.meta, _ = mq.ParseMeta(raw.Header, raw.Time)
		if rerr := w.reply(r, nil, status.Error(codes.Unavailable, reason)); rerr != nil {
			log.Warn("lockqueue: cannot send a reply", "err", rerr)
		}
		w.metrics.died()
	}
	if err := w.stream().DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Debug("lockqueue: deleting a dead-lettered message from the queue", "err", err)
	}
	w.forget(seq)
}

// remember records why the latest delivery of seq failed here, for its
// dead letter.
func (w *Worker) remember(seq uint64, why string) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if _, ok := w.lastErr[seq]; !ok {
		if old := w.errOrder[w.errNext]; old != 0 {
			delete(w.lastErr, old)
		}
		w.errOrder[w.errNext] = seq
		w.errNext = (w.errNext + 1) % len(w.errOrder)
	}
	w.lastErr[seq] = why
}

func (w *Worker) lastError(seq uint64) (string, bool) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	why, ok := w.lastErr[seq]
	return why, ok
}

// forget drops seq's last error (its ring slot is reused in turn).
func (w *Worker) forget(seq uint64) {
	w.errMu.Lock()
	delete(w.lastErr, seq)
	w.errMu.Unlock()
}

// errorText is err's status as one line: "UNAVAILABLE: message".
func errorText(err error) string {
	st := status.Convert(err)
	return fmt.Sprintf("%s: %s", codeName(st.Code()), st.Message())
}

// codeName is c's canonical name, as google.rpc.Code spells it
// ("INVALID_ARGUMENT").
func codeName(c codes.Code) string { return rpccode.Code(c).String() }
