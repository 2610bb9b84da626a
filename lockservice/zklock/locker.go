package zklock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
)

// Locker acquires and releases locks in ZooKeeper through one connection
// (one session). It is safe for concurrent use; its grants and waits end
// with Close.
type Locker struct {
	conn *zkconn.Conn
	zk   *zk.Conn
	opts options
	acl  []zk.ACL

	ctx    context.Context // ends every attempt; cancelled by Close
	cancel context.CancelFunc
	// reap bounds the deletion of nodes nobody wants any more (abandoned
	// contenders, unconfirmed releases); cancelled once Close's grace for
	// them has run out.
	reap       context.Context
	reapCancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	slots  map[string]*slot // by slotKey

	// wg counts public calls in flight and every goroutine the Locker
	// starts: attempts, grant monitors, background deletions and
	// go-zookeeper requests whose caller stopped waiting.
	wg   sync.WaitGroup
	once sync.Once
	done chan struct{}

	wakeups       atomic.Uint64
	childrenReads atomic.Uint64
	claimsSwept   atomic.Uint64
}

type options struct {
	root           string
	claimRoot      string // "" until New derives it from root
	claimRetention time.Duration
	cleanupTimeout time.Duration
	log            *slog.Logger
}

// Option configures a Locker.
type Option func(*options)

// WithRoot sets the znode under which locks live (default DefaultRoot). It
// is created, with its parents, as persistent nodes when first needed.
func WithRoot(root string) Option { return func(o *options) { o.root = root } }

// WithClaimRoot sets the znode under which the claims of guids live
// (default: "lockclaims" beside the root, DefaultClaimRoot for
// DefaultRoot). It must be neither the root nor inside it, nor hold it.
// Every Locker that may see the same guids must use the same claim root.
func WithClaimRoot(root string) Option { return func(o *options) { o.claimRoot = root } }

// WithClaimRetention sets how long a guid's claim is kept after its
// contender ended (default DefaultClaimRetention): for that long, at
// least, an Acquire with the guid fails with ErrClaimEnded. The Locker's
// janitor deletes older claims.
func WithClaimRetention(d time.Duration) Option {
	return func(o *options) { o.claimRetention = d }
}

// WithCleanupTimeout bounds how long a cancelled Acquire waits for its node
// to be deleted, and how long Close waits for the nodes of its grants and
// waits to be deleted (default 10s). A deletion not done by then goes on
// in the background until the node is gone, its session ends, or Close.
func WithCleanupTimeout(d time.Duration) Option {
	return func(o *options) { o.cleanupTimeout = d }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New returns a Locker that uses conn, whose session owns every contender
// node the Locker creates. conn stays the caller's: close the Locker
// first, then conn.
func New(conn *zkconn.Conn, opts ...Option) (*Locker, error) {
	if conn == nil {
		return nil, errors.New("zklock: nil connection")
	}
	o := options{root: DefaultRoot, claimRetention: DefaultClaimRetention, cleanupTimeout: 10 * time.Second, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if !validRoot(o.root) {
		return nil, fmt.Errorf("zklock: root %q is not an absolute, clean znode path", o.root)
	}
	if o.claimRoot == "" {
		o.claimRoot = path.Join(path.Dir(o.root), "lockclaims")
	}
	switch {
	case !validRoot(o.claimRoot):
		return nil, fmt.Errorf("zklock: claim root %q is not an absolute, clean znode path", o.claimRoot)
	case strings.HasPrefix(o.claimRoot+"/", o.root+"/") || strings.HasPrefix(o.root+"/", o.claimRoot+"/"):
		return nil, fmt.Errorf("zklock: claim root %q and root %q overlap: set another with WithClaimRoot", o.claimRoot, o.root)
	case o.claimRetention <= 0:
		return nil, fmt.Errorf("zklock: claim retention %v is not positive", o.claimRetention)
	case o.cleanupTimeout <= 0:
		return nil, fmt.Errorf("zklock: cleanup timeout %v is not positive", o.cleanupTimeout)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	l := &Locker{
		conn:  conn,
		zk:    conn.ZK(),
		opts:  o,
		acl:   zk.WorldACL(zk.PermAll),
		slots: map[string]*slot{},
		done:  make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.reap, l.reapCancel = context.WithCancel(context.Background())
	l.wg.Go(l.janitor)
	return l, nil
}

func validRoot(p string) bool {
	return p != "/" && strings.HasPrefix(p, "/") && path.Clean(p) == p && !strings.ContainsFunc(p, zkRefuses) && utf8.ValidString(p)
}

// Close ends the Locker: waiting Acquire calls return ErrClosed and delete
// their nodes; held grants are deleted and report Lost with ErrClosed. It
// waits, within the cleanup timeout (WithCleanupTimeout) for deletions and
// however long go-zookeeper takes to answer requests in flight, until every
// goroutine of the Locker has stopped. Nodes it could not delete last until
// the session ends. It is safe to call more than once.
func (l *Locker) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		var held []*Grant
		for _, s := range l.slots {
			if s.grant != nil {
				held = append(held, s.grant)
			}
		}
		l.mu.Unlock()
		l.cancel()

		ctx, cancel := context.WithTimeout(l.reap, l.opts.cleanupTimeout)
		var wg sync.WaitGroup
		for _, g := range held {
			if !g.lose(ErrClosed) {
				continue // released or lost meanwhile; whoever did it frees it
			}
			wg.Go(func() {
				if err := l.remove(ctx, g.n); err != nil && !gone(err) {
					l.opts.log.Warn("zklock: closing: node of a held lock not deleted; it lasts until the session ends",
						"path", g.info.Path, "err", err)
				}
				l.free(g.s)
			})
		}
		wg.Wait()
		cancel()
		grace := time.AfterFunc(l.opts.cleanupTimeout, l.reapCancel)
		l.wg.Wait()
		grace.Stop()
		l.reapCancel()
		close(l.done)
	})
	<-l.done
	return nil
}

// Done is closed once Close has finished.
func (l *Locker) Done() <-chan struct{} { return l.done }

// Stats counts what a Locker's waits cost, for tests and benchmarks of the
// recipe.
type Stats struct {
	// Wakeups is the number of watch events delivered to this Locker's
	// waiting contenders, each about its predecessor. Without herding,
	// the releases of a lock with waiters cause one each, across all the
	// Lockers of its contenders.
	Wakeups uint64
	// ChildrenReads is the number of reads of a lock directory's children
	// by Acquire: none for a contender that found the lock free, one for
	// a new contender that has to wait or whose guid was claimed before,
	// and one more each time a waiter's predecessor goes.
	ChildrenReads uint64
	// ClaimsSwept is the number of claims this Locker's janitor deleted.
	ClaimsSwept uint64
}

// Stats returns the counts so far.
func (l *Locker) Stats() Stats {
	return Stats{Wakeups: l.wakeups.Load(), ChildrenReads: l.childrenReads.Load(), ClaimsSwept: l.claimsSwept.Load()}
}

// enter counts a public call in flight, so that Close waits for it; the
// caller calls l.wg.Done when it returns.
func (l *Locker) enter() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.wg.Add(1)
	return nil
}

// dir returns the directory of the lock name.
func (l *Locker) dir(name string) string { return l.opts.root + "/" + escapeName(name) }

// sessionEnded reports whether the session owner is over: the connection
// has another session, or go-zookeeper has been told it expired. While
// disconnected it is not known, and a session is not counted as ended.
func (l *Locker) sessionEnded(owner int64) bool {
	sid := l.conn.Session()
	return (sid != 0 && sid != owner) || l.conn.State() == zk.StateExpired
}

// ctxErr is the error of an attempt whose ctx ended: ErrClosed if Close
// ended it.
func (l *Locker) ctxErr(ctx context.Context) error {
	if l.ctx.Err() != nil {
		return ErrClosed
	}
	return ctx.Err()
}

// call runs fn, one go-zookeeper request, and returns its result, or ctx's
// error as soon as ctx ends. go-zookeeper takes no context; a request the
// caller stopped waiting for still ends by itself (answered, or failed when
// its connection drops, within the session timeout) and Close waits for
// it. Never use call for a create: a create that lands after its caller
// left would leave a node nobody knows of.
func call[T any](ctx context.Context, l *Locker, fn func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	l.wg.Go(func() {
		v, err := fn()
		ch <- result{v, err}
	})
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// read is call for idempotent reads: it retries while ZooKeeper is
// unreachable, until ctx ends.
func read[T any](ctx context.Context, l *Locker, fn func() (T, error)) (T, error) {
	var b backoff
	for {
		v, err := call(ctx, l, fn)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return v, err
		}
		if err := b.pause(ctx); err != nil {
			return v, err
		}
	}
}

// nodeRead is a read of one znode.
type nodeRead struct {
	data  []byte
	stat  *zk.Stat
	watch <-chan zk.Event // nil unless asked for
}

func (l *Locker) get(ctx context.Context, p string) (nodeRead, error) {
	return call(ctx, l, func() (nodeRead, error) {
		data, stat, err := l.zk.Get(p)
		return nodeRead{data: data, stat: stat}, err
	})
}

// getW reads a node and watches it. A data watch, not an exists watch, as
// Curator does: on a node that is already gone it fails and leaves no
// watch behind in the server.
func (l *Locker) getW(ctx context.Context, p string) (nodeRead, error) {
	return call(ctx, l, func() (nodeRead, error) {
		data, stat, ch, err := l.zk.GetW(p)
		return nodeRead{data: data, stat: stat, watch: ch}, err
	})
}

func (l *Locker) children(ctx context.Context, p string) ([]string, error) {
	return call(ctx, l, func() ([]string, error) {
		children, _, err := l.zk.Children(p)
		return children, err
	})
}

// errNoSession stands for a request not worth sending while there is no
// session to judge ownership by.
var errNoSession = errors.New("zklock: no ZooKeeper session")

// transient reports whether err means ZooKeeper could not be asked or did
// not answer, so that asking again, later, makes sense.
func transient(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrSessionMoved) ||
		errors.Is(err, errNoSession)
}

// gone reports whether a removal found the node already gone.
func gone(err error) bool { return errors.Is(err, ErrDeleted) || errors.Is(err, ErrSessionLost) }

// backoff paces retries: 20ms, doubling up to a second.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	b.d = min(max(2*b.d, 20*time.Millisecond), time.Second)
	return b.d
}

func (b *backoff) pause(ctx context.Context) error {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (b *backoff) reset() { b.d = 0 }

// makeDir creates the container of a lock (and the root above it).
func (l *Locker) makeDir(ctx context.Context, dir string) error {
	create := func() (string, error) { return l.zk.CreateContainer(dir, nil, zk.FlagContainer, l.acl) }
	_, err := call(ctx, l, create)
	if errors.Is(err, zk.ErrNoNode) {
		if err := l.makeRoot(ctx); err != nil {
			return err
		}
		_, err = call(ctx, l, create)
	}
	if err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("zklock: creating %s: %w", dir, err)
	}
	return nil
}

// makeRoot creates the root and its parents as persistent nodes.
func (l *Locker) makeRoot(ctx context.Context) error { return l.makePath(ctx, l.opts.root) }

// makePath creates the absolute path dir and its parents as persistent
// nodes.
func (l *Locker) makePath(ctx context.Context, dir string) error {
	p := ""
	for seg := range strings.SplitSeq(dir[1:], "/") {
		p += "/" + seg
		_, err := call(ctx, l, func() (string, error) { return l.zk.Create(p, nil, zk.FlagPersistent, l.acl) })
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("zklock: creating %s: %w", p, err)
		}
	}
	return nil
}
