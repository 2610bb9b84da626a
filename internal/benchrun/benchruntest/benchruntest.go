// Package benchruntest holds the test helpers the benchmarks' tests share
// (packages rpcbench, lockbench and the yard bench commands): a logger
// for a test's log, a goroutine-leak check, and checks of a result's JSON.
package benchruntest

import (
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Logger logs warnings and errors to tb's log; lines logged after tb
// ended are dropped. Not debug: the RPC stack logs every successful call
// at debug level.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a line after the test ended
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// CheckNoLeaks fails tb if, after a bounded wait (5s) for them to end,
// goroutines run whose stacks mention one of markers and none of except.
// The goroutine that calls it is not counted.
func CheckNoLeaks(tb testing.TB, markers []string, except ...string) {
	tb.Helper()
	var left []string
	for range 100 {
		left = left[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for i, g := range strings.Split(string(buf), "\n\n") {
			if i == 0 { // this goroutine
				continue
			}
			ours := slices.ContainsFunc(markers, func(m string) bool { return strings.Contains(g, m) })
			excepted := slices.ContainsFunc(except, func(m string) bool { return strings.Contains(g, m) })
			if ours && !excepted {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Errorf("%d goroutines left running after Run:\n%s", len(left), strings.Join(left, "\n\n"))
}

// Near reports whether a, rounded as a result rounds its figures (to 0.1),
// matches b.
func Near(a, b float64) bool { return a-b < 0.051 && b-a < 0.051 }

// CheckCells checks the per-side cells of a result decoded from doc (its
// JSON, quoted in failures): for each side, a cell at c1 and at c64 (else
// tb fails at once), each key of keys a positive number in it, and
// "errors" 0.
func CheckCells(tb testing.TB, doc string, sides map[string]map[string]map[string]any, keys ...string) {
	tb.Helper()
	for side, cells := range sides {
		for _, c := range []string{"c1", "c64"} {
			cell, ok := cells[c]
			if !ok {
				tb.Fatalf("no %s.%s object in %s", side, c, doc)
			}
			CheckPositive(tb, doc, side+"."+c, cell, keys...)
			if cell["errors"] != 0.0 {
				tb.Errorf("%s.%s.errors = %v, want 0", side, c, cell["errors"])
			}
		}
	}
}

// CheckPositive checks that each key of keys is a positive number in obj,
// the object called name of a result decoded from doc (its JSON, quoted
// in failures).
func CheckPositive(tb testing.TB, doc, name string, obj map[string]any, keys ...string) {
	tb.Helper()
	for _, k := range keys {
		if v, ok := obj[k].(float64); !ok || v <= 0 {
			tb.Errorf("%s.%s = %v, want a positive number\n%s", name, k, obj[k], doc)
		}
	}
}
