package benchrun

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// MaxConcurrency is the most workers a phase may run, which keeps a
// mistyped count from exhausting the machine.
const MaxConcurrency = 4096

// CellKey is the key of concurrency c in a result's per-side figures and
// in the names of its ratios: "c" + c.
func CellKey(c int) string { return "c" + strconv.Itoa(c) }

// RoundOrder returns the sides in the order round i (from 0) runs them:
// in the order given in even rounds, in the reverse order in odd ones, so
// that a steady drift affects them all alike. It returns a new slice and
// leaves sides as they are.
func RoundOrder[S any](sides []S, i int) []S {
	order := slices.Clone(sides)
	if i%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// ABBA returns the two sides in the order round i (from 0) runs them: a
// then b in even rounds, b then a in odd ones (RoundOrder of two).
func ABBA[S any](a, b S, i int) []S { return RoundOrder([]S{a, b}, i) }

// Alternate runs the phases of a schedule in order: for each concurrency
// c in turn, rounds rounds, each calling phase for sides a and b in ABBA
// order, with round i counted from 0. It returns each side's results at
// each concurrency, keyed by CellKey(c), in round order. It stops at the
// first error phase returns, and returns that error. a and b must be
// distinct.
func Alternate[S comparable, R any](concurrency []int, rounds int, a, b S, phase func(side S, c, i int) (R, error)) (map[S]map[string][]R, error) {
	return AlternateAll(concurrency, rounds, []S{a, b}, phase)
}

// AlternateAll is Alternate for any number of distinct sides, each round
// running them in RoundOrder: in even rounds in the order given, in odd
// ones in the reverse order (ABBA for two).
func AlternateAll[S comparable, R any](concurrency []int, rounds int, sides []S, phase func(side S, c, i int) (R, error)) (map[S]map[string][]R, error) {
	out := make(map[S]map[string][]R, len(sides))
	for _, s := range sides {
		out[s] = map[string][]R{}
	}
	for _, c := range concurrency {
		k := CellKey(c)
		for i := range rounds {
			for _, s := range RoundOrder(sides, i) {
				r, err := phase(s, c, i)
				if err != nil {
					return nil, err
				}
				out[s][k] = append(out[s][k], r)
			}
		}
	}
	return out, nil
}

// CheckSchedule reports the first thing wrong with a schedule's window,
// warm-up, rounds and concurrency list (that there is one; its counts are
// CheckConcurrency's). Its error says what is wrong without a prefix, for
// the caller to wrap in its own.
func CheckSchedule(duration, warmup time.Duration, rounds int, concurrency []int) error {
	switch {
	case duration <= 0:
		return fmt.Errorf("duration %v: want a positive duration", duration)
	case warmup < 0:
		return fmt.Errorf("warm-up %v: want 0 or a positive duration", warmup)
	case rounds < 1:
		return fmt.Errorf("rounds %d: want 1 or more", rounds)
	case len(concurrency) == 0:
		return errors.New("no concurrency to measure")
	}
	return nil
}

// CheckConcurrency reports the first count of concurrency that is not 1
// to MaxConcurrency, or that is given twice. Its error says what is wrong
// without a prefix, for the caller to wrap in its own.
func CheckConcurrency(concurrency []int) error {
	seen := map[int]bool{}
	for _, n := range concurrency {
		if n < 1 || n > MaxConcurrency {
			return fmt.Errorf("concurrency %d: want 1 to %d", n, MaxConcurrency)
		}
		if seen[n] {
			return fmt.Errorf("concurrency %d given twice", n)
		}
		seen[n] = true
	}
	return nil
}
