// Package zktest gives tests a real ZooKeeper: a throwaway standalone
// server or ensemble started from the installed Debian package (through
// package zkserver), and connections to it that close with the test.
//
// A test that needs ZooKeeper and cannot start it fails with the reason; it
// never skips. When the package is missing, the helpers first try
// scripts/ensure-deps, which installs it.
//
// Java start-up costs about a second, so a package whose tests can share one
// server calls Main from TestMain and Shared from each test:
//
//	func TestMain(m *testing.M) { zktest.Main(m) }
//
//	func TestX(t *testing.T) {
//		zk := zktest.Shared(t)
//		conn := zktest.Connect(t, zk.ConnectString())
//		root := zktest.Root(t, conn) // a fresh path of this test's own
//		...
//	}
package zktest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zkserver"
)

// Start starts a standalone server for tb and stops it when tb ends.
func Start(tb testing.TB) *zkserver.Ensemble {
	tb.Helper()
	return StartConfig(tb, zkserver.Config{})
}

// StartEnsemble starts an ensemble of n servers for tb and stops it when
// tb ends.
func StartEnsemble(tb testing.TB, n int) *zkserver.Ensemble {
	tb.Helper()
	return StartConfig(tb, zkserver.Config{Servers: n})
}

// StartConfig starts the servers cfg describes, with their directory under
// tb's temporary directory unless cfg.Dir is set, and stops them when tb
// ends. It fails tb if they cannot start.
func StartConfig(tb testing.TB, cfg zkserver.Config) *zkserver.Ensemble {
	tb.Helper()
	if cfg.Dir == "" {
		cfg.Dir = tb.TempDir()
	}
	e, err := start(cfg)
	if err != nil {
		tb.Fatalf("zktest: cannot start ZooKeeper: %v", err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("zktest: stopping ZooKeeper: %v", err)
		}
	})
	return e
}

func start(cfg zkserver.Config) (*zkserver.Ensemble, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := zkserver.Start(ctx, cfg)
	if errors.Is(err, zkserver.ErrNotInstalled) {
		if ierr := ensureDeps(); ierr != nil {
			return nil, fmt.Errorf("%w; installing it failed: %w", err, ierr)
		}
		e, err = zkserver.Start(ctx, cfg)
	}
	return e, err
}

// ensureDeps runs the repository's scripts/ensure-deps, found by walking up
// from the working directory (a package's directory under go test), once
// per test binary.
var ensureDeps = sync.OnceValue(func() error {
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	for {
		script := filepath.Join(dir, "scripts", "ensure-deps")
		if _, err := os.Stat(script); err == nil {
			out, err := exec.Command(script).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %w\n%s", script, err, out)
			}
			return nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return errors.New("scripts/ensure-deps not found above the working directory")
		}
		dir = parent
	}
})

// shared is the server of a package whose TestMain calls Main.
var shared struct {
	mu      sync.Mutex
	inMain  bool
	ens     *zkserver.Ensemble
	dir     string
	err     error
	started bool
}

// Main runs the package's tests (m.Run) and then stops the server that
// Shared started, if any, and exits with the tests' status. Call it from
// TestMain.
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	if shared.ens != nil {
		if err := shared.ens.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "zktest: stopping shared ZooKeeper: %v\n", err)
			code = max(code, 1)
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// Shared returns the package's shared standalone server, starting it on
// first use. Tests that share it must not stop it and should work under
// their own path (see Root). It needs TestMain to call Main, which stops
// the server after the last test.
func Shared(tb testing.TB) *zkserver.Ensemble {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		tb.Fatal("zktest: Shared needs `func TestMain(m *testing.M) { zktest.Main(m) }` in the package")
	}
	if !shared.started {
		shared.started = true
		shared.dir, shared.err = os.MkdirTemp("", "zktest-shared-")
		if shared.err == nil {
			shared.ens, shared.err = start(zkserver.Config{Dir: shared.dir})
		}
	}
	if shared.err != nil {
		tb.Fatalf("zktest: cannot start shared ZooKeeper: %v", shared.err)
	}
	return shared.ens
}

// Connect opens a ZooKeeper session to connectString ("host:port,..."),
// waits until it is established, and closes it when tb ends. The session
// timeout defaults to 4s; the servers zkserver starts grant from 400ms.
func Connect(tb testing.TB, connectString string, opts ...ConnectOption) *zk.Conn {
	tb.Helper()
	o := connectOptions{timeout: 4 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	conn, events, err := zk.Connect(strings.Split(connectString, ","), o.timeout,
		zk.WithLogger(tbLogger{tb}), zk.WithLogInfo(false))
	if err != nil {
		tb.Fatalf("zktest: connect %s: %v", connectString, err)
	}
	tb.Cleanup(conn.Close)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				go drain(events)
				return conn
			}
		case <-deadline:
			tb.Fatalf("zktest: no session with %s after 30s (state %v)", connectString, conn.State())
		}
	}
}

// drain empties a session's event channel, which go-zookeeper closes when
// the connection closes, so the library never blocks on it.
func drain(events <-chan zk.Event) {
	for range events {
	}
}

// ConnectOption changes how Connect connects.
type ConnectOption func(*connectOptions)

type connectOptions struct{ timeout time.Duration }

// WithSessionTimeout asks for a session timeout other than 4s.
func WithSessionTimeout(d time.Duration) ConnectOption {
	return func(o *connectOptions) { o.timeout = d }
}

// tbLogger sends go-zookeeper's log lines to the test log, where they show
// only for failing or verbose tests. Lines logged after the test ended are
// dropped: testing panics on them.
type tbLogger struct{ tb testing.TB }

func (l tbLogger) Printf(format string, args ...any) {
	defer func() { _ = recover() }()
	l.tb.Logf("zk: "+format, args...)
}

// Root creates a fresh persistent path /zktest/<test name>-<n> for tb, so
// tests sharing a server do not see each other's nodes, and deletes it with
// everything below it when tb ends.
func Root(tb testing.TB, conn *zk.Conn) string {
	tb.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name())
	if _, err := conn.Create("/zktest", nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		tb.Fatalf("zktest: create /zktest: %v", err)
	}
	path, err := conn.Create("/zktest/"+name+"-", nil, zk.FlagSequence, zk.WorldACL(zk.PermAll))
	if err != nil {
		tb.Fatalf("zktest: create root for %s: %v", tb.Name(), err)
	}
	tb.Cleanup(func() {
		if err := DeleteAll(conn, path); err != nil {
			tb.Logf("zktest: cleaning %s: %v", path, err)
		}
	})
	return path
}

// DeleteAll deletes path and everything below it. A node that vanishes
// meanwhile is not an error.
func DeleteAll(conn *zk.Conn, path string) error {
	children, _, err := conn.Children(path)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, c := range children {
		if err := DeleteAll(conn, path+"/"+c); err != nil {
			return err
		}
	}
	if err := conn.Delete(path, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	return nil
}

// Logger returns a logger that writes to tb's log (shown for failing or
// verbose tests). Lines logged after tb ended are dropped.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }()
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
