package lockbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Run.
var (
	// ErrConfig reports a Config that Validate refuses.
	ErrConfig = errors.New("lockbench: invalid config")
	// ErrOpsFailed reports a run stopped by a failed cycle or handoff
	// (or a grant from a replica other than the benchmark's own).
	ErrOpsFailed = errors.New("lockbench: operations failed")
	// ErrNoOps reports a measured window in which no cycle completed,
	// though it was held open for one up to Config.SetupTimeout.
	ErrNoOps = errors.New("lockbench: no cycle completed in a measured window")
	// ErrNotAlone reports other instances of the lock service in the
	// registry, which the gRPC side's balancer would call too.
	ErrNotAlone = errors.New("lockbench: the lock service has other instances in the registry")
	// ErrExclusion reports a handoff run in which a second waiter was
	// granted the lock while another held it, or grants came out of
	// fencing-token order.
	ErrExclusion = errors.New("lockbench: mutual exclusion broken in a handoff")
)

// Run brings the sides up, runs every phase as the package doc says,
// tears the sides down, and returns the figures. It fails on the first
// failed cycle or handoff, and when ctx ends (with ctx's error); either
// way it returns only once every server, session and goroutine it started
// is gone, and the znodes it made are deleted (lock directories go as
// ZooKeeper sweeps empty containers). The replica's Close waits for every
// lease it granted to end; an acquire the replica granted just as ctx
// ended is one the benchmark never saw, so then Run returns only once
// that lease has run out (Config.TTL).
func Run(ctx context.Context, cfg Config) (_ Result, err error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	defer func() {
		// However ctx's end showed (a failed cycle, a setup step), say it.
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("lockbench: %w: %w", ctx.Err(), err)
		}
	}()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	run := randomHex(6)

	raw, err := start(ctx, SideRaw, cfg, func(ctx, setup context.Context) (*rawSide, error) { return startRaw(setup, cfg, run) })
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, raw.stop()) }()
	gs, err := start(ctx, SideGRPC, cfg, func(ctx, setup context.Context) (*grpcSide, error) { return startGRPC(ctx, setup, cfg, run) })
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, gs.stop()) }()
	zs, err := start(ctx, SideZKLock, cfg, func(ctx, setup context.Context) (*zklockSide, error) { return startZKLock(setup, cfg) })
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, zs.stop()) }()

	cyclers := []cycler{raw, gs}
	cells := map[string]map[string]Cell{SideRaw: {}, SideGRPC: {}}
	for _, c := range cfg.Concurrency {
		rounds := map[string][]Round{}
		for i := range cfg.Rounds {
			for _, s := range abba(cyclers, i) {
				fig, err := runPhase(ctx, s, c, cfg)
				if err != nil {
					return Result{}, err
				}
				r := fig.round()
				rounds[s.name()] = append(rounds[s.name()], r)
				if cfg.Progress != nil {
					cfg.Progress(Phase{Side: s.name(), Concurrency: c, Round: i + 1, Rounds: cfg.Rounds,
						OpsPerS: r.OpsPerS, P50us: r.P50us, P99us: r.P99us, CPUusPerOp: r.CPUusPerOp})
				}
			}
		}
		for name, rs := range rounds {
			cells[name][CellKey(c)] = cell(rs)
		}
	}

	var (
		hrounds []HandoffRound
		timed   int
	)
	for i := range cfg.Rounds {
		var hr HandoffRound
		for _, s := range abba([]handoffSide{gs, zs}, i) {
			name := fmt.Sprintf("lockbench-%s/handoff-%s-%d", run, s.name(), i+1)
			before := s.wakeups()
			times, err := pprofDo(ctx, pprof.Labels("side", s.name(), "phase", "handoff"), func(ctx context.Context) ([]time.Duration, error) {
				return s.handoff(ctx, name, cfg.Waiters, cfg.SetupTimeout)
			})
			if err != nil {
				return Result{}, err
			}
			slices.Sort(times)
			p := Phase{Side: s.name(), Handoff: true, Round: i + 1, Rounds: cfg.Rounds, Handoffs: len(times),
				P50us: round1(micros(quantile(times, 0.50))), P99us: round1(micros(quantile(times, 0.99)))}
			if s.name() == SideZKLock {
				hr.ZKLockP50us, hr.ZKLockP99us = p.P50us, p.P99us
				hr.Wakeups, hr.Releases = s.wakeups()-before, uint64(len(times))
				p.Wakeups, p.Releases = hr.Wakeups, hr.Releases
			} else {
				hr.P50us, hr.P99us = p.P50us, p.P99us
				timed += len(times)
			}
			if cfg.Progress != nil {
				cfg.Progress(p)
			}
		}
		hrounds = append(hrounds, hr)
	}
	return newResult(cfg, cells[SideRaw], cells[SideGRPC], handoff(cfg, hrounds, timed)), nil
}

// abba returns the two sides in round i's order: a then b in even rounds,
// b then a in odd ones, so that a steady drift affects both alike.
func abba[T any](sides []T, i int) []T {
	if i%2 == 1 {
		return []T{sides[1], sides[0]}
	}
	return sides
}

// cycler is a side of the cycle phases.
type cycler interface {
	name() string
	// cycle returns the cycle of worker i of c workers: one create+delete
	// or acquire+release on the worker's own znode or lock name.
	cycle(c, i int) func(ctx context.Context) error
}

// handoffSide is a side of the handoff runs.
type handoffSide interface {
	name() string
	// handoff runs one handoff run on lock name with n waiters, within
	// timeout, and returns the handoffs' times.
	handoff(ctx context.Context, name string, n int, timeout time.Duration) ([]time.Duration, error)
	// wakeups returns the wake-ups counted so far, or 0 where they
	// cannot be seen.
	wakeups() uint64
}

// start starts a side with fn under the side's pprof label, so that every
// goroutine its sessions, servers and clients start carries it. setup is
// bounded by cfg.SetupTimeout.
func start[S any](ctx context.Context, name string, cfg Config, fn func(ctx, setup context.Context) (S, error)) (S, error) {
	setup, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	return pprofDo(ctx, pprof.Labels("side", name), func(ctx context.Context) (S, error) {
		return fn(ctx, setup)
	})
}

// pprofDo is pprof.Do for a function with results.
func pprofDo[T any](ctx context.Context, labels pprof.LabelSet, fn func(context.Context) (T, error)) (v T, err error) {
	pprof.Do(ctx, labels, func(ctx context.Context) { v, err = fn(ctx) })
	return v, err
}

// Worker states, in order.
const (
	warming int32 = iota
	measuring
	stopping
)

// worker is one closed-loop cycler of a phase.
type worker struct {
	ops   int64 // timed: started and ended inside the window
	times []time.Duration
	err   error // the first, which stopped the worker
}

// runPhase runs side s at concurrency c for one warm-up and one window.
func runPhase(ctx context.Context, s cycler, c int, cfg Config) (phaseFigures, error) {
	runtime.GC() // each phase starts from a collected heap
	var (
		state    atomic.Int32
		warm     sync.WaitGroup        // a worker is done once it has completed a cycle
		timed    = make(chan struct{}) // closed once a cycle has been timed
		timeOnce sync.Once
		failed   = make(chan struct{})
		failOnce sync.Once
		wg       sync.WaitGroup
	)
	fail := func() { failOnce.Do(func() { close(failed) }) }
	workers := make([]worker, c)
	labels := pprof.Labels("side", s.name(), "phase", "cycle", "c", strconv.Itoa(c))
	warm.Add(c)
	for i := range workers {
		w := &workers[i]
		op := s.cycle(c, i)
		wg.Go(func() {
			pprof.Do(ctx, labels, func(ctx context.Context) {
				w.run(ctx, op, &state, warm.Done, func() { timeOnce.Do(func() { close(timed) }) }, fail)
			})
		})
	}

	var (
		start, end time.Time
		cpu        time.Duration
	)
	waitErr := wait(ctx, failed, cfg.Warmup)
	if waitErr == nil {
		waitErr = warmed(ctx, failed, &warm, cfg.SetupTimeout)
	}
	if waitErr == nil {
		cpu = processCPU()
		start = time.Now()
		state.Store(measuring)
		waitErr = wait(ctx, failed, cfg.Duration)
		if waitErr == nil {
			waitErr = awaitTimed(ctx, failed, timed, cfg.SetupTimeout)
		}
		end = time.Now()
		cpu = processCPU() - cpu
	}
	state.Store(stopping)
	wg.Wait()

	fig := phaseFigures{elapsed: end.Sub(start), cpu: cpu}
	var (
		errs  int
		first error
	)
	for i := range workers {
		w := &workers[i]
		fig.ops += w.ops
		fig.times = append(fig.times, w.times...)
		if w.err != nil {
			errs++
			if first == nil {
				first = w.err
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		return phaseFigures{}, fmt.Errorf("lockbench: %s at c=%d: %w", s.name(), c, ctx.Err())
	case errs > 0:
		return phaseFigures{}, fmt.Errorf("%w: %d workers of %s at c=%d failed, the first: %w", ErrOpsFailed, errs, s.name(), c, first)
	case waitErr != nil:
		return phaseFigures{}, waitErr
	case fig.ops == 0:
		return phaseFigures{}, fmt.Errorf("%w: %s at c=%d in %v", ErrNoOps, s.name(), c, fig.elapsed.Round(time.Millisecond))
	}
	return fig, nil
}

// warmed waits until every worker has completed a cycle (warm is done),
// or until ctx ends, failed is closed or timeout runs out.
func warmed(ctx context.Context, failed <-chan struct{}, warm *sync.WaitGroup, timeout time.Duration) error {
	done := make(chan struct{})
	go func() { warm.Wait(); close(done) }()
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
		return fmt.Errorf("lockbench: a worker completed no cycle within %v of warm-up", timeout)
	}
}

// awaitTimed keeps a window open until a cycle has been timed in it
// (timed is closed), or until ctx ends, failed is closed or timeout runs
// out.
func awaitTimed(ctx context.Context, failed, timed <-chan struct{}, timeout time.Duration) error {
	select {
	case <-timed:
		return nil
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-timed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-failed:
		return errWorkerFailed
	case <-t.C:
		return nil // ErrNoOps
	}
}

// errWorkerFailed says a worker failed; its error is in the worker.
var errWorkerFailed = errors.New("lockbench: a worker failed")

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

// run cycles until the state is stopping or a cycle fails, timing the
// cycles that start and end while the state is measuring. It calls warm
// once, when its first cycle is done or, failing that, when it returns,
// and timed after each cycle it times.
func (w *worker) run(ctx context.Context, op func(context.Context) error, state *atomic.Int32, warm, timed, fail func()) {
	defer func() {
		if warm != nil {
			warm()
		}
	}()
	// The calls' contexts hang off this worker's own: were they children
	// of one context all workers share, registering and removing them
	// would contend on its lock.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		before := state.Load()
		if before == stopping {
			return
		}
		start := time.Now()
		err := op(ctx)
		d := time.Since(start)
		if err != nil {
			w.err = err
			fail()
			return
		}
		if warm != nil {
			warm()
			warm = nil
		}
		if before == measuring && state.Load() == measuring {
			w.ops++
			w.times = append(w.times, d)
			timed()
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
