package zklock_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
)

// TestClaimRecordsHowItEnded: the multi-op that deletes a held node
// records why in its guid's claim — "released" for Release, "expired" for
// Expire — while a node that goes with its session records nothing and a
// withdrawn one takes its claim along; HowEnded, read at another Locker
// once the lock's directory watch (Holder) has fired, tells them apart.
// The claim keeps what the janitor and dedup need: a late duplicate is
// still ErrClaimEnded.
func TestClaimRecordsHowItEnded(t *testing.T) {
	tests := []struct {
		name   string
		end    func(t *testing.T, l *zklock.Locker, g *zklock.Grant, cut func())
		reason string // in the claim; "-" for no claim
		want   zklock.End
	}{
		{"released", func(t *testing.T, l *zklock.Locker, g *zklock.Grant, _ func()) {
			if err := l.Release(ctxFor(t, 10*time.Second), g); err != nil {
				t.Fatal(err)
			}
		}, "released", zklock.EndReleased},
		{"expired", func(t *testing.T, l *zklock.Locker, g *zklock.Grant, _ func()) {
			if err := l.Expire(ctxFor(t, 10*time.Second), g); err != nil {
				t.Fatal(err)
			}
		}, "expired", zklock.EndExpired},
		{"withdrawn", func(t *testing.T, l *zklock.Locker, g *zklock.Grant, _ func()) {
			if err := l.Withdraw(ctxFor(t, 10*time.Second), g); err != nil {
				t.Fatal(err)
			}
		}, "-", zklock.EndWithdrawn},
		{"session lost", func(t *testing.T, _ *zklock.Locker, _ *zklock.Grant, cut func()) { cut() }, "", zklock.EndLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			proxy := zktest.NewProxy(t, h.srv.Addr(0))
			holder, _ := h.lockerOn(h.dial(proxy.Addr(), time.Second))
			reader, _ := h.locker()
			const name = "ended"
			g := acquire(t, holder, name)
			info := g.Info()

			seen, changed, err := reader.Holder(ctxFor(t, 10*time.Second), name, true)
			if err != nil || seen == nil || seen.Token != info.Token || seen.GUID != info.GUID {
				t.Fatalf("Holder: %+v (%v), want the grant %+v", seen, err, info)
			}
			names, _, err := reader.Locks(ctxFor(t, 10*time.Second), "end", false)
			if err != nil || !slices.Contains(names, name) {
				t.Fatalf("Locks: %v (%v), want %q among them", names, err, name)
			}

			tt.end(t, holder, g, proxy.Cut)
			select {
			case ev := <-changed:
				if ev.Type != zk.EventNodeChildrenChanged {
					t.Fatalf("the directory's watch: %v, want a children change", ev)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the directory's watch did not fire 20s after the holder ended")
			}
			if now, _, err := reader.Holder(ctxFor(t, 10*time.Second), name, false); err == nil && now != nil {
				t.Fatalf("a holder after the end: %+v", now)
			}

			data, _, err := h.obs.Get(holder.ClaimPath(info.GUID))
			switch {
			case tt.reason == "-":
				if !errors.Is(err, zk.ErrNoNode) {
					t.Fatalf("the claim: %s (%v), want it gone", data, err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				var rec struct {
					Lock, Dir, Attempt, Reason string
					Ended                      bool
				}
				if err := json.Unmarshal(data, &rec); err != nil || rec.Reason != tt.reason || rec.Lock != name || rec.Dir != h.dir(name) || rec.Attempt == "" || rec.Ended {
					t.Fatalf("the claim: %s (%v), want reason %q, the lock, its directory and an attempt", data, err, tt.reason)
				}
				if _, err := reader.Acquire(ctxFor(t, 10*time.Second), name, info.GUID, nil, true); !errors.Is(err, zklock.ErrClaimEnded) {
					t.Fatalf("a late duplicate: %v, want ErrClaimEnded", err)
				}
			}
			if got, err := reader.HowEnded(ctxFor(t, 10*time.Second), info); err != nil || got != tt.want {
				t.Fatalf("HowEnded: %v (%v), want %v", got, err, tt.want)
			}
			proxy.Heal()
		})
	}
}
