package registry_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zkserver"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/registry"
)

// BenchmarkConvergence measures how long a change takes to reach a
// watcher on another session: the registry (Register or Deregister until
// Watcher.Next shows it) against a baseline of raw ZooKeeper (create or
// delete of an ephemeral child until a children watch fires) in the same
// run, at least 200 changes each. It also reports how many ZooKeeper
// watches a watching client holds for a service of 100 instances.
//
//	go test -run '^$' -bench Convergence -benchtime 400x ./registry
func BenchmarkConvergence(b *testing.B) {
	srv := zktest.Shared(b)
	n := max(b.N, 200)

	raw := rawConvergence(b, srv.ConnectString(), n)
	ours := registryConvergence(b, srv.ConnectString(), n)

	b.ReportMetric(pct(raw, 50), "raw_p50_us")
	b.ReportMetric(pct(raw, 99), "raw_p99_us")
	b.ReportMetric(pct(ours, 50), "p50_us")
	b.ReportMetric(pct(ours, 99), "p99_us")
	b.ReportMetric(pct(ours, 99)/pct(raw, 99), "p99_vs_raw")
	b.ReportMetric(float64(watchedPathsFor100(b, srv)), "watched_paths/service")
	b.ReportMetric(0, "ns/op")
}

func pct(d []time.Duration, p int) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[(len(s)-1)*p/100].Microseconds())
}

// rawConvergence times n creates/deletes of an ephemeral node until a
// children watch on its parent, held by another session, fires.
func rawConvergence(b *testing.B, connect string, n int) []time.Duration {
	writer, reader := zktest.Connect(b, connect), zktest.Connect(b, connect)
	root := zktest.Root(b, writer)
	out := make([]time.Duration, 0, n)
	for i := range n {
		_, _, ch, err := reader.ChildrenW(root)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if i%2 == 0 {
			_, err = writer.Create(root+"/x", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		} else {
			err = writer.Delete(root+"/x", -1)
		}
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			b.Fatal("raw watch did not fire within 10s")
		}
		out = append(out, time.Since(start))
	}
	return out
}

// registryConvergence times n Register/Deregister calls until a Watcher on
// another Client shows the change.
func registryConvergence(b *testing.B, connect string, n int) []time.Duration {
	svc := fmt.Sprintf("bench.convergence.%d", time.Now().UnixNano())
	server, client := dial(b, connect), dial(b, connect)
	w := watch(b, client, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := w.Next(ctx); err != nil {
		b.Fatal(err)
	}
	out := make([]time.Duration, 0, n)
	var reg *registry.Registration
	for i := range n {
		start := time.Now()
		var err error
		if i%2 == 0 {
			reg, err = server.Register(ctx, instance(svc, "x", "127.0.0.1:7001"))
		} else {
			err = reg.Deregister(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
		want := 1 - i%2
		for {
			snap, err := w.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(snap.Instances) == want {
				break
			}
		}
		out = append(out, time.Since(start))
	}
	return out
}

// watchedPathsFor100 registers 100 instances and counts the paths a
// client watching the service holds ZooKeeper watches on ("wchc" lists
// each path once per session, whether its data, its children or both are
// watched; the one path here carries both).
func watchedPathsFor100(tb testing.TB, srv interface{ Addr(int) string }) int {
	tb.Helper()
	svc := fmt.Sprintf("test.watches.%d", time.Now().UnixNano())
	server, client := dial(tb, srv.Addr(0)), dial(tb, srv.Addr(0))
	for i := range 100 {
		register(tb, server, instance(svc, fmt.Sprintf("i%03d", i), fmt.Sprintf("127.0.0.1:%d", 10000+i)))
	}
	// Two watchers of one service on one client share its watch.
	for range 2 {
		w := watch(tb, client, svc)
		await(tb, w, "100 instances", func(s registry.Snapshot) bool { return len(s.Instances) == 100 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wchc, err := zkserver.FourLetter(ctx, srv.Addr(0), "wchc")
	if err != nil {
		tb.Fatal(err)
	}
	return len(watchesOf(wchc, client.SessionID()))
}
