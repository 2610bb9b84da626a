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
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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
	grpc   *grpc.Server
	health *health.Server
	reg    *registry.Client // nil: serve without registering
	opts   serverOptions

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

// WithGRPCOptions adds options to the underlying grpc.Server (credentials,
// keepalive, further interceptors, which run after the default chain).
func WithGRPCOptions(opts ...grpc.ServerOption) ServerOption {
	return func(o *serverOptions) { o.grpcOpts = append(o.grpcOpts, opts...) }
}

// NewServer returns a Server that registers in reg (nil: it does not
// register). Its default interceptor chain is, outermost first: recovery
// (a panic becomes Internal and is logged with its stack), logging through
// log/slog (OK calls at debug level), and the limiter, when one is set.
func NewServer(reg *registry.Client, opts ...ServerOption) *Server {
	o := serverOptions{log: slog.Default(), drainMargin: 500 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{reg: reg, opts: o, health: health.NewServer(), ready: make(chan struct{}), drained: make(chan struct{})}

	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		o.log.ErrorContext(ctx, "rpc: handler panicked", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	logger, logOpts := callLogging(o.log, logging.DefaultServerCodeToLevel)
	unary := []grpc.UnaryServerInterceptor{
		recovery.UnaryServerInterceptor(recoverOpt),
		logging.UnaryServerInterceptor(logger, logOpts...),
	}
	stream := []grpc.StreamServerInterceptor{
		recovery.StreamServerInterceptor(recoverOpt),
		logging.StreamServerInterceptor(logger, logOpts...),
	}
	if o.rate > 0 || o.maxConcurrent > 0 {
		l := newLimiter(o.rate, o.burst, o.maxConcurrent)
		unary = append(unary, l.unary)
		stream = append(stream, l.stream)
	}
	gopts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}, o.grpcOpts...)
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
// once the listener answers health checks with SERVING.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
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
// runs and the server answers before any client is told of it.
func (s *Server) checkServing(ctx context.Context, addr string, services []string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
