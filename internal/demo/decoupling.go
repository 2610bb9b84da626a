package demo

import (
	"context"
	"fmt"
	"math"
	"time"
)

// DecouplingConfig is the decoupling scenario's knobs. Start from
// DefaultDecoupling.
type DecouplingConfig struct {
	// Capacity is the downstream's capacity C, purchases a second.
	Capacity float64
	// Rate is the offered load, steady through the run (below C, so that
	// the only trouble is the outage).
	Rate float64
	// Before, Outage and After are the schedule's three phases: the
	// consumer side crashes when Outage begins and comes back when it ends.
	Before, Outage, After time.Duration
	// Deadline is the RPC callers' deadline, and the producers' for a
	// publish to be acknowledged.
	Deadline time.Duration
	// Workers is the MQ worker pool's size (and MaxAckPending); AckWait
	// how long a delivered message may stay unacked before it comes back.
	Workers int
	AckWait time.Duration
	// RPCBurst and RPCMaxConcurrent are the RPC limiter's (at Capacity).
	RPCBurst, RPCMaxConcurrent int
	// Items is the number of items; each has stock enough for every
	// purchase, so that every purchase applied is a sale.
	Items int
	// DrainTimeout bounds the wait for accepted purchases after the
	// schedule (0: 30s plus the backlog's drain at C).
	DrainTimeout time.Duration
	// Bucket is the series' bucket width.
	Bucket time.Duration
	// Seed picks each purchase's item, the same for both paths.
	Seed uint64
}

// DefaultDecoupling returns the defaults under opts: C = opts.Capacity,
// C/2 offered for 12s, the consumer side down from 3s to 8s (durations ×
// opts.Scale); RPC deadline 2s; 16 workers, AckWait 1s.
func DefaultDecoupling(opts Options) DecouplingConfig {
	return DecouplingConfig{
		Capacity:         opts.Capacity,
		Rate:             opts.Capacity / 2,
		Before:           opts.Scaled(3 * time.Second),
		Outage:           opts.Scaled(5 * time.Second),
		After:            opts.Scaled(4 * time.Second),
		Deadline:         2 * time.Second,
		Workers:          16,
		AckWait:          time.Second,
		RPCBurst:         max(int(opts.Capacity/10), 1),
		RPCMaxConcurrent: 64,
		Items:            16,
		Bucket:           250 * time.Millisecond,
		Seed:             2,
	}
}

// Validate reports a configuration the scenario cannot run.
func (c DecouplingConfig) Validate() error {
	switch {
	case !(c.Capacity > 0) || !(c.Rate > 0):
		return fmt.Errorf("demo: decoupling: capacity %v, rate %v/s: want positive rates", c.Capacity, c.Rate)
	case c.Deadline <= 0 || c.Bucket <= 0 || c.DrainTimeout < 0 || c.AckWait < 0:
		return fmt.Errorf("demo: decoupling: deadline %v, bucket %v, drain timeout %v, ack wait %v", c.Deadline, c.Bucket, c.DrainTimeout, c.AckWait)
	case c.Workers < 1 || c.RPCBurst < 1 || c.RPCMaxConcurrent < 1 || c.Items < 1:
		return fmt.Errorf("demo: decoupling: %d workers, RPC burst %d, %d in flight, %d items: want 1 or more of each",
			c.Workers, c.RPCBurst, c.RPCMaxConcurrent, c.Items)
	}
	return c.Profile().Validate()
}

// Profile returns the schedule: the same rate before, during and after
// the outage.
func (c DecouplingConfig) Profile() Profile {
	return Profile{
		{Name: "before", Duration: c.Before, Rate: c.Rate},
		{Name: "outage", Duration: c.Outage, Rate: c.Rate},
		{Name: "after", Duration: c.After, Rate: c.Rate},
	}
}

// outagePhase is the index of the outage in Profile.
const outagePhase = 1

// Decoupling is scenario 3: producers keep sending at a steady rate while
// the consumer side is down for several seconds. RPC: the shop's server
// crashes and comes back; the producers' calls fail meanwhile. MQ: the
// worker pool is killed between the store's write and the ack (so what it
// held comes back as duplicates), and a new pool starts after the
// outage; the producers' publishes are acknowledged throughout and the
// backlog is worked off after.
type Decoupling struct{ cfg DecouplingConfig }

var _ Scenario = (*Decoupling)(nil)

// NewDecoupling returns the scenario with cfg.
func NewDecoupling(cfg DecouplingConfig) (*Decoupling, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Decoupling{cfg: cfg}, nil
}

// Name returns "decoupling".
func (*Decoupling) Name() string { return "decoupling" }

// Run runs the RPC path and then the MQ path, each on a fresh store, on
// the same schedule and items, with the same outage.
func (d *Decoupling) Run(ctx context.Context, env *Env, progress Progress) (*ScenarioResult, error) {
	cfg := d.cfg
	profile := cfg.Profile()
	sends := profile.Sends()
	pick := pickItems(cfg.Seed, len(sends), ItemNames(cfg.Items))
	stock := int64(len(sends)) // room for every purchase, whatever the draw
	backlog := cfg.Rate * cfg.Outage.Seconds()
	drain := time.Duration(backlog / max(cfg.Capacity-cfg.Rate, 1) * float64(time.Second))
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30*time.Second + 2*drain
	}
	res := &ScenarioResult{
		Name:  d.Name(),
		Title: fmt.Sprintf("the consumer side down for %v while producers keep sending %s — RPC fails them, MQ queues", cfg.Outage, fmtRate(cfg.Rate)),
		Setup: fmt.Sprintf("schedule %s steady for %v; the consumer side crashes at %v and is back at %v; C = %s; %d items, none sells out\n"+
			"RPC: the shop's server stopped abruptly (calls in flight fail, its registry entry goes) and served again; deadline %v, limiter %s (burst %d)\n"+
			"MQ: the %d workers killed after the store's write and before the ack, a new pool started after the outage; AckWait %v",
			fmtRate(cfg.Rate), profile.Duration(), cfg.Before, cfg.Before+cfg.Outage, fmtRate(cfg.Capacity), cfg.Items,
			cfg.Deadline, fmtRate(cfg.Capacity), cfg.RPCBurst, cfg.Workers, cfg.AckWait),
		Config: map[string]any{
			"capacity_per_s": cfg.Capacity, "rate_per_s": cfg.Rate,
			"before_s": cfg.Before.Seconds(), "outage_s": cfg.Outage.Seconds(), "after_s": cfg.After.Seconds(),
			"rpc_deadline_ms": cfg.Deadline.Milliseconds(), "rpc_burst": cfg.RPCBurst, "rpc_max_concurrent": cfg.RPCMaxConcurrent,
			"mq_workers": cfg.Workers, "mq_ack_wait_ms": cfg.AckWait.Milliseconds(), "items": cfg.Items,
			"bucket_ms": cfg.Bucket.Milliseconds(), "expected_backlog_peak": math.Round(backlog),
		},
	}
	paths, err := runSalePaths(ctx, env, progress, 2*profile.Duration()+drain, saleSpec{
		scenario: d.Name(), profile: profile, pick: pick,
		shop:     ShopConfig{Items: cfg.Items, Stock: stock, Capacity: cfg.Capacity},
		deadline: cfg.Deadline, workers: cfg.Workers, ackWait: cfg.AckWait,
		limits: RPCLimits{Rate: cfg.Capacity, Burst: cfg.RPCBurst, MaxConcurrent: cfg.RPCMaxConcurrent},
		outage: &outage{At: cfg.Before, For: cfg.Outage},
		bucket: cfg.Bucket, drainTimeout: cfg.DrainTimeout,
	}, decouplingFigures)
	if err != nil {
		return nil, err
	}
	res.Paths = paths
	res.Verdicts = decouplingVerdicts(res)
	return res, nil
}

// decouplingFigures adds the outage's figures to a path's.
func decouplingFigures(run *saleRun) *PathResult {
	p := run.result
	off, refused := run.tracker.Phase(outagePhase)
	c := run.tracker.Counts()
	p.Set("outage_s", "consumer side down for", UnitSeconds, run.up.Sub(run.down).Seconds())
	p.Set("outage_offered", "sent during the outage", UnitCount, float64(off))
	p.Set("outage_errors", "producer errors during the outage", UnitCount, float64(refused))
	p.Set("outage_errors_pct", "producer errors during the outage, share", UnitPercent, pct(refused, off))
	p.Set("producer_errors", "producer errors, whole run", UnitCount, float64(c.Rejected+c.TimedOut+c.Failed))
	st := run.store.Stats()
	p.Set("applied", "purchases applied at the store", UnitCount, float64(st.Applied))
	if p.Name == PathMQ {
		last, pending := run.tracker.SettledBefore(run.up)
		drain := 0.0
		if !last.IsZero() && pending == 0 {
			drain = max(last.Sub(run.up).Seconds(), 0)
		}
		p.Set("restart_drain_s", "backlog worked off, after restart", UnitSeconds, drain)
		p.Set("held_unacked", "applied, unacked at the crash", UnitCount, float64(run.held))
		p.Set("redelivered", "redelivered messages", UnitCount, float64(run.redelivered.Load()))
	} else {
		p.SetNA("restart_drain_s", "backlog worked off, after restart", UnitSeconds)
		p.SetNA("held_unacked", "applied, unacked at the crash", UnitCount)
		p.SetNA("redelivered", "redelivered messages", UnitCount)
	}
	return p
}

// decouplingVerdicts says, from the figures, what the scenario showed.
func decouplingVerdicts(res *ScenarioResult) []string {
	r, m := res.Path(PathRPC), res.Path(PathMQ)
	var out []string
	rErr, rOff := r.Value("outage_errors"), r.Value("outage_offered")
	if rErr > 0 {
		out = append(out, fmt.Sprintf("RPC couples producers to consumers: while the shop was down (%.1f s), %.0f of %.0f purchases failed at the producer (%.0f %%; %.0f over the run, %.0f timed out) — those buyers were turned away; it lost %d of the %d it accepted, and %.0f were applied though their caller saw an error.",
			r.Value("outage_s"), rErr, rOff, r.Value("outage_errors_pct"), r.Value("producer_errors"), r.Value("timed_out"), r.Lost, r.Accepted, r.Value("applied_not_accepted")))
	} else {
		out = append(out, fmt.Sprintf("RPC rode out this outage: 0 of %.0f purchases sent while the shop was down failed.", rOff))
	}
	mErr := m.Value("outage_errors")
	if mErr == 0 && m.Lost == 0 {
		out = append(out, fmt.Sprintf("MQ decouples them: 0 of %.0f publishes failed during the outage (%.0f over the run); the backlog peaked at %.0f and was worked off %.1f s after the workers came back; lost %d, oversold %d.",
			m.Value("outage_offered"), m.Value("producer_errors"), m.Value("queue_depth_max"), m.Value("restart_drain_s"), m.Lost, m.Oversold))
	} else {
		out = append(out, fmt.Sprintf("MQ did not ride out the outage cleanly: %.0f publishes failed during it, %d accepted purchases lost.", mErr, m.Lost))
	}
	held, dups := m.Value("held_unacked"), float64(m.Duplicates)
	if m.Oversold == 0 && dups > 0 {
		out = append(out, fmt.Sprintf("The crash cost MQ duplicates, not correctness: the workers died holding %.0f purchases applied but not acked; %.0f messages were redelivered and the store absorbed %.0f duplicates by purchase id — each purchase applied once (%.0f applied for %d accepted), oversold 0.",
			held, m.Value("redelivered"), dups, m.Value("applied"), m.Accepted))
	} else {
		out = append(out, fmt.Sprintf("Duplicates after the crash: %.0f held, %.0f absorbed, oversold %d.", held, dups, m.Oversold))
	}
	out = append(out, fmt.Sprintf("What it cost MQ: purchases sent during the outage waited for the workers — p99 %s, max %s, against RPC's p99 %s for the purchases it took.",
		FormatMillis(m.P99ms), FormatMillis(m.MaxMs), FormatMillis(r.P99ms)))
	if r.Oversold+m.Oversold > 0 {
		out = append(out, fmt.Sprintf("CORRECTNESS FAILURE: oversold RPC %d, MQ %d.", r.Oversold, m.Oversold))
	}
	return out
}
