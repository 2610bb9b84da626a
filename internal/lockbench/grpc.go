package lockbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// releaseTimeout bounds a release, which runs to its end even when the
// run's context ends: a lease left held would hold up the replica's Close
// until its validity ran out.
const releaseTimeout = 10 * time.Second

// owner is the contenders' owner, as Describe shows it.
const owner = "lockbench"

// serviceSide is the lock service through one of its transports — the
// calls lockclient makes, without its watchdog. The gRPC side is one
// replica and one ClientConn to it through the registry (rpc.NewClient:
// zk:///, p2c_ewma, the default interceptors) shared by all workers; the
// NATS side (nats.go) is the same replica's NATS front door and one NATS
// connection shared by all workers.
type serviceSide struct {
	side    string     // SideGRPC or SideNATS
	nc      *nats.Conn // the NATS side's client connection
	replica *replica
	t       lockclient.Transport
	client  lockv1.LockServiceClient
	// describer reads the queues of the replica's locks from ZooKeeper,
	// on the replica's session; it never makes a node.
	describer *zklock.Locker
	prefix    string // of lock names: "lockbench-<run>/"
	ttl       *durationpb.Duration
	stop      func() error
}

var _ cycler = (*serviceSide)(nil)

// startGRPC starts the replica and the client, and proves the path with
// one cycle. ctx carries the side's labels; setup bounds the start.
func startGRPC(ctx, setup context.Context, cfg Config, run string) (_ *serviceSide, err error) {
	reg, err := registry.Dial(setup, cfg.ZK, registry.WithLogger(cfg.Logger))
	if err != nil {
		return nil, dialError(setup, cfg, err)
	}
	var stops benchrun.Stops
	stops.Add(reg.Close)
	defer func() {
		if err != nil {
			err = errors.Join(err, stops.Close())
		}
	}()

	rep, err := startReplica(ctx, setup, cfg, reg, "lockbench-"+run)
	if err != nil {
		return nil, err
	}
	stops.Add(rep.stop)
	describer, err := zklock.New(rep.conn, zklock.WithLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("lockbench: %s: %w", SideGRPC, err)
	}
	stops.Add(describer.Close)
	if err := checkAlone(setup, reg, rep.id); err != nil {
		return nil, err
	}
	conn, err := rpc.NewClient(reg, lockservice.ServiceName, rpc.WithClientLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("lockbench: %s client: %w", SideGRPC, err)
	}
	stops.Add(conn.Close)
	s := &serviceSide{
		side:      SideGRPC,
		replica:   rep,
		t:         lockclient.GRPC(conn),
		client:    lockv1.NewLockServiceClient(conn),
		describer: describer,
		prefix:    "lockbench-" + run + "/",
		ttl:       durationpb.New(cfg.TTL),
		stop:      stops.Close,
	}
	// The first acquire waits for the connection; the release proves the
	// affinity path to the replica too.
	lease, err := s.client.Acquire(setup, s.request(s.prefix+"probe"), grpc.WaitForReady(true))
	if err == nil {
		err = s.release(setup, lease.GetLease())
	}
	if err != nil {
		return nil, fmt.Errorf("lockbench: %s: first cycle: %w", SideGRPC, err)
	}
	return s, nil
}

func (s *serviceSide) name() string { return s.side }

func (s *serviceSide) request(name string) *lockv1.AcquireRequest {
	return &lockv1.AcquireRequest{Name: name, Ttl: s.ttl, Wait: true, RequestId: randomHex(16), Owner: owner}
}

// cycle acquires a lock of the worker's own — one name for c=1, c
// distinct ones at c — and releases it.
func (s *serviceSide) cycle(c, i int) func(context.Context) error {
	name := s.prefix + "c" + strconv.Itoa(c) + "-" + strconv.Itoa(i)
	return func(ctx context.Context) error {
		lease, err := s.acquire(ctx, name)
		if err != nil {
			return err
		}
		return s.release(ctx, lease)
	}
}

// acquire waits for the lock name and checks that the benchmark's replica
// granted it.
func (s *serviceSide) acquire(ctx context.Context, name string) (*lockv1.Lease, error) {
	lease, err := s.t.Acquire(ctx, s.request(name))
	if err != nil {
		return nil, fmt.Errorf("acquire %q: %w", name, err)
	}
	if lease.GetReplica() != s.replica.id {
		err := fmt.Errorf("%w: %q granted by replica %q, not %q", ErrOpsFailed, name, lease.GetReplica(), s.replica.id)
		return nil, errors.Join(err, s.release(ctx, lease))
	}
	return lease, nil
}

// release releases a lease, to the end even if ctx ends (within
// releaseTimeout).
func (s *serviceSide) release(ctx context.Context, lease *lockv1.Lease) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := s.t.Release(ctx, lease); err != nil {
		return fmt.Errorf("release %q: %w", lease.GetName(), err)
	}
	return nil
}

// handoff runs a handoff run through the service. The queue is read
// from ZooKeeper, and the waiters' watches are those of the replica's
// session, which also holds the holder's watch on its own node: that the
// first waiter watches the holder's node cannot be told apart from it.
func (s *serviceSide) handoff(ctx context.Context, name string, n int, timeout time.Duration) ([]time.Duration, error) {
	return runHandoff(ctx, grpcLocks{s}, queueCheck{locker: s.describer, conn: s.replica.conn}, name, n, timeout)
}

// wakeups is 0: the replica's zklock.Locker is not reachable from here.
func (s *serviceSide) wakeups() uint64 { return 0 }

// grpcLocks is the lock service as handoff runs use it.
type grpcLocks struct{ s *serviceSide }

func (g grpcLocks) hold(ctx context.Context, name string) (*lockv1.Lease, error) {
	return g.s.acquire(ctx, name)
}

func (g grpcLocks) wait(ctx context.Context, name string) (*lockv1.Lease, error) {
	return g.s.acquire(ctx, name)
}

func (g grpcLocks) release(ctx context.Context, l *lockv1.Lease) error { return g.s.release(ctx, l) }

func (g grpcLocks) token(l *lockv1.Lease) uint64 { return l.GetToken() }

// replica is one lock-service replica, assembled as a process that serves
// it would be (and as locktest.StartReplica does for tests):
// lockservice.Server on a ZooKeeper session of its own, served by
// rpc.NewServer on a loopback port and registered in the registry as
// instance id.
type replica struct {
	id     string
	conn   *zkconn.Conn
	server *lockservice.Server
	stop   func() error // stops serving (deregistering), closes the server, then the session
}

// drainMargin is how long the replica's Shutdown waits, once ZooKeeper
// shows it gone, for clients to hear: the only client is the benchmark's,
// closed before it.
const drainMargin = 50 * time.Millisecond

func startReplica(ctx, setup context.Context, cfg Config, reg *registry.Client, id string) (_ *replica, err error) {
	conn, err := zkconn.Dial(setup, cfg.ZK, cfg.SessionTimeout, cfg.Logger)
	if err != nil {
		return nil, dialError(setup, cfg, err)
	}
	scfg := lockservice.DefaultConfig(id)
	scfg.Logger = cfg.Logger
	srv, err := lockservice.New(conn, scfg)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lockbench: replica: %w", err), conn.Close())
	}
	closeServer := func() error { return errors.Join(srv.Close(), conn.Close()) }
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lockbench: replica: %w", err), closeServer())
	}
	rs := srv.RPCServer(reg, rpc.WithDrainMargin(drainMargin))
	// The server lives until stop, not until ctx ends: its drain must
	// run even when the run is cancelled.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	var serveErr error
	served := make(chan struct{})
	go func() { defer close(served); serveErr = rs.Serve(serveCtx, lis) }()
	r := &replica{id: id, conn: conn, server: srv, stop: func() error {
		stopServing()
		<-served
		if serveErr != nil {
			serveErr = fmt.Errorf("lockbench: replica: %w", serveErr)
		}
		return errors.Join(serveErr, closeServer())
	}}
	select {
	case <-rs.Ready():
		return r, nil
	case <-served:
		return nil, errors.Join(fmt.Errorf("lockbench: replica stopped before it registered: %w", serveErr), closeServer())
	case <-setup.Done():
		return nil, errors.Join(fmt.Errorf("lockbench: replica not registered within %v: %w", cfg.SetupTimeout, setup.Err()), r.stop())
	}
}

// checkAlone fails with ErrNotAlone when the registry lists an instance
// of the lock service other than id.
func checkAlone(ctx context.Context, reg *registry.Client, id string) error {
	service := lockservice.ServiceName
	w, err := reg.Watch(service)
	if err != nil {
		return fmt.Errorf("lockbench: watching %s: %w", service, err)
	}
	defer w.Close()
	snap, err := w.Next(ctx)
	if err != nil {
		return fmt.Errorf("lockbench: reading %s from the registry: %w", service, err)
	}
	var others []string
	for _, inst := range snap.Instances {
		if inst.GetId() != id {
			others = append(others, inst.GetId()+" at "+inst.GetAddress())
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("%w: %s also has %s; use a ZooKeeper of the benchmark's own", ErrNotAlone, service, strings.Join(others, ", "))
	}
	return nil
}
