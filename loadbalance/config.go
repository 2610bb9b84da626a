package loadbalance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/serviceconfig"
)

// ErrBadConfig reports a balancer config that cannot be used.
var ErrBadConfig = errors.New("loadbalance: bad config")

// Config is the balancer config every Switchyard policy takes in the
// service config, for example
//
//	{"loadBalancingConfig":[{"p2c_ewma":{"zone":"eu-1a","ejection":{"consecutiveFailures":5}}}]}
//
// Unknown fields are an error, so a misspelt option is not silently
// ignored.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Zone is the caller's zone. While an instance of this zone is ready
	// and not ejected, calls go only to instances of this zone; when none
	// is, to all. Empty: no preference.
	Zone string `json:"zone,omitempty"`
	// Ejection configures outlier ejection; absent: DefaultEjection.
	Ejection *Ejection `json:"ejection,omitempty"`
}

// Ejection keeps a failing instance out of rotation (a circuit breaker
// per instance, after gRPC's outlier detection, gRFC A50, and Envoy's
// consecutive-failure ejection). An instance whose calls fail
// ConsecutiveFailures times in a row with a server-failure code
// (Unavailable, Internal, Unknown, DataLoss) is ejected for BaseTime times
// the number of times it was ejected lately, at most MaxTime; then it is
// let back, and its next calls are the probe: success keeps it in, further
// failures eject it for longer. DeadlineExceeded does not count: a call
// can run out of its caller's time on a healthy instance (a blocking lock
// acquire does by design), and a slow instance is p2c's to avoid.
// At most MaxPercent of the instances are ejected at once, and never the
// only one, so ejection cannot take a whole service out.
type Ejection struct {
	// Off turns ejection off.
	Off bool `json:"off,omitempty"`
	// ConsecutiveFailures ejects an instance (default 5).
	ConsecutiveFailures int `json:"consecutiveFailures,omitempty"`
	// BaseTime is the first ejection's length (default 5s).
	BaseTime Duration `json:"baseTime,omitempty"`
	// MaxTime caps an ejection's length (default 60s).
	MaxTime Duration `json:"maxTime,omitempty"`
	// MaxPercent of the instances may be ejected at once (default 50).
	MaxPercent int `json:"maxPercent,omitempty"`
}

// DefaultEjection is the ejection policy of a config that names none.
var DefaultEjection = Ejection{
	ConsecutiveFailures: 5,
	BaseTime:            Duration(5 * time.Second),
	MaxTime:             Duration(60 * time.Second),
	MaxPercent:          50,
}

// withDefaults fills in the zero fields from DefaultEjection.
func (e Ejection) withDefaults() Ejection {
	d := DefaultEjection
	if e.ConsecutiveFailures == 0 {
		e.ConsecutiveFailures = d.ConsecutiveFailures
	}
	if e.BaseTime == 0 {
		e.BaseTime = d.BaseTime
	}
	if e.MaxTime == 0 {
		e.MaxTime = max(d.MaxTime, e.BaseTime)
	}
	if e.MaxPercent == 0 {
		e.MaxPercent = d.MaxPercent
	}
	return e
}

func (e Ejection) validate() error {
	switch {
	case e.ConsecutiveFailures < 1:
		return fmt.Errorf("%w: ejection.consecutiveFailures %d: want 1 or more", ErrBadConfig, e.ConsecutiveFailures)
	case e.BaseTime <= 0 || e.MaxTime < e.BaseTime:
		return fmt.Errorf("%w: ejection times base %v, max %v: want 0 < base <= max", ErrBadConfig, time.Duration(e.BaseTime), time.Duration(e.MaxTime))
	case e.MaxPercent < 1 || e.MaxPercent > 100:
		return fmt.Errorf("%w: ejection.maxPercent %d: want 1 to 100", ErrBadConfig, e.MaxPercent)
	}
	return nil
}

// ParseConfig parses and checks a policy's config (the object under its
// name in loadBalancingConfig); an empty one means the defaults. Policies'
// builders call it from their ParseConfig.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{}
	if len(bytes.TrimSpace(js)) > 0 && !bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(cfg); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
		}
	}
	e := DefaultEjection
	if cfg.Ejection != nil {
		e = cfg.Ejection.withDefaults()
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	cfg.Ejection = &e
	return cfg, nil
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("5s", "250ms").
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"5s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
