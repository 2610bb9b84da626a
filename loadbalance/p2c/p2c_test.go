package p2c_test

import (
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance/p2c"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// TestSteersAwayFromSlowInstance makes one of three instances 200ms slow:
// under concurrent load round robin, measured in the same run, sends it
// its third; p2c must send it well under half of that. (It does not send
// it nothing: when the fast instances queue, latency × in-flight can make
// the slow one the better choice.) The slow instance is far slower than
// any stall of a loaded machine: a stall during a fast instance's call
// raises its estimate at once and it decays only over Decay, so a slow
// instance within reach of a stall could look the faster one for the
// whole run.
func TestSteersAwayFromSlowInstance(t *testing.T) {
	reg := lbtest.Dial(t)
	svc := lbtest.Service(t)
	lbtest.Backend(t, reg, svc, "a", &echo.Server{ID: "a"}, 0, nil)
	lbtest.Backend(t, reg, svc, "b", &echo.Server{ID: "b"}, 0, nil)
	lbtest.Backend(t, reg, svc, "slow", &lbtest.Slow{Server: echo.Server{ID: "slow"}, Delay: 200 * time.Millisecond}, 0, nil)

	shares := map[string]float64{}
	for _, policy := range []string{"round_robin", p2c.Name} {
		c := lbtest.Client(t, svc, policy)
		lbtest.AwaitAll(t, c, "a", "b", "slow")
		got := lbtest.Concurrent(t, c, 4, 2*time.Second)
		total := got["a"] + got["b"] + got["slow"]
		shares[policy] = float64(got["slow"]) / float64(total)
		t.Logf("%s: %v (slow instance %.3f of %d calls)", policy, got, shares[policy], total)
	}
	if shares["round_robin"] < 0.25 {
		t.Fatalf("round robin sent the slow instance %.3f of calls: the control did not load it", shares["round_robin"])
	}
	if limit := 0.4 * shares["round_robin"]; shares[p2c.Name] > limit {
		t.Fatalf("p2c sent the slow instance %.3f of calls, want at most %.3f (0.4 × round robin's)", shares[p2c.Name], limit)
	}
}
