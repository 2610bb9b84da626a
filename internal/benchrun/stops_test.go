package benchrun_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/switchyard-dev/switchyard/internal/benchrun"
)

// TestStops checks that Close runs the stops last first, each once, runs
// all of them whatever they return, and joins their errors.
func TestStops(t *testing.T) {
	errA, errC := errors.New("a"), errors.New("c")
	var ran []string
	stop := func(name string, err error) func() error {
		return func() error { ran = append(ran, name); return err }
	}
	var s benchrun.Stops
	s.Add(stop("a", errA))
	s.Add(stop("b", nil))
	s.Add(stop("c", errC))
	err := s.Close()
	if want := []string{"c", "b", "a"}; !slices.Equal(ran, want) {
		t.Errorf("Close ran %q, want %q", ran, want)
	}
	if !errors.Is(err, errA) || !errors.Is(err, errC) {
		t.Errorf("Close returned %v, want a and c joined", err)
	}
	if err := s.Close(); err != nil || len(ran) != 3 {
		t.Errorf("a second Close returned %v and ran %q, want nil and no stop again", err, ran)
	}

	var empty benchrun.Stops
	if err := empty.Close(); err != nil {
		t.Errorf("Close of an empty Stops returned %v, want nil", err)
	}
}
