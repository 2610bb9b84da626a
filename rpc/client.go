package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/switchyard-dev/switchyard/loadbalance/p2c"
	"github.com/switchyard-dev/switchyard/registry"
)

// ErrUnknownBalancer reports a balancer name no registered policy has.
var ErrUnknownBalancer = errors.New("rpc: unknown balancer")

// RetryPolicy retries idempotent methods that fail with a retryable code,
// as gRPC's service-config retry policy does (gRFC A6): at most
// MaxAttempts attempts in all, with jittered exponential backoff.
type RetryPolicy struct {
	// Methods are the idempotent methods to retry, as "service/method", or
	// "service/" for every method of a service.
	Methods []string
	// MaxAttempts counts the first attempt; gRPC caps it at 5.
	MaxAttempts int
	// InitialBackoff, MaxBackoff and Multiplier shape the backoff.
	InitialBackoff, MaxBackoff time.Duration
	Multiplier                 float64
	// Codes are the retryable status codes (default: Unavailable).
	Codes []codes.Code
}

// RetryBudget bounds retries to a share of traffic (gRPC's retry
// throttling, gRFC A6): every failed attempt takes a token, every success
// gives back Ratio, and retries stop while fewer than half of MaxTokens
// remain. With Ratio 0.1, retries stop once more than about one call in
// ten fails, so a dead backend does not bring a retry storm.
type RetryBudget struct {
	MaxTokens float64
	Ratio     float64
}

type clientOptions struct {
	balancer string
	lb       balancerOptions
	timeout  time.Duration
	retry    *RetryPolicy
	budget   RetryBudget
	log      *slog.Logger
	dialOpts []grpc.DialOption

	metrics    metricsChoice // WithClientMetrics
	tls        *tlsFiles     // WithClientTLS
	serverName string        // WithServerName
}

// ClientOption configures NewClient.
type ClientOption func(*clientOptions)

// WithBalancer picks the load-balancing policy by its registered name
// (default p2c.Name, "p2c_ewma"; Switchyard's "weighted"; gRPC's
// "round_robin", "pick_first", "least_request_experimental" and
// "ring_hash_experimental" — this package registers them all).
func WithBalancer(name string) ClientOption { return func(o *clientOptions) { o.balancer = name } }

// WithDefaultTimeout sets the deadline of calls that have none (default
// 10s; 0 leaves such calls without a deadline).
func WithDefaultTimeout(d time.Duration) ClientOption {
	return func(o *clientOptions) { o.timeout = d }
}

// WithRetry retries the policy's idempotent methods.
func WithRetry(p RetryPolicy) ClientOption { return func(o *clientOptions) { o.retry = &p } }

// WithRetryBudget replaces the default budget of 10 tokens and ratio 0.1.
func WithRetryBudget(b RetryBudget) ClientOption { return func(o *clientOptions) { o.budget = b } }

// WithClientLogger sets the logger for failed calls (default slog.Default()).
func WithClientLogger(l *slog.Logger) ClientOption { return func(o *clientOptions) { o.log = l } }

// WithDialOptions adds gRPC dial options, such as transport credentials
// (the default is an insecure loopback-style transport).
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(o *clientOptions) { o.dialOpts = append(o.dialOpts, opts...) }
}

// NewClient returns a connection to service through the registry: the
// target zk:///<service> is resolved by reg's resolver (service
// addressing), the chosen balancer picks an instance per call, and the
// connection carries calls over HTTP/2 (transport) for a generated client
// made from it (invocation through the proxy), whose methods return the
// result or a status error (result return). The connection dials lazily,
// on the first call.
func NewClient(reg *registry.Client, service string, opts ...ClientOption) (*grpc.ClientConn, error) {
	o := clientOptions{
		balancer: p2c.Name,
		timeout:  10 * time.Second,
		budget:   RetryBudget{MaxTokens: 10, Ratio: 0.1},
		log:      slog.Default(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := registry.ValidateName(service); err != nil {
		return nil, fmt.Errorf("rpc: service: %w", err)
	}
	sc, err := serviceConfig(o)
	if err != nil {
		return nil, err
	}
	dial, err := transportOptions(o)
	if err != nil {
		return nil, fmt.Errorf("rpc: client for %s: %w", service, err)
	}
	// Interceptors, outermost first: metrics, default timeout, logging.
	unary, stream, err := o.metrics.clientInterceptors()
	if err != nil {
		return nil, fmt.Errorf("rpc: client for %s: %w", service, err)
	}
	calls := newCallLog(o.log, logging.DefaultClientCodeToLevel, "client")
	unary = append(unary, defaultTimeout(o.timeout), calls.unaryClient())
	stream = append(stream, calls.streamClient())
	dial = append(dial,
		grpc.WithResolvers(reg.ResolverBuilder()),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithChainUnaryInterceptor(unary...),
		grpc.WithChainStreamInterceptor(stream...),
	)
	conn, err := grpc.NewClient(registry.Scheme+":///"+service, append(dial, o.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("rpc: client for %s: %w", service, err)
	}
	return conn, nil
}

// defaultTimeout gives calls without a deadline one of d.
func defaultTimeout(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok && d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
