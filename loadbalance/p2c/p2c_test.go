package p2c_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance/p2c"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// concurrentCalls runs callers goroutines calling for d and counts who
// served.
func concurrentCalls(t *testing.T, c echov1.EchoServiceClient, callers int, d time.Duration) map[string]int {
	t.Helper()
	var mu sync.Mutex
	out := map[string]int{}
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range callers {
		wg.Go(func() {
			for time.Now().Before(end) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := c.Echo(ctx, &echov1.EchoRequest{}, grpc.WaitForReady(true))
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				out[resp.GetServedBy()]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// TestSteersAwayFromSlowInstance makes one of three instances 20ms slow:
// under concurrent load round robin, measured in the same run, sends it
// its third; p2c must send it well under half of that. (It does not send
// it nothing: when the fast instances queue, latency × in-flight can make
// the slow one the better choice.)
func TestSteersAwayFromSlowInstance(t *testing.T) {
	reg := lbtest.Dial(t)
	svc := lbtest.Service(t)
	lbtest.Backend(t, reg, svc, "a", &echo.Server{ID: "a"}, 0, nil)
	lbtest.Backend(t, reg, svc, "b", &echo.Server{ID: "b"}, 0, nil)
	lbtest.Backend(t, reg, svc, "slow", &lbtest.Slow{Server: echo.Server{ID: "slow"}, Delay: 20 * time.Millisecond}, 0, nil)

	shares := map[string]float64{}
	for _, policy := range []string{"round_robin", p2c.Name} {
		c := lbtest.Client(t, svc, policy)
		lbtest.AwaitAll(t, c, "a", "b", "slow")
		got := concurrentCalls(t, c, 4, 2*time.Second)
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
