package zklock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zkserver"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
)

// TestReleasedLocksLeaveNothing runs releases, a failed try-lock and a
// cancelled wait on a server that sweeps empty containers every 100ms:
// afterwards no contender node is left and the server has deleted every
// lock directory. Taking a lock again makes its directory anew (sequence
// numbers restart) and its fencing token is still above every earlier
// one.
func TestReleasedLocksLeaveNothing(t *testing.T) {
	h := newHarnessOn(t, zktest.StartConfig(t, zkserver.Config{ContainerCheckInterval: 100 * time.Millisecond}))
	a, _ := h.locker()
	b, _ := h.locker()
	var top int64
	note := func(g *zklock.Grant) {
		if g.Token() <= top {
			t.Fatalf("token %#x is not above %#x", g.Token(), top)
		}
		top = g.Token()
	}
	for _, name := range []string{"a", "a/b", "orders/42"} {
		g := acquire(t, a, name)
		note(g)
		release(t, a, g)
	}
	g := acquire(t, a, "busy")
	note(g)
	if _, err := b.Acquire(ctxFor(t, 10*time.Second), "busy", zklock.NewGUID(), nil, false); !errors.Is(err, zklock.ErrLocked) {
		t.Fatalf("try-lock: %v, want ErrLocked", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := acquireAsync(t, ctx, b, "busy", zklock.NewGUID(), nil)
	eventually(t, "the waiter queued", func() bool { return waiters(t, a, "busy") == 1 })
	cancel()
	if o := await(t, res, "the cancelled wait"); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", o.err)
	}
	release(t, a, g)
	h.assertNoContenders()

	eventually(t, "the server to sweep the lock directories", func() bool {
		dirs, _, err := h.obs.Children(h.root)
		return err == nil && len(dirs) == 0
	})
	if got, err := a.List(ctxFor(t, 10*time.Second), ""); err != nil || len(got) != 0 {
		t.Fatalf("List after the sweep: %q, %v", got, err)
	}

	g = acquire(t, a, "a/b")
	if seq := g.Info().Seq; seq != 0 {
		t.Fatalf("sequence %d in a directory made anew, want 0", seq)
	}
	note(g)
	release(t, a, g)
	h.assertNoContenders()
}
