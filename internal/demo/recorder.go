package demo

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// The columns every path's series has, by name (CSV headers, chart
// legends). Counts are events per bucket; gauges are the largest sample
// taken in the bucket.
const (
	ColOffered    = "offered"     // count: requests sent
	ColAccepted   = "accepted"    // count: requests the path took
	ColRejected   = "rejected"    // count: refused at the door
	ColTimedOut   = "timed_out"   // count: the caller's deadline passed
	ColFailed     = "failed"      // count: other errors
	ColCompleted  = "completed"   // count: requests settled at the store
	ColDownstream = "downstream"  // count: purchases the downstream admitted
	ColQueueDepth = "queue_depth" // gauge: requests waiting or in progress
)

// Kind says how a column's values are made.
type Kind int

const (
	// Count columns count events per bucket; charts show them per second.
	Count Kind = iota
	// Gauge columns keep the largest sample taken in a bucket.
	Gauge
)

// Column is one named series of a path.
type Column struct {
	Name string
	Kind Kind
}

// Series is a path's time series: per bucket of Width from the start of
// its schedule, one value per column.
type Series struct {
	// Path names the path ("rpc", "mq").
	Path string
	// Width is the bucket width.
	Width time.Duration
	// Columns are in the order they were first recorded.
	Columns []Column
	// Values[c][b] is column c's value in bucket b; a gauge never sampled
	// in a bucket is NaN.
	Values [][]float64
}

// Buckets returns the number of buckets.
func (s *Series) Buckets() int {
	if len(s.Values) == 0 {
		return 0
	}
	return len(s.Values[0])
}

// Column returns the values of the named column, or nil.
func (s *Series) Column(name string) []float64 {
	for i, c := range s.Columns {
		if c.Name == name {
			return s.Values[i]
		}
	}
	return nil
}

// Recorder records one path's events in time buckets from a start time.
// It is safe for concurrent use.
type Recorder struct {
	start time.Time
	width time.Duration

	mu      sync.Mutex
	columns []Column
	values  map[string][]float64
}

// NewRecorder returns a recorder whose bucket 0 starts at start (events
// before start fall in it).
func NewRecorder(start time.Time, width time.Duration) *Recorder {
	return &Recorder{start: start, width: width, values: map[string][]float64{}}
}

// Restart drops everything recorded and starts bucket 0 at start: for a
// recorder made before its path was set up, once the schedule's start is
// known.
func (r *Recorder) Restart(start time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.start = start
	r.columns = nil
	r.values = map[string][]float64{}
}

// bucket returns the values of col up to at's bucket. r.mu must be held.
func (r *Recorder) bucket(col string, kind Kind, at time.Time) ([]float64, int) {
	b := max(int(at.Sub(r.start)/r.width), 0)
	v, ok := r.values[col]
	if !ok {
		r.columns = append(r.columns, Column{Name: col, Kind: kind})
	}
	for len(v) <= b {
		if kind == Gauge {
			v = append(v, math.NaN())
		} else {
			v = append(v, 0)
		}
	}
	r.values[col] = v
	return v, b
}

// Count adds one event of column col at time at.
func (r *Recorder) Count(col string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, b := r.bucket(col, Count, at)
	v[b]++
}

// Gauge records a sample of column col taken at at; a bucket keeps its
// largest.
func (r *Recorder) Gauge(col string, at time.Time, x float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, b := r.bucket(col, Gauge, at)
	if math.IsNaN(v[b]) || x > v[b] {
		v[b] = x
	}
}

// Sample records fn's value as gauge col every interval (and once at
// once) until the returned stop is called; stop waits for the sampler's
// goroutine. fn's context ends at stop, and within each interval. A
// sample that fails is skipped.
func (r *Recorder) Sample(col string, interval time.Duration, fn func(ctx context.Context) (float64, error)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sctx, scancel := context.WithTimeout(ctx, interval)
			x, err := fn(sctx)
			scancel()
			if err == nil {
				r.Gauge(col, time.Now(), x)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// Series returns a copy of what has been recorded, every column padded
// to the same number of buckets (at least through until).
func (r *Recorder) Series(path string, until time.Time) *Series {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := max(int(until.Sub(r.start)/r.width)+1, 0)
	for _, v := range r.values {
		n = max(n, len(v))
	}
	s := &Series{Path: path, Width: r.width, Columns: slices.Clone(r.columns)}
	for _, c := range s.Columns {
		v := slices.Clone(r.values[c.Name])
		for len(v) < n {
			if c.Kind == Gauge {
				v = append(v, math.NaN())
			} else {
				v = append(v, 0)
			}
		}
		s.Values = append(s.Values, v)
	}
	return s
}

// MaxRate returns the most events of count column col in any window of
// the given length (a whole number of buckets, sliding one bucket at a
// time), per second.
func (r *Recorder) MaxRate(col string, window time.Duration) float64 {
	r.mu.Lock()
	v := slices.Clone(r.values[col])
	r.mu.Unlock()
	return MaxRate(v, r.width, window)
}

// MaxRate returns the most events of counts (per bucket of width) in any
// window of the given length, rounded up to whole buckets, per second.
// With fewer buckets than a window, it is their sum over the window.
func MaxRate(counts []float64, width, window time.Duration) float64 {
	k := max(int((window+width-1)/width), 1)
	var best, sum float64
	for i, c := range counts {
		sum += c
		if i >= k {
			sum -= counts[i-k]
		}
		best = max(best, sum)
	}
	return best / (time.Duration(k) * width).Seconds()
}

// LatencySummary is a set of latencies in a few figures.
type LatencySummary struct {
	N             int
	P50, P99, Max time.Duration
}

// Summarise returns the nearest-rank p50 and p99 and the maximum of lat
// (all 0 for none). It sorts lat.
func Summarise(lat []time.Duration) LatencySummary {
	if len(lat) == 0 {
		return LatencySummary{}
	}
	slices.Sort(lat)
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(lat)))) - 1
		return lat[min(max(i, 0), len(lat)-1)]
	}
	return LatencySummary{N: len(lat), P50: rank(0.50), P99: rank(0.99), Max: lat[len(lat)-1]}
}
