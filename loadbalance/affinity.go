// Package loadbalance holds what Switchyard's balancing policies share;
// each policy is a sub-package (weighted, p2c) that registers itself.
//
// Instance affinity: a call whose context names an instance id
// (WithInstance) is sent to that instance by every Switchyard policy, or
// fails with Unavailable if it is not connected and ready — never sent
// elsewhere. The lock service uses it to reach the replica that holds a
// lease. The id travels as a context value, not metadata: the choice is
// the caller's own balancer's, and reading a value on every pick costs
// no copy.
package loadbalance

import (
	"context"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type instanceKey struct{}

// WithInstance returns a context whose calls go to the instance id.
func WithInstance(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, instanceKey{}, id)
}

// AffinityOf returns the instance id a call's context names, if any.
func AffinityOf(ctx context.Context) (string, bool) {
	if ctx == nil {
		return "", false
	}
	id, ok := ctx.Value(instanceKey{}).(string)
	return id, ok
}

// PickAffine picks, for a call that names an instance, the ready SubConn
// of that instance (ids[i] is the instance id of subConns[i]); ok is false
// for a call that names none. A named instance that is not ready fails
// the call with Unavailable.
func PickAffine(info balancer.PickInfo, ids []string, subConns []balancer.SubConn) (res balancer.PickResult, ok bool, err error) {
	id, named := AffinityOf(info.Ctx)
	if !named {
		return balancer.PickResult{}, false, nil
	}
	for i, have := range ids {
		if have == id {
			return balancer.PickResult{SubConn: subConns[i]}, true, nil
		}
	}
	return balancer.PickResult{}, true, status.Errorf(codes.Unavailable, "instance %q is not available", id)
}
