package zklock_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/lockservice/zklock"
)

// BenchmarkUncontended times, in one run, a raw ZooKeeper create+delete
// of an ephemeral sequential node (the baseline) and an uncontended
// Acquire+Release of one lock on the same session, and reports both and
// their ratio.
func BenchmarkUncontended(b *testing.B) {
	h := newHarness(b)
	l, conn := h.locker()
	ctx := context.Background()
	g, err := l.Acquire(ctx, "bench", zklock.NewGUID(), nil, true) // makes the root and directory
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Release(ctx, g); err != nil {
		b.Fatal(err)
	}
	raw := h.root + "/raw"
	if _, err := conn.ZK().Create(raw, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil {
		b.Fatal(err)
	}
	var rawTime, lockTime time.Duration
	for b.Loop() {
		start := time.Now()
		p, err := conn.ZK().Create(raw+"/n-", nil, zk.FlagEphemeralSequential, zk.WorldACL(zk.PermAll))
		if err != nil {
			b.Fatal(err)
		}
		if err := conn.ZK().Delete(p, -1); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		g, err := l.Acquire(ctx, "bench", zklock.NewGUID(), nil, true)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx, g); err != nil {
			b.Fatal(err)
		}
		rawTime += mid.Sub(start)
		lockTime += time.Since(mid)
	}
	b.ReportMetric(float64(rawTime.Microseconds())/float64(b.N), "raw-µs/op")
	b.ReportMetric(float64(lockTime.Microseconds())/float64(b.N), "lock-µs/op")
	b.ReportMetric(float64(lockTime)/float64(rawTime), "lock/raw")
	b.ReportMetric(0, "ns/op")
}
