package benchrun_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
	"github.com/switchyard-dev/switchyard/internal/benchrun/benchruntest"
)

// leakMarkers are the goroutines a finished Loop.Run must not leave.
var leakMarkers = []string{"switchyard/internal/benchrun."}

// TestAlternate checks the schedule: each concurrency in turn, both sides
// in ABBA order round after round, each side's results kept in round
// order under CellKey, and the first error ending it.
func TestAlternate(t *testing.T) {
	var phases []string
	res, err := benchrun.Alternate([]int{1, 64}, 3, "a", "b", func(s string, c, i int) (int, error) {
		phases = append(phases, fmt.Sprintf("%s c%d r%d", s, c, i))
		return 100*c + i, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"a c1 r0", "b c1 r0", "b c1 r1", "a c1 r1", "a c1 r2", "b c1 r2",
		"a c64 r0", "b c64 r0", "b c64 r1", "a c64 r1", "a c64 r2", "b c64 r2",
	}
	if !slices.Equal(phases, want) {
		t.Errorf("phases ran in the order %q, want %q", phases, want)
	}
	wantRes := map[string]map[string][]int{
		"a": {"c1": {100, 101, 102}, "c64": {6400, 6401, 6402}},
		"b": {"c1": {100, 101, 102}, "c64": {6400, 6401, 6402}},
	}
	if !reflect.DeepEqual(res, wantRes) {
		t.Errorf("results %v, want %v", res, wantRes)
	}

	boom := errors.New("boom")
	calls := 0
	_, err = benchrun.Alternate([]int{1, 64}, 3, "a", "b", func(string, int, int) (int, error) {
		calls++
		if calls == 3 {
			return 0, boom
		}
		return 0, nil
	})
	if !errors.Is(err, boom) || calls != 3 {
		t.Errorf("Alternate with a failing third phase: %v after %d phases, want boom after 3", err, calls)
	}
}

func TestAlternateAll(t *testing.T) {
	var phases []string
	res, err := benchrun.AlternateAll([]int{1}, 2, []string{"a", "b", "c"}, func(s string, c, i int) (string, error) {
		phases = append(phases, fmt.Sprintf("%s r%d", s, i))
		return s, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a r0", "b r0", "c r0", "c r1", "b r1", "a r1"}; !slices.Equal(phases, want) {
		t.Errorf("phases ran in the order %q, want %q", phases, want)
	}
	if len(res) != 3 || len(res["c"]["c1"]) != 2 {
		t.Errorf("results %v, want 2 rounds of each of 3 sides", res)
	}
}

func TestABBA(t *testing.T) {
	for i, want := range [][]string{{"a", "b"}, {"b", "a"}, {"a", "b"}, {"b", "a"}} {
		if got := benchrun.ABBA("a", "b", i); !slices.Equal(got, want) {
			t.Errorf("ABBA round %d = %q, want %q", i, got, want)
		}
	}
}

func TestRoundOrder(t *testing.T) {
	sides := []string{"a", "b", "c"}
	for i, want := range [][]string{{"a", "b", "c"}, {"c", "b", "a"}, {"a", "b", "c"}, {"c", "b", "a"}} {
		if got := benchrun.RoundOrder(sides, i); !slices.Equal(got, want) {
			t.Errorf("RoundOrder round %d = %q, want %q", i, got, want)
		}
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(sides, want) {
		t.Errorf("RoundOrder changed its argument to %q, want %q", sides, want)
	}
}

func TestCellKey(t *testing.T) {
	if got := benchrun.CellKey(64); got != "c64" {
		t.Errorf("CellKey(64) = %q, want c64", got)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		v    []float64
		want float64
	}{
		{"none", nil, 0},
		{"one", []float64{3}, 3},
		{"odd count", []float64{3, 1, 2}, 2},
		{"even count: the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.v)
			if got := benchrun.Median(tt.v); got != tt.want {
				t.Errorf("Median(%v) = %v, want %v", tt.v, got, tt.want)
			}
			if !slices.Equal(in, tt.v) {
				t.Errorf("Median reordered its input: %v, was %v", tt.v, in)
			}
		})
	}
}

func TestFigures(t *testing.T) {
	tests := []struct {
		name      string
		got, want float64
	}{
		{"ratio to three decimals", benchrun.Ratio(2, 3), 0.667},
		{"ratio over 0", benchrun.Ratio(5, 0), 0},
		{"round1", benchrun.Round1(1.25), 1.3},
		{"round2", benchrun.Round2(1.234), 1.23},
		{"micros", benchrun.Micros(1500 * time.Nanosecond), 1.5},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestMet(t *testing.T) {
	tests := []struct {
		op           string
		value, limit float64
		want         bool
	}{
		{">=", 0.95, 0.95, true},
		{">=", 0.949, 0.95, false},
		{"<=", 1.05, 1.05, true},
		{"<=", 1.051, 1.05, false},
	}
	for _, tt := range tests {
		if got := benchrun.Met(tt.op, tt.value, tt.limit); got != tt.want {
			t.Errorf("Met(%v %s %v) = %v, want %v", tt.value, tt.op, tt.limit, got, tt.want)
		}
	}
}

func TestCheckSchedule(t *testing.T) {
	tests := []struct {
		name             string
		duration, warmup time.Duration
		rounds           int
		concurrency      []int
		want             string // "" for valid
	}{
		{"valid", time.Second, 0, 1, []int{1}, ""},
		{"zero duration", 0, 0, 1, []int{1}, "duration 0s: want a positive duration"},
		{"negative warm-up", time.Second, -time.Second, 1, []int{1}, "warm-up -1s: want 0 or a positive duration"},
		{"no rounds", time.Second, 0, 0, []int{1}, "rounds 0: want 1 or more"},
		{"no concurrency", time.Second, 0, 1, nil, "no concurrency to measure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := benchrun.CheckSchedule(tt.duration, tt.warmup, tt.rounds, tt.concurrency)
			if got := errString(err); got != tt.want {
				t.Errorf("CheckSchedule: %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckConcurrency(t *testing.T) {
	tests := []struct {
		name        string
		concurrency []int
		want        string // "" for valid
	}{
		{"valid", []int{1, 64, benchrun.MaxConcurrency}, ""},
		{"zero", []int{1, 0}, "concurrency 0: want 1 to 4096"},
		{"huge", []int{100000}, "concurrency 100000: want 1 to 4096"},
		{"repeated", []int{8, 8}, "concurrency 8 given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errString(benchrun.CheckConcurrency(tt.concurrency)); got != tt.want {
				t.Errorf("CheckConcurrency(%v): %q, want %q", tt.concurrency, got, tt.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// recorder keeps what a Loop's workers record, with when they recorded
// it.
type recorder struct {
	mu    sync.Mutex
	times []time.Duration
	ends  []time.Time
}

func (r *recorder) record(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.times = append(r.times, d)
	r.ends = append(r.ends, time.Now())
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.times)
}

// sleeper is a Loop's worker whose op sleeps d and counts itself.
func sleeper(d time.Duration, ops *atomic.Int64, rec *recorder) func(int) benchrun.Worker {
	return func(int) benchrun.Worker {
		return benchrun.Worker{
			Op:     func(context.Context) error { ops.Add(1); time.Sleep(d); return nil },
			Record: rec.record,
		}
	}
}

// TestLoopWindow runs a loop to its end: only ops inside the window are
// recorded, with their times, the window is as long as asked, and the
// workers run with the loop's labels.
func TestLoopWindow(t *testing.T) {
	var (
		ops    atomic.Int64
		rec    recorder
		made   []int
		labels sync.Map
	)
	win, err := benchrun.Loop{
		Workers: 4,
		NewWorker: func(i int) benchrun.Worker {
			made = append(made, i) // on Run's goroutine, before any worker starts
			return benchrun.Worker{
				Op: func(ctx context.Context) error {
					ops.Add(1)
					v, _ := pprof.Label(ctx, "side")
					labels.Store(v, true)
					time.Sleep(2 * time.Millisecond)
					return nil
				},
				Record: rec.record,
			}
		},
		Labels:   pprof.Labels("side", "test"),
		Warmup:   50 * time.Millisecond,
		Duration: 200 * time.Millisecond,
	}.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(made, []int{0, 1, 2, 3}) {
		t.Errorf("NewWorker made workers %v, want 0 to 3 once each", made)
	}
	if win.Elapsed < 200*time.Millisecond {
		t.Errorf("window of %v, shorter than its Duration 200ms", win.Elapsed)
	}
	if win.Failed != 0 || win.Err != nil {
		t.Errorf("%d workers failed (%v), want none", win.Failed, win.Err)
	}
	n := rec.count()
	if n == 0 || int64(n) >= ops.Load() {
		t.Errorf("%d ops recorded of %d run, want some but not the warm-up's", n, ops.Load())
	}
	for _, d := range rec.times {
		if d < 2*time.Millisecond {
			t.Fatalf("an op recorded as taking %v, less than its sleep", d)
		}
	}
	if _, ok := labels.Load("test"); !ok {
		t.Error("ops did not run with the label side=test")
	}
	if win.Used.Mallocs != 0 || win.Used.Bytes != 0 {
		t.Errorf("allocations %+v measured without Allocs", win.Used)
	}
	benchruntest.CheckNoLeaks(t, leakMarkers)
}

// sink keeps TestLoopUsage's allocations on the heap.
var sink atomic.Pointer[[]byte]

// TestLoopUsage checks that a loop with Allocs measures the allocations
// in the window, and on Linux the CPU time.
func TestLoopUsage(t *testing.T) {
	var rec recorder
	win, err := benchrun.Loop{
		Workers: 2,
		NewWorker: func(int) benchrun.Worker {
			return benchrun.Worker{
				Op: func(context.Context) error {
					b := make([]byte, 1024)
					sink.Store(&b)
					for start := time.Now(); time.Since(start) < 100*time.Microsecond; {
					}
					return nil
				},
				Record: rec.record,
			}
		},
		Duration: 100 * time.Millisecond,
		Allocs:   true,
	}.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := uint64(rec.count())
	if win.Used.Mallocs < n || win.Used.Bytes < 1024*n {
		t.Errorf("usage %+v for %d ops of 1 KiB each", win.Used, n)
	}
	if runtime.GOOS == "linux" && win.Used.CPU <= 0 {
		t.Errorf("no CPU time measured for busy ops: %+v", win.Used)
	}
	benchruntest.CheckNoLeaks(t, leakMarkers)
}

// TestLoopFailure fails one worker's op: the phase ends at once, with the
// failure in the Window, not as an error.
func TestLoopFailure(t *testing.T) {
	boom := errors.New("boom")
	var rec recorder
	start := time.Now()
	win, err := benchrun.Loop{
		Workers: 3,
		NewWorker: func(i int) benchrun.Worker {
			n := 0
			return benchrun.Worker{
				Op: func(context.Context) error {
					n++
					if i == 1 && n == 5 {
						return boom
					}
					time.Sleep(time.Millisecond)
					return nil
				},
				Record: rec.record,
			}
		},
		Warmup:   10 * time.Millisecond,
		Duration: time.Minute,
	}.Run(t.Context())
	if err != nil {
		t.Fatalf("Run with a failed op: %v, want nil (the failure is in the Window)", err)
	}
	if win.Failed != 1 || !errors.Is(win.Err, boom) {
		t.Errorf("Failed %d, Err %v: want 1 and boom", win.Failed, win.Err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run took %v after an op failed", d)
	}
	benchruntest.CheckNoLeaks(t, leakMarkers)
}

// TestLoopCancelled ends ctx in the window: Run returns ctx's error once
// its workers have stopped.
func TestLoopCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stop := time.AfterFunc(100*time.Millisecond, cancel)
	defer stop.Stop()
	var (
		ops atomic.Int64
		rec recorder
	)
	_, err := benchrun.Loop{
		Workers:   2,
		NewWorker: sleeper(time.Millisecond, &ops, &rec),
		Duration:  time.Minute,
	}.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled: %v, want context.Canceled", err)
	}
	benchruntest.CheckNoLeaks(t, leakMarkers)
}

// TestLoopSettle checks what Settle waits for: the window opens only once
// every worker has completed an op, a window shorter than an op is held
// open until one is recorded, and a worker with no op done within Settle
// is ErrNotWarmed.
func TestLoopSettle(t *testing.T) {
	t.Run("window opens after every worker's first op", func(t *testing.T) {
		var (
			rec       recorder
			firstDone atomic.Int64 // unix nanos when worker 0's first op ended
		)
		_, err := benchrun.Loop{
			Workers: 3,
			NewWorker: func(i int) benchrun.Worker {
				first := true
				return benchrun.Worker{
					Op: func(context.Context) error {
						if i == 0 && first {
							first = false
							time.Sleep(300 * time.Millisecond)
							firstDone.Store(time.Now().UnixNano())
							return nil
						}
						time.Sleep(time.Millisecond)
						return nil
					},
					Record: rec.record,
				}
			},
			Duration: 50 * time.Millisecond,
			Settle:   time.Minute,
		}.Run(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if rec.count() == 0 {
			t.Fatal("no op recorded")
		}
		for i, end := range rec.ends {
			if started := end.Add(-rec.times[i]); started.UnixNano() < firstDone.Load() {
				t.Fatalf("an op that started %v before worker 0's first op ended was recorded",
					time.Duration(firstDone.Load()-started.UnixNano()))
			}
		}
	})

	t.Run("a window shorter than an op", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			op     time.Duration // long enough that no stall lets one end in a 1ms window
			settle time.Duration
			want   bool // an op recorded
		}{
			{"without Settle closes with none", time.Second, 0, false},
			{"with Settle is held open for one", 50 * time.Millisecond, time.Minute, true},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var (
					ops atomic.Int64
					rec recorder
				)
				win, err := benchrun.Loop{
					Workers:   1,
					NewWorker: sleeper(tt.op, &ops, &rec),
					Duration:  time.Millisecond,
					Settle:    tt.settle,
				}.Run(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if got := rec.count() > 0; got != tt.want {
					t.Errorf("%d ops recorded in a window of %v", rec.count(), win.Elapsed)
				}
				if tt.want && win.Elapsed < tt.op {
					t.Errorf("window of %v closed before an op of %v could be timed in it", win.Elapsed, tt.op)
				}
			})
		}
	})

	t.Run("a worker with no op done", func(t *testing.T) {
		var (
			ops atomic.Int64
			rec recorder
		)
		_, err := benchrun.Loop{
			Workers:   2,
			NewWorker: sleeper(time.Second, &ops, &rec), // 20 times Settle
			Duration:  time.Millisecond,
			Settle:    50 * time.Millisecond,
		}.Run(t.Context())
		if !errors.Is(err, benchrun.ErrNotWarmed) {
			t.Fatalf("Run: %v, want ErrNotWarmed", err)
		}
	})
	benchruntest.CheckNoLeaks(t, leakMarkers)
}

// TestStartSide checks that a side starts under its pprof label, with a
// setup context bounded by the timeout.
func TestStartSide(t *testing.T) {
	got, err := benchrun.StartSide(t.Context(), "raw", time.Minute, func(ctx, setup context.Context) (string, error) {
		side, _ := pprof.Label(ctx, "side")
		deadline, ok := setup.Deadline()
		if !ok || time.Until(deadline) > time.Minute {
			return "", fmt.Errorf("setup deadline %v (%v), want within a minute", deadline, ok)
		}
		return side, nil
	})
	if err != nil || got != "raw" {
		t.Errorf("StartSide: side label %q, error %v; want raw", got, err)
	}
	boom := errors.New("boom")
	if _, err := benchrun.StartSide(t.Context(), "raw", time.Minute, func(context.Context, context.Context) (int, error) {
		return 0, boom
	}); !errors.Is(err, boom) {
		t.Errorf("StartSide of a failing start: %v, want its error", err)
	}
}
