package demo

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// CostsConfig is the mq-costs scenario's knobs. Start from DefaultCosts.
type CostsConfig struct {
	// Capacity is the downstream's capacity C, purchases a second.
	Capacity float64
	// Light, Near and Over are the offered rates as fractions of C: light
	// load, load near C, and overload.
	Light, Near, Over float64
	// LightFor, NearFor, OverFor and CoolFor are the phases' lengths: light,
	// near C, over C, light again.
	LightFor, NearFor, OverFor, CoolFor time.Duration
	// Deadline is the RPC callers' deadline, and the producers' for a
	// publish to be acknowledged.
	Deadline time.Duration
	// Workers is the MQ worker pool's size (and MaxAckPending).
	Workers int
	// RPCBurst and RPCMaxConcurrent are the RPC limiter's (at Capacity).
	RPCBurst, RPCMaxConcurrent int
	// Items is the number of items on sale; each has stock for every
	// purchase.
	Items int
	// ProbeEvery makes every ProbeEvery-th send an eventual-consistency
	// probe: a purchase of an item of its own (one unit in stock), whose
	// producer reads the item's stock as soon as the purchase is accepted
	// and keeps reading until it sees the sale, for at most ProbeTimeout.
	ProbeEvery   int
	ProbeTimeout time.Duration
	// RetryEvery makes every RetryEvery-th send's producer send its
	// purchase a second time once the first was accepted, as a producer
	// that missed the answer would: the duplicates each path must absorb.
	RetryEvery int
	// DrainTimeout bounds the wait for accepted purchases after the
	// schedule (0: 30s plus the backlog's drain).
	DrainTimeout time.Duration
	// Bucket is the series' bucket width.
	Bucket time.Duration
	// Seed picks each purchase's item, the same for both paths.
	Seed uint64
}

// DefaultCosts returns the defaults under opts: C = opts.Capacity; C/4
// for 3s, 0.9×C for 3s, 1.5×C for 2s, C/4 for 2s (durations ×
// opts.Scale); a probe every 20th send, a retry every 50th; RPC deadline
// 2s and limiter at C; 16 workers.
func DefaultCosts(opts Options) CostsConfig {
	return CostsConfig{
		Capacity:         opts.Capacity,
		Light:            0.25,
		Near:             0.9,
		Over:             1.5,
		LightFor:         opts.Scaled(3 * time.Second),
		NearFor:          opts.Scaled(3 * time.Second),
		OverFor:          opts.Scaled(2 * time.Second),
		CoolFor:          opts.Scaled(2 * time.Second),
		Deadline:         2 * time.Second,
		Workers:          16,
		RPCBurst:         max(int(opts.Capacity/10), 1),
		RPCMaxConcurrent: 64,
		Items:            16,
		ProbeEvery:       20,
		ProbeTimeout:     30 * time.Second,
		RetryEvery:       50,
		Bucket:           250 * time.Millisecond,
		Seed:             4,
	}
}

// Validate reports a configuration the scenario cannot run.
func (c CostsConfig) Validate() error {
	switch {
	case !(c.Capacity > 0) || !(c.Light > 0) || !(c.Near > 0) || !(c.Over > 0):
		return fmt.Errorf("demo: mq-costs: capacity %v, load %v/%v/%v × C: want positive rates", c.Capacity, c.Light, c.Near, c.Over)
	case c.Deadline <= 0 || c.Bucket <= 0 || c.DrainTimeout < 0 || c.ProbeTimeout <= 0:
		return fmt.Errorf("demo: mq-costs: deadline %v, bucket %v, drain timeout %v, probe timeout %v", c.Deadline, c.Bucket, c.DrainTimeout, c.ProbeTimeout)
	case c.Workers < 1 || c.RPCBurst < 1 || c.RPCMaxConcurrent < 1 || c.Items < 1 || c.ProbeEvery < 1 || c.RetryEvery < 1:
		return fmt.Errorf("demo: mq-costs: %d workers, RPC burst %d, %d in flight, %d items, a probe every %d, a retry every %d: want 1 or more of each",
			c.Workers, c.RPCBurst, c.RPCMaxConcurrent, c.Items, c.ProbeEvery, c.RetryEvery)
	}
	return c.Profile().Validate()
}

// Profile returns the schedule: light, near C, over C, light.
func (c CostsConfig) Profile() Profile {
	return Profile{
		{Name: "light", Duration: c.LightFor, Rate: c.Light * c.Capacity},
		{Name: "near C", Duration: c.NearFor, Rate: c.Near * c.Capacity},
		{Name: "over C", Duration: c.OverFor, Rate: c.Over * c.Capacity},
		{Name: "light", Duration: c.CoolFor, Rate: c.Light * c.Capacity},
	}
}

// costsPhaseKeys name Profile's phases in figure keys.
var costsPhaseKeys = []string{"light", "near", "over", "cool"}

// movingParts are what each path needs running for a purchase to go
// through, as runSale starts them, listed by hand (nothing measures
// them): the scenario reports them in its config ("moving_parts", a list
// per path) and in a verdict. ZooKeeper and the lock service are common
// to both.
var movingParts = map[string][]string{
	PathRPC: {"ZooKeeper (registry, locks)", "lock-service replicas (gRPC door)", "shop server, registered",
		"client resolver and balancer", "limiter at the shop"},
	PathMQ: {"ZooKeeper (locks)", "lock-service replicas (NATS door)", "NATS server with JetStream",
		"work-queue stream (file store, dedup window)", "durable pull consumer (AckWait, MaxAckPending)",
		"worker pool (ack/nak, redelivery)", "idempotent store (dedup by purchase id)"},
}

// Costs is scenario 4, what MQ costs: the same open-loop schedule —
// light load, near C, over C, light — through both paths, reporting the
// latency of each phase (bounded by the deadline on the RPC path, by
// nothing on the MQ path), how often and how long a reader sees the old
// stock right after a purchase was accepted (eventual consistency), the
// duplicates each path absorbed when producers sent a purchase twice; and
// listing the moving parts each path needs (movingParts).
type Costs struct{ cfg CostsConfig }

var _ Scenario = (*Costs)(nil)

// NewCosts returns the scenario with cfg.
func NewCosts(cfg CostsConfig) (*Costs, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Costs{cfg: cfg}, nil
}

// Name returns "mq-costs".
func (*Costs) Name() string { return "mq-costs" }

// Run runs the RPC path and then the MQ path, each on a fresh store, on
// the same schedule, items, probes and retries.
func (c *Costs) Run(ctx context.Context, env *Env, progress Progress) (*ScenarioResult, error) {
	cfg := c.cfg
	profile := cfg.Profile()
	sends := profile.Sends()
	pick := pickItems(cfg.Seed, len(sends), ItemNames(cfg.Items))
	probe := make([]bool, len(sends))
	retry := make([]bool, len(sends))
	probes := map[string]int64{}
	for i := range sends {
		if i%cfg.ProbeEvery == cfg.ProbeEvery/2 {
			probe[i] = true
			pick[i] = fmt.Sprintf("probe-%05d", i)
			probes[pick[i]] = 1
		} else if i%cfg.RetryEvery == 0 {
			retry[i] = true
		}
	}
	// The backlog the overload leaves, and its drain in the light phase
	// after it (at C less the offered rate).
	backlog := max(cfg.Over-1, 0) * cfg.Capacity * cfg.OverFor.Seconds()
	drain := time.Duration(backlog / max(cfg.Capacity*(1-cfg.Light), 1) * float64(time.Second))
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30*time.Second + 2*drain
	}
	var phases []string
	for _, ph := range profile {
		phases = append(phases, fmt.Sprintf("%s %v", fmtRate(ph.Rate), ph.Duration))
	}
	res := &ScenarioResult{
		Name:  c.Name(),
		Title: "what MQ costs: latency under load, eventual consistency, duplicates, moving parts",
		Setup: fmt.Sprintf("schedule %s; C = %s; every %dth send a consistency probe, every %dth sent twice\n"+
			"RPC: deadline %v, limiter %s (burst %d, %d in flight); MQ: %d workers",
			strings.Join(phases, ", "), fmtRate(cfg.Capacity), cfg.ProbeEvery, cfg.RetryEvery,
			cfg.Deadline, fmtRate(cfg.Capacity), cfg.RPCBurst, cfg.RPCMaxConcurrent, cfg.Workers),
		Config: map[string]any{
			"capacity_per_s": cfg.Capacity, "light_x_c": cfg.Light, "near_x_c": cfg.Near, "over_x_c": cfg.Over,
			"light_s": cfg.LightFor.Seconds(), "near_s": cfg.NearFor.Seconds(), "over_s": cfg.OverFor.Seconds(), "cool_s": cfg.CoolFor.Seconds(),
			"rpc_deadline_ms": cfg.Deadline.Milliseconds(), "rpc_burst": cfg.RPCBurst, "rpc_max_concurrent": cfg.RPCMaxConcurrent,
			"mq_workers": cfg.Workers, "items": cfg.Items, "probe_every": cfg.ProbeEvery, "retry_every": cfg.RetryEvery,
			"bucket_ms": cfg.Bucket.Milliseconds(), "moving_parts": movingParts,
		},
	}
	paths, err := runSalePaths(ctx, env, progress, 2*profile.Duration()+drain, saleSpec{
		scenario: c.Name(), profile: profile, pick: pick, probe: probe, retry: retry,
		shop:     ShopConfig{Items: cfg.Items, Stock: int64(len(sends)), Capacity: cfg.Capacity, Extra: probes},
		deadline: cfg.Deadline, workers: cfg.Workers,
		limits: RPCLimits{Rate: cfg.Capacity, Burst: cfg.RPCBurst, MaxConcurrent: cfg.RPCMaxConcurrent},
		bucket: cfg.Bucket, drainTimeout: cfg.DrainTimeout, probeTimeout: cfg.ProbeTimeout,
	}, costsFigures)
	if err != nil {
		return nil, err
	}
	res.Paths = paths
	res.Verdicts = costsVerdicts(res)
	return res, nil
}

// costsFigures adds the scenario's figures to a path's: latency per
// phase, the probes' and the retries'.
func costsFigures(run *saleRun) *PathResult {
	p := run.result
	for i, key := range costsPhaseKeys {
		l := run.tracker.PhaseLatencies(i)
		off, refused := run.tracker.Phase(i)
		p.Set(key+"_p50_ms", key+": latency p50", UnitMillis, millis(l.P50))
		p.Set(key+"_p99_ms", key+": latency p99", UnitMillis, millis(l.P99))
		p.Set(key+"_refused_pct", key+": refused", UnitPercent, pct(refused, off))
	}
	pr := run.probes.snapshot()
	p.Set("probes", "consistency probes", UnitCount, float64(pr.reads))
	p.Set("stale_reads_pct", "read the old stock after accepted", UnitPercent, pct(pr.stale, pr.reads))
	p.Set("stale_p50_ms", "old stock seen for, p50", UnitMillis, millis(pr.staleFor.P50))
	p.Set("stale_max_ms", "old stock seen for, max", UnitMillis, millis(pr.staleFor.Max))
	p.Set("stale_never_fresh", "probes that never saw the sale", UnitCount, float64(pr.timedOut))
	p.Set("retries", "purchases sent twice", UnitCount, float64(run.retries.Load()))
	p.Set("retries_dup_at_door", "  answered as duplicates at the door", UnitCount, float64(run.retryDup.Load()))
	p.Set("retries_failed", "  second sends that failed", UnitCount, float64(run.retryErr.Load()))
	return p
}

// costsVerdicts says, from the figures, what MQ cost.
func costsVerdicts(res *ScenarioResult) []string {
	r, m := res.Path(PathRPC), res.Path(PathMQ)
	light := fmt.Sprintf("under light load MQ's extra hops (publish, stored, pulled) cost p50 %s against RPC's %s",
		FormatMillis(m.Value("light_p50_ms")), FormatMillis(r.Value("light_p50_ms")))
	if m.Value("light_p50_ms") <= r.Value("light_p50_ms") {
		light = fmt.Sprintf("under light load MQ's extra hops cost nothing visible — p50 %s against RPC's %s: the lock and the store dominate both paths",
			FormatMillis(m.Value("light_p50_ms")), FormatMillis(r.Value("light_p50_ms")))
	}
	out := []string{
		fmt.Sprintf("Latency: %s; near C, p99 %s against %s. Over C the RPC path stays bounded by its deadline (p99 %s) by refusing %.0f %% of the overload, while MQ refuses nothing and its p99 grows with the backlog to %s — nothing bounds it but the queue's length.",
			light, FormatMillis(m.Value("near_p99_ms")), FormatMillis(r.Value("near_p99_ms")),
			FormatMillis(r.Value("over_p99_ms")), r.Value("over_refused_pct"), FormatMillis(m.Value("over_p99_ms"))),
		fmt.Sprintf("Eventual consistency: a reader checking stock right after the purchase was accepted saw the old value in %.0f %% of %.0f probes on MQ, for up to %s (p50 %s); on RPC in %.0f %% — an accepted call has been applied.",
			m.Value("stale_reads_pct"), m.Value("probes"), FormatMillis(m.Value("stale_max_ms")), FormatMillis(m.Value("stale_p50_ms")), r.Value("stale_reads_pct")),
		fmt.Sprintf("Duplicates: producers sent %.0f accepted purchases a second time on MQ; the stream dropped %.0f at the door by Nats-Msg-Id, and the store absorbed %d redeliveries. On RPC %.0f second calls ran again through limiter and lock (%.0f refused); the store answered %.0f as duplicates. Oversold: RPC %d, MQ %d.",
			m.Value("retries"), m.Value("retries_dup_at_door"), m.Duplicates, r.Value("retries"), r.Value("retries_failed"), r.Value("retries_dup_at_door"), r.Oversold, m.Oversold),
		fmt.Sprintf("Moving parts, as this demo starts them: RPC %d (%s); MQ %d (%s).",
			len(movingParts[PathRPC]), strings.Join(movingParts[PathRPC], "; "), len(movingParts[PathMQ]), strings.Join(movingParts[PathMQ], "; ")),
	}
	if r.Oversold+m.Oversold+r.Lost+m.Lost > 0 {
		out = append(out, fmt.Sprintf("CORRECTNESS FAILURE: oversold RPC %d, MQ %d; lost RPC %d, MQ %d.", r.Oversold, m.Oversold, r.Lost, m.Lost))
	}
	return out
}
