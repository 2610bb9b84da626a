package zklock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
)

// TestHolderSessionExpiry partitions a holder from ZooKeeper past its
// session timeout: the server expires the session, which deletes its node,
// and the next waiter is granted while the holder is still cut off; once
// the partition heals the holder learns of the expiry, its Lost fires with
// ErrSessionLost, and its Locker works on in the new session.
func TestHolderSessionExpiry(t *testing.T) {
	h := newHarness(t)
	proxy := zktest.NewProxy(t, h.srv.Addr(0))
	// 2s: short for a test, and past a stall of the process once healed.
	holder, holderConn := h.lockerOn(h.dial(proxy.Addr(), 2*time.Second))
	waiter, _ := h.locker()
	g := acquire(t, holder, "expiry")
	first := holderConn.Session()
	next := acquireAsync(t, ctxFor(t, time.Minute), waiter, "expiry", zklock.NewGUID(), nil)
	eventually(t, "the waiter queued", func() bool { return waiters(t, waiter, "expiry") == 1 })

	proxy.Cut()
	o := await(t, next, "the waiter, after the holder's session expired")
	if o.err != nil || o.g.Token() <= g.Token() {
		t.Fatalf("waiter: %v, %v; want a grant with a token above %#x", o.g, o.err, g.Token())
	}
	proxy.Heal()
	select {
	case <-g.Lost():
	case <-time.After(20 * time.Second):
		t.Fatalf("Lost did not fire 20s after the partition healed (session %#x, state %v)", holderConn.Session(), holderConn.State())
	}
	if err := g.Err(); !errors.Is(err, zklock.ErrSessionLost) {
		t.Fatalf("Err = %v, want ErrSessionLost", err)
	}
	if err := holder.Release(ctxFor(t, 10*time.Second), g); !errors.Is(err, zklock.ErrNotHeld) {
		t.Fatalf("Release of a lost grant: %v, want ErrNotHeld", err)
	}
	release(t, waiter, o.g)

	g2 := acquire(t, holder, "expiry")
	if s := g2.Info().Session; s == first || s != holderConn.Session() {
		t.Fatalf("new grant in session %#x, want the new session %#x (the old was %#x)", s, holderConn.Session(), first)
	}
	release(t, holder, g2)
	h.assertNoContenders()
}

// TestShortDisconnectKeepsGrant cuts a Locker off from ZooKeeper for less
// than its session timeout, while it holds one lock and waits for another:
// the session survives, so Lost does not fire, the held node is the same,
// and the wait goes on with the same node and is granted when the holder
// releases.
func TestShortDisconnectKeepsGrant(t *testing.T) {
	h := newHarness(t)
	proxy := zktest.NewProxy(t, h.srv.Addr(0))
	p, pConn := h.lockerOn(h.dial(proxy.Addr(), 8*time.Second))
	other, _ := h.locker()
	held := acquire(t, p, "short/held")
	blocker := acquire(t, other, "short/wait")
	waiting := acquireAsync(t, ctxFor(t, time.Minute), p, "short/wait", zklock.NewGUID(), nil)
	eventually(t, "the waiter queued", func() bool { return waiters(t, other, "short/wait") == 1 })
	d, err := other.Describe(ctxFor(t, 10*time.Second), "short/wait")
	if err != nil {
		t.Fatal(err)
	}
	queued := d.Waiters[0].Path
	session := pConn.Session()

	proxy.Cut()
	time.Sleep(time.Second)
	proxy.Heal()
	eventually(t, "the session back", func() bool { return pConn.Connected() })
	if pConn.Session() != session {
		t.Fatalf("session %#x after a 1s cut, want %#x kept", pConn.Session(), session)
	}
	// Give the Locker time to act on the reconnection, wrongly.
	time.Sleep(500 * time.Millisecond)
	select {
	case <-held.Lost():
		t.Fatalf("Lost fired across a reconnection: %v", held.Err())
	default:
	}
	_, stat, err := h.obs.Get(held.Path())
	if err != nil || stat.Czxid != held.Token() {
		t.Fatalf("held node after the cut: %v, %v; want czxid %#x", stat, err, held.Token())
	}

	release(t, other, blocker)
	o := await(t, waiting, "the wait across the cut")
	if o.err != nil || o.g.Path() != queued {
		t.Fatalf("wait across the cut: %v, %v; want the grant of %s", o.g, o.err, queued)
	}
	release(t, p, o.g)
	release(t, p, held)
	h.assertNoContenders()
}
