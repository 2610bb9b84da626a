package rpcbench

import (
	"slices"
	"time"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
)

// Side names, as in Result's JSON and the pprof label "side".
const (
	SideRaw   = "raw"
	SideStack = "stack"
)

// Result is what Run measured. Its JSON is the shape issue #4 fixes:
//
//	{"raw":   {"c1": {"qps":…,"p50_us":…,"p99_us":…, …}, "c64": {…}},
//	 "stack": {…},
//	 "ratio": {"qps_c1":…, "qps_c64":…, "p50_c1":…, …},
//	 …}
//
// Raw and Stack are keyed by benchrun.CellKey of each concurrency; Ratio by
// "qps_", "p50_", "p99_", "cpu_per_call_" and "allocs_per_call_"
// followed by that key, each stack ÷ raw (so qps wants ≥ 1, the others
// ≤ 1). Goals and Config are extra keys.
type Result struct {
	Raw    map[string]Cell    `json:"raw"`
	Stack  map[string]Cell    `json:"stack"`
	Ratio  map[string]float64 `json:"ratio"`
	Goals  []Goal             `json:"goals"`
	Config ResultConfig       `json:"config"`
}

// Cell is one side at one concurrency: the medians of its rounds' figures
// (QPS to 0.1, latencies in µs to 0.1), and the rounds themselves.
type Cell struct {
	QPS   float64 `json:"qps"`
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
	// Calls counts the calls timed in all rounds' windows.
	Calls int64 `json:"calls"`
	// Errors counts failed calls; Run fails when it is not 0, so it is 0
	// in every Result Run returns without error.
	Errors int64 `json:"errors"`
	// CPUusPerCall, AllocsPerCall and BytesPerCall are the medians of the
	// rounds' (see Round).
	CPUusPerCall  float64 `json:"cpu_us_per_call"`
	AllocsPerCall float64 `json:"allocs_per_call"`
	BytesPerCall  float64 `json:"bytes_per_call"`
	Rounds        []Round `json:"rounds"`
}

// Round is one phase's figures. The per-call costs are the whole
// process's in the window — client, server, runtime and garbage
// collector — over the calls timed in it; CPU is 0 off Linux.
type Round struct {
	QPS           float64 `json:"qps"`
	P50us         float64 `json:"p50_us"`
	P99us         float64 `json:"p99_us"`
	Calls         int64   `json:"calls"`
	CPUusPerCall  float64 `json:"cpu_us_per_call"`
	AllocsPerCall float64 `json:"allocs_per_call"`
	BytesPerCall  float64 `json:"bytes_per_call"`
}

// Phase is what Config.Progress is told after each phase.
type Phase struct {
	Side        string // SideRaw or SideStack
	Concurrency int
	Round       int // from 1
	Rounds      int // Config.Rounds
	Figures     Round
}

// Goal is one of issue #4's targets, checked against Ratio.
type Goal struct {
	// Ratio is the key in Result.Ratio.
	Ratio string `json:"ratio"`
	// Op is ">=" or "<=": the ratio meets the goal when Value Op Limit.
	Op    string  `json:"op"`
	Limit float64 `json:"limit"`
	Value float64 `json:"value"`
	Met   bool    `json:"met"`
}

// ResultConfig records how the figures were taken.
type ResultConfig struct {
	DurationMS  int64 `json:"duration_ms"`
	WarmupMS    int64 `json:"warmup_ms"`
	Rounds      int   `json:"rounds"`
	Concurrency []int `json:"concurrency"`
	PayloadSize int   `json:"payload_bytes"`
}

// goals are issue #4's: the stack keeps 95% of raw grpc-go's throughput
// at c=64 and adds at most 5% to its median latency at c=1. A goal whose
// concurrency was not measured is left out of Result.Goals.
var goals = []Goal{
	{Ratio: "qps_" + benchrun.CellKey(64), Op: ">=", Limit: 0.95},
	{Ratio: "p50_" + benchrun.CellKey(1), Op: "<=", Limit: 1.05},
}

// phaseFigures is one measured phase.
type phaseFigures struct {
	calls   int64
	elapsed time.Duration
	used    benchrun.Usage // by the whole process in the window
	hist    *histogram
}

func (p phaseFigures) round() Round {
	n := float64(p.calls)
	return Round{
		QPS:           benchrun.Round1(n / p.elapsed.Seconds()),
		P50us:         benchrun.Round1(benchrun.Micros(p.hist.quantile(0.50))),
		P99us:         benchrun.Round1(benchrun.Micros(p.hist.quantile(0.99))),
		Calls:         p.calls,
		CPUusPerCall:  benchrun.Round2(benchrun.Micros(p.used.CPU) / n),
		AllocsPerCall: benchrun.Round1(float64(p.used.Mallocs) / n),
		BytesPerCall:  benchrun.Round1(float64(p.used.Bytes) / n),
	}
}

// cell makes a Cell of a side's rounds at one concurrency.
func cell(rounds []Round) Cell {
	c := Cell{Rounds: rounds}
	var qps, p50, p99, cpu, allocs, heap []float64
	for _, r := range rounds {
		qps = append(qps, r.QPS)
		p50 = append(p50, r.P50us)
		p99 = append(p99, r.P99us)
		cpu = append(cpu, r.CPUusPerCall)
		allocs = append(allocs, r.AllocsPerCall)
		heap = append(heap, r.BytesPerCall)
		c.Calls += r.Calls
	}
	c.QPS, c.P50us, c.P99us = benchrun.Round1(benchrun.Median(qps)), benchrun.Round1(benchrun.Median(p50)), benchrun.Round1(benchrun.Median(p99))
	c.CPUusPerCall = benchrun.Round2(benchrun.Median(cpu))
	c.AllocsPerCall, c.BytesPerCall = benchrun.Round1(benchrun.Median(allocs)), benchrun.Round1(benchrun.Median(heap))
	return c
}

// cells makes a side's Cells of its rounds, keyed as they are.
func cells(rounds map[string][]Round) map[string]Cell {
	m := make(map[string]Cell, len(rounds))
	for k, rs := range rounds {
		m[k] = cell(rs)
	}
	return m
}

// newResult fills in the ratios and goals from the cells.
func newResult(cfg Config, raw, stack map[string]Cell) Result {
	r := Result{
		Raw: raw, Stack: stack, Ratio: map[string]float64{}, Goals: []Goal{},
		Config: ResultConfig{
			DurationMS:  cfg.Duration.Milliseconds(),
			WarmupMS:    cfg.Warmup.Milliseconds(),
			Rounds:      cfg.Rounds,
			Concurrency: slices.Clone(cfg.Concurrency),
			PayloadSize: cfg.PayloadSize,
		},
	}
	for _, c := range cfg.Concurrency {
		k := benchrun.CellKey(c)
		r.Ratio["qps_"+k] = benchrun.Ratio(stack[k].QPS, raw[k].QPS)
		r.Ratio["p50_"+k] = benchrun.Ratio(stack[k].P50us, raw[k].P50us)
		r.Ratio["p99_"+k] = benchrun.Ratio(stack[k].P99us, raw[k].P99us)
		r.Ratio["cpu_per_call_"+k] = benchrun.Ratio(stack[k].CPUusPerCall, raw[k].CPUusPerCall)
		r.Ratio["allocs_per_call_"+k] = benchrun.Ratio(stack[k].AllocsPerCall, raw[k].AllocsPerCall)
	}
	for _, g := range goals {
		v, ok := r.Ratio[g.Ratio]
		if !ok {
			continue
		}
		g.Value, g.Met = v, benchrun.Met(g.Op, v, g.Limit)
		r.Goals = append(r.Goals, g)
	}
	return r
}
