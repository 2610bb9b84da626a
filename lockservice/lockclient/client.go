// Package lockclient is the Go client of Switchyard's lock service, with
// the feel of etcd's concurrency.Mutex and the safety it lacks:
//
//	c := lockclient.New(lockclient.GRPC(conn))
//	l, err := c.Lock(ctx, "orders/42")   // waits in line; TryLock fails with ErrLocked
//	...                                   // pass l.Token() to every write the lock guards
//	select { case <-l.Lost(): ... }       // or use l.Context()
//	err = l.Unlock(ctx)
//
// # Leases and the loss signal
//
// A lock is held under a lease of limited validity. The client counts the
// validity from when it sent the request that granted or renewed it (plus
// the time the replica says it waited in line before granting), on the
// monotonic clock, while the replica counts it from when it received that
// request (plus the same wait) and deletes the lock's node only after it
// runs out there.
// A watchdog renews the lease at about a third of its validity. If the
// validity runs out without a successful renewal — the replica is
// unreachable, or says the lease is gone — Lost closes and Err says why.
// Lost closes SafetyMargin before the validity ends, so as long as no
// process (the holder, or the clocks' view of it) is paused longer than
// the margin, the holder learns of its loss before the lock can be
// granted to anyone else. The fencing token covers the rest: a resource
// that refuses tokens lower than the highest it has seen is safe even
// from a holder paused past its lease.
//
// # Transports
//
// The client's logic is written against Transport, so the same locks,
// leases and watchdog work over gRPC (GRPC) and over other transports.
// Transports report errors as gRPC status errors (a transport that is not
// gRPC maps its own error codes one-to-one).
package lockclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// Errors returned by this package; test for them with errors.Is.
var (
	// ErrLocked reports a TryLock of a lock someone else holds.
	ErrLocked = errors.New("lockclient: locked")
	// ErrLost reports a lock whose lease ran out or was taken away before
	// it was released: Err and Unlock wrap it, with why.
	ErrLost = errors.New("lockclient: lock lost")
	// ErrReleased reports an Unlock of a lock already unlocked.
	ErrReleased = errors.New("lockclient: already unlocked")
)

// Transport carries the lock service's calls. Its methods return gRPC
// status errors; KeepAlive returns the validity the replica granted.
type Transport interface {
	Acquire(ctx context.Context, req *lockv1.AcquireRequest) (*lockv1.Lease, error)
	KeepAlive(ctx context.Context, lease *lockv1.Lease) (time.Duration, error)
	Release(ctx context.Context, lease *lockv1.Lease) error
}

// Client takes locks through a Transport. It is safe for concurrent use.
type Client struct {
	t    Transport
	opts options
}

type options struct {
	ttl    time.Duration
	owner  string
	margin time.Duration
	log    *slog.Logger
}

// Option configures a Client, or one Lock call.
type Option func(*options)

// WithTTL sets the lease validity asked for (default 10s; the service
// takes 1s to 5m and may grant less).
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithOwner says who holds the locks, for Describe and events (default
// host:pid).
func WithOwner(owner string) Option { return func(o *options) { o.owner = owner } }

// WithSafetyMargin sets how long before the validity ends Lost closes
// (default 250ms): the longest pause the loss signal's ordering survives.
func WithSafetyMargin(d time.Duration) Option { return func(o *options) { o.margin = d } }

// WithLogger sets where renewal failures are logged (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New returns a Client over t.
func New(t Transport, opts ...Option) *Client {
	host, _ := os.Hostname()
	o := options{ttl: 10 * time.Second, owner: fmt.Sprintf("%s:%d", host, os.Getpid()), margin: 250 * time.Millisecond, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	return &Client{t: t, opts: o}
}

// Lock waits in line for the lock until it is granted or ctx ends. A
// wait that ends takes its place in line away. Retries after transport
// failures carry the same request id, so they never make a second grant.
func (c *Client) Lock(ctx context.Context, name string, opts ...Option) (*Lock, error) {
	return c.acquire(ctx, name, true, opts)
}

// TryLock takes the lock if nobody holds it, and fails with ErrLocked if
// someone does.
func (c *Client) TryLock(ctx context.Context, name string, opts ...Option) (*Lock, error) {
	return c.acquire(ctx, name, false, opts)
}

func (c *Client) acquire(ctx context.Context, name string, wait bool, opts []Option) (*Lock, error) {
	o := c.opts
	for _, opt := range opts {
		opt(&o)
	}
	req := &lockv1.AcquireRequest{Name: name, Ttl: durationpb.New(o.ttl), Wait: wait, RequestId: newRequestID(), Owner: o.owner}
	backoff := 20 * time.Millisecond
	for {
		sent := time.Now()
		lease, err := c.t.Acquire(ctx, req)
		if err == nil {
			return c.hold(lease, sent, o), nil
		}
		switch status.Code(err) {
		case codes.Aborted:
			return nil, fmt.Errorf("%w: %q: %v", ErrLocked, name, status.Convert(err).Message())
		case codes.Unavailable:
			// Transient: retry with the same request id (idempotent).
		default:
			return nil, fmt.Errorf("lockclient: lock %q: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lockclient: lock %q: %w (last: %v)", name, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Lock is a held lock. Its watchdog renews the lease until Unlock or loss.
type Lock struct {
	c     *Client
	lease *lockv1.Lease
	opts  options

	lost    chan struct{}
	stop    context.Context // done once Unlock begins
	halt    context.CancelFunc
	stopped chan struct{} // closed when the watchdog has ended
	ctx     context.Context
	cancel  context.CancelCauseFunc

	mu       sync.Mutex
	err      error // why lost
	unlocked bool
	failures int
}

func (c *Client) hold(lease *lockv1.Lease, sent time.Time, o options) *Lock {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop, halt := context.WithCancel(context.Background())
	l := &Lock{c: c, lease: lease, opts: o, lost: make(chan struct{}), stop: stop, halt: halt, stopped: make(chan struct{}), ctx: ctx, cancel: cancel}
	go l.watchdog(sent.Add(lease.GetWaited().AsDuration() + lease.GetTtl().AsDuration()))
	return l
}

// Name returns the lock's name.
func (l *Lock) Name() string { return l.lease.GetName() }

// Token returns the grant's fencing token: pass it to every write the lock
// guards, for the resource to refuse tokens lower than it has seen.
func (l *Lock) Token() uint64 { return l.lease.GetToken() }

// Lease returns the grant as the service made it. It must not be modified.
func (l *Lock) Lease() *lockv1.Lease { return l.lease }

// Lost is closed when the lock is lost: its lease ran out (less the
// safety margin) without a successful renewal, or the service said it is
// gone. It is not closed by Unlock.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Context returns a context that is cancelled when the lock is lost or
// unlocked; context.Cause says which.
func (l *Lock) Context() context.Context { return l.ctx }

// Err returns why the lock was lost (wrapping ErrLost), or nil.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// RenewalFailures counts the renewals that failed, whether or not the
// lock was lost because of them.
func (l *Lock) RenewalFailures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures
}

// Unlock stops the watchdog and releases the lock. Unlocking a lost lock
// returns its loss (ErrLost); unlocking twice, ErrReleased.
func (l *Lock) Unlock(ctx context.Context) error {
	l.mu.Lock()
	if l.unlocked {
		l.mu.Unlock()
		return ErrReleased
	}
	l.unlocked = true
	l.mu.Unlock()
	l.halt()
	<-l.stopped
	if err := l.Err(); err != nil {
		return err
	}
	l.cancel(ErrReleased)
	if err := l.c.t.Release(ctx, l.lease); err != nil {
		return fmt.Errorf("lockclient: unlock %q: %w", l.Name(), err)
	}
	return nil
}

// watchdog renews the lease at a third of its validity until Unlock, and
// declares it lost when the validity (less the margin) ends first or the
// service answers that it is gone.
func (l *Lock) watchdog(validUntil time.Time) {
	defer close(l.stopped)
	ttl := l.lease.GetTtl().AsDuration()
	deadline := time.NewTimer(time.Until(validUntil) - l.opts.margin)
	defer deadline.Stop()
	next := time.NewTimer(ttl / 3)
	defer next.Stop()
	for {
		select {
		case <-l.stop.Done():
			return
		case <-deadline.C:
			l.lose(fmt.Errorf("%w: %q: the lease ran out without a renewal", ErrLost, l.Name()))
			return
		case <-next.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithDeadline(l.stop, validUntil.Add(-l.opts.margin))
		granted, err := l.c.t.KeepAlive(ctx, l.lease)
		cancel()
		if l.stop.Err() != nil {
			return // unlocking: the renewal's outcome no longer matters
		}
		if err == nil {
			validUntil = sent.Add(granted)
			deadline.Reset(time.Until(validUntil) - l.opts.margin)
			next.Reset(granted / 3)
			continue
		}
		l.mu.Lock()
		l.failures++
		l.mu.Unlock()
		switch status.Code(err) {
		case codes.FailedPrecondition, codes.PermissionDenied, codes.NotFound, codes.InvalidArgument:
			l.lose(fmt.Errorf("%w: %q: %v", ErrLost, l.Name(), status.Convert(err).Message()))
			return
		}
		l.opts.log.Warn("lockclient: renewal failed; retrying", "lock", l.Name(), "err", err, "valid_for", time.Until(validUntil))
		next.Reset(min(ttl/10, time.Until(validUntil)/4) + time.Millisecond)
	}
}

func (l *Lock) lose(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
	close(l.lost)
	l.cancel(err)
}
