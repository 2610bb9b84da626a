package benchrun

import "errors"

// Stops undoes what a side started, in the reverse order: each stop
// function added is run by Close, last added first. The zero value is
// empty and ready to use. A Stops is not safe for concurrent use.
type Stops struct {
	fns []func() error
}

// Add adds stop, to be run by Close before every stop added earlier.
func (s *Stops) Add(stop func() error) {
	s.fns = append(s.fns, stop)
}

// Close runs every stop added, last first, each to its end whatever the
// others return, and returns their errors joined (nil if none failed).
// Each stop runs once: a second Close runs only those added since.
func (s *Stops) Close() error {
	var errs []error
	for i := len(s.fns) - 1; i >= 0; i-- {
		errs = append(errs, s.fns[i]())
	}
	s.fns = nil
	return errors.Join(errs...)
}
