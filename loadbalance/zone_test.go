package loadbalance_test

import (
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/loadbalance"
	"github.com/switchyard-dev/switchyard/loadbalance/p2c"
	"github.com/switchyard-dev/switchyard/loadbalance/weighted"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/rpc"
)

// TestZonePreference runs a and b in zone z1 and c in z2. A caller in z2
// sends every call to c; when c fails and is ejected, its calls go to z1
// (after the failures that eject it, none fails); a caller in a zone with
// no instance spreads over all; and when c's server is gone, z2 callers
// reach z1.
func TestZonePreference(t *testing.T) {
	reg := lbtest.Dial(t)
	svc := lbtest.Service(t)
	lbtest.BackendOf(t, reg, &registryv1.Instance{Service: svc, Id: "a", Zone: "z1"}, &echo.Server{ID: "a"})
	lbtest.BackendOf(t, reg, &registryv1.Instance{Service: svc, Id: "b", Zone: "z1"}, &echo.Server{ID: "b"})
	c := &lbtest.Faulty{Server: echo.Server{ID: "c"}}
	_, stopC := lbtest.BackendOf(t, reg, &registryv1.Instance{Service: svc, Id: "c", Zone: "z2"}, c)
	const failures = 2
	ejection := rpc.WithEjection(loadbalance.Ejection{ConsecutiveFailures: failures, BaseTime: loadbalance.Duration(time.Minute)})

	for _, policy := range []string{weighted.Name, p2c.Name} {
		t.Run(policy, func(t *testing.T) {
			elsewhere := lbtest.Client(t, svc, policy, rpc.WithZone("z9"))
			lbtest.AwaitAll(t, elsewhere, "a", "b", "c")

			local := lbtest.Client(t, svc, policy, rpc.WithZone("z2"), ejection)
			lbtest.AwaitAll(t, local, "c")
			if got := lbtest.Calls(t, local, 60); got["c"] != 60 {
				t.Fatalf("a caller in z2 was served by %v, want c only", got)
			}

			c.Fail.Store(true)
			served, failed := lbtest.Try(t, local, 60)
			c.Fail.Store(false)
			if failed != failures || served["c"] != 0 || served["a"]+served["b"] != 60-failures {
				t.Fatalf("with c failing: %d failed, served by %v; want %d failures, then the rest served in z1", failed, served, failures)
			}
			if served["a"] == 0 || served["b"] == 0 {
				t.Fatalf("with c ejected, z1 was not shared: %v", served)
			}
		})
	}

	t.Run("instance gone", func(t *testing.T) {
		local := lbtest.Client(t, svc, p2c.Name, rpc.WithZone("z2"))
		lbtest.AwaitAll(t, local, "c")
		stopC()
		deadline := time.Now().Add(10 * time.Second)
		for {
			served, failed := lbtest.Try(t, local, 20)
			if failed == 0 && served["a"]+served["b"] == 20 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("with c stopped, a z2 caller still got %d failures and %v", failed, served)
			}
		}
	})
}
