package rpcbench_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/internal/benchrun/benchruntest"
	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/rpcbench"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// smallConfig is the benchmark at test scale against the shared
// ZooKeeper: two rounds of 200ms windows at concurrency 1 and 64.
func smallConfig(tb testing.TB) rpcbench.Config {
	cfg := rpcbench.DefaultConfig()
	cfg.ZK = zktest.Shared(tb).ConnectString()
	cfg.Duration, cfg.Warmup, cfg.Rounds = 200*time.Millisecond, 50*time.Millisecond, 2
	cfg.Logger = benchruntest.Logger(tb)
	return cfg
}

// TestRunSmall runs the whole benchmark at a tiny scale and checks what
// the result promises: the JSON keys of issue #4, calls made with no
// error, medians taken from the rounds, ratios of the two sides, goals
// judged by their own ratio, and phases in ABBA order. It does not judge
// the figures themselves.
func TestRunSmall(t *testing.T) {
	cfg := smallConfig(t)
	var phases []string
	cfg.Progress = func(p rpcbench.Phase) {
		phases = append(phases, p.Side+" "+benchrun.CellKey(p.Concurrency))
	}
	res, err := rpcbench.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	benchruntest.CheckNoLeaks(t, leakMarkers)

	wantPhases := []string{"raw c1", "stack c1", "stack c1", "raw c1", "raw c64", "stack c64", "stack c64", "raw c64"}
	if !slices.Equal(phases, wantPhases) {
		t.Errorf("phases ran in the order %q, want %q", phases, wantPhases)
	}

	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Raw   map[string]map[string]any `json:"raw"`
		Stack map[string]map[string]any `json:"stack"`
		Ratio map[string]any            `json:"ratio"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	benchruntest.CheckCells(t, string(b), map[string]map[string]map[string]any{"raw": doc.Raw, "stack": doc.Stack},
		"qps", "p50_us", "p99_us", "calls", "cpu_us_per_call", "allocs_per_call", "bytes_per_call")
	benchruntest.CheckPositive(t, string(b), "ratio", doc.Ratio, "qps_c1", "qps_c64", "p50_c1", "p50_c64", "p99_c1", "p99_c64")

	for side, cells := range map[string]map[string]rpcbench.Cell{"raw": res.Raw, "stack": res.Stack} {
		for key, c := range cells {
			if len(c.Rounds) != cfg.Rounds {
				t.Fatalf("%s.%s has %d rounds, want %d", side, key, len(c.Rounds), cfg.Rounds)
			}
			r0, r1 := c.Rounds[0], c.Rounds[1]
			if c.Calls != r0.Calls+r1.Calls {
				t.Errorf("%s.%s: %d calls, but its rounds made %d and %d", side, key, c.Calls, r0.Calls, r1.Calls)
			}
			if want := (r0.QPS + r1.QPS) / 2; !benchruntest.Near(c.QPS, want) {
				t.Errorf("%s.%s: qps %v, want the median of its rounds %v", side, key, c.QPS, want)
			}
			if c.P50us > c.P99us {
				t.Errorf("%s.%s: p50 %vµs above p99 %vµs", side, key, c.P50us, c.P99us)
			}
		}
	}
	if want := res.Stack["c64"].QPS / res.Raw["c64"].QPS; !benchruntest.Near(res.Ratio["qps_c64"], want) {
		t.Errorf("ratio qps_c64 = %v, want stack/raw = %v", res.Ratio["qps_c64"], want)
	}
	if len(res.Goals) != 2 {
		t.Fatalf("goals %+v, want qps_c64 and p50_c1", res.Goals)
	}
	for _, g := range res.Goals {
		if g.Value != res.Ratio[g.Ratio] {
			t.Errorf("goal %s has value %v, ratio is %v", g.Ratio, g.Value, res.Ratio[g.Ratio])
		}
	}
}

// TestRunRefusesOtherInstances registers another Echo instance first: the
// stack side's balancer would spread calls over both, so Run must refuse
// to measure, name the intruder, and leave nothing running.
func TestRunRefusesOtherInstances(t *testing.T) {
	t.Run("beside an intruder", func(t *testing.T) {
		reg := lbtest.Dial(t)
		lbtest.Backend(t, reg, echov1.EchoService_ServiceDesc.ServiceName, "intruder", &echo.Server{ID: "intruder"}, 0, nil)
		_, err := rpcbench.Run(t.Context(), smallConfig(t))
		if !errors.Is(err, rpcbench.ErrNotAlone) || !strings.Contains(err.Error(), "intruder") {
			t.Fatalf("Run beside another instance: %v, want ErrNotAlone naming it", err)
		}
	})
	benchruntest.CheckNoLeaks(t, leakMarkers) // the intruder stopped with its subtest
}

// TestRunCancelled cancels a run in its first window: Run returns the
// context's error and stops everything it started.
func TestRunCancelled(t *testing.T) {
	cfg := smallConfig(t)
	cfg.Duration = 10 * time.Minute
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg.Progress = func(rpcbench.Phase) { t.Error("a phase finished, though the run was cancelled in the first") }
	stop := time.AfterFunc(time.Second, cancel)
	defer stop.Stop()

	_, err := rpcbench.Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled: %v, want context.Canceled", err)
	}
	benchruntest.CheckNoLeaks(t, leakMarkers)
}

// TestUnreachableZooKeeper gives Run a ZooKeeper address nothing listens
// on: it fails within the setup timeout, saying so.
func TestUnreachableZooKeeper(t *testing.T) {
	cfg := smallConfig(t)
	cfg.ZK, cfg.SetupTimeout = "127.0.0.1:1", 300*time.Millisecond
	_, err := rpcbench.Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "no ZooKeeper session with 127.0.0.1:1") {
		t.Fatalf("Run with no ZooKeeper: %v", err)
	}
	benchruntest.CheckNoLeaks(t, leakMarkers)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*rpcbench.Config)
		want string // "" for valid
	}{
		{"default with ZooKeeper", func(*rpcbench.Config) {}, ""},
		{"no warm-up", func(c *rpcbench.Config) { c.Warmup = 0 }, ""},
		{"no ZooKeeper", func(c *rpcbench.Config) { c.ZK = "" }, "no ZooKeeper"},
		{"zero duration", func(c *rpcbench.Config) { c.Duration = 0 }, "duration 0s"},
		{"negative warm-up", func(c *rpcbench.Config) { c.Warmup = -time.Second }, "warm-up -1s"},
		{"no rounds", func(c *rpcbench.Config) { c.Rounds = 0 }, "rounds 0"},
		{"no concurrency", func(c *rpcbench.Config) { c.Concurrency = nil }, "no concurrency"},
		{"zero concurrency", func(c *rpcbench.Config) { c.Concurrency = []int{1, 0} }, "concurrency 0"},
		{"huge concurrency", func(c *rpcbench.Config) { c.Concurrency = []int{100000} }, "concurrency 100000"},
		{"repeated concurrency", func(c *rpcbench.Config) { c.Concurrency = []int{8, 8} }, "given twice"},
		{"negative payload", func(c *rpcbench.Config) { c.PayloadSize = -1 }, "payload -1"},
		{"zero setup timeout", func(c *rpcbench.Config) { c.SetupTimeout = 0 }, "setup timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rpcbench.DefaultConfig()
			cfg.ZK = "127.0.0.1:2181"
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, rpcbench.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want ErrConfig saying %q", err, tt.want)
			}
			// Run checks before it connects anywhere.
			if _, rerr := rpcbench.Run(t.Context(), cfg); !errors.Is(rerr, rpcbench.ErrConfig) {
				t.Fatalf("Run: %v, want ErrConfig", rerr)
			}
		})
	}
}

// leakMarkers are the packages whose goroutines a finished Run must not
// leave behind.
var leakMarkers = []string{
	"google.golang.org/grpc", "go-zookeeper/zk", "switchyard/registry.", "switchyard/rpc.",
	"switchyard/internal/rpcbench.", "switchyard/internal/benchrun.", "switchyard/internal/zkconn.",
}
