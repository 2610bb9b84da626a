package rpc

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
)

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
