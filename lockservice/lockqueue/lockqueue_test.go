package lockqueue_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
	"github.com/switchyard-dev/switchyard/lockservice/lockqueue"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// session is the replicas' ZooKeeper session timeout, which also bounds
// the validity of their leases.
const session = 10 * time.Second

// stack is NATS with JetStream, ZooKeeper and lock-service replicas, each
// with its NATS front door (a worker forwards to it, and the tests
// release leases through it).
type stack struct {
	url      string
	replicas map[string]*locktest.Replica
}

func startStack(t *testing.T, ids ...string) *stack {
	t.Helper()
	ns := natstest.Start(t)
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	st := &stack{url: ns.ClientURL(), replicas: map[string]*locktest.Replica{}}
	for _, id := range ids {
		r := locktest.StartReplica(t, reg, zkAddr, id, session)
		d, err := lockmq.Serve(natstest.Connect(t, st.url), r.Server, lockmq.WithLogger(zktest.Logger(t)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := d.Close(); err != nil {
				t.Error(err)
			}
		})
		st.replicas[id] = r
	}
	return st
}

// js connects anew and returns its JetStream context.
func (st *stack) js(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, st.url))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// worker starts a Worker for replica id on a connection of its own; it
// is closed when the test ends, if not before.
func (st *stack) worker(t *testing.T, id string, cfg lockqueue.Config) *lockqueue.Worker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zktest.Logger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := lockqueue.Start(ctx, st.js(t), st.replicas[id].Server, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

func requester(t *testing.T, js jetstream.JetStream, opts ...lockqueue.EnqueueOption) *lockqueue.Requester {
	t.Helper()
	rq, err := lockqueue.NewRequester(js, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rq.Close() })
	return rq
}

// unique returns a suffix for the lock names and request ids of one run
// of a test: ZooKeeper outlives it (go test -count=N), and a request id
// granted in an earlier run would be refused as a late duplicate.
func unique() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// eventually polls cond until it holds, or fails the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stored returns how many messages stream holds.
func stored(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// deadLetters returns the messages of the dead-letter stream.
func deadLetters(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, lockqueue.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(lockqueue.DeadSubject))
		if err != nil {
			return out
		}
		out = append(out, m)
		seq = m.Sequence + 1
	}
}

// counter reads a counter from reg; labels are name, value pairs. It
// fails the test when no counter series matches: a Worker registers every
// series it counts (each reason of dropped too) when it starts, so a
// missing one is a misspelt name or label, never a count of 0.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("counter %s: labels %q are not name, value pairs", name, labels)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.GetCounter() == nil {
				t.Fatalf("%s%q is not a counter", name, labels)
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s%q in the registry", name, labels)
	return 0
}

// raw is a queue message built by hand, as a client in another language
// or a careless one might send it.
func raw(rid, replyTo, contentType string, deadline time.Time, body []byte) *nats.Msg {
	m := nats.NewMsg(lockqueue.QueueSubject)
	if rid != "" {
		m.Header.Set(lockqueue.HeaderMsgID, rid)
	}
	if replyTo != "" {
		m.Header.Set(lockqueue.HeaderReplyTo, replyTo)
	}
	if contentType != "" {
		m.Header.Set(mq.HeaderContentType, contentType)
	}
	if !deadline.IsZero() {
		m.Header.Set(mq.HeaderDeadline, deadline.UTC().Format(time.RFC3339Nano))
	}
	m.Data = body
	return m
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// collect gathers the replies that come to a subject of its own.
type collect struct {
	subject string
	mu      sync.Mutex
	msgs    []*nats.Msg
	nc      *nats.Conn
}

func collector(t *testing.T, nc *nats.Conn) *collect {
	t.Helper()
	c := &collect{subject: nc.NewInbox(), nc: nc}
	sub, err := nc.Subscribe(c.subject, func(m *nats.Msg) {
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

// got returns the replies so far, after a round trip to the server: a
// reply the server routed before the caller's last observation is in.
func (c *collect) got(t *testing.T) []*nats.Msg {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*nats.Msg(nil), c.msgs...)
}

func (c *collect) wait(t *testing.T, n int, timeout time.Duration) []*nats.Msg {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%d replies on %s", n, c.subject), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.msgs) >= n
	})
	return c.got(t)
}

// TestBurst queues a burst far above what the replicas handle at once,
// with bad requests among it: every good request is granted exactly once,
// in token order per lock, every bad one is dead-lettered with its reason
// and its requester told, none is lost, and duplicates publish nothing.
func TestBurst(t *testing.T) {
	u := unique()
	st := startStack(t, "burst-one", "burst-two")
	regs := map[string]*prometheus.Registry{}
	for _, id := range []string{"burst-one", "burst-two"} {
		regs[id] = prometheus.NewRegistry()
		st.worker(t, id, lockqueue.Config{Concurrency: 8, MaxAckPending: 16, Metrics: regs[id]})
	}
	nc := natstest.Connect(t, st.url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rq := requester(t, js)
	rqJSON := requester(t, js, lockqueue.WithJSON())
	// A second subscriber on the requesters' inboxes sees every reply,
	// duplicates included (the Requester drops those).
	replies := map[string]int{}
	var repliesMu sync.Mutex
	for _, inbox := range []string{rq.Inbox(), rqJSON.Inbox()} {
		sub, err := nc.Subscribe(inbox, func(m *nats.Msg) {
			repliesMu.Lock()
			replies[m.Header.Get(mq.HeaderRequestID)]++
			repliesMu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	bad := collector(t, nc)
	transport := lockmq.Transport(nc)

	const names, perName = 40, 10
	const good = names * perName
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reqs := make([]*lockv1.AcquireRequest, good)
	for i := range reqs {
		reqs[i] = &lockv1.AcquireRequest{
			Name: fmt.Sprintf("burst-%s/%02d", u, i%names), RequestId: fmt.Sprintf("burst-%s-%03d", u, i),
			Ttl: durationpb.New(30 * time.Second), Owner: "TestBurst",
		}
	}

	// The burst: every request published at once, good and bad.
	start := time.Now()
	pending := make([]*lockqueue.Pending, good)
	errs := make([]error, good)
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() {
			q := rq
			if i%4 == 3 {
				q = rqJSON
			}
			pending[i], errs[i] = q.Submit(ctx, reqs[i])
		})
	}
	badName, err := rq.Submit(ctx, &lockv1.AcquireRequest{Name: "/abs", RequestId: "bad-name-" + u})
	if err != nil {
		t.Fatal(err)
	}
	badTTL, err := rq.Submit(ctx, &lockv1.AcquireRequest{Name: "burst/ttl", RequestId: "bad-ttl-" + u, Ttl: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	valid := mustMarshal(t, &lockv1.AcquireRequest{Name: "burst/raw"})
	for _, m := range []*nats.Msg{
		raw("bad-garbage-"+u, bad.subject, "", deadline, []byte("\xff\xff\xff\xff")),
		raw("bad-ctype-"+u, bad.subject, "text/plain", deadline, []byte("name=burst/raw")),
		raw("bad-noreply-"+u, "", "", deadline, valid),
		// A reply there would delete the queue, with the worker's rights.
		raw("bad-sysreply-"+u, "$JS.API.STREAM.DELETE."+lockqueue.QueueStream, "", deadline, valid),
	} {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	const badCount = 6
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d refused: %v", i, err)
		}
		if pending[i].PubAck().Duplicate {
			t.Fatalf("request %d taken for a duplicate", i)
		}
	}
	published := time.Since(start)
	// No lease is released before this point, so at most one per lock has
	// been granted: the rest is queued or in flight.
	backlog := stored(t, js, lockqueue.QueueStream)
	if backlog < good-names {
		t.Errorf("%d messages queued after the burst, want at least %d", backlog, good-names)
	}
	t.Logf("burst of %d good + %d bad requests accepted in %v; %d queued right after (in flight at most %d)", good, badCount, published, backlog, 16)

	// Each requester releases its lease as soon as it has it.
	var mu sync.Mutex
	tokens := map[string][]uint64{}
	leases := make([]*lockv1.Lease, good)
	for i := range pending {
		wg.Go(func() {
			lease, err := pending[i].Wait(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			mu.Lock()
			tokens[lease.GetName()] = append(tokens[lease.GetName()], lease.GetToken())
			mu.Unlock()
			leases[i] = lease
			errs[i] = transport.Release(ctx, lease)
		})
	}
	wg.Wait()
	drained := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	seen := map[string]bool{}
	for i, l := range leases {
		if l.GetRequestId() != reqs[i].GetRequestId() || l.GetName() != reqs[i].GetName() {
			t.Errorf("request %s of %s got lease %v", reqs[i].GetRequestId(), reqs[i].GetName(), l)
		}
		if seen[l.GetLeaseId()] {
			t.Errorf("lease %s granted twice", l.GetLeaseId())
		}
		seen[l.GetLeaseId()] = true
	}
	for name, ts := range tokens {
		if len(ts) != perName {
			t.Errorf("%s granted %d times, want %d", name, len(ts), perName)
		}
		for i := 1; i < len(ts); i++ {
			if ts[i] <= ts[i-1] {
				t.Errorf("%s: tokens in grant order %v, want strictly increasing", name, ts)
				break
			}
		}
	}

	for _, p := range []*lockqueue.Pending{badName, badTTL} {
		if _, err := p.Wait(ctx); status.Code(err) != codes.InvalidArgument {
			t.Errorf("bad request %s: %v, want INVALID_ARGUMENT", p.RequestID(), err)
		}
	}
	for _, m := range bad.wait(t, 2, 10*time.Second) {
		if code := status.Code(mq.StatusFromMsg(m)); code != codes.InvalidArgument {
			t.Errorf("bad request %s answered %v, want INVALID_ARGUMENT", m.Header.Get(mq.HeaderRequestID), mq.StatusFromMsg(m))
		}
	}

	// Duplicates, re-published with the same Nats-Msg-Id: nothing stored.
	dups := collector(t, nc)
	for i := 0; i < 20; i++ {
		ack, err := lockqueue.Enqueue(ctx, js, reqs[i*7], dups.subject)
		if err != nil {
			t.Fatal(err)
		}
		if !ack.Duplicate {
			t.Errorf("re-published request %s stored again", reqs[i*7].GetRequestId())
		}
	}

	eventually(t, 10*time.Second, "the work queue to be empty", func() bool { return stored(t, js, lockqueue.QueueStream) == 0 })
	eventually(t, 10*time.Second, "6 dead letters", func() bool { return len(deadLetters(t, js)) >= badCount })
	if got := dups.got(t); len(got) != 0 {
		t.Errorf("%d replies to duplicates, want none", len(got))
	}
	repliesMu.Lock()
	for _, r := range reqs {
		if n := replies[r.GetRequestId()]; n != 1 {
			t.Errorf("request %s answered %d times, want once", r.GetRequestId(), n)
		}
	}
	repliesMu.Unlock()

	dead := deadLetters(t, js)
	wantBad := map[string]string{
		"bad-name-" + u: "INVALID_ARGUMENT", "bad-ttl-" + u: "ttl", "bad-garbage-" + u: "bad request",
		"bad-ctype-" + u: "content type", "bad-noreply-" + u: lockqueue.HeaderReplyTo, "bad-sysreply-" + u: lockqueue.HeaderReplyTo,
	}
	for _, m := range dead {
		id := m.Header.Get(lockqueue.HeaderOriginalMsgID)
		reason := m.Header.Get(lockqueue.HeaderDeadReason)
		want, ok := wantBad[id]
		switch {
		case !ok:
			t.Errorf("dead letter of %q (%s), not a bad request", id, reason)
		case !strings.Contains(reason, want):
			t.Errorf("dead letter of %s: reason %q, want it to mention %q", id, reason, want)
		case m.Header.Get(lockqueue.HeaderDeadCode) != "3" || m.Header.Get(lockqueue.HeaderDeliveries) != "1" ||
			m.Header.Get(lockqueue.HeaderStreamSeq) == "" || m.Header.Get(lockqueue.HeaderMsgID) != "dlq-"+m.Header.Get(lockqueue.HeaderStreamSeq):
			t.Errorf("dead letter of %s: headers %v", id, m.Header)
		}
		delete(wantBad, id)
	}
	if len(wantBad) != 0 {
		t.Errorf("no dead letter for %v", wantBad)
	}

	var granted, died float64
	for id, reg := range regs {
		g := counter(t, reg, "switchyard_lock_queued_granted_total")
		t.Logf("%s granted %v", id, g)
		granted += g
		died += counter(t, reg, "switchyard_lock_queued_dead_total")
	}
	if int(granted) != good || int(died) != badCount {
		t.Errorf("granted %v + dead %v, want %d + %d = every request published", granted, died, good, badCount)
	}
	t.Logf("%d granted, %d dead-lettered, 20 duplicates refused; drained in %v", int(granted), int(died), drained)
}

// TestLateDuplicates re-publishes granted and released requests: with
// the same Nats-Msg-Id after the duplicates window (JetStream stores
// them), the lock service refuses them and they are dropped; with
// another Nats-Msg-Id than the body's request id, they are bad requests.
// Neither is granted a second time.
func TestLateDuplicates(t *testing.T) {
	u := unique()
	st := startStack(t, "late-one")
	reg := prometheus.NewRegistry()
	st.worker(t, "late-one", lockqueue.Config{Duplicates: time.Second, Metrics: reg})
	nc := natstest.Connect(t, st.url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rq := requester(t, js)
	transport := lockmq.Transport(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const n = 10
	reqs := make([]*lockv1.AcquireRequest, n)
	for i := range reqs {
		reqs[i] = &lockv1.AcquireRequest{Name: fmt.Sprintf("late-%s/%d", u, i%3), RequestId: fmt.Sprintf("late-%s-%d", u, i)}
		lease, err := rq.Acquire(ctx, reqs[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := transport.Release(ctx, lease); err != nil {
			t.Fatal(err)
		}
	}

	dups := collector(t, nc)
	deadline := time.Now().Add(20 * time.Second)
	for i, r := range reqs[:5] {
		m := raw(fmt.Sprintf("other-%s-%d", u, i), dups.subject, "", deadline, mustMarshal(t, r))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range dups.wait(t, 5, 10*time.Second) {
		if err := mq.StatusFromMsg(m); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "differ") {
			t.Errorf("request re-published with another Nats-Msg-Id answered %v, want INVALID_ARGUMENT (ids differ)", err)
		}
	}

	for _, r := range reqs {
		eventually(t, 10*time.Second, "JetStream to forget "+r.GetRequestId(), func() bool {
			ack, err := lockqueue.Enqueue(ctx, js, r, dups.subject, lockqueue.WithDeadline(deadline))
			if err != nil {
				t.Fatal(err)
			}
			return !ack.Duplicate
		})
	}
	eventually(t, 10*time.Second, "the work queue to be empty", func() bool { return stored(t, js, lockqueue.QueueStream) == 0 })
	if got := dups.got(t); len(got) != 5 {
		t.Errorf("%d replies, want only the 5 errors for the other Nats-Msg-Ids", len(got))
	}
	// A worker counts a message before it acknowledges it: with the queue
	// empty, every drop and grant is counted.
	if got := counter(t, reg, "switchyard_lock_queued_dropped_total", "reason", "duplicate"); got != n {
		t.Errorf("%v duplicates dropped, want %d", got, n)
	}
	if got := counter(t, reg, "switchyard_lock_queued_granted_total"); got != n {
		t.Errorf("%v grants, want %d", got, n)
	}
	if got := len(deadLetters(t, js)); got != 5 {
		t.Errorf("%d dead letters, want 5", got)
	}
}

// TestDeadline: a request whose deadline has passed when it is consumed,
// or passes while it waits, is dropped — neither granted nor dead — and
// one that waited MaxWait is told so.
func TestDeadline(t *testing.T) {
	u := unique()
	st := startStack(t, "deadline-one")
	reg := prometheus.NewRegistry()
	cfg := lockqueue.Config{MaxWait: 2 * time.Second, Metrics: reg}
	nc := natstest.Connect(t, st.url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inbox := collector(t, nc)

	// Queued while no worker runs, consumed after its deadline.
	if err := st.worker(t, "deadline-one", lockqueue.Config{MaxWait: cfg.MaxWait}).Close(); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(time.Millisecond)
	if _, err := lockqueue.Enqueue(ctx, js, &lockv1.AcquireRequest{Name: "deadline-" + u + "/free", RequestId: "deadline-past-" + u}, inbox.subject, lockqueue.WithDeadline(past)); err != nil {
		t.Fatal(err)
	}
	for !time.Now().After(past) {
		time.Sleep(time.Millisecond)
	}
	st.worker(t, "deadline-one", cfg)
	eventually(t, 10*time.Second, "the request to be consumed", func() bool { return stored(t, js, lockqueue.QueueStream) == 0 })
	if got := inbox.got(t); len(got) != 0 {
		t.Errorf("a request past its deadline was answered: %v", mq.StatusFromMsg(got[0]))
	}
	srv := st.replicas["deadline-one"].Server
	if d, err := srv.Describe(ctx, &lockv1.DescribeRequest{Name: "deadline-" + u + "/free"}); status.Code(err) != codes.NotFound {
		t.Errorf("a request past its deadline left %v, %v; want the lock NOT_FOUND", d, err)
	}

	// Waiting for a held lock: one until its own deadline, one without a
	// deadline until MaxWait.
	holder, err := srv.Acquire(ctx, &lockv1.AcquireRequest{Name: "deadline-" + u + "/held", RequestId: "deadline-holder-" + u, Ttl: durationpb.New(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := lockqueue.Enqueue(ctx, js, &lockv1.AcquireRequest{Name: "deadline-" + u + "/held", RequestId: "deadline-wait-" + u}, inbox.subject,
		lockqueue.WithDeadline(time.Now().Add(500*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	rq := requester(t, js)
	_, err = rq.Acquire(context.Background(), &lockv1.AcquireRequest{Name: "deadline-" + u + "/held", RequestId: "deadline-maxwait-" + u})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "MaxWait") {
		t.Errorf("a request without a deadline: %v, want DEADLINE_EXCEEDED after MaxWait", err)
	}
	if waited := time.Since(start); waited < cfg.MaxWait-100*time.Millisecond {
		t.Errorf("answered after %v, before MaxWait %v", waited, cfg.MaxWait)
	}
	eventually(t, 10*time.Second, "the requests to be consumed", func() bool { return stored(t, js, lockqueue.QueueStream) == 0 })
	if got := inbox.got(t); len(got) != 0 {
		t.Errorf("a request past its deadline was answered: %v", mq.StatusFromMsg(got[0]))
	}
	if _, err := srv.Release(ctx, &lockv1.ReleaseRequest{Name: "deadline-" + u + "/held", LeaseId: holder.GetLease().GetLeaseId(), Token: holder.GetLease().GetToken()}); err != nil {
		t.Fatal(err)
	}
	// A worker counts a message before it acknowledges it: with the queue
	// empty, every drop is counted.
	if got := counter(t, reg, "switchyard_lock_queued_dropped_total", "reason", "deadline"); got != 3 {
		t.Errorf("%v dropped for their deadline, want 3", got)
	}
	if got := counter(t, reg, "switchyard_lock_queued_granted_total"); got != 0 {
		t.Errorf("%v granted, want none", got)
	}
	if got := len(deadLetters(t, js)); got != 0 {
		t.Errorf("%d dead letters, want none", got)
	}
}

// TestMaxDeliveries: a request that fails at every delivery (its replica
// cut off from ZooKeeper: UNAVAILABLE) is dead-lettered by the
// max-deliveries advisory with the reason, deleted from the work queue,
// and its requester told.
func TestMaxDeliveries(t *testing.T) {
	u := unique()
	st := startStack(t, "maxed-one")
	reg := prometheus.NewRegistry()
	st.worker(t, "maxed-one", lockqueue.Config{MaxDeliver: 3, RetryDelay: 50 * time.Millisecond, AckWait: 2 * time.Second, Metrics: reg})
	js := st.js(t)
	rq := requester(t, js)
	r := st.replicas["maxed-one"]
	r.Proxy.Cut()
	defer r.Proxy.Heal()
	eventually(t, 10*time.Second, "the replica to see it is cut off", func() bool { return !r.Conn.Connected() })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := rq.Acquire(ctx, &lockv1.AcquireRequest{Name: "maxed-" + u + "/x", RequestId: "maxed-1-" + u})
	const want = "delivered 3 times without success: UNAVAILABLE"
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), want) {
		t.Fatalf("acquire: %v, want UNAVAILABLE %q", err, want)
	}
	t.Logf("dead-lettered and answered after %v: %v", time.Since(start), err)
	eventually(t, 10*time.Second, "the work queue to be empty", func() bool { return stored(t, js, lockqueue.QueueStream) == 0 })
	dead := deadLetters(t, js)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	h := dead[0].Header
	if !strings.Contains(h.Get(lockqueue.HeaderDeadReason), want) || h.Get(lockqueue.HeaderDeadCode) != "14" ||
		h.Get(lockqueue.HeaderDeliveries) != "3" || h.Get(lockqueue.HeaderOriginalMsgID) != "maxed-1-"+u {
		t.Errorf("dead letter headers %v", h)
	}
	if got := counter(t, reg, "switchyard_lock_queued_dead_total"); got != 1 {
		t.Errorf("%v dead, want 1", got)
	}
}

// TestSweep: a message that hit MaxDeliver while no worker listened for
// the advisory is found by the next worker's sweep and dead-lettered.
func TestSweep(t *testing.T) {
	u := unique()
	st := startStack(t, "sweep-one")
	cfg := lockqueue.Config{MaxDeliver: 2, MaxWait: time.Second, AckWait: time.Second, SweepInterval: 200 * time.Millisecond}
	if err := st.worker(t, "sweep-one", cfg).Close(); err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, st.url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inbox := collector(t, nc)
	if _, err := lockqueue.Enqueue(ctx, js, &lockv1.AcquireRequest{Name: "sweep-" + u + "/x", RequestId: "sweep-1-" + u}, inbox.subject); err != nil {
		t.Fatal(err)
	}
	// A consumer that fails it twice, with no advisory subscriber.
	cons, err := js.Consumer(ctx, lockqueue.QueueStream, lockqueue.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond)); err == nil {
		t.Fatalf("delivered a third time: %v", m.Headers())
	}
	if got := stored(t, js, lockqueue.QueueStream); got != 1 {
		t.Fatalf("%d messages in the queue, want the one given up on", got)
	}

	st.worker(t, "sweep-one", cfg)
	got := inbox.wait(t, 1, 10*time.Second)
	if err := mq.StatusFromMsg(got[0]); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "sweep") {
		t.Errorf("requester told %v, want UNAVAILABLE (found by a sweep)", err)
	}
	eventually(t, 10*time.Second, "the work queue to be empty", func() bool { return stored(t, js, lockqueue.QueueStream) == 0 })
	if dead := deadLetters(t, js); len(dead) != 1 || dead[0].Header.Get(lockqueue.HeaderOriginalMsgID) != "sweep-1-"+u {
		t.Errorf("dead letters %v, want sweep-1's", dead)
	}
}

// TestReplyLost: a request granted whose reply did not go out (its
// message delivered again) still reaches its requester with the same
// lease, whether the redelivery comes to the replica holding the lease or
// to another one (which asks the holder).
func TestReplyLost(t *testing.T) {
	u := unique()
	st := startStack(t, "lost-a", "lost-b")
	a := st.replicas["lost-a"].Server
	js := st.js(t)
	rq := requester(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, tc := range []struct{ name, worker string }{{"same", "lost-a"}, {"other", "lost-b"}} {
		t.Run(tc.name, func(t *testing.T) {
			req := &lockv1.AcquireRequest{Name: "lost-" + u + "/" + tc.name, RequestId: "lost-" + u + "-" + tc.name, Ttl: durationpb.New(10 * time.Second), Wait: true}
			// The first delivery's grant, at lost-a.
			first, err := a.Acquire(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			w := st.worker(t, tc.worker, lockqueue.Config{})
			lease, err := rq.Acquire(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(lease, first.GetLease()) {
				t.Errorf("requester got %v, want the lease granted first %v", lease, first.GetLease())
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Release(ctx, &lockv1.ReleaseRequest{Name: lease.GetName(), LeaseId: lease.GetLeaseId(), Token: lease.GetToken()}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCloseHandsOver: closing a worker whose acquire waits hands the
// request back, and another replica's worker grants it.
func TestCloseHandsOver(t *testing.T) {
	u := unique()
	st := startStack(t, "hand-a", "hand-b")
	a, b := st.replicas["hand-a"].Server, st.replicas["hand-b"].Server
	js := st.js(t)
	rq := requester(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	holder, err := a.Acquire(ctx, &lockv1.AcquireRequest{Name: "hand-" + u + "/x", RequestId: "hand-holder-" + u, Ttl: durationpb.New(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	wa := st.worker(t, "hand-a", lockqueue.Config{})
	p, err := rq.Submit(ctx, &lockv1.AcquireRequest{Name: "hand-" + u + "/x", RequestId: "hand-waiter-" + u})
	if err != nil {
		t.Fatal(err)
	}
	waiting := func(replica string) func() bool {
		return func() bool {
			d, err := a.Describe(ctx, &lockv1.DescribeRequest{Name: "hand-" + u + "/x"})
			return err == nil && len(d.GetWaiters()) == 1 && d.GetWaiters()[0].GetRequestId() == "hand-waiter-"+u && d.GetWaiters()[0].GetReplica() == replica
		}
	}
	eventually(t, 10*time.Second, "the request to wait at hand-a", waiting("hand-a"))
	if err := wa.Close(); err != nil {
		t.Fatal(err)
	}
	st.worker(t, "hand-b", lockqueue.Config{})
	eventually(t, 10*time.Second, "the request to wait at hand-b", waiting("hand-b"))
	if _, err := a.Release(ctx, &lockv1.ReleaseRequest{Name: "hand-" + u + "/x", LeaseId: holder.GetLease().GetLeaseId(), Token: holder.GetLease().GetToken()}); err != nil {
		t.Fatal(err)
	}
	lease, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lease.GetReplica() != "hand-b" || lease.GetToken() <= holder.GetLease().GetToken() {
		t.Errorf("lease %v, want one of hand-b after token %d", lease, holder.GetLease().GetToken())
	}
	if _, err := b.Release(ctx, &lockv1.ReleaseRequest{Name: "hand-" + u + "/x", LeaseId: lease.GetLeaseId(), Token: lease.GetToken()}); err != nil {
		t.Fatal(err)
	}
}

// TestEnqueue: Enqueue's refusals — bad input, no queue, a full queue —
// are status errors, and a full queue refuses rather than drops.
func TestEnqueue(t *testing.T) {
	st := startStack(t, "enqueue-one")
	js := st.js(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := func(i int) *lockv1.AcquireRequest {
		return &lockv1.AcquireRequest{Name: "enqueue/x", RequestId: "enqueue-" + strconv.Itoa(i)}
	}
	if _, err := lockqueue.Enqueue(ctx, js, req(0), "reply.here"); status.Code(err) != codes.Unavailable {
		t.Errorf("enqueue before any worker: %v, want UNAVAILABLE", err)
	}
	if err := st.worker(t, "enqueue-one", lockqueue.Config{MaxMsgs: 3}).Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		req     *lockv1.AcquireRequest
		replyTo string
	}{
		{"no request id", &lockv1.AcquireRequest{Name: "enqueue/x"}, "reply.here"},
		{"bad request id", &lockv1.AcquireRequest{Name: "enqueue/x", RequestId: "a b"}, "reply.here"},
		{"no reply subject", req(0), ""},
		{"wildcard reply subject", req(0), "reply.*"},
		{"system reply subject", req(0), "$JS.API.STREAM.DELETE." + lockqueue.QueueStream},
	} {
		if _, err := lockqueue.Enqueue(ctx, js, tc.req, tc.replyTo); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", tc.name, err)
		}
	}
	for i := range 3 {
		if _, err := lockqueue.Enqueue(ctx, js, req(i), "reply.here"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lockqueue.Enqueue(ctx, js, req(3), "reply.here"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("enqueue to a full queue: %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := stored(t, js, lockqueue.QueueStream); got != 3 {
		t.Errorf("%d queued, want 3", got)
	}
}

// TestConsumerRecreated deletes the work queue's consumer under a running
// worker: its pullers find it gone, recreate it, and queued acquires are
// granted again.
func TestConsumerRecreated(t *testing.T) {
	u := unique()
	st := startStack(t, "recreate-a")
	st.worker(t, "recreate-a", lockqueue.Config{Concurrency: 4})
	js := st.js(t)
	rq := requester(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(ctx, lockqueue.QueueStream, lockqueue.Consumer); err != nil {
		t.Fatal(err)
	}
	lease, err := rq.Acquire(ctx, &lockv1.AcquireRequest{Name: "recreate-" + u, RequestId: "recreate-" + u, Ttl: durationpb.New(10 * time.Second), Wait: true})
	if err != nil {
		t.Fatalf("a queued acquire after the consumer was deleted: %v", err)
	}
	if _, err := js.Consumer(ctx, lockqueue.QueueStream, lockqueue.Consumer); err != nil {
		t.Errorf("the consumer after the grant: %v", err)
	}
	if _, err := st.replicas["recreate-a"].Server.Release(ctx, &lockv1.ReleaseRequest{Name: lease.GetName(), LeaseId: lease.GetLeaseId(), Token: lease.GetToken()}); err != nil {
		t.Fatal(err)
	}
}
