package zklock

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/go-zookeeper/zk"
)

// slot is the one attempt, then the grant, of a (name, guid) pair in a
// Locker. Acquire calls with the same pair share it, so that a retried
// acquire waits for, or returns, the same node; the attempt is abandoned
// only when every one of them has gone.
type slot struct {
	key, name, guid string
	wait            bool   // the attempt waits; false for a try-lock
	id              string // the attempt's, in the claim it makes
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
	stat      *zk.Stat // nil until known
	data      []byte
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
// A guid held by another session fails with ErrGUIDConflict. A guid whose
// contender ended (released, lost or deleted), here or at any Locker
// sharing the claim root, fails with ErrClaimEnded for the claim
// retention; one claimed for another lock, with ErrGUIDReused. An Acquire
// that ends without a grant (an error, a cancelled wait, a failed
// try-lock) frees its guid for another try.
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
		key: key, name: name, guid: guid, wait: wait, id: rand.Text(), cancel: cancel,
		decided: make(chan struct{}),
		freed:   make(chan struct{}),
	}
	l.slots[key] = s
	data = bytes.Clone(data)
	l.wg.Go(func() { l.run(ctx, s, data) })
	return s
}

// attempt is what a slot's attempt knows while it runs.
type attempt struct {
	*slot
	dir   string
	data  []byte
	claim claimState
}

// claimState is what an attempt knows of its guid's claim.
type claimState struct {
	ours    bool  // made by this attempt, or adopted with its contender
	czxid   int64 // the claim node's, to tell it from one made again
	version int32
}

// run is a slot's attempt: it acquires, then publishes the grant, or
// deletes what it leaves behind — its node and its claim, since it granted
// nothing — and publishes the error.
func (l *Locker) run(ctx context.Context, s *slot, data []byte) {
	defer s.cancel()
	a := &attempt{slot: s, dir: l.dir(s.name), data: data}
	n, err := l.acquire(ctx, a)
	if err == nil {
		if err = l.publishGrant(s, n); err == nil {
			return
		}
	}
	if n != nil || a.claim.ours {
		cctx, cancel := context.WithTimeout(l.reap, l.opts.cleanupTimeout)
		rerr := l.abandon(cctx, a, n)
		cancel()
		if rerr != nil && !gone(rerr) {
			l.publish(s, err)
			l.opts.log.Warn("zklock: contender node not deleted yet; retrying in the background",
				"lock", s.name, "guid", s.guid, "err", rerr)
			if rerr := l.abandon(l.reap, a, n); rerr != nil && !gone(rerr) {
				l.opts.log.Error("zklock: contender node left until its session ends",
					"lock", s.name, "guid", s.guid, "err", rerr)
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
	l.wg.Go(g.monitor)
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
// its stat; or an error, and the node the attempt leaves behind (nil if
// none), which the caller deletes.
func (l *Locker) acquire(ctx context.Context, a *attempt) (*node, error) {
	dir := a.dir
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
			if n, q, err = l.enqueue(ctx, a); err != nil {
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
				l.opts.log.Info("zklock: session ended while waiting; queueing again", "lock", a.name, "guid", a.guid)
				n, q = nil, nil
				continue
			}
			return nil, fmt.Errorf("%w: %s, while waiting for %q", ErrDeleted, n.path(), a.name)
		}
		if i == 0 {
			// Held. The grant's monitor watches the node for Lost: the
			// read that showed it first also showed it there.
			return n, nil
		}
		if !a.wait {
			return n, fmt.Errorf("%w: %q", ErrLocked, a.name)
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

// enqueue creates the attempt's contender and its guid's claim, in one
// multi-op, or finds this session's contender for the guid. It returns
// the node (with its stat) and the queue if it is known without a read
// (the node is alone: it holds the lock; or a read was needed anyway),
// else nil. On an error it returns the node the caller must delete, if
// there may be one.
//
// The multi-op creates the claim (or, queueing again under a claim of the
// attempt's own, writes it with its version), creates the ephemeral
// sequential contender, and writes the lock's directory, whose stat in the
// answer gives what the create does not: the transaction's zxid (the
// contender's czxid, the fencing token), its time, and how many
// contenders the directory has. So a contender that finds the lock free
// holds it after one round trip.
func (l *Locker) enqueue(ctx context.Context, a *attempt) (*node, []contender, error) {
	var (
		b       backoff
		made    int  // creates that failed for want of a parent
		churn   int  // claims that changed under the attempt
		unknown bool // a create may have succeeded unheard
	)
	left := func() *node {
		if unknown {
			return &node{dir: a.dir, guid: a.guid} // deleted by guid
		}
		return nil
	}
	pause := func() (*node, []contender, error) {
		if b.pause(ctx) != nil {
			return left(), nil, l.ctxErr(ctx)
		}
		return nil, nil, nil
	}
	claim := l.claimPath(a.guid)
	for {
		if ctx.Err() != nil {
			return left(), nil, l.ctxErr(ctx)
		}
		sid := l.conn.Session()
		if sid == 0 {
			if n, q, err := pause(); err != nil {
				return n, q, err
			}
			continue
		}
		record, err := encodeClaim(claimRecord{Lock: a.name, Dir: a.dir, Attempt: a.id, Session: fmt.Sprintf("%#x", sid)})
		if err != nil {
			return left(), nil, err
		}
		again := a.claim.ours
		var first any = &zk.CreateRequest{Path: claim, Data: record, Acl: l.acl, Flags: zk.FlagPersistent}
		if again {
			first = &zk.SetDataRequest{Path: claim, Data: record, Version: a.claim.version}
		}
		// Not abandoned when ctx ends (see call): it ends by itself.
		res, err := l.zk.Multi(first,
			&zk.CreateRequest{Path: a.dir + "/" + contenderPrefix(a.guid), Data: a.data, Acl: l.acl, Flags: zk.FlagEphemeralSequential},
			&zk.SetDataRequest{Path: a.dir, Version: -1})
		switch {
		case err == nil:
		case errors.Is(err, zk.ErrConnectionClosed), errors.Is(err, zk.ErrSessionExpired):
			// Sent, unanswered: the claim says so if it was made (the
			// contender may have gone with an expired session, the claim
			// not).
			unknown = true
			if n, q, err := pause(); err != nil {
				return n, q, err
			}
			continue
		case transient(err):
			// Not done: no server, no session, or the session moved.
			if n, q, err := pause(); err != nil {
				return n, q, err
			}
			continue
		}
		op := failedOp(res)
		switch {
		case err == nil:
		case op == 1 && errors.Is(err, zk.ErrNoNode), op == 0 && !again && errors.Is(err, zk.ErrNoNode):
			// No directory (a new lock, or an empty one the server swept
			// away in between), or no claim shard yet. Make it and retry.
			parent := a.dir
			if op == 0 {
				parent = path.Dir(claim)
			}
			if made++; made > 5 {
				return left(), nil, fmt.Errorf("zklock: %s keeps disappearing: %w", parent, err)
			}
			mk := l.makeDir
			if op == 0 {
				mk = l.makeShards
			}
			if err := mk(ctx, parent); err != nil && !transient(err) && ctx.Err() == nil {
				return left(), nil, err
			}
			continue
		case op == 0 && again && (errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrBadVersion)),
			op == 0 && !again && errors.Is(err, zk.ErrNodeExists):
			if churn++; churn > 10 {
				return left(), nil, fmt.Errorf("zklock: the claim of %s keeps changing: %w", a.guid, err)
			}
			if again {
				a.claim = claimState{} // swept or changed: look again
				continue
			}
			// The guid was acquired before.
			n, q, err := l.resolve(ctx, a, claim)
			switch {
			case n != nil:
				return n, q, nil
			case err == nil:
				continue // the claim is the attempt's own, or gone: create again
			case transient(err) || ctx.Err() != nil:
				if n, q, err := pause(); err != nil {
					return n, q, err
				}
				continue
			}
			return left(), nil, err
		default:
			return left(), nil, fmt.Errorf("zklock: creating a contender in %s: %w", a.dir, err)
		}
		unknown = false

		p := res[1].String
		c, ok := parseContender(path.Base(p))
		dst := res[2].Stat
		if !ok || dst == nil || (again && res[0].Stat == nil) {
			return &node{dir: a.dir, guid: a.guid, name: path.Base(p)}, nil, fmt.Errorf("zklock: created %s, which is not a contender name, or no stat came back", p)
		}
		n := &node{dir: a.dir, guid: a.guid, name: c.node, seq: c.seq, data: a.data, stat: &zk.Stat{
			// The directory was written in the same transaction.
			Czxid: dst.Mzxid, Mzxid: dst.Mzxid, Ctime: dst.Mtime, Mtime: dst.Mtime,
			Pzxid: dst.Mzxid, EphemeralOwner: sid, DataLength: int32(len(a.data)),
		}}
		if again {
			if res[0].Stat.Czxid != a.claim.czxid {
				// The claim was swept and made again by another attempt
				// between the read that found it ours and this write: the
				// node is not ours to keep.
				if err := l.remove(ctx, n); err != nil && !gone(err) {
					return n, nil, err
				}
				a.claim = claimState{}
				continue
			}
			a.claim.version = res[0].Stat.Version
		} else {
			a.claim = claimState{ours: true, czxid: dst.Mzxid}
		}
		if l.conn.Session() != sid {
			// Which session made the node is not certain: ask.
			r, err := read(ctx, l, func() (nodeRead, error) {
				ok, stat, err := l.zk.Exists(n.path())
				if err == nil && !ok {
					err = zk.ErrNoNode
				}
				return nodeRead{stat: stat}, err
			})
			switch {
			case errors.Is(err, zk.ErrNoNode):
				continue // gone with its session: queue again
			case err != nil:
				return n, nil, err
			}
			n.stat = r.stat
		}
		if dst.NumChildren == 1 {
			return n, []contender{c}, nil // alone: the holder
		}
		return n, nil, nil
	}
}

// failedOp returns the index of the op that failed a multi-op, or -1. The
// ops before it report success and those after it a "runtime
// inconsistency", so it is the first with an error.
func failedOp(res []zk.MultiResponse) int {
	return slices.IndexFunc(res, func(r zk.MultiResponse) bool { return r.Error != nil })
}

// resolve handles a create that found the guid's claim: the guid was
// acquired before. This session's contender for it is adopted (with its
// claim); another session's is ErrGUIDConflict. With none, the claim
// tells: another lock's is ErrGUIDReused; the attempt's own (its node went
// with a session) is recorded, for the caller to queue again under it;
// anyone else's is ErrClaimEnded. A claim gone meanwhile returns nothing:
// the caller creates again.
func (l *Locker) resolve(ctx context.Context, a *attempt, claim string) (*node, []contender, error) {
	l.childrenReads.Add(1)
	children, err := l.children(ctx, a.dir)
	var q []contender
	switch {
	case err == nil:
		q = queue(children)
	case errors.Is(err, zk.ErrNoNode):
	default:
		return nil, nil, err
	}
	n, err := l.adopt(ctx, a.dir, a.guid, q)
	if err != nil {
		return nil, nil, err
	}
	r, err := l.get(ctx, claim)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		if n != nil {
			a.claim = claimState{} // a node without a claim: adopt it all the same
			return n, q, nil
		}
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	rec, ok := decodeClaim(r.data)
	switch {
	case n != nil:
		a.claim = claimState{ours: true, czxid: r.stat.Czxid, version: r.stat.Version}
		return n, q, nil
	case ok && rec.Dir != a.dir:
		return nil, nil, fmt.Errorf("%w: %s is claimed for lock %q", ErrGUIDReused, a.guid, rec.Lock)
	case ok && rec.Attempt == a.id:
		a.claim = claimState{ours: true, czxid: r.stat.Czxid, version: r.stat.Version}
		return nil, nil, nil
	}
	return nil, nil, fmt.Errorf("%w: %s, for lock %q", ErrClaimEnded, a.guid, a.name)
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
