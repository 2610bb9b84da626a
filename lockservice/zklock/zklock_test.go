package zklock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/internal/zkserver"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// harness is one test's ZooKeeper: a root of its own, an observer session
// that reads what the Lockers leave, and Lockers on sessions of their own.
type harness struct {
	t    testing.TB
	srv  *zkserver.Ensemble
	obs  *zk.Conn
	root string
}

func newHarness(t testing.TB) *harness { return newHarnessOn(t, zktest.Shared(t)) }

func newHarnessOn(t testing.TB, srv *zkserver.Ensemble) *harness {
	t.Helper()
	checkNoGoroutines(t) // first registered, so it runs after every Locker is closed
	obs := zktest.Connect(t, srv.ConnectString())
	return &harness{t: t, srv: srv, obs: obs, root: zktest.Root(t, obs) + "/locks"}
}

// checkNoGoroutines fails t if a goroutine of package zklock is still
// running when t ends: Close must have stopped them all.
func checkNoGoroutines(t testing.TB) {
	t.Cleanup(func() {
		var stacks string
		for range 100 {
			buf := make([]byte, 1<<20)
			stacks = string(buf[:runtime.Stack(buf, true)])
			if !strings.Contains(stacks, "switchyard/lockservice/zklock.") {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("goroutines of zklock outlived their Lockers:\n%s", stacks)
	})
}

// dial opens a session to addr, closed when the test ends.
func (h *harness) dial(addr string, sessionTimeout time.Duration) *zkconn.Conn {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := zkconn.Dial(ctx, addr, sessionTimeout, zktest.Logger(h.t))
	if err != nil {
		h.t.Fatalf("dial %s: %v", addr, err)
	}
	h.t.Cleanup(func() { conn.Close() })
	return conn
}

// locker returns a Locker on a session of its own to the server.
func (h *harness) locker(opts ...zklock.Option) (*zklock.Locker, *zkconn.Conn) {
	h.t.Helper()
	return h.lockerOn(h.dial(h.srv.ConnectString(), 4*time.Second), opts...)
}

// lockerOn returns a Locker on conn, closed when the test ends (before
// conn is).
func (h *harness) lockerOn(conn *zkconn.Conn, opts ...zklock.Option) (*zklock.Locker, *zkconn.Conn) {
	h.t.Helper()
	opts = append([]zklock.Option{zklock.WithRoot(h.root), zklock.WithLogger(zktest.Logger(h.t))}, opts...)
	l, err := zklock.New(conn, opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { l.Close() })
	return l, conn
}

func (h *harness) dir(name string) string { return h.root + "/" + zklock.EscapeName(name) }

// contenders returns the contender nodes of name left in ZooKeeper.
func (h *harness) contenders(name string) []string {
	h.t.Helper()
	children, _, err := h.obs.Children(h.dir(name))
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		h.t.Fatalf("reading %s: %v", h.dir(name), err)
	}
	return children
}

// assertNoContenders fails the test if any lock under its root still has
// a node.
func (h *harness) assertNoContenders() {
	h.t.Helper()
	dirs, _, err := h.obs.Children(h.root)
	if errors.Is(err, zk.ErrNoNode) {
		return
	}
	if err != nil {
		h.t.Fatal(err)
	}
	for _, d := range dirs {
		kids, _, err := h.obs.Children(h.root + "/" + d)
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			h.t.Fatal(err)
		}
		if len(kids) > 0 {
			h.t.Errorf("nodes left under %s/%s: %v", h.root, d, kids)
		}
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func acquire(t *testing.T, l *zklock.Locker, name string) *zklock.Grant {
	t.Helper()
	g, err := l.Acquire(ctxFor(t, 30*time.Second), name, zklock.NewGUID(), nil, true)
	if err != nil {
		t.Fatalf("acquire %q: %v", name, err)
	}
	return g
}

func release(t *testing.T, l *zklock.Locker, g *zklock.Grant) {
	t.Helper()
	if err := l.Release(ctxFor(t, 10*time.Second), g); err != nil {
		t.Fatalf("release %q: %v", g.Name(), err)
	}
}

// outcome is what a background Acquire returned.
type outcome struct {
	g   *zklock.Grant
	err error
}

// acquireAsync runs Acquire in a goroutine; when the test ends, its
// context is cancelled and the goroutine waited for.
func acquireAsync(t *testing.T, ctx context.Context, l *zklock.Locker, name, guid string, data []byte) <-chan outcome {
	ch := make(chan outcome, 1)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	wg.Go(func() {
		g, err := l.Acquire(ctx, name, guid, data, true)
		ch <- outcome{g, err}
	})
	return ch
}

func await(t *testing.T, ch <-chan outcome, what string) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no outcome after 20s", what)
		return outcome{}
	}
}

// eventually polls cond every 20ms for up to 15s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("waited 15s for %s", what)
}

// waiters returns how many contenders wait for name, read through l.
func waiters(t *testing.T, l *zklock.Locker, name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := l.Describe(ctx, name)
	if err != nil {
		return -1
	}
	return len(d.Waiters)
}

// TestMutualExclusion has 8 Lockers, each on its own session, take one
// lock 25 times each to guard a read-modify-write whose read and write are
// separate (with a yield and a 3ms sleep between): no update is lost, never
// are two inside at once, and fencing tokens strictly increase in the
// order the lock is granted.
func TestMutualExclusion(t *testing.T) {
	h := newHarness(t)
	const workers, cycles = 8, 25
	var (
		value  atomic.Int64 // Load, then Store: a broken lock loses updates
		inside atomic.Int32
		mu     sync.Mutex
		tokens []int64
		wg     sync.WaitGroup
	)
	errs := make(chan error, workers*cycles)
	for range workers {
		l, _ := h.locker()
		wg.Go(func() {
			for range cycles {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				g, err := l.Acquire(ctx, "counter", zklock.NewGUID(), nil, true)
				if err != nil {
					cancel()
					errs <- err
					return
				}
				if n := inside.Add(1); n != 1 {
					errs <- fmt.Errorf("%d holders at once", n)
				}
				v := value.Load()
				runtime.Gosched()
				time.Sleep(3 * time.Millisecond)
				value.Store(v + 1)
				mu.Lock()
				tokens = append(tokens, g.Token())
				mu.Unlock()
				inside.Add(-1)
				err = l.Release(ctx, g)
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := value.Load(); got != workers*cycles {
		t.Errorf("value = %d after %d guarded increments: %d lost", got, workers*cycles, workers*cycles-got)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("grant %d has token %#x, not above grant %d's %#x", i, tokens[i], i-1, tokens[i-1])
		}
	}
	h.assertNoContenders()
}

// TestReleaseWakesOneWaiter queues 20 waiters, each on its own session,
// behind a holder. ZooKeeper's own view ("wchc", "wchp") shows each waiter
// watching exactly its predecessor, and nobody watching the lock's
// directory; then each release wakes exactly one waiter, the next in
// line, counted by the Lockers' watch events.
func TestReleaseWakesOneWaiter(t *testing.T) {
	h := newHarness(t)
	const n = 20
	const name = "herd"
	holder, holderConn := h.locker()
	first := acquire(t, holder, name)

	type waiter struct {
		l       *zklock.Locker
		session int64
		granted <-chan outcome
	}
	ws := make([]waiter, n)
	for i := range ws {
		l, conn := h.locker()
		ws[i] = waiter{l: l, session: conn.Session(), granted: acquireAsync(t, ctxFor(t, time.Minute), l, name, zklock.NewGUID(), nil)}
		eventually(t, fmt.Sprintf("waiter %d queued", i), func() bool { return waiters(t, holder, name) == i+1 })
	}
	d, err := holder.Describe(ctxFor(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	queue := append([]zklock.Contender{d.Holder}, d.Waiters...)
	for i, w := range ws {
		if queue[i+1].Session != w.session {
			t.Fatalf("waiter %d is session %#x, queue place %d has %#x", i, w.session, i+1, queue[i+1].Session)
		}
	}

	// ZooKeeper's view, once every waiter has set its watch.
	want := map[string][]string{fmt.Sprintf("0x%x", holderConn.Session()): {first.Path()}}
	for i, w := range ws {
		want[fmt.Sprintf("0x%x", w.session)] = []string{queue[i].Path}
	}
	var bySession, byPath map[string][]string
	eventually(t, "each waiter watching its predecessor", func() bool {
		bySession = h.watches("wchc")
		for s, paths := range want {
			if !slices.Equal(bySession[s], paths) {
				return false
			}
		}
		return true
	})
	byPath = h.watches("wchp")
	if got := byPath[h.dir(name)]; len(got) > 0 {
		t.Fatalf("sessions %v watch the lock directory", got)
	}
	for i, c := range queue[:n] {
		// Its successor watches it; a holder also watches its own node.
		wantSessions := []string{fmt.Sprintf("0x%x", queue[i+1].Session)}
		if i == 0 {
			wantSessions = append(wantSessions, fmt.Sprintf("0x%x", c.Session))
		}
		if got := byPath[c.Path]; !sameSet(got, wantSessions) {
			t.Errorf("%s is watched by %v, want %v", c.Path, got, wantSessions)
		}
	}

	wakeups := func() (sum uint64) {
		for _, w := range ws {
			sum += w.l.Stats().Wakeups
		}
		return sum
	}
	releaser, g := holder, first
	for i, w := range ws {
		before := wakeups()
		release(t, releaser, g)
		o := await(t, w.granted, fmt.Sprintf("waiter %d", i))
		if o.err != nil {
			t.Fatalf("waiter %d: %v", i, o.err)
		}
		if o.g.Path() != queue[i+1].Path {
			t.Fatalf("release %d granted %s, want the next in line %s", i, o.g.Path(), queue[i+1].Path)
		}
		if got := wakeups() - before; got != 1 {
			t.Errorf("release %d: %d wake-ups, want 1", i, got)
		}
		for j, later := range ws[i+1:] {
			if got := later.l.Stats().Wakeups; got != 0 {
				t.Errorf("after release %d, waiter %d (still queued) was woken %d times", i, i+1+j, got)
			}
		}
		releaser, g = w.l, o.g
	}
	release(t, releaser, g)
	for i, w := range ws {
		if got := w.l.Stats().Wakeups; got != 1 {
			t.Errorf("waiter %d was woken %d times, want once", i, got)
		}
	}
	t.Logf("%d releases, %d wake-ups; children reads: holder %d, a waiter %d",
		n+1, wakeups(), holder.Stats().ChildrenReads, ws[n/2].l.Stats().ChildrenReads)
	h.assertNoContenders()
}

// watches reads a "wchc" (session → paths) or "wchp" (path → sessions)
// answer: a line per key, then a tab-indented line per value.
func (h *harness) watches(cmd string) map[string][]string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := zkserver.FourLetter(ctx, h.srv.Addr(0), cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	m := map[string][]string{}
	var key string
	for line := range strings.SplitSeq(out, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
		case strings.HasPrefix(line, "\t"):
			m[key] = append(m[key], strings.TrimSpace(line))
		default:
			key = strings.TrimSpace(line)
		}
	}
	return m
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestTryLock: a try-lock on a held lock fails with ErrLocked and leaves
// no node; on a free lock it is granted.
func TestTryLock(t *testing.T) {
	h := newHarness(t)
	a, _ := h.locker()
	b, _ := h.locker()
	g := acquire(t, a, "try")
	if _, err := b.Acquire(ctxFor(t, 10*time.Second), "try", zklock.NewGUID(), nil, false); !errors.Is(err, zklock.ErrLocked) {
		t.Fatalf("try-lock on a held lock: %v, want ErrLocked", err)
	}
	if got := h.contenders("try"); len(got) != 1 || got[0] != g.Path()[strings.LastIndex(g.Path(), "/")+1:] {
		t.Fatalf("nodes after a failed try-lock: %v, want only the holder's", got)
	}
	release(t, a, g)
	g2, err := b.Acquire(ctxFor(t, 10*time.Second), "try", zklock.NewGUID(), nil, false)
	if err != nil {
		t.Fatalf("try-lock on a free lock: %v", err)
	}
	release(t, b, g2)
	h.assertNoContenders()
}

// TestCancelledWaitLeavesNoNode: a wait that is cancelled, or runs out of
// time, returns the context's error and deletes its node; the holder is
// untouched.
func TestCancelledWaitLeavesNoNode(t *testing.T) {
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		cancel bool // cancel once queued, else wait for the deadline
		want   error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, true, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			// Long enough that the wait is seen queued before it runs
			// out, even on a slow machine.
			return context.WithTimeout(context.Background(), 5*time.Second)
		}, false, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			a, _ := h.locker()
			b, _ := h.locker()
			g := acquire(t, a, "wait")
			ctx, cancel := tt.ctx()
			defer cancel()
			res := acquireAsync(t, ctx, b, "wait", zklock.NewGUID(), nil)
			eventually(t, "the waiter queued", func() bool {
				if err := ctx.Err(); err != nil {
					t.Fatalf("the wait's context ended (%v) before it was seen queued", err)
				}
				return waiters(t, a, "wait") == 1
			})
			if tt.cancel {
				cancel()
			}
			o := await(t, res, "the ended wait")
			if !errors.Is(o.err, tt.want) || o.g != nil {
				t.Fatalf("cancelled wait: %v, %v; want %v", o.g, o.err, tt.want)
			}
			if got := h.contenders("wait"); len(got) != 1 {
				t.Fatalf("nodes after the wait ended: %v, want only the holder's", got)
			}
			release(t, a, g)
			h.assertNoContenders()
		})
	}
}

// TestReleaseTwice: a second Release, or a Release by another Locker, is
// ErrNotHeld, not a silent success.
func TestReleaseTwice(t *testing.T) {
	h := newHarness(t)
	a, _ := h.locker()
	b, _ := h.locker()
	g := acquire(t, a, "twice")
	if err := b.Release(ctxFor(t, 10*time.Second), g); !errors.Is(err, zklock.ErrNotHeld) {
		t.Fatalf("Release by another Locker: %v, want ErrNotHeld", err)
	}
	release(t, a, g)
	if err := a.Release(ctxFor(t, 10*time.Second), g); !errors.Is(err, zklock.ErrNotHeld) {
		t.Fatalf("second Release: %v, want ErrNotHeld", err)
	}
	if err := g.Err(); err != nil {
		t.Fatalf("a released grant reports a loss: %v", err)
	}
	h.assertNoContenders()
}

// TestRetriedAcquire: an Acquire with the guid of a held grant returns
// that grant; Acquire calls with one guid while it waits share one node,
// which outlives the cancellation of one of them and is granted to the
// other.
func TestRetriedAcquire(t *testing.T) {
	h := newHarness(t)
	a, _ := h.locker()
	b, _ := h.locker()
	guid := zklock.NewGUID()
	g1, err := a.Acquire(ctxFor(t, 10*time.Second), "retry", guid, []byte("first"), true)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := a.Acquire(ctxFor(t, 10*time.Second), "retry", guid, []byte("second"), false)
	if err != nil || g2 != g1 {
		t.Fatalf("retried acquire of a held lock: %p, %v; want the grant %p", g2, err, g1)
	}
	if got := h.contenders("retry"); len(got) != 1 {
		t.Fatalf("nodes: %v, want one", got)
	}

	// While waiting.
	wguid := zklock.NewGUID()
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	first := acquireAsync(t, ctx1, b, "retry", wguid, nil)
	eventually(t, "the waiter queued", func() bool { return waiters(t, a, "retry") == 1 })
	d, err := a.Describe(ctxFor(t, 10*time.Second), "retry")
	if err != nil {
		t.Fatal(err)
	}
	waiting := d.Waiters[0].Path
	second := acquireAsync(t, ctxFor(t, time.Minute), b, "retry", wguid, nil)
	eventually(t, "the retry joined", func() bool { return b.Waiting("retry", wguid) == 2 })
	cancel1()
	if o := await(t, first, "the cancelled call"); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", o.err)
	}
	d, err = a.Describe(ctxFor(t, 10*time.Second), "retry")
	if err != nil || len(d.Waiters) != 1 || d.Waiters[0].Path != waiting {
		t.Fatalf("after one of two calls left: %+v, %v; want the one waiter %s", d, err, waiting)
	}
	release(t, a, g1)
	o := await(t, second, "the retry")
	if o.err != nil || o.g.Path() != waiting {
		t.Fatalf("retry: %v, %v; want the grant of %s", o.g, o.err, waiting)
	}
	release(t, b, o.g)
	h.assertNoContenders()
}

// TestLostReplyAdopted leaves what a create whose reply was lost leaves —
// the guid's claim and its contender, made together in the Locker's
// session — and then calls Acquire with the guid: the node is adopted,
// held or waiting, and no second node is made.
func TestLostReplyAdopted(t *testing.T) {
	h := newHarness(t)
	l, conn := h.locker()
	other, _ := h.locker()
	const name = "lost/reply"
	orphan := func(guid string) string {
		p, err := l.LostReply(ctxFor(t, 10*time.Second), name, guid, []byte("orphan"))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Held.
	guid := zklock.NewGUID()
	p := orphan(guid)
	g, err := l.Acquire(ctxFor(t, 10*time.Second), name, guid, []byte("retry"), true)
	if err != nil {
		t.Fatal(err)
	}
	if g.Path() != p || !bytes.Equal(g.Info().Data, []byte("orphan")) {
		t.Fatalf("acquired %s (data %q), want the orphan %s", g.Path(), g.Info().Data, p)
	}
	if _, stat, err := h.obs.Get(p); err != nil || stat.Czxid != g.Token() {
		t.Fatalf("adopted node: %v, %v; want czxid %#x", stat, err, g.Token())
	}
	if got := h.contenders(name); len(got) != 1 {
		t.Fatalf("nodes: %v, want the adopted one only", got)
	}
	release(t, l, g)

	// Waiting.
	held := acquire(t, other, name)
	guid = zklock.NewGUID()
	p = orphan(guid)
	res := acquireAsync(t, ctxFor(t, time.Minute), l, name, guid, nil)
	session := fmt.Sprintf("0x%x", conn.Session())
	eventually(t, "the adopted node waiting on the holder", func() bool {
		return slices.Contains(h.watches("wchc")[session], held.Path())
	})
	if got := h.contenders(name); len(got) != 2 {
		t.Fatalf("nodes: %v, want the holder's and the adopted one", got)
	}
	release(t, other, held)
	o := await(t, res, "the adopting Acquire")
	if o.err != nil || o.g.Path() != p {
		t.Fatalf("granted %v, %v; want the orphan %s", o.g, o.err, p)
	}
	release(t, l, o.g)
	h.assertNoContenders()
}

// TestGUIDConflict: a guid whose node belongs to another session is
// refused, and that node is left alone.
func TestGUIDConflict(t *testing.T) {
	h := newHarness(t)
	a, _ := h.locker()
	b, _ := h.locker()
	guid := zklock.NewGUID()
	g, err := a.Acquire(ctxFor(t, 10*time.Second), "conflict", guid, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctxFor(t, 10*time.Second), "conflict", guid, nil, true); !errors.Is(err, zklock.ErrGUIDConflict) {
		t.Fatalf("acquire with another session's guid: %v, want ErrGUIDConflict", err)
	}
	if got := h.contenders("conflict"); len(got) != 1 {
		t.Fatalf("nodes: %v, want the first session's only", got)
	}
	release(t, a, g)
	h.assertNoContenders()
}

// TestDeletedByOther: a holder's node deleted by someone else fires its
// Lost with ErrDeleted, hands the lock on, and Release says ErrNotHeld.
func TestDeletedByOther(t *testing.T) {
	h := newHarness(t)
	a, _ := h.locker()
	b, _ := h.locker()
	g := acquire(t, a, "deleted")
	next := acquireAsync(t, ctxFor(t, time.Minute), b, "deleted", zklock.NewGUID(), nil)
	eventually(t, "the waiter queued", func() bool { return waiters(t, a, "deleted") == 1 })
	if err := h.obs.Delete(g.Path(), -1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.Lost():
	case <-time.After(15 * time.Second):
		t.Fatal("Lost did not fire 15s after the node was deleted")
	}
	if err := g.Err(); !errors.Is(err, zklock.ErrDeleted) {
		t.Fatalf("Err = %v, want ErrDeleted", err)
	}
	o := await(t, next, "the waiter")
	if o.err != nil || o.g.Token() <= g.Token() {
		t.Fatalf("waiter: %v, %v; want a grant with a token above %#x", o.g, o.err, g.Token())
	}
	if err := a.Release(ctxFor(t, 10*time.Second), g); !errors.Is(err, zklock.ErrNotHeld) || !errors.Is(err, zklock.ErrDeleted) {
		t.Fatalf("Release of a lost grant: %v, want ErrNotHeld wrapping ErrDeleted", err)
	}
	release(t, b, o.g)
	h.assertNoContenders()
}

// TestDescribeAndList reads queues (holder, waiters in order with their
// guid, sequence, token, data, time and session) and lists names under
// prefixes, escaped names included.
func TestDescribeAndList(t *testing.T) {
	h := newHarness(t)
	a, aConn := h.locker()
	b, bConn := h.locker()
	names := []string{"a", "a/b", "orders/42", "orders/43", "zürich/🍕 50%"}
	grants := map[string]*zklock.Grant{}
	for _, n := range names {
		grants[n] = acquire(t, a, n)
	}
	if got := h.contenders("zürich/🍕 50%"); len(got) != 1 {
		t.Fatalf("escaped lock %s: %v", h.dir("zürich/🍕 50%"), got)
	}
	g1, g2 := zklock.NewGUID(), zklock.NewGUID()
	w1 := acquireAsync(t, ctxFor(t, time.Minute), b, "orders/42", g1, []byte("w1"))
	eventually(t, "first waiter", func() bool { return waiters(t, a, "orders/42") == 1 })
	w2 := acquireAsync(t, ctxFor(t, time.Minute), a, "orders/42", g2, []byte("w2"))
	eventually(t, "second waiter", func() bool { return waiters(t, a, "orders/42") == 2 })

	d, err := b.Describe(ctxFor(t, 10*time.Second), "orders/42")
	if err != nil {
		t.Fatal(err)
	}
	hold := grants["orders/42"]
	if d.Name != "orders/42" || d.Holder.Path != hold.Path() || d.Holder.Token != hold.Token() || d.Holder.Session != aConn.Session() {
		t.Fatalf("holder %+v, want %s token %#x session %#x", d.Holder, hold.Path(), hold.Token(), aConn.Session())
	}
	if len(d.Waiters) != 2 {
		t.Fatalf("waiters %+v, want 2", d.Waiters)
	}
	for i, want := range []struct {
		guid, data string
		session    int64
	}{{g1, "w1", bConn.Session()}, {g2, "w2", aConn.Session()}} {
		w := d.Waiters[i]
		prev := d.Holder
		if i > 0 {
			prev = d.Waiters[i-1]
		}
		if w.GUID != want.guid || string(w.Data) != want.data || w.Session != want.session ||
			w.Seq <= prev.Seq || w.Token <= prev.Token || time.Since(w.Created) > time.Minute || w.Created.After(time.Now().Add(time.Minute)) {
			t.Errorf("waiter %d: %+v, want guid %s data %q session %#x, after %+v", i, w, want.guid, want.data, want.session, prev)
		}
	}

	lists := []struct {
		prefix string
		want   []string
	}{
		{"", names},
		{"a", []string{"a", "a/b"}},
		{"a/", []string{"a/b"}},
		{"orders/", []string{"orders/42", "orders/43"}},
		{"zürich/🍕", []string{"zürich/🍕 50%"}},
		{"none", []string{}},
	}
	for _, tt := range lists {
		got, err := b.List(ctxFor(t, 10*time.Second), tt.prefix)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %q, %v; want %q", tt.prefix, got, err, tt.want)
		}
	}

	// A released lock's directory lingers until the server sweeps it, but
	// it has no contender: List leaves it out and Describe says ErrNoLock.
	release(t, a, grants["a"])
	if got, err := b.List(ctxFor(t, 10*time.Second), "a"); err != nil || !slices.Equal(got, []string{"a/b"}) {
		t.Errorf("List(\"a\") after releasing a = %q, %v", got, err)
	}
	if _, err := b.Describe(ctxFor(t, 10*time.Second), "a"); !errors.Is(err, zklock.ErrNoLock) {
		t.Errorf("Describe of a released lock: %v, want ErrNoLock", err)
	}
	if _, err := b.Describe(ctxFor(t, 10*time.Second), "never/taken"); !errors.Is(err, zklock.ErrNoLock) {
		t.Errorf("Describe of an unknown lock: %v, want ErrNoLock", err)
	}

	for _, n := range names[1:] {
		release(t, a, grants[n])
	}
	o1 := await(t, w1, "w1")
	if o1.err != nil {
		t.Fatal(o1.err)
	}
	release(t, b, o1.g)
	o2 := await(t, w2, "w2")
	if o2.err != nil {
		t.Fatal(o2.err)
	}
	release(t, a, o2.g)
	h.assertNoContenders()
}

// TestBadInput: invalid names, guids, data, prefixes and options are
// refused with their sentinel errors, before anything is written.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	l, conn := h.locker()
	good := zklock.NewGUID()
	tests := []struct {
		name string
		call func(ctx context.Context) error
		want error
	}{
		{"empty name", func(ctx context.Context) error { _, err := l.Acquire(ctx, "", good, nil, true); return err }, zklock.ErrInvalidName},
		{"absolute name", func(ctx context.Context) error { _, err := l.Acquire(ctx, "/etc", good, nil, true); return err }, zklock.ErrInvalidName},
		{"dotdot", func(ctx context.Context) error { _, err := l.Acquire(ctx, "a/../b", good, nil, true); return err }, zklock.ErrInvalidName},
		{"dot", func(ctx context.Context) error { _, err := l.Acquire(ctx, "./a", good, nil, true); return err }, zklock.ErrInvalidName},
		{"empty segment", func(ctx context.Context) error { _, err := l.Acquire(ctx, "a//b", good, nil, true); return err }, zklock.ErrInvalidName},
		{"trailing slash", func(ctx context.Context) error { _, err := l.Acquire(ctx, "a/", good, nil, true); return err }, zklock.ErrInvalidName},
		{"control", func(ctx context.Context) error { _, err := l.Acquire(ctx, "a\nb", good, nil, true); return err }, zklock.ErrInvalidName},
		{"not utf8", func(ctx context.Context) error { _, err := l.Acquire(ctx, "a\xc3", good, nil, true); return err }, zklock.ErrInvalidName},
		{"long name", func(ctx context.Context) error {
			_, err := l.Acquire(ctx, strings.Repeat("n", zklock.MaxNameLen+1), good, nil, true)
			return err
		}, zklock.ErrInvalidName},
		{"short guid", func(ctx context.Context) error { _, err := l.Acquire(ctx, "a", "abc", nil, true); return err }, zklock.ErrInvalidGUID},
		{"guid with dash", func(ctx context.Context) error {
			_, err := l.Acquire(ctx, "a", "0123456789-abcdef", nil, true)
			return err
		}, zklock.ErrInvalidGUID},
		{"long guid", func(ctx context.Context) error {
			_, err := l.Acquire(ctx, "a", strings.Repeat("g", zklock.MaxGUIDLen+1), nil, true)
			return err
		}, zklock.ErrInvalidGUID},
		{"large data", func(ctx context.Context) error {
			_, err := l.Acquire(ctx, "a", good, make([]byte, zklock.MaxDataLen+1), true)
			return err
		}, zklock.ErrDataTooLarge},
		{"describe bad name", func(ctx context.Context) error { _, err := l.Describe(ctx, "../x"); return err }, zklock.ErrInvalidName},
		{"list control prefix", func(ctx context.Context) error { _, err := l.List(ctx, "a\x01"); return err }, zklock.ErrInvalidName},
		{"list absolute prefix", func(ctx context.Context) error { _, err := l.List(ctx, "/a"); return err }, zklock.ErrInvalidName},
		{"release nil", func(ctx context.Context) error { return l.Release(ctx, nil) }, zklock.ErrNotHeld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(ctxFor(t, 10*time.Second)); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	for _, opt := range []zklock.Option{zklock.WithRoot("relative"), zklock.WithRoot("/trailing/"), zklock.WithRoot("/"), zklock.WithRoot("/a/../b"), zklock.WithCleanupTimeout(0),
		zklock.WithRoot("/x/lockclaims"), zklock.WithClaimRoot(zklock.DefaultRoot + "/claims"), zklock.WithClaimRoot("/switchyard"), zklock.WithClaimRoot("rel"), zklock.WithClaimRetention(0)} {
		if _, err := zklock.New(conn, opt); err == nil {
			t.Errorf("New accepted a bad option")
		}
	}
	if ok, _, err := h.obs.Exists(h.root); err != nil || ok {
		t.Fatalf("bad input wrote to ZooKeeper: root exists=%v, %v", ok, err)
	}
}

// TestClose: closing a Locker ends its waits with ErrClosed, reports its
// grants Lost with ErrClosed, deletes all their nodes, and refuses
// further calls.
func TestClose(t *testing.T) {
	h := newHarness(t)
	a, _ := h.locker()
	b, _ := h.locker()
	held := acquire(t, a, "close/held")
	other := acquire(t, b, "close/wait")
	waiting := acquireAsync(t, ctxFor(t, time.Minute), a, "close/wait", zklock.NewGUID(), nil)
	eventually(t, "the waiter queued", func() bool { return waiters(t, b, "close/wait") == 1 })

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("Done is open after Close returned")
	}
	if o := await(t, waiting, "the wait"); !errors.Is(o.err, zklock.ErrClosed) {
		t.Fatalf("wait on a closed Locker: %v, want ErrClosed", o.err)
	}
	select {
	case <-held.Lost():
	default:
		t.Fatal("a grant of a closed Locker is not Lost")
	}
	if !errors.Is(held.Err(), zklock.ErrClosed) {
		t.Fatalf("Err = %v, want ErrClosed", held.Err())
	}
	if got := h.contenders("close/held"); len(got) != 0 {
		t.Fatalf("held lock's nodes after Close: %v", got)
	}
	if got := h.contenders("close/wait"); len(got) != 1 {
		t.Fatalf("waited lock's nodes after Close: %v, want the other holder's only", got)
	}
	if _, err := a.Acquire(ctxFor(t, time.Second), "x", zklock.NewGUID(), nil, true); !errors.Is(err, zklock.ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
	if err := a.Release(ctxFor(t, time.Second), held); !errors.Is(err, zklock.ErrNotHeld) {
		t.Fatalf("Release after Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	release(t, b, other)
	h.assertNoContenders()
}
