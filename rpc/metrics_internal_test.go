package rpc

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// TestInFlightDoesNotAllocate holds the in-flight gauges to their promise
// of a hot path without allocations, once a method's gauge exists.
func TestInFlightDoesNotAllocate(t *testing.T) {
	sm, err := newServerMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cm, err := newClientMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	info := &grpc.UnaryServerInfo{FullMethod: "/s.v1.S/M"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	tests := []struct {
		name string
		call func()
	}{
		{"server", func() { _, _ = sm.inFlight.unaryServer(ctx, nil, info, handler) }},
		{"client", func() { _ = cm.inFlight.unaryClient(ctx, info.FullMethod, nil, nil, nil, invoker) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call() // creates the method's gauge
			if n := testing.AllocsPerRun(1000, tt.call); n != 0 {
				t.Fatalf("%v allocations per call, want 0", n)
			}
		})
	}
}
