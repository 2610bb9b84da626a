package demo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/demo"
	"github.com/switchyard-dev/switchyard/internal/zktest"
)

// runScenario runs sc on a fresh stack and returns its result and
// report, failing t if the run reported no progress or lacks the rpc or
// mq path. Every goroutine the run started must be gone when t ends.
func runScenario(t *testing.T, sc demo.Scenario) (*demo.ScenarioResult, *demo.Report) {
	t.Helper()
	zktest.Shared(t) // its process's waiter outlives the test
	checkGoroutines(t)
	env := startEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var updates atomic.Int64
	report, err := demo.Run(ctx, env, []demo.Scenario{sc}, func(int, demo.Scenario) demo.Progress {
		return demo.ProgressFunc(func(string, float64) { updates.Add(1) })
	})
	if err != nil {
		t.Fatal(err)
	}
	if updates.Load() == 0 {
		t.Error("no progress was reported")
	}
	res := report.Scenarios[0]
	if res.Path(demo.PathRPC) == nil || res.Path(demo.PathMQ) == nil {
		t.Fatalf("paths %v, want rpc and mq", res.Paths)
	}
	return res, report
}

// figure returns p's figure key, failing t if it has none.
func figure(t *testing.T, p *demo.PathResult, key string) float64 {
	t.Helper()
	v, ok := p.Figure(key)
	if !ok {
		t.Fatalf("%s has no figure %q", p.Name, key)
	}
	return v
}

// checkJSON checks that the report's JSON has the one scenario name, with
// verdicts, and that each of paths carries every required key and extra
// as a number.
func checkJSON(t *testing.T, report *demo.Report, name string, paths []string, extra ...string) {
	t.Helper()
	var buf bytes.Buffer
	if err := report.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scenarios []struct {
			Name     string                    `json:"name"`
			Paths    map[string]map[string]any `json:"paths"`
			Verdicts []string                  `json:"verdicts"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, &buf)
	}
	if len(doc.Scenarios) != 1 || doc.Scenarios[0].Name != name || len(doc.Scenarios[0].Verdicts) == 0 {
		t.Fatalf("scenarios: %s", &buf)
	}
	for _, path := range paths {
		obj := doc.Scenarios[0].Paths[path]
		for _, k := range append(slices.Clone(demo.RequiredKeys), extra...) {
			if _, ok := obj[k].(float64); !ok {
				t.Errorf("paths.%s.%s is %v, want a number", path, k, obj[k])
			}
		}
	}
	var text bytes.Buffer
	if err := report.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "== "+name) || strings.Contains(text.String(), "CORRECTNESS FAILURE") {
		t.Errorf("report text:\n%s", &text)
	}
}

// TestDecoupling runs the decoupling scenario at a small scale (C =
// 100/s, 50/s offered for 3.6s, the consumer side down for 1.5s of it)
// and checks the shapes issue #7 asks for: the RPC producers fail during
// the outage and lose nothing they were told was accepted; the MQ
// producers do not fail, the backlog is worked off, nothing is lost, and
// the duplicates the crash left are absorbed.
func TestDecoupling(t *testing.T) {
	sc, err := demo.NewDecoupling(demo.DefaultDecoupling(demo.Options{Capacity: 100, Scale: 0.3}))
	if err != nil {
		t.Fatal(err)
	}
	res, report := runScenario(t, sc)
	rpc, mq := res.Path(demo.PathRPC), res.Path(demo.PathMQ)
	for _, p := range res.Paths {
		if p.Offered != 180 || figure(t, p, "outage_offered") != 75 {
			t.Errorf("%s offered %d (%v in the outage); want 180 (75)", p.Name, p.Offered, figure(t, p, "outage_offered"))
		}
		if p.Lost != 0 || p.Oversold != 0 {
			t.Errorf("%s lost %d, oversold %d; want 0", p.Name, p.Lost, p.Oversold)
		}
		if figure(t, p, "outage_s") <= 0 {
			t.Errorf("%s: the consumer side was never down", p.Name)
		}
	}
	t.Run("rpc producers fail during the outage", func(t *testing.T) {
		if figure(t, rpc, "outage_errors") == 0 {
			t.Error("no RPC producer error during the outage")
		}
		if rpc.Completed != rpc.Accepted {
			t.Errorf("rpc completed %d of %d accepted", rpc.Completed, rpc.Accepted)
		}
	})
	t.Run("mq producers do not", func(t *testing.T) {
		if e := figure(t, mq, "producer_errors"); e != 0 {
			t.Errorf("mq producer errors %v, want 0", e)
		}
		if mq.Accepted != mq.Offered || mq.Completed != mq.Accepted {
			t.Errorf("mq accepted %d of %d, completed %d", mq.Accepted, mq.Offered, mq.Completed)
		}
		if d := figure(t, mq, "queue_depth_max"); d < 30 {
			t.Errorf("mq backlog peak %v; the outage should have queued ~75", d)
		}
		if figure(t, mq, "restart_drain_s") <= 0 {
			t.Error("mq: no drain after the restart")
		}
	})
	t.Run("the crash's duplicates are absorbed", func(t *testing.T) {
		held := figure(t, mq, "held_unacked")
		if held == 0 {
			t.Fatal("the crashed workers held nothing applied and unacked")
		}
		if figure(t, mq, "redelivered") < held || float64(mq.Duplicates) < held {
			t.Errorf("held %v, redelivered %v, duplicates absorbed %d; want every held one back and absorbed",
				held, figure(t, mq, "redelivered"), mq.Duplicates)
		}
		if applied := figure(t, mq, "applied"); applied != float64(mq.Accepted) {
			t.Errorf("mq applied %v purchases for %d accepted; want each once", applied, mq.Accepted)
		}
	})
	checkJSON(t, report, "decoupling", []string{demo.PathRPC, demo.PathMQ},
		"outage_errors", "producer_errors", "restart_drain_s", "held_unacked", "redelivered")
}

// TestCosts runs the mq-costs scenario at a small scale and checks what
// it must show: RPC's accepted purchases are read back at once and its
// overload is refused; MQ refuses nothing, its readers see the old stock
// at first, its stream drops the retried publishes; neither path loses or
// oversells anything.
func TestCosts(t *testing.T) {
	cfg := demo.DefaultCosts(demo.Options{Capacity: 100, Scale: 0.5})
	cfg.ProbeEvery, cfg.RetryEvery = 10, 10
	sc, err := demo.NewCosts(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, report := runScenario(t, sc)
	rpc, mq := res.Path(demo.PathRPC), res.Path(demo.PathMQ)
	for _, p := range res.Paths {
		if p.Lost != 0 || p.Oversold != 0 {
			t.Errorf("%s lost %d, oversold %d; want 0", p.Name, p.Lost, p.Oversold)
		}
		if figure(t, p, "probes") == 0 || figure(t, p, "retries") == 0 {
			t.Errorf("%s: %v probes, %v retries; want some", p.Name, figure(t, p, "probes"), figure(t, p, "retries"))
		}
		if figure(t, p, "stale_never_fresh") != 0 {
			t.Errorf("%s: %v probes never saw their purchase", p.Name, figure(t, p, "stale_never_fresh"))
		}
	}
	if s := figure(t, rpc, "stale_reads_pct"); s != 0 {
		t.Errorf("rpc: %v %% stale reads after an accepted call; want 0", s)
	}
	if s := figure(t, mq, "stale_reads_pct"); s == 0 {
		t.Error("mq: no stale read after an accepted publish")
	}
	if r := figure(t, mq, "over_refused_pct"); r != 0 || mq.Accepted != mq.Offered || mq.Completed != mq.Accepted {
		t.Errorf("mq refused %v %% of the overload, accepted %d of %d, completed %d", r, mq.Accepted, mq.Offered, mq.Completed)
	}
	if r := figure(t, rpc, "over_refused_pct"); r == 0 {
		t.Error("rpc refused none of the overload")
	}
	if d, n := figure(t, mq, "retries_dup_at_door"), figure(t, mq, "retries")-figure(t, mq, "retries_failed"); d != n {
		t.Errorf("mq: the stream dropped %v of %v retried publishes", d, n)
	}
	if d := figure(t, rpc, "retries_dup_at_door"); float64(rpc.Duplicates) != d {
		t.Errorf("rpc: the store absorbed %d duplicates, the callers were told of %v", rpc.Duplicates, d)
	}
	parts, ok := res.Config["moving_parts"].(map[string][]string)
	if !ok || len(parts[demo.PathRPC]) == 0 || len(parts[demo.PathMQ]) == 0 {
		t.Errorf("config moving_parts %v, want a list per path", res.Config["moving_parts"])
	}
	if !slices.ContainsFunc(res.Verdicts, func(v string) bool { return strings.HasPrefix(v, "Moving parts") }) {
		t.Errorf("no verdict lists the moving parts: %q", res.Verdicts)
	}
	checkJSON(t, report, "mq-costs", []string{demo.PathRPC, demo.PathMQ},
		"light_p50_ms", "over_p99_ms", "stale_reads_pct", "stale_max_ms", "retries_dup_at_door")
}
