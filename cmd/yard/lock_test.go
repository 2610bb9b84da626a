package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
	"github.com/switchyard-dev/switchyard/lockservice/lockqueue"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// lockReplica is a running `yard serve lock` that has printed its line.
type lockReplica struct {
	*yardProcess
	id, addr string
}

var metricsLine = regexp.MustCompile(`^metrics on (http://\S+/metrics)$`)

var servingLine = regexp.MustCompile(`^serving switchyard\.lock\.v1\.LockService as replica (\S+) on (\S+) \(`)

// startLockReplica runs `yard serve lock` against the ZooKeeper at
// connect, with a 4s session and args added, and waits until it serves
// and is registered. It is killed when t ends if still running.
func startLockReplica(t *testing.T, connect string, args ...string) *lockReplica {
	t.Helper()
	p := startYard(t, append([]string{"serve", "lock", "--zk", connect, "--session", "4s"}, args...)...)
	r := &lockReplica{yardProcess: p}
	p.readUntil(t, time.After(30*time.Second), "the serving line", func(t *testing.T, lines []string) bool {
		m := servingLine.FindStringSubmatch(lines[len(lines)-1])
		if m != nil {
			r.id, r.addr = m[1], m[2]
		}
		return m != nil
	})
	return r
}

// waitExit collects p's output until it exits, within d, and returns its
// exit status.
func (p *yardProcess) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	return exitCode(t, p.awaitExit(t, p.watchExit(t), d, "").err)
}

// signalExit signals p and returns its exit status, within 15s.
func (p *yardProcess) signalExit(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.waitExit(t, 15*time.Second)
}

// processExit is when a yard process was seen to exit, and how.
type processExit struct {
	at  time.Time
	err error
}

// watchExit collects p's output in a goroutine of its own until p exits,
// and then sends when (timed as soon as its exit is seen) and how on the
// channel it returns. p.got is that goroutine's until the send. When t
// ends p is killed, if still running, and the goroutine awaited.
func (p *yardProcess) watchExit(t *testing.T) <-chan processExit {
	t.Helper()
	exited := make(chan processExit, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for l := range p.lines {
			p.got = append(p.got, l)
		}
		err := <-p.exited
		exited <- processExit{time.Now(), err}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-done
	})
	return exited
}

// awaitExit returns p's exit from exited, watchExit's channel, within d.
// After d it kills p and fails t with p's output: still running d when
// (say, "after SIGTERM"; or "").
func (p *yardProcess) awaitExit(t *testing.T, exited <-chan processExit, d time.Duration, when string) processExit {
	t.Helper()
	select {
	case e := <-exited:
		return e
	case <-time.After(d):
	}
	_ = p.cmd.Process.Kill()
	<-exited // p.got is ours again
	t.Fatalf("yard %v still running %v %s\nstdout:\n%s\nstderr:\n%s", p.cmd.Args[1:], d, when, strings.Join(p.got, "\n"), p.stderr)
	return processExit{}
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	t.Fatalf("waiting for yard: %v", err)
	return -1
}

var acquiredLine = regexp.MustCompile(`^acquired (\S+): token (\d+), lease on replica (\S+), valid `)

// tokenOf returns the token of an acquired line, failing t on another.
func tokenOf(t *testing.T, line string) uint64 {
	t.Helper()
	m := acquiredLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%q is not an acquired line", line)
	}
	n, err := strconv.ParseUint(m[2], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// acquireKeys are the keys of every line of `yard lock acquire -o json`.
var acquireKeys = []string{"event", "name", "token", "replica", "owner", "ttl_ms", "waited_ms", "held_ms"}

// decodeAcquireEvent decodes one line of acquire -o json, checking that it
// has every documented key.
func decodeAcquireEvent(t *testing.T, line string) acquireEvent {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &raw); err != nil {
		t.Fatalf("acquire printed %q, not a JSON object: %v", line, err)
	}
	for _, k := range acquireKeys {
		if _, ok := raw[k]; !ok {
			t.Errorf("acquire line lacks %q: %s", k, line)
		}
	}
	var ev acquireEvent
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// contenderKeys are the keys of every holder and waiter object.
var contenderKeys = []string{"owner", "replica", "token", "request_id", "since", "ttl_ms"}

// showLock runs `yard lock show NAME -o json` and decodes it, checking
// the documented keys.
func showLock(t *testing.T, connect, name string) lockJSON {
	t.Helper()
	res := runYard(t, nil, "lock", "show", name, "--zk", connect, "-o", "json")
	if res.code != 0 {
		t.Fatalf("lock show %s: exit %d\nstdout:\n%s\nstderr:\n%s", name, res.code, res.stdout, res.stderr)
	}
	var raw struct {
		Name    *string                      `json:"name"`
		Holder  map[string]json.RawMessage   `json:"holder"`
		Waiters []map[string]json.RawMessage `json:"waiters"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &raw); err != nil || raw.Name == nil || raw.Waiters == nil {
		t.Fatalf("lock show -o json printed %q (%v), want name, holder and a waiters array", res.stdout, err)
	}
	for _, obj := range append([]map[string]json.RawMessage{raw.Holder}, raw.Waiters...) {
		for _, k := range contenderKeys {
			if _, ok := obj[k]; !ok {
				t.Errorf("contender lacks %q: %s", k, res.stdout)
			}
		}
	}
	var v lockJSON
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// awaitWaiters polls `yard lock show` until the lock has n waiters, for
// at most 20s, and returns what it showed.
func awaitWaiters(t *testing.T, connect, name string, n int) lockJSON {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := showLock(t, connect, name)
		if len(v.Waiters) == n {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock %s has %d waiters after 20s, want %d: %+v", name, len(v.Waiters), n, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func owners(cs []contenderJSON) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Owner)
	}
	return out
}

// TestLockCommands runs `yard serve lock` and drives acquire, ls and show
// against it as separate processes, as users would.
func TestLockCommands(t *testing.T) {
	srv := zktest.Start(t)
	connect := srv.ConnectString()
	rep := startLockReplica(t, connect, "--id", "lock-a", "--metrics", "127.0.0.1:0")
	if rep.id != "lock-a" {
		t.Fatalf("replica says its id is %q, want lock-a", rep.id)
	}
	var metricsURL string
	rep.readUntil(t, time.After(10*time.Second), "the metrics line", func(t *testing.T, lines []string) bool {
		m := metricsLine.FindStringSubmatch(lines[len(lines)-1])
		if m != nil {
			metricsURL = m[1]
		}
		return m != nil
	})

	t.Run("hold and release", func(t *testing.T) {
		res := runYard(t, nil, "lock", "acquire", "t/hold", "--hold", "300ms", "--zk", connect)
		if res.code != 0 || res.stderr != "" {
			t.Fatalf("exit %d, want 0 and nothing on stderr\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
		}
		lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
		if len(lines) != 3 {
			t.Fatalf("printed %d lines, want acquired, holding, released:\n%s", len(lines), res.stdout)
		}
		token := tokenOf(t, lines[0])
		if m := acquiredLine.FindStringSubmatch(lines[0]); m[1] != "t/hold" || m[3] != "lock-a" {
			t.Errorf("acquired line %q, want t/hold on replica lock-a", lines[0])
		}
		if want := "released t/hold: token " + strconv.FormatUint(token, 10) + ", held "; !strings.HasPrefix(lines[2], want) {
			t.Errorf("last line %q, want it to start %q", lines[2], want)
		}

		none := runYard(t, nil, "lock", "show", "t/hold", "--zk", connect)
		if none.code != 1 || none.stdout != "" || !strings.Contains(none.stderr, "no such lock: t/hold") {
			t.Errorf("show after release: exit %d, printed %q / %q, want exit 1 saying no such lock", none.code, none.stdout, none.stderr)
		}
		empty := runYard(t, nil, "lock", "ls", "--zk", connect, "-o", "json")
		if empty.code != 0 || strings.TrimSpace(empty.stdout) != "[]" {
			t.Errorf("ls after release: exit %d, printed %q, want []\nstderr: %s", empty.code, empty.stdout, empty.stderr)
		}

		// With a 2s lease, holding 5s (over twice the validity) only works
		// if the watchdog renews. A 2s lease leaves each renewal's round
		// trip, between two processes, a second or so: a shorter one loses
		// the lock to a moment's stall on a loaded machine.
		js := runYard(t, nil, "lock", "acquire", "t/hold", "--ttl", "2s", "--hold", "5s", "--owner", "ops", "--zk", connect, "-o", "json")
		if js.code != 0 {
			t.Fatalf("-o json --ttl 2s --hold 5s: exit %d\nstdout:\n%s\nstderr:\n%s", js.code, js.stdout, js.stderr)
		}
		jl := strings.Split(strings.TrimSpace(js.stdout), "\n")
		if len(jl) != 2 {
			t.Fatalf("-o json printed %d lines, want 2:\n%s", len(jl), js.stdout)
		}
		acq, rel := decodeAcquireEvent(t, jl[0]), decodeAcquireEvent(t, jl[1])
		if acq.Event != "acquired" || acq.Name != "t/hold" || acq.Replica != "lock-a" || acq.Owner != "ops" ||
			acq.TTLMS <= 0 || acq.TTLMS > 2000 || acq.Token <= token {
			t.Errorf("acquired event %+v, want t/hold on lock-a as ops, ttl in (0, 2000], token over %d", acq, token)
		}
		if rel.Event != "released" || rel.Token != acq.Token || rel.HeldMS < 5000 {
			t.Errorf("released event %+v, want token %d held 5000ms or more", rel, acq.Token)
		}
	})

	// After "hold and release": one grant, one release.
	t.Run("metrics", func(t *testing.T) {
		body := scrape(t, metricsURL)
		for _, want := range []string{
			"switchyard_lock_grants_total ",
			`switchyard_lock_ends_total{reason="released"} `,
			`grpc_server_handled_total{grpc_code="OK",grpc_method="Acquire",grpc_service="switchyard.lock.v1.LockService",grpc_type="unary"} `,
			"go_goroutines ",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics has no %q", want)
			}
		}
		if strings.Contains(body, "switchyard_lock_grants_total 0\n") {
			t.Error("/metrics counts no grant after one acquire")
		}
	})
	t.Run("contention", func(t *testing.T) {
		const name = "t/queue"
		alice := startYard(t, "lock", "acquire", name, "--owner", "alice", "--zk", connect, "-o", "json")
		var held acquireEvent
		alice.readUntil(t, time.After(20*time.Second), "alice's grant", func(t *testing.T, lines []string) bool {
			held = decodeAcquireEvent(t, lines[0])
			return true
		})

		try := runYard(t, nil, "lock", "acquire", name, "--wait=false", "--zk", connect)
		want := "locked: held by alice (token " + strconv.FormatUint(held.Token, 10) + ", replica lock-a)"
		if try.code != 1 || try.stdout != "" || !strings.Contains(try.stderr, want) {
			t.Fatalf("try-lock of a held lock: exit %d, printed %q / %q, want exit 1 saying %q", try.code, try.stdout, try.stderr, want)
		}

		bob := startYard(t, "lock", "acquire", name, "--owner", "bob", "--zk", connect)
		awaitWaiters(t, connect, name, 1)
		carol := startYard(t, "lock", "acquire", name, "--owner", "carol", "--zk", connect)
		v := awaitWaiters(t, connect, name, 2)
		if v.Name != name || v.Holder == nil || v.Holder.Owner != "alice" || v.Holder.Token != held.Token || v.Holder.Replica != "lock-a" {
			t.Errorf("show: %+v, want alice holding with token %d on lock-a", v, held.Token)
		}
		if got := owners(v.Waiters); !slices.Equal(got, []string{"bob", "carol"}) {
			t.Errorf("waiters %v, want [bob carol] in line order", got)
		}
		if v.Waiters[0].Token <= held.Token || v.Waiters[1].Token <= v.Waiters[0].Token {
			t.Errorf("tokens holder %d, waiters %d %d: want them increasing in line order", held.Token, v.Waiters[0].Token, v.Waiters[1].Token)
		}

		ls := runYard(t, nil, "lock", "ls", "t/", "--zk", connect, "-o", "json")
		var locks []lockSummaryJSON
		if ls.code != 0 || json.Unmarshal([]byte(ls.stdout), &locks) != nil {
			t.Fatalf("ls -o json: exit %d\nstdout:\n%s\nstderr:\n%s", ls.code, ls.stdout, ls.stderr)
		}
		if len(locks) != 1 || locks[0].Name != name || locks[0].Waiters != 2 || locks[0].Holder == nil ||
			locks[0].Holder.Owner != "alice" || locks[0].Holder.Token != held.Token {
			t.Errorf("ls -o json = %s, want %s held by alice with 2 waiters", ls.stdout, name)
		}
		if other := runYard(t, nil, "lock", "ls", "u/", "--zk", connect, "-o", "json"); strings.TrimSpace(other.stdout) != "[]" {
			t.Errorf("ls u/ printed %q, want []", other.stdout)
		}
		lsTable := runYard(t, nil, "lock", "ls", "--zk", connect)
		showTable := runYard(t, nil, "lock", "show", name, "--zk", connect)
		for _, want := range []string{"NAME", "HOLDER", "WAITERS", name, "alice", "lock-a", strconv.FormatUint(held.Token, 10)} {
			if !strings.Contains(lsTable.stdout, want) {
				t.Errorf("ls table lacks %q:\n%s", want, lsTable.stdout)
			}
		}
		if !regexp.MustCompile(`(?s)holder +alice.*waiter 1 +bob.*waiter 2 +carol`).MatchString(showTable.stdout) {
			t.Errorf("show table does not list alice, then bob and carol in order:\n%s", showTable.stdout)
		}

		// Ctrl-C while waiting gives up the wait and leaves the line.
		if code := carol.signalExit(t, syscall.SIGINT); code != 1 {
			t.Errorf("carol interrupted while waiting: exit %d, want 1", code)
		}
		if len(carol.got) != 0 || !strings.Contains(carol.stderr.String(), "gave up waiting") {
			t.Errorf("carol interrupted: printed %q / %q, want nothing and a gave-up message", carol.got, carol.stderr)
		}
		if got := owners(awaitWaiters(t, connect, name, 1).Waiters); !slices.Equal(got, []string{"bob"}) {
			t.Errorf("waiters after carol gave up: %v, want [bob]", got)
		}

		// Ctrl-C while holding releases; the next in line gets the lock.
		if code := alice.signalExit(t, syscall.SIGINT); code != 0 {
			t.Fatalf("alice interrupted while holding: exit %d, want 0\nstderr:\n%s", code, alice.stderr)
		}
		if rel := decodeAcquireEvent(t, alice.got[len(alice.got)-1]); rel.Event != "released" || rel.Token != held.Token {
			t.Errorf("alice's last line %+v, want released with token %d", rel, held.Token)
		}
		bob.readUntil(t, time.After(20*time.Second), "bob's grant", func(t *testing.T, lines []string) bool { return true })
		if tok := tokenOf(t, bob.got[0]); tok <= held.Token {
			t.Errorf("bob's token %d is not above alice's %d", tok, held.Token)
		}
		if code := bob.signalExit(t, syscall.SIGTERM); code != 0 || !strings.HasPrefix(bob.got[len(bob.got)-1], "released "+name) {
			t.Errorf("bob stopped: exit %d, output %q, want 0 and a released line", code, bob.got)
		}
		if none := runYard(t, nil, "lock", "show", name, "--zk", connect); none.code != 1 || !strings.Contains(none.stderr, "no such lock: "+name) {
			t.Errorf("show after every holder left: exit %d, %q", none.code, none.stderr)
		}
	})
}

// TestServeLockStops stops a replica with SIGTERM while a lock is held
// through it: the holder is told its lock is lost and exits 1, the
// replica exits 0, leaves the registry and leaves no lock node behind.
func TestServeLockStops(t *testing.T) {
	srv := zktest.Start(t)
	connect := srv.ConnectString()
	rep := startLockReplica(t, connect)
	if rep.id != rep.addr {
		t.Errorf("replica id %q, want its address %q by default", rep.id, rep.addr)
	}
	show := runYard(t, nil, "registry", "show", lockServiceName, "--zk", connect, "-o", "json")
	if insts := decodeInstances(t, show); len(insts) != 1 || insts[0].ID != rep.id || insts[0].Address != rep.addr || insts[0].State != "SERVING" {
		t.Fatalf("registry while serving: %+v, want one SERVING instance %s at %s", insts, rep.id, rep.addr)
	}

	// A lease longer than the drain, so that a replica that closed its
	// session without waiting for the lease would exit before the holder
	// learns of its loss.
	holder := startYard(t, "lock", "acquire", "t/stop", "--ttl", "3s", "--zk", connect)
	holder.readUntil(t, time.After(20*time.Second), "the grant", func(t *testing.T, lines []string) bool { return true })
	token := tokenOf(t, holder.got[0])

	// The replica must not end its session, which deletes the lock's node,
	// before the holder has learnt of its loss: the holder exits first.
	// Both exits are timed alike, each by a goroutine of its own waiting
	// for it from before the signal.
	holderExit, replicaExit := holder.watchExit(t), rep.watchExit(t)
	if err := rep.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := rep.awaitExit(t, replicaExit, 15*time.Second, "after SIGTERM")
	if code := exitCode(t, r.err); code != 0 {
		t.Fatalf("serve lock after SIGTERM: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, strings.Join(rep.got, "\n"), rep.stderr)
	}
	if last := rep.got[len(rep.got)-1]; last != "stopped" {
		t.Errorf("serve lock's last line %q, want stopped", last)
	}
	h := holder.awaitExit(t, holderExit, 15*time.Second, "after its replica stopped")
	if code := exitCode(t, h.err); code != 1 {
		t.Errorf("holder whose replica stopped: exit %d, want 1", code)
	}
	if !h.at.Before(r.at) {
		t.Errorf("the replica exited (deleting its nodes) %v before the holder learnt of its loss", h.at.Sub(r.at))
	}
	t.Logf("the holder exited %v before its replica", r.at.Sub(h.at))
	if want := `lock "t/stop" (token ` + strconv.FormatUint(token, 10) + `) lost while held`; !strings.Contains(holder.stderr.String(), want) {
		t.Errorf("holder said %q, want %q", holder.stderr, want)
	}

	after := runYard(t, nil, "registry", "show", lockServiceName, "--zk", connect, "-o", "json")
	if insts := decodeInstances(t, after); len(insts) != 0 {
		t.Errorf("registry after the replica stopped: %+v, want no instance", insts)
	}
	conn := zktest.Connect(t, connect)
	if left := contenderNodes(t, conn); len(left) > 0 {
		t.Errorf("lock nodes left behind: %v", left)
	}
	none := runYard(t, nil, "lock", "ls", "--zk", connect)
	if none.code != 1 || !strings.Contains(none.stderr, "no serving instance") {
		t.Errorf("ls with no replica: exit %d, stderr %q, want 1 and no serving instance", none.code, none.stderr)
	}
}

// contenderNodes lists the nodes inside lock directories: contenders, or
// anything else that would keep a directory from being swept.
func contenderNodes(t *testing.T, conn *zk.Conn) []string {
	t.Helper()
	dirs, _, err := conn.Children(zklock.DefaultRoot)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		t.Fatalf("listing %s: %v", zklock.DefaultRoot, err)
	}
	var out []string
	for _, d := range dirs {
		kids, _, err := conn.Children(zklock.DefaultRoot + "/" + d)
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			t.Fatal(err)
		}
		for _, k := range kids {
			out = append(out, zklock.DefaultRoot+"/"+d+"/"+k)
		}
	}
	return out
}

// TestLockBadInput checks that bad input fails with exit status 1, a
// message naming the problem and nothing on stdout, within a bounded time:
// flags before yard connects anywhere, an unreachable ZooKeeper within
// --timeout, a service with no replica at once, and names the service
// refuses as invalid arguments.
func TestLockBadInput(t *testing.T) {
	good, accepted := tripwire(t)
	const unreachable = "127.0.0.1:1"
	type tc struct {
		name string
		env  []string
		args []string
		want string
	}
	check := func(t *testing.T, tests []tc) {
		t.Helper()
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				start := time.Now()
				res := runYard(t, tt.env, tt.args...)
				if res.code != 1 {
					t.Fatalf("yard %q: exit %d, want 1\nstdout:\n%s\nstderr: %s", tt.args, res.code, res.stdout, res.stderr)
				}
				if !strings.Contains(res.stderr, tt.want) {
					t.Errorf("yard %q said %q, want it to say %q", tt.args, res.stderr, tt.want)
				}
				if res.stdout != "" {
					t.Errorf("yard %q printed %q on bad input", tt.args, res.stdout)
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("yard %q took %v to fail", tt.args, d)
				}
			})
		}
	}

	check(t, []tc{
		{"ttl zero", nil, []string{"lock", "acquire", "a", "--zk", good, "--ttl", "0s"}, "--ttl 0s: want 1s to 5m0s"},
		{"ttl too short", nil, []string{"lock", "acquire", "a", "--zk", good, "--ttl", "999ms"}, "--ttl 999ms"},
		{"ttl too long", nil, []string{"lock", "acquire", "a", "--zk", good, "--ttl", "6m"}, "--ttl 6m0s"},
		{"ttl not a duration", nil, []string{"lock", "acquire", "a", "--zk", good, "--ttl", "ten"}, `invalid argument "ten" for "--ttl"`},
		{"negative hold", nil, []string{"lock", "acquire", "a", "--zk", good, "--hold", "-1s"}, "--hold -1s"},
		{"owner too long", nil, []string{"lock", "acquire", "a", "--zk", good, "--owner", strings.Repeat("o", 129)}, "--owner: want at most 128 bytes"},
		{"acquire unknown output", nil, []string{"lock", "acquire", "a", "--zk", good, "-o", "yaml"}, `-o "yaml": unknown output format`},
		{"acquire no name", nil, []string{"lock", "acquire", "--zk", good}, "accepts 1 arg(s), received 0"},
		{"show two names", nil, []string{"lock", "show", "a", "b", "--zk", good}, "accepts 1 arg(s), received 2"},
		{"ls two prefixes", nil, []string{"lock", "ls", "a", "b", "--zk", good}, "accepts at most 1 arg(s)"},
		{"ls zero timeout", nil, []string{"lock", "ls", "--zk", good, "--timeout", "0s"}, "want a positive duration"},
		{"neither flag nor env", []string{"SWITCHYARD_ZK="}, []string{"lock", "ls"}, "pass --zk"},
		{"malformed zk", nil, []string{"lock", "show", "a", "--zk", good + ",:2181"}, "missing host"},
		{"serve bad listen", nil, []string{"serve", "lock", "--zk", good, "--listen", "nope"}, `--listen "nope"`},
		{"serve bad metrics", nil, []string{"serve", "lock", "--zk", good, "--metrics", "9090"}, `--metrics "9090": want host:port`},
		{"serve nats not a URL", nil, []string{"serve", "lock", "--zk", good, "--nats", "127.0.0.1:4222"}, `--nats "127.0.0.1:4222": want a URL`},
		{"serve nats without a host", nil, []string{"serve", "lock", "--zk", good, "--nats", "nats://:4222"}, `--nats "nats://:4222": want a URL`},
		{"serve queue without nats", nil, []string{"serve", "lock", "--zk", good, "--queue"}, "--queue takes queued acquires from NATS JetStream: give --nats too"},
		{"serve short session", nil, []string{"serve", "lock", "--zk", good, "--session", "500ms"}, "--session 500ms: want 1s or more"},
		{"serve bad id", nil, []string{"serve", "lock", "--zk", good, "--id", "a/b"}, "--id: registry: invalid name"},
		{"serve bad advertise", nil, []string{"serve", "lock", "--zk", good, "--advertise", "host"}, `--advertise "host"`},
		{"serve extra argument", nil, []string{"serve", "lock", "extra", "--zk", good}, "unknown command"},
		{"serve neither flag nor env", []string{"SWITCHYARD_ZK="}, []string{"serve", "lock"}, "pass --zk"},
		{"acquire unreachable", nil, []string{"lock", "acquire", "a", "--zk", unreachable, "--timeout", "300ms"}, "no ZooKeeper session with " + unreachable + " within --timeout 300ms"},
		{"ls unreachable", nil, []string{"lock", "ls", "--zk", unreachable, "--timeout", "300ms"}, "no ZooKeeper session"},
		{"show unreachable", []string{"SWITCHYARD_ZK=" + unreachable}, []string{"lock", "show", "a", "--timeout", "300ms"}, "no ZooKeeper session"},
		{"serve unreachable", nil, []string{"serve", "lock", "--zk", unreachable, "--timeout", "300ms"}, "no ZooKeeper session with " + unreachable + " within --timeout 300ms"},
	})
	if n := accepted(); n != 0 {
		t.Errorf("bad flags reached the network: %d connections", n)
	}

	srv := zktest.Start(t)
	connect := srv.ConnectString()
	const noReplica = "no serving instance in the registry"
	check(t, []tc{
		{"acquire without replica", nil, []string{"lock", "acquire", "a", "--zk", connect}, noReplica},
		{"try-lock without replica", nil, []string{"lock", "acquire", "a", "--wait=false", "--zk", connect}, noReplica},
		{"show without replica", nil, []string{"lock", "show", "a", "--zk", connect}, noReplica},
		{"ls without replica", nil, []string{"lock", "ls", "--zk", connect}, "the lock service is unavailable"},
	})

	rep := startLockReplica(t, connect)
	check(t, []tc{
		{"absolute name", nil, []string{"lock", "acquire", "/a", "--zk", connect}, `invalid argument: zklock: invalid lock name: "/a" is absolute`},
		{"dot-dot name", nil, []string{"lock", "acquire", "a/../b", "--wait=false", "--zk", connect}, `has a ".." segment`},
		{"empty segment", nil, []string{"lock", "show", "a//b", "--zk", connect}, "empty path segment"},
		{"empty name", nil, []string{"lock", "show", "", "--zk", connect}, "invalid lock name: empty"},
		{"long name", nil, []string{"lock", "acquire", strings.Repeat("n", zklock.MaxNameLen+1), "--zk", connect}, "over the limit of 256"},
		{"control character", nil, []string{"lock", "show", "a\x01b", "--zk", connect}, "control character"},
		{"absolute prefix", nil, []string{"lock", "ls", "/a", "--zk", connect}, `prefix "/a" is absolute`},
		{"no such lock", nil, []string{"lock", "show", "nobody/holds/this", "--zk", connect, "-o", "json"}, "no such lock: nobody/holds/this"},
		{"listen address taken", nil, []string{"serve", "lock", "--zk", connect, "--listen", rep.addr}, "address already in use"},
	})
	if left := contenderNodes(t, zktest.Connect(t, connect)); len(left) > 0 {
		t.Errorf("bad input left lock nodes: %v", left)
	}
	rep.stop(t, syscall.SIGTERM)
}

// scrape returns the body of a GET of url, which must answer 200.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b)
}

// TestServeLockNATS runs `yard serve lock --nats URL --queue`: a NATS client
// takes and releases a lock in JSON as the nats CLI would, a subscriber
// sees the grant and release as JSON events, a queued acquire through
// JetStream is granted, and the replica stops cleanly.
func TestServeLockNATS(t *testing.T) {
	connect := zktest.Start(t).ConnectString()
	ns := natstest.Start(t)
	rep := startLockReplica(t, connect, "--id", "lock-nats", "--nats", ns.ClientURL(), "--queue")
	rep.readUntil(t, time.After(10*time.Second), "the queue line", func(t *testing.T, lines []string) bool {
		return strings.HasPrefix(lines[len(lines)-1], "taking queued acquires from JetStream stream SWITCHYARD_LOCK_QUEUE")
	})
	nc := natstest.Connect(t, ns.ClientURL())
	events := make(chan map[string]any, 100)
	if _, err := nc.Subscribe("switchyard.lock.v1.events.>", func(m *nats.Msg) {
		var ev map[string]any
		if m.Header.Get("Content-Type") != "application/json" || json.Unmarshal(m.Data, &ev) != nil {
			t.Errorf("event %q with headers %v is not JSON", m.Data, m.Header)
			return
		}
		events <- ev
	}); err != nil {
		t.Fatal(err)
	}
	request := func(subject, body string) map[string]any {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Header.Set("Content-Type", "application/json")
		m.Data = []byte(body)
		reply, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" {
			t.Fatalf("%s: error %s: %s", subject, code, reply.Header.Get("Nats-Service-Error"))
		}
		var out map[string]any
		if err := json.Unmarshal(reply.Data, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The broadcaster is elected shortly after the start: cycle a lock
	// until its release is seen as an event.
	deadline := time.After(20 * time.Second)
	for seen := false; !seen; {
		lease, _ := request("switchyard.lock.v1.try_acquire", `{"name":"cli/n","ttl":"5s"}`)["lease"].(map[string]any)
		if lease["replica"] != "lock-nats" {
			t.Fatalf("lease %v, want one from replica lock-nats", lease)
		}
		request("switchyard.lock.v1.replica.lock-nats.release",
			`{"name":"cli/n","leaseId":"`+lease["leaseId"].(string)+`","token":"`+lease["token"].(string)+`"}`)
		for wait := time.After(500 * time.Millisecond); !seen; {
			select {
			case ev := <-events:
				seen = ev["type"] == "TYPE_RELEASED" && ev["name"] == "cli/n" && ev["token"] == lease["token"]
				continue
			case <-wait:
			case <-deadline:
				t.Fatal("no release event within 20s")
			}
			break
		}
	}

	// A queued acquire through JetStream, answered on the requester's inbox.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	req, err := lockqueue.NewRequester(js)
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lease, err := req.Acquire(ctx, &lockv1.AcquireRequest{Name: "cli/queued", RequestId: "cli-queued-1", Wait: true})
	if err != nil || lease.GetReplica() != "lock-nats" {
		t.Fatalf("queued acquire: %v, %v; want a lease from lock-nats", lease, err)
	}
	if err := lockmq.Transport(nc).Release(ctx, lease); err != nil {
		t.Fatal(err)
	}

	if code := rep.signalExit(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("serve lock after SIGTERM: exit %d\n%s", code, rep.stderr)
	}
}
