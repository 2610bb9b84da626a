package loadbalance_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance"
	"github.com/switchyard-dev/switchyard/loadbalance/p2c"
	"github.com/switchyard-dev/switchyard/loadbalance/weighted"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// TestAffinity checks each Switchyard policy: calls that name an instance
// all go to it, a call naming an instance that is not there fails with
// Unavailable, and calls naming none are not pinned to one instance
// (p2c need not spread sequential calls evenly). Round robin, which knows
// nothing of affinity, is the control: named calls are spread there.
func TestAffinity(t *testing.T) {
	reg := lbtest.Dial(t)
	svc := lbtest.Service(t)
	for _, id := range []string{"a", "b", "c"} {
		lbtest.Backend(t, reg, svc, id, &echo.Server{ID: id}, 0, nil)
	}
	for _, policy := range []string{weighted.Name, p2c.Name, "round_robin"} {
		t.Run(policy, func(t *testing.T) {
			c := lbtest.Client(t, svc, policy)
			lbtest.AwaitAll(t, c, "a", "b", "c")
			served := map[string]int{}
			for range 60 {
				ctx, cancel := context.WithTimeout(loadbalance.WithInstance(context.Background(), "b"), 5*time.Second)
				resp, err := c.Echo(ctx, &echov1.EchoRequest{})
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				served[resp.GetServedBy()]++
			}
			if policy == "round_robin" {
				if served["b"] == 60 {
					t.Fatalf("the control sent every named call to b: %v", served)
				}
				return
			}
			if served["b"] != 60 {
				t.Fatalf("calls naming b were served by %v", served)
			}
			ctx, cancel := context.WithTimeout(loadbalance.WithInstance(context.Background(), "nope"), 5*time.Second)
			defer cancel()
			if _, err := c.Echo(ctx, &echov1.EchoRequest{}); status.Code(err) != codes.Unavailable {
				t.Fatalf("call naming an absent instance: %v, want Unavailable", err)
			}
			if got := lbtest.Calls(t, c, 60); len(got) < 2 {
				t.Fatalf("calls naming no instance all went to one: %v", got)
			}
		})
	}
}
