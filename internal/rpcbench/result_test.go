package rpcbench

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestResult builds a Result from made-up rounds, as no real run can be
// made to miss or meet a goal on demand: medians (odd and even counts),
// stack ÷ raw ratios, goals judged each way, and the JSON keys of issue #4.
func TestResult(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Duration, cfg.Warmup, cfg.Rounds = 2*time.Second, 0, 3
	raw := map[string]Cell{
		"c1": cell([]Round{
			{QPS: 9000, P50us: 100, P99us: 300, Calls: 1, CPUusPerCall: 50, AllocsPerCall: 100},
			{QPS: 10000, P50us: 110, P99us: 200, Calls: 2, CPUusPerCall: 60, AllocsPerCall: 100},
			{QPS: 11000, P50us: 90, P99us: 250, Calls: 3, CPUusPerCall: 40, AllocsPerCall: 100},
		}),
		"c64": cell([]Round{
			{QPS: 40000, P50us: 1500, P99us: 3000, Calls: 5, CPUusPerCall: 30, AllocsPerCall: 100},
			{QPS: 50000, P50us: 1600, P99us: 3100, Calls: 7, CPUusPerCall: 34, AllocsPerCall: 100},
		}),
	}
	stack := map[string]Cell{
		"c1": cell([]Round{{QPS: 9500, P50us: 104, P99us: 260, Calls: 1, CPUusPerCall: 75, AllocsPerCall: 150}}),
		"c64": cell([]Round{
			{QPS: 40000, P50us: 1600, P99us: 3300, Calls: 1, CPUusPerCall: 40, AllocsPerCall: 160},
			{QPS: 41000, P50us: 1700, P99us: 3500, Calls: 1, CPUusPerCall: 48, AllocsPerCall: 170},
		}),
	}
	if got, want := raw["c1"], (Cell{QPS: 10000, P50us: 100, P99us: 250, Calls: 6, CPUusPerCall: 50, AllocsPerCall: 100, Rounds: raw["c1"].Rounds}); !reflect.DeepEqual(got, want) {
		t.Errorf("cell of three rounds = %+v, want the per-figure medians %+v", got, want)
	}
	if got := raw["c64"]; got.QPS != 45000 || got.P50us != 1550 || got.Calls != 12 {
		t.Errorf("cell of two rounds = %+v, want the means of the two", got)
	}

	res := newResult(cfg, raw, stack)
	wantRatio := map[string]float64{
		"qps_c1": 0.95, "p50_c1": 1.04, "p99_c1": 1.04,
		"qps_c64": 0.9, "p50_c64": 1.065, "p99_c64": 1.115,
		"cpu_per_call_c1": 1.5, "allocs_per_call_c1": 1.5,
		"cpu_per_call_c64": 1.375, "allocs_per_call_c64": 1.65,
	}
	if !reflect.DeepEqual(res.Ratio, wantRatio) {
		t.Errorf("ratios %v, want %v", res.Ratio, wantRatio)
	}
	wantGoals := []Goal{
		{Ratio: "qps_c64", Op: ">=", Limit: 0.95, Value: 0.9, Met: false},
		{Ratio: "p50_c1", Op: "<=", Limit: 1.05, Value: 1.04, Met: true},
	}
	if !reflect.DeepEqual(res.Goals, wantGoals) {
		t.Errorf("goals %+v, want %+v", res.Goals, wantGoals)
	}

	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Raw, Stack map[string]map[string]json.RawMessage
		Ratio      map[string]json.RawMessage
		Config     map[string]json.RawMessage
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, side := range []map[string]map[string]json.RawMessage{doc.Raw, doc.Stack} {
		for _, k := range []string{"c1", "c64"} {
			for _, f := range []string{"qps", "p50_us", "p99_us", "calls", "errors", "cpu_us_per_call", "allocs_per_call", "bytes_per_call", "rounds"} {
				if _, ok := side[k][f]; !ok {
					t.Errorf("JSON %s has no %s.%s", b, k, f)
				}
			}
		}
	}
	if string(doc.Config["duration_ms"]) != "2000" || string(doc.Config["concurrency"]) != "[1,64]" {
		t.Errorf("config %s", b)
	}

	// A goal whose concurrency was not measured is left out.
	cfg.Concurrency = []int{1}
	if g := newResult(cfg, raw, stack).Goals; len(g) != 1 || g[0].Ratio != "p50_c1" {
		t.Errorf("goals with c=1 only: %+v", g)
	}
}
