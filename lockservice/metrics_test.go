package lockservice_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance"
	"github.com/switchyard-dev/switchyard/lockservice"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// TestMetrics takes and releases a lock three times and leaves a fourth
// lease to expire: the replica's metrics count 4 grants, 3 releases and 1
// expiry, time 4 waits, and end with no lease held and nobody waiting.
func TestMetrics(t *testing.T) {
	reg := lbtest.Dial(t)
	prom := prometheus.NewRegistry()
	r := locktest.StartReplica(t, reg, zktest.Shared(t).Addr(0), "metered", 2*time.Second, func(c *lockservice.Config) { c.Metrics = prom })
	c := admin(t, reg)
	ctx, cancel := context.WithTimeout(loadbalance.WithInstance(context.Background(), r.ID), 30*time.Second)
	defer cancel()
	for range 3 {
		resp, err := c.Acquire(ctx, &lockv1.AcquireRequest{Name: "test/metered", Wait: true})
		if err != nil {
			t.Fatal(err)
		}
		l := resp.GetLease()
		if _, err := c.Release(ctx, &lockv1.ReleaseRequest{Name: l.GetName(), LeaseId: l.GetLeaseId(), Token: l.GetToken()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Acquire(ctx, &lockv1.AcquireRequest{Name: "test/metered-expiring", Ttl: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if got := value(t, prom, "switchyard_lock_leases", ""); got != 1 {
		t.Fatalf("leases while one is held: %v", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		expired := value(t, prom, "switchyard_lock_ends_total", "expired")
		if expired == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no expiry counted: %v", expired)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, want := range map[string]float64{
		"switchyard_lock_grants_total": 4, "switchyard_lock_leases": 0, "switchyard_lock_waiting": 0,
	} {
		if got := value(t, prom, name, ""); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for reason, want := range map[string]float64{"released": 3, "expired": 1, "lost": 0} {
		if got := value(t, prom, "switchyard_lock_ends_total", reason); got != want {
			t.Errorf("ends{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if got := histogramCount(t, prom, "switchyard_lock_wait_seconds"); got != 4 {
		t.Errorf("waits timed: %d, want 4", got)
	}
	if problems, err := testutil.GatherAndLint(prom); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// A second replica given the same registerer is refused, saying why.
	_, err := lockservice.New(r.Conn, func() lockservice.Config {
		cfg := lockservice.DefaultConfig("metered-2")
		cfg.Metrics = prom
		return cfg
	}())
	var already prometheus.AlreadyRegisteredError
	if !errors.As(err, &already) {
		t.Fatalf("a second replica on one registerer: %v, want AlreadyRegisteredError", err)
	}
}

// value returns the value of metric name, for the series whose reason
// label is reason (any, if empty).
func value(t *testing.T, g prometheus.Gatherer, name, reason string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := reason == ""
			for _, lp := range m.GetLabel() {
				match = match || (lp.GetName() == "reason" && lp.GetValue() == reason)
			}
			if !match {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{reason=%q}", name, reason)
	return 0
}

func histogramCount(t *testing.T, g prometheus.Gatherer, name string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0
}
