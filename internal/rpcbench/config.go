package rpcbench

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
)

// Config says what Run measures. Start from DefaultConfig and set ZK.
type Config struct {
	// ZK is the ZooKeeper connect string ("host:port,...") the stack side
	// registers its server in and resolves it from.
	ZK string
	// Duration is the measured window of each phase (one side at one
	// concurrency in one round).
	Duration time.Duration
	// Warmup is how long each phase calls before its window opens; those
	// calls are not timed. 0 means none.
	Warmup time.Duration
	// Rounds is how many phases each side runs at each concurrency.
	Rounds int
	// Concurrency lists the closed-loop worker counts, each measured in
	// turn. Each must be distinct and positive.
	Concurrency []int
	// PayloadSize is the bytes of the Echo request's payload (echoed back).
	PayloadSize int
	// SetupTimeout bounds bringing a side up: the ZooKeeper session, the
	// server's registration, and the first call that proves the path.
	SetupTimeout time.Duration
	// Logger receives the registry's and the stack's logs (nil:
	// slog.Default()). Calls that succeed are logged by the stack's
	// interceptors at debug level, so a logger that enables debug adds
	// its cost to every stack call.
	Logger *slog.Logger
	// Progress, when set, is called after each phase with its figures,
	// from the goroutine that called Run.
	Progress func(Phase)
}

// DefaultConfig returns the configuration of issue #4: concurrency 1 and
// 64, a 64-byte payload, three rounds of 3s windows after 500ms warm-ups.
// ZK is left empty.
func DefaultConfig() Config {
	return Config{
		Duration:     3 * time.Second,
		Warmup:       500 * time.Millisecond,
		Rounds:       3,
		Concurrency:  []int{1, 64},
		PayloadSize:  64,
		SetupTimeout: 30 * time.Second,
	}
}

// maxPayload keeps a mistyped flag from exhausting the machine (as
// benchrun.MaxConcurrency does the concurrency).
const maxPayload = 4 << 20

// Validate reports the first thing wrong with c, wrapping ErrConfig. It
// touches no network.
func (c Config) Validate() error {
	if c.ZK == "" {
		return fmt.Errorf("%w: no ZooKeeper connect string", ErrConfig)
	}
	if err := benchrun.CheckSchedule(c.Duration, c.Warmup, c.Rounds, c.Concurrency); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch {
	case c.PayloadSize < 0 || c.PayloadSize > maxPayload:
		return fmt.Errorf("%w: payload %d bytes: want 0 to %d", ErrConfig, c.PayloadSize, maxPayload)
	case c.SetupTimeout <= 0:
		return fmt.Errorf("%w: setup timeout %v: want a positive duration", ErrConfig, c.SetupTimeout)
	}
	if err := benchrun.CheckConcurrency(c.Concurrency); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}
