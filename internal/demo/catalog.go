package demo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUnknownScenario reports a scenario name the catalog does not have;
// Select returns it.
var ErrUnknownScenario = errors.New("demo: unknown scenario")

// All is the name that selects every scenario.
const All = "all"

// Scenario is one demo: it runs both paths (or more) on env and reports
// them side by side.
type Scenario interface {
	// Name is the scenario's name on the command line and in the JSON
	// ("peak-shaving").
	Name() string
	// Run runs the scenario on env and returns its figures. It reports how
	// far it has come to progress (which may be nil), stops early when ctx
	// ends (returning ctx's error), and leaves env as it found it: every
	// server, worker, stream and goroutine it started is gone when Run
	// returns, whatever happened.
	Run(ctx context.Context, env *Env, progress Progress) (*ScenarioResult, error)
}

// Progress receives a running scenario's progress. Update may be called
// often and from any goroutine; it must be quick.
type Progress interface {
	// Update says what the scenario is doing now ("rpc: burst 800/s") and
	// how much of its work is done, from 0 to 1.
	Update(stage string, done float64)
}

// ProgressFunc adapts a function to Progress.
type ProgressFunc func(stage string, done float64)

// Update calls f.
func (f ProgressFunc) Update(stage string, done float64) { f(stage, done) }

// Options are the knobs every scenario takes from the command line.
type Options struct {
	// Capacity is the downstream's capacity C, in purchases a second.
	Capacity float64
	// Scale multiplies every duration of a scenario's schedule (phases,
	// outages), for quick runs: 0.2 runs a fifth as long. Rates do not
	// change, so queues grow and drain in proportion.
	Scale float64
}

// DefaultOptions returns the options `make demo` runs with.
func DefaultOptions() Options { return Options{Capacity: 200, Scale: 1} }

// Validate reports options no scenario can run with.
func (o Options) Validate() error {
	switch {
	case !(o.Capacity >= 1 && o.Capacity <= 5000):
		return fmt.Errorf("demo: capacity %v a second: want 1 to 5000", o.Capacity)
	case !(o.Scale >= 0.01 && o.Scale <= 100):
		return fmt.Errorf("demo: scale %v: want 0.01 to 100", o.Scale)
	}
	return nil
}

// Scaled returns d times the scale.
func (o Options) Scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * o.Scale)
}

// Entry is a scenario in the catalog.
type Entry struct {
	// Name is the scenario's name.
	Name string
	// Summary says in one line what it shows.
	Summary string
	// New makes the scenario with its defaults under opts, which it
	// validates first. Every entry has one.
	New func(opts Options) (Scenario, error)
}

// entry returns a catalog entry whose New validates the options, then
// makes the scenario with newScenario.
func entry[S Scenario](name, summary string, newScenario func(Options) (S, error)) Entry {
	return Entry{Name: name, Summary: summary, New: func(o Options) (Scenario, error) {
		if err := o.Validate(); err != nil {
			return nil, err
		}
		s, err := newScenario(o)
		if err != nil {
			return nil, err
		}
		return s, nil
	}}
}

// Catalog lists issue #7's scenarios in report order. To add a scenario,
// append an entry: Select, `yard demo` and `yard demo all` pick it up from
// here.
var Catalog = []Entry{
	entry("peak-shaving",
		"a burst of several × C: the RPC limiter refuses it, the work queue absorbs it and drains at C",
		func(o Options) (*PeakShaving, error) { return NewPeakShaving(DefaultPeakShaving(o)) }),
	entry("broadcast",
		"a sold-out event to N subscribers: one NATS publish against N RPC calls; a slow and an offline subscriber",
		func(o Options) (*Broadcast, error) { return NewBroadcast(DefaultBroadcast(o)) }),
	entry("decoupling",
		"the consumers down for a while: RPC producers fail, MQ producers do not; backlog, drain, duplicates",
		func(o Options) (*Decoupling, error) { return NewDecoupling(DefaultDecoupling(o)) }),
	entry("mq-costs",
		"what MQ costs: latency under load, stale reads after an accepted purchase, duplicates, moving parts",
		func(o Options) (*Costs, error) { return NewCosts(DefaultCosts(o)) }),
}

// Names returns the catalog's names.
func Names() []string {
	names := make([]string, len(Catalog))
	for i, e := range Catalog {
		names[i] = e.Name
	}
	return names
}

// Select returns the catalog entries args name, in catalog order and each
// once; no args, or All, is every entry. A name that is not in the catalog
// is ErrUnknownScenario.
func Select(args []string) (selected []Entry, err error) {
	want := map[string]bool{}
	all := len(args) == 0
	for _, a := range args {
		if a == All {
			all = true
			continue
		}
		if !isCatalogued(a) {
			return nil, fmt.Errorf("%w %q: want one of %s, or %s", ErrUnknownScenario, a, strings.Join(Names(), ", "), All)
		}
		want[a] = true
	}
	for _, e := range Catalog {
		if all || want[e.Name] {
			selected = append(selected, e)
		}
	}
	return selected, nil
}

func isCatalogued(name string) bool {
	for _, e := range Catalog {
		if e.Name == name {
			return true
		}
	}
	return false
}

// Run runs scenarios on env in order and collects their results. For the
// i-th, progress(i, s) gives the Progress it reports to (progress, or
// what it returns, may be nil). It stops at the first scenario that
// fails, and when ctx ends.
func Run(ctx context.Context, env *Env, scenarios []Scenario, progress func(i int, s Scenario) Progress) (*Report, error) {
	r := &Report{}
	for i, s := range scenarios {
		var p Progress
		if progress != nil {
			p = progress(i, s)
		}
		res, err := s.Run(ctx, env, p)
		if err != nil {
			return nil, fmt.Errorf("demo: %s: %w", s.Name(), err)
		}
		r.Scenarios = append(r.Scenarios, res)
	}
	return r, nil
}
