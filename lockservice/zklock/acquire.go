package zklock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// slot is the one attempt, then the grant, of a (name, guid) pair in a
// Locker. Acquire calls with the same pair share it, so that a retried
// acquire waits for, or returns, the same node; the attempt is abandoned
// only when every one of them has gone.
type slot struct {
	key, name, guid string
	wait            bool // the attempt waits; false for a try-lock
	cancel          context.CancelFunc

	// Guarded by Locker.mu.
	refs      int  // Acquire calls waiting for the outcome
	cancelled bool // they all left (or Close came) before an outcome

	decided chan struct{} // closed once grant or err is set
	grant   *Grant
	err     error
	freed   chan struct{} // closed when the slot leaves Locker.slots
}

func slotKey(name, guid string) string { return name + "\x00" + guid }

// node is a contender node of this Locker's.
type node struct {
	dir, guid string
	name      string // child name; "" when a create's outcome is unknown
	seq       int64
	stat      *zk.Stat // nil until read
	data      []byte
	own       <-chan zk.Event // a watch on the node, or nil
}

func (n *node) path() string { return n.dir + "/" + n.name }

// Acquire queues a contender for the lock name and returns its Grant once
// it holds the lock.
//
// guid identifies the contender (ValidateGUID): an Acquire of a name with
// the guid of a contender this Locker's session already has — a held
// grant, a waiting Acquire, or a node whose create reply was lost — gets
// that contender, never a second one; a held grant is returned as the same
// *Grant. The contender of the first such call is kept: its data, and its
// wait mode while it waits (a try-lock joining a waiting Acquire gets
// ErrLocked; a waiting Acquire joining a try-lock that fails queues anew).
// A guid held by another session fails with ErrGUIDConflict.
//
// data (at most MaxDataLen bytes) is stored in the contender's node, where
// Describe shows it.
//
// With wait false, Acquire is a try-lock: a lock held by another contender
// gives ErrLocked, and its node is deleted first. Otherwise Acquire blocks
// until the lock is held or ctx ends. When ctx ends, the call's node is
// deleted before Acquire returns (within the cleanup timeout; a deletion
// still unconfirmed by then goes on in the background) and the error wraps
// ctx.Err(), unless other calls with the same guid still wait on it. If the
// lock was granted just as ctx ended, Acquire may return the Grant with a
// nil error; the caller then owns it and must Release it.
//
// A waiting contender whose node disappears with its session (expiry) is
// queued again in the new session; one deleted by someone else ends the
// wait with ErrDeleted.
func (l *Locker) Acquire(ctx context.Context, name, guid string, data []byte, wait bool) (*Grant, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := ValidateGUID(guid); err != nil {
		return nil, err
	}
	if len(data) > MaxDataLen {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrDataTooLarge, len(data), MaxDataLen)
	}
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.wg.Done()
	key := slotKey(name, guid)
	for {
		s, g, err := l.join(ctx, key, name, guid, data, wait)
		switch {
		case err != nil || g != nil:
			return g, err
		case s == nil:
			continue // the slot was busy and has been freed
		}
		select {
		case <-s.decided:
			l.mu.Lock()
			s.refs--
			l.mu.Unlock()
			if wait && !s.wait && errors.Is(s.err, ErrLocked) {
				continue // joined a try-lock that failed: wait on our own
			}
			return s.grant, s.err
		case <-ctx.Done():
		}
		l.mu.Lock()
		s.refs--
		if isClosed(s.decided) {
			l.mu.Unlock()
			return s.grant, s.err
		}
		last := s.refs == 0
		if last {
			s.cancelled = true
			s.cancel()
		}
		l.mu.Unlock()
		err = fmt.Errorf("zklock: acquire %q: %w", name, ctx.Err())
		if !last {
			return nil, err
		}
		t := time.NewTimer(l.opts.cleanupTimeout)
		defer t.Stop()
		select {
		case <-s.decided:
			return nil, err
		case <-t.C:
			return nil, fmt.Errorf("%w (its node is still being deleted)", err)
		}
	}
}

// join finds or starts the slot of key and counts the caller in. It
// returns the held grant of the slot if there is one, and a nil slot after
// waiting for a busy slot (one ending) to be freed.
func (l *Locker) join(ctx context.Context, key, name, guid string, data []byte, wait bool) (*slot, *Grant, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil, ErrClosed
	}
	s := l.slots[key]
	switch {
	case s == nil:
		s = l.start(key, name, guid, data, wait)
	case s.grant != nil && s.grant.held():
		l.mu.Unlock()
		return nil, s.grant, nil
	case s.cancelled || isClosed(s.decided):
		// Ending: its node is being deleted. Wait, then start afresh.
		freed := s.freed
		l.mu.Unlock()
		select {
		case <-freed:
			return nil, nil, nil
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("zklock: acquire %q: %w", name, ctx.Err())
		}
	case !wait && s.wait:
		l.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %q (an Acquire with this guid is waiting)", ErrLocked, name)
	}
	s.refs++
	l.mu.Unlock()
	return s, nil, nil
}

// start creates the slot of key and runs its attempt. l.mu must be held.
func (l *Locker) start(key, name, guid string, data []byte, wait bool) *slot {
	ctx, cancel := context.WithCancel(l.ctx)
	s := &slot{
		key: key, name: name, guid: guid, wait: wait, cancel: cancel,
		decided: make(chan struct{}),
		freed:   make(chan struct{}),
	}
	l.slots[key] = s
	data = bytes.Clone(data)
	l.wg.Go(func() { l.run(ctx, s, data) })
	return s
}

// run is a slot's attempt: it acquires, then publishes the grant, or
// deletes what it leaves behind and publishes the error.
func (l *Locker) run(ctx context.Context, s *slot, data []byte) {
	defer s.cancel()
	n, err := l.acquire(ctx, s, data)
	if err == nil {
		if err = l.publishGrant(s, n); err == nil {
			return
		}
	}
	if n != nil {
		cctx, cancel := context.WithTimeout(l.reap, l.opts.cleanupTimeout)
		rerr := l.remove(cctx, n)
		cancel()
		if rerr != nil && !gone(rerr) {
			l.publish(s, err)
			l.opts.log.Warn("zklock: contender node not deleted yet; retrying in the background",
				"lock", s.name, "guid", s.guid, "node", n.name, "err", rerr)
			if rerr := l.remove(l.reap, n); rerr != nil && !gone(rerr) {
				l.opts.log.Error("zklock: contender node left until its session ends",
					"lock", s.name, "guid", s.guid, "node", n.name, "err", rerr)
			}
			l.free(s)
			return
		}
	}
	l.publish(s, err)
	l.free(s)
}

// publishGrant makes n the slot's grant, unless the attempt was cancelled
// meanwhile: every caller left, or Close came.
func (l *Locker) publishGrant(s *slot, n *node) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case s.cancelled:
		return context.Canceled
	}
	g := newGrant(l, s, n)
	s.grant = g
	close(s.decided)
	l.wg.Go(func() { g.monitor(n.own) })
	return nil
}

func (l *Locker) publish(s *slot, err error) {
	l.mu.Lock()
	s.err = err
	close(s.decided)
	l.mu.Unlock()
}

// free removes the slot once nothing of it is left in ZooKeeper.
func (l *Locker) free(s *slot) {
	l.mu.Lock()
	if l.slots[s.key] == s {
		delete(l.slots, s.key)
	}
	l.mu.Unlock()
	close(s.freed)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// acquire is the recipe. It returns the node once it holds the lock, with
// its stat and a watch on it; or an error, and the node the attempt
// leaves behind (nil if none), which the caller deletes.
func (l *Locker) acquire(ctx context.Context, s *slot, data []byte) (*node, error) {
	dir := l.dir(s.name)
	notify, unsubscribe := l.conn.Subscribe()
	defer unsubscribe()
	var (
		n *node
		q []contender // the queue as last read; nil: read it again
		b backoff
	)
	for {
		if ctx.Err() != nil {
			return n, l.ctxErr(ctx)
		}
		if n == nil {
			var err error
			if n, q, err = l.enqueue(ctx, dir, s.guid, data); err != nil {
				return n, err
			}
			b.reset()
		}
		if q == nil {
			l.childrenReads.Add(1)
			children, err := l.children(ctx, dir)
			switch {
			case err == nil:
				q = queue(children)
			case errors.Is(err, zk.ErrNoNode):
				q = []contender{}
			case transient(err) || ctx.Err() != nil:
				if b.pause(ctx) != nil {
					return n, l.ctxErr(ctx)
				}
				continue
			default:
				return n, fmt.Errorf("zklock: reading %s: %w", dir, err)
			}
			b.reset()
		}
		i := slices.IndexFunc(q, func(c contender) bool { return c.node == n.name })
		if i < 0 {
			if l.sessionEnded(n.stat.EphemeralOwner) {
				// The node went with its session: queue again in the new one.
				l.opts.log.Info("zklock: session ended while waiting; queueing again", "lock", s.name, "guid", s.guid)
				n, q = nil, nil
				continue
			}
			return nil, fmt.Errorf("%w: %s, while waiting for %q", ErrDeleted, n.path(), s.name)
		}
		if i == 0 {
			// Held. Make sure of the node, and watch it for Grant.Lost.
			if n.own != nil && isFired(n.own) {
				n.own = nil
			}
			if n.own == nil {
				r, err := l.getW(ctx, n.path())
				switch {
				case err == nil:
					n.data, n.stat, n.own = r.data, r.stat, r.watch
				case errors.Is(err, zk.ErrNoNode):
					q = []contender{}
					continue
				case transient(err) || ctx.Err() != nil:
					if b.pause(ctx) != nil {
						return n, l.ctxErr(ctx)
					}
					continue
				default:
					return n, fmt.Errorf("zklock: reading %s: %w", n.path(), err)
				}
			}
			return n, nil
		}
		if !s.wait {
			return n, fmt.Errorf("%w: %q", ErrLocked, s.name)
		}

		// Wait for the predecessor, and only for it: a release wakes one waiter.
		pred, err := l.getW(ctx, dir+"/"+q[i-1].node)
		switch {
		case err == nil:
		case errors.Is(err, zk.ErrNoNode):
			q = nil // gone between the reads: read the queue again
			continue
		case transient(err) || ctx.Err() != nil:
			if b.pause(ctx) != nil {
				return n, l.ctxErr(ctx)
			}
			q = nil
			continue
		default:
			return n, fmt.Errorf("zklock: watching %s: %w", q[i-1].node, err)
		}
		b.reset()
	wait:
		for {
			select {
			case ev := <-pred.watch:
				if ev.Type != zk.EventNotWatching {
					l.wakeups.Add(1)
				}
				if ev.Type != zk.EventNodeDataChanged {
					q = nil // the predecessor went (or the watch with the session): read the queue once
				}
				break wait
			case <-notify:
				if l.sessionEnded(n.stat.EphemeralOwner) {
					q = nil
					break wait
				}
				// A disconnection, or a reconnection to the same session:
				// the node and the watch are still there.
			case <-ctx.Done():
				return n, l.ctxErr(ctx)
			}
		}
	}
}

func isFired(ch <-chan zk.Event) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// enqueue finds this session's contender for guid in dir, or creates it.
// It returns the node (with its stat) and the queue as read with the node
// in it, or nil when that read failed. On an error it returns the node the
// caller must delete, if there may be one.
func (l *Locker) enqueue(ctx context.Context, dir, guid string, data []byte) (*node, []contender, error) {
	var (
		b       backoff
		created int  // creates that failed for want of the directory
		unknown bool // a create may have succeeded unheard
	)
	left := func() *node {
		if unknown {
			return &node{dir: dir, guid: guid} // deleted by guid
		}
		return nil
	}
	for {
		if ctx.Err() != nil {
			return left(), nil, l.ctxErr(ctx)
		}
		// Protected create: first look for a node of ours with this guid
		// (a retried acquire, or a create whose reply was lost).
		l.childrenReads.Add(1)
		children, err := l.children(ctx, dir)
		var q []contender
		switch {
		case err == nil:
			q = queue(children)
		case errors.Is(err, zk.ErrNoNode):
		case transient(err) || ctx.Err() != nil:
			if b.pause(ctx) != nil {
				return left(), nil, l.ctxErr(ctx)
			}
			continue
		default:
			return left(), nil, fmt.Errorf("zklock: reading %s: %w", dir, err)
		}
		n, err := l.adopt(ctx, dir, guid, q)
		switch {
		case n != nil:
			return n, q, nil
		case err == nil:
		case transient(err) || ctx.Err() != nil:
			if b.pause(ctx) != nil {
				return left(), nil, l.ctxErr(ctx)
			}
			continue
		default:
			return left(), nil, err
		}
		speculate := len(q) == 0 // likely the holder at once: watch the node from the start

		// Not abandoned when ctx ends (see call): it ends by itself.
		p, err := l.zk.Create(dir+"/"+contenderPrefix(guid), data, zk.FlagEphemeralSequential, l.acl)
		switch {
		case err == nil:
		case errors.Is(err, zk.ErrNoNode):
			// No directory: a new lock, or an empty one the server swept
			// away in between. Make it and try again.
			if created++; created > 5 {
				return left(), nil, fmt.Errorf("zklock: %s keeps disappearing: %w", dir, err)
			}
			if err := l.makeDir(ctx, dir); err != nil && !transient(err) && ctx.Err() == nil {
				return left(), nil, err
			}
			continue
		case errors.Is(err, zk.ErrConnectionClosed):
			unknown = true // sent, unanswered: the lookup above finds it if it was made
			if b.pause(ctx) != nil {
				return left(), nil, l.ctxErr(ctx)
			}
			continue
		case transient(err):
			// Never sent (no server), or the session expired and the node,
			// if made, with it.
			if b.pause(ctx) != nil {
				return left(), nil, l.ctxErr(ctx)
			}
			continue
		default:
			return left(), nil, fmt.Errorf("zklock: creating a contender in %s: %w", dir, err)
		}
		c, ok := parseContender(path.Base(p))
		if !ok {
			return &node{dir: dir, guid: guid, name: path.Base(p)}, nil, fmt.Errorf("zklock: created %s, which is not a contender name", p)
		}
		n = &node{dir: dir, guid: guid, name: c.node, seq: c.seq, data: data}
		q, err = l.readCreated(ctx, n, speculate)
		if errors.Is(err, zk.ErrNoNode) {
			continue // gone already (its session expired): queue again
		}
		if err != nil {
			return n, nil, err
		}
		return n, q, nil
	}
}

// adopt returns this session's node for guid among q, if there is one.
func (l *Locker) adopt(ctx context.Context, dir, guid string, q []contender) (*node, error) {
	var n *node
	for _, c := range q {
		if c.guid != guid {
			continue
		}
		sid := l.conn.Session()
		if sid == 0 {
			return nil, errNoSession
		}
		p := dir + "/" + c.node
		r, err := l.get(ctx, p)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue
		case err != nil:
			return nil, err
		case r.stat.EphemeralOwner != sid:
			return nil, fmt.Errorf("%w: %s belongs to session %#x", ErrGUIDConflict, p, r.stat.EphemeralOwner)
		case n == nil:
			n = &node{dir: dir, guid: guid, name: c.node, seq: c.seq, stat: r.stat, data: r.data}
		default:
			// A second node of ours with this guid, which this package
			// never makes: delete it before it holds the lock for no one.
			extra := &node{dir: dir, guid: guid, name: c.node, seq: c.seq, stat: r.stat}
			if err := l.remove(ctx, extra); err != nil && !gone(err) {
				return nil, err
			}
		}
	}
	return n, nil
}

// readCreated reads the queue and the stat of a node just created, in
// parallel (go-zookeeper pipelines them). With watch, the node is watched
// too: a contender that found no one queued is most likely the holder,
// and then needs no further read. The queue is nil if its read failed; an
// error means the stat could not be read (ErrNoNode: the node is gone).
func (l *Locker) readCreated(ctx context.Context, n *node, watch bool) ([]contender, error) {
	var (
		wg       sync.WaitGroup
		children []string
		cerr     error
	)
	l.childrenReads.Add(1)
	wg.Go(func() { children, cerr = l.children(ctx, n.dir) })
	defer wg.Wait()
	var b backoff
	for {
		var r nodeRead
		var err error
		if watch {
			r, err = l.getW(ctx, n.path())
		} else {
			r, err = call(ctx, l, func() (nodeRead, error) {
				ok, stat, err := l.zk.Exists(n.path())
				if err == nil && !ok {
					err = zk.ErrNoNode
				}
				return nodeRead{stat: stat}, err
			})
		}
		switch {
		case err == nil:
			n.stat, n.own = r.stat, r.watch
			wg.Wait()
			if cerr != nil {
				return nil, nil
			}
			return queue(children), nil
		case errors.Is(err, zk.ErrNoNode):
			return nil, err
		case transient(err) && ctx.Err() == nil:
			if b.pause(ctx) != nil {
				return nil, l.ctxErr(ctx)
			}
		case ctx.Err() != nil:
			return nil, l.ctxErr(ctx)
		default:
			return nil, fmt.Errorf("zklock: reading %s: %w", n.path(), err)
		}
	}
}
