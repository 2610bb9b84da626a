package demo

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// PeakShavingConfig is the peak-shaving scenario's knobs. Start from
// DefaultPeakShaving.
type PeakShavingConfig struct {
	// Capacity is the downstream's capacity C, purchases a second.
	Capacity float64
	// Steady is the offered rate before and after the burst.
	Steady float64
	// BurstFactor makes the burst's rate BurstFactor × Capacity.
	BurstFactor float64
	// Before, Burst and After are the three phases' lengths.
	Before, Burst, After time.Duration
	// Deadline is the RPC callers' deadline, and the producers' for a
	// publish to be acknowledged.
	Deadline time.Duration
	// Workers is the MQ worker pool's size (and MaxAckPending).
	Workers int
	// RPCBurst is the RPC limiter's burst above Capacity;
	// RPCMaxConcurrent its bound on calls in flight.
	RPCBurst, RPCMaxConcurrent int
	// Items is the number of items on sale; Stock the units of each (0:
	// four fifths of the purchases offered, spread over the items, so the
	// sale sells out if every purchase gets through).
	Items int
	Stock int64
	// DrainTimeout bounds the wait, after the schedule, for accepted
	// purchases to be settled; what is still pending then counts as lost.
	// 0: three times the drain the backlog should need, plus 30s.
	DrainTimeout time.Duration
	// Bucket is the series' bucket width.
	Bucket time.Duration
	// Seed picks each purchase's item, the same for both paths.
	Seed uint64
}

// DefaultPeakShaving returns the defaults under opts: C = opts.Capacity;
// C/2 for 5s, 4×C for 5s, C/2 for 5s (durations × opts.Scale); RPC
// deadline 2s; 16 workers; the RPC limiter at C with a burst of C/10 and
// 64 calls in flight; 16 items.
func DefaultPeakShaving(opts Options) PeakShavingConfig {
	return PeakShavingConfig{
		Capacity:         opts.Capacity,
		Steady:           opts.Capacity / 2,
		BurstFactor:      4,
		Before:           opts.Scaled(5 * time.Second),
		Burst:            opts.Scaled(5 * time.Second),
		After:            opts.Scaled(5 * time.Second),
		Deadline:         2 * time.Second,
		Workers:          16,
		RPCBurst:         max(int(opts.Capacity/10), 1),
		RPCMaxConcurrent: 64,
		Items:            16,
		Bucket:           250 * time.Millisecond,
		Seed:             1,
	}
}

// Validate reports a configuration the scenario cannot run.
func (c PeakShavingConfig) Validate() error {
	switch {
	case !(c.Capacity > 0) || c.Steady < 0 || !(c.BurstFactor > 0):
		return fmt.Errorf("demo: peak shaving: capacity %v, steady %v/s, burst factor %v: want positive rates", c.Capacity, c.Steady, c.BurstFactor)
	case c.Deadline <= 0 || c.Bucket <= 0 || c.DrainTimeout < 0:
		return fmt.Errorf("demo: peak shaving: deadline %v, bucket %v, drain timeout %v", c.Deadline, c.Bucket, c.DrainTimeout)
	case c.Workers < 1 || c.RPCBurst < 1 || c.RPCMaxConcurrent < 1 || c.Items < 1 || c.Stock < 0:
		return fmt.Errorf("demo: peak shaving: %d workers, RPC burst %d, %d in flight, %d items, stock %d: want 1 or more of each",
			c.Workers, c.RPCBurst, c.RPCMaxConcurrent, c.Items, c.Stock)
	}
	return c.Profile().Validate()
}

// Profile returns the schedule: steady, burst, steady.
func (c PeakShavingConfig) Profile() Profile {
	return Profile{
		{Name: "steady", Duration: c.Before, Rate: c.Steady},
		{Name: "burst", Duration: c.Burst, Rate: c.BurstFactor * c.Capacity},
		{Name: "steady", Duration: c.After, Rate: c.Steady},
	}
}

// burstPhase is the index of the burst in Profile.
const burstPhase = 1

// backlog returns the queue a path that works at exactly Capacity would
// have at the end of the profile, and its peak.
func (c PeakShavingConfig) backlog() (end, peak float64) {
	for _, ph := range c.Profile() {
		end = max(end+(ph.Rate-c.Capacity)*ph.Duration.Seconds(), 0)
		peak = max(peak, end)
	}
	return end, peak
}

// PeakShaving is scenario 1: a steady rate below capacity, a burst of
// several times it, steady again — the same schedule against the RPC
// path (callers with a deadline, the RPC stack's limiter) and the MQ path
// (a JetStream work queue, a fixed worker pool pulling at capacity).
type PeakShaving struct{ cfg PeakShavingConfig }

var _ Scenario = (*PeakShaving)(nil)

// NewPeakShaving returns the scenario with cfg.
func NewPeakShaving(cfg PeakShavingConfig) (*PeakShaving, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &PeakShaving{cfg: cfg}, nil
}

// Name returns "peak-shaving".
func (*PeakShaving) Name() string { return "peak-shaving" }

// Run runs the RPC path and then the MQ path, each on a fresh store, on
// the same schedule and the same items, and reports them side by side.
func (p *PeakShaving) Run(ctx context.Context, env *Env, progress Progress) (*ScenarioResult, error) {
	cfg := p.cfg
	sends := cfg.Profile().Sends()
	if len(sends) == 0 {
		return nil, fmt.Errorf("demo: peak shaving: the schedule sends nothing")
	}
	pick := pickItems(cfg.Seed, len(sends), ItemNames(cfg.Items))
	stock := cfg.Stock
	if stock == 0 {
		stock = int64(math.Ceil(0.8 * float64(len(sends)) / float64(cfg.Items)))
	}
	shopCfg := ShopConfig{Items: cfg.Items, Stock: stock, Capacity: cfg.Capacity}

	end, peak := cfg.backlog()
	drainEstimate := time.Duration(end / cfg.Capacity * float64(time.Second))
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 3*drainEstimate + 30*time.Second
	}
	profile := cfg.Profile()
	res := &ScenarioResult{
		Name:  p.Name(),
		Title: "a burst of " + fmtRate(cfg.BurstFactor*cfg.Capacity) + " against a capacity of " + fmtRate(cfg.Capacity) + " — refuse it (RPC) or queue it (MQ)",
		Setup: fmt.Sprintf("schedule %s; C = %s; %d items × %d units\nRPC: deadline %v, limiter %s (burst %d), %d calls in flight, locks over gRPC; MQ: JetStream work queue, %d workers (MaxAckPending %d), locks over NATS",
			describeProfile(profile, cfg.Capacity), fmtRate(cfg.Capacity), cfg.Items, stock,
			cfg.Deadline, fmtRate(cfg.Capacity), cfg.RPCBurst, cfg.RPCMaxConcurrent, cfg.Workers, cfg.Workers),
		Config: map[string]any{
			"capacity_per_s": cfg.Capacity, "steady_per_s": cfg.Steady, "burst_per_s": cfg.BurstFactor * cfg.Capacity,
			"before_s": cfg.Before.Seconds(), "burst_s": cfg.Burst.Seconds(), "after_s": cfg.After.Seconds(),
			"rpc_deadline_ms": cfg.Deadline.Milliseconds(), "rpc_burst": cfg.RPCBurst, "rpc_max_concurrent": cfg.RPCMaxConcurrent,
			"mq_workers": cfg.Workers, "items": cfg.Items, "stock_per_item": stock, "bucket_ms": cfg.Bucket.Milliseconds(),
			"expected_backlog_peak": math.Round(peak),
		},
	}
	// For progress: the RPC path takes the schedule and its deadline, the
	// MQ path the schedule and its drain.
	total := 2*profile.Duration() + cfg.Deadline + drainEstimate
	paths, err := runSalePaths(ctx, env, progress, total, saleSpec{
		scenario: p.Name(), profile: profile, pick: pick, shop: shopCfg,
		deadline: cfg.Deadline, workers: cfg.Workers,
		limits: RPCLimits{Rate: cfg.Capacity, Burst: cfg.RPCBurst, MaxConcurrent: cfg.RPCMaxConcurrent},
		bucket: cfg.Bucket, drainTimeout: cfg.DrainTimeout,
	}, peakFigures)
	if err != nil {
		return nil, err
	}
	res.Paths = paths
	res.Verdicts = peakVerdicts(res, cfg)
	return res, nil
}

// peakFigures adds the burst's figures to a path's.
func peakFigures(run *saleRun) *PathResult {
	pr := run.result
	off, refused := run.tracker.Phase(burstPhase)
	pr.Set("burst_offered", "burst offered", UnitCount, float64(off))
	pr.Set("burst_refused", "burst refused", UnitCount, float64(refused))
	pr.Set("burst_refused_pct", "burst refused share", UnitPercent, pct(refused, off))
	return pr
}

// pathStage describes where a path's run is, for the progress line.
func pathStage(profile Profile, start time.Time, tr *Tracker) string {
	c := tr.Counts()
	at := time.Since(start)
	var t time.Duration
	phase := "draining"
	for _, ph := range profile {
		t += ph.Duration
		if at < t {
			phase = ph.Name + " " + fmtRate(ph.Rate)
			break
		}
	}
	if at < 0 {
		phase = "starting"
	}
	return fmt.Sprintf("%s · sent %d · accepted %d · refused %d · settled %d",
		phase, c.Offered, c.Accepted, c.Rejected+c.TimedOut+c.Failed, c.Settled)
}

// peakVerdicts says, from the figures, what the scenario showed.
func peakVerdicts(res *ScenarioResult, cfg PeakShavingConfig) []string {
	r, m := res.Path(PathRPC), res.Path(PathMQ)
	var out []string

	rOff, rRef := r.Value("burst_offered"), r.Value("burst_refused")
	if rRef > 0 {
		out = append(out, fmt.Sprintf("RPC cannot shave peaks: it refused %.0f %% of the burst (%.0f of %.0f purchases; over the whole run %d rejected by the limiter, %.0f timed out, %.0f failed); it lost %d of the %d it accepted.",
			pct(int64(rRef), int64(rOff)), rRef, rOff, r.Rejected, r.Value("timed_out"), r.Value("failed"), r.Lost, r.Accepted))
	} else {
		out = append(out, fmt.Sprintf("RPC took this whole burst (%.0f purchases): it stayed within what the limiter admits; it lost %d.", rOff, r.Lost))
	}

	limit := cfg.Capacity * 1.1
	if m.Lost == 0 && m.Oversold == 0 && m.MaxDownstreamPerS <= limit && m.Completed == m.Accepted {
		out = append(out, fmt.Sprintf("MQ shaves the peak: it accepted %d of %d purchases (%.0f %% of the burst), lost 0, oversold 0, and the downstream stayed at C (max %s in any 1 s window, C = %s; the token bucket's one-request burst and the window's edges allow a few over).",
			m.Accepted, m.Offered, 100-m.Value("burst_refused_pct"), fmtRate(m.MaxDownstreamPerS), fmtRate(cfg.Capacity)))
	} else {
		out = append(out, fmt.Sprintf("MQ did not shave this peak cleanly: %d lost, %d oversold, %d of %d accepted settled, downstream max %s against C = %s.",
			m.Lost, m.Oversold, m.Completed, m.Accepted, fmtRate(m.MaxDownstreamPerS), fmtRate(cfg.Capacity)))
	}
	out = append(out, fmt.Sprintf("What MQ costs: latency has no bound — p99 %s (max %s) against RPC's %s, and %.1f s after the last send to drain a queue that peaked at %.0f.",
		FormatMillis(m.P99ms), FormatMillis(m.MaxMs), FormatMillis(r.P99ms), m.DrainS, m.Value("queue_depth_max")))
	out = append(out, fmt.Sprintf("What refusing costs: RPC sold %.0f units and sent %d buyers away; MQ sold %.0f and answered %.0f \"sold out\".",
		r.Value("sold"), r.Rejected+int64(r.Value("timed_out")+r.Value("failed")), m.Value("sold"), m.Value("sold_out")))
	if r.Oversold+m.Oversold > 0 {
		out = append(out, fmt.Sprintf("CORRECTNESS FAILURE: oversold RPC %d, MQ %d.", r.Oversold, m.Oversold))
	}
	return out
}

func pct(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

func fmtRate(r float64) string {
	if r == math.Trunc(r) {
		return fmt.Sprintf("%.0f/s", r)
	}
	return fmt.Sprintf("%.1f/s", r)
}

// describeProfile says what a profile sends: "100/s for 5s, 800/s (4×C)
// for 5s, 100/s for 5s".
func describeProfile(p Profile, capacity float64) string {
	var parts []string
	for _, ph := range p {
		s := fmtRate(ph.Rate)
		if ph.Rate > capacity {
			s += fmt.Sprintf(" (%g×C)", ph.Rate/capacity)
		}
		parts = append(parts, s+" for "+ph.Duration.String())
	}
	return strings.Join(parts, ", ")
}

// progressState turns a scenario's elapsed time and its paths' stages
// into Progress updates, from a goroutine of its own.
type progressState struct {
	mu    sync.Mutex
	path  string
	stage func() string
}

func (s *progressState) set(path string, stage func() string) {
	s.mu.Lock()
	s.path, s.stage = path, stage
	s.mu.Unlock()
}

// run reports every 200ms until stop: the time since began over total
// (at most 0.99) and the current path's stage.
func (s *progressState) run(p Progress, began time.Time, total time.Duration) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			s.mu.Lock()
			text := s.path + ": setting up"
			if s.stage != nil {
				text = s.path + ": " + s.stage()
			}
			s.mu.Unlock()
			p.Update(text, min(time.Since(began).Seconds()/total.Seconds(), 0.99))
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-done }) }
}
