package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
	"github.com/switchyard-dev/switchyard/internal/benchrun"
	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
)

// saleSpec is one path's run of the flash sale on a schedule: the
// machinery the peak-shaving, decoupling and mq-costs scenarios share.
type saleSpec struct {
	// scenario and path name the run (runSalePaths sets path).
	scenario, path string
	profile        Profile
	// pick is each send's item; probe marks the sends that are
	// eventual-consistency probes (nil: none).
	pick  []string
	probe []bool
	// retry marks the sends whose producer sends the purchase a second
	// time once the first was accepted, as a producer does that did not
	// hear the answer (nil: none).
	retry []bool
	shop  ShopConfig
	// deadline bounds an RPC call and a publish.
	deadline time.Duration
	// workers is the MQ pool's size; ackWait the consumer's AckWait.
	workers int
	ackWait time.Duration
	// limits is the RPC server's limiter.
	limits RPCLimits
	// outage, if set, takes the consumer side down and brings it back.
	outage *outage
	bucket time.Duration
	// drainTimeout bounds the wait for accepted purchases after the
	// schedule.
	drainTimeout time.Duration
	// probeTimeout bounds how long a probe polls for the new value.
	probeTimeout time.Duration
}

// outage takes a path's consumer side down At into the schedule, as a
// crash, and brings it back For later (0: at once, a restart). RPC: the
// shop's server is stopped abruptly (calls in flight fail, its registry
// entry goes) and served again; MQ: every worker is killed between the
// store's write and the ack, and a new pool is started.
type outage struct {
	At, For time.Duration
}

// saleRun is what one path's sale run measured.
type saleRun struct {
	result  *PathResult
	tracker *Tracker
	store   *flashsale.Store
	// down and up are when the consumer side was down (the crash had
	// returned) and back (zero: no outage).
	down, up time.Time
	// held counts the messages the crashed workers left applied but
	// unacked (MQ); redelivered the deliveries after a message's first.
	held        int
	redelivered atomic.Int64
	probes      probeStats
	// retries counts the second sends of spec.retry; retryDup those the
	// path answered as duplicates at its door (JetStream's dedup by
	// Nats-Msg-Id, or the store's answer through RPC); retryErr those
	// that failed.
	retries, retryDup, retryErr atomic.Int64
}

// probeStats are the eventual-consistency probes' findings: a reader that
// reads the purchased item's stock right after the purchase was accepted.
// It is safe for concurrent use.
type probeStats struct {
	mu sync.Mutex
	// reads counts the probes made; timedOut those that never saw the new
	// stock.
	reads, timedOut int64
	// staleFor is how long each probe whose first read saw the old stock
	// kept seeing it.
	staleFor []time.Duration
}

func (p *probeStats) add(stale bool, staleFor time.Duration, timedOut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	if stale {
		p.staleFor = append(p.staleFor, staleFor)
	}
	if timedOut {
		p.timedOut++
	}
}

// probeSummary is what the probes found, at one moment.
type probeSummary struct {
	// reads counts the probes; stale those whose first read saw the old
	// stock; timedOut those that never saw the new one.
	reads, stale, timedOut int64
	// staleFor summarises how long the stale probes saw the old stock.
	staleFor LatencySummary
}

// snapshot returns the probes' findings so far.
func (p *probeStats) snapshot() probeSummary {
	p.mu.Lock()
	defer p.mu.Unlock()
	return probeSummary{reads: p.reads, stale: int64(len(p.staleFor)), timedOut: p.timedOut,
		staleFor: Summarise(slices.Clone(p.staleFor))}
}

// pickItems returns n items drawn from items with a generator seeded by
// seed: each path of a scenario gets the same draw.
func pickItems(seed uint64, n int, items []string) []string {
	rng := rand.New(rand.NewPCG(seed, 0))
	pick := make([]string, n)
	for i := range pick {
		pick[i] = items[rng.IntN(len(items))]
	}
	return pick
}

// runSalePaths runs spec on the RPC path and then on the MQ path (each a
// fresh store, with runSale) and returns figures of each run, in that
// order. It reports to progress (nil: nowhere) against total, the time it
// expects to take, and "done" at the end.
func runSalePaths(ctx context.Context, env *Env, progress Progress, total time.Duration, spec saleSpec, figures func(*saleRun) *PathResult) ([]*PathResult, error) {
	var prog progressState
	stop := func() {}
	if progress != nil {
		stop = prog.run(progress, time.Now(), total)
	}
	defer stop()
	var paths []*PathResult
	for _, path := range []string{PathRPC, PathMQ} {
		prog.set(path, nil)
		spec.path = path
		run, err := runSale(ctx, env, spec, &prog)
		if err != nil {
			return nil, err
		}
		paths = append(paths, figures(run))
	}
	if progress != nil {
		stop()
		progress.Update("done", 1)
	}
	return paths, nil
}

// runSale runs one path of spec: a fresh store and shop, the path, the
// schedule (with the outage, if any), the drain, and the teardown.
func runSale(ctx context.Context, env *Env, spec saleSpec, prog *progressState) (_ *saleRun, err error) {
	rec := NewRecorder(time.Now(), spec.bucket)
	tr := NewTracker(rec)
	out := &saleRun{tracker: tr}
	run := PathRun{Name: spec.path, Title: strings.ToUpper(spec.path), Tracker: tr, Recorder: rec, Capacity: spec.shop.Capacity}

	var (
		submit  func(ctx context.Context, req *flashsalev1.PurchaseRequest) (dup bool, err error)
		depth   func(ctx context.Context) (float64, error)
		down    func(ctx context.Context) error
		up      func(ctx context.Context) error
		closers benchrun.Stops
	)
	closeAll := func() error {
		if err := closers.Close(); err != nil {
			return fmt.Errorf("demo: %s: %s path: stopping: %w", spec.scenario, spec.path, err)
		}
		return nil
	}
	defer func() {
		if cerr := closeAll(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	setup, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch spec.path {
	case PathRPC:
		shop, err := NewShop(env, spec.scenario, spec.path, spec.shop, env.Locks, rec)
		if err != nil {
			return nil, err
		}
		out.store = shop.Store()
		rp, err := StartRPCPath(setup, env, shop, env.Name(spec.scenario, "shop"), spec.limits)
		if err != nil {
			return nil, err
		}
		closers.Add(rp.Close)
		submit = func(ctx context.Context, req *flashsalev1.PurchaseRequest) (bool, error) {
			resp, err := rp.Client.Purchase(ctx, req)
			return resp.GetDuplicate(), err
		}
		depth = func(context.Context) (float64, error) { return float64(shop.InFlight()), nil }
		down = func(context.Context) error { return rp.Crash() }
		up = rp.Restart
	case PathMQ:
		shop, err := NewShop(env, spec.scenario, spec.path, spec.shop, env.LocksNATS, rec)
		if err != nil {
			return nil, err
		}
		out.store = shop.Store()
		name := env.Name(spec.scenario)
		qcfg := flashsale.QueueConfig{Stream: "FLASHSALE_" + name, Subject: "flashsale." + name + ".purchases",
			Consumer: "workers", Workers: spec.workers, AckWait: spec.ackWait}
		mp, err := StartMQPath(setup, env, shop, qcfg, flashsale.WithObserver(func(pr flashsale.Processed) {
			if pr.Delivery > 1 {
				out.redelivered.Add(1)
			}
			if pr.Err == nil {
				tr.Settle(pr.PurchaseID, pr.At)
			}
		}))
		if err != nil {
			return nil, err
		}
		closers.Add(func() error { return mp.Close(context.WithoutCancel(ctx)) })
		submit = func(ctx context.Context, req *flashsalev1.PurchaseRequest) (bool, error) {
			ack, err := mp.Queue.Enqueue(ctx, req)
			return ack != nil && ack.Duplicate, err
		}
		depth = func(ctx context.Context) (float64, error) {
			d, err := mp.Queue.Depth(ctx)
			return float64(d), err
		}
		down = func(ctx context.Context) error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			out.held = mp.CrashAfterApply(cctx)
			return nil
		}
		up = mp.RestartWorkers
	default:
		return nil, fmt.Errorf("demo: %s: unknown path %q", spec.scenario, spec.path)
	}

	sends := spec.profile.Sends()
	start := time.Now().Add(100 * time.Millisecond)
	rec.Restart(start)
	run.ScheduleEnd = start.Add(spec.profile.Duration())
	stopSampling := rec.Sample(ColQueueDepth, spec.bucket, depth)
	closers.Add(func() error { stopSampling(); return nil })
	if prog != nil {
		prog.set(spec.path, func() string { return pathStage(spec.profile, start, tr) })
	}

	// The outage runs beside the schedule, in a goroutine of the run's.
	outageDone := make(chan error, 1)
	var downAt, upAt time.Time
	if o := spec.outage; o != nil {
		octx, ocancel := context.WithCancel(ctx)
		defer ocancel()
		go func() {
			outageDone <- func() error {
				if err := sleepUntil(octx, start.Add(o.At)); err != nil {
					return err
				}
				if err := down(octx); err != nil {
					return err
				}
				downAt = time.Now()
				if err := sleepUntil(octx, start.Add(o.At+o.For)); err != nil {
					return err
				}
				uctx, cancel := context.WithTimeout(octx, time.Minute)
				defer cancel()
				if err := up(uctx); err != nil {
					return err
				}
				upAt = time.Now()
				return nil
			}()
		}()
	} else {
		outageDone <- nil
	}

	run.Dispatch = Dispatch(ctx, start, sends, 20000, func(ctx context.Context, i int, scheduled time.Time) {
		id := fmt.Sprintf("%s-%s-%s-%06d", env.RunID, spec.scenario, spec.path, i)
		tr.Offer(id, scheduled, sends[i].Phase)
		cctx, cancel := context.WithTimeout(ctx, spec.deadline)
		defer cancel()
		req := &flashsalev1.PurchaseRequest{PurchaseId: id, Item: spec.pick[i], Quantity: 1}
		_, err := submit(cctx, req)
		now := time.Now()
		switch {
		case err == nil && spec.path == PathRPC:
			tr.Accept(id, now)
			tr.Settle(id, now) // the call returns once the store has applied it
		case err == nil:
			tr.Accept(id, now)
		case spec.path == PathRPC:
			tr.Refuse(id, now, ClassifyRPC(err))
		default:
			tr.Refuse(id, now, ClassifyPublish(err))
		}
		if err == nil && spec.probe != nil && spec.probe[i] {
			out.probes.add(probeRead(ctx, out.store, spec.pick[i], now, spec.probeTimeout))
		}
		if err == nil && spec.retry != nil && spec.retry[i] {
			rctx, cancel := context.WithTimeout(ctx, spec.deadline)
			defer cancel()
			out.retries.Add(1)
			switch dup, err := submit(rctx, req); {
			case err != nil:
				out.retryErr.Add(1)
			case dup:
				out.retryDup.Add(1)
			}
		}
	})
	if err := <-outageDone; err != nil {
		return nil, fmt.Errorf("demo: %s: %s path: outage: %w", spec.scenario, spec.path, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out.down, out.up = downAt, upAt

	deadline := time.Now().Add(spec.drainTimeout)
	for tr.Counts().Pending > 0 && time.Now().Before(deadline) {
		if err := sleepUntil(ctx, time.Now().Add(50*time.Millisecond)); err != nil {
			return nil, err
		}
	}
	stopSampling()
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	if d, err := depth(dctx); err == nil {
		rec.Gauge(ColQueueDepth, time.Now(), d)
	}
	dcancel()
	if err := closeAll(); err != nil {
		return nil, err
	}
	run.Store = out.store
	out.result = run.Result()
	return out, nil
}

// probeRead is the reader of the eventual-consistency probe: right after
// a purchase of item (which the probe alone buys, one unit in stock) was
// accepted at accepted, it reads the item's stock at the store; while it
// still sees the old value it reads again, every millisecond, for at most
// timeout. It reports whether the first read was stale, for how long the
// old value was seen, and whether the new one never came.
func probeRead(ctx context.Context, store *flashsale.Store, item string, accepted time.Time, timeout time.Duration) (stale bool, staleFor time.Duration, timedOut bool) {
	fresh := func() bool {
		_, sold, err := store.Stock(item)
		return err == nil && sold > 0
	}
	if fresh() {
		return false, 0, false
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for time.Since(accepted) < timeout {
		select {
		case <-ctx.Done():
			return true, time.Since(accepted), true
		case <-t.C:
		}
		if fresh() {
			return true, time.Since(accepted), false
		}
	}
	return true, time.Since(accepted), true
}

// sleepUntil waits until t, or until ctx ends (returning its error).
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
