package demo_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
	"github.com/switchyard-dev/switchyard/internal/demo"
	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// startEnv starts the demo's stack on the package's ZooKeeper and an
// embedded NATS server, closed when t ends.
func startEnv(t *testing.T) *demo.Env {
	t.Helper()
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := demo.Start(ctx, demo.Config{ZK: zktest.Shared(t).ConnectString(), NATS: ns.ClientURL(), Logger: zktest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("closing the stack: %v", err)
		}
	})
	return env
}

// TestPeakShaving runs the peak-shaving scenario at a small scale (C =
// 100/s; 1s at 50/s, 1s at 400/s, 1s at 50/s) and checks the shapes issue
// #7 says must hold, with tolerances, not timings; then the report's JSON,
// text, CSV and charts from that run.
func TestPeakShaving(t *testing.T) {
	cfg := demo.DefaultPeakShaving(demo.Options{Capacity: 100, Scale: 0.2})
	sc, err := demo.NewPeakShaving(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, report := runScenario(t, sc)
	rpc, mq := res.Path(demo.PathRPC), res.Path(demo.PathMQ)
	fig := func(p *demo.PathResult, key string) float64 {
		t.Helper()
		v, ok := p.Figure(key)
		if !ok {
			t.Fatalf("%s has no figure %q", p.Name, key)
		}
		return v
	}
	limit := cfg.Capacity * 1.1

	t.Run("both paths got the same schedule", func(t *testing.T) {
		if rpc.Offered != 500 || mq.Offered != 500 {
			t.Errorf("offered rpc %d, mq %d; want 500 each (50 + 400 + 50)", rpc.Offered, mq.Offered)
		}
		for _, p := range res.Paths {
			if d := fig(p, "client_dropped"); d != 0 {
				t.Errorf("%s: the client dropped %v sends", p.Name, d)
			}
		}
	})
	t.Run("mq shaves the peak", func(t *testing.T) {
		if mq.Lost != 0 || mq.Oversold != 0 {
			t.Errorf("mq lost %d, oversold %d; want 0", mq.Lost, mq.Oversold)
		}
		if mq.Accepted != mq.Offered || mq.Completed != mq.Accepted {
			t.Errorf("mq accepted %d of %d, completed %d; want all", mq.Accepted, mq.Offered, mq.Completed)
		}
		if mq.MaxDownstreamPerS > limit || mq.MaxDownstreamPerS < cfg.Capacity/2 {
			t.Errorf("mq downstream max %.1f/s; want at most %.1f/s (C + 10 %%), and busy", mq.MaxDownstreamPerS, limit)
		}
		if depth := fig(mq, "queue_depth_max"); depth < 100 {
			t.Errorf("mq queue depth max %v; the burst should have queued up (~300)", depth)
		}
		if mq.DrainS <= 0 || mq.P99ms <= rpc.P99ms {
			t.Errorf("mq drain %.1fs, p99 %.0fms (rpc %.0fms): want a drain and a longer tail than rpc", mq.DrainS, mq.P99ms, rpc.P99ms)
		}
	})
	t.Run("rpc refuses part of the burst and loses nothing it accepted", func(t *testing.T) {
		refused := fig(rpc, "burst_refused")
		if refused <= 0 || rpc.Rejected+int64(fig(rpc, "timed_out")) <= 0 {
			t.Errorf("rpc refused %v of the burst (%d rejected, %v timed out); want some", refused, rpc.Rejected, fig(rpc, "timed_out"))
		}
		if rpc.Lost != 0 || rpc.Oversold != 0 || rpc.Completed != rpc.Accepted {
			t.Errorf("rpc lost %d, oversold %d, completed %d of %d accepted", rpc.Lost, rpc.Oversold, rpc.Completed, rpc.Accepted)
		}
		if rpc.Accepted+rpc.Rejected+int64(fig(rpc, "timed_out")+fig(rpc, "failed")) != rpc.Offered {
			t.Errorf("rpc: accepted, rejected, timed out and failed do not add up to offered %d", rpc.Offered)
		}
		if rpc.MaxDownstreamPerS > limit {
			t.Errorf("rpc downstream max %.1f/s over %.1f/s", rpc.MaxDownstreamPerS, limit)
		}
	})
	t.Run("every purchase is accounted for at the store", func(t *testing.T) {
		for _, p := range res.Paths {
			applied := fig(p, "sold") + fig(p, "sold_out")
			if want := float64(p.Completed) + fig(p, "applied_not_accepted"); applied != want {
				t.Errorf("%s: store applied %v, want completed + applied-not-accepted = %v", p.Name, applied, want)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		checkJSON(t, report, "peak-shaving", []string{demo.PathRPC, demo.PathMQ}, "timed_out", "burst_refused_pct", "queue_depth_max")
	})
	t.Run("text", func(t *testing.T) {
		var buf bytes.Buffer
		if err := report.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"== peak-shaving", "FIGURE", "RPC", "MQ", "lost", "max downstream rate", "RPC cannot shave peaks", "MQ shaves the peak"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("report has no %q:\n%s", want, &buf)
			}
		}
	})
	t.Run("out", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		files, err := report.WriteOut(dir)
		if err != nil {
			t.Fatal(err)
		}
		checkOut(t, dir, files)
	})
}

// checkGoroutines fails t if, once t's cleanups (registered after this
// call) have run, more goroutines are left than when it was called: every
// server, worker, sampler and connection the run started must be gone.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// checkOut checks that WriteOut wrote the CSV and both charts, non-empty
// and of their kind.
func checkOut(t *testing.T, dir string, files []string) {
	t.Helper()
	want := []string{"peak-shaving.csv", "peak-shaving-rate.png", "peak-shaving-depth.png"}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	if !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	for _, name := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		switch filepath.Ext(name) {
		case ".png":
			if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 1000 {
				t.Errorf("%s: %d bytes, not a PNG image", name, len(b))
			}
		case ".csv":
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if !strings.HasPrefix(lines[0], "path,t_s,bucket_s,") || !strings.Contains(lines[0], "downstream") || !strings.Contains(lines[0], "queue_depth") {
				t.Errorf("%s header %q", name, lines[0])
			}
			var rpc, mq int
			for _, l := range lines[1:] {
				switch {
				case strings.HasPrefix(l, "rpc,"):
					rpc++
				case strings.HasPrefix(l, "mq,"):
					mq++
				}
			}
			if rpc < 8 || mq < 8 {
				t.Errorf("%s: %d rpc and %d mq rows, want a bucket per 250ms of each run", name, rpc, mq)
			}
		}
	}
}

func TestDemoProfileSends(t *testing.T) {
	tests := []struct {
		name    string
		profile demo.Profile
		want    int
		phases  []int // sends per phase
	}{
		{"steady", demo.Profile{{Name: "s", Duration: time.Second, Rate: 10}}, 10, []int{10}},
		{"burst between steady", demo.Profile{{"a", time.Second, 10}, {"b", 500 * time.Millisecond, 40}, {"c", time.Second, 10}}, 40, []int{10, 20, 10}},
		{"a silent phase", demo.Profile{{"a", time.Second, 0}, {"b", time.Second, 3}}, 3, []int{0, 3}},
		{"fractions round", demo.Profile{{"a", 250 * time.Millisecond, 10}}, 3, []int{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sends := tt.profile.Sends()
			if len(sends) != tt.want {
				t.Fatalf("%d sends, want %d", len(sends), tt.want)
			}
			counts := make([]int, len(tt.profile))
			var start time.Duration
			for i, s := range sends {
				counts[s.Phase]++
				if i > 0 && s.At < sends[i-1].At {
					t.Fatalf("send %d at %v before send %d at %v", i, s.At, i-1, sends[i-1].At)
				}
				if s.At < 0 || s.At >= tt.profile.Duration() {
					t.Fatalf("send %d at %v outside the profile", i, s.At)
				}
			}
			if !slices.Equal(counts, tt.phases) {
				t.Errorf("sends per phase %v, want %v", counts, tt.phases)
			}
			for i, ph := range tt.profile {
				for _, s := range sends {
					if s.Phase == i && (s.At < start || s.At >= start+ph.Duration) {
						t.Errorf("send at %v is not in phase %d [%v, %v)", s.At, i, start, start+ph.Duration)
					}
				}
				start += ph.Duration
			}
		})
	}
	if err := (demo.Profile{{"a", 0, 1}}).Validate(); err == nil {
		t.Error("a phase of no duration validated")
	}
	if err := (demo.Profile{}).Validate(); err == nil {
		t.Error("an empty profile validated")
	}
}

// TestDemoDispatchNeverWaits has every send block for a second, five
// times the whole schedule: later sends must still go out on time (open
// loop), none waiting for a running one.
func TestDemoDispatchNeverWaits(t *testing.T) {
	sends := demo.Profile{{"a", 200 * time.Millisecond, 100}}.Sends() // 20, 10ms apart
	const sendTakes = time.Second
	var (
		mu    sync.Mutex
		begun []time.Duration
	)
	start := time.Now().Add(20 * time.Millisecond)
	st := demo.Dispatch(context.Background(), start, sends, 100, func(ctx context.Context, i int, scheduled time.Time) {
		mu.Lock()
		begun = append(begun, time.Since(scheduled))
		mu.Unlock()
		time.Sleep(sendTakes)
	})
	if st.Sent != 20 || st.Dropped != 0 || len(begun) != 20 {
		t.Fatalf("sent %d, dropped %d, begun %d; want 20, 0, 20", st.Sent, st.Dropped, len(begun))
	}
	if late := slices.Max(begun); late >= sendTakes {
		t.Errorf("a send began %v after its time, as if it had waited for a running send", late)
	}
	if took := time.Since(start); took >= 3*sendTakes { // one after another: 20s
		t.Errorf("dispatch took %v: sends ran one after another", took)
	}
}

// TestDemoDispatchDropsOverLimit checks that a send due while the most
// allowed run is dropped and counted, not delayed. Every send is due when
// Dispatch starts, and none of the three let through returns before all
// are dealt with, so the count does not depend on timing.
func TestDemoDispatchDropsOverLimit(t *testing.T) {
	release := make(chan struct{})
	sends := demo.Profile{{"a", 50 * time.Millisecond, 200}}.Sends() // 10
	var began atomic.Int64
	done := make(chan demo.DispatchStats)
	go func() {
		done <- demo.Dispatch(context.Background(), time.Now().Add(-time.Minute), sends, 3, func(context.Context, int, time.Time) {
			began.Add(1)
			<-release
		})
	}()
	for deadline := time.Now().Add(10 * time.Second); began.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	st := <-done
	if st.Sent != 3 || st.Dropped != 7 || began.Load() != 3 {
		t.Errorf("sent %d (%d began), dropped %d; want 3 and 7", st.Sent, began.Load(), st.Dropped)
	}
}

// TestDemoDispatchStopsWithContext checks that no send due after ctx ends
// is made, and that Dispatch returns then rather than at the schedule's
// end.
func TestDemoDispatchStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var n, late atomic.Int64
	start := time.Now()
	demo.Dispatch(ctx, start, demo.Profile{{"a", 10 * time.Second, 10}}.Sends(), 10, func(_ context.Context, _ int, scheduled time.Time) {
		n.Add(1)
		if !scheduled.Before(deadline) {
			late.Add(1)
		}
	})
	if took := time.Since(start); took > time.Second {
		t.Errorf("Dispatch returned %v after ctx ended at 50ms", took)
	}
	if n.Load() > 1 || late.Load() != 0 {
		t.Errorf("%d sends made, %d of them due after ctx ended; want at most the one due at once", n.Load(), late.Load())
	}
}

func TestDemoMaxRate(t *testing.T) {
	tests := []struct {
		name   string
		counts []float64
		window time.Duration
		want   float64
	}{
		{"even", []float64{25, 25, 25, 25, 25, 25}, time.Second, 100},
		{"a burst in one bucket spreads over the window", []float64{0, 0, 40, 0, 0, 0}, time.Second, 40},
		{"the busiest second", []float64{10, 30, 30, 30, 30, 10}, time.Second, 120},
		{"shorter than a window", []float64{5, 5}, time.Second, 10},
		{"one-bucket window", []float64{5, 20, 5}, 250 * time.Millisecond, 80},
		{"none", nil, time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := demo.MaxRate(tt.counts, 250*time.Millisecond, tt.window); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("MaxRate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDemoSummarise(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 200; i++ {
		lat = append(lat, time.Duration(201-i)*time.Millisecond)
	}
	s := demo.Summarise(lat)
	if s.N != 200 || s.P50 != 100*time.Millisecond || s.P99 != 198*time.Millisecond || s.Max != 200*time.Millisecond {
		t.Errorf("summary %+v, want n 200, p50 100ms, p99 198ms, max 200ms", s)
	}
	if (demo.Summarise(nil) != demo.LatencySummary{}) {
		t.Error("the summary of nothing is not zero")
	}
}

// TestDemoRecorder checks buckets, gauges and the series' padding.
func TestDemoRecorder(t *testing.T) {
	start := time.Now()
	r := demo.NewRecorder(start, 100*time.Millisecond)
	r.Count(demo.ColOffered, start.Add(-time.Second)) // before the start: bucket 0
	r.Count(demo.ColOffered, start.Add(50*time.Millisecond))
	r.Count(demo.ColOffered, start.Add(250*time.Millisecond))
	r.Gauge(demo.ColQueueDepth, start.Add(110*time.Millisecond), 3)
	r.Gauge(demo.ColQueueDepth, start.Add(120*time.Millisecond), 7)
	r.Gauge(demo.ColQueueDepth, start.Add(130*time.Millisecond), 5)
	s := r.Series("p", start.Add(450*time.Millisecond))
	if s.Buckets() != 5 {
		t.Fatalf("%d buckets, want 5", s.Buckets())
	}
	if got := s.Column(demo.ColOffered); !slices.Equal(got, []float64{2, 0, 1, 0, 0}) {
		t.Errorf("offered %v", got)
	}
	depth := s.Column(demo.ColQueueDepth)
	if !math.IsNaN(depth[0]) || depth[1] != 7 || !math.IsNaN(depth[2]) {
		t.Errorf("depth %v, want [NaN 7 NaN ...]", depth)
	}
}

func TestDemoSelect(t *testing.T) {
	all := []string{"peak-shaving", "broadcast", "decoupling", "mq-costs"}
	tests := []struct {
		name string
		args []string
		want []string
		err  error
	}{
		{"no argument is all", nil, all, nil},
		{"all", []string{"all"}, all, nil},
		{"one", []string{"peak-shaving"}, []string{"peak-shaving"}, nil},
		{"twice is once", []string{"peak-shaving", "peak-shaving"}, []string{"peak-shaving"}, nil},
		{"catalog order", []string{"mq-costs", "broadcast"}, []string{"broadcast", "mq-costs"}, nil},
		{"unknown", []string{"peak"}, nil, demo.ErrUnknownScenario},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := demo.Select(tt.args)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			var names []string
			for _, e := range got {
				names = append(names, e.Name)
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("selected %v, want %v", names, tt.want)
			}
		})
	}
}

// TestDemoCatalogNew checks that every entry makes its scenario under
// valid options, and refuses invalid ones with the options' own error.
func TestDemoCatalogNew(t *testing.T) {
	bad := demo.Options{Capacity: 0, Scale: 1}
	for _, e := range demo.Catalog {
		t.Run(e.Name, func(t *testing.T) {
			s, err := e.New(demo.DefaultOptions())
			if err != nil || s.Name() != e.Name {
				t.Fatalf("New(defaults) = %v, %v; want scenario %s", s, err, e.Name)
			}
			_, err = e.New(bad)
			if want := bad.Validate(); err == nil || err.Error() != want.Error() {
				t.Errorf("New(%+v) err %v, want %v", bad, err, want)
			}
		})
	}
}

// TestDemoPathRunFigures checks two of the figures PathRun.Result
// derives: oversold, from a store whose buyers read before each other's
// writes, as a broken lock would let them; and latency, over completed
// requests alone.
func TestDemoPathRunFigures(t *testing.T) {
	now := time.Now()
	result := func(t *testing.T, store *flashsale.Store, tr *demo.Tracker, rec *demo.Recorder) *demo.PathResult {
		t.Helper()
		return demo.PathRun{Name: "p", Tracker: tr, Recorder: rec, Store: store, Capacity: 1, ScheduleEnd: now}.Result()
	}
	t.Run("oversold", func(t *testing.T) {
		for _, tt := range []struct {
			name        string
			interleaved bool
		}{{"one buyer after the other", false}, {"both read before either writes", true}} {
			t.Run(tt.name, func(t *testing.T) {
				store, err := flashsale.NewStore(map[string]int64{"a": 1})
				if err != nil {
					t.Fatal(err)
				}
				buy := func(id string, token uint64, snap flashsale.Snapshot) {
					t.Helper()
					if _, err := store.Write("a", id, token, snap); err != nil {
						t.Fatal(err)
					}
				}
				read := func() flashsale.Snapshot {
					t.Helper()
					snap, err := store.Read("a")
					if err != nil {
						t.Fatal(err)
					}
					return snap
				}
				if tt.interleaved {
					s1, s2 := read(), read()
					buy("p1", 1, s1)
					buy("p2", 2, s2)
				} else {
					buy("p1", 1, read())
					buy("p2", 2, read())
				}
				rec := demo.NewRecorder(now, 250*time.Millisecond)
				p := result(t, store, demo.NewTracker(rec), rec)
				if got := p.Oversold > 0; got != tt.interleaved {
					t.Errorf("oversold %d, want it above 0: %v", p.Oversold, tt.interleaved)
				}
			})
		}
	})
	t.Run("latency counts completed requests only", func(t *testing.T) {
		store, err := flashsale.NewStore(map[string]int64{"a": 1})
		if err != nil {
			t.Fatal(err)
		}
		rec := demo.NewRecorder(now, 250*time.Millisecond)
		tr := demo.NewTracker(rec)
		tr.Offer("done", now, 0)
		tr.Accept("done", now.Add(5*time.Millisecond))
		tr.Settle("done", now.Add(10*time.Millisecond))
		tr.Offer("refused", now, 0) // applied, but its caller heard an error
		tr.Refuse("refused", now.Add(time.Second), demo.ColTimedOut)
		tr.Settle("refused", now.Add(2*time.Second))
		tr.Offer("pending", now, 0) // accepted, never settled
		tr.Accept("pending", now.Add(time.Millisecond))
		if l := tr.Latencies(); l.N != 1 || l.Max != 10*time.Millisecond {
			t.Errorf("latencies %+v, want the one completed request's 10ms", l)
		}
		if p := result(t, store, tr, rec); p.P50ms != 10 || p.P99ms != 10 || p.MaxMs != 10 {
			t.Errorf("p50 %vms, p99 %vms, max %vms; want 10ms each", p.P50ms, p.P99ms, p.MaxMs)
		}
	})
}

func TestDemoOptions(t *testing.T) {
	for _, o := range []demo.Options{{Capacity: 0, Scale: 1}, {Capacity: 100, Scale: 0}, {Capacity: math.NaN(), Scale: 1}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v validated", o)
		}
	}
	if err := demo.DefaultOptions().Validate(); err != nil {
		t.Error(err)
	}
	if _, err := demo.NewPeakShaving(demo.PeakShavingConfig{}); err == nil {
		t.Error("a zero peak-shaving config validated")
	}
}
