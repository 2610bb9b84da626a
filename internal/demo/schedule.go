package demo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Phase is a stretch of the schedule at one offered rate.
type Phase struct {
	// Name labels the phase in progress and figures ("steady", "burst").
	Name string
	// Duration is how long it lasts.
	Duration time.Duration
	// Rate is the offered load in requests a second (0: none).
	Rate float64
}

// Profile is the offered rate over time: its phases back to back.
type Profile []Phase

// Validate reports a profile that cannot be scheduled.
func (p Profile) Validate() error {
	if len(p) == 0 {
		return errors.New("demo: a profile with no phase")
	}
	for i, ph := range p {
		if ph.Duration <= 0 || ph.Rate < 0 || math.IsNaN(ph.Rate) || math.IsInf(ph.Rate, 0) {
			return fmt.Errorf("demo: phase %d (%s): %v at %v/s: want a positive duration and a finite rate of 0 or more", i, ph.Name, ph.Duration, ph.Rate)
		}
	}
	return nil
}

// Duration returns the length of the whole profile.
func (p Profile) Duration() time.Duration {
	var d time.Duration
	for _, ph := range p {
		d += ph.Duration
	}
	return d
}

// Send is one scheduled request.
type Send struct {
	// At is when it is due, from the start of the schedule.
	At time.Duration
	// Phase is the index of its phase in the profile.
	Phase int
}

// Sends returns the profile's requests in order: each phase sends
// round(Rate × Duration) requests evenly spaced from its start. The
// schedule is a pure function of the profile, so two paths given the same
// profile get exactly the same sends.
func (p Profile) Sends() []Send {
	var (
		out   []Send
		start time.Duration
	)
	for i, ph := range p {
		n := int(math.Round(ph.Rate * ph.Duration.Seconds()))
		for k := range n {
			out = append(out, Send{At: start + time.Duration(int64(k)*int64(ph.Duration)/int64(n)), Phase: i})
		}
		start += ph.Duration
	}
	return out
}

// DispatchStats says how well Dispatch kept to the schedule.
type DispatchStats struct {
	// Sent counts the sends made; Dropped those not made because
	// MaxInFlight sends were still running (an overloaded client, shown
	// rather than allowed to stretch the schedule).
	Sent, Dropped int
	// MaxLag is the longest any send started after its scheduled time.
	MaxLag time.Duration
}

// Dispatch makes each of sends at start+At by calling send in a goroutine
// of its own, and returns once every call has returned. It never waits for
// one call before starting the next that is due: latency measured by send
// from scheduled (not from when the goroutine ran) is free of coordinated
// omission. At most maxInFlight calls run at once; a send due while that
// many run is dropped and counted. When ctx ends, no further send is
// made; the calls running get ctx (ended) and are waited for.
func Dispatch(ctx context.Context, start time.Time, sends []Send, maxInFlight int, send func(ctx context.Context, i int, scheduled time.Time)) DispatchStats {
	var (
		st    DispatchStats
		wg    sync.WaitGroup
		slots = make(chan struct{}, max(maxInFlight, 1))
		timer = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
loop:
	for i := 0; i < len(sends); {
		if wait := time.Until(start.Add(sends[i].At)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break loop
			}
		} else if ctx.Err() != nil {
			break loop
		}
		now := time.Now()
		for ; i < len(sends) && !start.Add(sends[i].At).After(now); i++ {
			scheduled := start.Add(sends[i].At)
			st.MaxLag = max(st.MaxLag, now.Sub(scheduled))
			select {
			case slots <- struct{}{}:
			default:
				st.Dropped++
				continue
			}
			st.Sent++
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-slots }()
				send(ctx, i, scheduled)
			}(i)
		}
	}
	wg.Wait()
	return st
}
