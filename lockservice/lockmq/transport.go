package lockmq

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// Transport returns lockclient's Transport over NATS: acquires go to any
// replica (AcquireSubject), renewals and releases to the replica that
// holds the lease (ReplicaSubject), the NATS form of the gRPC transport's
// instance affinity. A replica that is gone answers nothing, and the
// call is UNAVAILABLE at once (NATS's no-responders), so a holder's
// watchdog retries until its lease's validity runs out and then reports
// the lock lost — as over gRPC.
//
// Each call carries its context's deadline (Switchyard-Deadline), so that
// a replica stops waiting for the lock when the caller does; give a
// blocking Lock a context with a deadline, or a request left waiting at
// the replica may be granted after the caller has gone, and then holds
// the lock until its lease runs out.
func Transport(nc *nats.Conn, opts ...TransportOption) lockclient.Transport {
	t := natsTransport{nc: nc}
	for _, o := range opts {
		o(&t)
	}
	return t
}

// TransportOption configures Transport.
type TransportOption func(*natsTransport)

// WithCallOptions adds mq call options (WithJSON, say) to every call.
func WithCallOptions(opts ...mq.CallOption) TransportOption {
	return func(t *natsTransport) { t.call = append(t.call, opts...) }
}

type natsTransport struct {
	nc   *nats.Conn
	call []mq.CallOption
}

var _ lockclient.Transport = natsTransport{}

func (t natsTransport) opts(rid string) []mq.CallOption {
	if rid == "" {
		return t.call
	}
	return append([]mq.CallOption{mq.WithRequestID(rid)}, t.call...)
}

// Acquire sends req to any replica; if the request id's node lives on
// another replica (a retry that went elsewhere), it follows there once.
func (t natsTransport) Acquire(ctx context.Context, req *lockv1.AcquireRequest) (*lockv1.Lease, error) {
	resp := &lockv1.AcquireResponse{}
	err := mq.Request(ctx, t.nc, AcquireSubject, req, resp, t.opts(req.GetRequestId())...)
	if replica, ok := lockclient.OtherReplica(err); ok {
		resp.Reset()
		err = mq.Request(ctx, t.nc, ReplicaSubject(replica, OpAcquire), req, resp, t.opts(req.GetRequestId())...)
	}
	if err != nil && ctx.Err() != nil && req.GetRequestId() != "" {
		t.cancel(req.GetRequestId())
	}
	if err != nil {
		return nil, err
	}
	return resp.GetLease(), nil
}

// cancel tells the replicas that the acquire of request id rid was given
// up, so that the one where it waits ends the wait (CancelSubject). It is
// best effort: a replica that misses it ends the wait at the request's
// deadline.
func (t natsTransport) cancel(rid string) {
	m := nats.NewMsg(CancelSubject)
	m.Header.Set(mq.HeaderRequestID, rid)
	_ = t.nc.PublishMsg(m)
}

func (t natsTransport) KeepAlive(ctx context.Context, lease *lockv1.Lease) (time.Duration, error) {
	resp := &lockv1.KeepAliveResponse{}
	err := mq.Request(ctx, t.nc, ReplicaSubject(lease.GetReplica(), OpKeepAlive), &lockv1.KeepAliveRequest{
		Name: lease.GetName(), LeaseId: lease.GetLeaseId(), Token: lease.GetToken(),
	}, resp, t.call...)
	if err != nil {
		return 0, err
	}
	return resp.GetTtl().AsDuration(), nil
}

func (t natsTransport) Release(ctx context.Context, lease *lockv1.Lease) error {
	return mq.Request(ctx, t.nc, ReplicaSubject(lease.GetReplica(), OpRelease), &lockv1.ReleaseRequest{
		Name: lease.GetName(), LeaseId: lease.GetLeaseId(), Token: lease.GetToken(),
	}, &lockv1.ReleaseResponse{}, t.call...)
}

// Describe asks any replica to describe a lock.
func Describe(ctx context.Context, nc *nats.Conn, name string) (*lockv1.DescribeResponse, error) {
	resp := &lockv1.DescribeResponse{}
	if err := mq.Request(ctx, nc, DescribeSubject, &lockv1.DescribeRequest{Name: name}, resp); err != nil {
		return nil, err
	}
	return resp, nil
}
