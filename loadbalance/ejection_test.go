package loadbalance_test

import (
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/loadbalance"
	"github.com/switchyard-dev/switchyard/loadbalance/p2c"
	"github.com/switchyard-dev/switchyard/loadbalance/weighted"
	"github.com/switchyard-dev/switchyard/rpc"
)

// TestEjection makes one of three instances fail every call (connected,
// but broken) under each Switchyard policy, calls without retries, and
// checks the breaker: exactly ConsecutiveFailures calls fail before the
// instance is ejected; when the ejection ends and it still fails, it is
// ejected again after as many; once it works again it serves again when
// its (longer) second ejection ends. Round robin, which has no ejection,
// is the control: it fails a third of the same calls in the same run.
func TestEjection(t *testing.T) {
	const (
		failures = 3
		calls    = 100
		// The first ejection must outlast the calls made while it lasts,
		// or their counts would mean nothing (took is checked below):
		// they take about half a second under -race, and a loaded 2-core
		// machine can take twice that and more.
		base = 5 * time.Second
	)
	for _, policy := range []string{weighted.Name, p2c.Name} {
		t.Run(policy, func(t *testing.T) {
			reg := lbtest.Dial(t)
			svc := lbtest.Service(t)
			// The good instances answer in 3ms and the broken one fails at
			// once: to p2c it looks the least loaded, the black hole that
			// ejection is for.
			lbtest.Backend(t, reg, svc, "good1", &lbtest.Slow{Server: echo.Server{ID: "good1"}, Delay: 3 * time.Millisecond}, 0, nil)
			lbtest.Backend(t, reg, svc, "good2", &lbtest.Slow{Server: echo.Server{ID: "good2"}, Delay: 3 * time.Millisecond}, 0, nil)
			bad := &lbtest.Faulty{Server: echo.Server{ID: "bad"}}
			lbtest.Backend(t, reg, svc, "bad", bad, 0, nil)

			control := lbtest.Client(t, svc, "round_robin")
			c := lbtest.Client(t, svc, policy, rpc.WithEjection(loadbalance.Ejection{
				ConsecutiveFailures: failures, BaseTime: loadbalance.Duration(base), MaxTime: loadbalance.Duration(10 * base),
			}))
			lbtest.AwaitAll(t, control, "good1", "good2", "bad")
			lbtest.AwaitAll(t, c, "good1", "good2", "bad")
			bad.Fail.Store(true)

			_, controlFailed := lbtest.Try(t, control, calls)
			if controlFailed <= 3*failures {
				t.Fatalf("without ejection only %d of %d calls failed: the control did not reach the broken instance", controlFailed, calls)
			}

			start := time.Now()
			served, failed := lbtest.Try(t, c, calls)
			took := time.Since(start)
			if took >= base {
				t.Fatalf("%d calls took %v, longer than the ejection: the counts below would mean nothing", calls, took)
			}
			if failed != failures || served["bad"] != 0 {
				t.Fatalf("first ejection: %d of %d calls failed (control: %d), served by %v; want exactly %d failures", failed, calls, controlFailed, served, failures)
			}
			t.Logf("%s: %d of %d calls (in %v) failed with ejection, %d under round robin", policy, failed, calls, took.Round(time.Millisecond), controlFailed)

			time.Sleep(base + 100*time.Millisecond) // the first ejection ends
			if _, failed = lbtest.Try(t, c, calls); failed != failures {
				t.Fatalf("still failing after the ejection: %d of %d calls failed, want %d before it is ejected again", failed, calls, failures)
			}

			bad.Fail.Store(false)
			deadline := time.Now().Add(2*base + 5*time.Second) // the second ejection lasts 2 × base
			for {
				served, failed := lbtest.Try(t, c, 30)
				if failed != 0 {
					t.Fatalf("after recovery: %d calls failed (served by %v)", failed, served)
				}
				if served["bad"] > 0 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("the recovered instance got no calls by the end of its ejection: %v", served)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestEjectionCap breaks two of three instances: with MaxPercent 50 only
// one of them may be out at a time, so the other keeps failing calls;
// with 100 both are ejected after ConsecutiveFailures failures each; with
// ejection off, both keep their share.
func TestEjectionCap(t *testing.T) {
	const failures, calls = 3, 100
	reg := lbtest.Dial(t)
	svc := lbtest.Service(t)
	lbtest.Backend(t, reg, svc, "good", &echo.Server{ID: "good"}, 0, nil)
	var bad []*lbtest.Faulty
	for _, id := range []string{"bad1", "bad2"} {
		b := &lbtest.Faulty{Server: echo.Server{ID: id}}
		bad = append(bad, b)
		lbtest.Backend(t, reg, svc, id, b, 0, nil)
	}
	setFail := func(v bool) {
		for _, b := range bad {
			b.Fail.Store(v)
		}
	}
	for _, tt := range []struct {
		name  string
		eject loadbalance.Ejection
		check func(failed int) bool
		want  string
	}{
		{"half", loadbalance.Ejection{ConsecutiveFailures: failures, MaxPercent: 50}, func(f int) bool { return f > 4*failures }, "many more than one instance's worth"},
		{"all", loadbalance.Ejection{ConsecutiveFailures: failures, MaxPercent: 100}, func(f int) bool { return f == 2*failures }, "exactly two instances' worth"},
		{"off", loadbalance.Ejection{Off: true}, func(f int) bool { return f >= 66 }, "two thirds (weights are equal)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.eject.BaseTime = loadbalance.Duration(time.Minute)
			c := lbtest.Client(t, svc, weighted.Name, rpc.WithEjection(tt.eject))
			lbtest.AwaitAll(t, c, "good", "bad1", "bad2")
			setFail(true)
			defer setFail(false)
			served, failed := lbtest.Try(t, c, calls)
			if !tt.check(failed) {
				t.Fatalf("%+v: %d of %d calls failed (served %v), want %s", tt.eject, failed, calls, served, tt.want)
			}
		})
	}
}
