package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/internal/devstack"
	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// Config says what stack a run uses.
type Config struct {
	// ZK is the connect string of a running ZooKeeper; empty starts one
	// (a child process of the installed package, as `yard up` does).
	ZK string
	// NATS is the URL of a running NATS server with JetStream; empty
	// embeds one in this process.
	NATS string
	// Replicas is how many lock-service replicas to run (default 2).
	Replicas int
	// SessionTimeout is the replicas' ZooKeeper session timeout, which
	// bounds their leases (default 10s).
	SessionTimeout time.Duration
	// SetupTimeout bounds Start's two steps — starting (or checking)
	// ZooKeeper and NATS, then the rest — each (default 60s: a cold JVM
	// on a busy machine).
	SetupTimeout time.Duration
	// Logger gets the stack's warnings (default slog.Default()). Expected
	// refusals — the RPC limiter's, the point of the demo — are counted,
	// not logged: see Env.Quiet.
	Logger *slog.Logger
	// Status, if set, is told each setup step as it starts ("starting
	// ZooKeeper and NATS").
	Status func(string)
}

// Env is the stack scenarios run on. Its fields are set by Start and must
// not be changed; everything in it is closed by Close. Scenarios start
// their own servers, workers and streams on it, and stop them before Run
// returns.
type Env struct {
	// ZK and NATS are the addresses in use (started here or given).
	ZK, NATS string
	// RunID is unique to this run: use it in stream, subject, lock and
	// instance names so that runs against a shared stack never meet.
	RunID string
	// Registry is a registry client on ZK.
	Registry *registry.Client
	// NATSConn is the producers' NATS connection; JetStream is on it.
	NATSConn  *nats.Conn
	JetStream jetstream.JetStream
	// Locks takes locks over gRPC through the registry (any replica);
	// LocksNATS over NATS, through the replicas' NATS front doors.
	Locks, LocksNATS *lockclient.Client
	// Replicas are the ids of the lock-service replicas started here.
	Replicas []string
	// Logger gets warnings.
	Logger *slog.Logger

	stack   *devstack.Stack
	closers benchrun.Stops
}

// Start brings the stack up: ZooKeeper and NATS (started unless cfg names
// them), a registry client, the lock-service replicas, each serving gRPC
// on a loopback port (registered) and its NATS front door, and lock
// clients over both transports, each proven by one lock and unlock. On
// error nothing started is left running.
func Start(ctx context.Context, cfg Config) (_ *Env, err error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 2
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.SetupTimeout == 0 {
		cfg.SetupTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Replicas < 1 || cfg.SessionTimeout < time.Second || cfg.SetupTimeout <= 0 {
		return nil, fmt.Errorf("demo: %d replicas, session %v, setup timeout %v: want 1 or more, 1s or more, and a positive timeout",
			cfg.Replicas, cfg.SessionTimeout, cfg.SetupTimeout)
	}
	status := cfg.Status
	if status == nil {
		status = func(string) {}
	}
	e := &Env{RunID: runID(), Logger: cfg.Logger}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.Close())
		}
	}()
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, cfg.SetupTimeout) }

	switch {
	case cfg.ZK == "" && cfg.NATS == "":
		status("starting ZooKeeper and NATS")
	case cfg.ZK == "":
		status("starting ZooKeeper")
	case cfg.NATS == "":
		status("starting NATS")
	}
	sctx, cancel := step()
	e.stack, err = devstack.Start(sctx, devstack.Config{ZK: cfg.ZK, NATS: cfg.NATS})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	e.ZK, e.NATS = e.stack.ZK, e.stack.NATS
	e.closers.Add(e.stack.Close)

	sctx, cancel = step()
	defer cancel()
	e.Registry, err = registry.Dial(sctx, e.ZK, registry.WithLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("demo: registry: %w", err)
	}
	e.closers.Add(e.Registry.Close)
	if e.NATSConn, err = e.DialNATS("producers"); err != nil {
		return nil, err
	}
	nc := e.NATSConn
	e.closers.Add(func() error { nc.Close(); return nil })
	if e.JetStream, err = jetstream.New(nc); err != nil {
		return nil, fmt.Errorf("demo: JetStream: %w", err)
	}

	status(fmt.Sprintf("starting %d lock-service replicas", cfg.Replicas))
	for i := range cfg.Replicas {
		id := fmt.Sprintf("demo-%s-%d", e.RunID, i+1)
		stop, err := e.startReplica(sctx, cfg, id)
		if err != nil {
			return nil, err
		}
		e.closers.Add(stop)
		e.Replicas = append(e.Replicas, id)
	}

	conn, err := rpc.NewClient(e.Registry, lockservice.ServiceName, rpc.WithClientMetrics(nil), rpc.WithClientLogger(e.Quiet()))
	if err != nil {
		return nil, fmt.Errorf("demo: lock client: %w", err)
	}
	e.closers.Add(conn.Close)
	opts := []lockclient.Option{lockclient.WithLogger(cfg.Logger), lockclient.WithOwner("yard-demo-" + e.RunID)}
	e.Locks = lockclient.New(lockclient.GRPC(conn), opts...)
	lnc, err := e.DialNATS("locks")
	if err != nil {
		return nil, err
	}
	e.closers.Add(func() error { lnc.Close(); return nil })
	e.LocksNATS = lockclient.New(lockmq.Transport(lnc), opts...)
	// One lock and unlock over each: the first waits for the registry's
	// news to reach the client's resolver (lockclient retries UNAVAILABLE).
	for _, c := range []*lockclient.Client{e.Locks, e.LocksNATS} {
		l, err := c.Lock(sctx, "demo/"+e.RunID+"/warm-up")
		if err != nil {
			return nil, fmt.Errorf("demo: the lock service does not answer: %w", err)
		}
		if err := l.Unlock(sctx); err != nil {
			return nil, fmt.Errorf("demo: the lock service does not answer: %w", err)
		}
	}
	return e, nil
}

// startReplica runs one lock-service replica as `yard serve lock` would:
// lockservice.Server on a ZooKeeper session of its own, its gRPC front
// door (registered) on a loopback port and its NATS front door on a NATS
// connection of its own. stop undoes it all, in order.
func (e *Env) startReplica(ctx context.Context, cfg Config, id string) (stop func() error, err error) {
	conn, err := zkconn.Dial(ctx, e.ZK, cfg.SessionTimeout, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("demo: replica %s: %w", id, err)
	}
	scfg := lockservice.DefaultConfig(id)
	scfg.Logger = cfg.Logger
	srv, err := lockservice.New(conn, scfg)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("demo: replica %s: %w", id, err), conn.Close())
	}
	var stops benchrun.Stops
	stops.Add(conn.Close)
	stops.Add(srv.Close)
	defer func() {
		if err != nil {
			err = errors.Join(err, stops.Close())
		}
	}()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: replica %s: %w", id, err)
	}
	// The server lives until stop, not until ctx (a setup step's) ends.
	rs, err := startServer(ctx, srv.RPCServer(e.Registry, rpc.WithDrainMargin(50*time.Millisecond), rpc.WithMetrics(nil)), lis)
	if err != nil {
		return nil, fmt.Errorf("demo: replica %s: %w", id, err)
	}
	stops.Add(func() error {
		if err := rs.shutdown(); err != nil {
			return fmt.Errorf("demo: replica %s: %w", id, err)
		}
		return nil
	})

	nc, err := e.DialNATS("lock-replica-" + id)
	if err != nil {
		return nil, err
	}
	stops.Add(func() error { nc.Close(); return nil })
	door, err := lockmq.Serve(nc, srv, lockmq.WithLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("demo: replica %s: NATS front door: %w", id, err)
	}
	stops.Add(door.Close)
	return stops.Close, nil
}

// DialNATS opens a NATS connection named "yard-demo-<name>" to the run's
// server. The caller closes it (before Env.Close, which stops an
// embedded server). It reconnects for a minute at most, so a connection
// whose server is gone fails rather than hangs.
func (e *Env) DialNATS(name string) (*nats.Conn, error) {
	nc, err := nats.Connect(e.NATS, nats.Name("yard-demo-"+name), nats.Timeout(10*time.Second),
		nats.MaxReconnects(120), nats.ReconnectWait(500*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("demo: NATS %s: %w", e.NATS, err)
	}
	return nc, nil
}

// Name returns a name unique to this run for a stream, subject token,
// lock prefix or instance: the run id and parts joined by "-", with
// characters NATS or ZooKeeper names cannot take replaced.
func (e *Env) Name(parts ...string) string {
	s := strings.Join(append([]string{e.RunID}, parts...), "-")
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// Quiet returns the logger for servers and clients whose expected
// refusals would drown the output: only errors pass.
func (e *Env) Quiet() *slog.Logger {
	return slog.New(minLevel{e.Logger.Handler(), slog.LevelError})
}

// Close stops everything Start started, last first, and waits for it.
// It is safe to call more than once.
func (e *Env) Close() error {
	return e.closers.Close()
}

func runID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// minLevel passes records at level min or above to h.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.h.WithAttrs(a), m.min}
}
func (m minLevel) WithGroup(name string) slog.Handler { return minLevel{m.h.WithGroup(name), m.min} }
