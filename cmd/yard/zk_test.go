package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zktest"
)

// statusKeys are the keys every object of `yard zk status -o json` has,
// whatever the server's state: the documented shape.
var statusKeys = []string{
	"address", "mode", "zxid", "connections", "outstanding",
	"latency_min_ms", "latency_avg_ms", "latency_max_ms",
	"znode_count", "watch_count", "ephemerals_count", "version",
}

// yardResult is what one finished yard process printed and how it exited.
type yardResult struct {
	stdout, stderr string
	code           int
}

// runYard runs yard with args, and env added to its environment, and
// returns its output and exit code. It fails t if yard does not exit
// within 30s.
func runYard(t *testing.T, env []string, args ...string) yardResult {
	t.Helper()
	cmd := yardCmd(t, t.TempDir(), args...)
	cmd.Env = append(cmd.Env, env...)
	return waitYard(t, cmd, 30*time.Second)
}

// runYardIn runs yard with args and TMPDIR=tmp, and returns its output.
// It fails t unless yard exits 0 within limit.
func runYardIn(t *testing.T, tmp string, limit time.Duration, args ...string) yardResult {
	t.Helper()
	res := waitYard(t, yardCmd(t, tmp, args...), limit)
	if res.code != 0 {
		t.Fatalf("yard %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, res.code, res.stdout, res.stderr)
	}
	return res
}

// waitYard runs cmd, a yardCmd, and returns its output and exit code. It
// kills cmd and fails t if cmd does not exit within limit.
func waitYard(t *testing.T, cmd *exec.Cmd, limit time.Duration) yardResult {
	t.Helper()
	args := cmd.Args[1:]
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("yard %v still running after %v\nstdout:\n%s\nstderr:\n%s", args, limit, &stdout, &stderr)
	}
	res := yardResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("yard %v: %v", args, err)
	}
	return res
}

// zkStatusJSON runs `yard zk status -o json` against connect and decodes
// its output, checking that every object has the documented keys.
func zkStatusJSON(t *testing.T, connect string) ([]serverStatus, yardResult) {
	t.Helper()
	res := runYard(t, nil, "zk", "status", "--zk", connect, "-o", "json")
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(res.stdout), &raw); err != nil {
		t.Fatalf("yard zk status -o json (exit %d) printed no JSON array: %v\nstdout:\n%s\nstderr:\n%s", res.code, err, res.stdout, res.stderr)
	}
	for i, obj := range raw {
		for _, k := range statusKeys {
			if _, ok := obj[k]; !ok {
				t.Errorf("server %d: JSON object has no %q: %s", i, k, res.stdout)
			}
		}
	}
	var rows []serverStatus
	if err := json.Unmarshal([]byte(res.stdout), &rows); err != nil {
		t.Fatalf("decoding %s: %v", res.stdout, err)
	}
	return rows, res
}

func countModes(rows []serverStatus) map[string]int {
	modes := map[string]int{}
	for _, r := range rows {
		modes[r.Mode]++
	}
	return modes
}

// TestZKStatusEnsemble runs `yard zk status` against a real three-server
// ensemble while it is whole, with a follower killed, and with only one
// server left (which then has no quorum).
func TestZKStatusEnsemble(t *testing.T) {
	ens := zktest.StartEnsemble(t, 3)
	connect := ens.ConnectString()
	addrs := ens.Addrs()

	rows, res := zkStatusJSON(t, connect)
	if res.code != 0 {
		t.Fatalf("whole ensemble: exit %d, want 0\nstderr: %s", res.code, res.stderr)
	}
	if len(rows) != 3 {
		t.Fatalf("whole ensemble: %d servers in JSON, want 3:\n%s", len(rows), res.stdout)
	}
	if m := countModes(rows); m["leader"] != 1 || m["follower"] != 2 {
		t.Fatalf("whole ensemble: modes %v, want 1 leader and 2 followers:\n%s", m, res.stdout)
	}
	for i, r := range rows {
		if r.Address != addrs[i] {
			t.Errorf("row %d is %s, want %s (connect-string order)", i, r.Address, addrs[i])
		}
		if !strings.HasPrefix(r.Zxid, "0x") {
			t.Errorf("%s: zxid %q, want 0x...", r.Address, r.Zxid)
		}
		if r.Error != "" || r.Version == "" || r.ZnodeCount == nil || r.Connections == nil ||
			r.LatencyAvgMS == nil || r.WatchCount == nil || r.EphemeralsCount == nil {
			t.Errorf("%s: incomplete row %+v", r.Address, r)
		}
		if r.Mode == "leader" {
			if r.Followers == nil || *r.Followers != 2 || r.SyncedFollowers == nil || *r.SyncedFollowers != 2 {
				t.Errorf("leader %s: followers %s synced %s, want 2 and 2", r.Address, num(r.Followers), num(r.SyncedFollowers))
			}
		} else if r.Followers != nil || r.SyncedFollowers != nil {
			t.Errorf("%s %s reports followers", r.Mode, r.Address)
		}
	}

	table := runYard(t, nil, "zk", "status", "--zk", connect)
	if table.code != 0 || !strings.Contains(table.stdout, "leader") || !strings.Contains(table.stdout, "ADDRESS") {
		t.Fatalf("table: exit %d, want 0 and a table with the leader:\n%s\nstderr: %s", table.code, table.stdout, table.stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	follower, err := ens.Find(ctx, "follower")
	if err != nil {
		t.Fatal(err)
	}
	if err := ens.KillServer(follower); err != nil {
		t.Fatal(err)
	}
	rows, res = zkStatusJSON(t, connect)
	if res.code == 0 {
		t.Fatalf("follower killed: exit 0, want non-zero:\n%s", res.stdout)
	}
	if !strings.Contains(res.stderr, "1 of 3 servers not serving") {
		t.Errorf("follower killed: stderr %q, want it to say 1 of 3 servers not serving", res.stderr)
	}
	if len(rows) != 3 {
		t.Fatalf("follower killed: %d servers in JSON, want 3:\n%s", len(rows), res.stdout)
	}
	if r := rows[follower]; r.Mode != modeDown || r.Error == "" {
		t.Errorf("killed follower: mode %q error %q, want down with an error", r.Mode, r.Error)
	}
	if m := countModes(rows); m["leader"] != 1 || m["follower"] != 1 {
		t.Errorf("follower killed: modes %v, want the leader and one follower still serving:\n%s", m, res.stdout)
	}
	table = runYard(t, nil, "zk", "status", "--zk", connect, "-o", "table")
	if table.code == 0 || !strings.Contains(table.stdout, "leader") || !strings.Contains(table.stdout, modeDown) {
		t.Errorf("follower killed, table: exit %d, want non-zero and a table with the leader and a down server:\n%s", table.code, table.stdout)
	}

	// With the leader gone too, the last server has no quorum: it runs but
	// does not serve. It notices within the ensemble's sync limit.
	leader, err := ens.Find(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	if err := ens.KillServer(leader); err != nil {
		t.Fatal(err)
	}
	last := 3 - follower - leader
	for {
		rows, res = zkStatusJSON(t, connect)
		if len(rows) == 3 && rows[last].Mode == modeNotServing {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("lone server %s still serving after 30s:\n%s", addrs[last], res.stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if res.code == 0 || !strings.Contains(res.stderr, "3 of 3 servers not serving") {
		t.Errorf("no quorum: exit %d, stderr %q, want non-zero and 3 of 3 servers not serving", res.code, res.stderr)
	}
	if rows[last].Error == "" {
		t.Errorf("not serving server has no error: %+v", rows[last])
	}
}

// TestZKStatusStandaloneFromEnv checks a standalone server, found through
// $SWITCHYARD_ZK as `yard up` exports it.
func TestZKStatusStandaloneFromEnv(t *testing.T) {
	srv := zktest.Start(t)
	res := runYard(t, []string{"SWITCHYARD_ZK=" + srv.ConnectString()}, "zk", "status", "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	var rows []serverStatus
	if err := json.Unmarshal([]byte(res.stdout), &rows); err != nil {
		t.Fatalf("%v:\n%s", err, res.stdout)
	}
	if len(rows) != 1 || rows[0].Mode != "standalone" || rows[0].Address != srv.Addr(0) {
		t.Fatalf("got %+v, want one standalone server at %s", rows, srv.Addr(0))
	}
}

// tripwire listens on a loopback port and counts the connections made to
// it, so a test can put its address where yard must not connect. It stops
// when t ends.
func tripwire(t *testing.T) (addr string, accepted func() int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), n.Load
}

// TestZKStatusBadInput checks that malformed input fails with exit status 1
// and a message naming the problem, before yard connects anywhere: a
// listener placed in every connect string must see no connection.
func TestZKStatusBadInput(t *testing.T) {
	good, accepted := tripwire(t)

	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"neither flag nor env", []string{"SWITCHYARD_ZK="}, nil, "pass --zk"},
		{"empty flag", nil, []string{"--zk", ""}, "empty connect string"},
		{"blank flag", nil, []string{"--zk", "  "}, "empty connect string"},
		{"no port", nil, []string{"--zk", good + ",host"}, "missing port"},
		{"port not a number", nil, []string{"--zk", good + ",host:notaport"}, `port "notaport" is not a number`},
		{"port out of range", nil, []string{"--zk", good + ",host:65536"}, "not a number from 1 to 65535"},
		{"port zero", nil, []string{"--zk", good + ",host:0"}, "not a number from 1 to 65535"},
		{"no host", nil, []string{"--zk", good + ",:2181"}, "missing host"},
		{"empty entry", nil, []string{"--zk", good + ",,"}, "empty server address"},
		{"malformed env", []string{"SWITCHYARD_ZK=" + good + ",host"}, nil, "$SWITCHYARD_ZK"},
		{"flag wins over env", []string{"SWITCHYARD_ZK=" + good}, []string{"--zk", "host"}, `--zk "host"`},
		{"unknown output", nil, []string{"--zk", good, "-o", "yaml"}, `-o "yaml": unknown output format`},
		{"zero timeout", nil, []string{"--zk", good, "--timeout", "0s"}, "want a positive duration"},
		{"extra argument", nil, []string{"--zk", good, "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"zk", "status"}, tt.args...)
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
		})
	}
	if n := accepted(); n != 0 {
		t.Errorf("bad input reached the network: %d connections", n)
	}
}

// TestStatusFromAnswers covers the answers a test cannot make a real
// server give on demand: refused mntr, an unexpected srvr answer, and
// losing the quorum between srvr and mntr.
func TestStatusFromAnswers(t *testing.T) {
	const srvrFollower = "Zookeeper version: 3.8.0-abc, built on 2024-12-29 17:54 UTC\n" +
		"Latency min/avg/max: 1/2.5/7\nReceived: 6\nSent: 5\nConnections: 3\n" +
		"Outstanding: 4\nZxid: 0x100000002\nMode: follower\nNode count: 5\n"
	const mntrFollower = "zk_version\t3.8.0-abc, built on 2024-12-29 17:54 UTC\n" +
		"zk_server_state\tfollower\nzk_znode_count\t6\nzk_watch_count\t8\nzk_ephemerals_count\t9\n"
	tests := []struct {
		name    string
		srvr    string
		srvrErr error
		mntr    string
		want    func(serverStatus) bool
	}{
		{
			name: "follower with mntr",
			srvr: srvrFollower, mntr: mntrFollower,
			want: func(s serverStatus) bool {
				return s.Mode == "follower" && s.Zxid == "0x100000002" && is(s.Connections, 3) &&
					is(s.Outstanding, 4) && is(s.LatencyMinMS, 1) && is(s.LatencyAvgMS, 2.5) &&
					is(s.LatencyMaxMS, 7) && is(s.ZnodeCount, 6) && is(s.WatchCount, 8) &&
					is(s.EphemeralsCount, 9) && s.Followers == nil && s.Error == ""
			},
		},
		{
			name: "mntr refused",
			srvr: srvrFollower, mntr: "mntr is not executed because it is not in the whitelist.\n",
			want: func(s serverStatus) bool {
				return s.Mode == "follower" && is(s.ZnodeCount, 5) && s.WatchCount == nil &&
					s.Version == "3.8.0-abc, built on 2024-12-29 17:54 UTC" && s.Error == ""
			},
		},
		{
			name: "leader before 3.6",
			srvr: strings.Replace(srvrFollower, "follower", "leader", 1),
			mntr: mntrFollower + "zk_followers\t4\nzk_synced_followers\t3\n",
			want: func(s serverStatus) bool {
				return s.Mode == "leader" && is(s.Followers, 4) && is(s.SyncedFollowers, 3)
			},
		},
		{
			name: "not serving",
			srvr: notServingAnswer + "\n", mntr: notServingAnswer + "\n",
			want: func(s serverStatus) bool {
				return s.Mode == modeNotServing && s.Error != "" && s.Zxid == "" && s.Connections == nil
			},
		},
		{
			name: "quorum lost between srvr and mntr",
			srvr: srvrFollower, mntr: notServingAnswer + "\n",
			want: func(s serverStatus) bool { return s.Mode == "follower" && s.WatchCount == nil && s.Error == "" },
		},
		{
			name:    "down",
			srvrErr: errors.New("connection refused"),
			want:    func(s serverStatus) bool { return s.Mode == modeDown && s.Error == "connection refused" },
		},
		{
			name: "srvr refused",
			srvr: "srvr is not executed because it is not in the whitelist.\n",
			want: func(s serverStatus) bool { return s.Mode == modeUnknown && strings.Contains(s.Error, "whitelist") },
		},
		{
			name: "empty srvr",
			want: func(s serverStatus) bool { return s.Mode == modeUnknown && strings.Contains(s.Error, "nothing") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := statusFromAnswers("127.0.0.1:2181", tt.srvr, tt.srvrErr, tt.mntr)
			if got.Address != "127.0.0.1:2181" || !tt.want(got) {
				b, _ := json.Marshal(got)
				t.Fatalf("got %s", b)
			}
		})
	}
}

// is reports whether p points to v.
func is[T comparable](p *T, v T) bool { return p != nil && *p == v }
