package rpcbench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestBucketsCoverValues checks that every value falls in the bucket
// whose range holds it, that the buckets tile the range without gaps, and
// that no bucket is wider than 1/128 of its lowest value.
func TestBucketsCoverValues(t *testing.T) {
	next := int64(0)
	for i := range numBuckets {
		low, width := bucketRange(i)
		if low != next {
			t.Fatalf("bucket %d starts at %d, want %d (the end of the one before)", i, low, next)
		}
		if i >= 2*subCount && float64(width) > float64(low)/subCount {
			t.Fatalf("bucket %d [%d, +%d) is wider than 1/%d of its value", i, low, width, subCount)
		}
		for _, v := range []int64{low, low + width - 1} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		next = low + width
	}
	for _, v := range []int64{-5, next, math.MaxInt64} {
		want := 0
		if v > 0 {
			want = numBuckets - 1
		}
		if got := bucketOf(v); got != want {
			t.Errorf("bucketOf(%d) = %d, want %d (clamped)", v, got, want)
		}
	}
}

// TestQuantiles compares the histogram's quantiles with the exact ones of
// the same values, for distributions of different spread.
func TestQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func() time.Duration
	}{
		{"constant", func() time.Duration { return 87 * time.Microsecond }},
		{"uniform 50-150µs", func() time.Duration {
			return 50*time.Microsecond + time.Duration(r.Int64N(int64(100*time.Microsecond)))
		}},
		{"exponential mean 1ms", func() time.Duration { return time.Duration(r.ExpFloat64() * float64(time.Millisecond)) }},
		{"sub-128ns", func() time.Duration { return time.Duration(r.Int64N(128)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			vals := make([]time.Duration, 20000)
			for i := range vals {
				vals[i] = tt.gen()
				h.record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
				got := h.quantile(q)
				if diff := math.Abs(float64(got - exact)); diff > float64(exact)/subCount+1 {
					t.Errorf("quantile %v = %v, exact %v: off by more than 1/%d", q, got, exact, subCount)
				}
			}
		})
	}
}

// TestMerge checks that merged histograms answer as one that recorded
// everything, and that an empty one answers 0.
func TestMerge(t *testing.T) {
	var a, b, all, empty histogram
	for i := range 1000 {
		d := time.Duration(i) * time.Microsecond
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(&b)
	for _, q := range []float64{0.5, 0.99} {
		if a.quantile(q) != all.quantile(q) {
			t.Errorf("merged quantile %v = %v, want %v", q, a.quantile(q), all.quantile(q))
		}
	}
	if a.total != 1000 {
		t.Errorf("merged total %d, want 1000", a.total)
	}
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty histogram's median = %v, want 0", got)
	}
}
