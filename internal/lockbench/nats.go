package lockbench

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/internal/natsserver"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
)

// startNATS starts the NATS side on the gRPC side's replica: its NATS
// front door (lockmq.Serve) on a connection of its own, and one client
// connection carrying lockmq.Transport, to cfg.NATS or, when that is
// empty, to a NATS server embedded here for the run. It proves the path
// with one cycle.
func startNATS(setup context.Context, cfg Config, run string, gs *serviceSide) (_ *serviceSide, err error) {
	var stops benchrun.Stops
	defer func() {
		if err != nil {
			err = errors.Join(err, stops.Close())
		}
	}()
	url := cfg.NATS
	if url == "" {
		srv, err := natsserver.Start(natsserver.Config{})
		if err != nil {
			return nil, fmt.Errorf("lockbench: %s: embedded NATS: %w", SideNATS, err)
		}
		stops.Add(srv.Close)
		url = srv.ClientURL()
	}
	connect := func(name string) (*nats.Conn, error) {
		nc, err := nats.Connect(url, nats.Name("lockbench-"+name), nats.Timeout(cfg.SetupTimeout))
		if err != nil {
			return nil, fmt.Errorf("lockbench: %s: NATS %s: %w", SideNATS, url, err)
		}
		stops.Add(func() error { nc.Close(); return nil })
		return nc, nil
	}
	doorConn, err := connect("door")
	if err != nil {
		return nil, err
	}
	door, err := lockmq.Serve(doorConn, gs.replica.server, lockmq.WithLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("lockbench: %s: %w", SideNATS, err)
	}
	stops.Add(door.Close)
	clientConn, err := connect("client")
	if err != nil {
		return nil, err
	}
	s := &serviceSide{
		side:    SideNATS,
		nc:      clientConn,
		replica: gs.replica,
		t:       lockmq.Transport(clientConn),
		prefix:  "lockbench-" + run + "-nats/",
		ttl:     durationpb.New(cfg.TTL),
		stop:    stops.Close,
	}
	if err := s.cycle(1, 0)(setup); err != nil {
		return nil, fmt.Errorf("lockbench: %s: first cycle: %w", SideNATS, err)
	}
	return s, nil
}
