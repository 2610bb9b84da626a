package mq_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/switchyard-dev/switchyard/internal/freeport"
	"github.com/switchyard-dev/switchyard/internal/natsserver"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// stateRecorder collects state events and signals each one.
type stateRecorder struct {
	events lockedSlice[mq.StateEvent]
	ch     chan mq.StateEvent
}

func newStateRecorder() *stateRecorder { return &stateRecorder{ch: make(chan mq.StateEvent, 16)} }

func (s *stateRecorder) handle(ev mq.StateEvent) {
	s.events.add(ev)
	s.ch <- ev
}

// want waits for the next event and checks its state.
func (s *stateRecorder) want(tb testing.TB, state mq.State) mq.StateEvent {
	tb.Helper()
	ev := recv(tb, s.ch, state.String()+" event")
	if ev.State != state {
		tb.Fatalf("event %v (err %v), want %v", ev.State, ev.Err, state)
	}
	return ev
}

// TestConnEmbedded connects to an embedded server, uses core NATS and
// JetStream through it, and checks that Close shuts the server down, is
// idempotent, and delivers Closed last.
func TestConnEmbedded(t *testing.T) {
	ctx := testContext(t)
	rec := newStateRecorder()
	c, err := mq.Connect(ctx, mq.Embedded, mq.WithName("mq-test"), mq.WithStateHandler(rec.handle))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if ev := rec.want(t, mq.StateConnected); ev.Reconnected || ev.URL == "" {
		t.Errorf("first event %+v, want a first connect with a URL", ev)
	}
	if c.State() != mq.StateConnected {
		t.Errorf("State() = %v, want connected", c.State())
	}

	js, err := c.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream on the embedded server: %v", err)
	}
	addService(t, c.NATS(), map[string]micro.Handler{
		describeSubject: mq.Handler(func() *lockv1.DescribeRequest { return new(lockv1.DescribeRequest) }, describeEcho),
	})
	other, err := nats.Connect(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var resp lockv1.DescribeResponse
	if err := mq.Request(ctx, other, describeSubject, &lockv1.DescribeRequest{Name: "x"}, &resp); err != nil || resp.GetName() != "x" {
		t.Fatalf("request from another connection: %v, %v", &resp, err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if ev := rec.want(t, mq.StateClosed); ev.Err != nil {
		t.Errorf("Closed after Close carries %v", ev.Err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c.State() != mq.StateClosed {
		t.Errorf("State() after Close = %v", c.State())
	}
	if nc, err := nats.Connect(c.URL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected to the embedded server after Close")
	}
	if got := len(rec.events.get()); got != 2 {
		t.Errorf("%d events, want Connected and Closed: %+v", got, rec.events.get())
	}
}

// TestConnReconnect stops the server a Conn is connected to and starts
// another on the same port: the handler sees Connected, Disconnected,
// Connected (reconnected) and Closed, in that order, and the Conn serves
// again.
func TestConnReconnect(t *testing.T) {
	ctx := testContext(t)
	ports, err := freeport.Get(1)
	if err != nil {
		t.Fatal(err)
	}
	start := func() *natsserver.Server {
		t.Helper()
		s, err := natsserver.Start(natsserver.Config{Port: ports[0], Dir: t.TempDir(), NoJetStream: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	srv := start()
	rec := newStateRecorder()
	c, err := mq.Connect(ctx, srv.ClientURL(), mq.WithStateHandler(rec.handle),
		mq.WithNATSOptions(nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	rec.want(t, mq.StateConnected)

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	rec.want(t, mq.StateDisconnected)
	if s := c.State(); s != mq.StateReconnecting && s != mq.StateDisconnected {
		t.Errorf("State() with the server down = %v, want reconnecting", s)
	}
	start()
	if ev := rec.want(t, mq.StateConnected); !ev.Reconnected {
		t.Errorf("connect after restart %+v is not marked Reconnected", ev)
	}
	sub, err := c.NATS().Subscribe("mqtest.ping", func(m *nats.Msg) { _ = m.Respond([]byte("pong")) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if _, err := c.NATS().RequestWithContext(ctx, "mqtest.ping", nil); err != nil {
		t.Fatalf("request after reconnect: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rec.want(t, mq.StateClosed)
	var states []mq.State
	for _, ev := range rec.events.get() {
		states = append(states, ev.State)
	}
	want := []mq.State{mq.StateConnected, mq.StateDisconnected, mq.StateConnected, mq.StateClosed}
	if len(states) != len(want) {
		t.Fatalf("events %v, want %v", states, want)
	}
	for i := range want {
		if states[i] != want[i] {
			t.Fatalf("events %v, want %v", states, want)
		}
	}
}

// TestConnConnectBounded checks that the first connect retries only
// until ctx ends, and then fails with ErrConnect and ctx's error.
func TestConnConnectBounded(t *testing.T) {
	ports, err := freeport.Get(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var events atomic.Int32
	c, err := mq.Connect(ctx, "nats://127.0.0.1:"+strconv.Itoa(ports[0]),
		mq.WithStateHandler(func(mq.StateEvent) { events.Add(1) }),
		mq.WithNATSOptions(nats.ReconnectWait(20*time.Millisecond)))
	if err == nil {
		c.Close()
		t.Fatal("connected with no server listening")
	}
	if !errors.Is(err, mq.ErrConnect) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want ErrConnect and DeadlineExceeded", err)
	}
	if n := events.Load(); n > 1 {
		t.Errorf("%d state events for a connection never made, want at most Closed", n)
	}
}

// TestConnDrain drains a Conn while a micro handler is in the middle of a
// request: Drain waits for the handler, the requester gets its reply,
// and the connection and embedded server are closed afterwards.
func TestConnDrain(t *testing.T) {
	ctx := testContext(t)
	c, err := mq.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	svc, err := micro.AddService(c.NATS(), micro.Config{Name: "mqdrain", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	err = svc.AddEndpoint("slow", mq.Handler(func() *lockv1.DescribeRequest { return new(lockv1.DescribeRequest) },
		func(_ context.Context, _ mq.Meta, req *lockv1.DescribeRequest) (*lockv1.DescribeResponse, error) {
			close(started)
			<-release
			finished.Store(true)
			return &lockv1.DescribeResponse{Name: req.GetName()}, nil
		}), micro.WithEndpointSubject("mqtest.slow"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.NATS().Flush(); err != nil {
		t.Fatal(err)
	}

	requester, err := nats.Connect(c.URL(), nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer requester.Close()
	type result struct {
		resp *lockv1.DescribeResponse
		err  error
	}
	results := make(chan result, 1)
	go func() {
		var resp lockv1.DescribeResponse
		err := mq.Request(ctx, requester, "mqtest.slow", &lockv1.DescribeRequest{Name: "in flight"}, &resp)
		results <- result{&resp, err}
	}()
	select {
	case <-started:
	case r := <-results:
		t.Fatalf("request ended (%v, %v) before the handler started", r.resp, r.err)
	case <-time.After(testTimeout):
		t.Fatal("handler did not start")
	}

	draining := c.NATS().StatusChanged(nats.DRAINING_SUBS)
	drained := make(chan error, 1)
	go func() { drained <- c.Drain(ctx) }()
	recv(t, draining, "draining status")
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a handler was in flight", err)
	default:
	}
	close(release)
	if err := recv(t, drained, "Drain"); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if !finished.Load() {
		t.Fatal("Drain returned before the handler finished")
	}
	if r := recv(t, results, "reply"); r.err != nil || r.resp.GetName() != "in flight" {
		t.Fatalf("request in flight during Drain: %v, %v", r.resp, r.err)
	}
	if c.State() != mq.StateClosed {
		t.Errorf("State() after Drain = %v", c.State())
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after Drain: %v", err)
	}
}
