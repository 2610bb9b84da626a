package benchrun

import (
	"math"
	"slices"
	"time"
)

// Median returns the median of v: its middle value, or for an even count
// the mean of the middle two; 0 when v is empty. v is left as it is.
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ratio is a/b to three decimals; 0 when b is 0 (nothing to compare).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}

// Met reports whether value meets a goal of op limit, where op is ">=" or
// "<=".
func Met(op string, value, limit float64) bool {
	if op == ">=" {
		return value >= limit
	}
	return value <= limit
}

// Micros is d in microseconds.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Round1 rounds f to one decimal.
func Round1(f float64) float64 { return math.Round(f*10) / 10 }

// Round2 rounds f to two decimals.
func Round2(f float64) float64 { return math.Round(f*100) / 100 }
