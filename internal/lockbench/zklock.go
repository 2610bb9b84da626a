package lockbench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
)

// zklockSide runs the handoff on zklock.Lockers in this process — the
// recipe the replica runs, without gRPC or leases — where Stats counts the
// wake-ups. The holder queues on a Locker and session of its own, the
// waiters on another, so that ZooKeeper's watch table shows each waiter's
// watch on its predecessor apart from the holder's watch on its own node.
type zklockSide struct {
	holderConn, waitConn *zkconn.Conn
	holders, waits       *zklock.Locker
}

var _ handoffSide = (*zklockSide)(nil)

func startZKLock(setup context.Context, cfg Config) (_ *zklockSide, err error) {
	s := &zklockSide{}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.stop())
		}
	}()
	for _, c := range []**zkconn.Conn{&s.holderConn, &s.waitConn} {
		if *c, err = zkconn.Dial(setup, cfg.ZK, cfg.SessionTimeout, cfg.Logger); err != nil {
			return nil, dialError(setup, cfg, err)
		}
	}
	if s.holders, err = zklock.New(s.holderConn, zklock.WithLogger(cfg.Logger)); err != nil {
		return nil, fmt.Errorf("lockbench: %s: %w", SideZKLock, err)
	}
	if s.waits, err = zklock.New(s.waitConn, zklock.WithLogger(cfg.Logger)); err != nil {
		return nil, fmt.Errorf("lockbench: %s: %w", SideZKLock, err)
	}
	return s, nil
}

func (s *zklockSide) name() string { return SideZKLock }

func (s *zklockSide) handoff(ctx context.Context, name string, n int, timeout time.Duration) ([]time.Duration, error) {
	return runHandoff(ctx, zklockLocks{s}, queueCheck{locker: s.waits, conn: s.waitConn}, name, n, timeout)
}

// wakeups sums the Lockers' Stats.Wakeups.
func (s *zklockSide) wakeups() uint64 {
	return s.holders.Stats().Wakeups + s.waits.Stats().Wakeups
}

// stop closes the Lockers, then their sessions.
func (s *zklockSide) stop() error {
	var errs []error
	for _, l := range []*zklock.Locker{s.holders, s.waits} {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	for _, c := range []*zkconn.Conn{s.holderConn, s.waitConn} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// zklockLocks is the recipe as handoff runs use it: the first acquire of
// a run (the holder's) on the holders' Locker, the others on the waiters'.
type zklockLocks struct{ s *zklockSide }

// holder is a grant and the Locker that made it.
type holder struct {
	l *zklock.Locker
	g *zklock.Grant
}

func (z zklockLocks) hold(ctx context.Context, name string) (holder, error) {
	return acquireOn(ctx, z.s.holders, name)
}

func (z zklockLocks) wait(ctx context.Context, name string) (holder, error) {
	return acquireOn(ctx, z.s.waits, name)
}

func acquireOn(ctx context.Context, l *zklock.Locker, name string) (holder, error) {
	g, err := l.Acquire(ctx, name, zklock.NewGUID(), nil, true)
	if err != nil {
		return holder{}, fmt.Errorf("acquire %q: %w", name, err)
	}
	return holder{l, g}, nil
}

func (z zklockLocks) release(ctx context.Context, h holder) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := h.l.Release(ctx, h.g); err != nil {
		return fmt.Errorf("release %q: %w", h.g.Name(), err)
	}
	return nil
}

func (z zklockLocks) token(h holder) uint64 { return uint64(h.g.Token()) }
