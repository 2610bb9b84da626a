package lockqueue

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The streams, subjects, consumer and headers of the queue (see the
// package doc for what each carries).
const (
	// QueueStream is the work-queue stream of acquire requests.
	QueueStream = "SWITCHYARD_LOCK_QUEUE"
	// QueueSubject is the one subject QueueStream takes: publish an
	// AcquireRequest here (Enqueue does) to queue it.
	QueueSubject = "switchyard.lock.v1.queue.acquire"
	// Consumer is the durable pull consumer on QueueStream that every
	// replica's Worker shares.
	Consumer = "lock-acquirers"

	// DeadStream is the dead-letter stream.
	DeadStream = "SWITCHYARD_LOCK_DLQ"
	// DeadSubject is the one subject DeadStream takes.
	DeadSubject = "switchyard.lock.v1.queue.dead"

	// MaxDeliveriesAdvisory is the advisory JetStream publishes (core
	// NATS, JSON) when a message of QueueStream hits the consumer's
	// MaxDeliver; every Worker subscribes to it.
	MaxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + QueueStream + "." + Consumer

	// HeaderMsgID is JetStream's de-duplication header; on QueueSubject
	// it carries the request id.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderReplyTo is the subject the outcome of a queued acquire is
	// published to.
	HeaderReplyTo = "Switchyard-Reply-To"
	// HeaderDeadReason, on a dead letter, says why in words.
	HeaderDeadReason = "Switchyard-Dead-Reason"
	// HeaderDeadCode, on a dead letter, is the gRPC code (a decimal
	// number) of the error that killed the message.
	HeaderDeadCode = "Switchyard-Dead-Code"
	// HeaderDeliveries, on a dead letter, is how many times JetStream had
	// delivered the message.
	HeaderDeliveries = "Switchyard-Deliveries"
	// HeaderStreamSeq, on a dead letter, is the message's sequence in
	// QueueStream.
	HeaderStreamSeq = "Switchyard-Stream-Seq"
	// HeaderOriginalMsgID, on a dead letter, is the message's original
	// Nats-Msg-Id (a dead letter's own is "dlq-<stream sequence>").
	HeaderOriginalMsgID = "Switchyard-Original-Msg-Id"
)

// Defaults of Config's fields.
const (
	DefaultConcurrency   = 16
	DefaultMaxAckPending = 256
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliver    = 5
	DefaultRetryDelay    = time.Second
	DefaultDuplicates    = 2 * time.Minute
	DefaultMaxMsgs       = 100000
	DefaultMaxWait       = 5 * time.Minute
	DefaultSweepInterval = time.Minute
)

// Config configures a Worker. The zero value of every field is its
// default; negative values are errors.
type Config struct {
	// Concurrency bounds the requests this Worker handles at once (each
	// one a pull of one message and, while the lock is held, a waiting
	// acquire). Default DefaultConcurrency. Keep the sum over the
	// replicas within the consumer's limit of waiting pulls (512).
	Concurrency int
	// MaxAckPending is the consumer's MaxAckPending: the bound on
	// requests in flight across all replicas. Default
	// DefaultMaxAckPending.
	MaxAckPending int
	// AckWait is the consumer's AckWait: a message not acknowledged for
	// that long is delivered again. A Worker reports progress every
	// AckWait/3 while an acquire waits. Default DefaultAckWait.
	AckWait time.Duration
	// MaxDeliver is the consumer's MaxDeliver: a message delivered that
	// many times without success is dead-lettered. Default
	// DefaultMaxDeliver.
	MaxDeliver int
	// RetryDelay is the redelivery delay after a retryable failure
	// (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, a reply that could not
	// be sent), doubled for each delivery so far, at most AckWait.
	// Default DefaultRetryDelay.
	RetryDelay time.Duration
	// Duplicates is the de-duplication window of both streams. Default
	// DefaultDuplicates.
	Duplicates time.Duration
	// MaxMsgs bounds QueueStream; past it a publish is refused. Default
	// DefaultMaxMsgs.
	MaxMsgs int64
	// MaxWait is the longest a queued request may wait, counted from when
	// JetStream stored it: the deadline of a request without one, and the
	// cap of one with a later deadline. Keep it below the lock service's
	// ClaimRetention (ten minutes by default), so that a message is never
	// granted after the claim of its request id has gone. Default
	// DefaultMaxWait.
	MaxWait time.Duration
	// DeadMaxAge bounds how long dead letters are kept; 0 keeps them
	// until an operator removes them.
	DeadMaxAge time.Duration
	// Replicas is the number of JetStream replicas of both streams (1 on a
	// single server, 3 in a cluster, say). Default 1.
	Replicas int
	// SweepInterval is how often a Worker looks for messages that hit
	// MaxDeliver without their advisory being handled (it also looks at
	// Start). Default DefaultSweepInterval.
	SweepInterval time.Duration
	// Logger logs what the Worker does. Default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, registers the Worker's counters there:
	// switchyard_lock_queued_granted_total,
	// switchyard_lock_queued_dropped_total{reason} and
	// switchyard_lock_queued_dead_total. Give each Worker in a process a
	// registerer of its own.
	Metrics prometheus.Registerer
}

// withDefaults checks c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Concurrency < 0, c.MaxAckPending < 0, c.MaxDeliver < 0, c.Replicas < 0, c.MaxMsgs < 0:
		return c, fmt.Errorf("lockqueue: config: concurrency %d, max ack pending %d, max deliver %d, replicas %d, max msgs %d: none may be negative",
			c.Concurrency, c.MaxAckPending, c.MaxDeliver, c.Replicas, c.MaxMsgs)
	case c.AckWait < 0, c.RetryDelay < 0, c.Duplicates < 0, c.MaxWait < 0, c.DeadMaxAge < 0, c.SweepInterval < 0:
		return c, fmt.Errorf("lockqueue: config: ack wait %v, retry delay %v, duplicates %v, max wait %v, dead max age %v, sweep interval %v: none may be negative",
			c.AckWait, c.RetryDelay, c.Duplicates, c.MaxWait, c.DeadMaxAge, c.SweepInterval)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Concurrency, DefaultConcurrency)
	def(&c.MaxAckPending, DefaultMaxAckPending)
	def(&c.MaxDeliver, DefaultMaxDeliver)
	def(&c.Replicas, 1)
	defDur(&c.AckWait, DefaultAckWait)
	defDur(&c.RetryDelay, DefaultRetryDelay)
	defDur(&c.Duplicates, DefaultDuplicates)
	defDur(&c.MaxWait, DefaultMaxWait)
	defDur(&c.SweepInterval, DefaultSweepInterval)
	if c.MaxMsgs == 0 {
		c.MaxMsgs = DefaultMaxMsgs
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.AckWait < 3*time.Millisecond {
		return c, fmt.Errorf("lockqueue: config: ack wait %v is too short", c.AckWait)
	}
	return c, nil
}
