package flashsale_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
)

// TestFlashSaleCapacityBound has 60 purchases wait for a capacity of 100
// a second at once, and checks that no window admitted more than the
// bucket allows (1 + rate·window, plus a little for timer jitter), and
// that all were admitted.
func TestFlashSaleCapacityBound(t *testing.T) {
	var (
		mu    sync.Mutex
		times []time.Time
	)
	c, err := flashsale.NewCapacity(100, func(at time.Time) { mu.Lock(); times = append(times, at); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 60 {
		wg.Go(func() {
			if err := c.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c.Admitted() != 60 || len(times) != 60 {
		t.Fatalf("admitted %d (%d observed), want 60", c.Admitted(), len(times))
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	const window = 200 * time.Millisecond
	for i, start := range times {
		n := 0
		for _, at := range times[i:] {
			if at.Sub(start) < window {
				n++
			}
		}
		if n > 1+20+2 {
			t.Fatalf("%d admitted within %v of %v: more than 100/s allows", n, window, start)
		}
	}
	if span := times[59].Sub(times[0]); span < 500*time.Millisecond {
		t.Errorf("60 admissions at 100/s took %v, want about 590ms", span)
	}
}

// TestFlashSaleCapacityDeadline checks that a wait that cannot end before
// the caller's deadline fails at once with ErrNoCapacity, as a deadline.
func TestFlashSaleCapacityDeadline(t *testing.T) {
	c, err := flashsale.NewCapacity(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(context.Background()); err != nil { // takes the one token
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.Wait(ctx)
	if !errors.Is(err, flashsale.ErrNoCapacity) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrNoCapacity and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("failing took %v, want at once", d)
	}
	if _, err := flashsale.NewCapacity(0, nil); err == nil {
		t.Error("NewCapacity(0) took it")
	}
}
