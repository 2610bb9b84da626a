package flashsale

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Capacity is the downstream's fixed capacity: at most perSecond purchases
// a second start their work. It is a token bucket with a burst of one, so
// over any window of length T at most 1 + perSecond·T purchases are
// admitted, however many wait. Waiters are admitted in the order they
// asked. It is safe for concurrent use.
type Capacity struct {
	perSecond float64
	lim       *rate.Limiter
	admitted  atomic.Int64
	onAdmit   func(time.Time)
}

// NewCapacity returns a Capacity of perSecond purchases a second. onAdmit,
// if not nil, is called (from the admitted purchase's goroutine) with the
// instant the bucket admitted it: that is the downstream rate a
// measurement sees. It is the bucket's own schedule, not the moment the
// goroutine woke, so a process stalled for a while does not record the
// admissions that fell due in the stall as a burst after it.
func NewCapacity(perSecond float64, onAdmit func(time.Time)) (*Capacity, error) {
	if perSecond <= 0 {
		return nil, fmt.Errorf("flashsale: capacity %v a second: want more than 0", perSecond)
	}
	return &Capacity{perSecond: perSecond, lim: rate.NewLimiter(rate.Limit(perSecond), 1), onAdmit: onAdmit}, nil
}

// Admitted returns how many purchases have been admitted.
func (c *Capacity) Admitted() int64 { return c.admitted.Load() }

// Wait blocks until the downstream has room for one more purchase. It
// fails at once, wrapping ErrNoCapacity and context.DeadlineExceeded, when
// ctx's deadline would pass first, and with ctx's error when ctx ends
// while it waits; a purchase that fails here has taken no capacity.
//
// It is rate.Limiter.Wait written out, because onAdmit needs the
// reservation's instant.
func (c *Capacity) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("flashsale: waiting for capacity: %w", err)
	}
	now := time.Now()
	r := c.lim.ReserveN(now, 1) // always OK: the burst is 1 and the rate finite
	at := now.Add(r.DelayFrom(now))
	if deadline, ok := ctx.Deadline(); ok && deadline.Before(at) {
		r.CancelAt(now)
		return fmt.Errorf("%w (%v a second): %w", ErrNoCapacity, c.perSecond, context.DeadlineExceeded)
	}
	if d := at.Sub(now); d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			r.Cancel()
			return fmt.Errorf("flashsale: waiting for capacity: %w", ctx.Err())
		}
	}
	c.admitted.Add(1)
	if c.onAdmit != nil {
		c.onAdmit(at)
	}
	return nil
}
