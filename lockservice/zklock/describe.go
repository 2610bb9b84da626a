package zklock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Contender is one contender node of a lock.
type Contender struct {
	// GUID is the contender's GUID, as given to Acquire.
	GUID string
	// Path is the node's path.
	Path string
	// Seq is the node's sequence number: its place in the queue.
	Seq int64
	// Token is the node's creation zxid, the fencing token of its grant.
	Token int64
	// Data is what Acquire stored in the node.
	Data []byte
	// Created is when the node was created, by the ZooKeeper server's
	// clock.
	Created time.Time
	// Session is the ZooKeeper session that owns the node (its
	// ephemeralOwner); the node goes when the session does.
	Session int64
}

func contenderOf(path, guid string, seq int64, stat *zk.Stat, data []byte) Contender {
	return Contender{
		GUID:    guid,
		Path:    path,
		Seq:     seq,
		Token:   stat.Czxid,
		Data:    bytes.Clone(data),
		Created: time.UnixMilli(stat.Ctime),
		Session: stat.EphemeralOwner,
	}
}

// Description is one reading of a lock's queue.
type Description struct {
	// Name is the lock's name.
	Name string
	// Holder is the contender with the lowest sequence: the holder, or
	// the waiter about to learn it holds the lock.
	Holder Contender
	// Waiters are the other contenders, in the order they are to hold it.
	Waiters []Contender
}

// Describe reads the queue of the lock name: its holder and its waiters in
// order. A lock with no contender is ErrNoLock. It retries while ZooKeeper
// is unreachable, until ctx ends.
func (l *Locker) Describe(ctx context.Context, name string) (Description, error) {
	if err := ValidateName(name); err != nil {
		return Description{}, err
	}
	if err := l.enter(); err != nil {
		return Description{}, err
	}
	defer l.wg.Done()
	dir := l.dir(name)
	children, err := read(ctx, l, func() ([]string, error) {
		children, _, err := l.zk.Children(dir)
		return children, err
	})
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return Description{}, fmt.Errorf("%w: %q", ErrNoLock, name)
	case err != nil:
		return Description{}, fmt.Errorf("zklock: describe %q: %w", name, err)
	}
	q := queue(children)
	found := make([]*Contender, len(q))
	err = each(len(q), func(i int) error {
		p := dir + "/" + q[i].node
		r, err := read(ctx, l, func() (nodeRead, error) {
			data, stat, err := l.zk.Get(p)
			return nodeRead{data: data, stat: stat}, err
		})
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return nil // gone meanwhile
		case err != nil:
			return err
		}
		c := contenderOf(p, q[i].guid, q[i].seq, r.stat, r.data)
		found[i] = &c
		return nil
	})
	if err != nil {
		return Description{}, fmt.Errorf("zklock: describe %q: %w", name, err)
	}
	d := Description{Name: name}
	for _, c := range found {
		switch {
		case c == nil:
		case d.Holder.Path == "":
			d.Holder = *c
		default:
			d.Waiters = append(d.Waiters, *c)
		}
	}
	if d.Holder.Path == "" {
		return Description{}, fmt.Errorf("%w: %q", ErrNoLock, name)
	}
	return d, nil
}

// List returns the names of the locks that start with prefix ("" for
// all) and have at least one contender, sorted. prefix is a string prefix
// of the name, not of whole segments: "ord" matches "orders/42". It
// retries while ZooKeeper is unreachable, until ctx ends.
func (l *Locker) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.wg.Done()
	root := l.opts.root
	children, err := read(ctx, l, func() ([]string, error) {
		children, _, err := l.zk.Children(root)
		return children, err
	})
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return []string{}, nil
	case err != nil:
		return nil, fmt.Errorf("zklock: list %q: %w", prefix, err)
	}
	var names, dirs []string
	for _, child := range children {
		if name, err := unescapeName(child); err == nil && strings.HasPrefix(name, prefix) {
			names, dirs = append(names, name), append(dirs, child)
		}
	}
	// A directory lingers empty until the server sweeps it: count contenders.
	busy := make([]bool, len(dirs))
	err = each(len(dirs), func(i int) error {
		kids, err := read(ctx, l, func() ([]string, error) {
			kids, _, err := l.zk.Children(root + "/" + dirs[i])
			return kids, err
		})
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return nil
		case err != nil:
			return err
		}
		busy[i] = len(queue(kids)) > 0
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("zklock: list %q: %w", prefix, err)
	}
	out := []string{}
	for i, name := range names {
		if busy[i] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// each runs fn(0) … fn(n-1), up to 16 at once (go-zookeeper pipelines
// their requests on the one connection), and returns the first error.
func each(n int, fn func(i int) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs error
	)
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				mu.Lock()
				if errs == nil {
					errs = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}
