package benchrun

import (
	"context"
	"errors"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotWarmed reports a Loop with Settle in which a worker completed no
// op within Settle after the warm-up.
var ErrNotWarmed = errors.New("benchrun: a worker completed no op within the settle time after warm-up")

// errWorkerFailed says a worker failed; its error is in Window.Err.
var errWorkerFailed = errors.New("benchrun: a worker failed")

// Loop is one closed-loop phase: Workers workers each run their op, time
// it, and run the next, through a warm-up and then a measured window.
type Loop struct {
	// Workers is how many ops are in flight at once, one per worker.
	Workers int
	// NewWorker returns worker i's op and recorder. Run calls it once per
	// worker, on Run's goroutine, after it has collected the heap (so
	// what it allocates is not garbage the phase begins with) and before
	// any worker starts.
	NewWorker func(i int) Worker
	// Labels are the pprof labels the workers run with.
	Labels pprof.LabelSet
	// Warmup is how long the workers run before the window opens; their
	// ops are not timed. Duration is the window's length.
	Warmup, Duration time.Duration
	// Settle, when positive, makes the window wait for the workers: it
	// opens no sooner than every worker has completed an op (waiting up to
	// Settle past the warm-up, else ErrNotWarmed), and stays open past
	// Duration until an op has been recorded (waiting up to Settle, else
	// closing with none). 0 waits for neither.
	Settle time.Duration
	// Allocs measures the heap allocations in the window too, in
	// Window.Used; reading them stops the world briefly at each edge of
	// the window. Without it only the CPU time is read.
	Allocs bool
}

// Worker is what one worker of a Loop runs.
type Worker struct {
	// Op is one operation. One that fails stops its worker, and the
	// others: the phase ends, with the failure in Window.
	Op func(context.Context) error
	// Record is given the time of each op that started and ended inside
	// the window, from the worker's goroutine (never two calls at once).
	Record func(time.Duration)
}

// Window is what a Loop's run saw.
type Window struct {
	// Elapsed is the window's length, from its opening to its closing.
	Elapsed time.Duration
	// Used is the whole process's usage in the window; Mallocs and Bytes
	// are 0 without Loop.Allocs.
	Used Usage
	// Failed counts the workers stopped by a failed op, and Err is the
	// first of their errors, in worker order.
	Failed int
	Err    error
}

// Worker states, in order.
const (
	warming int32 = iota
	measuring
	stopping
)

// Run collects the heap, runs the loop's warm-up and window, and returns
// once every worker has stopped. It ends early when an op fails (see
// Window.Failed) and when ctx ends. Its error is ctx's when ctx ended,
// ErrNotWarmed, or nil; a failed op is reported in the Window, not as
// an error. Each worker's ops get a context of the worker's own, under
// ctx and with the loop's labels.
func (l Loop) Run(ctx context.Context) (Window, error) {
	runtime.GC() // each phase starts from a collected heap
	var (
		state    atomic.Int32
		warm     sync.WaitGroup        // with Settle: a worker is done once it has completed an op
		timed    = make(chan struct{}) // with Settle: closed once an op has been recorded
		timeOnce sync.Once
		failed   = make(chan struct{})
		failOnce sync.Once
		wg       sync.WaitGroup
	)
	fail := func() { failOnce.Do(func() { close(failed) }) }
	var warmed, recorded func()
	if l.Settle > 0 {
		warm.Add(l.Workers)
		warmed, recorded = warm.Done, func() { timeOnce.Do(func() { close(timed) }) }
	}
	workers := make([]worker, l.Workers)
	for i := range workers {
		workers[i].Worker = l.NewWorker(i)
	}
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			pprof.Do(ctx, l.Labels, func(ctx context.Context) { w.run(ctx, &state, warmed, recorded, fail) })
		})
	}

	var (
		start, end time.Time
		before     Usage
		win        Window
	)
	waitErr := wait(ctx, failed, l.Warmup)
	if waitErr == nil && l.Settle > 0 {
		allWarm := make(chan struct{})
		go func() { warm.Wait(); close(allWarm) }()
		waitErr = await(ctx, failed, allWarm, l.Settle, ErrNotWarmed)
	}
	if waitErr == nil {
		before = l.usage()
		start = time.Now()
		state.Store(measuring)
		waitErr = wait(ctx, failed, l.Duration)
		if waitErr == nil && l.Settle > 0 {
			// Held open until an op is recorded; else it closes with none.
			waitErr = await(ctx, failed, timed, l.Settle, nil)
		}
		end = time.Now()
		win.Used = l.usage().Sub(before)
	}
	state.Store(stopping)
	wg.Wait()

	win.Elapsed = end.Sub(start)
	for i := range workers {
		if err := workers[i].err; err != nil {
			win.Failed++
			if win.Err == nil {
				win.Err = err
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		return win, ctx.Err()
	case errors.Is(waitErr, errWorkerFailed):
		return win, nil
	}
	return win, waitErr
}

// usage reads what the loop measures of the process's usage.
func (l Loop) usage() Usage {
	if l.Allocs {
		return ReadUsage()
	}
	return Usage{CPU: ProcessCPU()}
}

// wait waits d, or until ctx ends or failed is closed.
func wait(ctx context.Context, failed <-chan struct{}, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-failed:
		return errWorkerFailed
	}
}

// await waits until done is closed, or until ctx ends, failed is closed
// or timeout runs out, which returns late.
func await(ctx context.Context, failed, done <-chan struct{}, timeout time.Duration, late error) error {
	select {
	case <-done:
		return nil
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-failed:
		return errWorkerFailed
	case <-t.C:
		return late
	}
}

// worker is one closed-loop worker of a Loop's run.
type worker struct {
	Worker
	err error // the one that stopped the worker
}

// run runs ops until the state is stopping or an op fails, recording the
// ops that start and end while the state is measuring. With Settle, it
// calls warmed once, when its first op is done or, failing that, when it
// returns, and recorded after each op it records; both are nil without.
func (w *worker) run(ctx context.Context, state *atomic.Int32, warmed, recorded, fail func()) {
	defer func() {
		if warmed != nil {
			warmed()
		}
	}()
	// The ops' contexts hang off this worker's own: were they children of
	// one context all workers share, registering and removing them would
	// contend on its lock.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		before := state.Load()
		if before == stopping {
			return
		}
		start := time.Now()
		err := w.Op(ctx)
		d := time.Since(start)
		if err != nil {
			w.err = err
			fail()
			return
		}
		if warmed != nil {
			warmed()
			warmed = nil
		}
		if before == measuring && state.Load() == measuring {
			w.Record(d)
			if recorded != nil {
				recorded()
			}
		}
	}
}

// StartSide starts the side called name with start, under the pprof label
// side=name, so that every goroutine its sessions, servers and clients
// start carries it. start is given that labelled ctx, and setup, which
// also ends after timeout, to bound the start.
func StartSide[S any](ctx context.Context, name string, timeout time.Duration, start func(ctx, setup context.Context) (S, error)) (S, error) {
	setup, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return Do(ctx, pprof.Labels("side", name), func(ctx context.Context) (S, error) {
		return start(ctx, setup)
	})
}

// Do is pprof.Do for a function with results.
func Do[T any](ctx context.Context, labels pprof.LabelSet, fn func(context.Context) (T, error)) (v T, err error) {
	pprof.Do(ctx, labels, func(ctx context.Context) { v, err = fn(ctx) })
	return v, err
}
