package flashsale_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
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
