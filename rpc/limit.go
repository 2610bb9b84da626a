package rpc

import (
	"context"
	"strings"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// limiter admits calls under a rate (token bucket) and a cap on calls in
// flight; a call over either is rejected at once with ResourceExhausted, so
// a caller with retries and a budget can go elsewhere rather than queue.
type limiter struct {
	rate  *rate.Limiter // nil: no rate limit
	slots chan struct{} // nil: no concurrency cap
}

func newLimiter(r rate.Limit, burst, maxConcurrent int) *limiter {
	l := &limiter{}
	if r > 0 {
		l.rate = rate.NewLimiter(r, max(burst, 1))
	}
	if maxConcurrent > 0 {
		l.slots = make(chan struct{}, maxConcurrent)
	}
	return l
}

// admit reserves room for one call and returns its release.
func (l *limiter) admit() (release func(), err error) {
	if l.rate != nil && !l.rate.Allow() {
		return nil, status.Error(codes.ResourceExhausted, "rate limit exceeded")
	}
	if l.slots == nil {
		return func() {}, nil
	}
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	default:
		return nil, status.Errorf(codes.ResourceExhausted, "too many calls in flight (limit %d)", cap(l.slots))
	}
}

// exempt reports whether a method bypasses the limiter: health checks and
// reflection must answer however loaded the server is, or an overloaded
// server would look dead (and Serve's own readiness check would fail).
func exempt(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") || strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

func (l *limiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if exempt(info.FullMethod) {
		return handler(ctx, req)
	}
	release, err := l.admit()
	if err != nil {
		return nil, err
	}
	defer release()
	return handler(ctx, req)
}

func (l *limiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if exempt(info.FullMethod) {
		return handler(srv, ss)
	}
	release, err := l.admit()
	if err != nil {
		return err
	}
	defer release()
	return handler(srv, ss)
}
