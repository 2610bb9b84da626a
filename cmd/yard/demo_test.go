package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/demo"
)

// TestDemoBadInput checks that bad arguments and flags fail with exit
// status 1 and a message naming the problem, before yard connects
// anywhere or starts anything: a listener given as --zk sees no
// connection. An unreachable ZooKeeper fails within --timeout.
func TestDemoBadInput(t *testing.T) {
	good, accepted := tripwire(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	checkBadInput(t, []string{"demo"}, []badInput{
		{"unknown scenario", []string{"peak", "--zk", good}, `unknown scenario "peak": want one of peak-shaving`},
		{"zero capacity", []string{"--zk", good, "--capacity", "0"}, "--capacity 0: want 1 to 5000"},
		{"huge capacity", []string{"--zk", good, "--capacity", "1e9"}, "--capacity 1e+09: want 1 to 5000"},
		{"capacity not a number", []string{"--zk", good, "--capacity", "lots"}, `invalid argument "lots" for "--capacity"`},
		{"zero scale", []string{"--zk", good, "--scale", "0"}, "--scale 0: want a factor"},
		{"negative scale", []string{"--zk", good, "--scale", "-1"}, "--scale -1"},
		{"zero timeout", []string{"--zk", good, "--timeout", "0s"}, "--timeout 0s"},
		{"empty zk", []string{"--zk", ""}, "empty connect string"},
		{"malformed zk", []string{"--zk", good + ",:2181"}, "missing host"},
		{"nats not a URL", []string{"--zk", good, "--nats", "127.0.0.1:4222"}, `--nats "127.0.0.1:4222": want a URL`},
		{"nats without a host", []string{"--zk", good, "--nats", "nats://:4222"}, `--nats "nats://:4222": want a URL`},
		{"out is a file", []string{"--zk", good, "--out", file}, "not a directory"},
		{"unknown flag", []string{"--zk", good, "--no-such-flag"}, "unknown flag"},
		{"unreachable zk", []string{"peak-shaving", "--zk", "127.0.0.1:1", "--timeout", "300ms"}, "no ZooKeeper session with 127.0.0.1:1"},
	})
	if n := accepted(); n != 0 {
		t.Errorf("bad input reached the network: %d connections", n)
	}
}

// TestDemoStartsItsOwnStack runs `yard demo peak-shaving --json --out DIR`
// at a small scale with nothing given: it starts ZooKeeper and NATS
// itself, prints the JSON issue #7 fixes, writes the CSV and the charts,
// shows progress on stderr, and leaves no process and nothing in TMPDIR
// behind.
func TestDemoStartsItsOwnStack(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(t.TempDir(), "out")
	res := runYardIn(t, tmp, 2*time.Minute, "demo", "peak-shaving", "--scale", "0.2", "--capacity", "100", "--json", "--out", out)
	stdout := res.stdout

	var doc struct {
		Scenarios []struct {
			Name     string                    `json:"name"`
			Paths    map[string]map[string]any `json:"paths"`
			Verdicts []string                  `json:"verdicts"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout)
	}
	if len(doc.Scenarios) != 1 || doc.Scenarios[0].Name != "peak-shaving" || len(doc.Scenarios[0].Verdicts) == 0 {
		t.Fatalf("scenarios: %s", stdout)
	}
	for _, path := range []string{"rpc", "mq"} {
		obj, ok := doc.Scenarios[0].Paths[path]
		if !ok {
			t.Fatalf("no path %q: %s", path, stdout)
		}
		for _, k := range demo.RequiredKeys {
			if _, ok := obj[k].(float64); !ok {
				t.Errorf("paths.%s.%s is %v, want a number", path, k, obj[k])
			}
		}
		if obj["lost"] != 0.0 || obj["oversold"] != 0.0 {
			t.Errorf("paths.%s: lost %v, oversold %v", path, obj["lost"], obj["oversold"])
		}
	}
	if mq := doc.Scenarios[0].Paths["mq"]; mq["max_downstream_per_s"].(float64) > 110 {
		t.Errorf("mq max downstream %v/s over C = 100/s + 10 %%", mq["max_downstream_per_s"])
	}

	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		if info, err := e.Info(); err != nil || info.Size() == 0 {
			t.Errorf("%s is empty", e.Name())
		}
	}
	if want := []string{"peak-shaving-depth.png", "peak-shaving-rate.png", "peak-shaving.csv"}; !slices.Equal(names, want) {
		t.Errorf("--out has %v, want %v", names, want)
	}
	for _, want := range []string{"starting ZooKeeper and NATS", "%  peak-shaving (1/1)", "demo: wrote"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr has no %q:\n%s", want, res.stderr)
		}
	}
	checkNothingLeft(t, tmp)
}
