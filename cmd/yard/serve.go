package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
	"github.com/switchyard-dev/switchyard/lockservice/lockqueue"
	"github.com/switchyard-dev/switchyard/mq"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a Switchyard service until Ctrl-C",
		Long: `serve runs one replica of a Switchyard service in the foreground: it
serves gRPC, registers in the registry in ZooKeeper once it answers, and
on Ctrl-C or SIGTERM drains and stops.

  yard serve lock   a replica of the lock service`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newServeLockCmd())
	return cmd
}

// serveLockFlags are the flags of `yard serve lock`.
type serveLockFlags struct {
	zk        string
	listen    string
	id        string
	advertise string
	metrics   string
	nats      string
	events    string
	queue     bool
	session   time.Duration
	timeout   time.Duration
}

// check validates the flags and returns the connect string. It touches no
// network.
func (f *serveLockFlags) check(cmd *cobra.Command) (string, error) {
	addrs, err := zkAddrs(f.zk, cmd.Flags().Changed("zk"))
	if err != nil {
		return "", err
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return "", fmt.Errorf("--listen %q: want host:port: %w", f.listen, err)
	}
	if f.nats != "" {
		if err := checkNATSURL(f.nats); err != nil {
			return "", err
		}
	}
	if f.queue && f.nats == "" {
		return "", errors.New("--queue takes queued acquires from NATS JetStream: give --nats too")
	}
	switch f.events {
	case "json", "protobuf", "off":
	default:
		return "", fmt.Errorf("--events %q: want json, protobuf or off", f.events)
	}
	if f.metrics != "" {
		if _, _, err := net.SplitHostPort(f.metrics); err != nil {
			return "", fmt.Errorf("--metrics %q: want host:port: %w", f.metrics, err)
		}
	}
	if f.advertise != "" {
		host, _, err := net.SplitHostPort(f.advertise)
		if err != nil {
			return "", fmt.Errorf("--advertise %q: want host:port: %w", f.advertise, err)
		}
		if host == "" {
			return "", fmt.Errorf("--advertise %q: missing host", f.advertise)
		}
	}
	if f.id != "" {
		if err := registry.ValidateName(f.id); err != nil {
			return "", fmt.Errorf("--id: %w", err)
		}
	}
	if f.session < time.Second {
		return "", fmt.Errorf("--session %v: want 1s or more", f.session)
	}
	if f.timeout <= 0 {
		return "", fmt.Errorf("--timeout %v: want a positive duration", f.timeout)
	}
	return strings.Join(addrs, ","), nil
}

func newServeLockCmd() *cobra.Command {
	var f serveLockFlags
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Run a lock-service replica until Ctrl-C",
		Long: `lock runs one replica of the lock service (` + lockServiceName + `):
its locks live in a ZooKeeper session of its own (--session), and it
serves gRPC on --listen and registers there, in the registry, as instance
--id (default: the advertised address, --advertise or else the listening
one). Run several, with distinct ids, for a service that outlives one.
It prints one line once it serves and is registered, and logs to stderr.

With --nats it also serves the NATS front door (package lockmq: the
micro service switchyard-lock, ` + "`nats micro info switchyard-lock`" + `), and
stands in the election of the one replica that publishes every lock event
on switchyard.lock.v1.events.<name> (--events: json, protobuf or off).
With --queue it also takes queued acquires from the JetStream work queue
` + "SWITCHYARD_LOCK_QUEUE" + ` (package lockqueue) and answers each requester's
Switchyard-Reply-To subject when granted.

A lease lives on the replica that granted it, and its validity never
outlasts that replica's ZooKeeper session timeout: the --session asked for,
or what the servers granted instead (printed).

On Ctrl-C or SIGTERM it stops in this order:

  1. drain: health NOT_SERVING, deregister, wait until the registry shows
     it gone, then until calls in flight end, for at most 30s. An acquire
     waiting in line here may still be granted meanwhile, and its holder
     then loses the lock when it cannot renew; one still waiting after
     30s is cut off, and its client retries on another replica
  2. wait until every lease it granted has run out or been released: its
     holders cannot renew here any more and see their locks lost first.
     This takes up to the longest validity granted, at most the session
     timeout, and a second signal does not cut it short
  3. close its ZooKeeper sessions, which removes its lock nodes

and then exits 0.`,
		Example: `  yard serve lock --listen 127.0.0.1:7070
  yard serve lock --zk 127.0.0.1:2181 --listen 0.0.0.0:7070 --advertise lock-1.internal:7070 --id lock-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			connect, err := f.check(cmd)
			if err != nil {
				return err
			}
			return serveLock(cmd, &f, connect)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.zk, "zk", "", "ZooKeeper connect string host:port[,host:port...] (default $"+zkEnv+")")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:0", "address to serve gRPC on (port 0: a free port)")
	fl.StringVar(&f.id, "id", "", "instance id in the registry, named in every lease (default: the advertised address)")
	fl.StringVar(&f.advertise, "advertise", "", "address clients are told to dial (default: the listening address)")
	fl.StringVar(&f.nats, "nats", "", "also serve the NATS front door (micro service switchyard-lock) on the NATS server at this URL")
	fl.StringVar(&f.events, "events", "json", "with --nats, publish lock events on switchyard.lock.v1.events.<name>: json, protobuf or off")
	fl.BoolVar(&f.queue, "queue", false, "with --nats, also take queued acquires from the JetStream work queue (lockqueue)")
	fl.StringVar(&f.metrics, "metrics", "", "address to serve Prometheus /metrics on, host:port (default: none)")
	fl.DurationVar(&f.session, "session", 10*time.Second, "ZooKeeper session timeout to ask for; bounds lease validity")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for ZooKeeper sessions at start")
	return cmd
}

// serveLock runs the replica until cmd's context ends, then stops it in
// the order the help gives.
func serveLock(cmd *cobra.Command, f *serveLockFlags, connect string) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))

	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("serve lock: --listen: %w", err)
	}
	defer lis.Close() // gRPC closes it when it stops; this covers the failures before
	addr := f.advertise
	if addr == "" {
		addr = lis.Addr().String()
	}
	id := f.id
	if id == "" {
		id = addr
	}

	start, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	conn, err := zkconn.Dial(start, connect, f.session, log)
	if err != nil {
		return startError(ctx, "serve lock: locks' ZooKeeper session", connect, f.timeout, err)
	}
	defer conn.Close()
	reg, err := registry.Dial(start, connect, registry.WithLogger(log), registry.WithSessionTimeout(f.session))
	if err != nil {
		return startError(ctx, "serve lock: registry", connect, f.timeout, err)
	}
	defer reg.Close()

	// One registry for the gRPC, lock and process metrics, served on
	// --metrics until the very end (through the wait for leases to end).
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metricsAddr, stopMetrics, err := serveMetrics(f.metrics, metrics, log)
	if err != nil {
		return fmt.Errorf("serve lock: %w", err)
	}
	defer stopMetrics()

	cfg := lockservice.DefaultConfig(id)
	cfg.Logger = log
	cfg.Metrics = metrics
	srv, err := lockservice.New(conn, cfg)
	if err != nil {
		return fmt.Errorf("serve lock: %w", err)
	}
	opts := []rpc.ServerOption{rpc.WithMetrics(metrics)}
	if f.advertise != "" {
		opts = append(opts, rpc.WithAdvertiseAddress(f.advertise))
	}
	rs := srv.RPCServer(reg, opts...)

	var (
		door   *lockmq.Door
		worker *lockqueue.Worker
	)
	if f.nats != "" {
		nc, err := mq.Connect(start, f.nats, mq.WithName("yard serve lock "+id), mq.WithLogger(log))
		if err != nil {
			if ctx.Err() != nil {
				return srv.Close()
			}
			return errors.Join(fmt.Errorf("serve lock: no NATS connection to %s within --timeout %v: %w", f.nats, f.timeout, err), srv.Close())
		}
		defer nc.Close()
		dopts := []lockmq.Option{lockmq.WithLogger(log)}
		switch f.events {
		case "json":
			dopts = append(dopts, lockmq.WithEvents(mq.ContentTypeJSON))
		case "protobuf":
			dopts = append(dopts, lockmq.WithEvents(mq.ContentTypeProtobuf))
		}
		if door, err = lockmq.Serve(nc.NATS(), srv, dopts...); err != nil {
			return errors.Join(fmt.Errorf("serve lock: %w", err), srv.Close())
		}
		if f.queue {
			js, err := nc.JetStream()
			if err == nil {
				worker, err = lockqueue.Start(start, js, srv, lockqueue.Config{Logger: log, Metrics: metrics})
			}
			if err != nil {
				return errors.Join(fmt.Errorf("serve lock: --queue: %w", err), door.Close(), srv.Close())
			}
		}
	}

	served := make(chan error, 1)
	go func() { served <- rs.Serve(ctx, lis) }()
	var serveErr error
	select {
	case <-rs.Ready():
		fmt.Fprintf(out, "serving %s as replica %s on %s (ZooKeeper %s, session %v); Ctrl-C or SIGTERM drains and stops\n",
			lockServiceName, id, addr, connect, conn.SessionTimeout())
		if door != nil {
			fmt.Fprintf(out, "NATS front door on %s (micro service %s, events %s)\n", f.nats, lockmq.ServiceName, f.events)
		}
		if worker != nil {
			fmt.Fprintf(out, "taking queued acquires from JetStream stream %s\n", lockqueue.QueueStream)
		}
		if metricsAddr != "" {
			fmt.Fprintf(out, "metrics on http://%s/metrics\n", metricsAddr)
		}
		serveErr = <-served
	case serveErr = <-served: // failed to start, or stopped while starting
	}
	if ctx.Err() != nil {
		fmt.Fprintln(out, "drained; waiting for the leases granted here to run out")
	}

	// Close returns once every lease has ended; only then do the nodes go.
	var errs []error
	if serveErr != nil {
		errs = append(errs, serveErr)
	}
	if worker != nil {
		if err := worker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the queue worker: %w", err))
		}
	}
	if door != nil {
		if err := door.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the NATS front door: %w", err))
		}
	}
	if err := srv.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the lock service: %w", err))
	}
	if err := conn.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the locks' ZooKeeper session: %w", err))
	}
	if err := reg.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the registry: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("serve lock: %w", err)
	}
	fmt.Fprintln(out, "stopped")
	return nil
}

// startError explains a ZooKeeper session that could not be had at start;
// a Ctrl-C during the start is no failure.
func startError(ctx context.Context, what, connect string, timeout time.Duration, err error) error {
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: no ZooKeeper session with %s within --timeout %v: %w", what, connect, timeout, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// serveMetrics serves reg's metrics at /metrics on addr ("" serves
// nothing) until stop, which waits for the HTTP server to end. It
// returns the address it listens on.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (string, func(), error) {
	if addr == "" {
		return "", func() {}, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("--metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve lock: metrics server stopped", "err", err)
		}
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}
	return lis.Addr().String(), stop, nil
}
