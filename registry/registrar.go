package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

// Registration keeps one instance's ephemeral node in ZooKeeper until
// Deregister or the Client's Close. It is safe for concurrent use.
//
// A background goroutine owned by the Registration keeps the node right:
//   - after a session expiry (not a mere reconnect, which keeps the node)
//     it re-creates the node on the new session;
//   - every check interval it confirms the node exists with the expected
//     data, and repairs it if not;
//   - a node found at its path is replaced only if its ephemeralOwner is a
//     session this Registration created it in (so a dead one); a node of
//     another live session is a conflict, reported and retried, never
//     overwritten.
type Registration struct {
	c    *Client
	path string

	mu      sync.Mutex
	inst    *registryv1.Instance // desired record; replaced, never mutated
	session int64                // session of the last successful ensure
	owned   map[int64]bool       // sessions this Registration created its node in
	closed  bool

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Register validates inst, writes it as an ephemeral node, and keeps it
// there (see Registration). An unspecified state is SERVING; a missing
// registered_at is now. It fails with ErrConflict if another live session
// holds the instance's id.
func (c *Client) Register(ctx context.Context, inst *registryv1.Instance) (*Registration, error) {
	inst = proto.Clone(inst).(*registryv1.Instance)
	if inst.GetState() == registryv1.InstanceState_INSTANCE_STATE_UNSPECIFIED {
		inst.State = registryv1.InstanceState_INSTANCE_STATE_SERVING
	}
	if inst.GetRegisteredAt() == nil {
		inst.RegisteredAt = timestamppb.Now()
	}
	if err := validateInstance(inst); err != nil {
		return nil, err
	}
	r := &Registration{
		c:     c,
		path:  instancePath(inst.GetService(), inst.GetId()),
		inst:  inst,
		owned: map[int64]bool{},
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.regs[r] = struct{}{}
	c.mu.Unlock()

	if err := r.ensureUntil(ctx); err != nil {
		r.forget()
		close(r.done)
		return nil, err
	}
	go r.keep()
	return r, nil
}

// ensureUntil retries ensure while ZooKeeper is unreachable, until ctx ends.
func (r *Registration) ensureUntil(ctx context.Context) error {
	return retry(ctx, "registering "+r.path, func() (bool, error) {
		err := r.ensure()
		return errors.Is(err, ErrNotConnected) || errors.Is(err, zk.ErrConnectionClosed), err
	})
}

// retry calls fn, with a growing pause, for as long as it returns an error
// it calls transient and ctx lasts.
func retry(ctx context.Context, what string, fn func() (transient bool, err error)) error {
	wait := 50 * time.Millisecond
	for {
		transient, err := fn()
		if err == nil || !transient {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("registry: %s: %w (last: %w)", what, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// Instance returns a copy of the record the Registration keeps.
func (r *Registration) Instance() *registryv1.Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return proto.Clone(r.inst).(*registryv1.Instance)
}

// Update changes the record (weight, state, zone, version, metadata) with
// edit, which gets a copy to modify, and writes it. The id, service and
// address cannot change. If the write fails the new record is still kept
// and written by the background upkeep once it can be.
func (r *Registration) Update(ctx context.Context, edit func(*registryv1.Instance)) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	next := proto.Clone(r.inst).(*registryv1.Instance)
	edit(next)
	if next.GetId() != r.inst.GetId() || next.GetService() != r.inst.GetService() || next.GetAddress() != r.inst.GetAddress() {
		r.mu.Unlock()
		return fmt.Errorf("%w: Update cannot change id, service or address", ErrInvalidInstance)
	}
	if err := validateInstance(next); err != nil {
		r.mu.Unlock()
		return err
	}
	r.inst = next
	r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		r.poke()
		return err
	}
	if err := r.ensure(); err != nil {
		r.poke()
		return fmt.Errorf("registry: update of %s not yet written: %w", r.path, err)
	}
	return nil
}

// Deregister stops the upkeep and deletes the node, recording the instance
// as departed so watchers know it left on purpose. It retries while
// ZooKeeper is unreachable until ctx ends; a node it could not delete
// lasts until the Client's session ends.
func (r *Registration) Deregister(ctx context.Context) error {
	r.halt()
	r.forget()
	svc, id := r.inst.GetService(), r.inst.GetId()
	return retry(ctx, "deregistering "+r.path, func() (bool, error) {
		return true, r.remove(svc, id)
	})
}

func (r *Registration) remove(svc, id string) error {
	zc := r.c.conn.ZK()
	_, stat, err := zc.Get(r.path)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	if stat.EphemeralOwner != r.c.conn.Session() {
		return nil // not ours: another instance's, or ours on a dead session
	}
	err = r.c.commit(svc, func(data []byte) ([]byte, error) {
		return withDeparture(data, id, timestamppb.Now())
	}, &zk.DeleteRequest{Path: r.path, Version: stat.Version})
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	return err
}

// halt stops the upkeep goroutine and waits for it.
func (r *Registration) halt() {
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.stop)
	})
	<-r.done
}

func (r *Registration) forget() {
	r.c.mu.Lock()
	delete(r.c.regs, r)
	r.c.mu.Unlock()
}

func (r *Registration) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// keep is the upkeep loop; it runs until halt.
func (r *Registration) keep() {
	defer close(r.done)
	notify, cancel := r.c.conn.Subscribe()
	defer cancel()
	interval := r.c.opts.checkInterval
	timer := time.NewTimer(jitter(interval))
	defer timer.Stop()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-r.stop:
			return
		case <-notify:
			r.mu.Lock()
			same := r.session
			r.mu.Unlock()
			if !r.c.conn.Connected() || r.c.conn.Session() == same {
				continue // disconnected, or reconnected to the same session: the node is still there
			}
		case <-r.kick:
		case <-timer.C:
		}
		if err := r.ensure(); err != nil {
			if !errors.Is(err, ErrNotConnected) {
				r.c.opts.log.Warn("registry: keeping instance node", "path", r.path, "err", err)
			}
			timer.Reset(min(backoff, interval))
			backoff = min(2*backoff, interval)
			continue
		}
		backoff = 50 * time.Millisecond
		timer.Reset(jitter(interval))
	}
}

// ensure makes the node exist, in the current session, with the desired
// record.
func (r *Registration) ensure() error {
	r.mu.Lock()
	want := r.inst
	r.mu.Unlock()
	conn := r.c.conn
	sid := conn.Session()
	if sid == 0 || !conn.Connected() {
		return ErrNotConnected
	}
	zc := conn.ZK()
	svc, id := want.GetService(), want.GetId()
	data, err := encodeInstance(want)
	if err != nil {
		return err
	}
	for range 5 {
		_, err := zc.Create(r.path, data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		switch {
		case err == nil:
			r.settled(sid)
			return nil
		case errors.Is(err, zk.ErrNoNode):
			if err := r.c.ensureParents(svc); err != nil {
				return err
			}
			continue
		case !errors.Is(err, zk.ErrNodeExists):
			return fmt.Errorf("registry: creating %s: %w", r.path, err)
		}
		got, stat, err := zc.Get(r.path)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return fmt.Errorf("registry: reading %s: %w", r.path, err)
		}
		owner := stat.EphemeralOwner
		r.mu.Lock()
		ours := r.owned[owner]
		r.mu.Unlock()
		switch {
		case owner == sid:
			// Our node in this session (perhaps a create whose reply was
			// lost): repair its data if it drifted.
			if cur, err := DecodeInstance(svc, id, got); err != nil || !sameRecord(cur, want) {
				err := r.c.commit(svc, nil, &zk.SetDataRequest{Path: r.path, Data: data, Version: stat.Version})
				if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) {
					continue
				}
				if err != nil {
					return fmt.Errorf("registry: writing %s: %w", r.path, err)
				}
			}
			r.settled(sid)
			return nil
		case ours && owner != 0:
			// Left by a session of ours that is dead (we have a new one):
			// replace it.
			if err := zc.Delete(r.path, stat.Version); err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) {
				return fmt.Errorf("registry: deleting stale %s: %w", r.path, err)
			}
			continue
		default:
			return fmt.Errorf("%w: %s is held by session %#x", ErrConflict, r.path, owner)
		}
	}
	return fmt.Errorf("registry: %s keeps changing under us", r.path)
}

func (r *Registration) settled(sid int64) {
	r.mu.Lock()
	r.session = sid
	r.owned[sid] = true
	r.mu.Unlock()
}
