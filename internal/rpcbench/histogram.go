package rpcbench

import (
	"math/bits"
	"time"
)

// histogram counts durations in log-linear buckets, as HdrHistogram does:
// exact below 2^subBits ns, and above that 2^subBits buckets per power of
// two, so a bucket is at most 1/2^subBits (0.8%) of its value wide. Its
// memory is fixed (about 30 KiB) however many calls it counts. It is not
// safe for concurrent use: each worker has its own, merged at the end.
type histogram struct {
	counts [numBuckets]uint64
	total  uint64
}

const (
	subBits    = 7
	subCount   = 1 << subBits
	maxShift   = 36 - subBits - 1 // values up to 2^36 ns (about 69s)
	numBuckets = (maxShift + 2) * subCount
)

// bucketOf returns the bucket of v nanoseconds (negative counts as 0,
// beyond the range as the last bucket).
func bucketOf(v int64) int {
	if v < subCount {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - subBits - 1
	if shift > maxShift {
		return numBuckets - 1
	}
	return shift*subCount + int(v>>shift)
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (low, width int64) {
	if i < 2*subCount {
		return int64(i), 1
	}
	shift := i/subCount - 1
	return int64(i-shift*subCount) << shift, 1 << shift
}

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.total++
}

func (h *histogram) merge(o *histogram) {
	for i, n := range o.counts {
		h.counts[i] += n
	}
	h.total += o.total
}

// quantile returns the duration at or below which q (0 < q <= 1) of the
// recorded values lie: the middle of the bucket holding the value of rank
// ceil(q·total). It is 0 when nothing was recorded.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q * float64(h.total))
	if float64(rank) < q*float64(h.total) {
		rank++
	}
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, n := range h.counts {
		seen += n
		if seen >= rank {
			low, width := bucketRange(i)
			return time.Duration(low + width/2)
		}
	}
	panic("unreachable: total exceeds the sum of the buckets")
}
