// Package locktest runs lock-service replicas for tests, and holds the
// conformance suite every transport of the lock service must pass (Run).
package locktest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// Service is the lock service's name in the registry.
var Service = lockservice.ServiceName

// Replica is a lock-service replica serving gRPC on a loopback port,
// registered in the registry, whose ZooKeeper session runs through a
// proxy so that a test can cut it off as a crash would.
type Replica struct {
	ID     string
	Server *lockservice.Server
	Conn   *zkconn.Conn
	Proxy  *zktest.Proxy

	stop   context.CancelFunc
	served chan error
	rpc    *rpc.Server
}

// StartReplica starts replica id against the ZooKeeper at zkAddr (one
// server's host:port) with the given session timeout, registered through
// reg, with its config changed by configure. It is stopped, and its
// session closed, when tb ends.
func StartReplica(tb testing.TB, reg *registry.Client, zkAddr, id string, session time.Duration, configure ...func(*lockservice.Config)) *Replica {
	tb.Helper()
	r := &Replica{ID: id, Proxy: zktest.NewProxy(tb, zkAddr), served: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := zkconn.Dial(ctx, r.Proxy.Addr(), session, zktest.Logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	r.Conn = conn
	cfg := lockservice.DefaultConfig(id)
	cfg.Logger = zktest.Logger(tb)
	for _, c := range configure {
		c(&cfg)
	}
	r.Server, err = lockservice.New(conn, cfg)
	if err != nil {
		conn.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		r.Proxy.Heal()
		r.Kill()
		r.Server.Close()
		r.Conn.Close()
	})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r.rpc = r.Server.RPCServer(reg, rpc.WithMetrics(nil), rpc.WithDrainMargin(50*time.Millisecond))
	sctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	go func() { r.served <- r.rpc.Serve(sctx, lis) }()
	select {
	case <-r.rpc.Ready():
	case err := <-r.served:
		tb.Fatalf("replica %s: %v", id, err)
	case <-ctx.Done():
		tb.Fatalf("replica %s did not become ready", id)
	}
	return r
}

// Kill stops the replica's gRPC server at once, calls in flight and all,
// as a crash would; its ZooKeeper session lives on until Cut or cleanup.
func (r *Replica) Kill() {
	r.rpc.GRPC().Stop()
	r.stop()
	select {
	case <-r.served:
	case <-time.After(30 * time.Second):
	}
	r.served <- nil // later Kills return at once
}

// Client returns a lock client through the registry (p2c with instance
// affinity) with the given options.
func Client(tb testing.TB, reg *registry.Client, opts ...lockclient.Option) *lockclient.Client {
	tb.Helper()
	return lockclient.New(Transport(tb, reg), append([]lockclient.Option{lockclient.WithLogger(zktest.Logger(tb))}, opts...)...)
}

// Transport returns the gRPC transport through the registry.
func Transport(tb testing.TB, reg *registry.Client) lockclient.Transport {
	tb.Helper()
	conn, err := rpc.NewClient(reg, Service, rpc.WithClientLogger(zktest.Logger(tb)), rpc.WithClientMetrics(nil))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return lockclient.GRPC(conn)
}
