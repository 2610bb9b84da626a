package flashsale

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// EventServiceName is the subscribers' service name in the registry and on
// the wire.
var EventServiceName = flashsalev1.SaleEventService_ServiceDesc.ServiceName

// EventHandler handles one event at a subscriber and says whether it had
// handled the event's id before. It is called from the delivering
// goroutine: on the RPC path one per call, possibly at once; on NATS one
// at a time per subscription.
type EventHandler func(ctx context.Context, ev *flashsalev1.SaleEvent) (duplicate bool, err error)

// EventServer is a subscriber's gRPC front door: SaleEventService over an
// EventHandler.
type EventServer struct {
	flashsalev1.UnimplementedSaleEventServiceServer
	handle EventHandler
}

var _ flashsalev1.SaleEventServiceServer = (*EventServer)(nil)

// NewEventServer returns the service over handle.
func NewEventServer(handle EventHandler) *EventServer { return &EventServer{handle: handle} }

// NewEventGRPCServer returns an rpc.Server serving handle as
// EventServiceName, registered in reg while it serves: one subscriber
// instance. Give each instance an id of its own with rpc.WithInstance.
func NewEventGRPCServer(reg *registry.Client, handle EventHandler, opts ...rpc.ServerOption) *rpc.Server {
	s := rpc.NewServer(reg, opts...)
	flashsalev1.RegisterSaleEventServiceServer(s, NewEventServer(handle))
	return s
}

// Notify hands the event to the handler and answers once it has returned.
func (s *EventServer) Notify(ctx context.Context, req *flashsalev1.NotifyRequest) (*flashsalev1.NotifyResponse, error) {
	if req.GetEvent().GetEventId() == "" {
		return nil, status.Error(codes.InvalidArgument, "flashsale: an event with no id")
	}
	dup, err := s.handle(ctx, req.GetEvent())
	switch {
	case err == nil:
		return &flashsalev1.NotifyResponse{Duplicate: dup}, nil
	case errors.Is(err, context.DeadlineExceeded):
		return nil, status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return nil, status.Error(codes.Canceled, err.Error())
	}
	return nil, status.Error(codes.Unavailable, err.Error())
}

// Delivery is what one call of a Notifier's broadcast came to.
type Delivery struct {
	// Instance is the subscriber instance's id in the registry.
	Instance string
	// Err is the call's error (nil: the subscriber handled the event).
	Err error
	// Took is how long the call took.
	Took time.Duration
}

type notifierOptions struct {
	filter   func(*registryv1.Instance) bool
	dialOpts []grpc.DialOption
	log      *slog.Logger
}

// NotifierOption configures NewNotifier.
type NotifierOption func(*notifierOptions)

// WithInstanceFilter has the Notifier call only the instances keep
// accepts (default: every SERVING instance).
func WithInstanceFilter(keep func(*registryv1.Instance) bool) NotifierOption {
	return func(o *notifierOptions) { o.filter = keep }
}

// WithNotifierDialOptions adds options to the connection made to each
// instance (a shorter reconnect backoff, say).
func WithNotifierDialOptions(opts ...grpc.DialOption) NotifierOption {
	return func(o *notifierOptions) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithNotifierLogger sets where the Notifier logs (default slog.Default()).
func WithNotifierLogger(l *slog.Logger) NotifierOption {
	return func(o *notifierOptions) { o.log = l }
}

// Notifier is the RPC path's broadcaster: it follows the subscribers in
// the registry (one watch on EventServiceName), keeps a connection to
// each SERVING instance, and Notify calls every one of them. The producer
// pays one call per subscriber per event and learns who got it; an
// instance that is registered but unreachable fails its call, one that
// has deregistered is not called at all. Nothing is kept for a subscriber
// that missed an event. It is safe for concurrent use; Close stops it.
type Notifier struct {
	opts  notifierOptions
	watch *registry.Watcher
	stop  context.CancelFunc
	done  chan struct{}
	once  sync.Once
	cerr  error

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn // by instance id
	addrs   map[string]string           // by instance id
	changed chan struct{}               // closed and replaced at every change of conns
	err     error                       // why following the registry stopped
}

// NewNotifier starts following EventServiceName's instances in reg. The
// goroutine that follows them is the Notifier's; Close ends it.
func NewNotifier(reg *registry.Client, opts ...NotifierOption) (*Notifier, error) {
	o := notifierOptions{filter: func(*registryv1.Instance) bool { return true }, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	w, err := reg.Watch(EventServiceName)
	if err != nil {
		return nil, fmt.Errorf("flashsale: watching %s: %w", EventServiceName, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	n := &Notifier{opts: o, watch: w, stop: stop, done: make(chan struct{}),
		conns: map[string]*grpc.ClientConn{}, addrs: map[string]string{}, changed: make(chan struct{})}
	go n.follow(ctx)
	return n, nil
}

// follow applies each registry snapshot to the connections until ctx ends.
func (n *Notifier) follow(ctx context.Context) {
	defer close(n.done)
	for {
		snap, err := n.watch.Next(ctx)
		if err != nil {
			n.mu.Lock()
			if ctx.Err() == nil {
				n.err = fmt.Errorf("flashsale: following %s: %w", EventServiceName, err)
			}
			close(n.changed)
			n.changed = make(chan struct{})
			n.mu.Unlock()
			return
		}
		n.apply(snap)
	}
}

// apply connects to new SERVING instances and closes the connections of
// instances that left, drain or moved.
func (n *Notifier) apply(snap registry.Snapshot) {
	want := map[string]string{}
	for _, inst := range snap.Instances {
		if inst.GetState() == registryv1.InstanceState_INSTANCE_STATE_DRAINING || !n.opts.filter(inst) {
			continue
		}
		want[inst.GetId()] = inst.GetAddress()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, conn := range n.conns {
		if addr, ok := want[id]; !ok || addr != n.addrs[id] {
			_ = conn.Close()
			delete(n.conns, id)
			delete(n.addrs, id)
		}
	}
	for id, addr := range want {
		if _, ok := n.conns[id]; ok {
			continue
		}
		opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, n.opts.dialOpts...)
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			n.opts.log.Warn("flashsale: cannot reach subscriber", "instance", id, "addr", addr, "err", err)
			continue
		}
		n.conns[id], n.addrs[id] = conn, addr
	}
	close(n.changed)
	n.changed = make(chan struct{})
}

// Await waits until Notify calls exactly count instances, or ctx ends.
func (n *Notifier) Await(ctx context.Context, count int) error {
	for {
		n.mu.Lock()
		have, changed, err := len(n.conns), n.changed, n.err
		n.mu.Unlock()
		switch {
		case have == count:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("flashsale: %d subscribers known, want %d: %w", have, count, ctx.Err())
		}
	}
}

// Notify calls every subscriber instance known now, all at once, and
// returns when every call has returned (each bounded by ctx): one Delivery
// per instance, sorted by instance id.
func (n *Notifier) Notify(ctx context.Context, ev *flashsalev1.SaleEvent) []Delivery {
	n.mu.Lock()
	targets := make(map[string]flashsalev1.SaleEventServiceClient, len(n.conns))
	for id, conn := range n.conns {
		targets[id] = flashsalev1.NewSaleEventServiceClient(conn)
	}
	n.mu.Unlock()
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out = make([]Delivery, 0, len(targets))
		req = &flashsalev1.NotifyRequest{Event: ev}
	)
	for id, client := range targets {
		wg.Go(func() {
			start := time.Now()
			_, err := client.Notify(ctx, req)
			d := Delivery{Instance: id, Err: err, Took: time.Since(start)}
			mu.Lock()
			out = append(out, d)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b Delivery) int { return cmp.Compare(a.Instance, b.Instance) })
	return out
}

// Done is closed once the Notifier has stopped following the registry.
func (n *Notifier) Done() <-chan struct{} { return n.done }

// Close stops following the registry, waits for it, and closes every
// connection. It is safe to call more than once.
func (n *Notifier) Close() error {
	n.once.Do(func() {
		n.stop()
		<-n.done
		n.watch.Close()
		n.mu.Lock()
		defer n.mu.Unlock()
		var errs []error
		for id, conn := range n.conns {
			errs = append(errs, conn.Close())
			delete(n.conns, id)
		}
		n.cerr = errors.Join(errs...)
	})
	return n.cerr
}
