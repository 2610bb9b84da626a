package natstest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard-dev/switchyard/internal/natstest"
)

// TestJetStreamRoundTrip publishes to a work-queue stream and consumes with
// a durable pull consumer: every message arrives once, in order, and the
// stream is empty once all are acked. A re-published message with the same
// Nats-Msg-Id is dropped as a duplicate.
func TestJetStreamRoundTrip(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      "ORDERS",
		Subjects:  []string{"orders.>"},
		Retention: jetstream.WorkQueuePolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		ack, err := js.Publish(ctx, fmt.Sprintf("orders.%d", i), []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint("order-", i)))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if ack.Duplicate {
			t.Fatalf("publish %d reported a duplicate", i)
		}
	}
	ack, err := js.Publish(ctx, "orders.0", []byte("0"), jetstream.WithMsgID("order-0"))
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate {
		t.Fatal("re-publish with the same Nats-Msg-Id was not reported as a duplicate")
	}

	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:   "workers",
		AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	for got := 0; got < n; {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			if want := fmt.Sprint(got); string(msg.Data()) != want {
				t.Fatalf("message %d has data %q, want %q", got, msg.Data(), want)
			}
			if err := msg.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
			got++
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("work queue holds %d messages after all were acked", info.State.Msgs)
	}
}

// TestCoreRequestReply checks the embedded server's core path: a queue
// group member answers a request.
func TestCoreRequestReply(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.ClientURL())
	sub, err := nc.QueueSubscribe("echo", "workers", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	reply, err := nc.Request("echo", []byte("ping"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(reply.Data) != "ping" {
		t.Fatalf("reply %q, want ping", reply.Data)
	}
	if _, err := nc.Request("nobody.listens", nil, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request without responders: %v, want ErrNoResponders", err)
	}
}

// TestClusterStreamSurvivesNodeLoss stops the node that leads a replicated
// stream: the stream elects a new leader, accepts publishes, and keeps
// every message.
func TestClusterStreamSurvivesNodeLoss(t *testing.T) {
	cluster := natstest.StartCluster(t, 3)
	nc := natstest.Connect(t, cluster.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(i int) {
		t.Helper()
		var err error
		for range 30 { // through the leader election: bounded retries, each bounded in time
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = js.Publish(actx, "events.x", []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint(i)))
			cancel()
			if err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("publish %d: %v", i, err)
	}
	for i := range 10 {
		publish(i)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := -1
	for i := range cluster.Size() {
		if s := cluster.Server(i); s != nil && s.Name() == info.Cluster.Leader {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("stream leader %q is not a node of the cluster", info.Cluster.Leader)
	}
	cluster.StopServer(leader)
	for i := 10; i < 20; i++ {
		publish(i)
	}
	var msgs uint64
	for range 100 {
		if info, err = stream.Info(ctx); err == nil {
			if msgs = info.State.Msgs; msgs == 20 && info.Cluster.Leader != "" {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if msgs != 20 {
		t.Fatalf("stream holds %d messages after losing its leader, want 20 (last error %v)", msgs, err)
	}
	if err := cluster.StartServer(leader); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}
