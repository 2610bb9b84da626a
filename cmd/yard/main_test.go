package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchyard-dev/switchyard/internal/zkserver"
)

// TestMain lets the test binary stand in for the yard binary: run with
// YARD_TEST_AS_MAIN=1 it is yard, so tests drive the real command line,
// signals included, without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("YARD_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// yardCmd returns a yard process (not started) with its own TMPDIR.
func yardCmd(t *testing.T, tmp string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "YARD_TEST_AS_MAIN=1", "TMPDIR="+tmp)
	return cmd
}

func TestVersion(t *testing.T) {
	out, err := yardCmd(t, t.TempDir(), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("yard version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "yard ") {
		t.Fatalf("yard version printed %q", out)
	}
}

func TestUpBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"even ensemble", []string{"up", "--zk-ensemble", "2"}, "odd number"},
		{"zk given and started", []string{"up", "--zk", "127.0.0.1:1", "--zk-port", "2181"}, "both given"},
		{"unreachable zk", []string{"up", "--zk", "127.0.0.1:1"}, "no ZooKeeper session"},
		{"unknown flag", []string{"up", "--no-such-flag"}, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := yardCmd(t, t.TempDir(), tt.args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("yard %v: err %v, want exit status 1\n%s", tt.args, err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("yard %v printed %q, want it to say %q", tt.args, out, tt.want)
			}
		})
	}
}

// TestUpStopsEverything runs `yard up`, checks that ZooKeeper and NATS
// answer at the printed addresses, signals it, and then checks that no
// process it started is left and its temporary directory is empty.
func TestUpStopsEverything(t *testing.T) {
	tests := []struct {
		name string
		args []string
		sig  syscall.Signal
	}{
		{"standalone SIGTERM", []string{"up"}, syscall.SIGTERM},
		{"ensemble SIGINT", []string{"up", "--zk-ensemble", "3"}, syscall.SIGINT},
		// SIGKILL gives yard no chance to clean up: the kernel's
		// parent-death signal must still take the JVM down.
		{"standalone SIGKILL", []string{"up"}, syscall.SIGKILL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			cmd := yardCmd(t, tmp, tt.args...)
			up := startUp(t, cmd)
			env, pids := up.env, up.pids
			wantServers := 1
			if len(tt.args) > 1 {
				wantServers = 3
			}
			if len(pids) != wantServers {
				t.Fatalf("yard up reported ZooKeeper pids %v, want %d", pids, wantServers)
			}
			checkStackAnswers(t, env)

			if err := cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-up.exited:
				if tt.sig == syscall.SIGKILL {
					break
				}
				if err != nil {
					t.Fatalf("yard up exited with %v after %v\n%s", err, tt.sig, up.stderr.String())
				}
			case <-time.After(time.Minute):
				t.Fatalf("yard up still running a minute after %v", tt.sig)
			}
			// A killed parent's children get their signal asynchronously:
			// allow them a bounded moment to go.
			var left []string
			for range 100 {
				if left = processesMentioning(t, tmp); len(left) == 0 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if len(left) > 0 {
				t.Errorf("processes left behind: %v", left)
			}
			for _, pid := range pids {
				if alive(pid) {
					t.Errorf("ZooKeeper pid %d still runs after yard up stopped", pid)
				}
			}
			if tt.sig == syscall.SIGKILL {
				return // nothing could remove the state directory
			}
			entries, err := os.ReadDir(tmp)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				t.Errorf("left behind in TMPDIR: %s", filepath.Join(tmp, e.Name()))
			}
		})
	}
}

// runningUp is a started `yard up` process that has printed its addresses.
type runningUp struct {
	env    map[string]string // the export lines: SWITCHYARD_ZK, SWITCHYARD_NATS
	pids   []int             // ZooKeeper server pids
	stderr *bytes.Buffer
	exited <-chan error // receives cmd.Wait's result
}

// startUp starts cmd (a `yard up` made by yardCmd) and reads its output
// until it is ready. The process is killed when t ends, if still running.
func startUp(t *testing.T, cmd *exec.Cmd) *runningUp {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	up := &runningUp{env: map[string]string{}, stderr: &bytes.Buffer{}}
	cmd.Stderr = up.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	up.exited = exited
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	timeout := time.After(2 * time.Minute)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("yard up ended before it was ready: %v\n%s", <-exited, up.stderr.String())
			}
			if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && strings.HasPrefix(line, "export ") {
				up.env[k] = v
			}
			if _, after, ok := strings.Cut(line, "pid "); ok {
				for p := range strings.SplitSeq(strings.TrimSuffix(after, ")"), ",") {
					pid, err := strconv.Atoi(p)
					if err != nil {
						t.Fatalf("pid line %q: %v", line, err)
					}
					up.pids = append(up.pids, pid)
				}
			}
			if strings.HasPrefix(line, "Ctrl-C") {
				go func() { // keep the pipe drained until yard exits
					for range lines {
					}
				}()
				return up
			}
		case <-timeout:
			t.Fatalf("yard up not ready after 2 minutes\n%s", up.stderr.String())
		}
	}
}

// checkStackAnswers checks that the printed addresses serve.
func checkStackAnswers(t *testing.T, env map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	zkAddrs := strings.Split(env["SWITCHYARD_ZK"], ",")
	for _, addr := range zkAddrs {
		if ok, err := zkserver.FourLetter(ctx, addr, "ruok"); err != nil || ok != "imok" {
			t.Fatalf("ZooKeeper %s: ruok = %q, %v", addr, ok, err)
		}
	}
	nc, err := nats.Connect(env["SWITCHYARD_NATS"])
	if err != nil {
		t.Fatalf("NATS %s: %v", env["SWITCHYARD_NATS"], err)
	}
	defer nc.Close()
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// alive reports whether pid is a live process. A zombie is dead: an orphan
// that its reaper (init, outside the test's control) has not yet collected.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// processesMentioning lists the live processes whose command line contains
// s: every ZooKeeper server yard starts names its config under TMPDIR.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, s) && !strings.Contains(cmdline, "-test.") {
			out = append(out, filepath.Base(filepath.Dir(p))+": "+cmdline)
		}
	}
	return out
}
