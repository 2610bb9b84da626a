package rpc_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// running is a Server serving on a loopback port until stop.
type running struct {
	srv  *rpc.Server
	addr string
	stop context.CancelFunc
	done chan error
}

// serve starts s with impl as the echo service on a loopback port and
// waits until it is registered (or serving, without a registry).
func serve(tb testing.TB, reg *registry.Client, impl echov1.EchoServiceServer, opts ...rpc.ServerOption) *running {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	opts = append([]rpc.ServerOption{rpc.WithLogger(zktest.Logger(tb)), rpc.WithDrainMargin(100 * time.Millisecond)}, opts...)
	s := rpc.NewServer(reg, opts...)
	echov1.RegisterEchoServiceServer(s, impl)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{srv: s, addr: lis.Addr().String(), stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Serve(ctx, lis) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-r.done:
		tb.Fatalf("Serve ended before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		tb.Fatal("Serve not ready after 30s")
	}
	if reg != nil {
		awaitInstance(tb, reg, r.addr, true)
	}
	return r
}

// awaitInstance waits until the echo service's registry lists (or no
// longer lists) the instance at addr.
func awaitInstance(tb testing.TB, reg *registry.Client, addr string, present bool) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		insts, _, err := reg.Instances(echov1.EchoService_ServiceDesc.ServiceName)
		if err == nil && slices.ContainsFunc(insts, func(i *registryv1.Instance) bool { return i.GetAddress() == addr }) == present {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("instance %s present=%v not seen within 15s (last err %v)", addr, present, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dialEcho(tb testing.TB, target string, opts ...grpc.DialOption) echov1.EchoServiceClient {
	tb.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return echov1.NewEchoServiceClient(conn)
}

// TestServeRegistersWhileServing checks the instance is registered with
// its template, health answers SERVING, and after the drain the instance
// is gone and the listener closed.
func TestServeRegistersWhileServing(t *testing.T) {
	reg := lbtest.Dial(t)
	r := serve(t, reg, &echo.Server{ID: "e1"}, rpc.WithInstance(&registryv1.Instance{Id: "e1", Zone: "z9", Weight: 3}))
	insts, _, err := reg.Instances(echov1.EchoService_ServiceDesc.ServiceName)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(insts, func(i *registryv1.Instance) bool { return i.GetId() == "e1" })
	if i < 0 || insts[i].GetAddress() != r.addr || insts[i].GetZone() != "z9" || insts[i].GetWeight() != 3 {
		t.Fatalf("registered %v, want e1 at %s in z9 with weight 3", insts, r.addr)
	}

	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: echov1.EchoService_ServiceDesc.ServiceName})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}

	r.stop()
	if err := <-r.done; err != nil {
		t.Fatalf("Serve after drain: %v", err)
	}
	r.done <- nil // for the cleanup
	awaitInstance(t, reg, r.addr, false)
	if c, err := net.DialTimeout("tcp", r.addr, time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepts after the drain")
	}
}

type panicky struct {
	echov1.UnimplementedEchoServiceServer
}

func (panicky) Echo(context.Context, *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	panic("boom")
}

func TestPanicBecomesInternal(t *testing.T) {
	r := serve(t, nil, panicky{})
	client := dialEcho(t, r.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 { // and the server lives on
		_, err := client.Echo(ctx, &echov1.EchoRequest{})
		if status.Code(err) != codes.Internal {
			t.Fatalf("panicking handler: %v, want Internal", err)
		}
	}
}

// pausing sends the first message of each EchoStream at once and holds
// the others until resume is closed, so a test decides how long a stream
// stays open; a caller that goes away ends the stream as usual.
type pausing struct {
	echo.Server
	resume chan struct{}
}

func (p *pausing) EchoStream(req *echov1.EchoStreamRequest, stream grpc.ServerStreamingServer[echov1.EchoStreamResponse]) error {
	return p.Server.EchoStream(req, &pausedStream{ServerStreamingServer: stream, resume: p.resume})
}

type pausedStream struct {
	grpc.ServerStreamingServer[echov1.EchoStreamResponse]
	resume <-chan struct{}
	sent   bool
}

func (s *pausedStream) Send(m *echov1.EchoStreamResponse) error {
	if s.sent {
		select {
		case <-s.resume:
		case <-s.Context().Done():
			return status.FromContextError(s.Context().Err()).Err()
		}
	}
	s.sent = true
	return s.ServerStreamingServer.Send(m)
}

func TestLimiter(t *testing.T) {
	tests := []struct {
		name string
		opt  rpc.ServerOption
	}{
		{"max concurrent", rpc.WithMaxConcurrent(1)},
		{"rate", rpc.WithRateLimit(0.001, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			impl := &pausing{resume: make(chan struct{})}
			r := serve(t, nil, impl, tt.opt)
			client := dialEcho(t, r.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// The first call holds its slot (and spends the one token):
			// it stays open after its first message until resume.
			stream, err := client.EchoStream(ctx, &echov1.EchoStreamRequest{Count: 2, Interval: durationpb.New(10 * time.Millisecond)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatal(err)
			}
			_, err = client.Echo(ctx, &echov1.EchoRequest{})
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("call over the limit: %v, want ResourceExhausted", err)
			}
			// The rejected call leaves the stream to end normally.
			close(impl.resume)
			for {
				if _, err := stream.Recv(); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestServeWithoutServicesFails(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	if err := rpc.NewServer(nil).Serve(context.Background(), lis); !errors.Is(err, rpc.ErrNoServices) {
		t.Fatalf("Serve with no service: %v, want ErrNoServices", err)
	}
}

// TestGracefulDrainUnderLoad drains one of two instances while callers
// keep calling through zk:///: no call fails, and afterwards every call
// goes to the instance that stayed.
func TestGracefulDrainUnderLoad(t *testing.T) {
	reg := lbtest.Dial(t)
	a := serve(t, reg, &echo.Server{ID: "a"}, rpc.WithInstance(&registryv1.Instance{Id: "a"}))
	serve(t, reg, &echo.Server{ID: "b"}, rpc.WithInstance(&registryv1.Instance{Id: "b"}))
	callers := lbtest.Dial(t)
	client := dialEcho(t, "zk:///"+echov1.EchoService_ServiceDesc.ServiceName,
		grpc.WithResolvers(callers.ResolverBuilder()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))

	// Each call counts in the phase it started in: 0 before a's drain
	// finished, 1 after. A call to a in flight when the drain began ends
	// (and counts) in phase 0, however late.
	const before, after = 0, 1
	var phase atomic.Int32
	var calls, failed atomic.Int64
	var mu sync.Mutex
	servedBy := [2]map[string]int{{}, {}}
	var firstErr error
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				p := phase.Load()
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := client.Echo(cctx, &echov1.EchoRequest{Message: "x"})
				ccancel()
				calls.Add(1)
				mu.Lock()
				if err != nil {
					failed.Add(1)
					if firstErr == nil {
						firstErr = err
					}
				} else {
					servedBy[p][resp.GetServedBy()]++
				}
				mu.Unlock()
			}
		})
	}
	// served returns a copy of phase p's counts.
	served := func(p int32) map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(servedBy[p])
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := served(before)
		if got["a"] > 0 && got["b"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls never reached both instances: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}

	a.stop()
	if err := <-a.done; err != nil {
		t.Fatalf("drain: %v", err)
	}
	a.done <- nil
	phase.Store(after)
	// Keep calling for at least 300ms and 100 calls started after the
	// drain (or until a call fails, reported below).
	const minAfter = 100
	start := time.Now()
	deadline = start.Add(15 * time.Second)
	for failed.Load() == 0 {
		got := served(after)
		if time.Since(start) >= 300*time.Millisecond && got["a"]+got["b"] >= minAfter {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls started after the drain served within 15s, want %d: %v", got["a"]+got["b"], minAfter, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed during the drain; first: %v", failed.Load(), calls.Load(), firstErr)
	}
	if got := servedBy[after]; got["a"] != 0 || got["b"] == 0 {
		t.Fatalf("calls started after the drain went to %v, want only b", got)
	}
	t.Logf("%d calls, 0 failed, across the drain", calls.Load())
}
