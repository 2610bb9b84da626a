package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

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
	timeout  time.Duration
	retry    *RetryPolicy
	budget   RetryBudget
	log      *slog.Logger
	dialOpts []grpc.DialOption
}

// ClientOption configures NewClient.
type ClientOption func(*clientOptions)

// WithBalancer picks the load-balancing policy by its registered name
// (default "round_robin"; gRPC's "pick_first", "least_request_experimental",
// "weighted_round_robin", or one of package loadbalance's).
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
		balancer: "round_robin",
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
	logger, logOpts := callLogging(o.log, logging.DefaultClientCodeToLevel)
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(reg.ResolverBuilder()),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithChainUnaryInterceptor(defaultTimeout(o.timeout), logging.UnaryClientInterceptor(logger, logOpts...)),
		grpc.WithChainStreamInterceptor(logging.StreamClientInterceptor(logger, logOpts...)),
	}
	conn, err := grpc.NewClient(registry.Scheme+":///"+service, append(dial, o.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("rpc: client for %s: %w", service, err)
	}
	return conn, nil
}

// serviceConfig renders the client's gRPC service config.
func serviceConfig(o clientOptions) (string, error) {
	if balancer.Get(o.balancer) == nil {
		return "", fmt.Errorf("%w: %q", ErrUnknownBalancer, o.balancer)
	}
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method,omitempty"`
	}
	type retryPolicy struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	type methodConfig struct {
		Name        []name       `json:"name"`
		RetryPolicy *retryPolicy `json:"retryPolicy,omitempty"`
	}
	cfg := map[string]any{"loadBalancingConfig": []map[string]any{{o.balancer: map[string]any{}}}}
	if p := o.retry; p != nil {
		if p.MaxAttempts < 2 || p.InitialBackoff <= 0 || p.MaxBackoff < p.InitialBackoff || p.Multiplier < 1 || len(p.Methods) == 0 {
			return "", fmt.Errorf("rpc: retry policy %+v: want methods, 2 or more attempts, backoffs 0 < initial <= max, multiplier >= 1", *p)
		}
		mc := methodConfig{RetryPolicy: &retryPolicy{
			MaxAttempts:       p.MaxAttempts,
			InitialBackoff:    seconds(p.InitialBackoff),
			MaxBackoff:        seconds(p.MaxBackoff),
			BackoffMultiplier: p.Multiplier,
		}}
		for _, m := range p.Methods {
			svc, method, ok := strings.Cut(m, "/")
			if !ok || svc == "" {
				return "", fmt.Errorf("rpc: retry method %q is not service/method or service/", m)
			}
			mc.Name = append(mc.Name, name{Service: svc, Method: method})
		}
		retryable := p.Codes
		if len(retryable) == 0 {
			retryable = []codes.Code{codes.Unavailable}
		}
		for _, c := range retryable {
			mc.RetryPolicy.RetryableStatusCodes = append(mc.RetryPolicy.RetryableStatusCodes, strings.ToUpper(codeName(c)))
		}
		cfg["methodConfig"] = []methodConfig{mc}
		if o.budget.MaxTokens <= 0 || o.budget.MaxTokens > 1000 || o.budget.Ratio <= 0 || o.budget.Ratio > o.budget.MaxTokens {
			return "", fmt.Errorf("rpc: retry budget %+v: want 0 < MaxTokens <= 1000 and 0 < Ratio <= MaxTokens", o.budget)
		}
		cfg["retryThrottling"] = map[string]float64{"maxTokens": o.budget.MaxTokens, "tokenRatio": o.budget.Ratio}
	}
	b, err := json.Marshal(cfg)
	return string(b), err
}

func seconds(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }

// codeName returns the service-config spelling of a code: UNAVAILABLE,
// DEADLINE_EXCEEDED, ...
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
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
