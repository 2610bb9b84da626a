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
	"sync/atomic"
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
	// setPendingLimit sets s's pending-message limit (0: the default)
	// where the path has one (core NATS).
	setPendingLimit(s *bcSub, limit int) error
	// dropped returns the messages s's subscriptions dropped past their
	// pending limits (core NATS).
	dropped(s *bcSub) int64
	// durable says whether every delivery the path took arrives in the
	// end, whether or not its subscriber was there at the time.
	durable() bool
	// close stops every subscriber and what the path itself started.
	close(ctx context.Context) error
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

	mu   sync.Mutex
	subs map[*bcSub]*rpcSubscriber
}

var _ bcTransport = (*rpcBroadcast)(nil)

// rpcSubscriber is one subscriber's server and registration.
type rpcSubscriber struct {
	id, addr string
	reg      *registry.Registration
	stop     context.CancelFunc // ends Serve (a graceful stop); nil when not serving
	srv      *rpc.Server
	served   chan error
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
	return &rpcBroadcast{env: env, prefix: prefix, deadline: deadline, notifier: n, subs: map[*bcSub]*rpcSubscriber{}}, nil
}

func (b *rpcBroadcast) join(ctx context.Context, s *bcSub) error {
	sub := &rpcSubscriber{id: fmt.Sprintf("%s%03d", b.prefix, s.idx)}
	b.mu.Lock()
	b.subs[s] = sub // from now on close stops what it started
	b.mu.Unlock()
	if err := b.serve(ctx, s, sub, "127.0.0.1:0"); err != nil {
		return err
	}
	return b.register(ctx, sub)
}

// serve starts s's server on addr and returns once it serves.
func (b *rpcBroadcast) serve(ctx context.Context, s *bcSub, sub *rpcSubscriber, addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("demo: broadcast: subscriber %s: %w", sub.id, err)
	}
	srv := flashsale.NewEventGRPCServer(nil, s.handle, rpc.WithLogger(b.env.Quiet()), rpc.WithMetrics(nil))
	// The server lives until leave, crash or close, not until ctx ends.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, lis) }()
	sub.srv, sub.stop, sub.served, sub.addr = srv, stop, served, lis.Addr().String()
	select {
	case <-srv.Ready():
		return nil
	case err := <-served:
		served <- err // for stopServing
		_ = lis.Close()
		return fmt.Errorf("demo: broadcast: subscriber %s stopped before it served: %w", sub.id, err)
	case <-ctx.Done():
		return fmt.Errorf("demo: broadcast: subscriber %s not serving: %w", sub.id, ctx.Err())
	}
}

func (b *rpcBroadcast) register(ctx context.Context, sub *rpcSubscriber) error {
	reg, err := b.env.Registry.Register(ctx, &registryv1.Instance{Id: sub.id, Service: flashsale.EventServiceName, Address: sub.addr})
	if err != nil {
		return fmt.Errorf("demo: broadcast: registering subscriber %s: %w", sub.id, err)
	}
	sub.reg = reg
	return nil
}

// stopServing ends sub's server gracefully and waits for it.
func (sub *rpcSubscriber) stopServing() error {
	if sub.stop == nil {
		return nil
	}
	sub.stop()
	err := <-sub.served
	sub.srv, sub.stop, sub.served = nil, nil, nil
	if err != nil {
		return fmt.Errorf("demo: broadcast: subscriber %s: %w", sub.id, err)
	}
	return nil
}

// release deregisters sub (so that the producer stops calling it), then
// stops its server.
func (b *rpcBroadcast) release(ctx context.Context, sub *rpcSubscriber) error {
	var errs []error
	if sub.reg != nil {
		if err := sub.reg.Deregister(ctx); err != nil {
			errs = append(errs, fmt.Errorf("demo: broadcast: deregistering subscriber %s: %w", sub.id, err))
		}
		sub.reg = nil
	}
	errs = append(errs, sub.stopServing())
	return errors.Join(errs...)
}

func (b *rpcBroadcast) take(s *bcSub) *rpcSubscriber {
	b.mu.Lock()
	defer b.mu.Unlock()
	sub := b.subs[s]
	delete(b.subs, s)
	return sub
}

func (b *rpcBroadcast) get(s *bcSub) (*rpcSubscriber, error) { return started(&b.mu, b.subs, s) }

// started returns what a path keeps for s in subs, under mu, or an error
// if s was never started there.
func started[T any](mu *sync.Mutex, subs map[*bcSub]T, s *bcSub) (T, error) {
	mu.Lock()
	defer mu.Unlock()
	sub, ok := subs[s]
	if !ok {
		return sub, fmt.Errorf("demo: broadcast: subscriber %d was never started", s.idx)
	}
	return sub, nil
}

func (b *rpcBroadcast) leave(ctx context.Context, s *bcSub) error {
	if sub := b.take(s); sub != nil {
		return b.release(ctx, sub)
	}
	return nil
}

// crash stops s's server as a crashed process stops: at once, its
// connections cut. Its registration stays.
func (b *rpcBroadcast) crash(_ context.Context, s *bcSub) error {
	sub, err := b.get(s)
	if err != nil || sub.srv == nil {
		return err
	}
	sub.srv.GRPC().Stop()
	err = <-sub.served
	sub.stop()
	sub.srv, sub.stop, sub.served = nil, nil, nil
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
	sub, err := b.get(s)
	if err != nil {
		return err
	}
	if err := b.serve(ctx, s, sub, sub.addr); err != nil {
		if sub.stop != nil {
			return err
		}
		// The port is gone: a new one, and a new registration.
		if sub.reg != nil {
			if err := sub.reg.Deregister(ctx); err != nil {
				return fmt.Errorf("demo: broadcast: deregistering subscriber %s: %w", sub.id, err)
			}
			sub.reg = nil
		}
		if err := b.serve(ctx, s, sub, "127.0.0.1:0"); err != nil {
			return err
		}
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

func (*rpcBroadcast) setPendingLimit(*bcSub, int) error { return nil }
func (*rpcBroadcast) dropped(*bcSub) int64              { return 0 }
func (*rpcBroadcast) durable() bool                     { return false }

// close stops the Notifier, then every subscriber.
func (b *rpcBroadcast) close(ctx context.Context) error {
	errs := []error{b.notifier.Close()}
	b.mu.Lock()
	subs := slices.Collect(maps.Values(b.subs))
	clear(b.subs)
	b.mu.Unlock()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Go(func() {
			err := b.release(ctx, sub)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// natsBroadcast is the MQ path on core NATS: the producer publishes each
// event once on a subject of this run's; each subscriber has a connection
// and a subscription of its own.
type natsBroadcast struct {
	env       *Env
	scenario  string
	subject   string
	deadline  time.Duration
	connected atomic.Int64 // subscriptions in place now

	mu   sync.Mutex
	subs map[*bcSub]*natsSubscriber
}

var _ bcTransport = (*natsBroadcast)(nil)

// natsSubscriber is one subscriber's connection and subscription (nil
// while it is offline).
type natsSubscriber struct {
	nc      *nats.Conn
	es      *flashsale.EventSubscriber
	dropped int64 // by its subscriptions closed before
}

func newNATSBroadcast(env *Env, scenario string, deadline time.Duration) (*natsBroadcast, error) {
	return &natsBroadcast{env: env, scenario: scenario, subject: "flashsale." + env.Name(scenario) + ".events",
		deadline: deadline, subs: map[*bcSub]*natsSubscriber{}}, nil
}

func (b *natsBroadcast) join(ctx context.Context, s *bcSub) error {
	sub := &natsSubscriber{}
	b.mu.Lock()
	b.subs[s] = sub
	b.mu.Unlock()
	return b.connect(ctx, s, sub)
}

// connect gives s a new connection and subscription, and returns once the
// server has the subscription.
func (b *natsBroadcast) connect(ctx context.Context, s *bcSub, sub *natsSubscriber) error {
	nc, err := b.env.DialNATS(fmt.Sprintf("%s-sub-%03d", b.scenario, s.idx))
	if err != nil {
		return err
	}
	// The slow subscriber's drops are counted, not printed (nats.go's
	// default handler writes to stderr).
	quiet := b.env.Quiet()
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if !errors.Is(err, nats.ErrSlowConsumer) {
			quiet.Error("demo: broadcast: subscriber's NATS connection", "err", err)
		}
	})
	es, err := flashsale.SubscribeEvents(nc, b.subject, s.handle, flashsale.WithSubscriberLogger(quiet))
	if err != nil {
		nc.Close()
		return fmt.Errorf("demo: broadcast: %w", err)
	}
	fctx, cancel := context.WithTimeout(ctx, b.deadline)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		nc.Close()
		return fmt.Errorf("demo: broadcast: subscribing: %w", err)
	}
	b.mu.Lock()
	sub.nc, sub.es = nc, es
	b.mu.Unlock()
	b.connected.Add(1)
	return nil
}

// disconnect closes s's subscription and connection.
func (b *natsBroadcast) disconnect(sub *natsSubscriber) error {
	b.mu.Lock()
	nc, es := sub.nc, sub.es
	sub.nc, sub.es = nil, nil
	if es != nil {
		if d, err := es.Subscription().Dropped(); err == nil {
			sub.dropped += int64(d)
		}
	}
	b.mu.Unlock()
	if es == nil {
		return nil
	}
	b.connected.Add(-1)
	err := es.Close()
	nc.Close()
	return err
}

func (b *natsBroadcast) leave(_ context.Context, s *bcSub) error {
	b.mu.Lock()
	sub := b.subs[s]
	delete(b.subs, s)
	b.mu.Unlock()
	if sub == nil {
		return nil
	}
	return b.disconnect(sub)
}

// crash closes s's connection: nothing is kept for it.
func (b *natsBroadcast) crash(_ context.Context, s *bcSub) error {
	sub, err := started(&b.mu, b.subs, s)
	if err != nil {
		return err
	}
	return b.disconnect(sub)
}

// rejoin subscribes s anew, on a new connection.
func (b *natsBroadcast) rejoin(ctx context.Context, s *bcSub) error {
	sub, err := started(&b.mu, b.subs, s)
	if err != nil {
		return err
	}
	return b.connect(ctx, s, sub)
}

func (*natsBroadcast) await(context.Context, int) error { return nil }

// send publishes ev once and flushes: the producer's time runs until the
// server has the message (a PING/PONG round trip), not until any
// subscriber does.
func (b *natsBroadcast) send(ctx context.Context, ev *flashsalev1.SaleEvent) bcSend {
	n := int(b.connected.Load())
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
	b.mu.Lock()
	defer b.mu.Unlock()
	sub := b.subs[s]
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
	b.mu.Lock()
	defer b.mu.Unlock()
	sub := b.subs[s]
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

func (b *natsBroadcast) close(context.Context) error {
	b.mu.Lock()
	subs := slices.Collect(maps.Values(b.subs))
	clear(b.subs)
	b.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		errs = append(errs, b.disconnect(sub))
	}
	return errors.Join(errs...)
}

// jsPullBatch is how many messages a JetStream subscriber buffers: few,
// so that the slow one's wait in its buffer stays well inside AckWait.
const jsPullBatch = 16

// jsBroadcast is the JetStream path: a stream of this run's on its own
// subject; each subscriber a durable consumer (explicit acks, new
// messages from when it joined) consumed on a connection of its own. A
// subscriber that is away keeps its consumer, and with it its place.
type jsBroadcast struct {
	env             *Env
	scenario        string
	stream, subject string
	deadline        time.Duration
	ackWait         time.Duration
	members         atomic.Int64 // subscribers with a consumer, there or not

	mu   sync.Mutex
	subs map[*bcSub]*jsSubscriber
}

var _ bcTransport = (*jsBroadcast)(nil)

// jsSubscriber is one subscriber's consumer, and its connection (nil
// while it is offline).
type jsSubscriber struct {
	consumer string
	member   bool // its consumer exists
	nc       *nats.Conn
	es       *flashsale.EventSubscriber
}

func newJetStreamBroadcast(ctx context.Context, env *Env, scenario string, cfg BroadcastConfig) (*jsBroadcast, error) {
	name := env.Name(scenario)
	b := &jsBroadcast{env: env, scenario: scenario, stream: "BROADCAST_" + name, subject: "flashsale." + name + ".stored-events",
		deadline: cfg.Deadline, ackWait: max(10*time.Second, 2*jsPullBatch*cfg.SlowDelay), subs: map[*bcSub]*jsSubscriber{}}
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

func (b *jsBroadcast) join(ctx context.Context, s *bcSub) error {
	sub := &jsSubscriber{consumer: fmt.Sprintf("sub-%03d", s.idx)}
	b.mu.Lock()
	b.subs[s] = sub
	b.mu.Unlock()
	_, err := b.env.JetStream.CreateOrUpdateConsumer(ctx, b.stream, jetstream.ConsumerConfig{
		Durable:       sub.consumer,
		Description:   "switchyard yard demo broadcast: one subscriber",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.ackWait,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		MaxDeliver:    -1,
	})
	if err != nil {
		return fmt.Errorf("demo: broadcast: consumer %s: %w", sub.consumer, err)
	}
	b.mu.Lock()
	sub.member = true
	b.mu.Unlock()
	b.members.Add(1)
	return b.connect(ctx, s, sub)
}

// connect consumes s's consumer on a new connection, and returns once the
// server has its first pull request.
func (b *jsBroadcast) connect(ctx context.Context, s *bcSub, sub *jsSubscriber) error {
	nc, err := b.env.DialNATS(fmt.Sprintf("%s-js-sub-%03d", b.scenario, s.idx))
	if err != nil {
		return err
	}
	quiet := b.env.Quiet()
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		quiet.Error("demo: broadcast: subscriber's NATS connection", "err", err)
	})
	fail := func(err error) error {
		nc.Close()
		return fmt.Errorf("demo: broadcast: consumer %s: %w", sub.consumer, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	cons, err := js.Consumer(ctx, b.stream, sub.consumer)
	if err != nil {
		return fail(err)
	}
	es, err := flashsale.ConsumeEvents(cons, s.handle, flashsale.WithSubscriberLogger(quiet),
		flashsale.WithConsumeOptions(jetstream.PullMaxMessages(jsPullBatch)))
	if err != nil {
		return fail(err)
	}
	fctx, cancel := context.WithTimeout(ctx, b.deadline)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		_ = es.Close()
		return fail(err)
	}
	b.mu.Lock()
	sub.nc, sub.es = nc, es
	b.mu.Unlock()
	return nil
}

// disconnect stops consuming, makes sure the server has seen the pull
// subscription go (so that it hands nothing more to it), and closes the
// connection.
func (b *jsBroadcast) disconnect(sub *jsSubscriber) error {
	b.mu.Lock()
	nc, es := sub.nc, sub.es
	sub.nc, sub.es = nil, nil
	b.mu.Unlock()
	if es == nil {
		return nil
	}
	err := es.Close()
	_ = nc.FlushTimeout(b.deadline)
	nc.Close()
	return err
}

func (b *jsBroadcast) leave(ctx context.Context, s *bcSub) error {
	b.mu.Lock()
	sub := b.subs[s]
	delete(b.subs, s)
	b.mu.Unlock()
	if sub == nil {
		return nil
	}
	errs := []error{b.disconnect(sub)}
	if sub.member {
		b.members.Add(-1)
		if err := b.env.JetStream.DeleteConsumer(ctx, b.stream, sub.consumer); err != nil {
			errs = append(errs, fmt.Errorf("demo: broadcast: deleting consumer %s: %w", sub.consumer, err))
		}
	}
	return errors.Join(errs...)
}

// crash closes s's connection; its durable consumer stays, and keeps
// what s has not acked.
func (b *jsBroadcast) crash(_ context.Context, s *bcSub) error {
	sub, err := started(&b.mu, b.subs, s)
	if err != nil {
		return err
	}
	return b.disconnect(sub)
}

// rejoin consumes s's consumer again, from where s left it.
func (b *jsBroadcast) rejoin(ctx context.Context, s *bcSub) error {
	sub, err := started(&b.mu, b.subs, s)
	if err != nil {
		return err
	}
	return b.connect(ctx, s, sub)
}

func (*jsBroadcast) await(context.Context, int) error { return nil }

// send publishes ev once; the producer's time runs until the stream has
// stored it.
func (b *jsBroadcast) send(ctx context.Context, ev *flashsalev1.SaleEvent) bcSend {
	n := int(b.members.Load())
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

func (*jsBroadcast) setPendingLimit(*bcSub, int) error { return nil }
func (*jsBroadcast) dropped(*bcSub) int64              { return 0 }
func (*jsBroadcast) durable() bool                     { return true }

// close stops every subscriber, then deletes the stream and with it the
// consumers.
func (b *jsBroadcast) close(ctx context.Context) error {
	b.mu.Lock()
	subs := slices.Collect(maps.Values(b.subs))
	clear(b.subs)
	b.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		errs = append(errs, b.disconnect(sub))
	}
	if err := b.env.JetStream.DeleteStream(ctx, b.stream); err != nil {
		errs = append(errs, fmt.Errorf("demo: broadcast: deleting stream %s: %w", b.stream, err))
	}
	return errors.Join(errs...)
}
