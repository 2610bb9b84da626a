package lockbench

import (
	"strings"
	"testing"
	"time"
)

// TestBenchGoals checks that each goal is judged on its own figure, and that
// the wake-up goal is met only by exactly one wake-up per release,
// counted in integers (a figure that rounds to 1 does not meet it).
func TestBenchGoals(t *testing.T) {
	cells := func(ops, p50 float64) map[string]Cell {
		return map[string]Cell{"c1": {OpsPerS: ops, P50us: p50}, "c64": {OpsPerS: 64 * ops, P50us: p50}}
	}
	tests := []struct {
		name              string
		grpc              map[string]Cell
		wakeups, releases uint64
		met               [3]bool // latency, ops, wake-ups
	}{
		{"all met", cells(900, 1300), 300, 300, [3]bool{true, true, true}},
		{"twice the round trips", cells(500, 2000), 300, 300, [3]bool{false, false, true}},
		{"a herd", cells(900, 1300), 30000, 300, [3]bool{true, true, false}},
		{"one missed wake-up in ten thousand", cells(900, 1300), 9999, 10000, [3]bool{true, true, false}},
		{"one extra wake-up in ten thousand", cells(900, 1300), 10001, 10000, [3]bool{true, true, false}},
		{"no releases", cells(900, 1300), 0, 0, [3]bool{true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			h := handoff(cfg, []HandoffRound{{Wakeups: tt.wakeups, Releases: tt.releases}}, 0)
			r := newResult(cfg, cells(1000, 1000), tt.grpc, nil, h)
			if len(r.Goals) != 3 {
				t.Fatalf("goals %+v, want 3", r.Goals)
			}
			for i, g := range r.Goals {
				if g.Met != tt.met[i] {
					t.Errorf("goal %s %s %v with value %v: met %v, want %v", g.Figure, g.Op, g.Limit, g.Value, g.Met, tt.met[i])
				}
			}
		})
	}
}

func TestBenchQuantile(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 100; i++ {
		v = append(v, time.Duration(i))
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0.001, 1}} {
		if got := quantile(v, tt.q); got != tt.want {
			t.Errorf("quantile(1..100, %v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := quantile(v[:1], 0.99); got != 1 {
		t.Errorf("quantile of one value = %v, want it", got)
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile of nothing = %v, want 0", got)
	}
}

// TestBenchSessionWatches reads a wchc answer of two sessions, and refuses an
// answer that says the word is not allowed.
func TestBenchSessionWatches(t *testing.T) {
	answer := "0x1000041a6c10000\n\t/a/c\n\t/a/b\n0x2000041a6c10001\n\t/x\n\n"
	got, err := sessionWatches(answer, 0x1000041a6c10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got["/a/b"] || !got["/a/c"] {
		t.Errorf("watches of the first session: %v, want /a/b and /a/c", got)
	}
	if got, _ := sessionWatches(answer, 0x2000041a6c10001); len(got) != 1 || !got["/x"] {
		t.Errorf("watches of the second session: %v, want /x", got)
	}
	if got, _ := sessionWatches(answer, 7); len(got) != 0 {
		t.Errorf("watches of a session not in the answer: %v, want none", got)
	}
	_, err = sessionWatches("wchc is not executed because it is not in the whitelist.\n", 1)
	if err == nil || !strings.Contains(err.Error(), "4lw.commands.whitelist") {
		t.Errorf("refused wchc: %v, want an error naming the whitelist", err)
	}
}

// TestBenchNATSGoal checks the NATS ratios and issue #6's goal: NATS's
// p50 at most 1.5 times gRPC's at c=1, judged only when NATS ran.
func TestBenchNATSGoal(t *testing.T) {
	cfg := DefaultConfig()
	h := handoff(cfg, []HandoffRound{{Wakeups: 1, Releases: 1}}, 0)
	grpc := map[string]Cell{"c1": {OpsPerS: 1000, P50us: 1000, P99us: 2000}, "c64": {OpsPerS: 5000, P50us: 12000, P99us: 30000}}
	for _, tt := range []struct {
		name string
		p50  float64
		met  bool
	}{{"as fast", 1000, true}, {"half again", 1500, true}, {"twice", 2000, false}} {
		t.Run(tt.name, func(t *testing.T) {
			nats := map[string]Cell{"c1": {OpsPerS: 800, P50us: tt.p50, P99us: 2500}, "c64": {OpsPerS: 4000, P50us: 15000, P99us: 40000}}
			r := newResult(cfg, grpc, grpc, nats, h)
			if got := r.Ratio["nats_vs_grpc_p50_c1"]; got != tt.p50/1000 {
				t.Errorf("nats_vs_grpc_p50_c1 = %v, want %v", got, tt.p50/1000)
			}
			if got := r.Ratio["nats_vs_grpc_ops_c64"]; got != 0.8 {
				t.Errorf("nats_vs_grpc_ops_c64 = %v, want 0.8", got)
			}
			var found bool
			for _, g := range r.Goals {
				if g.Figure == "ratio.nats_vs_grpc_p50_c1" {
					found = true
					if g.Met != tt.met || g.Limit != 1.5 {
						t.Errorf("goal %+v, want met %v against 1.5", g, tt.met)
					}
				}
			}
			if !found {
				t.Errorf("no NATS goal among %+v", r.Goals)
			}
		})
	}
	if r := newResult(cfg, grpc, grpc, nil, h); r.NATS != nil || len(r.Goals) != 3 {
		t.Errorf("without NATS: cells %v, goals %+v, want none and 3 goals", r.NATS, r.Goals)
	}
}
