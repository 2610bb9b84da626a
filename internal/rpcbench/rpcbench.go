package rpcbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/pprof"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/loadbalance/p2c"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// Errors returned by Run.
var (
	// ErrConfig reports a Config that Validate refuses.
	ErrConfig = errors.New("rpcbench: invalid config")
	// ErrCallsFailed reports a run stopped by a failed call (or an answer
	// from a server other than the side's own).
	ErrCallsFailed = errors.New("rpcbench: calls failed")
	// ErrNoCalls reports a measured window in which no call completed:
	// the window is shorter than a call.
	ErrNoCalls = errors.New("rpcbench: no call completed in a measured window")
	// ErrNotAlone reports other instances of the Echo service in the
	// registry, which the stack side's balancer would call too.
	ErrNotAlone = errors.New("rpcbench: the Echo service has other instances in the registry")
)

// Run brings both sides up, runs every phase as the package doc says,
// tears both sides down, and returns the figures. It fails on the first
// failed call, and when ctx ends (with ctx's error); either way it returns
// only once every server, connection and goroutine it started is gone.
func Run(ctx context.Context, cfg Config) (_ Result, err error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	defer func() {
		// However ctx's end showed (a failed call, a setup step), say it.
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("rpcbench: %w: %w", ctx.Err(), err)
		}
	}()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	raw, err := startSide(ctx, SideRaw, cfg, startRaw)
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, raw.stop()) }()
	stack, err := startSide(ctx, SideStack, cfg, startStack)
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, stack.stop()) }()

	rounds, err := benchrun.Alternate(cfg.Concurrency, cfg.Rounds, raw, stack, func(s *side, c, i int) (Round, error) {
		fig, err := runPhase(ctx, s, c, cfg)
		if err != nil {
			return Round{}, err
		}
		r := fig.round()
		if cfg.Progress != nil {
			cfg.Progress(Phase{Side: s.name, Concurrency: c, Round: i + 1, Rounds: cfg.Rounds, Figures: r})
		}
		return r, nil
	})
	if err != nil {
		return Result{}, err
	}
	return newResult(cfg, cells(rounds[raw]), cells(rounds[stack])), nil
}

// side is one way of calling Echo: a server and one ClientConn to it.
type side struct {
	name   string
	id     string // what its server answers in served_by
	client echov1.EchoServiceClient
	stop   func() error // closes the client, stops the server, waits
}

// startSide starts a side with start, under the side's pprof label so
// that every goroutine its servers and clients start carries it, and
// proves the path with a first call. The setup is bounded by
// cfg.SetupTimeout.
func startSide(ctx context.Context, name string, cfg Config, start func(context.Context, context.Context, Config) (*side, error)) (*side, error) {
	return benchrun.StartSide(ctx, name, cfg.SetupTimeout, func(ctx, setup context.Context) (*side, error) {
		s, err := start(ctx, setup, cfg)
		if err != nil {
			return nil, err
		}
		resp, err := s.client.Echo(setup, &echov1.EchoRequest{}, grpc.WaitForReady(true))
		switch {
		case err != nil:
			err = fmt.Errorf("rpcbench: %s: first call: %w", name, err)
		case resp.GetServedBy() != s.id:
			err = fmt.Errorf("%w: %s: first call answered by %q, not %q", ErrCallsFailed, name, resp.GetServedBy(), s.id)
		}
		if err != nil {
			return nil, errors.Join(err, s.stop())
		}
		return s, nil
	})
}

// startRaw serves Echo with a bare grpc.Server and dials it by address,
// with nothing between the generated client and the transport.
func startRaw(_, _ context.Context, _ Config) (*side, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rpcbench: raw: %w", err)
	}
	id := SideRaw + "@" + lis.Addr().String()
	srv := grpc.NewServer()
	echov1.RegisterEchoServiceServer(srv, &echo.Server{ID: id})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	stopServer := func() error {
		srv.Stop()
		if err := <-served; err != nil {
			return fmt.Errorf("rpcbench: raw server: %w", err)
		}
		return nil
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("rpcbench: raw client: %w", err), stopServer())
	}
	return &side{
		name:   SideRaw,
		id:     id,
		client: echov1.NewEchoServiceClient(conn),
		stop:   func() error { return errors.Join(conn.Close(), stopServer()) },
	}, nil
}

// startStack serves Echo with rpc.NewServer, registered in ZooKeeper, and
// calls it with rpc.NewClient through the registry and p2c_ewma. ctx
// carries the side's labels; setup bounds the start.
func startStack(ctx, setup context.Context, cfg Config) (_ *side, err error) {
	reg, err := registry.Dial(setup, cfg.ZK, registry.WithLogger(cfg.Logger))
	if err != nil {
		if setup.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("rpcbench: no ZooKeeper session with %s within %v: %w", cfg.ZK, cfg.SetupTimeout, err)
		}
		return nil, fmt.Errorf("rpcbench: registry at %s: %w", cfg.ZK, err)
	}
	var stops benchrun.Stops
	stops.Add(func() error { reg.Close(); return nil })
	defer func() {
		if err != nil {
			err = errors.Join(err, stops.Close())
		}
	}()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rpcbench: stack: %w", err)
	}
	addr := lis.Addr().String()
	id := SideStack + "@" + addr
	srv := rpc.NewServer(reg, rpc.WithLogger(cfg.Logger))
	echov1.RegisterEchoServiceServer(srv, &echo.Server{ID: id})
	// The server lives until stop, not until ctx ends: its drain must
	// run even when the run is cancelled.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	var serveErr error
	served := make(chan struct{})
	go func() { defer close(served); serveErr = srv.Serve(serveCtx, lis) }()
	stops.Add(func() error {
		stopServing()
		<-served
		if serveErr != nil {
			return fmt.Errorf("rpcbench: stack server: %w", serveErr)
		}
		return nil
	})
	select {
	case <-srv.Ready():
	case <-served:
		return nil, fmt.Errorf("rpcbench: stack server stopped before it registered: %w", serveErr)
	case <-setup.Done():
		return nil, fmt.Errorf("rpcbench: stack server not registered within %v: %w", cfg.SetupTimeout, setup.Err())
	}
	if err := checkAlone(setup, reg, addr); err != nil {
		return nil, err
	}

	service := echov1.EchoService_ServiceDesc.ServiceName
	conn, err := rpc.NewClient(reg, service, rpc.WithBalancer(p2c.Name), rpc.WithClientLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("rpcbench: stack client: %w", err)
	}
	stops.Add(conn.Close)
	return &side{name: SideStack, id: id, client: echov1.NewEchoServiceClient(conn), stop: stops.Close}, nil
}

// checkAlone fails with ErrNotAlone when the registry lists an instance
// of the Echo service at an address other than addr.
func checkAlone(ctx context.Context, reg *registry.Client, addr string) error {
	service := echov1.EchoService_ServiceDesc.ServiceName
	w, err := reg.Watch(service)
	if err != nil {
		return fmt.Errorf("rpcbench: watching %s: %w", service, err)
	}
	defer w.Close()
	snap, err := w.Next(ctx)
	if err != nil {
		return fmt.Errorf("rpcbench: reading %s from the registry: %w", service, err)
	}
	var others []string
	for _, inst := range snap.Instances {
		if inst.GetAddress() != addr {
			others = append(others, inst.GetId()+" at "+inst.GetAddress())
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("%w: %s also has %s; use a ZooKeeper of the benchmark's own", ErrNotAlone, service, strings.Join(others, ", "))
	}
	return nil
}

// runPhase runs side s at concurrency c for one warm-up and one window,
// each worker calling with a request of its own and timing its calls in a
// histogram of its own.
func runPhase(ctx context.Context, s *side, c int, cfg Config) (phaseFigures, error) {
	payload := bytes.Repeat([]byte{0xa5}, cfg.PayloadSize)
	hists := make([]*histogram, c)
	win, err := benchrun.Loop{
		Workers: c,
		NewWorker: func(i int) benchrun.Worker {
			hists[i] = &histogram{}
			req := &echov1.EchoRequest{Payload: payload}
			return benchrun.Worker{Op: func(ctx context.Context) error { return s.call(ctx, req) }, Record: hists[i].record}
		},
		Labels:   pprof.Labels("side", s.name, "c", strconv.Itoa(c)),
		Warmup:   cfg.Warmup,
		Duration: cfg.Duration,
		Allocs:   true,
	}.Run(ctx)

	fig := phaseFigures{elapsed: win.Elapsed, used: win.Used, hist: &histogram{}}
	for _, h := range hists {
		fig.hist.merge(h)
	}
	fig.calls = int64(fig.hist.total)
	switch {
	case ctx.Err() != nil:
		return phaseFigures{}, fmt.Errorf("rpcbench: %s at c=%d: %w", s.name, c, ctx.Err())
	case win.Failed > 0:
		return phaseFigures{}, fmt.Errorf("%w: %d on %s at c=%d, the first: %w", ErrCallsFailed, win.Failed, s.name, c, win.Err)
	case err != nil:
		return phaseFigures{}, err
	case fig.calls == 0:
		return phaseFigures{}, fmt.Errorf("%w: %s at c=%d in %v", ErrNoCalls, s.name, c, cfg.Duration)
	}
	return fig, nil
}

// call makes one call and checks that the side's own server answered it.
func (s *side) call(ctx context.Context, req *echov1.EchoRequest) error {
	resp, err := s.client.Echo(ctx, req)
	if err == nil && resp.GetServedBy() != s.id {
		err = fmt.Errorf("answered by %q, not %q", resp.GetServedBy(), s.id)
	}
	return err
}
