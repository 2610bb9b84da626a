package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zktest"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
)

// TestEnsembleLeaderLoss kills the leader of a 3-server ensemble: the
// registration stays, and registering, updating and watching go on.
func TestEnsembleLeaderLoss(t *testing.T) {
	ens := zktest.StartEnsemble(t, 3)
	svc := service(t)
	server := dial(t, ens.ConnectString(), registry.WithSessionTimeout(10*time.Second))
	w := watch(t, dial(t, ens.ConnectString(), registry.WithSessionTimeout(10*time.Second)), svc)
	reg := register(t, server, instance(svc, "a", "127.0.0.1:7001"))
	await(t, w, "a", hasIDs("a"))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader, err := ens.Find(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	if err := ens.KillServer(leader); err != nil {
		t.Fatal(err)
	}
	if _, err := ens.Find(ctx, "leader"); err != nil {
		t.Fatal(err)
	}
	// Register retries while the client reconnects; Update is retried by
	// the upkeep if it lands mid-election, so wait for what watchers see.
	register(t, server, instance(svc, "b", "127.0.0.1:7002"))
	_ = reg.Update(ctx, func(i *registryv1.Instance) { i.Weight = 9 })
	snap := await(t, w, "a (weight 9) and b", func(s registry.Snapshot) bool {
		return len(s.Instances) == 2 && s.Instances[0].GetWeight() == 9 && len(s.Held) == 0
	})
	if ids := ids(snap); ids[0] != "a" || ids[1] != "b" {
		t.Fatalf("after leader loss: %s", describe(snap))
	}
}

// TestZooKeeperDownPastSessionTimeout stops the (only) ZooKeeper server
// for longer than every session timeout: calls to the known instances
// succeed throughout, and once it is back the callers' list converges on
// a change made after the restart.
func TestZooKeeperDownPastSessionTimeout(t *testing.T) {
	zkSrv := zktest.Start(t)
	svc := service(t)
	servers := dial(t, zkSrv.ConnectString())
	for _, id := range []string{"a", "b"} {
		register(t, servers, instance(svc, id, serveEcho(t, id)))
	}
	callers := dial(t, zkSrv.ConnectString())
	client := dialEcho(t, callers, svc)
	awaitServers(t, client, "a", "b")

	if err := zkSrv.StopServer(0); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	for time.Since(down) < 5*time.Second { // 2.5 × the 2s session timeout
		if got := servedBy(client, 10); got["error"] > 0 {
			t.Fatalf("calls failed %v after ZooKeeper had been down %v", got, time.Since(down))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := zkSrv.StartServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	register(t, servers, instance(svc, "c", serveEcho(t, "c")))
	awaitServers(t, client, "a", "b", "c")
}
