package lockmq_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchyard-dev/switchyard/internal/freeport"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/natsserver"
	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// renewals is a lockclient.Transport that notes when the latest renewal
// that succeeded was sent, and until when each lease it granted or
// renewed is valid, counted from when that request was sent.
type renewals struct {
	lockclient.Transport
	mu         sync.Mutex
	last       time.Time
	validUntil map[string]time.Time // by lock name
	more       chan struct{}
}

func newRenewals(t lockclient.Transport) *renewals {
	return &renewals{Transport: t, validUntil: make(map[string]time.Time), more: make(chan struct{}, 1)}
}

func (r *renewals) Acquire(ctx context.Context, req *lockv1.AcquireRequest) (*lockv1.Lease, error) {
	sent := time.Now()
	lease, err := r.Transport.Acquire(ctx, req)
	if err == nil {
		r.mu.Lock()
		r.validUntil[lease.GetName()] = sent.Add(lease.GetWaited().AsDuration() + lease.GetTtl().AsDuration())
		r.mu.Unlock()
	}
	return lease, err
}

func (r *renewals) KeepAlive(ctx context.Context, lease *lockv1.Lease) (time.Duration, error) {
	sent := time.Now()
	granted, err := r.Transport.KeepAlive(ctx, lease)
	if err == nil {
		r.mu.Lock()
		r.last = sent
		r.validUntil[lease.GetName()] = sent.Add(granted)
		r.mu.Unlock()
		select {
		case r.more <- struct{}{}:
		default:
		}
	}
	return granted, err
}

// valid returns until when the latest grant or renewal of the named lock
// that succeeded made it valid.
func (r *renewals) valid(name string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.validUntil[name]
}

func (r *renewals) sentAfter(since time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last.After(since)
}

// TestNATSRestart restarts the NATS server under a holder: after a short
// outage the clients reconnect and the lease is kept (renewed, released
// normally); through an outage longer than the validity the holder is
// told its lock is lost, before anyone else can be granted it. Never is
// a lease silently assumed.
func TestNATSRestart(t *testing.T) {
	ports, err := freeport.Get(1)
	if err != nil {
		t.Fatal(err)
	}
	var srv *natsserver.Server
	start := func() {
		t.Helper()
		s, err := natsserver.Start(natsserver.Config{Port: ports[0], Dir: t.TempDir(), NoJetStream: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		srv = s
	}
	stop := func() {
		t.Helper()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	start()
	url := srv.ClientURL()
	fast := nats.ReconnectWait(50 * time.Millisecond)

	reg := lbtest.Dial(t)
	// The replica's session outlasts shortTTL: it grants no validity past
	// when its session could expire.
	r := locktest.StartReplica(t, reg, zktest.Shared(t).Addr(0), "restart-one", 8*time.Second)
	d, err := lockmq.Serve(natstest.Connect(t, url, fast), r.Server, lockmq.WithLogger(zktest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	const ttl = 3 * time.Second
	renewed := newRenewals(lockmq.Transport(natstest.Connect(t, url, fast)))
	client := lockclient.New(renewed, lockclient.WithTTL(ttl), lockclient.WithLogger(zktest.Logger(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("short outage keeps the lease", func(t *testing.T) {
		// A lease long enough that the restart and the reconnects fit well
		// within it, however slow the machine: the outage is what is short.
		const shortTTL = 6 * time.Second
		l, err := client.Lock(ctx, "restart/short", lockclient.WithTTL(shortTTL))
		if err != nil {
			t.Fatal(err)
		}
		stop()
		time.Sleep(500 * time.Millisecond) // the outage
		start()
		restarted := time.Now()
		lostAfter := func(what string) {
			t.Helper()
			t.Fatalf("lost %s a 500ms outage with a %v lease: %v (%d renewals failed)", what, shortTTL, l.Err(), l.RenewalFailures())
		}
		// Renewed across the restart: a renewal sent after it succeeds.
		deadline := time.After(2 * shortTTL)
		for !renewed.sentAfter(restarted) {
			select {
			case <-renewed.more:
			case <-l.Lost():
				lostAfter("after")
			case <-deadline:
				t.Fatalf("no renewal succeeded within %v of the restart (%d renewals failed)", 2*shortTTL, l.RenewalFailures())
			}
		}
		// And kept: renewed as usual from then on.
		select {
		case <-l.Lost():
			lostAfter("after the renewal that followed")
		case <-time.After(shortTTL / 2):
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatalf("unlock after the restart: %v", err)
		}
	})

	t.Run("long outage reports the loss first", func(t *testing.T) {
		l, err := client.Lock(ctx, "restart/long")
		if err != nil {
			t.Fatal(err)
		}
		stop()
		var lostAt time.Time
		select {
		case <-l.Lost():
			lostAt = time.Now()
		case <-time.After(2 * ttl):
			t.Fatalf("still held %v into an outage, with a %v lease", 2*ttl, ttl)
		}
		start()
		other := lockclient.New(lockmq.Transport(natstest.Connect(t, url, fast)))
		l2, err := other.Lock(ctx, "restart/long")
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Unlock(ctx)
		// The loss must be reported before the lease could have run out
		// at the service — only then can nobody else be granted it yet.
		// The validity is counted from when the last request that granted
		// or renewed it was sent; the service counts it from later, when
		// it handled that request.
		validUntil := renewed.valid("restart/long")
		if validUntil.IsZero() {
			t.Fatal("no grant or renewal of restart/long was recorded")
		}
		if !lostAt.Before(validUntil) {
			t.Errorf("loss reported at %v, not before the lease's validity ended at %v",
				lostAt.Format(time.StampMicro), validUntil.Format(time.StampMicro))
		}
		if l2.Token() <= l.Token() {
			t.Errorf("the next holder got token %d after %d: want a higher token", l2.Token(), l.Token())
		}
	})
}
