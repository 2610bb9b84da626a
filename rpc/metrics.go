package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// ErrMetrics reports metrics that cannot be registered with the chosen
// prometheus.Registerer, because other collectors there already use their
// names with other labels or help.
var ErrMetrics = errors.New("rpc: cannot register metrics")

// latencyBuckets are the upper bounds, in seconds, of the call latency
// histograms: 100µs to 10s, about 2.5× apart, for calls from a loopback
// echo to a slow backend.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// metricsChoice is where one side registers its metrics.
type metricsChoice struct {
	reg prometheus.Registerer // nil with set: no metrics
	set bool                  // false: the side's default
}

// WithClientMetrics registers the client's Prometheus metrics with reg
// instead of prometheus.DefaultRegisterer; nil turns them off. Clients
// given the same reg (by default, every client in the process) share its
// metrics: their counts add up, told apart by grpc_service and
// grpc_method. The metrics are go-grpc-middleware's Prometheus provider's
// — grpc_client_started_total, grpc_client_handled_total (by grpc_code),
// grpc_client_handling_seconds (a histogram with buckets from 100µs to
// 10s), grpc_client_msg_received_total, grpc_client_msg_sent_total — and
// grpc_client_calls_in_flight, each labelled by grpc_type, grpc_service
// and grpc_method. They count calls as the application makes them: one
// call, however many attempts its retries take. If reg already has other
// collectors under these names, NewClient fails with ErrMetrics.
func WithClientMetrics(reg prometheus.Registerer) ClientOption {
	return func(o *clientOptions) { o.metrics = metricsChoice{reg: reg, set: true} }
}

// clientInterceptors returns the metrics interceptors of a client, to run
// first in its chain.
func (c metricsChoice) clientInterceptors() ([]grpc.UnaryClientInterceptor, []grpc.StreamClientInterceptor, error) {
	reg := c.reg
	if !c.set {
		reg = prometheus.DefaultRegisterer
	}
	if reg == nil {
		return nil, nil, nil
	}
	m, err := newClientMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	return []grpc.UnaryClientInterceptor{m.calls.UnaryClientInterceptor(), m.inFlight.unaryClient},
		[]grpc.StreamClientInterceptor{m.calls.StreamClientInterceptor(), m.inFlight.streamClient}, nil
}

// serverMetrics are a server's call metrics: go-grpc-middleware's
// Prometheus provider (grpc_server_started_total, grpc_server_handled_total
// by code, grpc_server_handling_seconds, stream message counts) and
// grpc_server_calls_in_flight, all labelled by grpc_type, grpc_service and
// grpc_method.
type serverMetrics struct {
	calls    *grpcprom.ServerMetrics
	inFlight *inFlight
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	calls, err := registerOrReuse(reg, grpcprom.NewServerMetrics(
		grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(latencyBuckets))))
	if err != nil {
		return nil, err
	}
	vec, err := registerOrReuse(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "grpc_server_calls_in_flight",
		Help: "Number of RPCs started on the server and not yet finished.",
	}, []string{"grpc_type", "grpc_service", "grpc_method"}))
	if err != nil {
		return nil, err
	}
	return &serverMetrics{calls: calls, inFlight: &inFlight{vec: vec}}, nil
}

func (m *serverMetrics) unary() []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{m.calls.UnaryServerInterceptor(), m.inFlight.unaryServer}
}

func (m *serverMetrics) stream() []grpc.StreamServerInterceptor {
	return []grpc.StreamServerInterceptor{m.calls.StreamServerInterceptor(), m.inFlight.streamServer}
}

// clientMetrics are a client's call metrics: the provider's
// grpc_client_started_total, grpc_client_handled_total by code,
// grpc_client_handling_seconds and stream message counts, and
// grpc_client_calls_in_flight, labelled as the server's.
type clientMetrics struct {
	calls    *grpcprom.ClientMetrics
	inFlight *inFlight
}

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	calls, err := registerOrReuse(reg, grpcprom.NewClientMetrics(
		grpcprom.WithClientHandlingTimeHistogram(grpcprom.WithHistogramBuckets(latencyBuckets))))
	if err != nil {
		return nil, err
	}
	vec, err := registerOrReuse(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "grpc_client_calls_in_flight",
		Help: "Number of RPCs started by the client and not yet finished.",
	}, []string{"grpc_type", "grpc_service", "grpc_method"}))
	if err != nil {
		return nil, err
	}
	return &clientMetrics{calls: calls, inFlight: &inFlight{vec: vec}}, nil
}

// registerOrReuse registers c with reg or, when reg already holds an equal
// collector (another Server or client registered it), returns that one, so
// that users of one registerer share, and sum into, the same metrics.
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		var zero C
		return zero, fmt.Errorf("%w: %w", ErrMetrics, err)
	}
	return c, nil
}

// inFlight keeps grpc_{server,client}_calls_in_flight. It finds a method's
// gauge in a copy-on-write map, so that the hot path neither locks nor
// allocates.
type inFlight struct {
	vec    *prometheus.GaugeVec
	gauges atomic.Pointer[map[string]prometheus.Gauge] // by full method
	mu     sync.Mutex                                  // serializes adding to gauges
}

func (f *inFlight) gauge(fullMethod string, typ interceptors.GRPCType) prometheus.Gauge {
	if m := f.gauges.Load(); m != nil {
		if g, ok := (*m)[fullMethod]; ok {
			return g
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var next map[string]prometheus.Gauge
	if m := f.gauges.Load(); m != nil {
		if g, ok := (*m)[fullMethod]; ok {
			return g
		}
		next = maps.Clone(*m)
	} else {
		next = map[string]prometheus.Gauge{}
	}
	service, method := splitMethod(fullMethod)
	g := f.vec.WithLabelValues(string(typ), service, method)
	next[fullMethod] = g
	f.gauges.Store(&next)
	return g
}

// splitMethod splits "/service/method" as the provider does, so that both
// label a call alike.
func splitMethod(fullMethod string) (service, method string) {
	service, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return "unknown", "unknown"
	}
	return service, method
}

func streamType(clientStreams, serverStreams bool) interceptors.GRPCType {
	switch {
	case clientStreams && !serverStreams:
		return interceptors.ClientStream
	case !clientStreams && serverStreams:
		return interceptors.ServerStream
	}
	return interceptors.BidiStream
}

func (f *inFlight) unaryServer(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	g := f.gauge(info.FullMethod, interceptors.Unary)
	g.Inc()
	defer g.Dec()
	return handler(ctx, req)
}

func (f *inFlight) streamServer(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	g := f.gauge(info.FullMethod, streamType(info.IsClientStream, info.IsServerStream))
	g.Inc()
	defer g.Dec()
	return handler(srv, ss)
}

func (f *inFlight) unaryClient(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	g := f.gauge(method, interceptors.Unary)
	g.Inc()
	defer g.Dec()
	return invoker(ctx, method, req, reply, cc, opts...)
}

// streamClient counts a client stream as in flight until grpc-go counts it
// finished (grpc.ClientConn.NewStream): its context is done, RecvMsg
// returned an error (or, without server streaming, the one response), or
// SendMsg or Header returned an error other than io.EOF. A stream left
// without any of these, which leaks in grpc-go too, stays counted.
func (f *inFlight) streamClient(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	g := f.gauge(method, streamType(desc.ClientStreams, desc.ServerStreams))
	g.Inc()
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		g.Dec()
		return nil, err
	}
	s := &countedStream{ClientStream: cs, serverStreams: desc.ServerStreams, gauge: g}
	s.stop = context.AfterFunc(ctx, s.done)
	return s, nil
}

// countedStream takes its call off the in-flight gauge once, when the
// stream ends.
type countedStream struct {
	grpc.ClientStream
	serverStreams bool
	gauge         prometheus.Gauge
	once          sync.Once
	stop          func() bool // stops the context.AfterFunc
}

func (s *countedStream) done() { s.once.Do(s.gauge.Dec) }

func (s *countedStream) finish() {
	s.stop()
	s.done()
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil || !s.serverStreams {
		s.finish()
	}
	return err
}

func (s *countedStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil && !errors.Is(err, io.EOF) {
		s.finish()
	}
	return err
}

func (s *countedStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	if err != nil && !errors.Is(err, io.EOF) {
		s.finish()
	}
	return md, err
}
