package mq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard-dev/switchyard/internal/natsserver"
)

// Embedded is the URL that makes Connect start an embedded server (as
// does "").
const Embedded = "embedded"

// The reconnect defaults: forever, every half second plus up to a quarter
// second of jitter (a second with TLS), so that a restarted server is not
// hit by every client at once.
const (
	defaultReconnectWait      = 500 * time.Millisecond
	defaultReconnectJitter    = 250 * time.Millisecond
	defaultReconnectJitterTLS = time.Second
)

// State is a connection's state.
type State int

// The states of a connection. Events carry StateConnected,
// StateDisconnected and StateClosed; Conn.State can also say
// StateConnecting, StateReconnecting or StateDraining.
const (
	// StateConnecting is the first connect under way.
	StateConnecting State = iota
	// StateConnected is a connection to a server.
	StateConnected
	// StateDisconnected is a lost connection to the server; the client
	// reconnects (StateReconnecting) until it is closed.
	StateDisconnected
	// StateReconnecting is the time between a disconnect and the next
	// connect.
	StateReconnecting
	// StateDraining is a Drain under way.
	StateDraining
	// StateClosed is a connection closed for good.
	StateClosed
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateReconnecting:
		return "reconnecting"
	case StateDraining:
		return "draining"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// StateEvent is one change of a connection's state, as state handlers get
// it.
type StateEvent struct {
	// State is StateConnected, StateDisconnected or StateClosed.
	State State
	// Reconnected is set on StateConnected after a disconnect.
	Reconnected bool
	// URL is the server connected to, on StateConnected (credentials
	// redacted).
	URL string
	// Err is why: the disconnect's error on StateDisconnected (nil when
	// the server closed the connection cleanly), the connection's last
	// error on StateClosed (nil after a plain Close).
	Err error
	// Time is when the client saw the change.
	Time time.Time
}

// Option configures Connect.
type Option func(*connOptions)

type connOptions struct {
	name     string
	natsOpts []nats.Option
	handlers []func(StateEvent)
	log      *slog.Logger
}

// WithName sets the connection's name, which servers show in monitoring.
func WithName(name string) Option {
	return func(o *connOptions) { o.name = name }
}

// WithNATSOptions passes options to nats.Connect, after this package's
// defaults, so they override them (ReconnectWait, MaxReconnects, TLS,
// credentials, ...). Callbacks set here still run, before this package's;
// NoCallbacksAfterClientClose is ignored, as Close relies on the closed
// callback.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *connOptions) { o.natsOpts = append(o.natsOpts, opts...) }
}

// WithStateHandler has fn called with every state change, in order, from
// one goroutine that the Conn owns: first StateConnected, then any number
// of StateDisconnected and StateConnected (Reconnected), and last
// StateClosed (only StateClosed for a Connect that failed after trying).
// fn must not block for long, and must not call Close or Drain, which
// wait for it. Several handlers are called in the order given.
func WithStateHandler(fn func(StateEvent)) Option {
	return func(o *connOptions) { o.handlers = append(o.handlers, fn) }
}

// WithLogger sets where the connection logs asynchronous NATS errors
// (slow consumers, permissions) unless WithNATSOptions sets an error
// handler. Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *connOptions) { o.log = l }
}

// Conn is a NATS connection, and the embedded server behind it when it
// has one, with its state changes delivered in order. Its methods are
// safe for concurrent use.
type Conn struct {
	nc       *nats.Conn
	srv      *natsserver.Server // nil unless embedded
	url      string
	handlers []func(StateEvent)

	mu    sync.Mutex
	queue []StateEvent // events the dispatcher has yet to deliver

	wake          chan struct{} // cap 1: the queue has events
	stop          chan struct{} // ends the dispatcher when there is no nats.Conn
	done          chan struct{} // closed when the dispatcher has returned
	connected     chan struct{} // closed on the first connect
	closed        chan struct{} // closed on the closed callback
	connectedOnce sync.Once
	closedOnce    sync.Once

	closeOnce sync.Once
	closeErr  error

	jsOnce sync.Once
	js     jetstream.JetStream
	jsErr  error
}

// Connect connects to url, a NATS URL or several joined by commas, or,
// for "" or "embedded", to an embedded server with JetStream (its store
// in a temporary directory) that the Conn starts, owns and shuts down on
// Close. It retries the first connect until ctx ends, and reconnects
// forever afterwards (see WithNATSOptions to change that). Errors wrap
// ErrConnect.
func Connect(ctx context.Context, url string, opts ...Option) (*Conn, error) {
	o := connOptions{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Conn{
		url:       url,
		handlers:  o.handlers,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		connected: make(chan struct{}),
		closed:    make(chan struct{}),
	}
	go c.dispatch()
	if url == "" || strings.EqualFold(url, Embedded) {
		cfg := natsserver.Config{}
		if d, ok := ctx.Deadline(); ok {
			cfg.ReadyTimeout = max(time.Until(d), time.Millisecond)
		}
		srv, err := natsserver.Start(cfg)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%w: embedded server: %w", ErrConnect, err), c.Close())
		}
		c.srv = srv
		c.url = srv.ClientURL()
	}

	fail := func(err error) (*Conn, error) {
		return nil, errors.Join(fmt.Errorf("%w to %s: %w", ErrConnect, redactURLs(c.url), err), c.Close())
	}
	nopts, err := c.natsOptions(o)
	if err != nil {
		return fail(err)
	}
	nc, err := nopts.Connect()
	if err != nil {
		return fail(err)
	}
	c.nc = nc
	select {
	case <-c.connected:
		return c, nil
	case <-c.closed:
		if err = nc.LastError(); err == nil {
			err = nats.ErrNoServers
		}
	case <-ctx.Done():
		err = errors.Join(ctx.Err(), nc.LastError())
	}
	return fail(err)
}

// redactURLs returns a comma-separated list of URLs with their user
// information (user and password, or token) replaced, for error messages.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = neturl.User("REDACTED")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// natsOptions builds the options: defaults, then the caller's, then the
// callbacks that feed the state events, chained after the caller's.
func (c *Conn) natsOptions(o connOptions) (nats.Options, error) {
	nopts := nats.GetDefaultOptions()
	base := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(defaultReconnectWait),
		nats.ReconnectJitter(defaultReconnectJitter, defaultReconnectJitterTLS),
		nats.RetryOnFailedConnect(true),
	}
	if o.name != "" {
		base = append(base, nats.Name(o.name))
	}
	for _, opt := range append(base, o.natsOpts...) {
		if err := opt(&nopts); err != nil {
			return nopts, err
		}
	}
	for s := range strings.SplitSeq(c.url, ",") {
		if s = strings.TrimSpace(s); s != "" {
			nopts.Servers = append(nopts.Servers, s)
		}
	}
	if len(nopts.Servers) == 0 {
		return nopts, fmt.Errorf("no server URL in %q", c.url)
	}
	nopts.Url = ""
	nopts.NoCallbacksAfterClientClose = false

	userConnected, userReconnected := nopts.ConnectedCB, nopts.ReconnectedCB
	userDisconnected, userDisconnectedOld, userClosed := nopts.DisconnectedErrCB, nopts.DisconnectedCB, nopts.ClosedCB
	nopts.ConnectedCB = func(nc *nats.Conn) {
		if userConnected != nil {
			userConnected(nc)
		}
		c.emit(StateEvent{State: StateConnected, URL: nc.ConnectedUrlRedacted()})
		c.connectedOnce.Do(func() { close(c.connected) })
	}
	nopts.ReconnectedCB = func(nc *nats.Conn) {
		if userReconnected != nil {
			userReconnected(nc)
		}
		c.emit(StateEvent{State: StateConnected, Reconnected: true, URL: nc.ConnectedUrlRedacted()})
	}
	nopts.DisconnectedCB = nil
	nopts.DisconnectedErrCB = func(nc *nats.Conn, err error) {
		if userDisconnected != nil {
			userDisconnected(nc, err)
		} else if userDisconnectedOld != nil {
			userDisconnectedOld(nc)
		}
		if err == nil && nc.IsClosed() {
			return // Close: StateClosed follows
		}
		c.emit(StateEvent{State: StateDisconnected, Err: err})
	}
	nopts.ClosedCB = func(nc *nats.Conn) {
		if userClosed != nil {
			userClosed(nc)
		}
		c.emit(StateEvent{State: StateClosed, Err: nc.LastError()})
		c.closedOnce.Do(func() { close(c.closed) })
	}
	if nopts.AsyncErrorCB == nil {
		log := o.log
		nopts.AsyncErrorCB = func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("mq: nats error", "subject", subject, "error", err)
		}
	}
	return nopts, nil
}

// emit queues ev for the dispatcher. It runs on nats.go's callback
// goroutine, which calls it in order.
func (c *Conn) emit(ev StateEvent) {
	ev.Time = time.Now()
	c.mu.Lock()
	c.queue = append(c.queue, ev)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// dispatch delivers queued events to the handlers until it has delivered
// StateClosed (or Close stops it when there is no connection).
func (c *Conn) dispatch() {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			return
		}
		c.mu.Lock()
		evs := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, ev := range evs {
			for _, h := range c.handlers {
				h(ev)
			}
			if ev.State == StateClosed {
				return
			}
		}
	}
}

// NATS returns the underlying connection.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream returns a JetStream context on the connection (nats.go's
// jetstream package), made once.
func (c *Conn) JetStream() (jetstream.JetStream, error) {
	c.jsOnce.Do(func() {
		c.js, c.jsErr = jetstream.New(c.nc)
		if c.jsErr != nil {
			c.jsErr = fmt.Errorf("mq: jetstream: %w", c.jsErr)
		}
	})
	return c.js, c.jsErr
}

// URL returns the URL the connection was made to: the embedded server's
// client URL when embedded, else the url given to Connect.
func (c *Conn) URL() string { return c.url }

// State returns the connection's current state. It can be ahead of the
// events delivered so far.
func (c *Conn) State() State {
	switch c.nc.Status() {
	case nats.CONNECTED:
		return StateConnected
	case nats.CONNECTING:
		return StateConnecting
	case nats.DISCONNECTED:
		return StateDisconnected
	case nats.RECONNECTING:
		return StateReconnecting
	case nats.DRAINING_SUBS, nats.DRAINING_PUBS:
		return StateDraining
	}
	return StateClosed
}

// Drain stops taking messages, lets every subscription's handlers finish
// the messages they have (so micro services answer their requests in
// flight), flushes what they published, and closes the connection; then
// it does what Close does. If ctx ends first it closes at once and
// returns an error wrapping ErrDrain and ctx's error; so does a drain that
// hit nats.go's DrainTimeout.
func (c *Conn) Drain(ctx context.Context) error {
	var derr error
	if err := c.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		// Reconnecting: nats.go closed the connection, nothing to drain.
		derr = fmt.Errorf("%w: %w", ErrDrain, err)
	}
	select {
	case <-c.closed:
		if err := c.nc.LastError(); errors.Is(err, nats.ErrDrainTimeout) {
			derr = fmt.Errorf("%w: %w", ErrDrain, err)
		}
	case <-ctx.Done():
		derr = fmt.Errorf("%w: %w", ErrDrain, ctx.Err())
	}
	return errors.Join(derr, c.Close())
}

// Close closes the connection, waits until the state handlers have had
// StateClosed, and shuts the embedded server down, if any, waiting for
// it. It is safe to call more than once; later calls return the first's
// result.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if c.nc != nil {
			c.nc.Close()
		} else {
			close(c.stop)
		}
		<-c.done
		if c.srv != nil {
			c.closeErr = c.srv.Close()
		}
	})
	return c.closeErr
}
