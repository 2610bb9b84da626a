package rpc_test

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	"github.com/switchyard-dev/switchyard/rpc"
)

// BenchmarkMetrics calls Echo (64-byte payload) one call at a time
// through zk:/// and the default stack, with metrics on both sides and
// with them off (WithMetrics(nil), WithClientMetrics(nil)), alternating
// blocks of calls in one run so machine noise falls on both alike. It
// reports each one's time and allocations (both sides, one process) per
// call, and the ratios on/off.
func BenchmarkMetrics(b *testing.B) {
	reg := lbtest.Dial(b)
	quiet := slog.New(slog.DiscardHandler)
	type setup struct {
		conn    *grpc.ClientConn
		method  string
		elapsed time.Duration
		mallocs uint64
	}
	var off, on setup
	for _, c := range []struct {
		s       *setup
		service string
		sopts   []rpc.ServerOption
		copts   []rpc.ClientOption
	}{
		{&off, "bench.metrics_off.EchoService", []rpc.ServerOption{rpc.WithMetrics(nil)}, []rpc.ClientOption{rpc.WithClientMetrics(nil)}},
		{&on, "bench.metrics_on.EchoService", nil, []rpc.ClientOption{rpc.WithClientMetrics(prometheus.NewRegistry())}},
	} {
		// The echo service under a name of the setup's own, so that the
		// two servers do not share a registry entry.
		desc := echov1.EchoService_ServiceDesc
		desc.ServiceName = c.service
		s := rpc.NewServer(reg, append([]rpc.ServerOption{rpc.WithLogger(quiet), rpc.WithDrainMargin(0)}, c.sopts...)...)
		s.RegisterService(&desc, &echo.Server{})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, lis) }()
		b.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				b.Errorf("Serve: %v", err)
			}
		})
		select {
		case <-s.Ready():
		case err := <-done:
			b.Fatalf("Serve: %v", err)
		}
		conn, err := rpc.NewClient(reg, c.service, append([]rpc.ClientOption{rpc.WithClientLogger(quiet)}, c.copts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		c.s.conn, c.s.method = conn, "/"+c.service+"/Echo"
	}

	req := &echov1.EchoRequest{Payload: make([]byte, 64)}
	call := func(s *setup, n int) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		for range n {
			if err := s.conn.Invoke(context.Background(), s.method, req, new(echov1.EchoResponse), grpc.WaitForReady(true)); err != nil {
				b.Fatal(err)
			}
		}
		s.elapsed += time.Since(start)
		runtime.ReadMemStats(&after)
		s.mallocs += after.Mallocs - before.Mallocs
	}
	call(&off, 100) // warm up: connections, gauges
	call(&on, 100)
	off, on = setup{conn: off.conn, method: off.method}, setup{conn: on.conn, method: on.method}
	b.ResetTimer()
	const block = 50
	for i := 0; i < b.N; i += block {
		n := min(block, b.N-i)
		call(&off, n)
		call(&on, n)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(off.elapsed.Nanoseconds())/n, "off-ns/call")
	b.ReportMetric(float64(on.elapsed.Nanoseconds())/n, "on-ns/call")
	b.ReportMetric(float64(on.elapsed)/float64(off.elapsed), "on/off-time")
	b.ReportMetric(float64(off.mallocs)/n, "off-allocs/call")
	b.ReportMetric(float64(on.mallocs)/n, "on-allocs/call")
	b.ReportMetric(float64(on.mallocs)/float64(off.mallocs), "on/off-allocs")
}
