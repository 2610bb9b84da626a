package rpc_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

var echoService = echov1.EchoService_ServiceDesc.ServiceName

// echoRetry retries Echo, which is idempotent.
var echoRetry = rpc.WithRetry(rpc.RetryPolicy{
	Methods:        []string{echoService + "/Echo"},
	MaxAttempts:    5,
	InitialBackoff: 5 * time.Millisecond,
	MaxBackoff:     50 * time.Millisecond,
	Multiplier:     2,
})

func newClient(tb testing.TB, service string, opts ...rpc.ClientOption) echov1.EchoServiceClient {
	tb.Helper()
	opts = append([]rpc.ClientOption{rpc.WithClientLogger(zktest.Logger(tb))}, opts...)
	conn, err := rpc.NewClient(lbtest.Dial(tb), service, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return echov1.NewEchoServiceClient(conn)
}

// crashable serves impl on a plain gRPC server registered under service
// by a registry client of its own, so that crash stops the server while
// its registration lingers, as a crashed process's does until its session
// times out.
func crashable(tb testing.TB, service, id string, impl echov1.EchoServiceServer) (crash func()) {
	tb.Helper()
	_, crash = lbtest.Backend(tb, lbtest.Dial(tb), service, id, impl, 0, nil)
	return crash
}

// serviceName is a registry name of t's own for the echo service, so
// tests on the shared ZooKeeper do not see each other's instances.
func serviceName(t *testing.T) string { return lbtest.Service(t) }

func TestNewClientRejectsBadInput(t *testing.T) {
	reg := lbtest.Dial(t)
	good := rpc.RetryPolicy{Methods: []string{"s/m"}, MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Second, Multiplier: 2}
	bad := func(edit func(*rpc.RetryPolicy)) rpc.ClientOption {
		p := good
		edit(&p)
		return rpc.WithRetry(p)
	}
	policy := func(name, config string) []rpc.ClientOption {
		return []rpc.ClientOption{rpc.WithBalancer(name), rpc.WithBalancerConfig(config)}
	}
	tests := []struct {
		name    string
		service string
		opts    []rpc.ClientOption
		want    error
		text    string
	}{
		{"unknown balancer", "svc", []rpc.ClientOption{rpc.WithBalancer("no_such_policy")}, rpc.ErrUnknownBalancer, `"no_such_policy"`},
		{"bad service name", "a/b", nil, registry.ErrInvalidName, "contains '/'"},
		{"one attempt", "svc", []rpc.ClientOption{bad(func(p *rpc.RetryPolicy) { p.MaxAttempts = 1 })}, nil, "2 or more attempts"},
		{"no methods", "svc", []rpc.ClientOption{bad(func(p *rpc.RetryPolicy) { p.Methods = nil })}, nil, "want methods"},
		{"bad method", "svc", []rpc.ClientOption{bad(func(p *rpc.RetryPolicy) { p.Methods = []string{"nomethod"} })}, nil, "not service/method"},
		{"backoff order", "svc", []rpc.ClientOption{bad(func(p *rpc.RetryPolicy) { p.MaxBackoff = 0 })}, nil, "initial <= max"},
		{"bad budget", "svc", []rpc.ClientOption{rpc.WithRetry(good), rpc.WithRetryBudget(rpc.RetryBudget{})}, nil, "retry budget"},
		{"zone on a gRPC policy", "svc", []rpc.ClientOption{rpc.WithBalancer("round_robin"), rpc.WithZone("z1")}, loadbalance.ErrBadConfig, `not "round_robin"`},
		{"ejection on a gRPC policy", "svc", []rpc.ClientOption{rpc.WithBalancer("ring_hash_experimental"), rpc.WithEjection(loadbalance.Ejection{})}, loadbalance.ErrBadConfig, "need a Switchyard balancer"},
		{"config not JSON", "svc", policy("p2c_ewma", "{zone"), nil, "not a JSON object"},
		{"unknown config field", "svc", policy("weighted", `{"zones":"z1"}`), nil, `unknown field "zones"`},
		{"config field of the wrong type", "svc", policy("p2c_ewma", `{"zone":5}`), nil, "zone"},
		{"bad ejection", "svc", []rpc.ClientOption{rpc.WithEjection(loadbalance.Ejection{MaxPercent: 101})}, nil, "maxPercent 101"},
		{"bad ejection time", "svc", policy("weighted", `{"ejection":{"baseTime":"soon"}}`), nil, "soon"},
		{"bad ring hash header", "svc", policy("ring_hash_experimental", `{"requestHashHeader":"x-key-bin"}`), nil, "-bin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := rpc.NewClient(reg, tt.service, tt.opts...)
			if err == nil {
				conn.Close()
				t.Fatal("NewClient succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("NewClient: %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("NewClient: %v, want it to say %q", err, tt.text)
			}
		})
	}
}

// load records, per caller goroutine, calls and failures until stop.
type load struct {
	calls, failed atomic.Int64
	mu            sync.Mutex
	firstErr      error
	stop          context.CancelFunc
	wg            sync.WaitGroup
}

func startLoad(client echov1.EchoServiceClient, callers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{stop: cancel}
	for range callers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.Echo(cctx, &echov1.EchoRequest{Message: "x"})
				ccancel()
				l.calls.Add(1)
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if l.firstErr == nil {
						l.firstErr = err
					}
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

func (l *load) end() { l.stop(); l.wg.Wait() }

// TestFailoverWithRetries crashes one of three instances under steady
// load: its registration lingers, calls to it fail with Unavailable, and
// the retry policy sends them elsewhere, so no call fails.
func TestFailoverWithRetries(t *testing.T) {
	name := serviceName(t)
	var crash []func()
	for _, id := range []string{"a", "b", "c"} {
		crash = append(crash, crashable(t, name, id, &echo.Server{ID: id}))
	}
	client := newClient(t, name, echoRetry)
	// Every instance serves, a (the one to crash) included, before the
	// load starts.
	lbtest.AwaitAll(t, client, "a", "b", "c")
	l := startLoad(client, 4)
	defer l.end()
	deadline := time.Now().Add(15 * time.Second)
	for l.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no call of the load ended within 15s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := l.calls.Load()
	crash[0]()
	time.Sleep(time.Second)
	l.end()
	if l.failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed after a crash; first: %v", l.failed.Load(), l.calls.Load(), l.firstErr)
	}
	if before == 0 || l.calls.Load() == before {
		t.Fatalf("no load: %d calls before the crash, %d in all", before, l.calls.Load())
	}
	t.Logf("%d calls, 0 failed, across the crash of one of three instances", l.calls.Load())
}

// unavailable fails every call with Unavailable and counts the attempts.
type unavailable struct {
	echov1.UnimplementedEchoServiceServer
	attempts *atomic.Int64
}

func (u unavailable) Echo(context.Context, *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	u.attempts.Add(1)
	return nil, status.Error(codes.Unavailable, "down")
}

// TestRetryBudgetCapsRetries has every instance fail every call: with the
// default budget the attempts stay close to the calls made (no retry
// storm), while a budget too large to bite lets retries multiply them.
func TestRetryBudgetCapsRetries(t *testing.T) {
	const calls = 200
	tests := []struct {
		name        string
		budget      rpc.RetryBudget
		maxAttempts float64 // per call, at most
		minAttempts float64 // per call, at least
	}{
		{"default budget", rpc.RetryBudget{MaxTokens: 10, Ratio: 0.1}, 1.1, 1},
		{"no real budget", rpc.RetryBudget{MaxTokens: 1000, Ratio: 1}, 5, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := serviceName(t)
			var attempts atomic.Int64
			for _, id := range []string{"a", "b", "c"} {
				crashable(t, name, id, unavailable{attempts: &attempts})
			}
			client := newClient(t, name, echoRetry, rpc.WithRetryBudget(tt.budget))
			for range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.Echo(ctx, &echov1.EchoRequest{}, grpc.WaitForReady(true))
				cancel()
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("call: %v, want Unavailable", err)
				}
			}
			per := float64(attempts.Load()) / calls
			t.Logf("%d calls made %d attempts (%.2f per call)", calls, attempts.Load(), per)
			if per > tt.maxAttempts || per < tt.minAttempts {
				t.Fatalf("%.2f attempts per call, want %.1f to %.1f", per, tt.minAttempts, tt.maxAttempts)
			}
		})
	}
}

type slow struct {
	echov1.UnimplementedEchoServiceServer
}

func (slow) Echo(ctx context.Context, _ *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	select {
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-time.After(10 * time.Second):
		return &echov1.EchoResponse{}, nil
	}
}

func TestDefaultTimeout(t *testing.T) {
	name := serviceName(t)
	crashable(t, name, "slow", slow{})
	client := newClient(t, name, rpc.WithDefaultTimeout(200*time.Millisecond))
	start := time.Now()
	_, err := client.Echo(context.Background(), &echov1.EchoRequest{}, grpc.WaitForReady(true))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call without a deadline: %v, want DeadlineExceeded from the default timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("default timeout of 200ms ended the call after %v", d)
	}
	// A caller's own deadline wins.
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := client.Echo(ctx, &echov1.EchoRequest{}); status.Code(err) != codes.DeadlineExceeded || time.Since(start) < 500*time.Millisecond {
		t.Fatalf("call with its own 600ms deadline: %v after %v", err, time.Since(start))
	}
}
