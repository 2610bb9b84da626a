package lockbench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/lockservice/lockqueue"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// Queued is the queued-acquire run's figures (issue #6): a burst of
// Config.Queued acquires published at once to the JetStream work queue
// (lockqueue), far above what the replica's worker takes at a time, each
// released as soon as it is granted.
type Queued struct {
	// Requests is how many were published.
	Requests int `json:"requests"`
	// IngestPerS is Requests over the time from the first publish to the
	// last PubAck: how fast the queue took the burst.
	IngestPerS float64 `json:"ingest_per_s"`
	// Granted counts requests answered with a lease; Dead those answered
	// with an error (dead-lettered); Lost those never answered within
	// Config.SetupTimeout after the last PubAck. Lost is 0 in every
	// Result Run returns without error.
	Granted int `json:"granted"`
	Dead    int `json:"dead"`
	Lost    int `json:"lost"`
	// DrainS is the time from the last PubAck to the last outcome.
	DrainS float64 `json:"drain_s"`
	// GrantP50ms and GrantP99ms are the times from a request's publish to
	// its grant.
	GrantP50ms float64 `json:"grant_p50_ms"`
	GrantP99ms float64 `json:"grant_p99_ms"`
	// Concurrency and MaxAckPending are the worker's bounds.
	Concurrency   int `json:"concurrency"`
	MaxAckPending int `json:"max_ack_pending"`
}

// The worker's bounds in the queued run: far below the burst.
const (
	queuedConcurrency   = 16
	queuedMaxAckPending = 64
	queuedNames         = 64 // the burst spreads over this many locks
	queuedPublishers    = 16
)

// ErrQueuedLost reports a queued run in which a request was never answered.
var ErrQueuedLost = errors.New("lockbench: queued acquires lost")

// runQueued runs the queued burst through the NATS side's replica.
func runQueued(ctx context.Context, s *serviceSide, cfg Config, run string) (Queued, error) {
	q := Queued{Requests: cfg.Queued, Concurrency: queuedConcurrency, MaxAckPending: queuedMaxAckPending}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return q, fmt.Errorf("lockbench: queued: %w", err)
	}
	setup, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	w, err := lockqueue.Start(setup, js, s.replica.server, lockqueue.Config{
		Concurrency: queuedConcurrency, MaxAckPending: queuedMaxAckPending, Logger: cfg.Logger,
	})
	if err != nil {
		return q, fmt.Errorf("lockbench: queued: %w", err)
	}
	defer w.Close()
	r, err := lockqueue.NewRequester(js)
	if err != nil {
		return q, fmt.Errorf("lockbench: queued: %w", err)
	}
	defer r.Close()

	type outcome struct {
		sent, done time.Time
		err        error // the acquire's
		released   error
	}
	outcomes := make([]outcome, cfg.Queued)
	pending := make([]*lockqueue.Pending, cfg.Queued)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		pubErr  error
		pubOnce sync.Once
	)
	ttl := durationpb.New(cfg.TTL)
	start := time.Now()
	for range queuedPublishers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Queued {
					return
				}
				req := &lockv1.AcquireRequest{
					Name: fmt.Sprintf("%sq-%d", s.prefix, i%queuedNames), Ttl: ttl, Wait: true,
					RequestId: fmt.Sprintf("lockbench-%s-q%d", run, i), Owner: owner,
				}
				outcomes[i].sent = time.Now()
				p, err := r.Submit(ctx, req)
				if err != nil {
					pubOnce.Do(func() { pubErr = fmt.Errorf("lockbench: queued: publish %d: %w", i, err) })
					return
				}
				pending[i] = p
			}
		})
	}
	wg.Wait()
	acked := time.Now()
	if pubErr != nil {
		return q, pubErr
	}
	q.IngestPerS = benchrun.Round1(float64(cfg.Queued) / acked.Sub(start).Seconds())

	// Wait for every outcome, releasing each lease at once so that the
	// next request on its lock can be granted.
	wait, cancelWait := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancelWait()
	for i := range pending {
		wg.Go(func() {
			lease, err := pending[i].Wait(wait)
			outcomes[i].done, outcomes[i].err = time.Now(), err
			if err == nil {
				outcomes[i].released = s.release(ctx, lease)
			}
		})
	}
	wg.Wait()
	var (
		last    time.Time
		grants  []time.Duration
		release error
	)
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			q.Granted++
			grants = append(grants, o.done.Sub(o.sent))
			release = cmp.Or(release, o.released)
		case status.Code(o.err) == codes.DeadlineExceeded && wait.Err() != nil:
			q.Lost++ // no answer within SetupTimeout
			continue
		default:
			q.Dead++
		}
		if o.done.After(last) {
			last = o.done
		}
	}
	if ctx.Err() != nil {
		return q, fmt.Errorf("lockbench: queued: %w", ctx.Err())
	}
	q.DrainS = benchrun.Round2(last.Sub(acked).Seconds())
	slices.Sort(grants)
	q.GrantP50ms = benchrun.Round1(float64(quantile(grants, 0.50)) / float64(time.Millisecond))
	q.GrantP99ms = benchrun.Round1(float64(quantile(grants, 0.99)) / float64(time.Millisecond))
	if release != nil {
		return q, fmt.Errorf("%w: a queued grant: %w", ErrOpsFailed, release)
	}
	if q.Lost > 0 || q.Dead > 0 {
		return q, fmt.Errorf("%w: %d of %d never answered, %d dead-lettered", ErrQueuedLost, q.Lost, q.Requests, q.Dead)
	}
	return q, nil
}
