package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
)

// Client is a connection to the registry in ZooKeeper. Registrations and
// watches made through one Client share its ZooKeeper session. It is safe
// for concurrent use.
type Client struct {
	conn    *zkconn.Conn
	connect string
	opts    options

	mu      sync.Mutex
	closed  bool
	regs    map[*Registration]struct{}
	watches map[string]*serviceWatch
}

type options struct {
	sessionTimeout time.Duration
	checkInterval  time.Duration
	relistInterval time.Duration
	coalesce       time.Duration
	protectRatio   float64
	holdFor        time.Duration
	log            *slog.Logger
}

// Option configures a Client.
type Option func(*options)

// WithSessionTimeout sets the ZooKeeper session timeout the Client asks
// for (default 10s). An instance that dies is gone from the registry about
// this long after.
func WithSessionTimeout(d time.Duration) Option { return func(o *options) { o.sessionTimeout = d } }

// WithCheckInterval sets how often a registration checks that its node
// exists with the right data, and repairs it (default 10s, jittered).
func WithCheckInterval(d time.Duration) Option { return func(o *options) { o.checkInterval = d } }

// WithRelistInterval sets how often a watch re-reads its service even
// without a watch event, as a guard against lost events (default 30s,
// jittered).
func WithRelistInterval(d time.Duration) Option { return func(o *options) { o.relistInterval = d } }

// WithCoalesce sets the shortest time between two reads of a service by a
// watch (default 2ms): a change after a quiet spell is read at once, a
// burst of changes costs one read per window.
func WithCoalesce(d time.Duration) Option { return func(o *options) { o.coalesce = d } }

// WithProtection sets the last-known-good protection: when instances vanish
// without deregistering and they are more than ratio of the last list (or
// all of it), watchers keep them for up to holdFor. ratio 1 turns the
// protection off for partial losses. Default 0.5 and 30s.
func WithProtection(ratio float64, holdFor time.Duration) Option {
	return func(o *options) { o.protectRatio, o.holdFor = ratio, holdFor }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Dial connects to the ZooKeeper servers in connect ("host:port,...") and
// returns once it has a session or ctx ends.
func Dial(ctx context.Context, connect string, opts ...Option) (*Client, error) {
	o := options{
		sessionTimeout: 10 * time.Second,
		checkInterval:  10 * time.Second,
		relistInterval: 30 * time.Second,
		coalesce:       2 * time.Millisecond,
		protectRatio:   0.5,
		holdFor:        30 * time.Second,
		log:            slog.Default(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.sessionTimeout <= 0 || o.checkInterval <= 0 || o.relistInterval <= 0 || o.coalesce < 0 || o.protectRatio < 0 || o.protectRatio > 1 || o.holdFor < 0 {
		return nil, errors.New("registry: an option is out of range")
	}
	conn, err := zkconn.Dial(ctx, connect, o.sessionTimeout, o.log)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Client{
		conn:    conn,
		connect: connect,
		opts:    o,
		regs:    map[*Registration]struct{}{},
		watches: map[string]*serviceWatch{},
	}, nil
}

// ConnectString returns the ZooKeeper servers the Client was dialled with.
func (c *Client) ConnectString() string { return c.connect }

// Close ends every registration and watch of the Client, waits for their
// goroutines, and closes the ZooKeeper session, which removes whatever
// ephemeral nodes remain. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.conn.Close()
	}
	c.closed = true
	regs := make([]*Registration, 0, len(c.regs))
	for r := range c.regs {
		regs = append(regs, r)
	}
	watches := make([]*serviceWatch, 0, len(c.watches))
	for _, w := range c.watches {
		watches = append(watches, w)
	}
	c.mu.Unlock()
	for _, r := range regs {
		r.halt()
	}
	for _, w := range watches {
		w.halt()
	}
	return c.conn.Close()
}

// ensureParents creates the persistent nodes above a service's instances.
func (c *Client) ensureParents(service string) error {
	zc := c.conn.ZK()
	for _, p := range []string{"/switchyard", Root, servicePath(service), instancesPath(service)} {
		if _, err := zc.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("registry: creating %s: %w", p, err)
		}
	}
	return nil
}

// commit applies ops together with a rewrite of the service's instances
// node, in one transaction: every change to a service then touches that
// node, so one data watch on it (and one children watch) tells a watcher
// of every change. edit, if not nil, transforms the node's data. The
// rewrite is conditional on the version read, so concurrent commits retry
// rather than lose each other's departures.
func (c *Client) commit(service string, edit func([]byte) ([]byte, error), ops ...any) error {
	zc := c.conn.ZK()
	parent := instancesPath(service)
	for range 20 {
		data, stat, err := zc.Get(parent)
		if err != nil {
			return fmt.Errorf("registry: reading %s: %w", parent, err)
		}
		if edit != nil {
			if data, err = edit(data); err != nil {
				return err
			}
		}
		all := append(ops[:len(ops):len(ops)], &zk.SetDataRequest{Path: parent, Data: data, Version: stat.Version})
		res, err := zc.Multi(all...)
		if err == nil {
			return nil
		}
		i, opErr := failedOp(res)
		if i == len(all)-1 && errors.Is(opErr, zk.ErrBadVersion) {
			continue // another writer touched the service; read again
		}
		if opErr != nil {
			return opErr
		}
		return err
	}
	return fmt.Errorf("registry: %s: too much contention", parent)
}

// jitter spreads periodic work of many clients: d ± 20%.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(2*d/5+1)
}

// failedOp returns the index and error of the operation that failed a
// multi. The others report success or "runtime inconsistency" (-2), which
// go-zookeeper does not name.
func failedOp(res []zk.MultiResponse) (int, error) {
	for i, r := range res {
		if r.Error != nil && r.Error.Error() != "unknown error: -2" {
			return i, r.Error
		}
	}
	return -1, nil
}

// SessionID returns the id of the Client's current ZooKeeper session, 0
// while it has none. Operators match it against ZooKeeper's "cons" and
// "wchc" output and against nodes' ephemeralOwner.
func (c *Client) SessionID() int64 { return c.conn.Session() }
