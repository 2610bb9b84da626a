package lockmq_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
	"github.com/switchyard-dev/switchyard/rpc"
)

// seen is what one receiver of events got, as "TYPE name token" lines.
type seen struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{}
}

func newSeen() *seen { return &seen{more: make(chan struct{}, 1)} }

func (s *seen) add(ev *lockv1.LockEvent) {
	s.mu.Lock()
	s.lines = append(s.lines, fmt.Sprintf("%s %s %d", ev.GetType(), ev.GetName(), ev.GetToken()))
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
}

func (s *seen) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// waitFor waits until the last line s got is last, and returns them all.
func (s *seen) waitFor(t *testing.T, last string) []string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if l := s.get(); len(l) > 0 && l[len(l)-1] == last {
			return l
		}
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("no %q within 20s; got %q", last, s.get())
		}
	}
}

// waitSaw waits until s has got line, wherever it is among its lines.
func (s *seen) waitSaw(t *testing.T, line string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for !slices.Contains(s.get(), line) {
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("no %q within 20s; got %q", line, s.get())
		}
	}
}

// TestEventsBroadcast runs two replicas whose doors stand for the
// broadcaster: three NATS subscribers and a gRPC Watch stream see the same
// events, in the same order — one source, two ways to receive.
func TestEventsBroadcast(t *testing.T) {
	ns := natstest.Start(t)
	url := ns.ClientURL()
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	for _, id := range []string{"events-one", "events-two"} {
		r := locktest.StartReplica(t, reg, zkAddr, id, 4*time.Second)
		d, err := lockmq.Serve(natstest.Connect(t, url), r.Server, lockmq.WithLogger(zktest.Logger(t)), lockmq.WithEvents(mq.ContentTypeProtobuf))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const prefix = "events/"
	subscribers := make([]*seen, 3)
	for i := range subscribers {
		s := newSeen()
		subscribers[i] = s
		nc := natstest.Connect(t, url)
		if _, err := nc.Subscribe(lockmq.EventsPrefix+".>", func(m *nats.Msg) {
			ev, meta, err := lockmq.DecodeEvent(m)
			if err != nil {
				t.Errorf("subscriber %d: %v", i, err)
				return
			}
			if meta.Term == 0 {
				t.Errorf("subscriber %d: event without a term: %v", i, m.Header)
			}
			if !meta.Snapshot && len(ev.GetName()) > len(prefix) && ev.GetName()[:len(prefix)] == prefix {
				s.add(ev)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	conn, err := rpc.NewClient(reg, lockservice.ServiceName, rpc.WithClientMetrics(nil), rpc.WithClientLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := lockv1.NewLockServiceClient(conn).Watch(ctx, &lockv1.WatchRequest{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	watched := newSeen()
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			watched.add(resp.GetEvent())
		}
	}()

	receivers := append(slices.Clone(subscribers), watched)
	client := lockclient.New(lockmq.Transport(natstest.Connect(t, url)))
	// cycle takes the lock name, calls held with its token, and releases it.
	// A holder that comes and goes between two of a watcher's reads of its
	// lock is seen by no one (see Watch), so held must keep the lock until
	// the watchers have seen it.
	cycle := func(name string, held func(token uint64)) uint64 {
		t.Helper()
		l, err := client.Lock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		held(l.Token())
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		return l.Token()
	}
	// A first lock, held a while, taken and released until every receiver
	// has seen its release: the broadcaster is elected and the Watch
	// stream is live. Before that, a receiver may miss any event, so the
	// probe cannot wait for its grant to be seen.
	probeHeld := func(uint64) { time.Sleep(150 * time.Millisecond) }
	for i := 0; ; i++ {
		probe := fmt.Sprintf("TYPE_RELEASED %sprobe %d", prefix, cycle(prefix+"probe", probeHeld))
		ready := true
		for _, s := range receivers {
			deadline := time.After(time.Second)
			for got := s.get(); len(got) == 0 || got[len(got)-1] != probe; got = s.get() {
				select {
				case <-s.more:
					continue
				case <-deadline:
				}
				ready = false
				break
			}
		}
		if ready {
			break
		}
		if i == 20 {
			for j, s := range subscribers {
				t.Logf("subscriber %d: %q", j, s.get())
			}
			t.Fatalf("the receivers did not all see a probe lock's release; the Watch stream saw %q", watched.get())
		}
	}
	start := len(watched.get())
	offsets := make([]int, len(subscribers))
	for i, s := range subscribers {
		offsets[i] = len(s.get())
	}

	// Then each lock is held until every receiver has seen its grant, however
	// long the watchers take to read it.
	var want []string
	for i := range 5 {
		name := fmt.Sprintf("%sitem-%d", prefix, i)
		token := cycle(name, func(token uint64) {
			granted := fmt.Sprintf("TYPE_GRANTED %s %d", name, token)
			for _, s := range receivers {
				s.waitSaw(t, granted)
			}
		})
		want = append(want, fmt.Sprintf("TYPE_GRANTED %s %d", name, token), fmt.Sprintf("TYPE_RELEASED %s %d", name, token))
	}
	last := want[len(want)-1]
	if got := watched.waitFor(t, last)[start:]; !slices.Equal(got, want) {
		t.Errorf("the gRPC Watch stream saw\n%q\nwant\n%q", got, want)
	}
	for i, s := range subscribers {
		if got := s.waitFor(t, last)[offsets[i]:]; !slices.Equal(got, want) {
			t.Errorf("NATS subscriber %d saw\n%q\nwant\n%q", i, got, want)
		}
	}
}

// TestDecodeEvent reads the event headers in any case, as the package doc
// promises header names match.
func TestDecodeEvent(t *testing.T) {
	data, err := mq.Marshal(mq.ContentTypeProtobuf, &lockv1.LockEvent{Name: "orders/42", Token: 7})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		header  nats.Header
		want    lockservice.BroadcastMeta
		wantErr bool
	}{
		{name: "none", header: nats.Header{}},
		{name: "as written", header: nats.Header{lockmq.HeaderEventTerm: {"3"}, lockmq.HeaderEventSnapshot: {"true"}}, want: lockservice.BroadcastMeta{Term: 3, Snapshot: true}},
		{name: "lowercase", header: nats.Header{"switchyard-event-term": {"4"}, "switchyard-event-snapshot": {"true"}}, want: lockservice.BroadcastMeta{Term: 4, Snapshot: true}},
		{name: "not a snapshot", header: nats.Header{lockmq.HeaderEventTerm: {"5"}, lockmq.HeaderEventSnapshot: {"false"}}, want: lockservice.BroadcastMeta{Term: 5}},
		{name: "bad term", header: nats.Header{lockmq.HeaderEventTerm: {"five"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, meta, err := lockmq.DecodeEvent(&nats.Msg{Subject: lockmq.EventSubject("orders/42"), Header: tt.header, Data: data})
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeEvent error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if meta != tt.want || ev.GetName() != "orders/42" || ev.GetToken() != 7 {
				t.Errorf("DecodeEvent = %v, %+v, want orders/42 token 7, %+v", ev, meta, tt.want)
			}
		})
	}
}
