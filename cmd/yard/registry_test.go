package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard-dev/switchyard/internal/zktest"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
)

// instanceKeys are the keys every instance object of `yard registry show
// -o json` (and of watch's instances) has: the documented shape.
var instanceKeys = []string{
	"id", "service", "address", "weight", "zone", "version", "state",
	"registered_at", "age_s", "metadata",
}

// registryClient dials the registry at connect as a Switchyard server
// would, and closes it (ending its registrations) when tb ends.
func registryClient(tb testing.TB, connect string) *registry.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := registry.Dial(ctx, connect, registry.WithLogger(zktest.Logger(tb)))
	if err != nil {
		tb.Fatalf("dial %s: %v", connect, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// registerInstance registers inst through c; it lasts until c closes.
func registerInstance(tb testing.TB, c *registry.Client, inst *registryv1.Instance) *registry.Registration {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Register(ctx, inst)
	if err != nil {
		tb.Fatalf("register %s/%s: %v", inst.GetService(), inst.GetId(), err)
	}
	return r
}

// twoInstances registers alpha (weight unset, so 100; with metadata) and
// bravo (weight 7, DRAINING, no metadata) of svc through c.
func twoInstances(tb testing.TB, c *registry.Client, svc string) {
	tb.Helper()
	registerInstance(tb, c, &registryv1.Instance{
		Id: "alpha", Service: svc, Address: "127.0.0.1:7001", Zone: "z1", Version: "v1",
		Metadata: map[string]string{"canary": "true"},
	})
	registerInstance(tb, c, &registryv1.Instance{
		Id: "bravo", Service: svc, Address: "127.0.0.1:7002", Weight: 7, Zone: "z2", Version: "v2",
		State: registryv1.InstanceState_INSTANCE_STATE_DRAINING,
	})
}

// decodeInstances decodes show's JSON array, checking that every object
// has the documented keys and a metadata object (never null).
func decodeInstances(t *testing.T, res yardResult) []instanceJSON {
	t.Helper()
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(res.stdout), &raw); err != nil {
		t.Fatalf("exit %d, printed no JSON array: %v\nstdout:\n%s\nstderr:\n%s", res.code, err, res.stdout, res.stderr)
	}
	for i, obj := range raw {
		for _, k := range instanceKeys {
			if _, ok := obj[k]; !ok {
				t.Errorf("instance %d: JSON object has no %q: %s", i, k, res.stdout)
			}
		}
		if m := string(obj["metadata"]); !strings.HasPrefix(m, "{") {
			t.Errorf("instance %d: metadata is %s, want an object", i, m)
		}
	}
	var rows []instanceJSON
	if err := json.Unmarshal([]byte(res.stdout), &rows); err != nil {
		t.Fatalf("decoding %s: %v", res.stdout, err)
	}
	return rows
}

// TestRegistryBrowse runs ls, show and tree against a real ZooKeeper,
// before and after a server registers two instances, and with a record
// that cannot be read.
func TestRegistryBrowse(t *testing.T) {
	srv := zktest.Start(t)
	connect := srv.ConnectString()
	const svc = "test.browse.v1.Browse"

	empty := runYard(t, nil, "registry", "ls", "--zk", connect, "-o", "json")
	if empty.code != 0 || strings.TrimSpace(empty.stdout) != "[]" {
		t.Fatalf("ls of an empty registry: exit %d, printed %q, want 0 and []\nstderr: %s", empty.code, empty.stdout, empty.stderr)
	}

	c := registryClient(t, connect)
	before := time.Now()
	twoInstances(t, c, svc)

	t.Run("ls", func(t *testing.T) {
		res := runYard(t, nil, "registry", "ls", "--zk", connect, "-o", "json")
		if res.code != 0 {
			t.Fatalf("exit %d\nstderr: %s", res.code, res.stderr)
		}
		var got []map[string]any
		if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
			t.Fatalf("%v:\n%s", err, res.stdout)
		}
		want := []map[string]any{{"service": svc, "instances": float64(2)}}
		if !slices.EqualFunc(got, want, maps.Equal) {
			t.Fatalf("ls -o json = %v, want %v", got, want)
		}
		table := runYard(t, []string{"SWITCHYARD_ZK=" + connect}, "registry", "ls")
		if table.code != 0 || !strings.Contains(table.stdout, "SERVICE") || !strings.Contains(table.stdout, svc) {
			t.Fatalf("ls table from $SWITCHYARD_ZK: exit %d:\n%s\nstderr: %s", table.code, table.stdout, table.stderr)
		}
	})

	t.Run("show", func(t *testing.T) {
		res := runYard(t, nil, "registry", "show", svc, "--zk", connect, "-o", "json")
		if res.code != 0 || res.stderr != "" {
			t.Fatalf("exit %d, stderr %q; want 0 and nothing", res.code, res.stderr)
		}
		rows := decodeInstances(t, res)
		if len(rows) != 2 {
			t.Fatalf("show printed %d instances, want 2:\n%s", len(rows), res.stdout)
		}
		a, b := rows[0], rows[1]
		if a.ID != "alpha" || a.Service != svc || a.Address != "127.0.0.1:7001" || a.Weight != 100 ||
			a.Zone != "z1" || a.Version != "v1" || a.State != "SERVING" || !maps.Equal(a.Metadata, map[string]string{"canary": "true"}) {
			t.Errorf("alpha = %+v", a)
		}
		if b.ID != "bravo" || b.Weight != 7 || b.State != "DRAINING" || b.Metadata == nil || len(b.Metadata) != 0 {
			t.Errorf("bravo = %+v", b)
		}
		for _, r := range rows {
			at, err := time.Parse(time.RFC3339, r.RegisteredAt)
			if err != nil || at.Before(before.Add(-time.Second)) || at.After(time.Now()) {
				t.Errorf("%s: registered_at %q (%v), want an RFC 3339 time since the test registered it", r.ID, r.RegisteredAt, err)
			}
			if r.AgeS == nil || *r.AgeS < 0 || *r.AgeS > int64(time.Since(before).Seconds())+1 {
				t.Errorf("%s: age_s %v, want the seconds since it registered", r.ID, r.AgeS)
			}
		}

		table := runYard(t, nil, "registry", "show", svc, "--zk", connect)
		for _, want := range []string{"ID", "alpha", "bravo", "127.0.0.1:7002", "DRAINING", "100", `{"canary":"true"}`} {
			if !strings.Contains(table.stdout, want) {
				t.Errorf("show table lacks %q:\n%s", want, table.stdout)
			}
		}

		none := runYard(t, nil, "registry", "show", "test.nobody.v1.Nobody", "--zk", connect, "-o", "json")
		if none.code != 1 || none.stdout != "" || !strings.Contains(none.stderr, "no such service: test.nobody.v1.Nobody") {
			t.Errorf("show of a service that never registered: exit %d, printed %q / %q, want exit 1 saying no such service", none.code, none.stdout, none.stderr)
		}
	})

	t.Run("tree", func(t *testing.T) {
		res := runYard(t, nil, "registry", "tree", "--zk", connect, "-o", "json")
		if res.code != 0 {
			t.Fatalf("exit %d\nstderr: %s", res.code, res.stderr)
		}
		var nodes []registry.Node
		if err := json.Unmarshal([]byte(res.stdout), &nodes); err != nil {
			t.Fatalf("%v:\n%s", err, res.stdout)
		}
		var paths []string
		for _, n := range nodes {
			paths = append(paths, n.Path+"="+n.Type)
		}
		inst := registry.Root + "/" + svc + "/instances"
		want := []string{
			"/switchyard=persistent", registry.Root + "=persistent",
			registry.Root + "/" + svc + "=persistent", inst + "=persistent",
			inst + "/alpha=ephemeral", inst + "/bravo=ephemeral",
		}
		if !slices.Equal(paths, want) {
			t.Fatalf("tree = %v, want %v", paths, want)
		}
		if n := nodes[4]; n.DataBytes == 0 || !strings.HasPrefix(n.EphemeralOwner, "0x") || n.Children != 0 {
			t.Errorf("instance node %+v, want data, an owner and no children", n)
		}
		if n := nodes[3]; n.Children != 2 {
			t.Errorf("instances node %+v, want 2 children", n)
		}

		table := runYard(t, nil, "registry", "tree", registry.Root, "--zk", connect)
		if table.code != 0 || !strings.Contains(table.stdout, "\n"+registry.Root+" ") ||
			!strings.Contains(table.stdout, "\n      alpha ") || !strings.Contains(table.stdout, "\n      bravo ") ||
			!strings.Contains(table.stdout, "ephemeral") {
			t.Errorf("tree table: exit %d, want the root then alpha and bravo indented three levels:\n%s", table.code, table.stdout)
		}

		limited := runYard(t, nil, "registry", "tree", "--zk", connect, "-o", "json", "--limit", "2")
		if err := json.Unmarshal([]byte(limited.stdout), &nodes); err != nil || len(nodes) != 2 || limited.code != 0 {
			t.Errorf("--limit 2: exit %d, %d nodes (%v), want 0 and 2:\n%s", limited.code, len(nodes), err, limited.stdout)
		}
		if !strings.Contains(limited.stderr, "--limit 2") {
			t.Errorf("--limit 2: stderr %q, want a warning that the listing stopped", limited.stderr)
		}

		missing := runYard(t, nil, "registry", "tree", "/no/such/path", "--zk", connect)
		if missing.code != 1 || !strings.Contains(missing.stderr, "node does not exist") {
			t.Errorf("tree of a missing path: exit %d, stderr %q, want 1 and node does not exist", missing.code, missing.stderr)
		}
	})

	// Last, as it changes the service: a record not written by Switchyard.
	t.Run("show with a bad record", func(t *testing.T) {
		raw := zktest.Connect(t, connect)
		if _, err := raw.Create(registry.Root+"/"+svc+"/instances/broken", []byte("not a record"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		res := runYard(t, nil, "registry", "show", svc, "--zk", connect, "-o", "json")
		if res.code != 1 {
			t.Errorf("exit %d, want 1", res.code)
		}
		if rows := decodeInstances(t, res); len(rows) != 2 {
			t.Errorf("printed %d instances, want the 2 readable ones:\n%s", len(rows), res.stdout)
		}
		for _, want := range []string{"warning", "broken", "1 records of " + svc + " could not be read"} {
			if !strings.Contains(res.stderr, want) {
				t.Errorf("stderr %q lacks %q", res.stderr, want)
			}
		}
	})
}

// TestRegistryWatch runs `yard registry watch` as a process, changes the
// service under it, and stops it with SIGTERM.
func TestRegistryWatch(t *testing.T) {
	srv := zktest.Start(t)
	connect := srv.ConnectString()
	c := registryClient(t, connect)

	tests := []struct {
		name string
		args []string
		// first checks the output before any change (all lines of the
		// table, the first JSON line) and says whether it is complete.
		first func(t *testing.T, lines []string) bool
		// changed reports whether the lines so far show the weight change
		// of alpha and the addition of charlie.
		changed func(t *testing.T, lines []string) bool
	}{
		{
			name: "json",
			args: []string{"-o", "json"},
			first: func(t *testing.T, lines []string) bool {
				ev := decodeEvent(t, lines[0])
				if len(ev.Instances) != 2 || !slices.Equal(ev.Added, []string{"alpha", "bravo"}) ||
					len(ev.Removed) != 0 || len(ev.Changed) != 0 || ev.Stale || ev.Held == nil || ev.Seq == 0 {
					t.Fatalf("first line %s, want alpha and bravo, both added", lines[0])
				}
				if _, err := time.Parse(time.RFC3339, ev.Time); err != nil {
					t.Errorf("time %q: %v", ev.Time, err)
				}
				return true
			},
			changed: func(t *testing.T, lines []string) bool {
				var weight, added bool
				for _, l := range lines[1:] {
					ev := decodeEvent(t, l)
					for _, ch := range ev.Changed {
						if ch.ID == "alpha" && ch.Field == "weight" && ch.From == float64(100) && ch.To == float64(5) {
							weight = true
						}
					}
					if slices.Contains(ev.Added, "charlie") {
						added = true
						if len(ev.Instances) != 3 {
							t.Errorf("charlie added, but %d instances listed: %s", len(ev.Instances), l)
						}
					}
				}
				return weight && added
			},
		},
		{
			name: "table",
			first: func(t *testing.T, lines []string) bool {
				if len(lines) < 3 {
					return false
				}
				if !strings.HasPrefix(lines[0], "ID ") || !strings.HasPrefix(lines[1], "alpha ") || !strings.HasPrefix(lines[2], "bravo ") {
					t.Fatalf("table %q, want a header, alpha and bravo", lines)
				}
				return true
			},
			changed: func(t *testing.T, lines []string) bool {
				var weight, added bool
				for _, l := range lines[3:] {
					weight = weight || strings.HasSuffix(l, " ~ alpha weight 100→5")
					added = added || strings.HasSuffix(l, " + charlie 127.0.0.1:7003")
				}
				return weight && added
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := "test.watch.v1." + tt.name
			alpha := registerInstance(t, c, &registryv1.Instance{Id: "alpha", Service: svc, Address: "127.0.0.1:7001"})
			registerInstance(t, c, &registryv1.Instance{Id: "bravo", Service: svc, Address: "127.0.0.1:7002"})

			w := startYard(t, append([]string{"registry", "watch", svc, "--zk", connect}, tt.args...)...)
			deadline := time.After(20 * time.Second)
			w.readUntil(t, deadline, "the first list", tt.first)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := alpha.Update(ctx, func(i *registryv1.Instance) { i.Weight = 5 }); err != nil {
				t.Fatal(err)
			}
			registerInstance(t, c, &registryv1.Instance{Id: "charlie", Service: svc, Address: "127.0.0.1:7003"})
			w.readUntil(t, deadline, "alpha's new weight and charlie", tt.changed)

			w.stop(t, syscall.SIGTERM)
		})
	}
}

// TestRegistryWatchStale stops the ZooKeeper server under a JSON watch:
// the watch goes on, marks the list stale, keeps the instances, and marks
// it fresh again once the server is back.
func TestRegistryWatchStale(t *testing.T) {
	srv := zktest.Start(t)
	connect := srv.ConnectString()
	const svc = "test.stale.v1.Stale"
	registerInstance(t, registryClient(t, connect), &registryv1.Instance{Id: "alpha", Service: svc, Address: "127.0.0.1:7001"})

	w := startYard(t, "registry", "watch", svc, "--zk", connect, "-o", "json")
	deadline := time.After(40 * time.Second)
	last := func(t *testing.T, lines []string) watchEvent { return decodeEvent(t, lines[len(lines)-1]) }
	w.readUntil(t, deadline, "the first list", func(t *testing.T, lines []string) bool {
		return len(last(t, lines).Instances) == 1
	})

	if err := srv.KillServer(0); err != nil {
		t.Fatal(err)
	}
	w.readUntil(t, deadline, "a stale list", func(t *testing.T, lines []string) bool {
		ev := last(t, lines)
		if ev.Stale && (len(ev.Instances) != 1 || len(ev.Removed) != 0) {
			t.Fatalf("stale line %s, want alpha kept", lines[len(lines)-1])
		}
		return ev.Stale
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.StartServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	w.readUntil(t, deadline, "a fresh list", func(t *testing.T, lines []string) bool {
		ev := last(t, lines)
		return !ev.Stale && len(ev.Instances) == 1
	})
	w.stop(t, syscall.SIGINT)
}

func decodeEvent(t *testing.T, line string) watchEvent {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &raw); err != nil {
		t.Fatalf("watch printed %q, not a JSON object: %v", line, err)
	}
	for _, k := range []string{"time", "seq", "added", "removed", "changed", "instances", "stale", "held", "problems"} {
		if v, ok := raw[k]; !ok || string(v) == "null" {
			t.Errorf("watch line lacks %q (or it is null): %s", k, line)
		}
	}
	var ev watchEvent
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("decoding %s: %v", line, err)
	}
	return ev
}

// yardProcess is a running yard whose stdout lines are collected.
type yardProcess struct {
	cmd    *exec.Cmd
	lines  chan string
	got    []string
	stderr *bytes.Buffer
	exited chan error
}

// startYard starts yard with args and collects its output lines; it kills
// the process if the test ends first.
func startYard(t *testing.T, args ...string) *yardProcess {
	t.Helper()
	cmd := yardCmd(t, t.TempDir(), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &yardProcess{cmd: cmd, lines: make(chan string, 100), stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range p.lines {
		}
	})
	return p
}

// readUntil reads lines until done says the lines so far are enough,
// failing t at deadline or if yard exits first.
func (p *yardProcess) readUntil(t *testing.T, deadline <-chan time.Time, what string, done func(*testing.T, []string) bool) {
	t.Helper()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("yard exited before printing %s: %v\nstdout:\n%s\nstderr:\n%s", what, <-p.exited, strings.Join(p.got, "\n"), p.stderr)
			}
			p.got = append(p.got, l)
			if done(t, p.got) {
				return
			}
		case <-deadline:
			t.Fatalf("yard did not print %s in time\nstdout:\n%s\nstderr:\n%s", what, strings.Join(p.got, "\n"), p.stderr)
		}
	}
}

// stop signals yard and expects it to exit 0 within 10s.
func (p *yardProcess) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range p.lines {
		}
	}()
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("yard exited with %v after %v, want 0\nstderr:\n%s", err, sig, p.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("yard still running 10s after %v", sig)
	}
}

// TestRegistryBadInput checks that bad input fails with exit status 1 and
// a message naming the problem. All but the unreachable cases fail before
// yard connects anywhere: a listener placed in their connect strings must
// see no connection. An unreachable ZooKeeper fails within --timeout.
func TestRegistryBadInput(t *testing.T) {
	good, accepted := tripwire(t)
	const unreachable = "127.0.0.1:1"

	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"show invalid service", nil, []string{"show", "a/b", "--zk", good}, `service name: registry: invalid name: "a/b" contains '/'`},
		{"watch invalid service", nil, []string{"watch", "..", "--zk", good}, "service name: registry: invalid name"},
		{"show empty service", nil, []string{"show", "", "--zk", good}, "invalid name: empty"},
		{"show no service", nil, []string{"show", "--zk", good}, "accepts 1 arg(s), received 0"},
		{"ls unknown output", nil, []string{"ls", "--zk", good, "-o", "yaml"}, `-o "yaml": unknown output format`},
		{"watch unknown output", nil, []string{"watch", "svc", "--zk", good, "-o", "wide"}, `-o "wide": unknown output format`},
		{"ls neither flag nor env", []string{"SWITCHYARD_ZK="}, []string{"ls"}, "pass --zk"},
		{"tree neither flag nor env", []string{"SWITCHYARD_ZK="}, []string{"tree"}, "pass --zk"},
		{"malformed env", []string{"SWITCHYARD_ZK=" + good + ",host"}, []string{"ls"}, "$SWITCHYARD_ZK"},
		{"malformed flag", nil, []string{"show", "svc", "--zk", good + ",:2181"}, "missing host"},
		{"tree relative path", nil, []string{"tree", "switchyard", "--zk", good}, `path "switchyard": not absolute`},
		{"tree trailing slash", nil, []string{"tree", "/switchyard/", "--zk", good}, "ends with /"},
		{"tree dot-dot", nil, []string{"tree", "/switchyard/../x", "--zk", good}, `relative element ".."`},
		{"tree empty element", nil, []string{"tree", "/a//b", "--zk", good}, "empty element"},
		{"tree negative limit", nil, []string{"tree", "--zk", good, "--limit", "-1"}, "--limit -1"},
		{"zero timeout", nil, []string{"ls", "--zk", good, "--timeout", "0s"}, "want a positive duration"},
		{"ls extra argument", nil, []string{"ls", "extra", "--zk", good}, "unknown command"},
		{"ls unreachable", nil, []string{"ls", "--zk", unreachable, "--timeout", "300ms"}, "no ZooKeeper session with " + unreachable + " within --timeout 300ms"},
		{"show unreachable", nil, []string{"show", "svc", "--zk", unreachable, "--timeout", "300ms"}, "no ZooKeeper session"},
		{"watch unreachable", nil, []string{"watch", "svc", "--zk", unreachable, "--timeout", "300ms"}, "no ZooKeeper session"},
		{"tree unreachable", []string{"SWITCHYARD_ZK=" + unreachable}, []string{"tree", "--timeout", "300ms"}, "no ZooKeeper session"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"registry"}, tt.args...)
			start := time.Now()
			res := runYard(t, tt.env, args...)
			if res.code != 1 {
				t.Fatalf("yard %q: exit %d, want 1\nstdout:\n%s\nstderr: %s", args, res.code, res.stdout, res.stderr)
			}
			if !strings.Contains(res.stderr, tt.want) {
				t.Errorf("yard %q said %q, want it to say %q", args, res.stderr, tt.want)
			}
			if res.stdout != "" {
				t.Errorf("yard %q printed %q on bad input", args, res.stdout)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("yard %q took %v to fail", args, d)
			}
		})
	}
	if n := accepted(); n != 0 {
		t.Errorf("bad input reached the network: %d connections", n)
	}
}

// TestWatchDiff covers what watch prints for changes a test cannot easily
// make a real registry show on demand: stale and fresh, held and back,
// several fields of one instance, removals.
func TestWatchDiff(t *testing.T) {
	at := timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	inst := func(id string, edit ...func(*registryv1.Instance)) *registryv1.Instance {
		i := &registryv1.Instance{Id: id, Service: "svc", Address: "10.0.0.1:80", State: registryv1.InstanceState_INSTANCE_STATE_SERVING, RegisteredAt: at}
		for _, e := range edit {
			e(i)
		}
		return i
	}
	snap := func(seq uint64, insts ...*registryv1.Instance) registry.Snapshot {
		return registry.Snapshot{Service: "svc", Instances: insts, Seq: seq}
	}
	stale := func(s registry.Snapshot) registry.Snapshot { s.Stale = true; return s }
	held := func(s registry.Snapshot, ids ...string) registry.Snapshot { s.Held = ids; return s }

	tests := []struct {
		name        string
		prev, next  registry.Snapshot
		seen        bool
		wantAdded   []string
		wantRemoved []string
		wantChanged []string // id field from to
		wantLines   []string // without the time
	}{
		{
			name: "first", next: snap(1, inst("a"), inst("b")),
			wantAdded: []string{"a", "b"},
			wantLines: []string{"+ a 10.0.0.1:80", "+ b 10.0.0.1:80"},
		},
		{
			name: "added and removed", seen: true,
			prev: snap(1, inst("a"), inst("b")), next: snap(2, inst("b"), inst("c")),
			wantAdded: []string{"c"}, wantRemoved: []string{"a"},
			wantLines: []string{"+ c 10.0.0.1:80", "- a"},
		},
		{
			name: "weight from the default, and state, on one line", seen: true,
			prev: snap(1, inst("a")),
			next: snap(2, inst("a", func(i *registryv1.Instance) {
				i.Weight = 7
				i.State = registryv1.InstanceState_INSTANCE_STATE_DRAINING
			})),
			wantChanged: []string{"a weight 100 7", "a state SERVING DRAINING"},
			wantLines:   []string{"~ a weight 100→7 state SERVING→DRAINING"},
		},
		{
			name: "explicit 100 is the default", seen: true,
			prev: snap(1, inst("a")), next: snap(2, inst("a", func(i *registryv1.Instance) { i.Weight = 100 })),
		},
		{
			name: "zone, version and metadata", seen: true,
			prev: snap(1, inst("a", func(i *registryv1.Instance) { i.Zone = "z1" })),
			next: snap(2, inst("a", func(i *registryv1.Instance) {
				i.Version = "v2"
				i.Metadata = map[string]string{"k": "v"}
			})),
			wantChanged: []string{"a zone z1 ", "a version  v2", "a metadata map[] map[k:v]"},
			wantLines:   []string{`~ a zone z1→- version -→v2 metadata -→{"k":"v"}`},
		},
		{
			name: "stale", seen: true,
			prev: snap(1, inst("a")), next: stale(snap(2, inst("a"))),
			wantLines: []string{"! stale: ZooKeeper is unreachable; the list is the last one read"},
		},
		{
			name: "fresh", seen: true,
			prev: stale(snap(1, inst("a"))), next: snap(2, inst("a")),
			wantLines: []string{"! fresh: ZooKeeper is reachable again"},
		},
		{
			name: "held", seen: true,
			prev: snap(1, inst("a"), inst("b")), next: held(snap(2, inst("a"), inst("b")), "a", "b"),
			wantLines: []string{
				"! held a: its node vanished without deregistering; kept as last known good",
				"! held b: its node vanished without deregistering; kept as last known good",
			},
		},
		{
			name: "back", seen: true,
			prev: held(snap(1, inst("a"), inst("b")), "a", "b"), next: held(snap(2, inst("a"), inst("b")), "b"),
			wantLines: []string{"! back a"},
		},
		{
			name: "hold ran out", seen: true,
			prev: held(snap(1, inst("a"), inst("b")), "a", "b"), next: snap(2),
			wantRemoved: []string{"a", "b"},
			wantLines:   []string{"- a", "- b"},
		},
	}
	now := at.AsTime().Add(90 * time.Second)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := diffSnapshots(tt.prev, tt.next, now, tt.seen)
			if !slices.Equal(ev.Added, orEmpty(tt.wantAdded)) || !slices.Equal(ev.Removed, orEmpty(tt.wantRemoved)) {
				t.Errorf("added %q removed %q, want %q and %q", ev.Added, ev.Removed, tt.wantAdded, tt.wantRemoved)
			}
			var changed []string
			for _, ch := range ev.Changed {
				changed = append(changed, fmt.Sprint(ch.ID, " ", ch.Field, " ", ch.From, " ", ch.To))
			}
			if !slices.Equal(changed, tt.wantChanged) {
				t.Errorf("changed %q, want %q", changed, tt.wantChanged)
			}
			if ev.Seq != tt.next.Seq || ev.Stale != tt.next.Stale || ev.Held == nil || ev.Problems == nil {
				t.Errorf("event %+v does not carry the snapshot's seq, stale, held and problems", ev)
			}
			for _, v := range ev.Instances {
				if v.AgeS == nil || *v.AgeS != 90 {
					t.Errorf("%s: age_s %v, want 90", v.ID, v.AgeS)
				}
			}

			text := changeLines(ev, tt.prev, now)
			var lines []string
			stamp := now.Format(time.TimeOnly) + " "
			for l := range strings.Lines(text) {
				l = strings.TrimSuffix(l, "\n")
				if !strings.HasPrefix(l, stamp) {
					t.Errorf("line %q does not start with the time %q", l, stamp)
				}
				lines = append(lines, strings.TrimPrefix(l, stamp))
			}
			if !slices.Equal(lines, tt.wantLines) {
				t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tt.wantLines, "\n"))
			}
		})
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func TestInstanceView(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		inst *registryv1.Instance
		want instanceJSON
	}{
		{
			name: "defaults",
			inst: &registryv1.Instance{Id: "a", Service: "s", Address: "h:1"},
			want: instanceJSON{ID: "a", Service: "s", Address: "h:1", Weight: 100, State: "SERVING", Metadata: map[string]string{}},
		},
		{
			name: "everything",
			inst: &registryv1.Instance{
				Id: "a", Service: "s", Address: "h:1", Weight: 3, Zone: "z", Version: "v",
				Metadata: map[string]string{"k": "v"}, State: registryv1.InstanceState_INSTANCE_STATE_DRAINING,
				RegisteredAt: timestamppb.New(now.Add(-192*time.Second - 500*time.Millisecond)),
			},
			want: instanceJSON{
				ID: "a", Service: "s", Address: "h:1", Weight: 3, Zone: "z", Version: "v", State: "DRAINING",
				RegisteredAt: "2025-01-02T03:00:52.5Z", AgeS: new(int64(192)), Metadata: map[string]string{"k": "v"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := json.Marshal(instanceView(tt.inst, now))
			want, _ := json.Marshal(tt.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func TestAgeText(t *testing.T) {
	tests := []struct {
		name string
		s    *int64
		want string
	}{
		{"unknown", nil, "-"},
		{"zero", new(int64(0)), "0s"},
		{"seconds", new(int64(42)), "42s"},
		{"minutes", new(int64(192)), "3m12s"},
		{"hours", new(int64(5*3600 + 3*60 + 9)), "5h3m"},
		{"days", new(int64(2*86400 + 5*3600 + 7)), "2d5h"},
		{"clock ahead", new(int64(-3)), "-3s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ageText(tt.s); got != tt.want {
				t.Fatalf("ageText = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckZNodePath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/", true},
		{"/switchyard", true},
		{"/switchyard/services/a.b.C", true},
		{"/a/..b/c.", true},
		{"", false},
		{"switchyard", false},
		{"/switchyard/", false},
		{"//", false},
		{"/a/./b", false},
		{"/a/..", false},
		{"/a\x00b", false},
		{"/a\x7fb", false},
		{"/a\ufff5", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.path), func(t *testing.T) {
			if err := checkZNodePath(tt.path); (err == nil) != tt.ok {
				t.Fatalf("checkZNodePath(%q) = %v, want ok %v", tt.path, err, tt.ok)
			}
		})
	}
}
