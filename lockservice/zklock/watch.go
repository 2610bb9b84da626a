package zklock

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-zookeeper/zk"
)

// End is how a contender that held a lock ended, as its guid's claim
// records it (see HowEnded).
type End int

// How a contender ended.
const (
	// EndLost: nothing was recorded. The node went with its session (its
	// Locker's process died or lost its session), was deleted by another
	// party, or was deleted by Close.
	EndLost End = iota + 1
	// EndReleased: Release deleted it.
	EndReleased
	// EndExpired: Expire deleted it.
	EndExpired
	// EndWithdrawn: the claim went with the node — Withdraw, or an
	// attempt that granted nothing (a wait cancelled as it was granted) —
	// so the grant was never handed out. A claim older than the retention
	// (see WithClaimRetention) is gone too, and reads the same.
	EndWithdrawn
)

func (e End) String() string {
	switch e {
	case EndLost:
		return "lost"
	case EndReleased:
		return "released"
	case EndExpired:
		return "expired"
	case EndWithdrawn:
		return "withdrawn"
	}
	return fmt.Sprintf("End(%d)", int(e))
}

// HowEnded reads how the contender c, whose node is gone, ended: the
// reason its guid's claim records. Release and Expire write it in the
// multi-op that deletes the node, so a reader that has seen the node gone
// reads it (ZooKeeper's reads of one session are in order). A claim made
// after c's node (its guid acquired anew after a withdrawal) is not c's,
// and reads as EndWithdrawn. It retries while ZooKeeper is unreachable,
// until ctx ends.
func (l *Locker) HowEnded(ctx context.Context, c Contender) (End, error) {
	if err := ValidateGUID(c.GUID); err != nil {
		return 0, err
	}
	if err := l.enter(); err != nil {
		return 0, err
	}
	defer l.wg.Done()
	claim := l.claimPath(c.GUID)
	r, err := read(ctx, l, func() (nodeRead, error) {
		data, stat, err := l.zk.Get(claim)
		return nodeRead{data: data, stat: stat}, err
	})
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return EndWithdrawn, nil
	case err != nil:
		return 0, fmt.Errorf("zklock: reading the claim of %s: %w", c.GUID, err)
	case r.stat.Czxid > c.Token:
		return EndWithdrawn, nil
	}
	rec, _ := decodeClaim(r.data)
	switch rec.Reason {
	case reasonReleased:
		return EndReleased, nil
	case reasonExpired:
		return EndExpired, nil
	}
	return EndLost, nil
}

// Locks reads the names of the locks under the root that start with
// prefix: every lock directory, with or without contenders (an empty one
// lingers until ZooKeeper sweeps it), in no order. With watch, it also
// sets a children watch on the root, which fires once, when a lock's
// directory is made or swept (or with EventNotWatching, when the session
// ends); the root is made if it does not exist yet, so that it can be
// watched. Unlike List it reads the root only, and it does not retry: a
// caller that watches reads again when it sees fit.
func (l *Locker) Locks(ctx context.Context, prefix string, watch bool) ([]string, <-chan zk.Event, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, nil, err
	}
	if err := l.enter(); err != nil {
		return nil, nil, err
	}
	defer l.wg.Done()
	type result struct {
		children []string
		ch       <-chan zk.Event
	}
	root := l.opts.root
	readRoot := func() (result, error) {
		if !watch {
			children, _, err := l.zk.Children(root)
			return result{children: children}, err
		}
		children, _, ch, err := l.zk.ChildrenW(root)
		return result{children, ch}, err
	}
	r, err := call(ctx, l, readRoot)
	if errors.Is(err, zk.ErrNoNode) {
		if !watch {
			return []string{}, nil, nil
		}
		if err := l.makeRoot(ctx); err != nil {
			return nil, nil, err
		}
		r, err = call(ctx, l, readRoot)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("zklock: reading %s: %w", root, err)
	}
	names := []string{}
	for _, child := range r.children {
		if name, err := unescapeName(child); err == nil && strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	return names, r.ch, nil
}

// Holder reads the holder of the lock name — its contender with the
// lowest sequence whose node is still there — or nil if it has none. With
// watch, it also sets a children watch on the lock's directory, which
// fires once, when a contender joins or leaves or the directory goes (or
// with EventNotWatching, when the session ends): one watch per lock,
// never one per contender. A lock whose directory is gone is ErrNoLock,
// and no watch is set. It does not retry.
func (l *Locker) Holder(ctx context.Context, name string, watch bool) (*Contender, <-chan zk.Event, error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, err
	}
	if err := l.enter(); err != nil {
		return nil, nil, err
	}
	defer l.wg.Done()
	type result struct {
		children []string
		ch       <-chan zk.Event
	}
	dir := l.dir(name)
	r, err := call(ctx, l, func() (result, error) {
		if !watch {
			children, _, err := l.zk.Children(dir)
			return result{children: children}, err
		}
		children, _, ch, err := l.zk.ChildrenW(dir)
		return result{children, ch}, err
	})
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return nil, nil, fmt.Errorf("%w: %q", ErrNoLock, name)
	case err != nil:
		return nil, nil, fmt.Errorf("zklock: reading %s: %w", dir, err)
	}
	for _, c := range queue(r.children) {
		p := dir + "/" + c.node
		n, err := l.get(ctx, p)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue // gone since: the watch fires for it
		case err != nil:
			return nil, r.ch, fmt.Errorf("zklock: reading %s: %w", p, err)
		}
		h := contenderOf(p, c.guid, c.seq, n.stat, n.data)
		return &h, r.ch, nil
	}
	return nil, r.ch, nil
}
