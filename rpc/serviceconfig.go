package rpc

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/balancer"
	_ "google.golang.org/grpc/balancer/leastrequest" // least_request_experimental
	_ "google.golang.org/grpc/balancer/ringhash"     // ring_hash_experimental
	"google.golang.org/grpc/codes"

	"github.com/switchyard-dev/switchyard/loadbalance"
	_ "github.com/switchyard-dev/switchyard/loadbalance/weighted" // weighted
)

// balancerOptions configure the chosen policy.
type balancerOptions struct {
	zone     string
	ejection *loadbalance.Ejection
	config   string // the policy's own JSON config object
}

// WithZone makes a Switchyard policy prefer instances of the caller's
// zone while any of them is usable (see package loadbalance).
func WithZone(zone string) ClientOption { return func(o *clientOptions) { o.lb.zone = zone } }

// WithEjection replaces a Switchyard policy's default outlier ejection
// (loadbalance.DefaultEjection); zero fields keep their defaults.
func WithEjection(e loadbalance.Ejection) ClientOption {
	return func(o *clientOptions) { o.lb.ejection = &e }
}

// WithBalancerConfig gives the chosen policy its JSON config object, as
// it would stand under the policy's name in a service config's
// loadBalancingConfig: for example `{"requestHashHeader":"x-user"}` for
// "ring_hash_experimental", or `{"choiceCount":3}` for
// "least_request_experimental". A config the policy rejects fails
// NewClient.
func WithBalancerConfig(js string) ClientOption {
	return func(o *clientOptions) { o.lb.config = js }
}

// policyConfig returns the chosen policy's config object.
func policyConfig(o clientOptions) (map[string]any, error) {
	cfg := map[string]any{}
	if strings.TrimSpace(o.lb.config) != "" {
		if err := json.Unmarshal([]byte(o.lb.config), &cfg); err != nil {
			return nil, fmt.Errorf("rpc: balancer config for %s is not a JSON object: %w", o.balancer, err)
		}
	}
	if o.lb.zone == "" && o.lb.ejection == nil {
		return cfg, nil
	}
	if !loadbalance.IsSwitchyard(o.balancer) {
		return nil, fmt.Errorf("rpc: zone preference and ejection need a Switchyard balancer (%s or %s), not %q: %w",
			"weighted", "p2c_ewma", o.balancer, loadbalance.ErrBadConfig)
	}
	if o.lb.zone != "" {
		cfg["zone"] = o.lb.zone
	}
	if o.lb.ejection != nil {
		cfg["ejection"] = o.lb.ejection
	}
	return cfg, nil
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
	pc, err := policyConfig(o)
	if err != nil {
		return "", err
	}
	cfg := map[string]any{"loadBalancingConfig": []map[string]any{{o.balancer: pc}}}
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
