package echo_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zktest"
)

// TestServerAndClient builds both examples, runs two servers and the
// client against a real ZooKeeper, and checks that calls reach both
// servers and that a server stops cleanly on SIGTERM.
func TestServerAndClient(t *testing.T) {
	zk := zktest.Start(t)
	bin := t.TempDir()
	for _, cmd := range []string{"server", "client"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, cmd), "./"+cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	env := append(os.Environ(), "SWITCHYARD_ZK="+zk.ConnectString())
	var servers []*exec.Cmd
	for _, id := range []string{"a", "b"} {
		srv := exec.Command(filepath.Join(bin, "server"), "-id", id)
		srv.Env = env
		stderr, err := srv.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "serving on") {
					close(ready)
					for sc.Scan() {
					}
					return
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			t.Fatalf("server %s not serving after 30s", id)
		}
		servers = append(servers, srv)
	}

	// A client sends its calls as soon as one server is connected, so
	// one run may see only that server: run it again until the runs
	// together show both.
	var out bytes.Buffer
	deadline := time.Now().Add(30 * time.Second)
	for runs := 1; ; runs++ {
		client := exec.Command(filepath.Join(bin, "client"), "-n", "10")
		client.Env = env
		var run bytes.Buffer
		client.Stdout, client.Stderr = &run, &run
		err := client.Run()
		out.Write(run.Bytes())
		if err != nil {
			t.Fatalf("client run %d: %v\n%s", runs, err, &run)
		}
		if strings.Contains(out.String(), "served by a") && strings.Contains(out.String(), "served by b") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client output of %d runs in 30s does not show both servers:\n%s", runs, &out)
		}
	}

	if err := servers[0].Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- servers[0].Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server a after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server a still running 30s after SIGTERM")
	}
}
