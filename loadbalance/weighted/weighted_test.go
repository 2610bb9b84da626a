package weighted_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance/weighted"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// TestWeightsRespected: weights 1:2:5 give shares 1/8, 2/8, 5/8 within one
// percentage point over 1600 calls (smooth round robin is exact per
// cycle), and a weight changed in the registry is followed.
func TestWeightsRespected(t *testing.T) {
	reg := lbtest.Dial(t)
	svc := lbtest.Service(t)
	a, _ := lbtest.Backend(t, reg, svc, "a", &echo.Server{ID: "a"}, 1, nil)
	lbtest.Backend(t, reg, svc, "b", &echo.Server{ID: "b"}, 2, nil)
	lbtest.Backend(t, reg, svc, "c", &echo.Server{ID: "c"}, 5, nil)
	c := lbtest.Client(t, svc, weighted.Name)
	lbtest.AwaitAll(t, c, "a", "b", "c")
	lbtest.CheckShares(t, lbtest.Calls(t, c, 1600), map[string]float64{"a": 1.0 / 8, "b": 2.0 / 8, "c": 5.0 / 8}, 0.01)

	if err := a.Update(context.Background(), func(i *registryv1.Instance) { i.Weight = 9 }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := lbtest.Calls(t, c, 160)
		if float64(got["a"])/160 > 0.5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weight 9 for a not followed: %v", got)
		}
	}
	lbtest.CheckShares(t, lbtest.Calls(t, c, 1600), map[string]float64{"a": 9.0 / 16, "b": 2.0 / 16, "c": 5.0 / 16}, 0.01)
}

// TestSlowStart registers c with a 3s warm-up beside a and b of equal
// weight: just after registering it gets far less than its third, and
// after the warm-up its full third.
func TestSlowStart(t *testing.T) {
	reg := lbtest.Dial(t)
	svc := lbtest.Service(t)
	lbtest.Backend(t, reg, svc, "a", &echo.Server{ID: "a"}, 100, nil)
	lbtest.Backend(t, reg, svc, "b", &echo.Server{ID: "b"}, 100, nil)
	c := lbtest.Client(t, svc, weighted.Name)
	lbtest.AwaitAll(t, c, "a", "b")

	registered := time.Now()
	lbtest.Backend(t, reg, svc, "c", &echo.Server{ID: "c"}, 100, map[string]string{weighted.WarmupKey: "3s"})
	lbtest.AwaitAll(t, c, "a", "b", "c")
	const earlyCalls = 100 // few enough to end well within the 2s below on a loaded machine
	early := lbtest.Calls(t, c, earlyCalls)
	elapsed := time.Since(registered)
	earlyShare := float64(early["c"]) / earlyCalls
	// At most the share its ramp allows at the end of the window, plus slack.
	limit := (elapsed.Seconds()/3)/(2+elapsed.Seconds()/3) + 0.05
	if elapsed > 2*time.Second || earlyShare > limit {
		t.Fatalf("within %v of registering, c served %.3f of calls, want at most %.3f (calls %v)", elapsed, earlyShare, limit, early)
	}
	time.Sleep(time.Until(registered.Add(3200 * time.Millisecond)))
	lbtest.CheckShares(t, lbtest.Calls(t, c, 900), map[string]float64{"a": 1.0 / 3, "b": 1.0 / 3, "c": 1.0 / 3}, 0.02)
	t.Logf("c's share: %.3f in the first %v of its 3s warm-up, 1/3 after", earlyShare, elapsed.Round(time.Millisecond))
}
