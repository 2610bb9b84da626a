package zklock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Grant is a held lock: this Locker's contender node that has the lowest
// sequence of its lock. It is safe for concurrent use. It is held until
// Release, or until it is lost — and then Lost is closed and Err says why.
type Grant struct {
	l    *Locker
	s    *slot
	n    *node
	name string
	info Contender // immutable

	// ctx ends when the grant does (released or lost); it stops the
	// monitor.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	state grantState
	err   error
	lost  chan struct{}
}

type grantState int

const (
	held grantState = iota
	released
	lost
)

func newGrant(l *Locker, s *slot, n *node) *Grant {
	g := &Grant{
		l:    l,
		s:    s,
		n:    n,
		name: s.name,
		info: contenderOf(n.path(), n.guid, n.seq, n.stat, n.data),
		lost: make(chan struct{}),
	}
	g.ctx, g.cancel = context.WithCancel(l.ctx)
	return g
}

// Name returns the lock's name.
func (g *Grant) Name() string { return g.name }

// Token returns the fencing token: the creation zxid of the contender
// node. Tokens of one lock strictly increase in the order it is granted,
// across its whole history (ZooKeeper's zxids only grow, while sequence
// numbers restart when a swept directory is made again). A resource that
// refuses tokens below the highest it has seen refuses a holder that lost
// the lock without knowing.
func (g *Grant) Token() int64 { return g.info.Token }

// Path returns the contender node's path.
func (g *Grant) Path() string { return g.info.Path }

// Info returns the contender node as it was when granted: GUID, path,
// sequence, token, data, creation time and owning session.
func (g *Grant) Info() Contender {
	c := g.info
	c.Data = bytes.Clone(c.Data)
	return c
}

// Lost is closed when the grant is lost: its node was deleted by someone
// else (ErrDeleted), its session ended (ErrSessionLost: expiry, learned
// when the client reconnects, or the connection closed), or the Locker
// was closed (ErrClosed). Release does not close it. While the client is
// disconnected nothing is known: the session may be expiring, and Lost
// cannot fire before ZooKeeper says so; a caller that promises exclusion
// for a time (a lease) bounds it by the session timeout itself.
func (g *Grant) Lost() <-chan struct{} { return g.lost }

// Err returns why the grant was lost, wrapping ErrDeleted, ErrSessionLost
// or ErrClosed, and nil while Lost is open.
func (g *Grant) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Held reports whether the grant is still held: not released, withdrawn
// or lost (as far as this Locker knows; see Lost).
func (g *Grant) Held() bool { return g.held() }

func (g *Grant) held() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state == held
}

// lose ends a held grant as lost, and reports whether it was held.
func (g *Grant) lose(cause error) bool {
	g.mu.Lock()
	if g.state != held {
		g.mu.Unlock()
		return false
	}
	g.state, g.err = lost, cause
	close(g.lost)
	g.mu.Unlock()
	g.cancel()
	if !errors.Is(cause, ErrClosed) {
		g.l.opts.log.Warn("zklock: lock lost", "lock", g.name, "path", g.info.Path, "token", g.info.Token, "err", cause)
	}
	return true
}

// end ends a held grant as released, or says why it is not held.
func (g *Grant) end() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case released:
		return fmt.Errorf("%w: %q was released before", ErrNotHeld, g.name)
	case lost:
		return fmt.Errorf("%w: %q was lost: %w", ErrNotHeld, g.name, g.err)
	}
	g.state = released
	g.cancel()
	return nil
}

// watchDelay is how long after a grant its monitor first reads the node
// and watches it. A lock released sooner costs no read; one deleted by
// another party sooner is found gone by that read.
const watchDelay = 50 * time.Millisecond

// monitor watches a held grant's session, and after watchDelay its node,
// until the grant ends. Its first read of the node sets the watch, and
// finds the node gone if it was deleted since the grant was decided.
func (g *Grant) monitor() {
	l := g.l
	notify, unsubscribe := l.conn.Subscribe()
	defer unsubscribe()
	lose := func(err error) {
		if g.lose(err) {
			l.free(g.s)
		}
	}
	first := time.NewTimer(watchDelay)
	defer first.Stop()
	var (
		watch <-chan zk.Event
		retry <-chan time.Time = first.C
		b     backoff
	)
	for {
		if l.sessionEnded(g.info.Session) {
			lose(fmt.Errorf("%w: session %#x of %s ended", ErrSessionLost, g.info.Session, g.info.Path))
			return
		}
		if watch == nil && retry == nil {
			r, err := l.getW(g.ctx, g.info.Path)
			switch {
			case g.ctx.Err() != nil:
				return
			case err == nil && r.stat.Czxid == g.info.Token:
				watch = r.watch
				b.reset()
			case (err == nil || errors.Is(err, zk.ErrNoNode)) && l.sessionEnded(g.info.Session):
				// Read in a new session: the node went with the old one.
				lose(fmt.Errorf("%w: session %#x of %s ended", ErrSessionLost, g.info.Session, g.info.Path))
				return
			case err == nil, errors.Is(err, zk.ErrNoNode):
				lose(fmt.Errorf("%w: %s", ErrDeleted, g.info.Path))
				return
			default:
				retry = time.After(b.next()) // unreachable: try again
			}
		}
		select {
		case <-g.ctx.Done():
			return
		case <-notify:
		case <-retry:
			retry = nil
		case ev := <-watch:
			watch = nil
			switch ev.Type {
			case zk.EventNodeDeleted:
				lose(fmt.Errorf("%w: %s", ErrDeleted, g.info.Path))
				return
			case zk.EventNotWatching:
				lose(fmt.Errorf("%w: %s: %w", ErrSessionLost, g.info.Path, ev.Err))
				return
			}
			// The data changed: watch again.
		}
	}
}

// Release deletes the grant's node, which hands the lock to the next
// waiter. It fails with ErrNotHeld for a grant that is not held: released
// before, lost (wrapping why), found already gone, or made by another
// Locker. Any Grant this Locker made can be released, from any goroutine.
// The guid's claim stays (see WithClaimRetention): an Acquire with the
// guid is ErrClaimEnded from now on. The claim records, in the multi-op
// that deletes the node, that the grant was released (see HowEnded).
//
// The node is deleted with the version it was read with, so a node that
// is not the grant's is never deleted. If ctx ends before ZooKeeper
// confirms the deletion, Release returns ctx's error and the deletion goes
// on in the background; either way the grant is no longer held, and Lost
// stays open.
func (l *Locker) Release(ctx context.Context, g *Grant) error {
	return l.release(ctx, g, EndReleased)
}

// Expire is Release for a grant whose holder let it run out: the lock
// service expires the grants of leases not renewed in time this way. The
// claim records that the grant expired (see HowEnded); all else is as
// Release.
func (l *Locker) Expire(ctx context.Context, g *Grant) error {
	return l.release(ctx, g, EndExpired)
}

// release ends g as how says: EndReleased, EndExpired or EndWithdrawn.
func (l *Locker) release(ctx context.Context, g *Grant, how End) error {
	if g == nil || g.l != l {
		return fmt.Errorf("%w: the grant was not made by this Locker", ErrNotHeld)
	}
	if err := l.enter(); err != nil {
		if err := g.end(); err != nil {
			return err
		}
		return fmt.Errorf("%w: %w", ErrNotHeld, err)
	}
	defer l.wg.Done()
	if err := g.end(); err != nil {
		return err
	}
	claim, err := l.endClaim(g, how)
	if err != nil {
		return err
	}
	err = l.removeNode(ctx, g.n, claim)
	switch {
	case err == nil:
		l.free(g.s)
		return nil
	case gone(err):
		l.free(g.s)
		return fmt.Errorf("%w: %w", ErrNotHeld, err)
	}
	l.wg.Go(func() {
		if err := l.removeNode(l.reap, g.n, claim); err != nil && !gone(err) {
			l.opts.log.Error("zklock: released lock's node left until its session ends",
				"lock", g.name, "path", g.info.Path, "err", err)
		}
		l.free(g.s)
	})
	return fmt.Errorf("zklock: release of %q not confirmed, deleting in the background: %w", g.name, err)
}

// endClaim returns what the deletion of g's node does to its claim: a
// withdrawn grant's claim goes with it; a released or expired one's is
// rewritten with the reason. The record is made from what the grant knows
// rather than read, so the release stays one round trip: while the node
// exists its claim is its guid's (the janitor only marks claims without
// a contender), and the multi-op writes it only if the node is deleted.
func (l *Locker) endClaim(g *Grant, how End) (claimOp, error) {
	claim := l.claimPath(g.n.guid)
	reason := ""
	switch how {
	case EndWithdrawn:
		return claimOp{path: claim}, nil
	case EndReleased:
		reason = reasonReleased
	case EndExpired:
		reason = reasonExpired
	default:
		return claimOp{}, fmt.Errorf("zklock: ending a grant as %v", how)
	}
	data, err := encodeClaim(claimRecord{Lock: g.name, Dir: g.n.dir, Attempt: g.s.id,
		Session: fmt.Sprintf("%#x", g.info.Session), Reason: reason})
	if err != nil {
		return claimOp{}, err
	}
	return claimOp{path: claim, data: data}, nil
}

// Withdraw ends a grant its caller never handed out, as if it had never
// been acquired: it deletes the node, as Release does, and its guid's
// claim with it, so that an Acquire with the guid, here or at another
// Locker, queues anew rather than failing with ErrClaimEnded. The lock
// service withdraws a grant it cannot back with a lease. It fails as
// Release does.
func (l *Locker) Withdraw(ctx context.Context, g *Grant) error {
	return l.release(ctx, g, EndWithdrawn)
}

// claimOp is what the deletion of a contender node does to its guid's
// claim, in the same multi-op: nothing (no path), delete it (no data), or
// write data to it.
type claimOp struct {
	path string
	data []byte
}

// remove deletes a node of this Locker's session. It returns nil once the
// node is deleted, an error wrapping ErrDeleted or ErrSessionLost if the
// node was gone before (see gone), or ctx's error.
func (l *Locker) remove(ctx context.Context, n *node) error { return l.removeNode(ctx, n, claimOp{}) }

// removeNode is remove, and with a claim op, the node's claim is deleted
// or written in the same multi-op (a claim that is gone already is left
// so). A node of unknown name is looked for by guid (purge).
func (l *Locker) removeNode(ctx context.Context, n *node, claim claimOp) error {
	if n.name == "" {
		return l.purge(ctx, n.dir, n.guid, claim)
	}
	p := n.path()
	version, owner, token := int32(-1), int64(0), int64(0)
	if n.stat != nil {
		version, owner, token = n.stat.Version, n.stat.EphemeralOwner, n.stat.Czxid
	}
	var b backoff
	sent := false // a delete may have been done without our hearing back
	for {
		if owner != 0 && l.sessionEnded(owner) {
			if sent {
				return nil
			}
			return fmt.Errorf("%w: session %#x of %s ended", ErrSessionLost, owner, p)
		}
		_, err := call(ctx, l, func() (struct{}, error) { return struct{}{}, l.delete(p, version, claim) })
		switch {
		case err == nil:
			return nil
		case errors.Is(err, zk.ErrNoNode):
			if sent {
				return nil
			}
			return fmt.Errorf("%w: %s", ErrDeleted, p)
		case errors.Is(err, zk.ErrBadVersion):
			// Its data changed since it was read: make sure it is the same
			// node, then delete what it is now.
			r, err := l.get(ctx, p)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				continue
			case err != nil:
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if b.pause(ctx) != nil {
					return ctx.Err()
				}
				continue
			case token != 0 && r.stat.Czxid != token:
				return fmt.Errorf("%w: %s was replaced by another node", ErrDeleted, p)
			}
			version = r.stat.Version
		case ctx.Err() != nil:
			return ctx.Err()
		case transient(err):
			sent = sent || errors.Is(err, zk.ErrConnectionClosed)
			if b.pause(ctx) != nil {
				return ctx.Err()
			}
		default:
			return fmt.Errorf("zklock: deleting %s: %w", p, err)
		}
	}
}

// delete deletes the node p at version and, in the same multi-op, deletes
// or writes the claim as c says. Its error is the node's: a claim that is
// not there is no error.
func (l *Locker) delete(p string, version int32, c claimOp) error {
	var op any
	switch {
	case c.path == "":
		return l.zk.Delete(p, version)
	case c.data == nil:
		op = &zk.DeleteRequest{Path: c.path, Version: -1}
	default:
		op = &zk.SetDataRequest{Path: c.path, Data: c.data, Version: -1}
	}
	res, err := l.zk.Multi(&zk.DeleteRequest{Path: p, Version: version}, op)
	if err != nil && failedOp(res) == 1 {
		return l.zk.Delete(p, version)
	}
	return err
}

// purge deletes every node of this session with guid in dir (each with
// the claim op): what a create whose outcome is unknown may have left.
func (l *Locker) purge(ctx context.Context, dir, guid string, claim claimOp) error {
	var b backoff
	for {
		children, err := read(ctx, l, func() ([]string, error) {
			children, _, err := l.zk.Children(dir)
			return children, err
		})
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return nil
		case err != nil:
			return err
		}
		sid := l.conn.Session()
		left := false
		for _, c := range queue(children) {
			if c.guid != guid {
				continue
			}
			r, err := l.get(ctx, dir+"/"+c.node)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				continue
			case err != nil || sid == 0:
				left = true
				continue
			case r.stat.EphemeralOwner != sid:
				continue // another session's
			}
			n := &node{dir: dir, guid: guid, name: c.node, seq: c.seq, stat: r.stat}
			if err := l.removeNode(ctx, n, claim); err != nil && !gone(err) {
				left = true
			}
		}
		if !left {
			return nil
		}
		if b.pause(ctx) != nil {
			return ctx.Err()
		}
	}
}
