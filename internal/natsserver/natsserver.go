// Package natsserver runs embedded, in-process NATS servers with JetStream
// on the loopback interface: one server for tests and `yard up`, or a
// cluster of servers joined by routes whose members can be stopped and
// started again for failover tests.
//
// Every server has its own JetStream store directory and does not install
// signal handlers (the process that embeds it owns its signals). Close
// shuts a server down and waits until it has.
package natsserver

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchyard-dev/switchyard/internal/freeport"
)

// Config says what to start. The zero value is one server with JetStream,
// on a free port, with its store in a new temporary directory.
type Config struct {
	// Dir is the JetStream store directory (a cluster puts one
	// subdirectory per node in it). Empty: a new temporary directory,
	// removed by Close. A Dir given here is left in place.
	Dir string
	// Port is the client port; 0 picks a free one. A cluster takes ports
	// Port, Port+1, ... when Port is set.
	Port int
	// NoJetStream starts core NATS only.
	NoJetStream bool
	// ReadyTimeout bounds the wait for servers to accept clients (and, in
	// a cluster, to form routes and elect a JetStream meta leader).
	// Default 30s.
	ReadyTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	return c
}

// Server is one running embedded server.
type Server struct {
	srv     *server.Server
	dir     string
	ownsDir bool
	once    sync.Once
}

// Start starts one server and returns once it accepts clients.
func Start(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	dir, owns, err := storeDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	port := cfg.Port
	if port == 0 {
		port = -1 // the server picks a free port
	}
	opts := options("switchyard", port, dir, cfg)
	srv, err := run(opts, cfg.ReadyTimeout)
	if err != nil {
		if owns {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	return &Server{srv: srv, dir: dir, ownsDir: owns}, nil
}

func storeDir(dir string) (string, bool, error) {
	if dir != "" {
		return dir, false, nil
	}
	dir, err := os.MkdirTemp("", "switchyard-nats-")
	if err != nil {
		return "", false, fmt.Errorf("natsserver: %w", err)
	}
	return dir, true, nil
}

func options(name string, port int, storeDir string, cfg Config) *server.Options {
	return &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  !cfg.NoJetStream,
		StoreDir:   storeDir,
		NoLog:      true,
		NoSigs:     true,
	}
}

// run starts a server from opts and waits until it accepts clients.
func run(opts *server.Options, timeout time.Duration) (*server.Server, error) {
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("natsserver: %s not ready for connections within %v", opts.ServerName, timeout)
	}
	return srv, nil
}

// ClientURL returns the URL clients connect to (nats://127.0.0.1:port).
func (s *Server) ClientURL() string { return s.srv.ClientURL() }

// Server returns the embedded server, for monitoring and for tests that
// need its internals.
func (s *Server) Server() *server.Server { return s.srv }

// Close shuts the server down, waits until it has stopped, and removes the
// store directory if Start created it. It is safe to call more than once.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		if s.ownsDir {
			if rerr := os.RemoveAll(s.dir); rerr != nil {
				err = fmt.Errorf("natsserver: %w", rerr)
			}
		}
	})
	return err
}

// Cluster is a set of embedded servers joined by routes into one NATS
// cluster, with a clustered JetStream unless Config.NoJetStream. Its
// methods are safe for concurrent use; node indexes are 0-based.
type Cluster struct {
	cfg     Config
	dir     string
	ownsDir bool

	mu     sync.Mutex
	nodes  []*node
	closed bool
}

type node struct {
	name                    string
	clientPort, clusterPort int
	srv                     *server.Server // nil while stopped
}

// StartCluster starts n servers joined by routes and returns once every
// one accepts clients, all routes are up and, with JetStream, a meta
// leader is elected and every node is current.
func StartCluster(n int, cfg Config) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("natsserver: cluster of %d nodes", n)
	}
	cfg = cfg.withDefaults()
	dir, owns, err := storeDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, dir: dir, ownsDir: owns}
	ports, err := freeport.Get(2 * n)
	if err != nil {
		c.Close()
		return nil, err
	}
	for i := range n {
		nd := &node{name: "n" + strconv.Itoa(i+1), clientPort: ports[2*i], clusterPort: ports[2*i+1]}
		if cfg.Port != 0 {
			nd.clientPort = cfg.Port + i
		}
		c.nodes = append(c.nodes, nd)
	}
	// The servers start concurrently: a clustered JetStream waits for its
	// peers before it reports ready.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { errs[i] = c.StartServer(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.WaitReady(cfg.ReadyTimeout); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) routes(self int) []*url.URL {
	var out []*url.URL
	for i, nd := range c.nodes {
		if i != self {
			out = append(out, &url.URL{Scheme: "nats", Host: "127.0.0.1:" + strconv.Itoa(nd.clusterPort)})
		}
	}
	return out
}

// StartServer starts node i (again), on its ports and store, and waits
// until it accepts clients.
func (c *Cluster) StartServer(i int) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("natsserver: cluster is closed")
	}
	nd := c.nodes[i]
	if nd.srv != nil {
		c.mu.Unlock()
		return fmt.Errorf("natsserver: node %s is running", nd.name)
	}
	opts := options(nd.name, nd.clientPort, c.dir+"/"+nd.name, c.cfg)
	opts.Cluster = server.ClusterOpts{Name: "switchyard", Host: "127.0.0.1", Port: nd.clusterPort}
	opts.Routes = c.routes(i)
	c.mu.Unlock()

	srv, err := run(opts, c.cfg.ReadyTimeout)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		srv.Shutdown()
		srv.WaitForShutdown()
		return errors.New("natsserver: cluster is closed")
	}
	nd.srv = srv
	return nil
}

// StopServer shuts node i down and waits until it has stopped. Its store
// is kept for StartServer. Stopping a stopped node does nothing.
func (c *Cluster) StopServer(i int) {
	c.mu.Lock()
	srv := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Server returns node i's embedded server, or nil while it is stopped.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// Size returns the number of nodes.
func (c *Cluster) Size() int { return len(c.nodes) }

// URLs returns every node's client URL, running or not.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = "nats://127.0.0.1:" + strconv.Itoa(nd.clientPort)
	}
	return out
}

// ClientURL returns all client URLs joined by commas, as nats.Connect
// takes them.
func (c *Cluster) ClientURL() string { return strings.Join(c.URLs(), ",") }

// WaitReady waits until every running node routes to every other running
// node and, with JetStream, one of them is meta leader, all are current,
// and the leader sees every one as a peer streams can be placed on.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if c.ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natsserver: cluster not ready within %v", timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (c *Cluster) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	var running []*server.Server
	for _, nd := range c.nodes {
		if nd.srv != nil {
			running = append(running, nd.srv)
		}
	}
	leaders := 0
	for _, s := range running {
		if s.NumRoutes() < len(running)-1 {
			return false
		}
		if c.cfg.NoJetStream {
			continue
		}
		if s.JetStreamIsLeader() {
			leaders++
			// Streams are placed only on peers the leader sees online
			// with current stats; until then an R3 create fails with
			// "no suitable peers for placement".
			if len(s.JetStreamClusterPeers()) < len(running) {
				return false
			}
		}
		if !s.JetStreamIsCurrent() {
			return false
		}
	}
	return c.cfg.NoJetStream || leaders == 1
}

// Close shuts every node down, waits for all of them, and removes the
// store directory if StartCluster created it. It is safe to call more
// than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var srvs []*server.Server
	for _, nd := range c.nodes {
		if nd.srv != nil {
			srvs = append(srvs, nd.srv)
			nd.srv = nil
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range srvs {
		wg.Go(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
	}
	wg.Wait()
	if c.ownsDir {
		if err := os.RemoveAll(c.dir); err != nil {
			return fmt.Errorf("natsserver: %w", err)
		}
	}
	return nil
}
