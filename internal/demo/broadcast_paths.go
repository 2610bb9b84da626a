package demo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// bcTransport is how one path reaches its subscribers: it starts and
// stops them, and sends an event to all of them as the path's producer
// does. join and leave may run for several subscribers at once.
type bcTransport interface {
	// join starts s and returns once the path can reach it.
	join(ctx context.Context, s *bcSub) error
	// leave stops s for good: deregistered, unsubscribed, its consumer
	// deleted.
	leave(ctx context.Context, s *bcSub) error
	// crash takes s offline abruptly, keeping whatever place the path
	// keeps for it (its registry entry, its durable consumer).
	crash(ctx context.Context, s *bcSub) error
	// rejoin brings s back after crash, and returns once the producer can
	// reach it again.
	rejoin(ctx context.Context, s *bcSub) error
	// await returns once the producer reaches exactly n subscribers.
	await(ctx context.Context, n int) error
	// send sends ev to every subscriber.
	send(ctx context.Context, ev *flashsalev1.SaleEvent) bcSend
	// durable says whether every delivery the path took arrives in the
	// end, whether or not its subscriber was there at the time.
	durable() bool
	// close stops every subscriber and what the path itself started.
	close(ctx context.Context) error
}

// bcDropper is a bcTransport whose subscribers have a pending-message
// limit past which their messages are dropped, and counted (core NATS).
// The run finds it by type assertion.
type bcDropper interface {
	// setPendingLimit sets s's pending-message limit (0: the default).
	setPendingLimit(s *bcSub, limit int) error
	// dropped returns the messages s's subscriptions, those closed
	// included, dropped past their pending limits.
	dropped(s *bcSub) int64
}

// bcSubs is what a path keeps per subscriber, from join to leave or
// close. It is safe for concurrent use; mu also guards what a path's
// values hold that changes after join (a NATS subscriber's connection).
type bcSubs[T any] struct {
	mu sync.Mutex
	m  map[*bcSub]T
}

// put keeps v for s.
func (ss *bcSubs[T]) put(s *bcSub, v T) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[*bcSub]T{}
	}
	ss.m[s] = v
}

// get returns what is kept for s, or an error if nothing is (s was never
// started, or has left).
func (ss *bcSubs[T]) get(s *bcSub) (T, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	v, ok := ss.m[s]
	if !ok {
		return v, fmt.Errorf("demo: broadcast: subscriber %d was never started", s.idx)
	}
	return v, nil
}

// take removes what is kept for s and returns it; ok is false if nothing
// was.
func (ss *bcSubs[T]) take(s *bcSub) (v T, ok bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	v, ok = ss.m[s]
	delete(ss.m, s)
	return v, ok
}

// takeAll removes everything kept and returns it.
func (ss *bcSubs[T]) takeAll() []T {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	all := slices.Collect(maps.Values(ss.m))
	clear(ss.m)
	return all
}

// count returns how many of the values kept match, under mu (every one,
// when match is nil).
func (ss *bcSubs[T]) count(match func(T) bool) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if match == nil {
		return len(ss.m)
	}
	n := 0
	for _, v := range ss.m {
		if match(v) {
			n++
		}
	}
	return n
}

// rpcBackoff is the Notifier's reconnect backoff: short, so that a
// subscriber back from a crash is called again soon.
var rpcBackoff = backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond}

// rpcBroadcast is the RPC path: each subscriber a SaleEventService server
// on a loopback port, registered in the registry under an instance id of
// this run's, and a flashsale.Notifier that follows them and calls each.
//
// The registration is held apart from the server (the server is started
// with no registry) so that a crash can leave it behind, as ZooKeeper
// keeps a crashed process's ephemeral node until its session times out:
// the producer keeps calling the instance and fails.
type rpcBroadcast struct {
	env      *Env
	prefix   string // of this run's instance ids
	deadline time.Duration
	notifier *flashsale.Notifier
	subs     bcSubs[*rpcSubscriber]
}

var _ bcTransport = (*rpcBroadcast)(nil)

// rpcSubscriber is one subscriber's server and registration. Only the
// call in progress for its subscriber (join, crash, rejoin, leave) uses
// it.
type rpcSubscriber struct {
	id, addr string
	reg      *registry.Registration
	srv      *runningServer // nil when not serving
}

func newRPCBroadcast(env *Env, scenario string, deadline time.Duration) (*rpcBroadcast, error) {
	prefix := env.Name(scenario, "sub") + "-"
	n, err := flashsale.NewNotifier(env.Registry,
		flashsale.WithInstanceFilter(func(inst *registryv1.Instance) bool { return strings.HasPrefix(inst.GetId(), prefix) }),
		flashsale.WithNotifierDialOptions(grpc.WithConnectParams(grpc.ConnectParams{Backoff: rpcBackoff, MinConnectTimeout: deadline})),
		flashsale.WithNotifierLogger(env.Quiet()))
	if err != nil {
		return nil, fmt.Errorf("demo: broadcast: %w", err)
	}
	return &rpcBroadcast{env: env, prefix: prefix, deadline: deadline, notifier: n}, nil
}

func (b *rpcBroadcast) join(ctx context.Context, s *bcSub) error {
	sub := &rpcSubscriber{id: fmt.Sprintf("%s%03d", b.prefix, s.idx)}
	b.subs.put(s, sub) // from now on close stops what it started
	lis, err := sub.listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := b.serve(ctx, s, sub, lis); err != nil {
		return err
	}
	return b.register(ctx, sub)
}

func (sub *rpcSubscriber) listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo: broadcast: subscriber %s: %w", sub.id, err)
	}
	return lis, nil
}

// serve serves s on lis and returns once it serves. The server lives
// until leave, crash or close, not until ctx ends.
func (b *rpcBroadcast) serve(ctx context.Context, s *bcSub, sub *rpcSubscriber, lis net.Listener) error {
	srv := flashsale.NewEventGRPCServer(nil, s.handle, rpc.WithLogger(b.env.Quiet()), rpc.WithMetrics(nil))
	rs, err := startServer(ctx, srv, lis)
	if err != nil {
		return fmt.Errorf("demo: broadcast: subscriber %s: %w", sub.id, err)
	}
	sub.srv, sub.addr = rs, lis.Addr().String()
	return nil
}

func (b *rpcBroadcast) register(ctx context.Context, sub *rpcSubscriber) error {
	reg, err := b.env.Registry.Register(ctx, &registryv1.Instance{Id: sub.id, Service: flashsale.EventServiceName, Address: sub.addr})
	if err != nil {
		return fmt.Errorf("demo: broadcast: registering subscriber %s: %w", sub.id, err)
	}
	sub.reg = reg
	return nil
}

// deregister removes sub's registration, if it has one, so that the
// producer stops calling it.
func (sub *rpcSubscriber) deregister(ctx context.Context) error {
	if sub.reg == nil {
		return nil
	}
	err := sub.reg.Deregister(ctx)
	sub.reg = nil
	if err != nil {
		return fmt.Errorf("demo: broadcast: deregistering subscriber %s: %w", sub.id, err)
	}
	return nil
}

// stopServing ends sub's server gracefully and waits for it.
func (sub *rpcSubscriber) stopServing() error {
	if sub.srv == nil {
		return nil
	}
	err := sub.srv.shutdown()
	sub.srv = nil
	if err != nil {
		return fmt.Errorf("demo: broadcast: subscriber %s: %w", sub.id, err)
	}
	return nil
}

// release deregisters sub (so that the producer stops calling it), then
// stops its server.
func (sub *rpcSubscriber) release(ctx context.Context) error {
	return errors.Join(sub.deregister(ctx), sub.stopServing())
}

func (b *rpcBroadcast) leave(ctx context.Context, s *bcSub) error {
	if sub, ok := b.subs.take(s); ok {
		return sub.release(ctx)
	}
	return nil
}

// crash stops s's server as a crashed process stops: at once, its
// connections cut. Its registration stays.
func (b *rpcBroadcast) crash(_ context.Context, s *bcSub) error {
	sub, err := b.subs.get(s)
	if err != nil || sub.srv == nil {
		return err
	}
	err = sub.srv.crash()
	sub.srv = nil
	if err != nil {
		return fmt.Errorf("demo: broadcast: crashing subscriber %s: %w", sub.id, err)
	}
	return nil
}

// rejoin serves s again at the address its registration gives (or, if
// that port has been taken meanwhile, at a new one, registered anew), then
// gives the Notifier's connection, backing off since the crash, time to
// reconnect (three times rpcBackoff's longest pause). A call made before
// it has fails, and its event is missed.
func (b *rpcBroadcast) rejoin(ctx context.Context, s *bcSub) error {
	sub, err := b.subs.get(s)
	if err != nil {
		return err
	}
	lis, err := sub.listen(sub.addr)
	if err != nil {
		// The port is gone: a new one, and a new registration.
		if err := sub.deregister(ctx); err != nil {
			return err
		}
		if lis, err = sub.listen("127.0.0.1:0"); err != nil {
			return err
		}
	}
	if err := b.serve(ctx, s, sub, lis); err != nil {
		return err
	}
	if sub.reg == nil {
		if err := b.register(ctx, sub); err != nil {
			return err
		}
	}
	return sleepUntil(ctx, time.Now().Add(3*rpcBackoff.MaxDelay))
}

func (b *rpcBroadcast) await(ctx context.Context, n int) error {
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.notifier.Await(actx, n); err != nil {
		return fmt.Errorf("demo: broadcast: %w", err)
	}
	return nil
}

func (b *rpcBroadcast) send(ctx context.Context, ev *flashsalev1.SaleEvent) bcSend {
	cctx, cancel := context.WithTimeout(ctx, b.deadline)
	defer cancel()
	start := time.Now()
	ds := b.notifier.Notify(cctx, ev)
	out := bcSend{sent: true, calls: len(ds), took: time.Since(start)}
	for _, d := range ds {
		if d.Err != nil {
			out.errs++
		}
	}
	out.accepted, out.rejected = out.calls-out.errs, out.errs
	return out
}

func (*rpcBroadcast) durable() bool { return false }

// close stops the Notifier, then every subscriber.
func (b *rpcBroadcast) close(ctx context.Context) error {
	errs := []error{b.notifier.Close()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sub := range b.subs.takeAll() {
		wg.Go(func() {
			err := sub.release(ctx)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// natsPath is what the two NATS paths share: each subscriber has a
// connection of its own, and on it what subscribe makes; crash closes the
// connection, rejoin makes a new one. The producer publishes on Env's
// connection.
type natsPath struct {
	env      *Env
	name     string // of the subscribers' connections: name-NNN
	deadline time.Duration
	// subscribe subscribes s on nc.
	subscribe func(ctx context.Context, nc *nats.Conn, s *bcSub) (*flashsale.EventSubscriber, error)
	// countsDrops says that the path counts the messages nats.go drops
	// past a subscription's pending limit, and so does not log the
	// ErrSlowConsumer that reports them.
	countsDrops bool

	subs bcSubs[*natsSubscriber]
}

// natsSubscriber is one subscriber's connection and subscription (nil
// while it is offline), guarded by its path's subs.mu.
type natsSubscriber struct {
	nc      *nats.Conn
	es      *flashsale.EventSubscriber
	dropped int64 // by its subscriptions closed before (core NATS)
}

func (p *natsPath) join(ctx context.Context, s *bcSub) error {
	sub := &natsSubscriber{}
	p.subs.put(s, sub)
	return p.connect(ctx, s, sub)
}

// connect gives s a new connection and subscription, and returns once the
// server has the subscription (for JetStream, its first pull request).
func (p *natsPath) connect(ctx context.Context, s *bcSub, sub *natsSubscriber) error {
	nc, err := p.env.DialNATS(fmt.Sprintf("%s-%03d", p.name, s.idx))
	if err != nil {
		return err
	}
	// nats.go's default handler writes to stderr.
	quiet, countsDrops := p.env.Quiet(), p.countsDrops
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if !countsDrops || !errors.Is(err, nats.ErrSlowConsumer) {
			quiet.Error("demo: broadcast: subscriber's NATS connection", "err", err)
		}
	})
	es, err := p.subscribe(ctx, nc, s)
	if err != nil {
		nc.Close()
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, p.deadline)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		_ = es.Close()
		nc.Close()
		return fmt.Errorf("demo: broadcast: subscriber %d: subscribing: %w", s.idx, err)
	}
	p.subs.mu.Lock()
	sub.nc, sub.es = nc, es
	p.subs.mu.Unlock()
	return nil
}

// disconnect closes sub's subscription, makes sure the server has seen it
// go (so that it hands nothing more to it), and closes the connection.
func (p *natsPath) disconnect(sub *natsSubscriber) error {
	p.subs.mu.Lock()
	nc, es := sub.nc, sub.es
	sub.nc, sub.es = nil, nil
	if es != nil && es.Subscription() != nil {
		if d, err := es.Subscription().Dropped(); err == nil {
			sub.dropped += int64(d)
		}
	}
	p.subs.mu.Unlock()
	if es == nil {
		return nil
	}
	err := es.Close()
	_ = nc.FlushTimeout(p.deadline)
	nc.Close()
	return err
}

func (p *natsPath) leave(_ context.Context, s *bcSub) error {
	if sub, ok := p.subs.take(s); ok {
		return p.disconnect(sub)
	}
	return nil
}

// crash closes s's connection. What the server keeps for it (a durable
// consumer) stays.
func (p *natsPath) crash(_ context.Context, s *bcSub) error {
	sub, err := p.subs.get(s)
	if err != nil {
		return err
	}
	return p.disconnect(sub)
}

// rejoin subscribes s anew, on a new connection.
func (p *natsPath) rejoin(ctx context.Context, s *bcSub) error {
	sub, err := p.subs.get(s)
	if err != nil {
		return err
	}
	return p.connect(ctx, s, sub)
}

func (*natsPath) await(context.Context, int) error { return nil }

// closeSubs disconnects every subscriber.
func (p *natsPath) closeSubs() error {
	var errs []error
	for _, sub := range p.subs.takeAll() {
		errs = append(errs, p.disconnect(sub))
	}
	return errors.Join(errs...)
}

// natsBroadcast is the MQ path on core NATS: the producer publishes each
// event once on a subject of this run's; each subscriber has a connection
// and a subscription of its own.
type natsBroadcast struct {
	natsPath
	subject string
}

var (
	_ bcTransport = (*natsBroadcast)(nil)
	_ bcDropper   = (*natsBroadcast)(nil)
)

func newNATSBroadcast(env *Env, scenario string, deadline time.Duration) *natsBroadcast {
	b := &natsBroadcast{natsPath: natsPath{env: env, name: scenario + "-sub", deadline: deadline, countsDrops: true},
		subject: "flashsale." + env.Name(scenario) + ".events"}
	b.subscribe = b.subscribeCore
	return b
}

func (b *natsBroadcast) subscribeCore(_ context.Context, nc *nats.Conn, s *bcSub) (*flashsale.EventSubscriber, error) {
	es, err := flashsale.SubscribeEvents(nc, b.subject, s.handle, flashsale.WithSubscriberLogger(b.env.Quiet()))
	if err != nil {
		return nil, fmt.Errorf("demo: broadcast: %w", err)
	}
	return es, nil
}

// send publishes ev once and flushes: the producer's time runs until the
// server has the message (a PING/PONG round trip), not until any
// subscriber does. The deliveries it takes are the subscriptions in
// place then.
func (b *natsBroadcast) send(ctx context.Context, ev *flashsalev1.SaleEvent) bcSend {
	n := b.subs.count(func(sub *natsSubscriber) bool { return sub.es != nil })
	cctx, cancel := context.WithTimeout(ctx, b.deadline)
	defer cancel()
	start := time.Now()
	err := flashsale.PublishEvent(b.env.NATSConn, b.subject, ev)
	if err == nil {
		err = b.env.NATSConn.FlushWithContext(cctx)
	}
	out := bcSend{sent: true, calls: 1, took: time.Since(start)}
	if err != nil {
		out.errs, out.rejected = 1, n
	} else {
		out.accepted = n
	}
	return out
}

func (b *natsBroadcast) setPendingLimit(s *bcSub, limit int) error {
	b.subs.mu.Lock()
	defer b.subs.mu.Unlock()
	sub := b.subs.m[s]
	if sub == nil || sub.es == nil {
		return fmt.Errorf("demo: broadcast: subscriber %d is not subscribed", s.idx)
	}
	msgs := limit
	if limit == 0 {
		msgs = nats.DefaultSubPendingMsgsLimit
	}
	if err := sub.es.Subscription().SetPendingLimits(msgs, nats.DefaultSubPendingBytesLimit); err != nil {
		return fmt.Errorf("demo: broadcast: pending limit: %w", err)
	}
	return nil
}

func (b *natsBroadcast) dropped(s *bcSub) int64 {
	b.subs.mu.Lock()
	defer b.subs.mu.Unlock()
	sub := b.subs.m[s]
	if sub == nil {
		return 0
	}
	n := sub.dropped
	if sub.es != nil {
		if d, err := sub.es.Subscription().Dropped(); err == nil {
			n += int64(d)
		}
	}
	return n
}

func (*natsBroadcast) durable() bool { return false }

func (b *natsBroadcast) close(context.Context) error { return b.closeSubs() }

// jsPullBatch is how many messages a JetStream subscriber buffers: few,
// so that the slow one's wait in its buffer stays well inside AckWait.
const jsPullBatch = 16

// jsBroadcast is the JetStream path: a stream of this run's on its own
// subject; each subscriber a durable consumer (explicit acks, new
// messages from when it joined) consumed on a connection of its own. A
// subscriber that is away keeps its consumer, and with it its place: a
// subscriber is in subs exactly while its consumer exists.
type jsBroadcast struct {
	natsPath
	stream, subject string
	ackWait         time.Duration
}

var _ bcTransport = (*jsBroadcast)(nil)

func newJetStreamBroadcast(ctx context.Context, env *Env, scenario string, cfg BroadcastConfig) (*jsBroadcast, error) {
	name := env.Name(scenario)
	b := &jsBroadcast{natsPath: natsPath{env: env, name: scenario + "-js-sub", deadline: cfg.Deadline},
		stream: "BROADCAST_" + name, subject: "flashsale." + name + ".stored-events",
		ackWait: max(10*time.Second, 2*jsPullBatch*cfg.SlowDelay)}
	b.subscribe = b.consume
	_, err := env.JetStream.CreateStream(ctx, jetstream.StreamConfig{
		Name:        b.stream,
		Description: "switchyard yard demo broadcast: sale events (switchyard.flashsale.v1.SaleEvent)",
		Subjects:    []string{b.subject},
		Storage:     jetstream.MemoryStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  2 * time.Minute,
		MaxAge:      time.Hour,
	})
	if err != nil {
		// The server may have made it though the call failed (ctx ended).
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if derr := env.JetStream.DeleteStream(dctx, b.stream); derr != nil && !errors.Is(derr, jetstream.ErrStreamNotFound) {
			err = errors.Join(err, derr)
		}
		return nil, fmt.Errorf("demo: broadcast: stream %s: %w", b.stream, err)
	}
	return b, nil
}

// jsConsumer returns s's durable consumer's name.
func jsConsumer(s *bcSub) string { return fmt.Sprintf("sub-%03d", s.idx) }

// join creates s's durable consumer, then consumes it.
func (b *jsBroadcast) join(ctx context.Context, s *bcSub) error {
	_, err := b.env.JetStream.CreateOrUpdateConsumer(ctx, b.stream, jetstream.ConsumerConfig{
		Durable:       jsConsumer(s),
		Description:   "switchyard yard demo broadcast: one subscriber",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.ackWait,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		MaxDeliver:    -1,
	})
	if err != nil {
		return fmt.Errorf("demo: broadcast: consumer %s: %w", jsConsumer(s), err)
	}
	return b.natsPath.join(ctx, s)
}

// consume consumes s's consumer through nc.
func (b *jsBroadcast) consume(ctx context.Context, nc *nats.Conn, s *bcSub) (*flashsale.EventSubscriber, error) {
	fail := func(err error) (*flashsale.EventSubscriber, error) {
		return nil, fmt.Errorf("demo: broadcast: consumer %s: %w", jsConsumer(s), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	cons, err := js.Consumer(ctx, b.stream, jsConsumer(s))
	if err != nil {
		return fail(err)
	}
	es, err := flashsale.ConsumeEvents(cons, s.handle, flashsale.WithSubscriberLogger(b.env.Quiet()),
		flashsale.WithConsumeOptions(jetstream.PullMaxMessages(jsPullBatch)))
	if err != nil {
		return fail(err)
	}
	return es, nil
}

// leave disconnects s and deletes its consumer.
func (b *jsBroadcast) leave(ctx context.Context, s *bcSub) error {
	sub, ok := b.subs.take(s)
	if !ok {
		return nil
	}
	errs := []error{b.disconnect(sub)}
	if err := b.env.JetStream.DeleteConsumer(ctx, b.stream, jsConsumer(s)); err != nil {
		errs = append(errs, fmt.Errorf("demo: broadcast: deleting consumer %s: %w", jsConsumer(s), err))
	}
	return errors.Join(errs...)
}

// send publishes ev once; the producer's time runs until the stream has
// stored it. The deliveries it takes are the consumers that exist then,
// their subscribers there or not.
func (b *jsBroadcast) send(ctx context.Context, ev *flashsalev1.SaleEvent) bcSend {
	n := b.subs.count(nil)
	cctx, cancel := context.WithTimeout(ctx, b.deadline)
	defer cancel()
	start := time.Now()
	_, err := flashsale.PublishEventJetStream(cctx, b.env.JetStream, b.subject, ev)
	out := bcSend{sent: true, calls: 1, took: time.Since(start)}
	if err != nil {
		out.errs, out.rejected = 1, n
	} else {
		out.accepted = n
	}
	return out
}

func (*jsBroadcast) durable() bool { return true }

// close stops every subscriber, then deletes the stream and with it the
// consumers.
func (b *jsBroadcast) close(ctx context.Context) error {
	errs := []error{b.closeSubs()}
	if err := b.env.JetStream.DeleteStream(ctx, b.stream); err != nil {
		errs = append(errs, fmt.Errorf("demo: broadcast: deleting stream %s: %w", b.stream, err))
	}
	return errors.Join(errs...)
}
