package lockbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/internal/zkserver"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
)

// handoffLocks is what a handoff run does with a side's locks; H is a
// held lock.
type handoffLocks[H any] interface {
	// hold acquires the lock for the run's holder, wait for a waiter;
	// both block until granted.
	hold(ctx context.Context, name string) (H, error)
	wait(ctx context.Context, name string) (H, error)
	// release releases a held lock, to the end even if ctx ends.
	release(ctx context.Context, h H) error
	// token is the grant's fencing token.
	token(h H) uint64
}

// queuePoll is how often a handoff run reads the queue while its waiters
// line up.
const queuePoll = 10 * time.Millisecond

// runHandoff takes the lock name for a holder, queues n waiters behind it
// (each its own acquire in flight), waits until all n are in line and
// watching (queueCheck), then releases the holder; the waiter granted
// next is released at once, and so on through all n. It returns the n
// handoffs' times: from the release sent to the next grant received. The
// run, queueing included, must end within timeout. However it ends,
// nothing it acquired is left held and no waiter is left in line.
func runHandoff[H any](ctx context.Context, l handoffLocks[H], q queueCheck, name string, n int, timeout time.Duration) (_ []time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("lockbench: handoff run on %q not done within %v: %w", name, timeout, err)
		}
		return fmt.Errorf("%w: handoff run on %q: %w", ErrOpsFailed, name, err)
	}
	cur, err := l.hold(ctx, name)
	if err != nil {
		return nil, fail(err)
	}
	held := true // cur is held

	type grant struct {
		h   H
		at  time.Time
		err error
	}
	granted := make(chan grant, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			h, err := l.wait(ctx, name)
			granted <- grant{h, time.Now(), err}
		})
	}
	defer func() {
		cancel() // waiters still in line leave it, deleting their nodes
		wg.Wait()
		close(granted)
		var errs []error
		if held {
			errs = append(errs, l.release(ctx, cur))
		}
		for g := range granted {
			if g.err == nil {
				errs = append(errs, l.release(ctx, g.h))
			}
		}
		if rerr := errors.Join(errs...); rerr != nil {
			err = errors.Join(err, fmt.Errorf("lockbench: handoff run on %q: cleaning up: %w", name, rerr))
		}
	}()

	// Wait until every waiter is in line, watching its predecessor.
	for {
		ok, err := q.queued(ctx, name, n)
		if err != nil {
			return nil, fail(err)
		}
		if ok {
			break
		}
		select {
		case g := <-granted:
			if g.err != nil {
				return nil, fail(g.err)
			}
			granted <- g // released with the others below
			return nil, fmt.Errorf("%w: %q granted to a waiter while its holder held it", ErrExclusion, name)
		case <-ctx.Done():
			return nil, fail(ctx.Err())
		case <-time.After(queuePoll):
		}
	}

	times := make([]time.Duration, n)
	last := l.token(cur)
	for i := range n {
		sent := time.Now()
		err := l.release(ctx, cur)
		held = false
		if err != nil {
			return nil, fail(err)
		}
		select {
		case g := <-granted:
			if g.err != nil {
				return nil, fail(g.err)
			}
			cur, held = g.h, true
			times[i] = g.at.Sub(sent)
			if tok := l.token(cur); tok <= last {
				return nil, fmt.Errorf("%w: %q granted with token %d after token %d", ErrExclusion, name, tok, last)
			}
			last = l.token(cur)
			if len(granted) > 0 {
				return nil, fmt.Errorf("%w: %q granted to two waiters after one release", ErrExclusion, name)
			}
		case <-ctx.Done():
			return nil, fail(ctx.Err())
		}
	}
	err = l.release(ctx, cur)
	held = false
	if err != nil {
		return nil, fail(err)
	}
	return times, nil
}

// queueCheck tells when a handoff run's waiters are all in line: the
// lock's queue, read from ZooKeeper, has them all, and ZooKeeper's own
// watch table (the four-letter word wchc, from the server the waiters'
// session is connected to) shows that session watching every contender
// but the last — each waiter's predecessor. Until then a release could
// reach a waiter that has not yet set its watch, which would then find its
// predecessor gone without being woken.
type queueCheck struct {
	locker *zklock.Locker // reads the queue
	conn   *zkconn.Conn   // the waiters' session
}

func (q queueCheck) queued(ctx context.Context, name string, n int) (bool, error) {
	d, err := q.locker.Describe(ctx, name)
	switch {
	case errors.Is(err, zklock.ErrNoLock):
		return false, nil
	case err != nil:
		return false, err
	case len(d.Waiters) > n:
		return false, fmt.Errorf("%q has %d waiters, more than the run's %d: another process is using it", name, len(d.Waiters), n)
	case len(d.Waiters) < n:
		return false, nil
	}
	server := q.conn.ZK().Server()
	sid := q.conn.Session()
	if server == "" || sid == 0 {
		return false, nil // between connections: ask again
	}
	answer, err := zkserver.FourLetter(ctx, server, "wchc")
	if err != nil {
		return false, err
	}
	watched, err := sessionWatches(answer, sid)
	if err != nil {
		return false, fmt.Errorf("ZooKeeper at %s: %w", server, err)
	}
	if !watched[d.Holder.Path] {
		return false, nil
	}
	for _, w := range d.Waiters[:n-1] {
		if !watched[w.Path] {
			return false, nil
		}
	}
	return true, nil
}

// sessionWatches reads the paths session sid watches from a wchc answer:
//
//	0x1000041a6c10000
//		/a/b
//		/a/c
//
// A server that refuses the word (not in 4lw.commands.whitelist) says so
// in its answer, which is an error here.
func sessionWatches(answer string, sid int64) (map[string]bool, error) {
	if strings.Contains(answer, "not in the whitelist") || strings.Contains(answer, "not executed") {
		return nil, fmt.Errorf("wchc refused (%q): the handoff run reads the waiters' watches with it; add it to 4lw.commands.whitelist", strings.TrimSpace(answer))
	}
	watched := map[string]bool{}
	ours := false
	sc := bufio.NewScanner(strings.NewReader(answer))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "0x"):
			id, err := strconv.ParseUint(line[2:], 16, 64)
			if err != nil {
				return nil, fmt.Errorf("wchc answered a session %q", line)
			}
			ours = int64(id) == sid
		case strings.HasPrefix(line, "\t") && ours:
			watched[strings.TrimPrefix(line, "\t")] = true
		}
	}
	return watched, sc.Err()
}
