package rpc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	"github.com/switchyard-dev/switchyard/rpc"
)

// labels returns the labels of method of the echo service, with code if
// not empty.
func labels(typ, method, code string) map[string]string {
	l := map[string]string{"grpc_type": typ, "grpc_service": echoService, "grpc_method": method}
	if code != "" {
		l["grpc_code"] = code
	}
	return l
}

// metricValue returns, from g, the value of the counter or gauge name
// with exactly these labels, or a histogram's sample count; 0 if there is
// no such series.
func metricValue(tb testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	tb.Helper()
	families, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, want) {
				continue
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			default:
				tb.Fatalf("%s is a %v", name, f.GetType())
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	if len(m.GetLabel()) != len(want) {
		return false
	}
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

// awaitMetric waits until metricValue returns want.
func awaitMetric(tb testing.TB, g prometheus.Gatherer, name string, l map[string]string, want float64) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := metricValue(tb, g, name, l)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s %v is %v after 10s, want %v", name, l, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failing fails Echo with InvalidArgument when the message is "fail".
type failing struct {
	echo.Server
}

func (f *failing) Echo(ctx context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	if req.GetMessage() == "fail" {
		return nil, status.Error(codes.InvalidArgument, "asked to fail")
	}
	return f.Server.Echo(ctx, req)
}

// TestMetricsCountCalls makes N OK calls and M that fail with a known
// code through zk:///, and checks both sides count exactly that by method
// and code, time every call, and end with none in flight. The limiter
// case shows the metrics sit outside the limiter: calls it rejects count
// as ResourceExhausted.
func TestMetricsCountCalls(t *testing.T) {
	const ok, failed = 7, 3
	tests := []struct {
		name string
		opts []rpc.ServerOption
		fail string // the failing calls' message
		code codes.Code
	}{
		{"handler error", nil, "fail", codes.InvalidArgument},
		// A bucket of ok tokens that refills once in 1000s.
		{"limiter", []rpc.ServerOption{rpc.WithRateLimit(rate.Limit(0.001), ok)}, "x", codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := lbtest.Dial(t)
			srv := serve(t, reg, &failing{}, tt.opts...).srv
			clientReg := prometheus.NewRegistry()
			client := newClient(t, echoService, rpc.WithClientMetrics(clientReg))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range ok {
				if _, err := client.Echo(ctx, &echov1.EchoRequest{Message: "x"}, grpc.WaitForReady(true)); err != nil {
					t.Fatal(err)
				}
			}
			for range failed {
				if _, err := client.Echo(ctx, &echov1.EchoRequest{Message: tt.fail}); status.Code(err) != tt.code {
					t.Fatalf("call: %v, want %v", err, tt.code)
				}
			}

			for _, side := range []struct {
				name string
				g    prometheus.Gatherer
			}{{"server", srv.Metrics()}, {"client", clientReg}} {
				p := "grpc_" + side.name + "_"
				checks := []struct {
					metric string
					labels map[string]string
					want   float64
				}{
					{p + "started_total", labels("unary", "Echo", ""), ok + failed},
					{p + "handled_total", labels("unary", "Echo", "OK"), ok},
					{p + "handled_total", labels("unary", "Echo", tt.code.String()), failed},
					{p + "handling_seconds", labels("unary", "Echo", ""), ok + failed},
					{p + "calls_in_flight", labels("unary", "Echo", ""), 0},
				}
				for _, c := range checks {
					if got := metricValue(t, side.g, c.metric, c.labels); got != c.want {
						t.Errorf("%s: %s %v = %v, want %v", side.name, c.metric, c.labels, got, c.want)
					}
				}
				// The in-flight gauge exists (at 0) rather than missing.
				if n, err := testutil.GatherAndCount(side.g, p+"calls_in_flight"); err != nil || n == 0 {
					t.Errorf("%s: %d %scalls_in_flight series (%v)", side.name, n, p, err)
				}
				if problems, err := testutil.GatherAndLint(side.g); err != nil || len(problems) > 0 {
					t.Errorf("%s: metrics lint: %v %v", side.name, problems, err)
				}
			}
		})
	}
}

// gate holds each Echo until release is closed, and each EchoStream
// after its first message until resume is closed.
type gate struct {
	pausing
	release chan struct{}
}

func (g *gate) Echo(ctx context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	select {
	case <-g.release:
		return g.Server.Echo(ctx, req)
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// TestMetricsInFlight checks the in-flight gauges of both sides count a
// call while it runs and return to 0 when it ends: a unary call, a server
// stream read to its end, and a server stream its caller cancels.
func TestMetricsInFlight(t *testing.T) {
	reg := lbtest.Dial(t)
	g := &gate{pausing: pausing{resume: make(chan struct{})}, release: make(chan struct{})}
	srv := serve(t, reg, g).srv
	clientReg := prometheus.NewRegistry()
	client := newClient(t, echoService, rpc.WithClientMetrics(clientReg))
	sides := []prometheus.Gatherer{srv.Metrics(), clientReg}
	names := []string{"grpc_server_calls_in_flight", "grpc_client_calls_in_flight"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		l := labels("unary", "Echo", "")
		done := make(chan error, 1)
		go func() {
			_, err := client.Echo(ctx, &echov1.EchoRequest{}, grpc.WaitForReady(true))
			done <- err
		}()
		for i, side := range sides {
			awaitMetric(t, side, names[i], l, 1)
		}
		close(g.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// No wait: each side's gauge falls before the call returns.
		for i, side := range sides {
			if got := metricValue(t, side, names[i], l); got != 0 {
				t.Errorf("%s after the call: %v, want 0", names[i], got)
			}
		}
	})

	t.Run("stream read to its end", func(t *testing.T) {
		l := labels("server_stream", "EchoStream", "")
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		// The server holds the stream open after its first message
		// until resume.
		stream, err := client.EchoStream(sctx, &echov1.EchoStreamRequest{Count: 3, Interval: durationpb.New(100 * time.Millisecond)}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		for i, side := range sides {
			if got := metricValue(t, side, names[i], l); got != 1 {
				t.Errorf("%s during the stream: %v, want 1", names[i], got)
			}
		}
		close(g.resume)
		for {
			if _, err := stream.Recv(); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		for i, side := range sides {
			if got := metricValue(t, side, names[i], l); got != 0 {
				t.Errorf("%s after the stream: %v, want 0", names[i], got)
			}
		}
	})

	t.Run("stream cancelled", func(t *testing.T) {
		l := labels("server_stream", "EchoStream", "")
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		stream, err := client.EchoStream(sctx, &echov1.EchoStreamRequest{Count: 1000, Interval: durationpb.New(50 * time.Millisecond)}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		for i, side := range sides {
			if got := metricValue(t, side, names[i], l); got != 1 {
				t.Errorf("%s during the stream: %v, want 1", names[i], got)
			}
		}
		scancel() // and never read again
		for i, side := range sides {
			awaitMetric(t, side, names[i], l, 0)
		}
	})
}

// TestMetricsRegistries checks where metrics go: each Server has a
// registry of its own by default, Servers and clients sharing a
// registerer add up their counts there, a registerer with clashing
// collectors fails Serve and NewClient with ErrMetrics, and nil turns
// metrics off.
func TestMetricsRegistries(t *testing.T) {
	call := func(t *testing.T, c echov1.EchoServiceClient) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Echo(ctx, &echov1.EchoRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	okCalls := labels("unary", "Echo", "OK")

	t.Run("a registry per server", func(t *testing.T) {
		a, b := serve(t, nil, &echo.Server{}), serve(t, nil, &echo.Server{})
		if a.srv.Metrics() == nil || a.srv.Metrics() == b.srv.Metrics() {
			t.Fatalf("registries %p and %p, want two", a.srv.Metrics(), b.srv.Metrics())
		}
		call(t, dialEcho(t, a.addr))
		if got := metricValue(t, a.srv.Metrics(), "grpc_server_handled_total", okCalls); got != 1 {
			t.Errorf("server called: %v calls, want 1", got)
		}
		if got := metricValue(t, b.srv.Metrics(), "grpc_server_handled_total", okCalls); got != 0 {
			t.Errorf("other server: %v calls, want 0", got)
		}
	})

	t.Run("shared by servers", func(t *testing.T) {
		shared := prometheus.NewRegistry()
		a := serve(t, nil, &echo.Server{}, rpc.WithMetrics(shared))
		b := serve(t, nil, &echo.Server{}, rpc.WithMetrics(shared))
		if a.srv.Metrics() != nil {
			t.Error("Metrics() with WithMetrics is not nil")
		}
		call(t, dialEcho(t, a.addr))
		call(t, dialEcho(t, b.addr))
		if got := metricValue(t, shared, "grpc_server_handled_total", okCalls); got != 2 {
			t.Errorf("shared registry: %v calls, want 2", got)
		}
	})

	t.Run("shared by clients", func(t *testing.T) {
		reg := lbtest.Dial(t)
		serve(t, reg, &echo.Server{})
		shared := prometheus.NewRegistry()
		call(t, newClient(t, echoService, rpc.WithClientMetrics(shared)))
		call(t, newClient(t, echoService, rpc.WithClientMetrics(shared)))
		if got := metricValue(t, shared, "grpc_client_handled_total", okCalls); got != 2 {
			t.Errorf("shared registry: %v calls, want 2", got)
		}
		// By default every client shares prometheus.DefaultRegisterer.
		before := metricValue(t, prometheus.DefaultGatherer, "grpc_client_handled_total", okCalls)
		call(t, newClient(t, echoService))
		call(t, newClient(t, echoService))
		if got := metricValue(t, prometheus.DefaultGatherer, "grpc_client_handled_total", okCalls) - before; got != 2 {
			t.Errorf("default registerer: %v more calls, want 2", got)
		}
	})

	t.Run("clash", func(t *testing.T) {
		clash := prometheus.NewRegistry()
		clash.MustRegister(
			prometheus.NewCounter(prometheus.CounterOpts{Name: "grpc_server_started_total", Help: "Something else."}),
			prometheus.NewCounter(prometheus.CounterOpts{Name: "grpc_client_started_total", Help: "Something else."}))
		s := rpc.NewServer(nil, rpc.WithMetrics(clash), rpc.WithLogger(zktest.Logger(t)))
		echov1.RegisterEchoServiceServer(s, &echo.Server{})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		if err := s.Serve(context.Background(), lis); !errors.Is(err, rpc.ErrMetrics) {
			t.Errorf("Serve: %v, want ErrMetrics", err)
		}
		conn, err := rpc.NewClient(lbtest.Dial(t), echoService, rpc.WithClientMetrics(clash))
		if !errors.Is(err, rpc.ErrMetrics) {
			if err == nil {
				conn.Close()
			}
			t.Errorf("NewClient: %v, want ErrMetrics", err)
		}
	})

	t.Run("off", func(t *testing.T) {
		r := serve(t, nil, &echo.Server{}, rpc.WithMetrics(nil))
		if r.srv.Metrics() != nil {
			t.Error("Metrics() with WithMetrics(nil) is not nil")
		}
		call(t, dialEcho(t, r.addr))
	})
}
