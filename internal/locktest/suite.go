package locktest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// Harness is what the conformance suite needs of a transport.
type Harness struct {
	// Transport returns a new transport to the service.
	Transport func(tb testing.TB) lockclient.Transport
	// Describe shows a lock, as the service's Describe does.
	Describe func(ctx context.Context, name string) (*lockv1.DescribeResponse, error)
}

// Run runs the conformance suite: the lock service's contract, checked
// through h's transport. Every transport runs it unchanged.
func Run(t *testing.T, h Harness) {
	t.Run("MutualExclusion", func(t *testing.T) { MutualExclusion(t, h) })
	t.Run("TryLock", func(t *testing.T) { tryLock(t, h) })
	t.Run("NotReentrant", func(t *testing.T) { notReentrant(t, h) })
	t.Run("HolderCrash", func(t *testing.T) { holderCrash(t, h) })
	t.Run("OnlyTheHolderReleases", func(t *testing.T) { onlyTheHolder(t, h) })
	t.Run("IdempotentAcquire", func(t *testing.T) { idempotent(t, h) })
	t.Run("CancelledWait", func(t *testing.T) { cancelledWait(t, h) })
	t.Run("BadInput", func(t *testing.T) { badInput(t, h) })
}

// lockName returns a lock name of t's own.
func lockName(t testing.TB) string {
	return "test/" + strings.ReplaceAll(t.Name(), "/", ".")
}

func client(t testing.TB, h Harness, opts ...lockclient.Option) *lockclient.Client {
	return lockclient.New(h.Transport(t), opts...)
}

// Fenced is a resource that guards its value with fencing tokens: a
// write with a token lower than the highest it has seen is refused, as a
// storage service that takes the lock's tokens would do.
type Fenced struct {
	mu      sync.Mutex
	highest uint64
	value   int
	refused int
}

// Update runs a read-modify-write under token: it reads the value, lets
// the caller's work run (yield) with no lock held, and writes the result
// back, checking the token at both ends. A write with a stale token is
// refused and counted.
func (f *Fenced) Update(token uint64, yield func()) bool {
	f.mu.Lock()
	if token < f.highest {
		f.refused++
		f.mu.Unlock()
		return false
	}
	f.highest = token
	v := f.value
	f.mu.Unlock()
	yield()
	f.mu.Lock()
	defer f.mu.Unlock()
	if token < f.highest {
		f.refused++
		return false
	}
	f.value = v + 1
	return true
}

// mutexInput is one operation of the history: an acquire, or a release,
// by client.
type mutexInput struct {
	client  int
	release bool
}

// mutexModel is a lock: acquire succeeds when nobody holds it, release
// when the releaser holds it.
var mutexModel = porcupine.Model{
	Init: func() any { return -1 },
	Step: func(state, input, _ any) (bool, any) {
		holder, in := state.(int), input.(mutexInput)
		if in.release {
			return holder == in.client, -1
		}
		return holder == -1, in.client
	},
	DescribeOperation: func(input, _ any) string {
		in := input.(mutexInput)
		if in.release {
			return fmt.Sprintf("release(%d)", in.client)
		}
		return fmt.Sprintf("acquire(%d)", in.client)
	},
}

// MutualExclusion runs clients × cycles lock, read-modify-write, unlock
// on one name against a fenced resource: no update may be lost, no token
// refused, tokens must increase, and the history of acquires and releases
// must be linearizable as a mutex (checked with porcupine).
func MutualExclusion(t *testing.T, h Harness) {
	const clients, cycles = 6, 12
	name := lockName(t)
	var (
		res     Fenced
		mu      sync.Mutex
		history []porcupine.Operation
		tokens  []uint64
		start   = time.Now()
		wg      sync.WaitGroup
	)
	now := func() int64 { return int64(time.Since(start)) }
	for id := range clients {
		c := client(t, h, lockclient.WithOwner(fmt.Sprintf("client-%d", id)))
		wg.Go(func() {
			for range cycles {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				call := now()
				l, err := c.Lock(ctx, name)
				got := now()
				if err != nil {
					cancel()
					t.Errorf("client %d: lock: %v", id, err)
					return
				}
				res.Update(l.Token(), func() { time.Sleep(time.Millisecond) })
				mu.Lock()
				tokens = append(tokens, l.Token())
				mu.Unlock()
				rel := now()
				err = l.Unlock(ctx)
				done := now()
				cancel()
				if err != nil {
					t.Errorf("client %d: unlock: %v", id, err)
					return
				}
				mu.Lock()
				history = append(history,
					porcupine.Operation{ClientId: id, Input: mutexInput{client: id}, Call: call, Return: got},
					porcupine.Operation{ClientId: id, Input: mutexInput{client: id, release: true}, Call: rel, Return: done})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if res.value != clients*cycles || res.refused != 0 {
		t.Fatalf("the guarded value is %d after %d updates, %d refused by token", res.value, clients*cycles, res.refused)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("grant %d had token %d after %d: tokens must strictly increase", i, tokens[i], tokens[i-1])
		}
	}
	if r := porcupine.CheckOperationsTimeout(mutexModel, history, 30*time.Second); r != porcupine.Ok {
		t.Fatalf("the history of %d operations is not linearizable as a mutex: %v", len(history), r)
	}
}

func tryLock(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := lockName(t)
	a, b := client(t, h), client(t, h)
	la, err := a.TryLock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLock(ctx, name); !errors.Is(err, lockclient.ErrLocked) {
		t.Fatalf("TryLock of a held lock: %v, want ErrLocked", err)
	}
	if err := la.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	lb, err := b.TryLock(ctx, name)
	if err != nil {
		t.Fatalf("TryLock of a free lock: %v", err)
	}
	if lb.Token() <= la.Token() {
		t.Fatalf("second grant's token %d is not above the first's %d", lb.Token(), la.Token())
	}
	if err := lb.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// notReentrant: one client, one owner, the same name twice: the second
// acquire is another contender — a try-lock fails with ErrLocked and a
// waiting lock is granted only after the first is released.
func notReentrant(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := lockName(t)
	c := client(t, h, lockclient.WithOwner("same-owner"))
	first, err := c.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryLock(ctx, name); !errors.Is(err, lockclient.ErrLocked) {
		t.Fatalf("the holder's own TryLock: %v, want ErrLocked (not reentrant)", err)
	}
	second := make(chan *lockclient.Lock, 1)
	go func() {
		l, err := c.Lock(ctx, name)
		if err != nil {
			t.Error(err)
		}
		second <- l
	}()
	select {
	case <-second:
		t.Fatal("the holder's own second Lock was granted while it held the lock")
	case <-time.After(300 * time.Millisecond):
	}
	if err := first.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l := <-second
	if l == nil {
		t.FailNow()
	}
	if l.Token() <= first.Token() {
		t.Fatalf("the second grant's token %d is not above the first's %d", l.Token(), first.Token())
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// crashable is a transport whose renewals and releases fail once crashed,
// as if its process had died: the lease is left to run out.
type crashable struct {
	lockclient.Transport
	crashed atomic.Bool
}

func (c *crashable) KeepAlive(ctx context.Context, l *lockv1.Lease) (time.Duration, error) {
	if c.crashed.Load() {
		return 0, status.Error(codes.Unavailable, "crashed")
	}
	return c.Transport.KeepAlive(ctx, l)
}

func (c *crashable) Release(ctx context.Context, l *lockv1.Lease) error {
	if c.crashed.Load() {
		return status.Error(codes.Unavailable, "crashed")
	}
	return c.Transport.Release(ctx, l)
}

// WatchLoss records when l's loss signal fires: from now on a goroutine
// blocks on l.Lost and takes the time as it wakes, so the time does not
// depend on when the test next looks. The channel yields that time once,
// if the lock is lost before tb ends; the goroutine ends with tb.
func WatchLoss(tb testing.TB, l *lockclient.Lock) <-chan time.Time {
	tb.Helper()
	lost := make(chan time.Time, 1)
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		select {
		case <-l.Lost():
			lost <- time.Now()
		case <-done:
		}
	}()
	tb.Cleanup(func() {
		close(done)
		<-ended
	})
	return lost
}

// holderCrash: a holder stops renewing without unlocking; a waiter gets
// the lock once the lease runs out, and the holder's loss signal fires
// before the waiter is granted.
func holderCrash(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := lockName(t)
	ct := &crashable{Transport: h.Transport(t)}
	holder := lockclient.New(ct, lockclient.WithTTL(2*time.Second))
	l, err := holder.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	waiter := client(t, h)
	type grant struct {
		l   *lockclient.Lock
		at  time.Time
		err error
	}
	granted := make(chan grant, 1)
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		wl, err := waiter.Lock(ctx, name)
		granted <- grant{wl, time.Now(), err}
	}()
	t.Cleanup(func() { cancel(); <-waited })
	time.Sleep(500 * time.Millisecond) // the waiter queues; the holder renews at least once
	lost := WatchLoss(t, l)
	ct.crashed.Store(true)
	crashed := time.Now()

	// Which of the two a select sees first depends on scheduling; the
	// times taken as each happened do not.
	var lostAt time.Time
	select {
	case lostAt = <-lost:
	case <-ctx.Done():
		t.Fatal("the crashed holder was never told of its loss")
	}
	g := <-granted
	if g.err != nil {
		t.Fatal(g.err)
	}
	defer g.l.Unlock(ctx)
	if !lostAt.Before(g.at) {
		t.Fatalf("loss signalled at %v, after the grant at %v", lostAt, g.at)
	}
	if !errors.Is(l.Err(), lockclient.ErrLost) {
		t.Fatalf("Err of the lost lock: %v, want ErrLost", l.Err())
	}
	if g.l.Token() <= l.Token() {
		t.Fatalf("the waiter's token %d is not above the crashed holder's %d", g.l.Token(), l.Token())
	}
	t.Logf("crash→loss %v, loss→grant %v", lostAt.Sub(crashed), g.at.Sub(lostAt))
}

// onlyTheHolder: a release or renewal with a wrong lease id or token is
// PERMISSION_DENIED; after a release, both are FAILED_PRECONDITION, and
// Unlock twice is ErrReleased.
func onlyTheHolder(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := lockName(t)
	raw := h.Transport(t)
	l, err := client(t, h).Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	wrongID, wrongToken := cloneLease(l.Lease()), cloneLease(l.Lease())
	wrongID.LeaseId = strings.Repeat("0", 32)
	wrongToken.Token++
	for _, bad := range []*lockv1.Lease{wrongID, wrongToken} {
		if err := raw.Release(ctx, bad); status.Code(err) != codes.PermissionDenied {
			t.Errorf("release with lease id %s token %d: %v, want PermissionDenied", bad.GetLeaseId(), bad.GetToken(), err)
		}
		if _, err := raw.KeepAlive(ctx, bad); status.Code(err) != codes.PermissionDenied {
			t.Errorf("renewal with lease id %s token %d: %v, want PermissionDenied", bad.GetLeaseId(), bad.GetToken(), err)
		}
	}
	if d, err := h.Describe(ctx, name); err != nil || d.GetHolder().GetToken() != l.Token() {
		t.Fatalf("after refused releases the lock is %v (%v), want held with token %d", d, err, l.Token())
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, lockclient.ErrReleased) {
		t.Fatalf("second Unlock: %v, want ErrReleased", err)
	}
	if err := raw.Release(ctx, l.Lease()); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("release of a released lease: %v, want FailedPrecondition", err)
	}
	if _, err := raw.KeepAlive(ctx, l.Lease()); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("renewal of a released lease: %v, want FailedPrecondition", err)
	}
}

func cloneLease(l *lockv1.Lease) *lockv1.Lease {
	return &lockv1.Lease{LeaseId: l.GetLeaseId(), Name: l.GetName(), Token: l.GetToken(), Replica: l.GetReplica(), Ttl: l.GetTtl()}
}

// idempotent: a retried acquire with the same request id gets the same
// lease, and after its release it is refused rather than granted again.
func idempotent(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw := h.Transport(t)
	req := &lockv1.AcquireRequest{Name: lockName(t), Wait: true, RequestId: "retry-" + fmt.Sprint(time.Now().UnixNano()), Ttl: durationpb.New(5 * time.Second)}
	first, err := raw.Acquire(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := raw.Acquire(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetLeaseId() != first.GetLeaseId() || again.GetToken() != first.GetToken() {
		t.Fatalf("a retried acquire got lease %s token %d, the first %s token %d", again.GetLeaseId(), again.GetToken(), first.GetLeaseId(), first.GetToken())
	}
	d, err := h.Describe(ctx, req.GetName())
	if err != nil || len(d.GetWaiters()) != 0 {
		t.Fatalf("after a retried acquire: %v (%v), want one contender", d, err)
	}
	if err := raw.Release(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Acquire(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a late duplicate of a released acquire: %v, want FailedPrecondition", err)
	}
}

// cancelledWait: a wait that times out leaves no contender behind.
func cancelledWait(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := lockName(t)
	l, err := client(t, h).Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	for _, end := range []string{"deadline", "cancel"} {
		wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		if end == "cancel" {
			time.AfterFunc(300*time.Millisecond, wcancel)
			wctx, wcancel = context.WithCancel(ctx)
			time.AfterFunc(300*time.Millisecond, wcancel)
		}
		_, err := client(t, h).Lock(wctx, name)
		wcancel()
		if err == nil {
			t.Fatalf("%s: a wait on a held lock succeeded", end)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, err := h.Describe(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.GetWaiters()) == 0 && d.GetHolder().GetToken() == l.Token() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the ended wait left %d waiters behind", end, len(d.GetWaiters()))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// badInput: names, TTLs and request ids the service refuses, each with
// INVALID_ARGUMENT and nothing left behind.
func badInput(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw := h.Transport(t)
	ttl := func(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
	tests := []struct {
		name string
		req  *lockv1.AcquireRequest
	}{
		{"empty name", &lockv1.AcquireRequest{Name: ""}},
		{"absolute", &lockv1.AcquireRequest{Name: "/orders/1"}},
		{"dot dot", &lockv1.AcquireRequest{Name: "orders/../x"}},
		{"empty segment", &lockv1.AcquireRequest{Name: "orders//1"}},
		{"trailing slash", &lockv1.AcquireRequest{Name: "orders/"}},
		{"control character", &lockv1.AcquireRequest{Name: "orders\x01"}},
		{"too long", &lockv1.AcquireRequest{Name: strings.Repeat("x", 257)}},
		{"ttl too short", &lockv1.AcquireRequest{Name: "ok", Ttl: ttl(100 * time.Millisecond)}},
		{"ttl too long", &lockv1.AcquireRequest{Name: "ok", Ttl: ttl(time.Hour)}},
		{"negative ttl", &lockv1.AcquireRequest{Name: "ok", Ttl: ttl(-time.Second)}},
		{"bad request id", &lockv1.AcquireRequest{Name: "ok", RequestId: "has space"}},
		{"long request id", &lockv1.AcquireRequest{Name: "ok", RequestId: strings.Repeat("a", 65)}},
		{"long owner", &lockv1.AcquireRequest{Name: "ok", Owner: strings.Repeat("o", 129)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := raw.Acquire(ctx, tt.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Acquire(%q): %v, want InvalidArgument", tt.req.GetName(), err)
			}
		})
	}
	if _, err := h.Describe(ctx, "ok"); status.Code(err) != codes.NotFound {
		t.Fatalf("a refused acquire left lock \"ok\" behind: %v", err)
	}
}
