// Package lbtest holds what the balancer and RPC tests share: echo backends
// registered in a real ZooKeeper, a client through the registry with a
// chosen policy, and call counting by the serving instance.
package lbtest

import (
	"context"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// Dial opens a registry client to the package's shared ZooKeeper (the
// package's TestMain must call zktest.Main).
func Dial(tb testing.TB) *registry.Client {
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

// Backend serves impl on a loopback port and registers it under svc as id
// through reg. stop stops the server and leaves the registration, as a
// crashed process's node lingers until its session times out.
func Backend(tb testing.TB, reg *registry.Client, svc, id string, impl echov1.EchoServiceServer, weight uint32, meta map[string]string) (r *registry.Registration, stop func()) {
	tb.Helper()
	return BackendOf(tb, reg, &registryv1.Instance{Service: svc, Id: id, Weight: weight, Metadata: meta}, impl)
}

// BackendOf is Backend for a record of the caller's (zone, version...);
// its address is filled in.
func BackendOf(tb testing.TB, reg *registry.Client, inst *registryv1.Instance, impl echov1.EchoServiceServer) (r *registry.Registration, stop func()) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer()
	echov1.RegisterEchoServiceServer(srv, impl)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	tb.Cleanup(func() { srv.Stop(); <-done })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inst = proto.Clone(inst).(*registryv1.Instance)
	inst.Address = lis.Addr().String()
	r, err = reg.Register(ctx, inst)
	if err != nil {
		tb.Fatal(err)
	}
	return r, srv.Stop
}

// Client calls svc through the registry with the named balancer and
// further options.
func Client(tb testing.TB, svc, balancer string, opts ...rpc.ClientOption) echov1.EchoServiceClient {
	tb.Helper()
	opts = append([]rpc.ClientOption{rpc.WithBalancer(balancer), rpc.WithClientLogger(zktest.Logger(tb))}, opts...)
	conn, err := rpc.NewClient(Dial(tb), svc, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return echov1.NewEchoServiceClient(conn)
}

// Calls makes n calls one after another and counts who served them.
func Calls(tb testing.TB, c echov1.EchoServiceClient, n int) map[string]int {
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

// AwaitAll calls until every id has served, so that every backend is
// connected before shares are measured.
func AwaitAll(tb testing.TB, c echov1.EchoServiceClient, ids ...string) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := Calls(tb, c, 20)
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

// CheckShares fails unless each id's share of got is within tol of want.
func CheckShares(tb testing.TB, got map[string]int, want map[string]float64, tol float64) {
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

// Service returns a registry name of tb's own.
func Service(tb testing.TB) string {
	return "test." + strings.ReplaceAll(tb.Name(), "/", ".")
}

// Faulty answers like echo.Server while Fail is false, and fails every
// call with Unavailable while it is true: an instance that is connected
// but broken, as one whose own dependency is down.
type Faulty struct {
	echo.Server
	Fail atomic.Bool
}

// Echo fails while f.Fail is set.
func (f *Faulty) Echo(ctx context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	if f.Fail.Load() {
		return nil, status.Errorf(codes.Unavailable, "%s is failing", f.ID)
	}
	return f.Server.Echo(ctx, req)
}

// Try makes n calls one after another, without waiting for readiness,
// and counts who served them and how many failed.
func Try(tb testing.TB, c echov1.EchoServiceClient, n int) (served map[string]int, failed int) {
	tb.Helper()
	served = map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.Echo(ctx, &echov1.EchoRequest{})
		cancel()
		if err != nil {
			failed++
			continue
		}
		served[resp.GetServedBy()]++
	}
	return served, failed
}

// Slow answers like echo.Server after Delay.
type Slow struct {
	echo.Server
	Delay time.Duration
}

// Echo answers after s.Delay, or fails with the context's status.
func (s *Slow) Echo(ctx context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	select {
	case <-time.After(s.Delay):
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return s.Server.Echo(ctx, req)
}

// Concurrent has callers goroutines call c until d has passed, and counts
// the calls by the instance that served them. A failed call is an error
// of tb's and ends its caller.
func Concurrent(tb testing.TB, c echov1.EchoServiceClient, callers int, d time.Duration) map[string]int {
	tb.Helper()
	var (
		mu     sync.Mutex
		served = map[string]int{}
		wg     sync.WaitGroup
	)
	end := time.Now().Add(d)
	for range callers {
		wg.Go(func() {
			for time.Now().Before(end) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := c.Echo(ctx, &echov1.EchoRequest{}, grpc.WaitForReady(true))
				cancel()
				if err != nil {
					tb.Error(err)
					return
				}
				mu.Lock()
				served[resp.GetServedBy()]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return served
}
