// Package natstest gives tests embedded NATS servers (through package
// natsserver) and client connections that close with the test.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchyard-dev/switchyard/internal/natsserver"
)

// Start starts one server with JetStream, its store under tb's temporary
// directory, and shuts it down when tb ends.
func Start(tb testing.TB) *natsserver.Server {
	tb.Helper()
	s, err := natsserver.Start(natsserver.Config{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("natstest: %v", err)
		}
	})
	return s
}

// StartCluster starts n servers joined into one cluster with a clustered
// JetStream and shuts them down when tb ends.
func StartCluster(tb testing.TB, n int) *natsserver.Cluster {
	tb.Helper()
	c, err := natsserver.StartCluster(n, natsserver.Config{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("natstest: %v", err)
		}
	})
	return c
}

// Connect connects to url ("nats://host:port", or several joined by commas)
// and closes the connection when tb ends. Reconnects are bounded so that a
// test whose server is gone fails instead of waiting forever.
func Connect(tb testing.TB, url string, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	base := []nats.Option{
		nats.Name(tb.Name()),
		nats.MaxReconnects(120),
		nats.ReconnectWait(250 * time.Millisecond),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		tb.Fatalf("natstest: connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
