package demo_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/demo"
	"github.com/switchyard-dev/switchyard/internal/zktest"
)

// smallBroadcast is the test's scale: 1 and 4 subscribers, 10 events a
// step at 50/s, a subscriber that takes 60ms an event (pending limit 2 on
// core NATS), one offline for 5 events.
func smallBroadcast() demo.BroadcastConfig {
	cfg := demo.DefaultBroadcast(demo.Options{Capacity: 100, Scale: 1})
	cfg.Counts = []int{1, 4}
	cfg.Step = 200 * time.Millisecond
	cfg.SlowDelay = 60 * time.Millisecond
	cfg.SlowPendingLimit = 2
	cfg.Offline = 100 * time.Millisecond
	return cfg
}

// TestBroadcast runs the broadcast scenario at a small scale and checks
// the shapes that must hold on each path, not timings beyond orderings
// with wide margins.
func TestBroadcast(t *testing.T) {
	cfg := smallBroadcast()
	sc, err := demo.NewBroadcast(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.Config().Subscribers; got != 4 {
		t.Fatalf("subscribers for the slow and offline steps %d, want 4 (the middle of the counts)", got)
	}
	res, report := runScenario(t, sc)
	rpc, mq, js := res.Path(demo.PathRPC), res.Path(demo.PathMQ), res.Path(demo.PathJetStream)
	if rpc == nil || mq == nil || js == nil {
		t.Fatalf("paths %v, want rpc, mq and jetstream", res.Paths)
	}
	const events, k = 10, 5
	// fan-out at 1 and 4, slow and offline at 4: (10×1 + 10×4 + 10×4 + 10×4)
	const offered = 130

	t.Run("every path owed the same deliveries", func(t *testing.T) {
		for _, p := range res.Paths {
			if p.Offered != offered {
				t.Errorf("%s offered %d deliveries, want %d", p.Name, p.Offered, offered)
			}
			if p.Oversold != 0 {
				t.Errorf("%s oversold %d", p.Name, p.Oversold)
			}
			if p.Completed+p.Lost != p.Offered {
				t.Errorf("%s: completed %d + lost %d != offered %d", p.Name, p.Completed, p.Lost, p.Offered)
			}
		}
	})
	t.Run("broadcast delivers to every subscriber", func(t *testing.T) {
		for _, p := range res.Paths {
			for _, n := range cfg.Counts {
				key := "fanout_n" + strconv.Itoa(n) + "_reached_all"
				if got := figure(t, p, key); got != events {
					t.Errorf("%s: %s = %v, want every one of %d events", p.Name, key, got, events)
				}
			}
		}
		// Only the offline subscriber (and, on core NATS, the slow one past
		// its pending limit) misses anything.
		if want := int64(figure(t, rpc, "offline_missed") + figure(t, rpc, "slow_sub_missed")); rpc.Lost != want {
			t.Errorf("rpc lost %d, want the offline and slow subscribers' misses, %d", rpc.Lost, want)
		}
		if want := int64(figure(t, mq, "offline_missed") + figure(t, mq, "slow_sub_missed")); mq.Lost != want {
			t.Errorf("mq lost %d, want the offline and slow subscribers' misses, %d", mq.Lost, want)
		}
		if js.Lost != 0 || js.Completed != js.Offered || js.Accepted != js.Offered {
			t.Errorf("jetstream accepted %d, completed %d of %d, lost %d; want all, none lost", js.Accepted, js.Completed, js.Offered, js.Lost)
		}
		if m := figure(t, rpc, "slow_sub_missed"); m != 0 {
			t.Errorf("rpc: the slow subscriber missed %v events; its calls are within the deadline", m)
		}
		// The slow subscriber's pending limit is lowered so that it drops:
		// what it missed is exactly what it dropped.
		if m, d := figure(t, mq, "slow_sub_missed"), figure(t, mq, "slow_dropped"); d <= 0 || m != d {
			t.Errorf("mq: the slow subscriber missed %v events, its subscription dropped %v; want some dropped, and missed = dropped", m, d)
		}
	})
	t.Run("the producer's calls per event", func(t *testing.T) {
		for _, n := range cfg.Counts {
			key := "fanout_n" + strconv.Itoa(n) + "_producer_calls"
			if got := figure(t, rpc, key); got != float64(n) {
				t.Errorf("rpc %s = %v, want %d", key, got, n)
			}
			for _, p := range []*demo.PathResult{mq, js} {
				if got := figure(t, p, key); got != 1 {
					t.Errorf("%s %s = %v, want 1", p.Name, key, got)
				}
			}
		}
	})
	t.Run("a slow subscriber holds RPC's producer", func(t *testing.T) {
		r, m := figure(t, rpc, "slow_producer_p50_ms"), figure(t, mq, "slow_producer_p50_ms")
		if r < float64(cfg.SlowDelay.Milliseconds()) || m >= r {
			t.Errorf("producer time p50 with a slow subscriber: rpc %.1fms, mq %.1fms; want rpc at least the delay %v, and above mq", r, m, cfg.SlowDelay)
		}
	})
	t.Run("an offline subscriber", func(t *testing.T) {
		if m := figure(t, rpc, "offline_missed"); m < k {
			t.Errorf("rpc: the offline subscriber missed %v events, want at least the %d sent while it was down", m, k)
		}
		if e := figure(t, rpc, "offline_producer_errors"); e < k {
			t.Errorf("rpc: the producer saw %v errors while a subscriber was down for %d events", e, k)
		}
		if m, e := figure(t, mq, "offline_missed"), figure(t, mq, "offline_producer_errors"); m != k || e != 0 {
			t.Errorf("mq: the offline subscriber missed %v events, the producer saw %v errors; want %d and 0", m, e, k)
		}
		if m, c := figure(t, js, "offline_missed"), figure(t, js, "offline_caught_up"); m != 0 || c != k {
			t.Errorf("jetstream: the offline subscriber missed %v, caught up %v; want 0 and %d", m, c, k)
		}
		if js.DrainS <= 0 {
			t.Errorf("jetstream: catch-up %vs, want the time it took", js.DrainS)
		}
	})
	t.Run("json", func(t *testing.T) {
		checkJSON(t, report, "broadcast", []string{demo.PathRPC, demo.PathMQ, demo.PathJetStream},
			"fanout_n4_producer_calls", "fanout_n4_time_to_all_p99_ms", "slow_producer_p50_ms",
			"slow_fast_subs_p99_ms", "slow_sub_lag_max_ms", "slow_dropped", "offline_missed", "offline_producer_errors", "offline_caught_up")
	})
	t.Run("text and out", func(t *testing.T) {
		var buf bytes.Buffer
		if err := report.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"== broadcast", "RPC", "MQ (CORE NATS)", "JETSTREAM", "N=4: time to all p99", "n/a"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("report has no %q:\n%s", want, &buf)
			}
		}
		t.Log("\n" + buf.String())
		// No series, so no CSV; the fan-out chart is drawn from the
		// figures.
		files, err := report.WriteOut(t.TempDir())
		if err != nil || len(files) != 1 || filepath.Base(files[0]) != "broadcast-fanout.png" {
			t.Fatalf("WriteOut wrote %v (%v); want the fan-out chart alone", files, err)
		}
		if b, err := os.ReadFile(files[0]); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s: not a PNG image (%v)", files[0], err)
		}
	})
}

func TestBroadcastConfig(t *testing.T) {
	ok := smallBroadcast()
	if err := ok.Validate(); err != nil {
		t.Fatalf("the test's config: %v", err)
	}
	if err := demo.DefaultBroadcast(demo.DefaultOptions()).Validate(); err != nil {
		t.Fatalf("the default config: %v", err)
	}
	tests := []struct {
		name string
		edit func(*demo.BroadcastConfig)
		want string // in the error
	}{
		{"no counts", func(c *demo.BroadcastConfig) { c.Counts = nil }, "no subscriber counts"},
		{"a count of 0", func(c *demo.BroadcastConfig) { c.Counts = []int{0, 4} }, "ascending"},
		{"counts not ascending", func(c *demo.BroadcastConfig) { c.Counts = []int{4, 1} }, "ascending"},
		{"too many subscribers", func(c *demo.BroadcastConfig) { c.Counts = []int{1, 1000} }, "ascending"},
		{"one subscriber for the slow step", func(c *demo.BroadcastConfig) { c.Subscribers = 1 }, "slow and offline"},
		{"the middle count is 1", func(c *demo.BroadcastConfig) { c.Counts = []int{1} }, "set Subscribers"},
		{"no rate", func(c *demo.BroadcastConfig) { c.Rate = 0 }, "rate"},
		{"a step with no event", func(c *demo.BroadcastConfig) { c.Step = time.Millisecond }, "sends no event"},
		{"offline for no event", func(c *demo.BroadcastConfig) { c.Offline = 0 }, "misses no event"},
		{"not slow", func(c *demo.BroadcastConfig) { c.SlowDelay = 0 }, "slow delay"},
		{"slower than the deadline", func(c *demo.BroadcastConfig) { c.SlowDelay = c.Deadline }, "less than the deadline"},
		{"no deadline", func(c *demo.BroadcastConfig) { c.Deadline = 0 }, "deadline"},
		{"negative pending limit", func(c *demo.BroadcastConfig) { c.SlowPendingLimit = -1 }, "pending limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := smallBroadcast()
			tt.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error about %q", err, tt.want)
			}
			if _, err := demo.NewBroadcast(cfg); err == nil {
				t.Error("NewBroadcast took it")
			}
		})
	}
}

// TestBroadcastCancel ends the run's context while it runs, at points in
// each path: Run must return the context's error and leave nothing
// running.
func TestBroadcastCancel(t *testing.T) {
	zktest.Shared(t)
	checkGoroutines(t)
	env := startEnv(t)
	sc, err := demo.NewBroadcast(smallBroadcast())
	if err != nil {
		t.Fatal(err)
	}
	for _, after := range []time.Duration{300 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second} {
		ctx, cancel := context.WithTimeout(context.Background(), after)
		_, err := sc.Run(ctx, env, nil)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("cancelled after %v: %v, want the context's error", after, err)
		}
	}
}
