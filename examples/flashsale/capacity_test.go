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
// bucket allows (1 + rate·window: the admission instants are the
// bucket's, so no timer jitter enters), that all were admitted, and that
// none returned before its admission instant.
func TestFlashSaleCapacityBound(t *testing.T) {
	var (
		mu    sync.Mutex
		times []time.Time
	)
	c, err := flashsale.NewCapacity(100, func(at time.Time) {
		if now := time.Now(); now.Before(at) {
			t.Errorf("admitted at %v, before its instant %v", now, at)
		}
		mu.Lock()
		times = append(times, at)
		mu.Unlock()
	})
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
		if n > 1+20 {
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
	c, err := flashsale.NewCapacity(0.1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(context.Background()); err != nil { // takes the one token; the next is 10s away
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err = c.Wait(ctx)
	if !errors.Is(err, flashsale.ErrNoCapacity) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrNoCapacity and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failing took %v, want at once", d)
	}
	if _, err := flashsale.NewCapacity(0, nil); err == nil {
		t.Error("NewCapacity(0) took it")
	}
}

// TestFlashSaleCapacityGivesBack checks that a wait that fails, by its
// deadline or by cancellation, takes no capacity: at 1 a second, with the
// token taken, the next purchase is due in a second, and it still is after
// each failed wait. Were a failed wait to keep its slot, the last wait
// (1.5s of deadline) would be due in 2s or 3s and fail at once.
func TestFlashSaleCapacityGivesBack(t *testing.T) {
	c, err := flashsale.NewCapacity(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Wait(short); !errors.Is(err, flashsale.ErrNoCapacity) {
		t.Fatalf("wait past its deadline: %v, want ErrNoCapacity", err)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel2)
	if err := c.Wait(cancelled); !errors.Is(err, context.Canceled) || errors.Is(err, flashsale.ErrNoCapacity) {
		t.Fatalf("cancelled wait: %v, want context.Canceled only", err)
	}
	ctx, cancel3 := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel3()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("the next purchase, due within its deadline: %v", err)
	}
	if n := c.Admitted(); n != 2 {
		t.Errorf("admitted %d, want 2", n)
	}
}
