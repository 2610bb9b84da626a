package lockclient

import (
	"context"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/loadbalance"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// GRPC returns the Transport over a connection to the lock service, such
// as rpc.NewClient(reg, lockv1.LockService_ServiceDesc.ServiceName)
// makes. Renewals and releases carry instance affinity
// (loadbalance.WithInstance) to the replica that holds the lease, so they
// need a Switchyard balancer (the rpc package's default).
func GRPC(conn grpc.ClientConnInterface) Transport {
	return grpcTransport{lockv1.NewLockServiceClient(conn)}
}

type grpcTransport struct{ c lockv1.LockServiceClient }

// Acquire sends req to any replica; if the request id's node lives on
// another replica (a retry that went elsewhere), it follows there once.
func (t grpcTransport) Acquire(ctx context.Context, req *lockv1.AcquireRequest) (*lockv1.Lease, error) {
	resp, err := t.c.Acquire(ctx, req)
	if replica, ok := OtherReplica(err); ok {
		resp, err = t.c.Acquire(loadbalance.WithInstance(ctx, replica), req)
	}
	if err != nil {
		return nil, err
	}
	return resp.GetLease(), nil
}

func (t grpcTransport) KeepAlive(ctx context.Context, lease *lockv1.Lease) (time.Duration, error) {
	resp, err := t.c.KeepAlive(loadbalance.WithInstance(ctx, lease.GetReplica()), &lockv1.KeepAliveRequest{
		Name: lease.GetName(), LeaseId: lease.GetLeaseId(), Token: lease.GetToken(),
	})
	if err != nil {
		return 0, err
	}
	return resp.GetTtl().AsDuration(), nil
}

func (t grpcTransport) Release(ctx context.Context, lease *lockv1.Lease) error {
	_, err := t.c.Release(loadbalance.WithInstance(ctx, lease.GetReplica()), &lockv1.ReleaseRequest{
		Name: lease.GetName(), LeaseId: lease.GetLeaseId(), Token: lease.GetToken(),
	})
	return err
}

// OtherReplicaReason is the ErrorInfo reason of a FAILED_PRECONDITION
// that names, in metadata "replica", the replica that holds the lease or
// the request's node: the call is to be sent there.
const OtherReplicaReason = "OTHER_REPLICA"

// ErrorDomain is the ErrorInfo domain of the lock service's errors.
const ErrorDomain = "lock.switchyard.dev"

// OtherReplica returns the replica an error names as the one to call
// instead, if it names one.
func OtherReplica(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == OtherReplicaReason && info.GetDomain() == ErrorDomain {
			r := info.GetMetadata()["replica"]
			return r, r != ""
		}
	}
	return "", false
}
