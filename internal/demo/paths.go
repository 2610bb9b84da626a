package demo

import (
	"context"
	"errors"
	"fmt"
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

	srv    *rpc.Server
	conn   *grpc.ClientConn
	stop   context.CancelFunc
	served chan error
}

// StartRPCPath serves shop on a loopback port as instance id (registered
// under flashsale.ServiceName) with limits, and returns once a client
// through the registry has been answered. Close stops it.
func StartRPCPath(ctx context.Context, env *Env, shop *flashsale.Shop, id string, limits RPCLimits) (_ *RPCPath, err error) {
	opts := []rpc.ServerOption{
		rpc.WithInstance(&registryv1.Instance{Id: id}),
		rpc.WithLogger(env.Quiet()),
		rpc.WithMetrics(nil),
		rpc.WithDrainMargin(50 * time.Millisecond),
	}
	if limits.Rate > 0 {
		opts = append(opts, rpc.WithRateLimit(rate.Limit(limits.Rate), max(limits.Burst, 1)))
	}
	if limits.MaxConcurrent > 0 {
		opts = append(opts, rpc.WithMaxConcurrent(limits.MaxConcurrent))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: shop server: %w", err)
	}
	p := &RPCPath{Shop: shop, srv: flashsale.NewGRPCServer(env.Registry, shop, env.Quiet(), opts...), served: make(chan error, 1)}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p.stop = stop
	go func() { p.served <- p.srv.Serve(sctx, lis) }()
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	select {
	case <-p.srv.Ready():
	case err := <-p.served:
		p.served <- err
		return nil, fmt.Errorf("demo: shop server stopped before it registered: %w", err)
	case <-ctx.Done():
		return nil, fmt.Errorf("demo: shop server not registered: %w", ctx.Err())
	}
	p.conn, err = rpc.NewClient(env.Registry, flashsale.ServiceName, rpc.WithClientMetrics(nil), rpc.WithClientLogger(env.Quiet()))
	if err != nil {
		return nil, fmt.Errorf("demo: shop client: %w", err)
	}
	p.Client = flashsalev1.NewFlashSaleServiceClient(p.conn)
	// The registry's news reaches the client's resolver a moment after
	// the server registered: wait for a first answer.
	for {
		_, err := p.Client.Stock(ctx, &flashsalev1.StockRequest{Item: ItemNames(1)[0]})
		if err == nil || status.Code(err) == codes.InvalidArgument {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("demo: shop server does not answer: %w (last: %w)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close closes the client, then drains the server (deregistered first,
// calls in flight finished) and waits for it.
func (p *RPCPath) Close() error {
	var errs []error
	if p.conn != nil {
		errs = append(errs, p.conn.Close())
		p.conn = nil
	}
	if p.stop != nil {
		p.stop()
		p.stop = nil
		errs = append(errs, <-p.served)
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
	// Workers is the pool.
	Workers *flashsale.Workers

	cfg flashsale.QueueConfig
	nc  *nats.Conn
}

// StartMQPath creates the queue cfg names (stream, subject and consumer
// should come from Env.Name, so runs never meet) and starts cfg.Workers
// workers buying from shop; opts go to flashsale.StartWorkers (an
// observer, say). Close stops it and deletes the stream.
func StartMQPath(ctx context.Context, env *Env, shop *flashsale.Shop, cfg flashsale.QueueConfig, opts ...flashsale.WorkerOption) (_ *MQPath, err error) {
	p := &MQPath{Shop: shop, cfg: cfg}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close(context.WithoutCancel(ctx)))
		}
	}()
	if p.Queue, err = flashsale.OpenQueue(ctx, env.JetStream, cfg); err != nil {
		return nil, err
	}
	if p.nc, err = env.DialNATS("workers"); err != nil {
		return nil, err
	}
	js, err := jetstream.New(p.nc)
	if err != nil {
		return nil, fmt.Errorf("demo: workers' JetStream: %w", err)
	}
	opts = append([]flashsale.WorkerOption{flashsale.WithWorkerLogger(env.Quiet())}, opts...)
	if p.Workers, err = flashsale.StartWorkers(ctx, js, cfg, shop, opts...); err != nil {
		return nil, err
	}
	return p, nil
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
