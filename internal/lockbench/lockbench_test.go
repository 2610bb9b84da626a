package lockbench_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/internal/benchrun/benchruntest"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/lockbench"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// smallConfig is the benchmark at test scale against the shared
// ZooKeeper: two rounds of 200ms windows at concurrency 1 and 64, and
// handoff runs of 10 waiters.
func smallConfig(tb testing.TB) lockbench.Config {
	cfg := lockbench.DefaultConfig()
	cfg.ZK = zktest.Shared(tb).ConnectString()
	cfg.Duration, cfg.Warmup, cfg.Rounds, cfg.Waiters = 200*time.Millisecond, 50*time.Millisecond, 2, 10
	cfg.Logger = benchruntest.Logger(tb)
	return cfg
}

// TestBenchRunSmall runs the whole benchmark at a tiny scale and checks what
// the result promises: the JSON keys of issue #5, cycles made with no
// error, medians taken from the rounds, ratios of the two sides, goals
// judged by their own figures, phases in ABBA order — and exactly one
// wake-up per release, which is the recipe's correctness, not a timing.
// It does not judge the timings. Afterwards nothing is left running, no
// raw znode is left, and no lock has a contender.
func TestBenchRunSmall(t *testing.T) {
	cfg := smallConfig(t)
	var phases []string
	cfg.Progress = func(p lockbench.Phase) {
		if p.Handoff {
			phases = append(phases, p.Side+" handoff")
			return
		}
		phases = append(phases, p.Side+" "+benchrun.CellKey(p.Concurrency))
	}
	res, err := lockbench.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t)
	checkNothingLeft(t)

	wantPhases := []string{
		"raw_zk c1", "grpc c1", "grpc c1", "raw_zk c1",
		"raw_zk c64", "grpc c64", "grpc c64", "raw_zk c64",
		"grpc handoff", "zklock handoff", "zklock handoff", "grpc handoff",
	}
	if !slices.Equal(phases, wantPhases) {
		t.Errorf("phases ran in the order %q, want %q", phases, wantPhases)
	}

	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Raw     map[string]map[string]any `json:"raw_zk"`
		GRPC    map[string]map[string]any `json:"grpc"`
		Ratio   map[string]any            `json:"ratio"`
		Handoff map[string]any            `json:"handoff"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	benchruntest.CheckCells(t, string(b), map[string]map[string]map[string]any{"raw_zk": doc.Raw, "grpc": doc.GRPC},
		"ops_per_s", "p50_us", "p99_us", "ops", "cpu_us_per_op")
	benchruntest.CheckPositive(t, string(b), "ratio", doc.Ratio, "grpc_p50_c1", "grpc_ops_c64", "grpc_ops_c1", "grpc_p50_c64", "grpc_p99_c1", "grpc_p99_c64")
	benchruntest.CheckPositive(t, string(b), "handoff", doc.Handoff, "p50_us", "p99_us", "zklock_p50_us", "zklock_p99_us")

	// Herd-free: every release with a waiter woke exactly one.
	h := res.Handoff
	if want := uint64(cfg.Rounds * cfg.Waiters); h.Releases != want {
		t.Errorf("handoff releases %d, want %d (%d rounds × %d waiters)", h.Releases, want, cfg.Rounds, cfg.Waiters)
	}
	if h.Wakeups != h.Releases || h.WakeupsPerRelease != 1 || doc.Handoff["wakeups_per_release"] != 1.0 {
		t.Errorf("%d wake-ups for %d releases (%v per release), want exactly 1 per release", h.Wakeups, h.Releases, h.WakeupsPerRelease)
	}
	if want := cfg.Rounds * cfg.Waiters; h.Handoffs != want {
		t.Errorf("%d handoffs timed through gRPC, want %d", h.Handoffs, want)
	}
	if h.P50us > h.P99us || h.ZKLockP50us > h.ZKLockP99us {
		t.Errorf("handoff p50 above p99: %+v", h)
	}

	for side, cells := range map[string]map[string]lockbench.Cell{"raw_zk": res.RawZK, "grpc": res.GRPC} {
		for key, c := range cells {
			if len(c.Rounds) != cfg.Rounds {
				t.Fatalf("%s.%s has %d rounds, want %d", side, key, len(c.Rounds), cfg.Rounds)
			}
			r0, r1 := c.Rounds[0], c.Rounds[1]
			if c.Ops != r0.Ops+r1.Ops {
				t.Errorf("%s.%s: %d ops, but its rounds made %d and %d", side, key, c.Ops, r0.Ops, r1.Ops)
			}
			if want := (r0.OpsPerS + r1.OpsPerS) / 2; !benchruntest.Near(c.OpsPerS, want) {
				t.Errorf("%s.%s: ops/s %v, want the median of its rounds %v", side, key, c.OpsPerS, want)
			}
			if c.P50us > c.P99us {
				t.Errorf("%s.%s: p50 %vµs above p99 %vµs", side, key, c.P50us, c.P99us)
			}
		}
	}
	if want := res.GRPC["c64"].OpsPerS / res.RawZK["c64"].OpsPerS; !benchruntest.Near(res.Ratio["grpc_ops_c64"], want) {
		t.Errorf("ratio grpc_ops_c64 = %v, want grpc/raw = %v", res.Ratio["grpc_ops_c64"], want)
	}
	var figures []string
	for _, g := range res.Goals {
		figures = append(figures, g.Figure)
	}
	if want := []string{"ratio.grpc_p50_c1", "ratio.grpc_ops_c64", "handoff.wakeups_per_release"}; !slices.Equal(figures, want) {
		t.Fatalf("goals on %q, want %q", figures, want)
	}
	if g := res.Goals[0]; g.Value != res.Ratio["grpc_p50_c1"] || g.Met != (g.Value <= 1.3) {
		t.Errorf("goal %+v does not judge ratio %v against ≤ 1.3", g, res.Ratio["grpc_p50_c1"])
	}
	if g := res.Goals[2]; !g.Met || g.Value != 1 {
		t.Errorf("wake-up goal %+v, want met at 1", g)
	}
}

// checkNothingLeft fails t if a run left a raw znode, or a contender in
// any lock of the shared ZooKeeper (their empty directories go as
// ZooKeeper sweeps containers).
func checkNothingLeft(t *testing.T) {
	t.Helper()
	conn := zktest.Connect(t, zktest.Shared(t).ConnectString())
	runs, _, err := conn.Children("/switchyard/bench")
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Fatal(err)
	}
	if len(runs) > 0 {
		t.Errorf("raw roots left under /switchyard/bench: %q", runs)
	}
	locks, _, err := conn.Children("/switchyard/locks")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range locks {
		contenders, _, err := conn.Children("/switchyard/locks/" + l)
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			t.Fatal(err)
		}
		if len(contenders) > 0 {
			t.Errorf("lock %s still has contenders %q", l, contenders)
		}
	}
}

// TestBenchRunNATS runs the benchmark with the NATS side (Via) at a tiny
// scale, one round: it runs beside the others, and the result has its
// cells (issue #6's "nats":{"c1":…,"c64":…}), its ratios to gRPC and the
// queued burst's figures, every request granted.
func TestBenchRunNATS(t *testing.T) {
	cfg := smallConfig(t)
	cfg.Rounds, cfg.Via, cfg.Queued = 1, []string{lockbench.SideGRPC, lockbench.SideNATS}, 300
	var phases []string
	cfg.Progress = func(p lockbench.Phase) {
		if !p.Handoff && p.Queued == nil {
			phases = append(phases, p.Side)
		}
	}
	res, err := lockbench.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t)
	checkNothingLeft(t)
	if want := []string{"raw_zk", "grpc", "nats", "raw_zk", "grpc", "nats"}; !slices.Equal(phases, want) {
		t.Errorf("phases ran in the order %q, want %q", phases, want)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		NATS  map[string]map[string]any `json:"nats"`
		Ratio map[string]any            `json:"ratio"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	benchruntest.CheckCells(t, string(b), map[string]map[string]map[string]any{"nats": doc.NATS},
		"ops_per_s", "p50_us", "p99_us", "ops", "cpu_us_per_op")
	benchruntest.CheckPositive(t, string(b), "ratio", doc.Ratio, "nats_vs_grpc_p50_c1", "nats_vs_grpc_ops_c64", "nats_vs_grpc_p99_c1")
	// The queued burst: every request granted once, none lost or dead.
	if q := res.Queued; q == nil || q.Requests != 300 || q.Granted != 300 || q.Lost != 0 || q.Dead != 0 || q.IngestPerS <= 0 || q.GrantP50ms > q.GrantP99ms {
		t.Errorf("queued %+v, want 300 requests all granted, none lost or dead, a positive ingest rate", q)
	}
}

// TestBenchRunRefusesOtherInstances registers another lock-service instance
// first: the gRPC side's balancer would spread calls over both, so Run
// must refuse to measure, name the intruder, and leave nothing running.
func TestBenchRunRefusesOtherInstances(t *testing.T) {
	t.Run("beside an intruder", func(t *testing.T) {
		reg := lbtest.Dial(t)
		ctx := t.Context()
		r, err := reg.Register(ctx, &registryv1.Instance{
			Service: lockv1.LockService_ServiceDesc.ServiceName, Id: "intruder", Address: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Deregister(context.WithoutCancel(ctx))
		_, err = lockbench.Run(ctx, smallConfig(t))
		if !errors.Is(err, lockbench.ErrNotAlone) || !strings.Contains(err.Error(), "intruder") {
			t.Fatalf("Run beside another instance: %v, want ErrNotAlone naming it", err)
		}
	})
	checkNoLeaks(t)
	checkNothingLeft(t)
}

// TestBenchRunCancelled cancels a run in its first window, and in the gRPC
// side's first phase, with cycles in flight: Run returns the context's
// error, stops everything it started, and leaves no lock held.
func TestBenchRunCancelled(t *testing.T) {
	tests := []struct {
		name     string
		duration time.Duration
		phases   int // to let finish before cancelling
	}{
		{"in the first window", 10 * time.Minute, 0},
		// Phases long enough that the cancel, 100ms into the second, lands
		// in it even if the timer fires late.
		{"in a gRPC phase", time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := smallConfig(t)
			cfg.Duration = tt.duration
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			// With no phase to let finish, the cancel comes 2s in, in the
			// 10-minute first window. Else Progress sets it off once the
			// phases are done, however long the setup took, and the timer
			// only bounds a run that never gets that far.
			after := 2 * time.Second
			if tt.phases > 0 {
				after = time.Minute
			}
			stop := time.AfterFunc(after, cancel)
			defer stop.Stop()
			var phases []string
			cfg.Progress = func(p lockbench.Phase) {
				phases = append(phases, p.Side)
				if len(phases) == tt.phases {
					stop.Reset(100 * time.Millisecond) // within the next phase's warm-up
				}
			}

			_, err := lockbench.Run(ctx, cfg)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run cancelled: %v, want context.Canceled", err)
			}
			if len(phases) != tt.phases {
				t.Errorf("phases %q finished, want %d before the cancel", phases, tt.phases)
			}
			checkNoLeaks(t)
			checkNothingLeft(t)
		})
	}
}

// TestBenchUnreachableZooKeeper gives Run a ZooKeeper address nothing listens
// on: it fails within the setup timeout, saying so.
func TestBenchUnreachableZooKeeper(t *testing.T) {
	cfg := smallConfig(t)
	cfg.ZK, cfg.SetupTimeout = "127.0.0.1:1", 300*time.Millisecond
	_, err := lockbench.Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "no ZooKeeper session with 127.0.0.1:1") {
		t.Fatalf("Run with no ZooKeeper: %v", err)
	}
	checkNoLeaks(t)
}

func TestBenchConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*lockbench.Config)
		want string // "" for valid
	}{
		{"default with ZooKeeper", func(*lockbench.Config) {}, ""},
		{"no warm-up", func(c *lockbench.Config) { c.Warmup = 0 }, ""},
		{"one waiter", func(c *lockbench.Config) { c.Waiters = 1 }, ""},
		{"no ZooKeeper", func(c *lockbench.Config) { c.ZK = "" }, "no ZooKeeper"},
		{"zero duration", func(c *lockbench.Config) { c.Duration = 0 }, "duration 0s"},
		{"negative warm-up", func(c *lockbench.Config) { c.Warmup = -time.Second }, "warm-up -1s"},
		{"no rounds", func(c *lockbench.Config) { c.Rounds = 0 }, "rounds 0"},
		{"no concurrency", func(c *lockbench.Config) { c.Concurrency = nil }, "no concurrency"},
		{"zero concurrency", func(c *lockbench.Config) { c.Concurrency = []int{1, 0} }, "concurrency 0"},
		{"huge concurrency", func(c *lockbench.Config) { c.Concurrency = []int{100000} }, "concurrency 100000"},
		{"repeated concurrency", func(c *lockbench.Config) { c.Concurrency = []int{8, 8} }, "given twice"},
		{"no waiters", func(c *lockbench.Config) { c.Waiters = 0 }, "waiters 0: want 1 to 1000"},
		{"more waiters than a replica queues", func(c *lockbench.Config) { c.Waiters = 1001 }, "waiters 1001"},
		{"short ttl", func(c *lockbench.Config) { c.TTL = 500 * time.Millisecond }, "ttl 500ms"},
		{"zero session timeout", func(c *lockbench.Config) { c.SessionTimeout = 0 }, "session timeout"},
		{"zero setup timeout", func(c *lockbench.Config) { c.SetupTimeout = 0 }, "setup timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := lockbench.DefaultConfig()
			cfg.ZK = "127.0.0.1:2181"
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, lockbench.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want ErrConfig saying %q", err, tt.want)
			}
			// Run checks before it connects anywhere.
			if _, rerr := lockbench.Run(t.Context(), cfg); !errors.Is(rerr, lockbench.ErrConfig) {
				t.Fatalf("Run: %v, want ErrConfig", rerr)
			}
		})
	}
}

// leakMarkers are the packages whose goroutines a finished Run must not
// leave behind.
var leakMarkers = []string{
	"google.golang.org/grpc", "go-zookeeper/zk", "switchyard/registry.", "switchyard/rpc.",
	"switchyard/lockservice", "switchyard/internal/lockbench.", "switchyard/internal/benchrun.", "switchyard/internal/zkconn.",
}

// checkNoLeaks fails t if, after a bounded wait for them to end,
// goroutines of leakMarkers run. Goroutines of zktest's own sessions
// (checkNothingLeft's) are theirs to stop.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	benchruntest.CheckNoLeaks(t, leakMarkers, "internal/zktest.")
}
