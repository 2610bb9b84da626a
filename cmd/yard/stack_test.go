package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zkserver"
	"github.com/switchyard-dev/switchyard/internal/zktest"
)

// TestCommandsAgainstYardUp runs `yard up` and then drives the operator
// commands against it the way a user would: with the SWITCHYARD_ZK it
// printed in the environment, not a --zk flag.
func TestCommandsAgainstYardUp(t *testing.T) {
	cmd := yardCmd(t, t.TempDir(), "up")
	up := startUp(t, cmd)
	connect := up.env["SWITCHYARD_ZK"]
	env := []string{"SWITCHYARD_ZK=" + connect}
	const svc = "switchyard.echo.v1.EchoService"
	twoInstances(t, registryClient(t, connect), svc)

	status := runYard(t, env, "zk", "status", "-o", "json")
	var rows []map[string]any
	if status.code != 0 || json.Unmarshal([]byte(status.stdout), &rows) != nil || len(rows) != 1 || rows[0]["mode"] != "standalone" {
		t.Fatalf("yard zk status: exit %d\n%s\n%s", status.code, status.stdout, status.stderr)
	}

	ls := runYard(t, env, "registry", "ls", "-o", "json")
	var services []struct {
		Service   string `json:"service"`
		Instances int    `json:"instances"`
	}
	if ls.code != 0 || json.Unmarshal([]byte(ls.stdout), &services) != nil || len(services) != 1 || services[0].Service != svc || services[0].Instances != 2 {
		t.Fatalf("yard registry ls: exit %d\n%s\n%s", ls.code, ls.stdout, ls.stderr)
	}

	show := runYard(t, env, "registry", "show", svc, "-o", "json")
	if show.code != 0 {
		t.Fatalf("yard registry show: exit %d\n%s", show.code, show.stderr)
	}
	var ids []string
	for _, inst := range decodeInstances(t, show) {
		ids = append(ids, inst.ID)
	}
	if !slices.Equal(ids, []string{"alpha", "bravo"}) {
		t.Fatalf("yard registry show: ids %v", ids)
	}

	tree := runYard(t, env, "registry", "tree", "-o", "json")
	var nodes []struct {
		Path string `json:"path"`
		Type string `json:"type"`
	}
	if tree.code != 0 || json.Unmarshal([]byte(tree.stdout), &nodes) != nil {
		t.Fatalf("yard registry tree: exit %d\n%s\n%s", tree.code, tree.stdout, tree.stderr)
	}
	ephemeral := 0
	for _, n := range nodes {
		if strings.HasPrefix(n.Path, "/switchyard/services/"+svc+"/instances/") && n.Type == "ephemeral" {
			ephemeral++
		}
	}
	if ephemeral != 2 {
		t.Fatalf("yard registry tree: %d ephemeral instance nodes, want 2: %+v", ephemeral, nodes)
	}

	watch := startYard(t, "registry", "watch", svc, "-o", "json", "--zk", connect)
	watch.readUntil(t, time.After(20*time.Second), "the first list", func(t *testing.T, lines []string) bool {
		return len(lines) > 0 && len(decodeEvent(t, lines[0]).Instances) == 2
	})
	watch.stop(t, syscall.SIGTERM)

	up.stop(t, cmd)
}

// TestUpWithGivenServers gives yard up a running ZooKeeper and NATS: it
// checks them, starts neither, prints their addresses, and leaves them
// running when it stops.
func TestUpWithGivenServers(t *testing.T) {
	zk := zktest.Start(t)
	nats := natstest.Start(t)
	tmp := t.TempDir()
	cmd := yardCmd(t, tmp, "up", "--zk", zk.ConnectString(), "--nats", nats.ClientURL())
	up := startUp(t, cmd)
	if up.env["SWITCHYARD_ZK"] != zk.ConnectString() || up.env["SWITCHYARD_NATS"] != nats.ClientURL() {
		t.Fatalf("yard up printed %v, want the given servers", up.env)
	}
	if len(up.pids) != 0 {
		t.Fatalf("yard up started ZooKeeper processes %v though one was given", up.pids)
	}
	up.stop(t, cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok, err := zkserver.FourLetter(ctx, zk.Addr(0), "ruok"); err != nil || ok != "imok" {
		t.Fatalf("the given ZooKeeper is gone after yard up stopped: %q %v", ok, err)
	}
	if !nats.Server().Running() {
		t.Fatal("the given NATS server was shut down by yard up")
	}
}

// stop sends SIGTERM to the yard up process cmd and waits for it to exit
// cleanly.
func (up *runningUp) stop(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-up.exited:
		if err != nil {
			t.Fatalf("yard up: %v\n%s", err, up.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatal("yard up still running a minute after SIGTERM")
	}
}
