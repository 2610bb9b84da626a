package zklock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
)

// claimExists reports whether guid's claim is in ZooKeeper.
func (h *harness) claimExists(l *zklock.Locker, guid string) bool {
	h.t.Helper()
	ok, _, err := h.obs.Exists(l.ClaimPath(guid))
	if err != nil {
		h.t.Fatal(err)
	}
	return ok
}

// TestGrantWithoutReads: an Acquire of a free lock reads no children (its
// one multi-op tells it that it is alone), and what the grant says of its
// node — token, creation time, session — is what ZooKeeper says of it.
func TestGrantWithoutReads(t *testing.T) {
	h := newHarness(t)
	l, conn := h.locker()
	for i := range 3 {
		g := acquire(t, l, "fast")
		_, stat, err := h.obs.Get(g.Path())
		if err != nil {
			t.Fatal(err)
		}
		info := g.Info()
		if info.Token != stat.Czxid || !info.Created.Equal(time.UnixMilli(stat.Ctime)) || info.Session != stat.EphemeralOwner || info.Session != conn.Session() {
			t.Fatalf("grant %d: %+v; the node has czxid %#x ctime %d owner %#x", i, info, stat.Czxid, stat.Ctime, stat.EphemeralOwner)
		}
		release(t, l, g)
	}
	if got := l.Stats().ChildrenReads; got != 0 {
		t.Fatalf("%d children reads for 3 uncontended acquires, want 0", got)
	}
	h.assertNoContenders()
}

// TestLateDuplicate: once a guid's contender has ended — released, deleted
// by someone else, or gone with its Locker — an Acquire with the guid, by
// the same Locker or by another on another session, waiting or not, is
// ErrClaimEnded and makes no node. A guid claimed for one lock is
// ErrGUIDReused for another.
func TestLateDuplicate(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, h *harness, l *zklock.Locker, g *zklock.Grant)
	}{
		{"released", func(t *testing.T, _ *harness, l *zklock.Locker, g *zklock.Grant) { release(t, l, g) }},
		{"deleted", func(t *testing.T, h *harness, _ *zklock.Locker, g *zklock.Grant) {
			if err := h.obs.Delete(g.Path(), -1); err != nil {
				t.Fatal(err)
			}
			select {
			case <-g.Lost():
			case <-time.After(15 * time.Second):
				t.Fatal("Lost did not fire 15s after the node was deleted")
			}
		}},
		{"closed", func(t *testing.T, _ *harness, l *zklock.Locker, _ *zklock.Grant) { l.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			a, _ := h.locker()
			b, _ := h.locker()
			const name = "late"
			guid := zklock.NewGUID()
			g, err := a.Acquire(ctxFor(t, 10*time.Second), name, guid, nil, true)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Acquire(ctxFor(t, 10*time.Second), "other", guid, nil, true); !errors.Is(err, zklock.ErrGUIDReused) {
				t.Fatalf("the guid for another lock: %v, want ErrGUIDReused", err)
			}
			tt.end(t, h, a, g)
			for _, l := range []*zklock.Locker{a, b} {
				if tt.name == "closed" && l == a {
					continue
				}
				for _, wait := range []bool{true, false} {
					if _, err := l.Acquire(ctxFor(t, 10*time.Second), name, guid, nil, wait); !errors.Is(err, zklock.ErrClaimEnded) {
						t.Fatalf("late duplicate (wait %v, same Locker %v): %v, want ErrClaimEnded", wait, l == a, err)
					}
				}
			}
			if got := h.contenders(name); len(got) != 0 {
				t.Fatalf("late duplicates left nodes: %v", got)
			}
			if !h.claimExists(b, guid) {
				t.Fatal("the claim is gone")
			}
		})
	}
}

// TestSameGUIDAtOnce: two Lockers, on two sessions, acquire one guid at
// the same moment, many times over: exactly one gets the contender, the
// other ErrGUIDConflict, and there is one node for the guid — whether the
// lock is free (the winner holds it at once) or held (the winner waits,
// then is granted).
func TestSameGUIDAtOnce(t *testing.T) {
	tests := []struct {
		name string
		held bool
	}{
		{"free", false},
		{"held", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			a, _ := h.locker()
			b, _ := h.locker()
			holder, _ := h.locker()
			lockers := []*zklock.Locker{a, b}
			for round := range 10 {
				name := fmt.Sprintf("race/%d", round)
				var blocker *zklock.Grant
				if tt.held {
					blocker = acquire(t, holder, name)
				}
				guid := zklock.NewGUID()
				start := make(chan struct{})
				type result struct {
					i int
					outcome
				}
				results := make(chan result, 2)
				var wg sync.WaitGroup
				for i, l := range lockers {
					ctx := ctxFor(t, time.Minute)
					wg.Go(func() {
						<-start
						g, err := l.Acquire(ctx, name, guid, nil, true)
						results <- result{i, outcome{g, err}}
					})
				}
				close(start)
				next := func(what string) result {
					select {
					case r := <-results:
						return r
					case <-time.After(20 * time.Second):
						t.Fatalf("round %d: %s: no outcome after 20s", round, what)
						return result{}
					}
				}

				first := next("the first Acquire")
				if tt.held || first.err != nil {
					// The loser answers first: the winner waits, or has
					// answered too.
					if !errors.Is(first.err, zklock.ErrGUIDConflict) {
						t.Fatalf("round %d: Locker %d: %v, want ErrGUIDConflict", round, first.i, first.err)
					}
					if got := h.contenders(name); len(got) != map[bool]int{false: 1, true: 2}[tt.held] {
						t.Fatalf("round %d: nodes %v, want the winner's only beside the holder's", round, got)
					}
					if tt.held {
						release(t, holder, blocker)
					}
					winner := next("the winner")
					if winner.err != nil {
						t.Fatalf("round %d: winner Locker %d: %v", round, winner.i, winner.err)
					}
					release(t, lockers[winner.i], winner.g)
				} else {
					loser := next("the loser")
					if !errors.Is(loser.err, zklock.ErrGUIDConflict) {
						t.Fatalf("round %d: Locker %d: %v, want ErrGUIDConflict", round, loser.i, loser.err)
					}
					if got := h.contenders(name); len(got) != 1 {
						t.Fatalf("round %d: nodes %v, want the winner's only", round, got)
					}
					release(t, lockers[first.i], first.g)
				}
				wg.Wait()
			}
			h.assertNoContenders()
		})
	}
}

// TestAbandonedAttemptFreesGUID: an attempt that granted nothing — a
// try-lock that found the lock held, a wait that was cancelled, a grant
// withdrawn — leaves neither node nor claim, so its guid can be acquired
// again, by another Locker too.
func TestAbandonedAttemptFreesGUID(t *testing.T) {
	h := newHarness(t)
	a, _ := h.locker()
	b, _ := h.locker()
	const name = "abandoned"
	g := acquire(t, a, name)

	tried := zklock.NewGUID()
	if _, err := b.Acquire(ctxFor(t, 10*time.Second), name, tried, nil, false); !errors.Is(err, zklock.ErrLocked) {
		t.Fatalf("try-lock of a held lock: %v, want ErrLocked", err)
	}
	if h.claimExists(b, tried) {
		t.Fatal("a failed try-lock left its claim")
	}

	waited := zklock.NewGUID()
	ctx, cancel := context.WithCancel(context.Background())
	res := acquireAsync(t, ctx, b, name, waited, nil)
	eventually(t, "the waiter queued", func() bool { return waiters(t, a, name) == 1 })
	if !h.claimExists(b, waited) {
		t.Fatal("a waiting contender has no claim")
	}
	cancel()
	if o := await(t, res, "the cancelled wait"); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", o.err)
	}
	if h.claimExists(b, waited) {
		t.Fatal("a cancelled wait left its claim")
	}
	release(t, a, g)

	withdrawn := zklock.NewGUID()
	w, err := b.Acquire(ctxFor(t, 10*time.Second), name, withdrawn, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Withdraw(ctxFor(t, 10*time.Second), w); err != nil {
		t.Fatal(err)
	}
	if h.claimExists(b, withdrawn) || len(h.contenders(name)) != 0 {
		t.Fatalf("a withdrawn grant left its claim (%v) or nodes %v", h.claimExists(b, withdrawn), h.contenders(name))
	}

	for _, guid := range []string{tried, waited, withdrawn} {
		g, err := a.Acquire(ctxFor(t, 10*time.Second), name, guid, nil, true)
		if err != nil {
			t.Fatalf("acquiring an abandoned guid again: %v", err)
		}
		release(t, a, g)
	}
	h.assertNoContenders()
}

// TestClaimJanitor runs a Locker whose janitor keeps claims for 2s: the
// claim of a released lock is deleted, and no sooner than 2s after the
// release; the claim of a lock still held is kept however old; a node in
// the claim root that is not a claim is left alone. Once its claim is
// deleted, a guid may be acquired again: dedup is promised for the
// retention only.
func TestClaimJanitor(t *testing.T) {
	const retention = 2 * time.Second
	h := newHarness(t)
	janitor, _ := h.locker(zklock.WithClaimRetention(retention))
	l, _ := h.locker()

	heldGUID, endedGUID := zklock.NewGUID(), zklock.NewGUID()
	held, err := l.Acquire(ctxFor(t, 10*time.Second), "janitor/held", heldGUID, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	ended, err := l.Acquire(ctxFor(t, 10*time.Second), "janitor/ended", endedGUID, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	foreign := l.ClaimPath(zklock.NewGUID())
	if _, err := h.obs.Create(foreign, []byte("not a claim"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	release(t, l, ended)
	endedAt := time.Now()

	eventually(t, "the janitor to delete the released lock's claim", func() bool { return !h.claimExists(l, endedGUID) })
	if since := time.Since(endedAt); since < retention {
		t.Fatalf("the claim was deleted %v after its lock was released, within the retention of %v", since, retention)
	}
	if !h.claimExists(l, heldGUID) {
		t.Fatal("the janitor deleted the claim of a held lock")
	}
	if ok, _, err := h.obs.Exists(foreign); err != nil || !ok {
		t.Fatalf("the janitor deleted a node that is not a claim: %v", err)
	}
	again, err := l.Acquire(ctxFor(t, 10*time.Second), "janitor/ended", endedGUID, nil, true)
	if err != nil {
		t.Fatalf("the guid of a swept claim: %v", err)
	}
	release(t, l, again)

	release(t, l, held)
	heldEnded := time.Now()
	eventually(t, "the janitor to delete the claim once its lock is released", func() bool { return !h.claimExists(l, heldGUID) })
	if since := time.Since(heldEnded); since < retention {
		t.Fatalf("the claim was deleted %v after its lock was released, within the retention of %v", since, retention)
	}
	if got := janitor.Stats().ClaimsSwept; got < 2 {
		t.Fatalf("the janitor counts %d claims swept, want at least 2", got)
	}
	if err := h.obs.Delete(foreign, -1); err != nil {
		t.Fatal(err)
	}
	h.assertNoContenders()
}

// TestWaiterSessionExpiry cuts a waiter off past its session timeout: its
// node goes with the session, and once back it queues again under its own
// claim — not refused as a late duplicate — and is granted on the
// holder's release. Meanwhile its guid is another session's.
func TestWaiterSessionExpiry(t *testing.T) {
	h := newHarness(t)
	proxy := zktest.NewProxy(t, h.srv.Addr(0))
	// 2s: short for a test, and past a stall of the process once healed.
	w, wConn := h.lockerOn(h.dial(proxy.Addr(), 2*time.Second))
	holder, _ := h.locker()
	other, _ := h.locker()
	const name = "requeue"
	g := acquire(t, holder, name)
	guid := zklock.NewGUID()
	first := wConn.Session()
	res := acquireAsync(t, ctxFor(t, time.Minute), w, name, guid, nil)
	eventually(t, "the waiter queued", func() bool { return waiters(t, holder, name) == 1 })

	proxy.Cut()
	eventually(t, "the server to expire the waiter's session", func() bool { return waiters(t, holder, name) == 0 })
	proxy.Heal()
	eventually(t, "the waiter queued again in a new session", func() bool {
		d, err := holder.Describe(ctxFor(t, 10*time.Second), name)
		return err == nil && len(d.Waiters) == 1 && d.Waiters[0].GUID == guid && d.Waiters[0].Session != first
	})
	if _, err := other.Acquire(ctxFor(t, 10*time.Second), name, guid, nil, true); !errors.Is(err, zklock.ErrGUIDConflict) {
		t.Fatalf("the guid from another session while its waiter waits again: %v, want ErrGUIDConflict", err)
	}
	release(t, holder, g)
	o := await(t, res, "the waiter queued again")
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.g.Info().Session != wConn.Session() || o.g.Token() <= g.Token() {
		t.Fatalf("grant %+v, want one in session %#x with a token above %#x", o.g.Info(), wConn.Session(), g.Token())
	}
	release(t, w, o.g)
	if _, err := other.Acquire(ctxFor(t, 10*time.Second), name, guid, nil, true); !errors.Is(err, zklock.ErrClaimEnded) {
		t.Fatalf("a late duplicate: %v, want ErrClaimEnded", err)
	}
	h.assertNoContenders()
}

// TestSweepInBoundedPasses sweeps 20 ended claims and one held, in passes
// of at most 6 claims: every pass but the last stops at the bound and the
// next resumes after it, so 4 passes mark the 20 (once older than a
// quarter of the retention), and, once the marks are older than the
// retention, 4 more delete them; the held lock's claim stays.
func TestSweepInBoundedPasses(t *testing.T) {
	const retention = 200 * time.Millisecond
	h := newHarness(t)
	l, _ := h.locker() // its own janitor, at the default retention, stays idle
	var ended []string
	for i := range 20 {
		guid := zklock.NewGUID()
		g, err := l.Acquire(ctxFor(t, 10*time.Second), fmt.Sprintf("sweep/%d", i), guid, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		release(t, l, g)
		ended = append(ended, guid)
	}
	heldGUID := zklock.NewGUID()
	held, err := l.Acquire(ctxFor(t, 10*time.Second), "sweep/held", heldGUID, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	marked := func(guid string) bool {
		data, _, err := h.obs.Get(l.ClaimPath(guid))
		if err != nil {
			t.Fatalf("claim of %s: %v", guid, err)
		}
		return strings.Contains(string(data), `"ended":true`)
	}

	time.Sleep(retention / 4)
	if n, err := l.SweepPasses(ctxFor(t, 30*time.Second), 6, 20, retention); err != nil || n != 4 {
		t.Fatalf("marking: %d passes (%v), want 4", n, err)
	}
	for _, guid := range ended {
		if !marked(guid) {
			t.Fatalf("claim of %s not marked ended", guid)
		}
	}
	if marked(heldGUID) {
		t.Fatal("the held lock's claim is marked ended")
	}

	time.Sleep(retention)
	if n, err := l.SweepPasses(ctxFor(t, 30*time.Second), 6, 20, retention); err != nil || n != 4 {
		t.Fatalf("deleting: %d passes (%v), want 4", n, err)
	}
	for _, guid := range ended {
		if h.claimExists(l, guid) {
			t.Fatalf("claim of %s not deleted", guid)
		}
	}
	if !h.claimExists(l, heldGUID) || marked(heldGUID) {
		t.Fatal("the held lock's claim was swept")
	}
	release(t, l, held)
	h.assertNoContenders()
}
