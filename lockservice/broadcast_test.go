package lockservice_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance"
	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// bounded is how long a test waits for anything that should be prompt.
const bounded = 10 * time.Second

// published is one event a broadcaster handed to its publish function.
type published struct {
	replica string
	meta    lockservice.BroadcastMeta
	ev      *lockv1.LockEvent
}

func (p published) String() string {
	return fmt.Sprintf("%s term %d snapshot %v: %v %s token %d", p.replica, p.meta.Term, p.meta.Snapshot, p.ev.GetType(), p.ev.GetName(), p.ev.GetToken())
}

// recorder records what the broadcasters of several replicas publish of
// the locks under prefix (a test's own), in the order they publish it.
type recorder struct {
	t      *testing.T
	prefix string
	ch     chan published // every record, for the test to follow

	mu  sync.Mutex
	log []published
}

func newRecorder(t *testing.T, prefix string) *recorder {
	return &recorder{t: t, prefix: prefix, ch: make(chan published, 4096)}
}

// publish returns replica's publish function. hook, if set, sees each
// event of the prefix first, and may fail it (it is then not recorded) or
// hold it up.
func (r *recorder) publish(replica string, hook func(context.Context, published) error) lockservice.Publish {
	return func(ctx context.Context, ev *lockv1.LockEvent, meta lockservice.BroadcastMeta) error {
		if !strings.HasPrefix(ev.GetName(), r.prefix) {
			return nil
		}
		p := published{replica: replica, meta: meta, ev: ev}
		if hook != nil {
			if err := hook(ctx, p); err != nil {
				return err
			}
		}
		r.mu.Lock()
		r.log = append(r.log, p)
		r.mu.Unlock()
		select {
		case r.ch <- p:
		default:
			r.t.Errorf("recorder full at %v", p)
		}
		return nil
	}
}

// next returns the next event published.
func (r *recorder) next(t *testing.T) published {
	t.Helper()
	select {
	case p := <-r.ch:
		return p
	case <-time.After(bounded):
		t.Fatalf("nothing published in %v", bounded)
		return published{}
	}
}

// records returns what was published so far.
func (r *recorder) records() []published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// checkTerms checks that one broadcaster published at a time: terms never
// go back, and each term is one replica's.
func (r *recorder) checkTerms(t *testing.T) {
	t.Helper()
	owner := map[uint64]string{}
	var last uint64
	for i, p := range r.records() {
		if p.meta.Term < last {
			t.Errorf("record %d, %v, came after term %d", i, p, last)
		}
		last = max(last, p.meta.Term)
		if o, ok := owner[p.meta.Term]; ok && o != p.replica {
			t.Errorf("term %d was published by %s and by %s", p.meta.Term, o, p.replica)
		}
		owner[p.meta.Term] = p.replica
	}
}

// expect checks a published event.
func expect(t *testing.T, p published, typ lockv1.LockEvent_Type, name string, token uint64, snapshot bool) {
	t.Helper()
	if p.ev.GetType() != typ || p.ev.GetName() != name || p.ev.GetToken() != token || p.meta.Snapshot != snapshot || p.meta.Term == 0 {
		t.Fatalf("published %v, want %v of %s token %d (snapshot %v)", p, typ, name, token, snapshot)
	}
}

// broadcasting is a Broadcast running on a replica.
type broadcasting struct {
	r      *locktest.Replica
	cancel context.CancelFunc
	done   chan struct{} // closed when Broadcast returned, with err
	err    error
}

func startBroadcast(t *testing.T, r *locktest.Replica, publish lockservice.Publish) *broadcasting {
	ctx, cancel := context.WithCancel(context.Background())
	b := &broadcasting{r: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		b.err = r.Server.Broadcast(ctx, publish)
		close(b.done)
	}()
	t.Cleanup(func() { // before the replica's own cleanup, registered earlier
		cancel()
		select {
		case <-b.done:
		case <-time.After(bounded):
			t.Errorf("Broadcast on %s did not return", r.ID)
		}
	})
	return b
}

// awaitReturn waits for Broadcast to return, and checks it returned nil.
func (b *broadcasting) awaitReturn(t *testing.T, since time.Time) {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(bounded):
		t.Fatalf("Broadcast on %s did not return within %v", b.r.ID, bounded)
	}
	if b.err != nil {
		t.Fatalf("Broadcast on %s: %v", b.r.ID, b.err)
	}
	t.Logf("Broadcast on %s returned in %v", b.r.ID, time.Since(since).Round(time.Millisecond))
}

// electionDir is the election lock's directory in ZooKeeper.
const electionDir = lockservice.BroadcastRoot + "/" + lockservice.BroadcastElection

// candidates returns the election's nodes and their sessions.
func candidates(t *testing.T, zkc *zk.Conn) map[string]int64 {
	t.Helper()
	children, _, err := zkc.Children(electionDir)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]int64{}
	for _, c := range children {
		_, stat, err := zkc.Get(electionDir + "/" + c)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		nodes[c] = stat.EphemeralOwner
	}
	return nodes
}

// ownersOf counts the election nodes of each session in nodes (from
// candidates).
func ownersOf(nodes map[string]int64) map[int64]int {
	owners := map[int64]int{}
	for _, owner := range nodes {
		owners[owner]++
	}
	return owners
}

// awaitCandidates waits until the election has n nodes.
func awaitCandidates(t *testing.T, zkc *zk.Conn, n int) {
	t.Helper()
	deadline := time.After(bounded)
	for {
		children, _, ch, err := zkc.ChildrenW(electionDir)
		if errors.Is(err, zk.ErrNoNode) {
			var ok bool
			ok, _, ch, err = zkc.ExistsW(electionDir)
			if ok {
				continue
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(children) == n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("the election has %d nodes, want %d", len(children), n)
		}
	}
}

// claims returns the election's claims in ZooKeeper.
func claims(t *testing.T, zkc *zk.Conn) map[string]bool {
	t.Helper()
	shards, _, err := zkc.Children(lockservice.BroadcastClaimRoot)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	for _, shard := range shards {
		guids, _, err := zkc.Children(lockservice.BroadcastClaimRoot + "/" + shard)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range guids {
			all[shard+"/"+g] = true
		}
	}
	return all
}

// checkNothingLeft checks that no node of the election is left in
// ZooKeeper, and that of the claims not there before, exactly lost are:
// those of grants whose node went with their session.
func checkNothingLeft(t *testing.T, zkc *zk.Conn, before map[string]bool, lost int) {
	t.Helper()
	if nodes := candidates(t, zkc); len(nodes) > 0 {
		t.Errorf("election nodes left under %s: %v", electionDir, nodes)
	}
	var left []string
	for c := range claims(t, zkc) {
		if !before[c] {
			left = append(left, c)
		}
	}
	if len(left) != lost {
		t.Errorf("claims left under %s: %v, want %d", lockservice.BroadcastClaimRoot, left, lost)
	}
}

// acquireAt takes a lock at replica at, with a lease of ttl that nobody
// renews.
func acquireAt(ctx context.Context, t *testing.T, c lockv1.LockServiceClient, at, name string, ttl time.Duration) *lockv1.Lease {
	t.Helper()
	resp, err := c.Acquire(loadbalance.WithInstance(ctx, at), &lockv1.AcquireRequest{Name: name, Owner: "bcast", Wait: true, Ttl: durationpb.New(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetLease()
}

func releaseLease(ctx context.Context, t *testing.T, c lockv1.LockServiceClient, l *lockv1.Lease) {
	t.Helper()
	if _, err := c.Release(loadbalance.WithInstance(ctx, l.GetReplica()), &lockv1.ReleaseRequest{Name: l.GetName(), LeaseId: l.GetLeaseId(), Token: l.GetToken()}); err != nil {
		t.Fatal(err)
	}
}

// recvEvent receives a Watch stream's next event.
func recvEvent(t *testing.T, s lockv1.LockService_WatchClient) *lockv1.LockEvent {
	t.Helper()
	type result struct {
		resp *lockv1.WatchResponse
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := s.Recv()
		ch <- result{resp, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("watch: %v", r.err)
		}
		return r.resp.GetEvent()
	case <-time.After(bounded):
		t.Fatalf("watch: no event in %v", bounded)
		return nil
	}
}

type eventKey struct {
	typ   lockv1.LockEvent_Type
	name  string
	token uint64
}

func keyOf(ev *lockv1.LockEvent) eventKey {
	return eventKey{ev.GetType(), ev.GetName(), ev.GetToken()}
}

// TestBroadcast runs Broadcast on three replicas. One is elected and
// publishes everything, in order, the same as a Watch stream at another
// replica carries; the others publish nothing. When its context ends,
// another takes over with a higher term and a snapshot of the holders;
// when that one's replica closes, the third takes over. Each Broadcast
// returns promptly, and leaves nothing in ZooKeeper.
func TestBroadcast(t *testing.T) {
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	zkc := zktest.Connect(t, zktest.Shared(t).ConnectString())
	const session = 4 * time.Second
	proms := map[string]*prometheus.Registry{}
	var replicas []*locktest.Replica
	for _, id := range []string{"bcast-a", "bcast-b", "bcast-c"} {
		prom := prometheus.NewRegistry()
		proms[id] = prom
		replicas = append(replicas, locktest.StartReplica(t, reg, zkAddr, id, session, func(c *lockservice.Config) { c.Metrics = prom }))
	}
	c := admin(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acquire := func(t *testing.T, at, name string, ttl time.Duration) *lockv1.Lease {
		t.Helper()
		return acquireAt(ctx, t, c, at, name, ttl)
	}
	release := func(t *testing.T, l *lockv1.Lease) {
		t.Helper()
		releaseLease(ctx, t, c, l)
	}
	before := claims(t, zkc)

	prefix := fmt.Sprintf("test/broadcast/%d/", time.Now().UnixNano())
	rec := newRecorder(t, prefix)
	// A lock held all along, renewed by its client: each new broadcaster's
	// snapshot shows it.
	keeper := locktest.Client(t, reg, lockclient.WithOwner("keeper"))
	held, err := keeper.Lock(ctx, prefix+"held")
	if err != nil {
		t.Fatal(err)
	}
	running := map[string]*broadcasting{}
	for _, r := range replicas {
		running[r.ID] = startBroadcast(t, r, rec.publish(r.ID, nil))
	}
	first := rec.next(t)
	expect(t, first, lockv1.LockEvent_TYPE_GRANTED, held.Name(), held.Token(), true)
	elected, term := first.replica, first.meta.Term
	t.Logf("elected %s, term %d", elected, term)

	// A replica's switchyard_lock_broadcast_events_total counts every event
	// it published, of any lock, so that of the broadcaster only has the
	// test's own as a lower bound. One not broadcasting publishes nothing:
	// frozen has the count of each replica known not to be (never elected
	// yet: 0; its Broadcast returned: the count then), which must not move.
	events := func(t *testing.T, id string) float64 {
		t.Helper()
		return value(t, proms[id], "switchyard_lock_broadcast_events_total", "")
	}
	frozen := map[string]float64{}
	for _, r := range replicas {
		if r.ID != elected {
			frozen[r.ID] = 0
		}
	}
	checkFrozen := func(t *testing.T) {
		t.Helper()
		for id, want := range frozen {
			if got := events(t, id); got != want {
				t.Errorf("%s, not broadcasting: switchyard_lock_broadcast_events_total = %v, want it still %v", id, got, want)
			}
		}
	}

	if err := replicas[0].Server.Broadcast(ctx, nil); err == nil {
		t.Fatal("Broadcast with a nil publish function returned nil")
	}

	// Five locks taken and released, at each replica in turn, and a lease
	// left to expire: each event is published by the elected broadcaster,
	// live, in its term, and carried alike by a Watch stream at another
	// replica.
	t.Run("OneBroadcaster", func(t *testing.T) {
		var other string
		for _, r := range replicas {
			if r.ID != elected {
				other = r.ID
				break
			}
		}
		s := watch(t, c, other, prefix)
		if ev := recvEvent(t, s); keyOf(ev) != (eventKey{lockv1.LockEvent_TYPE_GRANTED, held.Name(), held.Token()}) {
			t.Fatalf("the watch began with %v, want the holder of %s", ev, held.Name())
		}
		var fromBroadcast, fromWatch []eventKey
		step := func(typ lockv1.LockEvent_Type, name string, token uint64) {
			t.Helper()
			p := rec.next(t)
			expect(t, p, typ, name, token, false)
			if p.replica != elected || p.meta.Term != term {
				t.Fatalf("%v, want it from %s in term %d", p, elected, term)
			}
			fromBroadcast = append(fromBroadcast, keyOf(p.ev))
			fromWatch = append(fromWatch, keyOf(recvEvent(t, s)))
		}
		for i := range 5 {
			l := acquire(t, replicas[i%len(replicas)].ID, fmt.Sprintf("%slock/%d", prefix, i), 10*time.Second)
			step(lockv1.LockEvent_TYPE_GRANTED, l.GetName(), l.GetToken())
			release(t, l)
			step(lockv1.LockEvent_TYPE_RELEASED, l.GetName(), l.GetToken())
		}
		l := acquire(t, other, prefix+"expiring", time.Second) // never renewed
		step(lockv1.LockEvent_TYPE_GRANTED, l.GetName(), l.GetToken())
		step(lockv1.LockEvent_TYPE_EXPIRED, l.GetName(), l.GetToken())
		if !slices.Equal(fromBroadcast, fromWatch) {
			t.Fatalf("published %v\nthe watch carried %v", fromBroadcast, fromWatch)
		}
		for _, p := range rec.records() {
			if p.replica != elected {
				t.Fatalf("%v was published by a replica not elected", p)
			}
		}
		checkFrozen(t)
	})

	// The broadcaster's context ends: it returns, its node gone, and
	// another replica takes over with a higher term, starting with the
	// holder as a snapshot.
	t.Run("Handover", func(t *testing.T) {
		old := running[elected]
		stopped := time.Now()
		old.cancel()
		old.awaitReturn(t, stopped)
		frozen[old.r.ID] = events(t, old.r.ID) // final: its Broadcast has returned
		sid := old.r.Conn.Session()
		for node, owner := range candidates(t, zkc) {
			if owner == sid {
				t.Fatalf("election node %s of the stopped broadcaster is left", node)
			}
		}
		until := len(rec.records())
		p := rec.next(t)
		expect(t, p, lockv1.LockEvent_TYPE_GRANTED, held.Name(), held.Token(), true)
		if p.replica == elected || p.meta.Term <= term {
			t.Fatalf("taken over by %v, want another replica than %s with a term above %d", p, elected, term)
		}
		elected, term = p.replica, p.meta.Term
		t.Logf("%s took over, term %d", elected, term)
		delete(frozen, elected)
		l := acquire(t, replicas[0].ID, prefix+"after-handover", 10*time.Second)
		expect(t, rec.next(t), lockv1.LockEvent_TYPE_GRANTED, l.GetName(), l.GetToken(), false)
		release(t, l)
		p = rec.next(t)
		expect(t, p, lockv1.LockEvent_TYPE_RELEASED, l.GetName(), l.GetToken(), false)
		if p.replica != elected || p.meta.Term != term {
			t.Fatalf("%v, want it from %s in term %d", p, elected, term)
		}
		for _, p := range rec.records()[until:] {
			if p.replica == old.r.ID {
				t.Fatalf("%v published after its Broadcast returned", p)
			}
		}
		checkFrozen(t)
	})

	// The broadcaster's replica closes: its Broadcast returns at once
	// (Close drains first), and the last replica takes over.
	t.Run("Close", func(t *testing.T) {
		if err := held.Unlock(ctx); err != nil { // so that Close need not wait for its lease
			t.Fatal(err)
		}
		expect(t, rec.next(t), lockv1.LockEvent_TYPE_RELEASED, held.Name(), held.Token(), false)
		b := running[elected]
		closing := time.Now()
		closed := make(chan error, 1)
		go func() { closed <- b.r.Server.Close() }()
		b.awaitReturn(t, closing)
		frozen[b.r.ID] = events(t, b.r.ID) // final: its Broadcast has returned
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(bounded):
			t.Fatal("Close did not return")
		}
		if err := b.r.Server.Broadcast(ctx, rec.publish(b.r.ID, nil)); err != nil {
			t.Fatalf("Broadcast on a closed replica: %v", err)
		}
		var last *broadcasting
		for id, r := range running {
			if !isDone(r.done) {
				last = running[id]
			}
		}
		if last == nil {
			t.Fatal("no broadcaster left running")
		}
		l := acquire(t, last.r.ID, prefix+"after-close", 10*time.Second)
		p := rec.next(t) // a snapshot if the lock was taken before it took over
		expect(t, p, lockv1.LockEvent_TYPE_GRANTED, l.GetName(), l.GetToken(), p.meta.Snapshot)
		if p.replica != last.r.ID || p.meta.Term <= term {
			t.Fatalf("%v, want it from %s with a term above %d", p, last.r.ID, term)
		}
		delete(frozen, last.r.ID)
		release(t, l)
		expect(t, rec.next(t), lockv1.LockEvent_TYPE_RELEASED, l.GetName(), l.GetToken(), false)
		stopped := time.Now()
		last.cancel()
		last.awaitReturn(t, stopped)
		checkFrozen(t)
	})

	rec.checkTerms(t)
	checkNothingLeft(t, zkc, before, 0)
	// Every Broadcast has returned: each count is final. Each replica was
	// elected in turn, and counted at least the test's events it published
	// (and, checked above, nothing while it was not broadcasting).
	for _, r := range replicas {
		n := 0
		for _, p := range rec.records() {
			if p.replica == r.ID {
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s published none of the test's events, want each replica elected in turn", r.ID)
		}
		if got := events(t, r.ID); got < float64(n) {
			t.Errorf("%s: switchyard_lock_broadcast_events_total = %v, want at least the %d recorded", r.ID, got, n)
		}
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestBroadcastStepsDown: a broadcaster whose publish fails steps down,
// and the other replica takes over with a snapshot that has the event
// that failed; one whose watch falls behind (a publish held up while more
// than Config.WatchBuffer events come) publishes nothing past the gap and
// steps down, and the next term's snapshot has every holder.
func TestBroadcastStepsDown(t *testing.T) {
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	zkc := zktest.Connect(t, zktest.Shared(t).ConnectString())
	const buffer = 4
	small := func(c *lockservice.Config) { c.WatchBuffer = buffer }
	a := locktest.StartReplica(t, reg, zkAddr, "bcast-down-a", 4*time.Second, small)
	b := locktest.StartReplica(t, reg, zkAddr, "bcast-down-b", 4*time.Second, small)
	c := admin(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	prefix := fmt.Sprintf("test/broadcast-down/%d/", time.Now().UnixNano())
	rec := newRecorder(t, prefix)
	var (
		mu       sync.Mutex
		failNext bool          // fail the next live event
		gate     chan struct{} // hold the next live event up until closed
		failed   = make(chan published, 1)
		blocked  = make(chan published, 1)
	)
	hook := func(ctx context.Context, p published) error {
		if p.meta.Snapshot {
			return nil
		}
		mu.Lock()
		fail, g := failNext, gate
		failNext, gate = false, nil
		mu.Unlock()
		if fail {
			failed <- p
			return errors.New("the transport is down")
		}
		if g != nil {
			blocked <- p
			select {
			case <-g:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	mu.Lock()
	failNext = true
	mu.Unlock()
	before := claims(t, zkc)
	running := []*broadcasting{startBroadcast(t, a, rec.publish(a.ID, hook)), startBroadcast(t, b, rec.publish(b.ID, hook))}
	awaitCandidates(t, zkc, 2) // one elected, one in line

	keeper := locktest.Client(t, reg, lockclient.WithOwner("keeper"))
	var locks []*lockclient.Lock
	defer func() {
		for _, l := range locks {
			if err := l.Unlock(ctx); err != nil {
				t.Error(err)
			}
		}
	}()
	lock := func(t *testing.T, i int) *lockclient.Lock {
		t.Helper()
		l, err := keeper.Lock(ctx, fmt.Sprintf("%s%d", prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
		return l
	}

	var term uint64
	var elected string
	t.Run("PublishFails", func(t *testing.T) {
		l := lock(t, 1)
		var f published
		select {
		case f = <-failed:
		case <-time.After(bounded):
			t.Fatal("the first event was not published")
		}
		expect(t, f, lockv1.LockEvent_TYPE_GRANTED, l.Name(), l.Token(), false)
		p := rec.next(t)
		expect(t, p, lockv1.LockEvent_TYPE_GRANTED, l.Name(), l.Token(), true)
		if p.replica == f.replica || p.meta.Term <= f.meta.Term {
			t.Fatalf("after %s failed to publish in term %d: %v, want the other replica in a higher term", f.replica, f.meta.Term, p)
		}
		elected, term = p.replica, p.meta.Term
	})

	t.Run("FellBehind", func(t *testing.T) {
		// A stream at the broadcaster's replica, whose watcher feeds both:
		// once it has had an event, the watcher has offered the
		// broadcaster every earlier one.
		probe := watch(t, c, elected, prefix)
		if ev := recvEvent(t, probe); ev.GetName() != locks[0].Name() {
			t.Fatalf("the probe began with %v", ev)
		}
		g := make(chan struct{})
		mu.Lock()
		gate = g
		mu.Unlock()
		const more = 2 * buffer
		for i := range more {
			l := lock(t, 2+i)
			if ev := recvEvent(t, probe); keyOf(ev) != (eventKey{lockv1.LockEvent_TYPE_GRANTED, l.Name(), l.Token()}) {
				t.Fatalf("the probe got %v, want the grant of %s", ev, l.Name())
			}
		}
		var held published
		select {
		case held = <-blocked:
		case <-time.After(bounded):
			t.Fatal("nothing was held up")
		}
		expect(t, held, lockv1.LockEvent_TYPE_GRANTED, locks[1].Name(), locks[1].Token(), false)
		close(g)
		// The event held up is published; nothing after it in that term.
		p := rec.next(t)
		expect(t, p, lockv1.LockEvent_TYPE_GRANTED, locks[1].Name(), locks[1].Token(), false)
		if p.replica != elected || p.meta.Term != term {
			t.Fatalf("%v, want it from %s in term %d", p, elected, term)
		}
		var snapshot []eventKey
		var next uint64
		for range locks {
			p := rec.next(t)
			if !p.meta.Snapshot || p.meta.Term <= term || (next != 0 && p.meta.Term != next) {
				t.Fatalf("%v after the watch fell behind in term %d, want a snapshot in a later term", p, term)
			}
			next = p.meta.Term
			snapshot = append(snapshot, keyOf(p.ev))
		}
		var want []eventKey
		for _, l := range locks {
			want = append(want, eventKey{lockv1.LockEvent_TYPE_GRANTED, l.Name(), l.Token()})
		}
		slices.SortFunc(want, func(a, b eventKey) int { return strings.Compare(a.name, b.name) })
		if !slices.Equal(snapshot, want) {
			t.Fatalf("snapshot %v, want %v", snapshot, want)
		}
		term = next
		// And the new term goes on live.
		if err := locks[0].Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		p = rec.next(t)
		expect(t, p, lockv1.LockEvent_TYPE_RELEASED, locks[0].Name(), locks[0].Token(), false)
		if p.meta.Term != term {
			t.Fatalf("%v, want it in term %d", p, term)
		}
		locks = locks[1:]
	})

	for _, l := range locks {
		if err := l.Unlock(ctx); err != nil {
			t.Error(err)
		}
	}
	locks = nil
	for _, r := range running {
		stopped := time.Now()
		r.cancel()
		r.awaitReturn(t, stopped)
	}
	rec.checkTerms(t)
	checkNothingLeft(t, zkc, before, 0)
}

// TestBroadcastSessionLost cuts the broadcaster off from ZooKeeper until
// its session expires. It publishes nothing from the cut on; once its
// session is gone the other replica is elected, with a higher term and a
// snapshot that has the lock taken meanwhile. Healed, the first learns
// that its grant was lost and stands again, behind the new broadcaster.
// The lost grant's claim is what stays in ZooKeeper.
func TestBroadcastSessionLost(t *testing.T) {
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	zkc := zktest.Connect(t, zktest.Shared(t).ConnectString())
	const session = 2 * time.Second
	a := locktest.StartReplica(t, reg, zkAddr, "bcast-lost-a", session)
	b := locktest.StartReplica(t, reg, zkAddr, "bcast-lost-b", session)
	c := admin(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("test/broadcast-lost/%d/", time.Now().UnixNano())
	rec := newRecorder(t, prefix)
	before := claims(t, zkc)
	running := map[string]*broadcasting{a.ID: startBroadcast(t, a, rec.publish(a.ID, nil)), b.ID: startBroadcast(t, b, rec.publish(b.ID, nil))}
	awaitCandidates(t, zkc, 2)

	l := acquireAt(ctx, t, c, a.ID, prefix+"before", 10*time.Second)
	p := rec.next(t)
	expect(t, p, lockv1.LockEvent_TYPE_GRANTED, l.GetName(), l.GetToken(), false)
	releaseLease(ctx, t, c, l)
	expect(t, rec.next(t), lockv1.LockEvent_TYPE_RELEASED, l.GetName(), l.GetToken(), false)
	cutOff, term := running[p.replica].r, p.meta.Term
	other := a
	if cutOff == a {
		other = b
	}

	// The session the replica cut off stands in until the cut, and the
	// other's, which lasts all along.
	lostSession, otherSession := cutOff.Conn.Session(), other.Conn.Session()
	if owners := ownersOf(candidates(t, zkc)); owners[lostSession] != 1 || owners[otherSession] != 1 || len(owners) != 2 {
		t.Fatalf("election nodes by session %v, want one of %s's session %#x and one of %s's %#x",
			owners, cutOff.ID, lostSession, other.ID, otherSession)
	}

	notify, unsubscribe := cutOff.Conn.Subscribe()
	defer unsubscribe()
	cutOff.Proxy.Cut()
	cut := len(rec.records())
	for cutOff.Conn.Connected() {
		select {
		case <-notify:
		case <-time.After(bounded):
			t.Fatal("the replica cut off still says it is connected")
		}
	}
	keeper := locktest.Client(t, reg, lockclient.WithOwner("keeper"))
	held, err := keeper.Lock(loadbalance.WithInstance(ctx, other.ID), prefix+"held")
	if err != nil {
		t.Fatal(err)
	}
	p = rec.next(t) // once the session of the one cut off has expired
	expect(t, p, lockv1.LockEvent_TYPE_GRANTED, held.Name(), held.Token(), true)
	if p.replica != other.ID || p.meta.Term <= term {
		t.Fatalf("%v, want a snapshot from %s in a term above %d", p, other.ID, term)
	}
	term = p.meta.Term

	cutOff.Proxy.Heal()
	awaitCandidates(t, zkc, 2) // standing again, in a new session
	newSession := cutOff.Conn.Session()
	if newSession == 0 || newSession == lostSession {
		t.Fatalf("%s's session is %#x after the heal, want a new one (it was %#x)", cutOff.ID, newSession, lostSession)
	}
	if owners := ownersOf(candidates(t, zkc)); owners[newSession] != 1 || owners[otherSession] != 1 || len(owners) != 2 {
		t.Fatalf("election nodes by session %v, want one of %s's new session %#x and one of %s's %#x",
			owners, cutOff.ID, newSession, other.ID, otherSession)
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	p = rec.next(t)
	expect(t, p, lockv1.LockEvent_TYPE_RELEASED, held.Name(), held.Token(), false)
	if p.replica != other.ID || p.meta.Term != term {
		t.Fatalf("%v, want it from %s in term %d", p, other.ID, term)
	}
	for _, p := range rec.records()[cut:] {
		if p.replica == cutOff.ID {
			t.Fatalf("%v published by the replica cut off", p)
		}
	}
	for _, r := range running {
		stopped := time.Now()
		r.cancel()
		r.awaitReturn(t, stopped)
	}
	rec.checkTerms(t)
	checkNothingLeft(t, zkc, before, 1)
}
