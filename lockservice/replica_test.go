package lockservice_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance"
	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// contenders counts the contender nodes under the lock root: what would
// be orphans once every lock is released.
func contenders(t *testing.T, conn *zk.Conn) int {
	t.Helper()
	dirs, _, err := conn.Children(zklock.DefaultRoot)
	if err == zk.ErrNoNode {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		kids, _, err := conn.Children(zklock.DefaultRoot + "/" + d)
		if err != nil && err != zk.ErrNoNode {
			t.Fatal(err)
		}
		n += len(kids)
	}
	return n
}

// TestReplicaKilled kills the replica that holds a lease (its server stops
// and its ZooKeeper session is cut off, as a crashed process's would be).
// The holder is told of the loss before a waiter is granted the lock; the
// other replica serves all along; and once the dead session expires and
// every lock is released, no contender node is left behind.
func TestReplicaKilled(t *testing.T) {
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	const session = 2 * time.Second
	replicas := map[string]*locktest.Replica{}
	for _, id := range []string{"kill-a", "kill-b"} {
		replicas[id] = locktest.StartReplica(t, reg, zkAddr, id, session)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const name = "test/replica-killed"

	holder := locktest.Client(t, reg, lockclient.WithTTL(5*time.Second))
	held, err := holder.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	victim := replicas[held.Lease().GetReplica()]
	survivor := replicas["kill-a"]
	if victim == survivor {
		survivor = replicas["kill-b"]
	}
	if ttl := held.Lease().GetTtl().AsDuration(); ttl > session {
		t.Fatalf("granted %v with a %v session: a lease must not outlast the session", ttl, session)
	}

	type grant struct {
		l   *lockclient.Lock
		at  time.Time
		err error
	}
	granted := make(chan grant, 1)
	waiter := locktest.Client(t, reg)
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		l, err := waiter.Lock(ctx, name)
		granted <- grant{l, time.Now(), err}
	}()
	t.Cleanup(func() { cancel(); <-waited })
	time.Sleep(300 * time.Millisecond)

	lost := locktest.WatchLoss(t, held)
	victim.Kill()
	victim.Proxy.Cut()
	killed := time.Now()

	other := locktest.Client(t, reg)
	l, err := other.TryLock(ctx, "test/replica-killed-other")
	if err != nil {
		t.Fatalf("with %s dead, %s did not serve: %v", victim.ID, survivor.ID, err)
	}
	if l.Lease().GetReplica() != survivor.ID {
		t.Fatalf("granted by %s, which is dead", l.Lease().GetReplica())
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// Loss and grant are compared by the times taken as each happened,
	// not by which of them a select here sees first.
	var lostAt time.Time
	select {
	case lostAt = <-lost:
	case <-ctx.Done():
		t.Fatal("the holder was never told of its loss")
	}
	g := <-granted
	if g.err != nil {
		t.Fatalf("the waiter: %v", g.err)
	}
	if !lostAt.Before(g.at) {
		t.Fatalf("loss at +%v, grant at +%v", lostAt.Sub(killed), g.at.Sub(killed))
	}
	t.Logf("kill→loss %v, kill→grant %v (session %v)", lostAt.Sub(killed), g.at.Sub(killed), session)
	if err := g.l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	conn := zktest.Connect(t, zktest.Shared(t).ConnectString())
	deadline := time.Now().Add(10 * time.Second)
	for n := contenders(t, conn); n != 0; n = contenders(t, conn) {
		if time.Now().After(deadline) {
			t.Fatalf("%d contender nodes left behind after every lock was released", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDisconnectedReplicaPromisesNothing cuts a replica off from ZooKeeper
// (within its session timeout): while it cannot hear ZooKeeper it grants
// and renews nothing, answering UNAVAILABLE; once healed it serves again.
func TestDisconnectedReplicaPromisesNothing(t *testing.T) {
	reg := lbtest.Dial(t)
	r := locktest.StartReplica(t, reg, zktest.Shared(t).Addr(0), "cut-off", 8*time.Second)
	c := admin(t, reg)
	ctx, cancel := context.WithTimeout(loadbalance.WithInstance(context.Background(), r.ID), 30*time.Second)
	defer cancel()
	first, err := c.Acquire(ctx, &lockv1.AcquireRequest{Name: "test/cut-off", Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Proxy.Cut()
	for deadline := time.Now().Add(10 * time.Second); r.Conn.Connected(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replica still says it is connected")
		}
	}
	if _, err := c.Acquire(ctx, &lockv1.AcquireRequest{Name: "test/cut-off-2", Wait: true}); status.Code(err) != codes.Unavailable {
		t.Fatalf("acquire while cut off: %v, want Unavailable", err)
	}
	keep := &lockv1.KeepAliveRequest{Name: "test/cut-off", LeaseId: first.GetLease().GetLeaseId(), Token: first.GetLease().GetToken()}
	if _, err := c.KeepAlive(ctx, keep); status.Code(err) != codes.Unavailable {
		t.Fatalf("renewal while cut off: %v, want Unavailable", err)
	}
	r.Proxy.Heal()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.KeepAlive(ctx, keep)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewal after the cut healed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLimits: a replica queues at most MaxWaiters acquires per lock and
// holds at most MaxLeases leases; past either, RESOURCE_EXHAUSTED, and the
// refused acquires leave no node.
func TestLimits(t *testing.T) {
	reg := lbtest.Dial(t)
	r := locktest.StartReplica(t, reg, zktest.Shared(t).Addr(0), "limited", 10*time.Second, func(c *lockservice.Config) {
		c.MaxWaiters, c.MaxLeases = 3, 5
	})
	c := admin(t, reg)
	ctx, cancel := context.WithTimeout(loadbalance.WithInstance(context.Background(), r.ID), 30*time.Second)
	defer cancel()
	ttl := durationpb.New(10 * time.Second)

	if _, err := c.Acquire(ctx, &lockv1.AcquireRequest{Name: "test/limit-0", Ttl: ttl}); err != nil {
		t.Fatal(err)
	}
	// Three waiters on a held lock fill its queue; a fourth is refused.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := c.Acquire(wctx, &lockv1.AcquireRequest{Name: "test/limit-0", Wait: true, Ttl: ttl})
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := c.Describe(ctx, &lockv1.DescribeRequest{Name: "test/limit-0"})
		if err == nil && len(d.GetWaiters()) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiters did not queue: %v %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := c.Acquire(ctx, &lockv1.AcquireRequest{Name: "test/limit-0", Wait: true, Ttl: ttl})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "queued") {
		t.Fatalf("a fourth waiter: %v, want ResourceExhausted", err)
	}
	wcancel()
	for range 3 {
		<-errs
	}
	// The client sees Canceled as soon as its context ends; the replica
	// deletes the waiters' nodes a little later.
	awaitWaiters(t, c, "test/limit-0", 0)

	// With limit-0 held, four more leases fill the replica; a sixth is refused.
	for i := 1; i < 5; i++ {
		if _, err := c.Acquire(ctx, &lockv1.AcquireRequest{Name: fmt.Sprintf("test/limit-%d", i), Ttl: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.Acquire(ctx, &lockv1.AcquireRequest{Name: "test/limit-5", Ttl: ttl})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "leases") {
		t.Fatalf("a sixth lease: %v, want ResourceExhausted", err)
	}
}

// TestDrainEndsWaits drains a replica with an acquire waiting on it: the
// wait ends at once with UNAVAILABLE and its node is deleted, new acquires
// there are refused, and the same request retried at the other replica
// waits there and is granted when the lock is released.
func TestDrainEndsWaits(t *testing.T) {
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	a := locktest.StartReplica(t, reg, zkAddr, "drain-a", 8*time.Second)
	b := locktest.StartReplica(t, reg, zkAddr, "drain-b", 8*time.Second)
	c := admin(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const name = "test/drain"
	held, err := c.Acquire(loadbalance.WithInstance(ctx, a.ID), &lockv1.AcquireRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	waiting := &lockv1.AcquireRequest{Name: name, Wait: true, RequestId: fmt.Sprintf("drain-%d", time.Now().UnixNano())}
	ended := make(chan error, 1)
	go func() {
		_, err := c.Acquire(loadbalance.WithInstance(ctx, b.ID), waiting)
		ended <- err
	}()
	awaitWaiters(t, c, name, 1)

	b.Server.Drain()
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("the wait on the draining replica ended with %v, want Unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the wait on the draining replica did not end")
	}
	awaitWaiters(t, c, name, 0)
	if _, err := c.Acquire(loadbalance.WithInstance(ctx, b.ID), &lockv1.AcquireRequest{Name: "test/drain-new"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("a new acquire at the draining replica: %v, want Unavailable", err)
	}

	granted := make(chan *lockv1.AcquireResponse, 1)
	go func() {
		resp, err := c.Acquire(loadbalance.WithInstance(ctx, a.ID), waiting)
		if err != nil {
			t.Error(err)
		}
		granted <- resp
	}()
	awaitWaiters(t, c, name, 1)
	if _, err := c.Release(loadbalance.WithInstance(ctx, a.ID), &lockv1.ReleaseRequest{Name: name, LeaseId: held.GetLease().GetLeaseId(), Token: held.GetLease().GetToken()}); err != nil {
		t.Fatal(err)
	}
	if resp := <-granted; resp.GetLease().GetReplica() != a.ID || resp.GetLease().GetToken() <= held.GetLease().GetToken() {
		t.Fatalf("the retried request: %v, want a grant at %s with a higher token", resp, a.ID)
	}
}

// awaitWaiters waits until lock name has n waiters.
func awaitWaiters(t *testing.T, c lockv1.LockServiceClient, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := c.Describe(context.Background(), &lockv1.DescribeRequest{Name: name})
		if err == nil && len(d.GetWaiters()) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock %s: %v (%v), want %d waiters", name, d, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
