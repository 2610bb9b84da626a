package lockservice_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/loadbalance"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// admin returns a raw gRPC client of the lock service through reg.
func admin(t *testing.T, reg *registry.Client) lockv1.LockServiceClient {
	t.Helper()
	conn, err := rpc.NewClient(reg, locktest.Service, rpc.WithClientMetrics(nil), rpc.WithClientLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return lockv1.NewLockServiceClient(conn)
}

func harness(t *testing.T, reg *registry.Client) locktest.Harness {
	a := admin(t, reg)
	return locktest.Harness{
		Transport: func(tb testing.TB) lockclient.Transport { return locktest.Transport(tb, reg) },
		Describe: func(ctx context.Context, name string) (*lockv1.DescribeResponse, error) {
			return a.Describe(ctx, &lockv1.DescribeRequest{Name: name})
		},
	}
}

// TestConformanceGRPC runs the lock service's conformance suite over gRPC
// against two replicas behind the registry: calls spread over both, so a
// retried or late duplicate acquire may reach either one.
func TestConformanceGRPC(t *testing.T) {
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	locktest.StartReplica(t, reg, zkAddr, "lock-one", 4*time.Second)
	locktest.StartReplica(t, reg, zkAddr, "lock-two", 4*time.Second)
	locktest.Run(t, harness(t, reg))
}

// TestReplicas runs two replicas: clients spread over both keep mutual
// exclusion (fenced, linearizable), an acquire retried at the other
// replica is sent back to the one that holds its node, and a late
// duplicate of a released acquire is refused by the replica that did not
// grant it — one grant, never two.
func TestReplicas(t *testing.T) {
	reg := lbtest.Dial(t)
	zkAddr := zktest.Shared(t).Addr(0)
	locktest.StartReplica(t, reg, zkAddr, "lock-a", 4*time.Second)
	locktest.StartReplica(t, reg, zkAddr, "lock-b", 4*time.Second)
	h := harness(t, reg)

	t.Run("MutualExclusion", func(t *testing.T) { locktest.MutualExclusion(t, h) })

	t.Run("RetryElsewhere", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := admin(t, reg)
		req := &lockv1.AcquireRequest{Name: "test/retry-elsewhere", Wait: true, RequestId: fmt.Sprint("r-elsewhere-", time.Now().UnixNano()), Ttl: durationpb.New(5 * time.Second)}
		first, err := c.Acquire(loadbalance.WithInstance(ctx, "lock-a"), req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Acquire(loadbalance.WithInstance(ctx, "lock-b"), req)
		if r, ok := lockclient.OtherReplica(err); status.Code(err) != codes.FailedPrecondition || !ok || r != "lock-a" {
			t.Fatalf("the retry at lock-b: %v, want FailedPrecondition naming lock-a", err)
		}
		again, err := locktest.Transport(t, reg).Acquire(ctx, req) // follows the redirect
		if err != nil || again.GetLeaseId() != first.GetLease().GetLeaseId() {
			t.Fatalf("a retry through the client transport: %v (%v), want lease %s", again, err, first.GetLease().GetLeaseId())
		}
		d, err := h.Describe(ctx, req.GetName())
		if err != nil || len(d.GetWaiters()) != 0 || d.GetHolder().GetToken() != first.GetLease().GetToken() {
			t.Fatalf("after the retries: %v (%v), want one contender, the first grant", d, err)
		}
		if _, err := c.Release(loadbalance.WithInstance(ctx, "lock-b"), &lockv1.ReleaseRequest{Name: req.GetName(), LeaseId: first.GetLease().GetLeaseId(), Token: first.GetLease().GetToken()}); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("release at the wrong replica: %v, want FailedPrecondition naming lock-a", err)
		}
		if err := locktest.Transport(t, reg).Release(ctx, first.GetLease()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("LateDuplicateElsewhere", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := admin(t, reg)
		tests := []struct {
			name string
			end  func(t *testing.T, l *lockv1.Lease)
		}{
			{"released", func(t *testing.T, l *lockv1.Lease) {
				if _, err := c.Release(loadbalance.WithInstance(ctx, "lock-a"), &lockv1.ReleaseRequest{Name: l.GetName(), LeaseId: l.GetLeaseId(), Token: l.GetToken()}); err != nil {
					t.Fatal(err)
				}
			}},
			{"expired", func(t *testing.T, l *lockv1.Lease) {
				for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
					_, err := c.Describe(ctx, &lockv1.DescribeRequest{Name: l.GetName()})
					if status.Code(err) == codes.NotFound {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("the lease did not expire: %v", err)
					}
				}
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req := &lockv1.AcquireRequest{Name: "test/late-" + tt.name, Wait: true, RequestId: "late-" + tt.name + "-" + fmt.Sprint(time.Now().UnixNano()), Ttl: durationpb.New(time.Second)}
				first, err := c.Acquire(loadbalance.WithInstance(ctx, "lock-a"), req)
				if err != nil {
					t.Fatal(err)
				}
				tt.end(t, first.GetLease())
				_, err = c.Acquire(loadbalance.WithInstance(ctx, "lock-b"), req)
				if status.Code(err) != codes.FailedPrecondition {
					t.Fatalf("the late duplicate at lock-b: %v, want FailedPrecondition", err)
				}
				if d, err := c.Describe(ctx, &lockv1.DescribeRequest{Name: req.GetName()}); status.Code(err) != codes.NotFound {
					t.Fatalf("after the late duplicate: %v (%v), want no contender", d, err)
				}
			})
		}
	})
}
