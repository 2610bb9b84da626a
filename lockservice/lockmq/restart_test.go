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
// that succeeded was sent.
type renewals struct {
	lockclient.Transport
	mu   sync.Mutex
	last time.Time
	more chan struct{}
}

func newRenewals(t lockclient.Transport) *renewals {
	return &renewals{Transport: t, more: make(chan struct{}, 1)}
}

func (r *renewals) KeepAlive(ctx context.Context, lease *lockv1.Lease) (time.Duration, error) {
	sent := time.Now()
	granted, err := r.Transport.KeepAlive(ctx, lease)
	if err == nil {
		r.mu.Lock()
		r.last = sent
		r.mu.Unlock()
		select {
		case r.more <- struct{}{}:
		default:
		}
	}
	return granted, err
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
		grantedAt := time.Now()
		defer l2.Unlock(ctx)
		if !lostAt.Before(grantedAt) || l2.Token() <= l.Token() {
			t.Errorf("lost at %v, the next granted at %v with token %d after %d: want the loss first and a higher token",
				lostAt.Format(time.StampMicro), grantedAt.Format(time.StampMicro), l2.Token(), l.Token())
		}
	})
}
