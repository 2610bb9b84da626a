package lockbench

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/lockservice"
)

// Config says what Run measures. Start from DefaultConfig and set ZK.
type Config struct {
	// ZK is the ZooKeeper connect string ("host:port,...") every side
	// uses: the raw pairs, the lock-service replica and its registry, and
	// the zklock handoff.
	ZK string
	// Duration is the measured window of each cycle phase (one side at
	// one concurrency in one round). A window that would close before any
	// cycle had started and ended in it stays open until one has (within
	// SetupTimeout); ops/s counts over the window as it was.
	Duration time.Duration
	// Warmup is how long each cycle phase runs before its window opens;
	// those cycles are not timed. The window opens no sooner than every
	// worker has completed a cycle (the first on a lock name makes its
	// directory), within SetupTimeout. 0 means no wait beyond that.
	Warmup time.Duration
	// Rounds is how many phases each side runs at each concurrency, and
	// how many handoff runs each handoff side makes.
	Rounds int
	// Concurrency lists the closed-loop worker counts of the cycle
	// phases, each measured in turn. Each must be distinct and positive.
	// Every worker has a znode (raw) or a lock name (gRPC) of its own.
	Concurrency []int
	// Waiters is how many acquires queue behind the holder in a handoff
	// run; each release hands the lock to the next of them.
	Waiters int
	// TTL is the lease validity each gRPC acquire asks for.
	TTL time.Duration
	// SessionTimeout is the timeout asked for each ZooKeeper session the
	// benchmark opens.
	SessionTimeout time.Duration
	// SetupTimeout bounds bringing a side up (a ZooKeeper session, the
	// replica's registration, the first cycle that proves the path), each
	// phase's wait for every worker's first cycle and for a first timed
	// cycle, and each handoff run from its first acquire to its last
	// release.
	SetupTimeout time.Duration
	// Via lists the transports measured beside raw ZooKeeper: SideGRPC
	// always, and SideNATS if listed (nil: gRPC alone).
	Via []string
	// Queued is how many acquires the queued run publishes at once
	// through JetStream (lockqueue), when the NATS side runs; 0 skips it.
	Queued int
	// NATS is the URL of the NATS server the NATS side uses; empty: one
	// embedded in this process for the run.
	NATS string
	// Logger receives the replica's, the registry's and the RPC stack's
	// logs (nil: slog.Default()). The stack logs successful calls at
	// debug level, so a logger that enables debug adds its cost to every
	// gRPC call.
	Logger *slog.Logger
	// Progress, when set, is called after each phase with its figures,
	// from the goroutine that called Run.
	Progress func(Phase)
}

// DefaultConfig returns the configuration of issue #5: concurrency 1 and
// 64, 100 waiters, leases of 10s, three rounds of 3s windows after 500ms
// warm-ups. ZK is left empty.
func DefaultConfig() Config {
	return Config{
		Duration:       3 * time.Second,
		Warmup:         500 * time.Millisecond,
		Rounds:         3,
		Concurrency:    []int{1, 64},
		Waiters:        100,
		Queued:         2000,
		TTL:            10 * time.Second,
		SessionTimeout: 10 * time.Second,
		SetupTimeout:   30 * time.Second,
	}
}

// maxWaiters is the most waiters a handoff run may queue: what one
// lock-service replica queues on one lock by default.
var maxWaiters = lockservice.DefaultConfig("lockbench").MaxWaiters

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
	case c.Waiters < 1 || c.Waiters > maxWaiters:
		return fmt.Errorf("%w: waiters %d: want 1 to %d", ErrConfig, c.Waiters, maxWaiters)
	case c.TTL < lockservice.MinTTL || c.TTL > lockservice.MaxTTL:
		return fmt.Errorf("%w: ttl %v: want %v to %v", ErrConfig, c.TTL, lockservice.MinTTL, lockservice.MaxTTL)
	case c.Queued < 0 || c.Queued > 100000:
		return fmt.Errorf("%w: queued %d: want 0 to 100000", ErrConfig, c.Queued)
	case c.SessionTimeout <= 0:
		return fmt.Errorf("%w: session timeout %v: want a positive duration", ErrConfig, c.SessionTimeout)
	case c.SetupTimeout <= 0:
		return fmt.Errorf("%w: setup timeout %v: want a positive duration", ErrConfig, c.SetupTimeout)
	}
	for _, v := range c.Via {
		if v != SideGRPC && v != SideNATS {
			return fmt.Errorf("%w: via %q: want %s or %s", ErrConfig, v, SideGRPC, SideNATS)
		}
	}
	if err := benchrun.CheckConcurrency(c.Concurrency); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}
