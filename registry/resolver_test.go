package registry_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
)

// serveEcho runs an echo server named id on a loopback port.
func serveEcho(tb testing.TB, id string) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer()
	echov1.RegisterEchoServiceServer(srv, &echo.Server{ID: id})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	tb.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

// dialEcho opens a gRPC client to zk:///<svc> through c's resolver with
// round robin.
func dialEcho(tb testing.TB, c *registry.Client, svc string) echov1.EchoServiceClient {
	tb.Helper()
	conn, err := grpc.NewClient("zk:///"+svc,
		grpc.WithResolvers(c.ResolverBuilder()),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return echov1.NewEchoServiceClient(conn)
}

// servedBy makes n calls and counts who served them; failed calls count
// under "error".
func servedBy(client echov1.EchoServiceClient, n int) map[string]int {
	out := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := client.Echo(ctx, &echov1.EchoRequest{Message: "x"}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			out["error"]++
			continue
		}
		out[resp.GetServedBy()]++
	}
	return out
}

// awaitServers calls until the set of servers answering is exactly want,
// failing after 15s.
func awaitServers(tb testing.TB, client echov1.EchoServiceClient, want ...string) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := servedBy(client, 20)
		ok := len(got) == len(want)
		for _, id := range want {
			ok = ok && got[id] > 0
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("calls served by %v, want exactly %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestResolverRoutesToRegisteredInstances dials zk:///<service> and
// follows the registry: new instances get calls, a draining one stops
// getting them, a deregistered one is gone.
func TestResolverRoutesToRegisteredInstances(t *testing.T) {
	srv := zktest.Shared(t)
	svc := service(t)
	servers := dial(t, srv.ConnectString())
	regs := map[string]*registry.Registration{}
	for _, id := range []string{"a", "b"} {
		regs[id] = register(t, servers, instance(svc, id, serveEcho(t, id)))
	}
	client := dialEcho(t, dial(t, srv.ConnectString()), svc)
	awaitServers(t, client, "a", "b")

	regs["c"] = register(t, servers, instance(svc, "c", serveEcho(t, "c")))
	awaitServers(t, client, "a", "b", "c")

	ctx := context.Background()
	if err := regs["a"].Update(ctx, func(i *registryv1.Instance) { i.State = registryv1.InstanceState_INSTANCE_STATE_DRAINING }); err != nil {
		t.Fatal(err)
	}
	awaitServers(t, client, "b", "c")
	if err := regs["b"].Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	awaitServers(t, client, "c")
}

// TestResolverKeepsRoutingWithoutZooKeeper cuts the calling side off from
// ZooKeeper for longer than its session timeout: calls to the known
// instances go on succeeding throughout, and once ZooKeeper is back the
// list converges to a change made meanwhile.
func TestResolverKeepsRoutingWithoutZooKeeper(t *testing.T) {
	srv := zktest.Shared(t)
	svc := service(t)
	servers := dial(t, srv.ConnectString())
	for _, id := range []string{"a", "b"} {
		register(t, servers, instance(svc, id, serveEcho(t, id)))
	}
	proxy := zktest.NewProxy(t, srv.Addr(0))
	callerRegistry := dial(t, proxy.Addr(), registry.WithSessionTimeout(time.Second))
	client := dialEcho(t, callerRegistry, svc)
	awaitServers(t, client, "a", "b")

	proxy.Cut()
	cutAt := time.Now()
	calls := 0
	for time.Since(cutAt) < 3*time.Second { // three session timeouts
		got := servedBy(client, 10)
		if got["error"] > 0 {
			t.Fatalf("calls failed %v after %v without ZooKeeper", got, time.Since(cutAt))
		}
		calls += 10
	}
	register(t, servers, instance(svc, "c", serveEcho(t, "c")))
	proxy.Heal()
	awaitServers(t, client, "a", "b", "c")
	t.Logf("%d calls succeeded while ZooKeeper was unreachable", calls)
}

// TestResolverRejectsBadTargets checks the errors of targets the resolver
// cannot follow.
func TestResolverRejectsBadTargets(t *testing.T) {
	c := dial(t, zktest.Shared(t).ConnectString())
	tests := []struct{ name, target, want string }{
		{"no service", "zk:///", "invalid name: empty"},
		{"nested path", "zk:///a/b", "contains '/'"},
		{"unreachable authority", "zk://127.0.0.1:1/svc", "no session with 127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := grpc.NewClient(tt.target, grpc.WithResolvers(c.ResolverBuilder()),
				grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatalf("NewClient(%q): %v", tt.target, err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, err = echov1.NewEchoServiceClient(conn).Echo(ctx, &echov1.EchoRequest{})
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("call through %q: %v, want Unavailable saying %q", tt.target, err, tt.want)
			}
		})
	}
}
