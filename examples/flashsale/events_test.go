package flashsale_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// inbox is an EventHandler that keeps the ids it handled, in order.
type inbox struct {
	mu   sync.Mutex
	ids  []string
	fail map[string]int // ids to fail, and how many times
}

func (in *inbox) handle(_ context.Context, ev *flashsalev1.SaleEvent) (bool, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.fail[ev.GetEventId()] > 0 {
		in.fail[ev.GetEventId()]--
		return false, errors.New("not now")
	}
	dup := slices.Contains(in.ids, ev.GetEventId())
	in.ids = append(in.ids, ev.GetEventId())
	return dup, nil
}

func (in *inbox) got() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.ids)
}

// await waits until in has handled want, in order, or fails t.
func (in *inbox) await(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(in.got(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("handled %v, want %v", in.got(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func event(id string) *flashsalev1.SaleEvent {
	return &flashsalev1.SaleEvent{EventId: id, Kind: flashsalev1.SaleEventKind_SALE_EVENT_KIND_SOLD_OUT, Item: "i0"}
}

// TestEventsCoreNATS checks that a core NATS subscriber gets what is
// published while it is subscribed, skips what does not decode, and gets
// nothing once closed.
func TestEventsCoreNATS(t *testing.T) {
	ns := natstest.Start(t)
	pub, subConn := natstest.Connect(t, ns.ClientURL()), natstest.Connect(t, ns.ClientURL())
	const subject = "flashsale.test.events"
	var in inbox
	es, err := flashsale.SubscribeEvents(subConn, subject, in.handle, flashsale.WithSubscriberLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if es.Subscription() == nil {
		t.Fatal("a core NATS subscriber has no subscription")
	}
	if err := subConn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := flashsale.PublishEvent(pub, subject, event("e1")); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(subject, []byte{0xff, 0xff}); err != nil { // not an event
		t.Fatal(err)
	}
	if err := flashsale.PublishEvent(pub, subject, event("e2")); err != nil {
		t.Fatal(err)
	}
	in.await(t, "e1", "e2")
	if err := flashsale.PublishEvent(pub, subject, &flashsalev1.SaleEvent{}); !errors.Is(err, flashsale.ErrInvalidEvent) {
		t.Errorf("publishing an event with no id: %v, want ErrInvalidEvent", err)
	}

	if err := es.Close(); err != nil {
		t.Fatal(err)
	}
	if err := es.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := flashsale.PublishEvent(pub, subject, event("e3")); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := in.got(); !slices.Equal(got, []string{"e1", "e2"}) {
		t.Errorf("after Close the subscriber handled %v", got)
	}
}

// TestEventsJetStream checks that a durable consumer keeps a subscriber's
// place while it is away, that a failed handler's event comes back, and
// that a repeated publish is not stored twice.
func TestEventsJetStream(t *testing.T) {
	ns := natstest.Start(t)
	nc := natstest.Connect(t, ns.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const subject = "flashsale.test.stored"
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{subject}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{Durable: "sub", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	in := inbox{fail: map[string]int{"e2": 1}}
	consume := func() *flashsale.EventSubscriber {
		t.Helper()
		es, err := flashsale.ConsumeEvents(cons, in.handle, flashsale.WithSubscriberLogger(zktest.Logger(t)),
			flashsale.WithConsumeOptions(jetstream.PullMaxMessages(4)))
		if err != nil {
			t.Fatal(err)
		}
		if es.Subscription() != nil {
			t.Error("a JetStream subscriber has a core NATS subscription")
		}
		return es
	}
	publish := func(id string) *jetstream.PubAck {
		t.Helper()
		ack, err := flashsale.PublishEventJetStream(ctx, js, subject, event(id))
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}

	es := consume()
	publish("e1")
	publish("e2") // fails once, nakked, comes back
	in.await(t, "e1", "e2")
	if err := es.Close(); err != nil {
		t.Fatal(err)
	}
	publish("e3")
	if ack := publish("e3"); !ack.Duplicate {
		t.Error("a second publish of e3 was stored again")
	}
	publish("e4")
	time.Sleep(50 * time.Millisecond)
	if got := in.got(); len(got) != 2 {
		t.Fatalf("handled %v while away", got)
	}
	es = consume() // back: what it missed, once each
	defer es.Close()
	in.await(t, "e1", "e2", "e3", "e4")
	if _, err := flashsale.PublishEventJetStream(ctx, js, subject, &flashsalev1.SaleEvent{}); !errors.Is(err, flashsale.ErrInvalidEvent) {
		t.Errorf("publishing an event with no id: %v, want ErrInvalidEvent", err)
	}
}

// TestEventsCloseWaits checks that Close ends the context of the handler
// in progress and returns only after it has.
func TestEventsCloseWaits(t *testing.T) {
	ns := natstest.Start(t)
	pub, subConn := natstest.Connect(t, ns.ClientURL()), natstest.Connect(t, ns.ClientURL())
	started := make(chan struct{})
	var returned bool
	var mu sync.Mutex
	es, err := flashsale.SubscribeEvents(subConn, "flashsale.test.block", func(ctx context.Context, _ *flashsalev1.SaleEvent) (bool, error) {
		close(started)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		returned = true
		mu.Unlock()
		return false, ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := subConn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := flashsale.PublishEvent(pub, "flashsale.test.block", event("e1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler was not called")
	}
	if err := es.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !returned {
		t.Error("Close returned before the handler")
	}
}

// TestEventsNotify checks the status code EventServer.Notify answers with for
// each way a call can go.
func TestEventsNotify(t *testing.T) {
	withID := &flashsalev1.NotifyRequest{Event: event("e1")}
	tests := []struct {
		name       string
		req        *flashsalev1.NotifyRequest
		dup        bool  // the handler's answer
		err        error // the handler's error
		want       codes.Code
		wantCalled bool
	}{
		{"handled", withID, false, nil, codes.OK, true},
		{"handled before", withID, true, nil, codes.OK, true},
		{"no event", &flashsalev1.NotifyRequest{}, false, nil, codes.InvalidArgument, false},
		{"no event id", &flashsalev1.NotifyRequest{Event: &flashsalev1.SaleEvent{Item: "i0"}}, false, nil, codes.InvalidArgument, false},
		{"the handler's deadline passed", withID, false, fmt.Errorf("handling: %w", context.DeadlineExceeded), codes.DeadlineExceeded, true},
		{"the handler's call cancelled", withID, false, fmt.Errorf("handling: %w", context.Canceled), codes.Canceled, true},
		{"the handler failed", withID, false, errors.New("disk full"), codes.Unavailable, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			srv := flashsale.NewEventServer(func(_ context.Context, ev *flashsalev1.SaleEvent) (bool, error) {
				called = true
				if ev.GetEventId() != tt.req.GetEvent().GetEventId() {
					t.Errorf("the handler got event %q, want %q", ev.GetEventId(), tt.req.GetEvent().GetEventId())
				}
				return tt.dup, tt.err
			})
			resp, err := srv.Notify(context.Background(), tt.req)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("Notify: %v (code %v), want code %v", err, got, tt.want)
			}
			if called != tt.wantCalled {
				t.Errorf("handler called: %v, want %v", called, tt.wantCalled)
			}
			switch {
			case err == nil && resp.GetDuplicate() != tt.dup:
				t.Errorf("duplicate %v, want %v", resp.GetDuplicate(), tt.dup)
			case err != nil && resp != nil:
				t.Errorf("a failed Notify answered %v", resp)
			}
		})
	}
}

// TestEventsNotifier checks that a Notifier calls every SERVING instance its
// filter accepts and says how each call went: not one that drains, nor
// another's; a failed handler and an instance nobody serves fail their
// calls; one that deregisters is not called again.
func TestEventsNotifier(t *testing.T) {
	reg := lbtest.Dial(t)
	prefix := fmt.Sprintf("notifier-%d-", time.Now().UnixNano()) // the shared ZooKeeper may hold other runs' instances
	n, err := flashsale.NewNotifier(reg,
		flashsale.WithInstanceFilter(func(inst *registryv1.Instance) bool { return strings.HasPrefix(inst.GetId(), prefix) }),
		flashsale.WithNotifierLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var a, b inbox
	b.fail = map[string]int{"e2": 1}
	register(t, reg, prefix+"a", serveEvents(t, a.handle))
	regB := register(t, reg, prefix+"b", serveEvents(t, b.handle))
	register(t, reg, "another-"+prefix+"c", serveEvents(t, a.handle)) // the filter leaves it out
	if err := n.Await(ctx, 2); err != nil {
		t.Fatal(err)
	}

	// notify sends id and checks that each of the instances (by id, less
	// the prefix) was called, the calls in fail failing with code
	// Unavailable, and no other instance.
	notify := func(id string, instances []string, fail ...string) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ds := n.Notify(cctx, event(id))
		var got []string
		for _, d := range ds {
			name := strings.TrimPrefix(d.Instance, prefix)
			got = append(got, name)
			switch wantFail := slices.Contains(fail, name); {
			case wantFail && status.Code(d.Err) != codes.Unavailable:
				t.Errorf("%s: %s's call: %v, want code Unavailable", id, name, d.Err)
			case !wantFail && d.Err != nil:
				t.Errorf("%s: %s's call: %v", id, name, d.Err)
			}
		}
		if !slices.Equal(got, instances) {
			t.Errorf("%s: called %v, want %v", id, got, instances)
		}
	}
	notify("e1", []string{"a", "b"})
	notify("e2", []string{"a", "b"}, "b") // b's handler fails once
	a.await(t, "e1", "e2")
	b.await(t, "e1")

	// A draining instance is not called.
	if err := regB.Update(ctx, func(inst *registryv1.Instance) { inst.State = registryv1.InstanceState_INSTANCE_STATE_DRAINING }); err != nil {
		t.Fatal(err)
	}
	if err := n.Await(ctx, 1); err != nil {
		t.Fatal(err)
	}
	notify("e3", []string{"a"})

	// One registered that nobody serves fails its call; deregistered, it
	// is not called.
	unserved, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := unserved.Addr().String()
	unserved.Close()
	regD := register(t, reg, prefix+"d", addr)
	if err := n.Await(ctx, 2); err != nil {
		t.Fatal(err)
	}
	notify("e4", []string{"a", "d"}, "d")
	if err := regD.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Await(ctx, 1); err != nil {
		t.Fatal(err)
	}
	notify("e5", []string{"a"})
	a.await(t, "e1", "e2", "e3", "e4", "e5")
	b.await(t, "e1")

	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := n.Await(short, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Await for an instance that never comes: %v, want the context's error", err)
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.Done():
	default:
		t.Error("Done is open after Close")
	}
}

// serveEvents serves handle on a loopback port, with no registry, until t
// ends, and returns its address.
func serveEvents(t *testing.T, handle flashsale.EventHandler) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, flashsale.NewEventGRPCServer(nil, handle, rpc.WithLogger(zktest.Logger(t)), rpc.WithMetrics(nil)), lis)
	return lis.Addr().String()
}

// serveOn runs srv.Serve on lis until t ends, and returns once srv is
// ready (serving, and registered if it has a registry). The cleanup stops
// the server, waits for Serve and reports its error.
func serveOn(t *testing.T, srv *rpc.Server, lis net.Listener) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-served:
		served <- err // for the cleanup
		t.Fatalf("the server stopped before it served: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the server is not serving after 30s")
	}
}

// register registers id at addr as an instance of EventServiceName until
// t ends.
func register(t *testing.T, reg *registry.Client, id, addr string) *registry.Registration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := reg.Register(ctx, &registryv1.Instance{Id: id, Service: flashsale.EventServiceName, Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Deregister(ctx); err != nil {
			t.Error(err)
		}
	})
	return r
}
