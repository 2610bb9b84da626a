package lockbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"slices"
	"strconv"
	"time"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
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

	raw, err := benchrun.StartSide(ctx, SideRaw, cfg.SetupTimeout, func(ctx, setup context.Context) (*rawSide, error) {
		return startRaw(setup, cfg, run)
	})
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, raw.stop()) }()
	gs, err := benchrun.StartSide(ctx, SideGRPC, cfg.SetupTimeout, func(ctx, setup context.Context) (*serviceSide, error) {
		return startGRPC(ctx, setup, cfg, run)
	})
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, gs.stop()) }()
	zs, err := benchrun.StartSide(ctx, SideZKLock, cfg.SetupTimeout, func(ctx, setup context.Context) (*zklockSide, error) {
		return startZKLock(setup, cfg)
	})
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, zs.stop()) }()

	sides := []cycler{raw, gs}
	var ns *serviceSide
	if slices.Contains(cfg.Via, SideNATS) {
		ns, err = benchrun.StartSide(ctx, SideNATS, cfg.SetupTimeout, func(ctx, setup context.Context) (*serviceSide, error) {
			return startNATS(setup, cfg, run, gs)
		})
		if err != nil {
			return Result{}, err
		}
		defer func() { err = errors.Join(err, ns.stop()) }()
		sides = append(sides, ns)
	}

	cycled, err := benchrun.AlternateAll(cfg.Concurrency, cfg.Rounds, sides, func(s cycler, c, i int) (Round, error) {
		fig, err := runPhase(ctx, s, c, cfg)
		if err != nil {
			return Round{}, err
		}
		r := fig.round()
		if cfg.Progress != nil {
			cfg.Progress(Phase{Side: s.name(), Concurrency: c, Round: i + 1, Rounds: cfg.Rounds,
				OpsPerS: r.OpsPerS, P50us: r.P50us, P99us: r.P99us, CPUusPerOp: r.CPUusPerOp})
		}
		return r, nil
	})
	if err != nil {
		return Result{}, err
	}

	var queued *Queued
	if ns != nil && cfg.Queued > 0 {
		q, err := benchrun.Do(ctx, pprof.Labels("side", SideNATS, "phase", "queued"), func(ctx context.Context) (Queued, error) {
			return runQueued(ctx, ns, cfg, run)
		})
		if err != nil {
			return Result{}, err
		}
		if cfg.Progress != nil {
			cfg.Progress(Phase{Side: SideNATS, Queued: &q})
		}
		queued = &q
	}

	var (
		hrounds []HandoffRound
		timed   int
	)
	for i := range cfg.Rounds {
		var hr HandoffRound
		for _, s := range benchrun.ABBA[handoffSide](gs, zs, i) {
			name := fmt.Sprintf("lockbench-%s/handoff-%s-%d", run, s.name(), i+1)
			before := s.wakeups()
			times, err := benchrun.Do(ctx, pprof.Labels("side", s.name(), "phase", "handoff"), func(ctx context.Context) ([]time.Duration, error) {
				return s.handoff(ctx, name, cfg.Waiters, cfg.SetupTimeout)
			})
			if err != nil {
				return Result{}, err
			}
			slices.Sort(times)
			p := Phase{Side: s.name(), Handoff: true, Round: i + 1, Rounds: cfg.Rounds, Handoffs: len(times),
				P50us: benchrun.Round1(benchrun.Micros(quantile(times, 0.50))), P99us: benchrun.Round1(benchrun.Micros(quantile(times, 0.99)))}
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
	var natsCells map[string]Cell
	if ns != nil {
		natsCells = cells(cycled[ns])
	}
	res := newResult(cfg, cells(cycled[raw]), cells(cycled[gs]), natsCells, handoff(cfg, hrounds, timed))
	res.Queued = queued
	return res, nil
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

// runPhase runs side s at concurrency c for one warm-up and one window,
// each worker keeping every time of its own.
func runPhase(ctx context.Context, s cycler, c int, cfg Config) (phaseFigures, error) {
	times := make([][]time.Duration, c)
	win, err := benchrun.Loop{
		Workers: c,
		NewWorker: func(i int) benchrun.Worker {
			return benchrun.Worker{Op: s.cycle(c, i), Record: func(d time.Duration) { times[i] = append(times[i], d) }}
		},
		Labels:   pprof.Labels("side", s.name(), "phase", "cycle", "c", strconv.Itoa(c)),
		Warmup:   cfg.Warmup,
		Duration: cfg.Duration,
		// Every worker completes a cycle before the window opens (the
		// first on a lock name makes its directory), and the window is
		// held open until a cycle has been timed.
		Settle: cfg.SetupTimeout,
	}.Run(ctx)

	fig := phaseFigures{elapsed: win.Elapsed, cpu: win.Used.CPU}
	for _, t := range times {
		fig.times = append(fig.times, t...)
	}
	fig.ops = int64(len(fig.times))
	switch {
	case ctx.Err() != nil:
		return phaseFigures{}, fmt.Errorf("lockbench: %s at c=%d: %w", s.name(), c, ctx.Err())
	case win.Failed > 0:
		return phaseFigures{}, fmt.Errorf("%w: %d workers of %s at c=%d failed, the first: %w", ErrOpsFailed, win.Failed, s.name(), c, win.Err)
	case errors.Is(err, benchrun.ErrNotWarmed):
		return phaseFigures{}, fmt.Errorf("lockbench: a worker completed no cycle within %v of warm-up", cfg.SetupTimeout)
	case err != nil:
		return phaseFigures{}, err
	case fig.ops == 0:
		return phaseFigures{}, fmt.Errorf("%w: %s at c=%d in %v", ErrNoOps, s.name(), c, fig.elapsed.Round(time.Millisecond))
	}
	return fig, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
