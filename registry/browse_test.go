package registry_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/registry"
)

func TestBrowse(t *testing.T) {
	srv := zktest.Shared(t)
	c := dial(t, srv.ConnectString())
	svc := service(t)
	for _, id := range []string{"b", "a"} {
		register(t, c, instance(svc, id, "127.0.0.1:7001"))
	}

	services, err := c.Services()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(services, func(s registry.ServiceSummary) bool { return s.Name == svc })
	if i < 0 || services[i].Instances != 2 {
		t.Fatalf("Services() = %v, want %s with 2 instances", services, svc)
	}
	if !slices.IsSortedFunc(services, func(a, b registry.ServiceSummary) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	}) {
		t.Fatalf("Services() not sorted: %v", services)
	}

	insts, problems, err := c.Instances(svc)
	if err != nil || len(problems) != 0 {
		t.Fatalf("Instances: %v %v", err, problems)
	}
	if len(insts) != 2 || insts[0].GetId() != "a" || insts[1].GetId() != "b" {
		t.Fatalf("Instances() = %v", insts)
	}
	if _, _, err := c.Instances("no.such.service"); !errors.Is(err, registry.ErrNoService) {
		t.Fatalf("Instances of an unknown service: %v, want ErrNoService", err)
	}
	if _, _, err := c.Instances("a/b"); !errors.Is(err, registry.ErrInvalidName) {
		t.Fatalf("Instances(a/b): %v, want ErrInvalidName", err)
	}

	nodes, err := c.Tree(registry.Root+"/"+svc, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, n := range nodes {
		types = append(types, n.Path[len(registry.Root)+1:]+"="+n.Type)
	}
	want := []string{svc + "=persistent", svc + "/instances=persistent", svc + "/instances/a=ephemeral", svc + "/instances/b=ephemeral"}
	if !slices.Equal(types, want) {
		t.Fatalf("Tree = %v, want %v", types, want)
	}
	if nodes[2].DataBytes == 0 || nodes[2].EphemeralOwner == "" {
		t.Fatalf("instance node %+v lacks data size or owner", nodes[2])
	}

	raw := zktest.Connect(t, srv.ConnectString())
	root := zktest.Root(t, raw)
	if _, err := raw.Create(root+"/lock-", nil, zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	nodes, err = c.Tree(root, 0)
	if err != nil || len(nodes) != 2 || nodes[1].Type != "ephemeral_sequential" {
		t.Fatalf("Tree(%s) = %+v, %v; want an ephemeral_sequential child", root, nodes, err)
	}
	if _, err := c.Tree("/no/such/path", 0); !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("Tree of a missing path: %v", err)
	}
	if _, err := c.Tree("relative", 0); !errors.Is(err, registry.ErrInvalidName) {
		t.Fatalf("Tree of a relative path: %v", err)
	}
}
