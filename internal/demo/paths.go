package demo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/rpc"
)

// The paths' names: keys in the JSON, columns in the table.
const (
	PathRPC = "rpc"
	PathMQ  = "mq"
)

// ShopConfig is the flash sale one path sells.
type ShopConfig struct {
	// Items is the number of items ("item-00", "item-01", ...).
	Items int
	// Stock is the units of each item.
	Stock int64
	// Capacity is the downstream's capacity C, purchases a second.
	Capacity float64
	// Extra are further items, with their stock (the probes' items, say).
	Extra map[string]int64
}

// ItemNames returns the names of n items.
func ItemNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("item-%02d", i)
	}
	return names
}

// NewShop returns a fresh store and a shop over it for one path of one
// scenario: cfg's items and stock, a capacity of cfg.Capacity whose every
// admission is counted as ColDownstream in rec (nil: not counted), and
// locks taken through locks under a prefix of the run's, scenario's and
// path's own.
func NewShop(env *Env, scenario, path string, cfg ShopConfig, locks *lockclient.Client, rec *Recorder) (*flashsale.Shop, error) {
	stock := map[string]int64{}
	for _, name := range ItemNames(cfg.Items) {
		stock[name] = cfg.Stock
	}
	maps.Copy(stock, cfg.Extra)
	store, err := flashsale.NewStore(stock)
	if err != nil {
		return nil, err
	}
	var onAdmit func(time.Time)
	if rec != nil {
		onAdmit = func(at time.Time) { rec.Count(ColDownstream, at) }
	}
	capacity, err := flashsale.NewCapacity(cfg.Capacity, onAdmit)
	if err != nil {
		return nil, err
	}
	prefix := "flashsale/" + env.Name(scenario, path) + "/"
	return flashsale.NewShop(store, locks, capacity, prefix, env.Quiet()), nil
}

// RPCLimits are the RPC stack's limiter on the shop's server.
type RPCLimits struct {
	// Rate and Burst: calls admitted a second, and the burst above it
	// (rpc.WithRateLimit). Rate 0: no rate limit.
	Rate  float64
	Burst int
	// MaxConcurrent bounds the calls in flight (rpc.WithMaxConcurrent);
	// 0: no bound.
	MaxConcurrent int
}

// RPCPath is the shop behind its gRPC front door, served by rpc.NewServer
// with the limiter and registered in the registry, and a client that finds
// it through the registry (zk:///, p2c_ewma, the default interceptors).
type RPCPath struct {
	// Shop is the shop served.
	Shop *flashsale.Shop
	// Client calls it.
	Client flashsalev1.FlashSaleServiceClient

	env    *Env
	id     string
	limits RPCLimits
	conn   *grpc.ClientConn

	srv *runningServer // nil while crashed
}

// StartRPCPath serves shop on a loopback port as instance id (registered
// under flashsale.ServiceName) with limits, and returns once a client
// through the registry has been answered. Close stops it.
func StartRPCPath(ctx context.Context, env *Env, shop *flashsale.Shop, id string, limits RPCLimits) (_ *RPCPath, err error) {
	p := &RPCPath{Shop: shop, env: env, id: id, limits: limits}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	if err := p.serve(ctx); err != nil {
		return nil, err
	}
	p.conn, err = rpc.NewClient(env.Registry, flashsale.ServiceName, rpc.WithClientMetrics(nil), rpc.WithClientLogger(env.Quiet()))
	if err != nil {
		return nil, fmt.Errorf("demo: shop client: %w", err)
	}
	p.Client = flashsalev1.NewFlashSaleServiceClient(p.conn)
	if err := p.awaitAnswer(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// serve starts the shop's server on a new loopback port and returns once
// it is registered.
func (p *RPCPath) serve(ctx context.Context) error {
	opts := []rpc.ServerOption{
		rpc.WithInstance(&registryv1.Instance{Id: p.id}),
		rpc.WithLogger(p.env.Quiet()),
		rpc.WithMetrics(nil),
		rpc.WithDrainMargin(50 * time.Millisecond),
	}
	if p.limits.Rate > 0 {
		opts = append(opts, rpc.WithRateLimit(rate.Limit(p.limits.Rate), max(p.limits.Burst, 1)))
	}
	if p.limits.MaxConcurrent > 0 {
		opts = append(opts, rpc.WithMaxConcurrent(p.limits.MaxConcurrent))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: shop server: %w", err)
	}
	// The server lives until Close or Crash, not until ctx ends.
	srv, err := startServer(ctx, flashsale.NewGRPCServer(p.env.Registry, p.Shop, p.env.Quiet(), opts...), lis)
	if err != nil {
		return fmt.Errorf("demo: shop server: %w", err)
	}
	p.srv = srv
	return nil
}

// runningServer is an rpc.Server serving in a goroutine of its own until
// crash or shutdown, whichever comes first and once.
type runningServer struct {
	srv    *rpc.Server
	stop   context.CancelFunc // ends Serve's context: a graceful stop
	served chan error         // Serve's return
}

// startServer runs srv.Serve on lis in a goroutine of its own, and returns
// once srv is ready (serving, and registered if it has a registry). The
// server lives until crash or shutdown, not until ctx ends. If Serve
// returns first, or ctx ends first, startServer stops the server, closes
// lis and returns why: nothing is left running.
func startServer(ctx context.Context, srv *rpc.Server, lis net.Listener) (*runningServer, error) {
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	rs := &runningServer{srv: srv, stop: stop, served: make(chan error, 1)}
	go func() { rs.served <- srv.Serve(sctx, lis) }()
	select {
	case <-srv.Ready():
		return rs, nil
	case err := <-rs.served:
		stop()
		_ = lis.Close() // Serve may leave it to the caller
		if err == nil {
			return nil, errors.New("stopped before it served")
		}
		return nil, fmt.Errorf("stopped before it served: %w", err)
	case <-ctx.Done():
		err := rs.shutdown()
		_ = lis.Close()
		return nil, fmt.Errorf("not serving: %w", errors.Join(ctx.Err(), err))
	}
}

// crash stops the server as a crashed process stops: at once, its
// connections cut and the calls in flight failing. It waits for Serve
// (which deregisters what the server registered) and returns its error.
func (rs *runningServer) crash() error {
	rs.srv.GRPC().Stop()
	err := <-rs.served
	rs.stop()
	return err
}

// shutdown stops the server gracefully (deregistered first, the calls in
// flight finished; see rpc.Server.Serve), waits for it and returns Serve's
// error.
func (rs *runningServer) shutdown() error {
	rs.stop()
	return <-rs.served
}

// awaitAnswer waits for the client's first answer: the registry's news
// reaches its resolver a moment after the server registered.
func (p *RPCPath) awaitAnswer(ctx context.Context) error {
	for {
		_, err := p.Client.Stock(ctx, &flashsalev1.StockRequest{Item: ItemNames(1)[0]})
		if err == nil || status.Code(err) == codes.InvalidArgument {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: shop server does not answer: %w (last: %w)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Crash stops the shop's server as a crashed process stops: at once, the
// calls in flight failing (purchases they had applied stay applied), and
// its registry entry gone (as when its session ends). Callers get errors
// until Restart. It waits for the server to stop.
func (p *RPCPath) Crash() error {
	if p.srv == nil {
		return nil
	}
	err := p.srv.crash()
	p.srv = nil
	if err != nil {
		return fmt.Errorf("demo: crashing the shop server: %w", err)
	}
	return nil
}

// Restart serves the shop again after Crash, on a new port under the
// same instance id, and returns once it is registered (the client learns
// of it a moment later).
func (p *RPCPath) Restart(ctx context.Context) error {
	if p.srv != nil {
		return errors.New("demo: the shop server is running")
	}
	return p.serve(ctx)
}

// Close closes the client, then drains the server (deregistered first,
// calls in flight finished) and waits for it.
func (p *RPCPath) Close() error {
	var errs []error
	if p.conn != nil {
		errs = append(errs, p.conn.Close())
		p.conn = nil
	}
	if p.srv != nil {
		errs = append(errs, p.srv.shutdown())
		p.srv = nil
	}
	return errors.Join(errs...)
}

// ClassifyRPC returns the column an RPC error counts under: ColRejected
// for RESOURCE_EXHAUSTED (the limiter), ColTimedOut for
// DEADLINE_EXCEEDED, ColFailed for anything else.
func ClassifyRPC(err error) string {
	switch status.Code(err) {
	case codes.ResourceExhausted:
		return ColRejected
	case codes.DeadlineExceeded:
		return ColTimedOut
	}
	return ColFailed
}

// MQPath is the shop behind the JetStream work queue: the producers'
// handle on the queue (on Env.NATSConn) and a worker pool on a NATS
// connection of its own.
type MQPath struct {
	// Shop is the shop the workers buy from.
	Shop *flashsale.Shop
	// Queue is the producers' handle.
	Queue *flashsale.Queue
	// Workers is the pool (nil while crashed).
	Workers *flashsale.Workers

	env  *Env
	cfg  flashsale.QueueConfig
	opts []flashsale.WorkerOption
	nc   *nats.Conn
}

// StartMQPath creates the queue cfg names (stream, subject and consumer
// should come from Env.Name, so runs never meet) and starts cfg.Workers
// workers buying from shop; opts go to flashsale.StartWorkers (an
// observer, say). Close stops it and deletes the stream.
func StartMQPath(ctx context.Context, env *Env, shop *flashsale.Shop, cfg flashsale.QueueConfig, opts ...flashsale.WorkerOption) (_ *MQPath, err error) {
	p := &MQPath{Shop: shop, env: env, cfg: cfg}
	p.opts = append([]flashsale.WorkerOption{flashsale.WithWorkerLogger(env.Quiet())}, opts...)
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close(context.WithoutCancel(ctx)))
		}
	}()
	if p.Queue, err = flashsale.OpenQueue(ctx, env.JetStream, cfg); err != nil {
		return nil, err
	}
	if err := p.startWorkers(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// startWorkers starts the pool on a new NATS connection of its own.
func (p *MQPath) startWorkers(ctx context.Context) (err error) {
	if p.nc, err = p.env.DialNATS("workers"); err != nil {
		return err
	}
	js, err := jetstream.New(p.nc)
	if err != nil {
		return fmt.Errorf("demo: workers' JetStream: %w", err)
	}
	p.Workers, err = flashsale.StartWorkers(ctx, js, p.cfg, p.Shop, p.opts...)
	return err
}

// CrashAfterApply kills the pool between the store's write and the ack
// (flashsale.Workers.CrashAfterApply) and closes its connection, as a
// killed process's would close. It returns how many messages the workers
// left applied but unacked: they come back after the queue's AckWait.
func (p *MQPath) CrashAfterApply(ctx context.Context) int {
	if p.Workers == nil {
		return 0
	}
	held := p.Workers.CrashAfterApply(ctx)
	p.Workers = nil
	p.nc.Close()
	p.nc = nil
	return held
}

// RestartWorkers starts a new pool after CrashAfterApply, with the same
// options, on a new connection.
func (p *MQPath) RestartWorkers(ctx context.Context) error {
	if p.Workers != nil {
		return errors.New("demo: the workers are running")
	}
	return p.startWorkers(ctx)
}

// Close stops the workers gracefully, deletes the stream and closes the
// workers' connection. It is safe to call more than once.
func (p *MQPath) Close(ctx context.Context) error {
	var errs []error
	if p.Workers != nil {
		errs = append(errs, p.Workers.Close())
		p.Workers = nil
	}
	if p.Queue != nil {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		errs = append(errs, p.Queue.Delete(dctx))
		cancel()
		p.Queue = nil
	}
	if p.nc != nil {
		p.nc.Close()
		p.nc = nil
	}
	return errors.Join(errs...)
}

// ClassifyPublish returns the column a failed enqueue counts under:
// ColTimedOut when the caller's deadline passed (or NATS timed out),
// ColRejected when JetStream answered with an error (a full stream, say),
// ColFailed for anything else (no JetStream, a closed connection).
func ClassifyPublish(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return ColTimedOut
	case errors.As(err, &apiErr):
		return ColRejected
	}
	return ColFailed
}
