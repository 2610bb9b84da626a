package rpc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	"github.com/switchyard-dev/switchyard/rpc"
)

// TestRingHashKeepsKeyOnOneInstance sends calls keyed by a request header
// through gRPC's ring_hash: every call of a key reaches one instance, and
// the keys spread over all three.
func TestRingHashKeepsKeyOnOneInstance(t *testing.T) {
	reg := lbtest.Dial(t)
	svc := serviceName(t)
	for _, id := range []string{"a", "b", "c"} {
		lbtest.Backend(t, reg, svc, id, &echo.Server{ID: id}, 0, nil)
	}
	c := lbtest.Client(t, svc, "ring_hash_experimental", rpc.WithBalancerConfig(`{"requestHashHeader":"x-user"}`))
	owners := map[string]int{}
	for k := range 30 {
		key := fmt.Sprintf("user-%d", k)
		got := map[string]int{}
		for range 10 {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-user", key), 5*time.Second)
			resp, err := c.Echo(ctx, &echov1.EchoRequest{}, grpc.WaitForReady(true))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			got[resp.GetServedBy()]++
		}
		if len(got) != 1 {
			t.Fatalf("calls keyed %s went to %v, want one instance", key, got)
		}
		for id := range got {
			owners[id]++
		}
	}
	if len(owners) != 3 {
		t.Fatalf("30 keys landed on %v, want all three instances", owners)
	}
	t.Logf("keys per instance: %v", owners)
}

// TestLeastRequestAvoidsSlowInstance makes one of three instances 200ms
// slow: under concurrent load gRPC's least_request sends it less than
// round robin does in the same run, since its calls stay in flight
// longer. A stall of a loaded machine holds the fast instances' calls in
// flight too, so the slow instance is made far slower than any stall.
// Every caller's calls are counted: a caller waits out each slow call,
// so one caller alone would make too few for the shares.
func TestLeastRequestAvoidsSlowInstance(t *testing.T) {
	reg := lbtest.Dial(t)
	svc := serviceName(t)
	lbtest.Backend(t, reg, svc, "a", &echo.Server{ID: "a"}, 0, nil)
	lbtest.Backend(t, reg, svc, "b", &echo.Server{ID: "b"}, 0, nil)
	lbtest.Backend(t, reg, svc, "slow", &lbtest.Slow{Server: echo.Server{ID: "slow"}, Delay: 200 * time.Millisecond}, 0, nil)
	shares := map[string]float64{}
	for _, policy := range []string{"round_robin", "least_request_experimental"} {
		c := lbtest.Client(t, svc, policy)
		lbtest.AwaitAll(t, c, "a", "b", "slow")
		counts := lbtest.Concurrent(t, c, 7, 2*time.Second)
		if t.Failed() {
			t.FailNow()
		}
		total := counts["a"] + counts["b"] + counts["slow"]
		shares[policy] = float64(counts["slow"]) / float64(total)
		t.Logf("%s: %v (slow instance %.3f of %d calls)", policy, counts, shares[policy], total)
	}
	if shares["round_robin"] < 0.25 {
		t.Fatalf("round robin sent the slow instance %.3f: the control did not load it", shares["round_robin"])
	}
	if limit := 0.6 * shares["round_robin"]; shares["least_request_experimental"] > limit {
		t.Fatalf("least_request sent the slow instance %.3f, want at most %.3f (0.6 × round robin's)", shares["least_request_experimental"], limit)
	}
}

// TestCallToServiceWithNoInstances: a client of a service no instance has
// registered is made (it dials lazily), and its calls fail at once with
// Unavailable saying the service has no instances, rather than hanging
// until their deadline.
func TestCallToServiceWithNoInstances(t *testing.T) {
	c := newClient(t, serviceName(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Echo(ctx, &echov1.EchoRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), serviceName(t)) {
		t.Fatalf("call to a service with no instances: %v, want Unavailable naming the service", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("the call failed only after %v, at its deadline", took)
	}
	t.Logf("error: %v", err)
}
