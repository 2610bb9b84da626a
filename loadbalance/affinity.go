package loadbalance

import "context"

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
