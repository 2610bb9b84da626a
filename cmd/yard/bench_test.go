package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/benchrun/benchruntest"
	"github.com/switchyard-dev/switchyard/internal/lockbench"
	"github.com/switchyard-dev/switchyard/internal/zktest"
)

// benchSmall are the flags that make `yard bench rpc` a test-sized run.
var benchSmall = []string{"--duration", "200ms", "--warmup", "50ms", "--rounds", "2"}

// TestBenchRPCJSON runs `yard bench rpc --json` against the test's
// ZooKeeper and checks the keys issue #4 fixes, that calls were made with
// no error, and that the progress went to stderr, not into the JSON. It
// does not judge the figures.
func TestBenchRPCJSON(t *testing.T) {
	var doc struct {
		Raw   map[string]map[string]any `json:"raw"`
		Stack map[string]map[string]any `json:"stack"`
		Ratio map[string]any            `json:"ratio"`
		Goals []map[string]any          `json:"goals"`
	}
	res := runBenchJSON(t, "rpc", benchSmall, &doc)
	benchruntest.CheckCells(t, res.stdout, map[string]map[string]map[string]any{"raw": doc.Raw, "stack": doc.Stack},
		"qps", "p50_us", "p99_us", "calls")
	benchruntest.CheckPositive(t, res.stdout, "ratio", doc.Ratio, "qps_c1", "qps_c64", "p50_c1")
	if len(doc.Goals) != 2 {
		t.Errorf("goals %v, want qps_c64 and p50_c1", doc.Goals)
	}
	if n := strings.Count(res.stderr, "round "); n != 8 {
		t.Errorf("stderr has %d progress lines, want 8 (2 sides × 2 concurrencies × 2 rounds):\n%s", n, res.stderr)
	}
}

// TestBenchRPCStartsZooKeeper runs `yard bench rpc` without --zk: it
// starts its own ZooKeeper, prints the table and the goals, and leaves no
// process and nothing in TMPDIR behind.
func TestBenchRPCStartsZooKeeper(t *testing.T) {
	tmp := t.TempDir()
	res := runYardIn(t, tmp, 2*time.Minute, append([]string{"bench", "rpc"}, benchSmall...)...)

	out := res.stdout
	for _, want := range []string{"SIDE", "QPS", "P50", "P99", "STACK/RAW", "qps c=64", "p50 c=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output has no %q:\n%s", want, out)
		}
	}
	rows := 0
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "raw ") || strings.HasPrefix(line, "stack ") {
			rows++
		}
	}
	if rows != 4 {
		t.Errorf("%d table rows, want raw and stack at c=1 and c=64:\n%s", rows, out)
	}
	if n := strings.Count(out, "met") + strings.Count(out, "missed"); n != 2 {
		t.Errorf("%d goals marked met or missed, want 2:\n%s", n, out)
	}
	if !strings.Contains(res.stderr, "started here") {
		t.Errorf("stderr does not say ZooKeeper was started:\n%s", res.stderr)
	}
	checkNothingLeft(t, tmp)
}

// checkNothingLeft checks that no process mentions tmp, a yard run's
// TMPDIR, and that tmp is empty.
func checkNothingLeft(t *testing.T, tmp string) {
	t.Helper()
	if left := processesMentioning(t, tmp); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in TMPDIR: %s", filepath.Join(tmp, e.Name()))
	}
}

// TestBenchRPCBadInput checks that bad flags fail with exit status 1 and a
// message naming the problem, before yard connects anywhere or starts a
// ZooKeeper: a listener given as --zk must see no connection. An
// unreachable ZooKeeper fails within --timeout.
func TestBenchRPCBadInput(t *testing.T) {
	good, accepted := tripwire(t)
	checkBadInput(t, []string{"bench", "rpc"}, []badInput{
		{"zero duration", []string{"--zk", good, "--duration", "0s"}, "--duration 0s: want a positive duration"},
		{"duration not a duration", []string{"--zk", good, "--duration", "5"}, `invalid argument "5" for "--duration"`},
		{"negative warm-up", []string{"--zk", good, "--warmup", "-1s"}, "--warmup -1s"},
		{"no rounds", []string{"--zk", good, "--rounds", "0"}, "--rounds 0: want 1 or more"},
		{"zero concurrency", []string{"--zk", good, "--concurrency", "1,0"}, "--concurrency 1,0: 0 is not a positive count"},
		{"repeated concurrency", []string{"--zk", good, "--concurrency", "8,8"}, "8 given twice"},
		{"concurrency not a number", []string{"--zk", good, "--concurrency", "x"}, `invalid argument "x" for "--concurrency"`},
		{"huge concurrency", []string{"--zk", good, "--concurrency", "100000"}, "concurrency 100000: want 1 to 4096"},
		{"negative payload", []string{"--zk", good, "--payload", "-1"}, "--payload -1"},
		{"zero timeout", []string{"--zk", good, "--timeout", "0s"}, "--timeout 0s"},
		{"empty zk", []string{"--zk", ""}, "empty connect string"},
		{"malformed zk", []string{"--zk", good + ",:2181"}, "missing host"},
		{"profile in a missing directory", []string{"--zk", good, "--cpuprofile", filepath.Join(t.TempDir(), "no", "cpu.prof")}, "--cpuprofile"},
		{"extra argument", []string{"--zk", good, "extra"}, "unknown command"},
		{"unknown flag", []string{"--zk", good, "--no-such-flag"}, "unknown flag"},
		{"unreachable zk", []string{"--zk", "127.0.0.1:1", "--timeout", "300ms"}, "no ZooKeeper session with 127.0.0.1:1"},
	})
	if n := accepted(); n != 0 {
		t.Errorf("bad input reached the network: %d connections", n)
	}
}

// benchLockSmall are the flags that make `yard bench lock` a test-sized
// run.
var benchLockSmall = []string{"--duration", "200ms", "--warmup", "50ms", "--rounds", "2", "--waiters", "10"}

// TestBenchLockJSON runs `yard bench lock --via grpc,nats --json` against
// the test's ZooKeeper and checks the keys issues #5 and #6 fix, that
// cycles were made with no error on every side, that each release woke
// exactly one waiter, and that the progress went to stderr, not into the
// JSON. It does not judge the timings.
func TestBenchLockJSON(t *testing.T) {
	var doc struct {
		Raw     map[string]map[string]any `json:"raw_zk"`
		GRPC    map[string]map[string]any `json:"grpc"`
		NATS    map[string]map[string]any `json:"nats"`
		Queued  map[string]any            `json:"queued"`
		Ratio   map[string]any            `json:"ratio"`
		Handoff map[string]any            `json:"handoff"`
		Goals   []map[string]any          `json:"goals"`
	}
	res := runBenchJSON(t, "lock", append([]string{"--via", "grpc,nats", "--queued", "200"}, benchLockSmall...), &doc)
	benchruntest.CheckPositive(t, res.stdout, "queued", doc.Queued, "ingest_per_s", "granted", "requests")
	if doc.Queued["lost"] != 0.0 || doc.Queued["granted"] != 200.0 {
		t.Errorf("queued %v, want 200 granted and 0 lost", doc.Queued)
	}
	benchruntest.CheckCells(t, res.stdout, map[string]map[string]map[string]any{"raw_zk": doc.Raw, "grpc": doc.GRPC, "nats": doc.NATS},
		"ops_per_s", "p50_us", "p99_us", "ops")
	benchruntest.CheckPositive(t, res.stdout, "ratio", doc.Ratio, "grpc_p50_c1", "grpc_ops_c64", "nats_vs_grpc_p50_c1")
	benchruntest.CheckPositive(t, res.stdout, "handoff", doc.Handoff, "p50_us", "p99_us")
	if w := doc.Handoff["wakeups_per_release"]; w != 1.0 || doc.Handoff["releases"] != 20.0 {
		t.Errorf("handoff.wakeups_per_release = %v over %v releases, want exactly 1 over 20 (2 rounds × 10 waiters)", w, doc.Handoff["releases"])
	}
	if len(doc.Goals) != 4 {
		t.Errorf("goals %v, want grpc_p50_c1, grpc_ops_c64, nats_vs_grpc_p50_c1 and wakeups_per_release", doc.Goals)
	}
	if n := strings.Count(res.stderr, "round "); n != 16 {
		t.Errorf("stderr has %d progress lines, want 16 (3 sides × 2 concurrencies × 2 rounds, 2 handoff sides × 2 rounds):\n%s", n, res.stderr)
	}
}

// TestWriteBenchLock prints a result as a table: a row per side and
// concurrency, both handoff sides, and each goal marked met or missed.
func TestWriteBenchLock(t *testing.T) {
	cell := func(ops, p50 float64) lockbench.Cell {
		return lockbench.Cell{OpsPerS: ops, P50us: p50, P99us: 2 * p50, Ops: 1000}
	}
	res := lockbench.Result{
		RawZK: map[string]lockbench.Cell{"c1": cell(2000, 480), "c64": cell(30000, 2100)},
		GRPC:  map[string]lockbench.Cell{"c1": cell(1000, 960), "c64": cell(15000, 4200)},
		NATS:  map[string]lockbench.Cell{"c1": cell(900, 1100), "c64": cell(14000, 4500)},
		Ratio: map[string]float64{"grpc_ops_c1": 0.5, "grpc_ops_c64": 0.5, "grpc_p50_c1": 2, "grpc_p50_c64": 2, "nats_vs_grpc_p50_c1": 1.146},
		Handoff: lockbench.Handoff{P50us: 1500, P99us: 3100, ZKLockP50us: 900, ZKLockP99us: 1200,
			WakeupsPerRelease: 1, Wakeups: 300, Releases: 300, Waiters: 100},
		Goals: []lockbench.Goal{
			{Figure: "ratio.grpc_p50_c1", Op: "<=", Limit: 1.3, Value: 2, Met: false},
			{Figure: "ratio.grpc_ops_c64", Op: ">=", Limit: 0.8, Value: 0.5, Met: false},
			{Figure: "handoff.wakeups_per_release", Op: "==", Limit: 1, Value: 1, Met: true},
			{Figure: "ratio.nats_vs_grpc_p50_c1", Op: "<=", Limit: 1.5, Value: 1.146, Met: true},
		},
		Config: lockbench.ResultConfig{DurationMS: 3000, WarmupMS: 500, Rounds: 3, Concurrency: []int{1, 64}, Waiters: 100, Replicas: 1},
	}
	var b bytes.Buffer
	if err := writeBenchLock(&b, res); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"SIDE", "OPS/S", "HANDOFF", "GRPC/RAW", "p50 c=1", "ops/s c=64", "wake-ups/release",
		"≤ 1.30  missed", "≥ 0.80  missed", "= 1.00  met", "300 wake-ups for 300 releases", "1.50ms", "480.0µs",
		"NATS/GRPC", "1.146  ≤ 1.50  met"} {
		if !strings.Contains(out, want) {
			t.Errorf("output has no %q:\n%s", want, out)
		}
	}
	rows := 0
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "raw_zk ") || strings.HasPrefix(line, "grpc ") || strings.HasPrefix(line, "nats ") || strings.HasPrefix(line, "zklock ") {
			rows++
		}
	}
	if rows != 8 {
		t.Errorf("%d rows, want raw_zk, grpc and nats at c=1 and c=64, and grpc and zklock handoffs:\n%s", rows, out)
	}
}

// TestBenchLockBadInput checks that bad flags fail with exit status 1 and
// a message naming the problem, before yard connects anywhere or starts a
// ZooKeeper: a listener given as --zk must see no connection. An
// unreachable ZooKeeper fails within --timeout.
func TestBenchLockBadInput(t *testing.T) {
	good, accepted := tripwire(t)
	checkBadInput(t, []string{"bench", "lock"}, []badInput{
		{"zero duration", []string{"--zk", good, "--duration", "0s"}, "--duration 0s: want a positive duration"},
		{"duration not a duration", []string{"--zk", good, "--duration", "5"}, `invalid argument "5" for "--duration"`},
		{"negative warm-up", []string{"--zk", good, "--warmup", "-1s"}, "--warmup -1s"},
		{"no rounds", []string{"--zk", good, "--rounds", "0"}, "--rounds 0: want 1 or more"},
		{"no waiters", []string{"--zk", good, "--waiters", "0"}, "--waiters 0: want 1 or more"},
		{"more waiters than a replica queues", []string{"--zk", good, "--waiters", "1001"}, "waiters 1001: want 1 to 1000"},
		{"waiters not a number", []string{"--zk", good, "--waiters", "x"}, `invalid argument "x" for "--waiters"`},
		{"zero timeout", []string{"--zk", good, "--timeout", "0s"}, "--timeout 0s"},
		{"unknown transport", []string{"--zk", good, "--via", "grpc,udp"}, `--via "udp": want grpc or nats`},
		{"nats without via nats", []string{"--zk", good, "--nats", "nats://127.0.0.1:4222"}, "give --via nats too"},
		{"negative queued", []string{"--zk", good, "--queued", "-1"}, "--queued -1: want 0 or more"},
		{"nats not a URL", []string{"--zk", good, "--via", "nats", "--nats", "127.0.0.1:4222"}, `--nats "127.0.0.1:4222": want a URL`},
		{"nats without a host", []string{"--zk", good, "--via", "nats", "--nats", "nats://"}, `--nats "nats://": want a URL`},
		{"empty zk", []string{"--zk", ""}, "empty connect string"},
		{"malformed zk", []string{"--zk", good + ",:2181"}, "missing host"},
		{"profile in a missing directory", []string{"--zk", good, "--cpuprofile", filepath.Join(t.TempDir(), "no", "cpu.prof")}, "--cpuprofile"},
		{"extra argument", []string{"--zk", good, "extra"}, "unknown command"},
		{"unknown flag", []string{"--zk", good, "--concurrency", "8"}, "unknown flag"},
		{"unreachable zk", []string{"--zk", "127.0.0.1:1", "--timeout", "300ms"}, "no ZooKeeper session with 127.0.0.1:1"},
	})
	if n := accepted(); n != 0 {
		t.Errorf("bad input reached the network: %d connections", n)
	}
}

// runBenchJSON runs `yard bench <sub> --json` with flags against a
// ZooKeeper of the test's own, fails t unless yard exits 0, and decodes
// its stdout into doc.
func runBenchJSON(t *testing.T, sub string, flags []string, doc any) yardResult {
	t.Helper()
	zk := zktest.Start(t)
	args := append([]string{"bench", sub, "--json", "--zk", zk.ConnectString()}, flags...)
	res := runYard(t, nil, args...)
	if res.code != 0 {
		t.Fatalf("yard %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, res.code, res.stdout, res.stderr)
	}
	if err := json.Unmarshal([]byte(res.stdout), doc); err != nil {
		t.Fatalf("stdout is not the JSON object: %v\n%s", err, res.stdout)
	}
	return res
}

// badInput is bad input to a yard command.
type badInput struct {
	name string
	args []string
	want string // in what yard says on stderr
}

// checkBadInput runs yard with command (["bench", "rpc"], say) followed
// by each test's args, and checks that yard exits 1, says the test's want
// on stderr, and prints nothing on stdout.
func checkBadInput(t *testing.T, command []string, tests []badInput) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(slices.Clone(command), tt.args...)
			res := runYard(t, nil, args...)
			if res.code != 1 {
				t.Fatalf("yard %q: exit %d, want 1\nstdout:\n%s\nstderr: %s", args, res.code, res.stdout, res.stderr)
			}
			if !strings.Contains(res.stderr, tt.want) {
				t.Errorf("yard %q said %q, want it to say %q", args, res.stderr, tt.want)
			}
			if res.stdout != "" {
				t.Errorf("yard %q printed %q on bad input", args, res.stdout)
			}
		})
	}
}
