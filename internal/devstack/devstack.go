// Package devstack starts what a Switchyard process needs around it for
// development, demos and benchmarks: ZooKeeper and NATS. Each is either
// started here — ZooKeeper as child processes of the installed package,
// NATS embedded in this process — or named by address and only checked.
// Close stops exactly what Start started and removes its state directory,
// so `yard up`, `yard bench` and `yard demo` leave nothing behind.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/nats-io/nats.go"

	"github.com/switchyard-dev/switchyard/internal/natsserver"
	"github.com/switchyard-dev/switchyard/internal/zkserver"
)

// Config says what to start and what to use as it is.
type Config struct {
	// ZK is the connect string (host:port,...) of a running ZooKeeper to
	// use. Empty: start one.
	ZK string
	// ZKServers is how many ZooKeeper servers to start when ZK is empty:
	// 1 (the default) for a standalone server, 3 or 5 for an ensemble.
	ZKServers int
	// ZKPort fixes the client port of the first started ZooKeeper server.
	ZKPort int
	// NATS is the URL of a running NATS server to use. Empty: embed one,
	// with JetStream.
	NATS string
	// NATSPort fixes the client port of the embedded NATS server.
	NATSPort int
}

// Stack is a started (or found) ZooKeeper and NATS.
type Stack struct {
	// ZK is the ZooKeeper connect string.
	ZK string
	// NATS is the NATS URL.
	NATS string

	dir  string
	zk   *zkserver.Ensemble
	nats *natsserver.Server
}

// Start brings the stack up: it starts what cfg does not name and checks
// that what it names answers. On error nothing started is left running.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.ZK != "" && (cfg.ZKServers > 1 || cfg.ZKPort != 0) {
		return nil, errors.New("devstack: a ZooKeeper address and a ZooKeeper to start are both given")
	}
	if cfg.NATS != "" && cfg.NATSPort != 0 {
		return nil, errors.New("devstack: a NATS URL and a NATS port to embed on are both given")
	}
	s := &Stack{ZK: cfg.ZK, NATS: cfg.NATS}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.dir, err = os.MkdirTemp("", "switchyard-stack-")
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if s.ZK == "" {
		zcfg := zkserver.Config{Servers: cfg.ZKServers, Dir: s.dir + "/zk"}
		if cfg.ZKPort != 0 {
			zcfg.ClientPorts = []int{cfg.ZKPort}
		}
		if s.zk, err = zkserver.Start(ctx, zcfg); err != nil {
			return nil, err
		}
		s.ZK = s.zk.ConnectString()
	} else if err := checkZK(ctx, s.ZK); err != nil {
		return nil, err
	}
	if s.NATS == "" {
		if s.nats, err = natsserver.Start(natsserver.Config{Dir: s.dir + "/nats", Port: cfg.NATSPort}); err != nil {
			return nil, err
		}
		s.NATS = s.nats.ClientURL()
	} else if err := checkNATS(s.NATS); err != nil {
		return nil, err
	}
	return s, nil
}

// checkZK opens a session with the ZooKeeper at connect and closes it.
func checkZK(ctx context.Context, connect string) error {
	conn, events, err := zk.Connect(strings.Split(connect, ","), 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		return fmt.Errorf("devstack: ZooKeeper %s: %w", connect, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("devstack: no ZooKeeper session with %s: %w", connect, ctx.Err())
		}
	}
}

// checkNATS connects to the NATS server at url and closes the connection.
func checkNATS(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("devstack: NATS %s: %w", url, err)
	}
	nc.Close()
	return nil
}

// StartedZK returns the ZooKeeper servers Start started, or nil when the
// stack uses one it was given.
func (s *Stack) StartedZK() *zkserver.Ensemble { return s.zk }

// StartedNATS returns the embedded NATS server, or nil when the stack uses
// one it was given.
func (s *Stack) StartedNATS() *natsserver.Server { return s.nats }

// Dir returns the directory that holds the started servers' state.
func (s *Stack) Dir() string { return s.dir }

// Close stops what Start started, waits for it to stop, and removes the
// state directory. It is safe to call more than once.
func (s *Stack) Close() error {
	var errs []error
	if s.nats != nil {
		errs = append(errs, s.nats.Close())
	}
	if s.zk != nil {
		errs = append(errs, s.zk.Close())
	}
	if s.dir != "" {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}
