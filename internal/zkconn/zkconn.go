// Package zkconn owns a ZooKeeper connection and tells the packages that
// share it when its session changes.
//
// go-zookeeper delivers session events on one channel, to one reader. The
// registry's registrations and watchers each need to know when the session
// was lost (expired: its ephemeral nodes and watches are gone) as opposed to
// merely disconnected and reconnected (nodes and watches survive). Conn
// reads the channel and gives each subscriber a coalescing notification:
// a subscriber that wakes reads State and Session and compares the session
// id with the one it knew, so a burst of events is one wake-up and a new
// session is never missed, however slow the subscriber.
package zkconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// ErrClosed is returned by calls on a closed Conn.
var ErrClosed = errors.New("zkconn: closed")

// Conn is a ZooKeeper connection whose session changes can be subscribed
// to. It is safe for concurrent use.
type Conn struct {
	zk      *zk.Conn
	log     *slog.Logger
	granted *atomic.Int64 // the granted session timeout, as a Duration

	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	closed bool

	done chan struct{} // closed when the event reader has returned
}

// Dial connects to the ZooKeeper servers in connect ("host:port,...") and
// returns once it has a session, or fails when ctx ends first. The session
// timeout is what the client asks for; the servers may grant a different
// one, within their minimum and maximum (see SessionTimeout).
func Dial(ctx context.Context, connect string, sessionTimeout time.Duration, log *slog.Logger) (*Conn, error) {
	servers, err := ParseConnectString(connect)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	granted := new(atomic.Int64)
	granted.Store(int64(sessionTimeout))
	zl := zkLogger{log: log, granted: granted, authed: make(chan struct{}), once: new(sync.Once)}
	zc, events, err := zk.Connect(servers, sessionTimeout,
		zk.WithLogger(zl), zk.WithLogInfo(true), zk.WithDialer(dialer(sessionTimeout)))
	if err != nil {
		return nil, fmt.Errorf("zkconn: %w", err)
	}
	c := &Conn{zk: zc, log: log, granted: granted, subs: map[chan struct{}]struct{}{}, done: make(chan struct{})}
	first := make(chan struct{})
	go c.read(events, first)
	select {
	case <-first:
		select { // the handshake's log line, with the granted timeout, follows at once
		case <-zl.authed:
		case <-ctx.Done():
		}
		return c, nil
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("zkconn: no session with %s: %w", connect, ctx.Err())
	}
}

// ParseConnectString splits a connect string ("host:port,host:port") into
// its server addresses, checking that each has a host and a port from 1 to
// 65535, so that a typo fails here rather than as a dial error per server.
// A chroot suffix ("/app") is refused: go-zookeeper would not apply it.
func ParseConnectString(connect string) ([]string, error) {
	connect = strings.TrimSpace(connect)
	if connect == "" {
		return nil, errors.New("zkconn: empty connect string, want host:port[,host:port...]")
	}
	if i := strings.IndexByte(connect, '/'); i >= 0 {
		return nil, fmt.Errorf("zkconn: connect string %q has a chroot suffix %q, which is not supported", connect, connect[i:])
	}
	var addrs []string
	for a := range strings.SplitSeq(connect, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, errors.New("zkconn: empty server address, want host:port[,host:port...]")
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("zkconn: server %q: %w", a, err)
		}
		if host == "" {
			return nil, fmt.Errorf("zkconn: server %q: missing host", a)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("zkconn: server %q: port %q is not a number from 1 to 65535", a, port)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// read forwards session events until go-zookeeper closes the channel.
func (c *Conn) read(events <-chan zk.Event, first chan struct{}) {
	defer close(c.done)
	for ev := range events {
		if ev.Type != zk.EventSession {
			continue
		}
		if ev.State == zk.StateHasSession && first != nil {
			close(first)
			first = nil
		}
		switch ev.State {
		case zk.StateExpired:
			c.log.Warn("zookeeper session expired", "server", ev.Server)
		case zk.StateDisconnected:
			c.log.Info("zookeeper disconnected", "server", ev.Server)
		case zk.StateHasSession:
			c.log.Debug("zookeeper session", "id", fmt.Sprintf("%#x", c.zk.SessionID()), "server", ev.Server)
		}
		c.mu.Lock()
		for ch := range c.subs {
			select {
			case ch <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
		c.mu.Unlock()
	}
}

// ZK returns the underlying connection. Callers must not close it.
func (c *Conn) ZK() *zk.Conn { return c.zk }

// Session returns the current session id, 0 while there is none.
func (c *Conn) Session() int64 { return c.zk.SessionID() }

// State returns the connection state.
func (c *Conn) State() zk.State { return c.zk.State() }

// SessionTimeout returns the session timeout the servers granted at the
// latest handshake (before the first, the one asked for). A session ends
// no sooner than this long after the servers last heard from the client,
// which is what bounds any promise resting on the session's nodes.
func (c *Conn) SessionTimeout() time.Duration { return time.Duration(c.granted.Load()) }

// Connected reports whether the connection has a live session now.
func (c *Conn) Connected() bool { return c.zk.State() == zk.StateHasSession }

// Subscribe returns a channel that receives a value after any session
// event (connected, disconnected, expired, new session); wake-ups that
// arrive while one is pending are merged. cancel ends the subscription.
func (c *Conn) Subscribe() (notify <-chan struct{}, cancel func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if !c.closed {
		c.subs[ch] = struct{}{}
	}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	}
}

// Close closes the connection, which ends its session (deleting its
// ephemeral nodes), and waits for the event reader to stop. It is safe to
// call more than once.
func (c *Conn) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.subs = map[chan struct{}]struct{}{}
	c.mu.Unlock()
	if !already {
		c.zk.Close()
	}
	<-c.done
	return nil
}

// dialer returns a go-zookeeper Dialer whose connections bound the
// session handshake. go-zookeeper waits for the server's connect response
// for ten times two thirds of the session timeout (66s for a 10s session).
// A ZooKeeper that is starting up accepts TCP connections before it serves
// and may leave the handshake unanswered, so after a server restart a
// client could sit that long on a dead connection instead of retrying. The
// connection caps that first read at two thirds of the session timeout
// (at least a second), as ZooKeeper's own client bounds its connect.
func dialer(sessionTimeout time.Duration) zk.Dialer {
	limit := max(sessionTimeout*2/3, time.Second)
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		conn, err := net.DialTimeout(network, address, timeout)
		if err != nil {
			return nil, err
		}
		return &handshakeConn{Conn: conn, limit: limit}, nil
	}
}

// handshakeConn caps the first read deadline set on it, the handshake's.
type handshakeConn struct {
	net.Conn
	limit time.Duration

	mu     sync.Mutex
	capped bool
}

func (c *handshakeConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if !c.capped && !t.IsZero() {
		c.capped = true
		if lim := time.Now().Add(c.limit); t.After(lim) {
			t = lim
		}
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// zkLogger sends go-zookeeper's log lines to slog at debug level: they
// describe reconnect attempts, which Conn reports itself. It also reads the
// session timeout the server granted from the line go-zookeeper logs on
// every handshake, its only report of it.
type zkLogger struct {
	log     *slog.Logger
	granted *atomic.Int64
	authed  chan struct{} // closed at the first handshake's line
	once    *sync.Once
}

// authenticated is the format of go-zookeeper's handshake line, whose
// second argument is the granted session timeout in milliseconds.
const authenticated = "authenticated: id=%d, timeout=%d"

func (l zkLogger) Printf(format string, args ...any) {
	if format == authenticated && len(args) == 2 {
		if ms, ok := args[1].(int32); ok && ms > 0 {
			l.granted.Store(int64(time.Duration(ms) * time.Millisecond))
		}
		l.once.Do(func() { close(l.authed) })
	}
	l.log.Debug("zookeeper: " + fmt.Sprintf(format, args...))
}
