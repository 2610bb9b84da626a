package lockservice_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance"
	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// watch opens a Watch stream of prefix at replica, ended with the test.
func watch(t *testing.T, c lockv1.LockServiceClient, replica, prefix string) lockv1.LockService_WatchClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(loadbalance.WithInstance(context.Background(), replica), time.Minute)
	t.Cleanup(cancel)
	s, err := c.Watch(ctx, &lockv1.WatchRequest{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// next receives the stream's next event and checks its type, lock, token
// (unless 0) and owner.
func next(t *testing.T, s lockv1.LockService_WatchClient, typ lockv1.LockEvent_Type, name string, token uint64, owner string) *lockv1.LockEvent {
	t.Helper()
	resp, err := s.Recv()
	if err != nil {
		t.Fatalf("want %v of %s: %v", typ, name, err)
	}
	ev := resp.GetEvent()
	if ev.GetType() != typ || ev.GetName() != name || (token != 0 && ev.GetToken() != token) ||
		ev.GetContender().GetOwner() != owner || ev.GetContender().GetToken() != ev.GetToken() || ev.GetAt() == nil {
		t.Fatalf("event %v, want %v of %s token %d owner %q", ev, typ, name, token, owner)
	}
	return ev
}

// TestWatch runs streams at one replica while locks are taken at the
// other: every replica's locks are seen, as ZooKeeper has them.
func TestWatch(t *testing.T) {
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	const session = 2 * time.Second
	a := locktest.StartReplica(t, reg, zkAddr, "watch-a", session)
	b := locktest.StartReplica(t, reg, zkAddr, "watch-b", session)
	c := admin(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	atB := loadbalance.WithInstance(ctx, b.ID)
	acquire := func(t *testing.T, name, owner string, ttl time.Duration) *lockv1.Lease {
		t.Helper()
		resp, err := c.Acquire(atB, &lockv1.AcquireRequest{Name: name, Owner: owner, Wait: true, Ttl: durationpb.New(ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetLease()
	}
	release := func(t *testing.T, l *lockv1.Lease) {
		t.Helper()
		if _, err := c.Release(loadbalance.WithInstance(ctx, l.GetReplica()), &lockv1.ReleaseRequest{Name: l.GetName(), LeaseId: l.GetLeaseId(), Token: l.GetToken()}); err != nil {
			t.Fatal(err)
		}
	}

	// A lock released, and handed to a waiter: RELEASED for the old
	// holder, then GRANTED for the next, in order.
	t.Run("ReleaseAndHandoff", func(t *testing.T) {
		const name = "test/watch/handoff"
		s := watch(t, c, a.ID, "test/watch/hand")
		first := acquire(t, name, "first", 10*time.Second)
		next(t, s, lockv1.LockEvent_TYPE_GRANTED, name, first.GetToken(), "first")
		granted := make(chan *lockv1.Lease, 1)
		go func() {
			resp, err := c.Acquire(atB, &lockv1.AcquireRequest{Name: name, Owner: "second", Wait: true})
			if err != nil {
				t.Error(err)
			}
			granted <- resp.GetLease()
		}()
		awaitWaiters(t, c, name, 1)
		release(t, first)
		next(t, s, lockv1.LockEvent_TYPE_RELEASED, name, first.GetToken(), "first")
		second := <-granted
		if second == nil {
			t.FailNow()
		}
		next(t, s, lockv1.LockEvent_TYPE_GRANTED, name, second.GetToken(), "second")
		release(t, second)
		next(t, s, lockv1.LockEvent_TYPE_RELEASED, name, second.GetToken(), "second")
	})

	// A lease not renewed: its replica expires it, and says so in ZooKeeper.
	t.Run("Expired", func(t *testing.T) {
		const name = "test/watch/expired"
		s := watch(t, c, a.ID, name)
		l := acquire(t, name, "sleepy", time.Second)
		next(t, s, lockv1.LockEvent_TYPE_GRANTED, name, l.GetToken(), "sleepy")
		next(t, s, lockv1.LockEvent_TYPE_EXPIRED, name, l.GetToken(), "sleepy")
	})

	// A stream started while a lock is held begins with its holder.
	t.Run("BeginsWithHolders", func(t *testing.T) {
		const name = "test/watch/begins"
		l := acquire(t, name, "early", 10*time.Second)
		s := watch(t, c, a.ID, "test/watch/beg")
		next(t, s, lockv1.LockEvent_TYPE_GRANTED, name, l.GetToken(), "early")
		release(t, l)
		next(t, s, lockv1.LockEvent_TYPE_RELEASED, name, l.GetToken(), "early")
	})

	// Locks outside the prefix are not seen: one held all along, while
	// the stream sees two locks inside come and go.
	t.Run("Prefix", func(t *testing.T) {
		s := watch(t, c, a.ID, "test/watch/in")
		out := acquire(t, "test/watch/out", "out", 10*time.Second)
		defer release(t, out)
		for _, name := range []string{"test/watch/in", "test/watch/inner/1"} {
			l := acquire(t, name, "in", 10*time.Second)
			next(t, s, lockv1.LockEvent_TYPE_GRANTED, name, l.GetToken(), "in")
			release(t, l)
			next(t, s, lockv1.LockEvent_TYPE_RELEASED, name, l.GetToken(), "in")
		}
	})

	t.Run("BadPrefix", func(t *testing.T) {
		for _, prefix := range []string{"/abs", "bad\x01", strings.Repeat("x", zklock.MaxNameLen+1)} {
			_, err := watch(t, c, a.ID, prefix).Recv()
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("prefix %q: %v, want InvalidArgument", prefix, err)
			}
		}
	})

	// Last, as it kills replica b: its lock goes with its session.
	t.Run("ReplicaKilled", func(t *testing.T) {
		const name = "test/watch/killed"
		s := watch(t, c, a.ID, name)
		l := acquire(t, name, "doomed", 10*time.Second)
		next(t, s, lockv1.LockEvent_TYPE_GRANTED, name, l.GetToken(), "doomed")
		b.Kill()
		b.Proxy.Cut()
		next(t, s, lockv1.LockEvent_TYPE_LOST, name, l.GetToken(), "doomed")
	})
}

// TestWatchSlowConsumer: a client that does not read while hundreds of
// locks are granted is ended with RESOURCE_EXHAUSTED once the replica's
// buffer for it (16 events here) is full, rather than holding the watcher
// up; it gets the events buffered before, then the error. A client that
// reads, on the same replica, gets every event.
func TestWatchSlowConsumer(t *testing.T) {
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	r := locktest.StartReplica(t, reg, zkAddr, "watch-slow", 4*time.Second, func(c *lockservice.Config) { c.WatchBuffer = 16 })
	c := slowClient(t, reg)
	prefix := "test/slow/" + strings.Repeat("x", 200)
	s := watch(t, c, r.ID, prefix)
	fast := watch(t, admin(t, reg), r.ID, prefix)

	// Hold enough locks, with enough data, that their GRANTED events fill
	// HTTP/2's windows (64KiB each way) several times over.
	const locks = 600
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := zkconn.Dial(ctx, zkAddr, 10*time.Second, zktest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	locker, err := zklock.New(conn, zklock.WithLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	data, err := protojson.Marshal(&lockv1.Contender{Owner: strings.Repeat("o", lockservice.MaxOwnerLen), Replica: "raw", RequestId: strings.Repeat("r", lockservice.MaxRequestID)})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		grants []*zklock.Grant
	)
	sem := make(chan struct{}, 16)
	for i := range locks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			g, err := locker.Acquire(ctx, fmt.Sprintf("%s/%03d", prefix, i), zklock.NewGUID(), data, false)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			grants = append(grants, g)
			mu.Unlock()
		})
	}
	wg.Wait()
	defer func() {
		for _, g := range grants {
			if err := locker.Release(ctx, g); err != nil {
				t.Error(err)
			}
		}
	}()
	if t.Failed() {
		t.FailNow()
	}
	// The watcher offers each event to both streams at once: once the
	// reader has had them all, so has the stream that does not read.
	for i := range locks {
		if _, err := fast.Recv(); err != nil {
			t.Fatalf("the stream that reads, at event %d: %v", i, err)
		}
	}

	received := 0
	for {
		_, err := s.Recv()
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "fell behind") {
				t.Fatalf("after %d events: %v, want ResourceExhausted", received, err)
			}
			break
		}
		received++
	}
	if received >= locks {
		t.Fatalf("%d events before the stream ended, want fewer than the %d grants", received, locks)
	}
	t.Logf("%d events, then RESOURCE_EXHAUSTED", received)
}

// slowClient returns a lock-service client whose HTTP/2 windows stay at
// 64KiB (no BDP growth), so that a stream it does not read fills them.
func slowClient(t *testing.T, reg *registry.Client) lockv1.LockServiceClient {
	t.Helper()
	conn, err := rpc.NewClient(reg, locktest.Service, rpc.WithClientMetrics(nil), rpc.WithClientLogger(zktest.Logger(t)),
		rpc.WithDialOptions(grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return lockv1.NewLockServiceClient(conn)
}

// TestWatchEndsAtDrain: a Watch stream at a replica that starts draining
// ends with UNAVAILABLE (its client can watch at another replica), after
// delivering what it had.
func TestWatchEndsAtDrain(t *testing.T) {
	reg := lbtest.Dial(t)
	r := locktest.StartReplica(t, reg, zktest.Shared(t).Addr(0), "watch-drain", 4*time.Second)
	c := admin(t, reg)
	ctx, cancel := context.WithTimeout(loadbalance.WithInstance(context.Background(), r.ID), 30*time.Second)
	defer cancel()
	held, err := c.Acquire(ctx, &lockv1.AcquireRequest{Name: "test/watch-drain", Owner: "drainer"})
	if err != nil {
		t.Fatal(err)
	}
	s := watch(t, c, r.ID, "test/watch-drain")
	next(t, s, lockv1.LockEvent_TYPE_GRANTED, "test/watch-drain", held.GetLease().GetToken(), "drainer")
	r.Server.Drain()
	for {
		_, err := s.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("the stream at a draining replica ended with %v, want Unavailable", err)
		}
		return
	}
}
