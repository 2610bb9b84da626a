package zktest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zktest"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// TestEphemeralNodeVanishesWithSession checks the property every
// registration and lock in Switchyard rests on: an ephemeral znode lives
// exactly as long as the session that created it.
func TestEphemeralNodeVanishesWithSession(t *testing.T) {
	srv := zktest.Shared(t)
	owner := zktest.Connect(t, srv.ConnectString())
	observer := zktest.Connect(t, srv.ConnectString())
	root := zktest.Root(t, observer)

	path, err := owner.Create(root+"/ephemeral", []byte("alive"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	if err != nil {
		t.Fatalf("create ephemeral: %v", err)
	}
	exists, stat, watch, err := observer.ExistsW(path)
	if err != nil || !exists {
		t.Fatalf("observer does not see %s: exists=%v err=%v", path, exists, err)
	}
	if stat.EphemeralOwner != owner.SessionID() {
		t.Fatalf("ephemeralOwner = %#x, want the owner's session %#x", stat.EphemeralOwner, owner.SessionID())
	}

	owner.Close()
	select {
	case ev := <-watch:
		if ev.Type != zk.EventNodeDeleted || ev.Path != path {
			t.Fatalf("watch event = %+v, want NodeDeleted on %s", ev, path)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still there 10s after its session closed", path)
	}
	if exists, _, err := observer.Exists(path); err != nil || exists {
		t.Fatalf("after close: exists=%v err=%v, want gone", exists, err)
	}
}

// TestSharedRootsAreIsolated checks that Root gives each test its own path.
func TestSharedRootsAreIsolated(t *testing.T) {
	conn := zktest.Connect(t, zktest.Shared(t).ConnectString())
	a, b := zktest.Root(t, conn), zktest.Root(t, conn)
	if a == b {
		t.Fatalf("two roots share the path %s", a)
	}
	if _, err := conn.Create(a+"/x", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := conn.Exists(b + "/x"); err != nil || ok {
		t.Fatalf("%s/x: exists=%v err=%v, want absent", b, ok, err)
	}
}

// TestEnsembleWritesWithoutAFollower kills a follower of a 3-server
// ensemble: the remaining majority keeps accepting writes, and the follower
// catches up when it comes back.
func TestEnsembleWritesWithoutAFollower(t *testing.T) {
	ens := zktest.StartEnsemble(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	follower, err := ens.Find(ctx, "follower")
	if err != nil {
		t.Fatal(err)
	}
	if err := ens.KillServer(follower); err != nil {
		t.Fatal(err)
	}
	conn := zktest.Connect(t, ens.ConnectString())
	for i := range 20 {
		if _, err := conn.Create("/written-", []byte{byte(i)}, zk.FlagSequence, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatalf("write %d with server %d down: %v", i, follower+1, err)
		}
	}

	if err := ens.StartServer(ctx, follower); err != nil {
		t.Fatal(err)
	}
	// Read from the restarted server alone: after sync it has every write.
	only := zktest.Connect(t, ens.Addr(follower))
	if _, err := only.Sync("/"); err != nil {
		t.Fatal(err)
	}
	children, _, err := only.Children("/")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range children {
		if len(c) > len("written-") && c[:len("written-")] == "written-" {
			n++
		}
	}
	if n != 20 {
		t.Fatalf("restarted server %d sees %d of 20 writes", follower+1, n)
	}
}

// TestEnsembleElectsNewLeader kills the leader: the two survivors elect a
// new one, and a client that was connected carries on writing.
func TestEnsembleElectsNewLeader(t *testing.T) {
	ens := zktest.StartEnsemble(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	leader, err := ens.Find(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	conn := zktest.Connect(t, ens.ConnectString(), zktest.WithSessionTimeout(10*time.Second))
	if _, err := conn.Create("/before", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if err := ens.KillServer(leader); err != nil {
		t.Fatal(err)
	}
	newLeader, err := ens.Find(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	if newLeader == leader {
		t.Fatalf("server %d is leader again while killed", leader+1)
	}
	// The session survives the election (it is shorter than the session
	// timeout), so writes go on once the client has reconnected.
	var lastErr error
	for range 100 {
		if _, lastErr = conn.Create("/after", nil, 0, zk.WorldACL(zk.PermAll)); lastErr == nil || errors.Is(lastErr, zk.ErrNodeExists) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lastErr != nil && !errors.Is(lastErr, zk.ErrNodeExists) {
		t.Fatalf("no write after leader %d was killed: %v", leader+1, lastErr)
	}
	if ok, _, err := conn.Exists("/before"); err != nil || !ok {
		t.Fatalf("/before lost with the old leader: exists=%v err=%v", ok, err)
	}
}
