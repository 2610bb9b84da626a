package weighted_test

import (
	"context"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance/weighted"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

func TestMain(m *testing.M) { zktest.Main(m) }

func dial(tb testing.TB) *registry.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := registry.Dial(ctx, zktest.Shared(tb).ConnectString(), registry.WithLogger(zktest.Logger(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// backend serves an echo server named id and registers it under svc.
func backend(tb testing.TB, reg *registry.Client, svc, id string, weight uint32, meta map[string]string) *registry.Registration {
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := reg.Register(ctx, &registryv1.Instance{Service: svc, Id: id, Address: lis.Addr().String(), Weight: weight, Metadata: meta})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func client(tb testing.TB, svc string) echov1.EchoServiceClient {
	tb.Helper()
	conn, err := rpc.NewClient(dial(tb), svc, rpc.WithBalancer(weighted.Name), rpc.WithClientLogger(zktest.Logger(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return echov1.NewEchoServiceClient(conn)
}

// calls makes n calls and counts who served them.
func calls(tb testing.TB, c echov1.EchoServiceClient, n int) map[string]int {
	tb.Helper()
	out := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.Echo(ctx, &echov1.EchoRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			tb.Fatal(err)
		}
		out[resp.GetServedBy()]++
	}
	return out
}

// awaitAll calls until every id has served, so that every backend is
// connected before shares are measured.
func awaitAll(tb testing.TB, c echov1.EchoServiceClient, ids ...string) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := calls(tb, c, 20)
		all := true
		for _, id := range ids {
			all = all && got[id] > 0
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not every backend of %v serves: %v", ids, got)
		}
	}
}

// checkShares fails unless each id's share of got is within tol of want.
func checkShares(tb testing.TB, got map[string]int, want map[string]float64, tol float64) {
	tb.Helper()
	total := 0
	for _, n := range got {
		total += n
	}
	for id, w := range want {
		if share := float64(got[id]) / float64(total); math.Abs(share-w) > tol {
			tb.Fatalf("%s served %.3f of calls, want %.3f ± %.3f (all: %v)", id, share, w, tol, got)
		}
	}
}

func svcName(t *testing.T) string { return "test." + strings.ReplaceAll(t.Name(), "/", ".") }

// TestWeightsRespected: weights 1:2:5 give shares 1/8, 2/8, 5/8 within one
// percentage point over 1600 calls (smooth round robin is exact per
// cycle), and a weight changed in the registry is followed.
func TestWeightsRespected(t *testing.T) {
	reg := dial(t)
	svc := svcName(t)
	a := backend(t, reg, svc, "a", 1, nil)
	backend(t, reg, svc, "b", 2, nil)
	backend(t, reg, svc, "c", 5, nil)
	c := client(t, svc)
	awaitAll(t, c, "a", "b", "c")
	checkShares(t, calls(t, c, 1600), map[string]float64{"a": 1.0 / 8, "b": 2.0 / 8, "c": 5.0 / 8}, 0.01)

	if err := a.Update(context.Background(), func(i *registryv1.Instance) { i.Weight = 9 }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := calls(t, c, 160)
		if float64(got["a"])/160 > 0.5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weight 9 for a not followed: %v", got)
		}
	}
	checkShares(t, calls(t, c, 1600), map[string]float64{"a": 9.0 / 16, "b": 2.0 / 16, "c": 5.0 / 16}, 0.01)
}

// TestSlowStart registers c with a 3s warm-up beside a and b of equal
// weight: just after registering it gets far less than its third, and
// after the warm-up its full third.
func TestSlowStart(t *testing.T) {
	reg := dial(t)
	svc := svcName(t)
	backend(t, reg, svc, "a", 100, nil)
	backend(t, reg, svc, "b", 100, nil)
	c := client(t, svc)
	awaitAll(t, c, "a", "b")

	registered := time.Now()
	backend(t, reg, svc, "c", 100, map[string]string{weighted.WarmupKey: "3s"})
	awaitAll(t, c, "a", "b", "c")
	early := calls(t, c, 300)
	elapsed := time.Since(registered)
	earlyShare := float64(early["c"]) / 300
	// At most the share its ramp allows at the end of the window, plus slack.
	limit := (elapsed.Seconds()/3)/(2+elapsed.Seconds()/3) + 0.05
	if elapsed > 2*time.Second || earlyShare > limit {
		t.Fatalf("within %v of registering, c served %.3f of calls, want at most %.3f (calls %v)", elapsed, earlyShare, limit, early)
	}
	time.Sleep(time.Until(registered.Add(3200 * time.Millisecond)))
	checkShares(t, calls(t, c, 900), map[string]float64{"a": 1.0 / 3, "b": 1.0 / 3, "c": 1.0 / 3}, 0.02)
	t.Logf("c's share: %.3f in the first %v of its 3s warm-up, 1/3 after", earlyShare, elapsed.Round(time.Millisecond))
}
