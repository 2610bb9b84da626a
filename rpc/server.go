// Package rpc builds gRPC servers (and, later, clients) that find each other
// through the ZooKeeper registry.
//
// A server's life has one obvious place for each step:
//
//	s := rpc.NewServer(reg, opts...)        // health, reflection, interceptors
//	echov1.RegisterEchoServiceServer(s, impl) // generated registration
//	err := s.Serve(ctx, lis)                // serve, then register in ZooKeeper
//	                                        // ctx done: drain, then return
//
// Serve registers an instance for every service only once the listener
// accepts and the health service answers SERVING through it, so no client
// is sent to a server that cannot yet answer. Shutdown (and the end of
// Serve's ctx) drains in this order: health NOT_SERVING and registry state
// DRAINING; deregister; wait until the registry shows the instance gone, as
// read back from ZooKeeper, plus a propagation margin; GracefulStop bounded
// by the caller's context; Stop.
//
// Both sides measure every call in Prometheus metrics (WithMetrics,
// Server.Metrics, WithClientMetrics), and both can use mutual TLS from
// certificate files (WithServerTLS, WithClientTLS).
package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
)

// Errors returned by Server.
var (
	// ErrServing reports a second Serve on one Server.
	ErrServing = errors.New("rpc: server is already serving")
	// ErrNoServices reports a Serve before any service was registered.
	ErrNoServices = errors.New("rpc: no service registered")
)

// Server is a gRPC server that registers itself in the registry while it
// serves. It implements grpc.ServiceRegistrar, so generated
// Register...Server functions take it. Register services before Serve.
type Server struct {
	grpc    *grpc.Server
	health  *health.Server
	reg     *registry.Client // nil: serve without registering
	opts    serverOptions
	err     error                            // from NewServer's options; Serve returns it
	self    credentials.TransportCredentials // for the readiness check
	promReg *prometheus.Registry             // the server's own; nil with WithMetrics

	mu       sync.Mutex
	serving  bool
	regs     []*registry.Registration
	ready    chan struct{} // closed once serving and registered
	drained  chan struct{} // closed when Shutdown has finished
	once     sync.Once
	drainErr error
}

var _ grpc.ServiceRegistrar = (*Server)(nil)

type serverOptions struct {
	instance      *registryv1.Instance
	advertise     string
	log           *slog.Logger
	rate          rate.Limit
	burst         int
	maxConcurrent int
	drainMargin   time.Duration
	grpcOpts      []grpc.ServerOption
	onDrain       []func()
	metrics       metricsChoice
	tls           *tlsFiles
}

// ServerOption configures a Server.
type ServerOption func(*serverOptions)

// WithInstance sets the record template registered for each service: id,
// weight, zone, version and metadata (service and address are filled in).
// The default id is the advertised address.
func WithInstance(inst *registryv1.Instance) ServerOption {
	return func(o *serverOptions) { o.instance = proto.Clone(inst).(*registryv1.Instance) }
}

// WithAdvertiseAddress sets the address clients are told (default: the
// listener's address).
func WithAdvertiseAddress(addr string) ServerOption {
	return func(o *serverOptions) { o.advertise = addr }
}

// WithLogger sets the logger for calls and lifecycle (default slog.Default()).
func WithLogger(l *slog.Logger) ServerOption { return func(o *serverOptions) { o.log = l } }

// WithRateLimit admits at most r calls a second, with bursts of burst;
// calls over it fail with ResourceExhausted.
func WithRateLimit(r rate.Limit, burst int) ServerOption {
	return func(o *serverOptions) { o.rate, o.burst = r, burst }
}

// WithMaxConcurrent admits at most n calls in flight; calls over it fail
// with ResourceExhausted.
func WithMaxConcurrent(n int) ServerOption { return func(o *serverOptions) { o.maxConcurrent = n } }

// WithDrainMargin sets how long Shutdown waits, after ZooKeeper shows the
// instance gone, for the news to reach clients (default 500ms).
func WithDrainMargin(d time.Duration) ServerOption {
	return func(o *serverOptions) { o.drainMargin = d }
}

// WithOnDrain runs f when the drain begins (Shutdown, or the end of
// Serve's context), before the instance leaves the registry: a service
// ends there the work that would outlive its registration, as the lock
// service ends the acquires waiting on it so that their callers retry
// elsewhere. Calls already running then finish under GracefulStop.
func WithOnDrain(f func()) ServerOption {
	return func(o *serverOptions) { o.onDrain = append(o.onDrain, f) }
}

// WithGRPCOptions adds options to the underlying grpc.Server (keepalive,
// further interceptors, which run after the default chain). For mutual TLS
// use WithServerTLS rather than grpc.Creds: Serve's readiness check dials
// with the credentials WithServerTLS sets.
func WithGRPCOptions(opts ...grpc.ServerOption) ServerOption {
	return func(o *serverOptions) { o.grpcOpts = append(o.grpcOpts, opts...) }
}

// WithMetrics registers the server's Prometheus metrics with reg instead
// of a registry of the server's own; nil turns them off. Servers given the
// same reg share its metrics: their counts add up. The metrics are those
// of go-grpc-middleware's Prometheus provider — grpc_server_started_total,
// grpc_server_handled_total (by grpc_code), grpc_server_handling_seconds
// (a histogram with buckets from 100µs to 10s), grpc_server_msg_received_total,
// grpc_server_msg_sent_total — and grpc_server_calls_in_flight, each
// labelled by grpc_type, grpc_service and grpc_method. If reg already has
// other collectors under these names, Serve fails with ErrMetrics.
func WithMetrics(reg prometheus.Registerer) ServerOption {
	return func(o *serverOptions) { o.metrics = metricsChoice{reg: reg, set: true} }
}

// WithServerTLS makes the server require mutual TLS (1.3 or later): it
// presents the certificate in certFile with the key in keyFile (PEM), and
// accepts only connections whose client certificate verifies under the CA
// certificates in clientCAFile (PEM); other connections fail in the
// handshake, before any handler runs. The files are read once, by
// NewServer. Because Serve's readiness check presents the server's own
// certificate to its listener, that certificate must also be a valid
// client certificate under clientCAFile (extended key usage clientAuth as
// well as serverAuth, or none). NewServer cannot return an error, so
// Serve returns one wrapping ErrTLSConfig, before it serves anything,
// when a file is missing, is not PEM, the key does not match, or the
// certificate is not a client certificate under clientCAFile.
func WithServerTLS(certFile, keyFile, clientCAFile string) ServerOption {
	return func(o *serverOptions) { o.tls = &tlsFiles{cert: certFile, key: keyFile, ca: clientCAFile} }
}

// NewServer returns a Server that registers in reg (nil: it does not
// register). Its default interceptor chain is, outermost first: recovery
// (a panic becomes Internal and is logged with its stack), metrics (see
// WithMetrics; so calls the limiter rejects count with ResourceExhausted),
// logging through log/slog (OK calls at debug level), and the limiter,
// when one is set. A call whose handler panics counts as started but not
// handled: recovery, outside the metrics, turns the panic into Internal.
//
// An option that cannot take effect (WithServerTLS's files, WithMetrics's
// registerer) makes Serve return why, at once.
func NewServer(reg *registry.Client, opts ...ServerOption) *Server {
	o := serverOptions{log: slog.Default(), drainMargin: 500 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{reg: reg, opts: o, health: health.NewServer(), ready: make(chan struct{}), drained: make(chan struct{})}
	s.self = insecure.NewCredentials()
	var gopts []grpc.ServerOption
	if o.tls != nil {
		t, err := newServerTLS(*o.tls)
		if err != nil {
			s.err = errors.Join(s.err, err)
		} else {
			s.self = t.self
			gopts = append(gopts, grpc.Creds(t.creds))
		}
	}

	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		o.log.ErrorContext(ctx, "rpc: handler panicked", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	calls := newCallLog(o.log, logging.DefaultServerCodeToLevel, "server")
	unary := []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(recoverOpt)}
	stream := []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(recoverOpt)}
	promReg := o.metrics.reg
	if !o.metrics.set {
		s.promReg = prometheus.NewRegistry()
		promReg = s.promReg
	}
	if promReg != nil {
		m, err := newServerMetrics(promReg)
		if err != nil {
			s.err = errors.Join(s.err, err)
		} else {
			unary = append(unary, m.unary()...)
			stream = append(stream, m.stream()...)
		}
	}
	unary = append(unary, calls.unaryServer())
	stream = append(stream, calls.streamServer())
	if o.rate > 0 || o.maxConcurrent > 0 {
		l := newLimiter(o.rate, o.burst, o.maxConcurrent)
		unary = append(unary, l.unary)
		stream = append(stream, l.stream)
	}
	gopts = append(gopts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))
	gopts = append(gopts, o.grpcOpts...)
	s.grpc = grpc.NewServer(gopts...)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s
}

// RegisterService registers a service implementation; generated
// Register...Server functions call it.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
}

// GRPC returns the underlying grpc.Server.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Metrics returns the registry of the server's own that holds its call
// metrics (see WithMetrics), for a /metrics endpoint:
//
//	http.Handle("/metrics", promhttp.HandlerFor(s.Metrics(), promhttp.HandlerOpts{}))
//
// Each Server has its own, so several in one process never collide; it
// holds only the gRPC metrics (add others, such as
// collectors.NewGoCollector, with its Register). Metrics returns nil when
// WithMetrics chose the registerer (or turned metrics off).
func (s *Server) Metrics() *prometheus.Registry { return s.promReg }

// services returns the application services, without health and reflection.
func (s *Server) services() []string {
	var out []string
	for name := range s.grpc.GetServiceInfo() {
		if name == healthpb.Health_ServiceDesc.ServiceName || name == "grpc.reflection.v1.ServerReflection" || name == "grpc.reflection.v1alpha.ServerReflection" {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Serve serves on lis until ctx ends, then drains (see Shutdown, with
// drain bounded by a context of its own: ctx is already done) and returns
// nil; or until serving fails, returning why. It registers every service
// once the listener answers health checks with SERVING. If an option could
// not take effect (ErrTLSConfig, ErrMetrics), Serve returns that error at
// once and leaves lis to the caller.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if s.err != nil {
		return s.err
	}
	services := s.services()
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return ErrServing
	}
	s.serving = true
	s.mu.Unlock()
	if len(services) == 0 {
		return ErrNoServices
	}

	served := make(chan error, 1)
	go func() { served <- s.grpc.Serve(lis) }()
	for _, svc := range services {
		s.health.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	err := s.checkServing(ctx, lis.Addr().String(), services)
	if err == nil {
		err = s.register(ctx, lis.Addr().String(), services)
	}
	if err != nil {
		s.grpc.Stop()
		<-served
		if ctx.Err() != nil {
			return nil // asked to stop while starting: not a failure
		}
		return err
	}
	close(s.ready)
	s.opts.log.Info("rpc: serving", "addr", lis.Addr().String(), "services", services)

	select {
	case err := <-served:
		// Stopped through GRPC() (nil) or failed: leave the registry.
		derr := s.deregisterAll(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("rpc: serving: %w", err)
		}
		return derr
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err = s.Shutdown(dctx)
	<-served
	return err
}

// Ready is closed once Serve serves and every service is registered.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// checkServing asks the server's own health service, through the
// listener, whether every service is SERVING: it proves the accept loop
// runs and the server answers before any client is told of it. With
// mutual TLS it dials as the server itself (see newServerTLS).
func (s *Server) checkServing(ctx context.Context, addr string, services []string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(s.self))
	if err != nil {
		return fmt.Errorf("rpc: checking %s: %w", addr, err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, svc := range services {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc}, grpc.WaitForReady(true))
		if err != nil {
			return fmt.Errorf("rpc: health check of %s on %s: %w", svc, addr, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("rpc: %s on %s is %v", svc, addr, resp.GetStatus())
		}
	}
	return nil
}

func (s *Server) register(ctx context.Context, listenAddr string, services []string) error {
	if s.reg == nil {
		return nil
	}
	addr := s.opts.advertise
	if addr == "" {
		addr = listenAddr
	}
	for _, svc := range services {
		inst := &registryv1.Instance{}
		if s.opts.instance != nil {
			inst = proto.Clone(s.opts.instance).(*registryv1.Instance)
		}
		inst.Service, inst.Address = svc, addr
		if inst.GetId() == "" {
			inst.Id = addr
		}
		r, err := s.reg.Register(ctx, inst)
		if err != nil {
			s.deregisterAll(ctx)
			return fmt.Errorf("rpc: registering %s: %w", svc, err)
		}
		s.mu.Lock()
		s.regs = append(s.regs, r)
		s.mu.Unlock()
	}
	return nil
}

func (s *Server) deregisterAll(ctx context.Context) error {
	s.mu.Lock()
	regs := s.regs
	s.regs = nil
	s.mu.Unlock()
	var errs []error
	for _, r := range regs {
		errs = append(errs, r.Deregister(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown drains the server: health NOT_SERVING and registry state
// DRAINING; deregister; wait until the registry, read back from
// ZooKeeper, shows every instance gone, plus the drain margin; then
// GracefulStop, which waits for calls in flight, until ctx ends; then
// Stop. It returns once the server has stopped; later calls wait for the
// first and return its result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() {
		defer close(s.drained)
		s.drainErr = s.drain(ctx)
	})
	select {
	case <-s.drained:
		return s.drainErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) drain(ctx context.Context) error {
	s.health.Shutdown() // every service NOT_SERVING; later changes ignored
	for _, f := range s.opts.onDrain {
		f()
	}
	s.mu.Lock()
	regs := slices.Clone(s.regs)
	s.mu.Unlock()

	var errs []error
	for _, r := range regs {
		err := r.Update(ctx, func(i *registryv1.Instance) { i.State = registryv1.InstanceState_INSTANCE_STATE_DRAINING })
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.deregisterAll(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.awaitGone(ctx, regs); err != nil {
		errs = append(errs, err)
	}
	if len(regs) > 0 {
		select {
		case <-time.After(s.opts.drainMargin):
		case <-ctx.Done():
		}
	}

	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
		<-stopped
		errs = append(errs, fmt.Errorf("rpc: calls still in flight when the drain ended: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// awaitGone waits until a watch of each service no longer lists this
// server's instance.
func (s *Server) awaitGone(ctx context.Context, regs []*registry.Registration) error {
	for _, r := range regs {
		inst := r.Instance()
		w, err := s.reg.Watch(inst.GetService())
		if err != nil {
			return err
		}
		for gone := false; !gone; {
			snap, err := w.Next(ctx)
			if err != nil {
				w.Close()
				return fmt.Errorf("rpc: waiting for %s/%s to leave the registry: %w", inst.GetService(), inst.GetId(), err)
			}
			gone = !slices.ContainsFunc(snap.Instances, func(i *registryv1.Instance) bool { return i.GetId() == inst.GetId() })
		}
		w.Close()
	}
	return nil
}
