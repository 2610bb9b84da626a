package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"
)

// Unit says how a figure is printed in the table.
type Unit int

// The units of figures.
const (
	UnitCount   Unit = iota // an integer count
	UnitRate                // per second
	UnitMillis              // a latency in milliseconds, printed as ms or s
	UnitSeconds             // a duration in seconds
	UnitPercent             // a percentage, 0 to 100
)

// Figure is one named number of a path.
type Figure struct {
	// Key is its JSON key (snake_case).
	Key string
	// Label is its row label in the table.
	Label string
	// Unit says how the table prints it.
	Unit Unit
	// Value is the number.
	Value float64
	// NA marks a figure that does not apply to its path (a required one,
	// say, that the scenario has no use for): the JSON carries Value (0),
	// the table "n/a".
	NA bool
}

// RequiredKeys are the JSON keys every path object carries, in table
// order (see the package doc for what each means).
var RequiredKeys = []string{
	"offered", "accepted", "completed", "rejected", "lost", "oversold", "duplicates",
	"capacity_per_s", "max_downstream_per_s", "p50_ms", "p99_ms", "max_ms", "drain_s",
}

// PathResult is one path's figures in one scenario: the required ones as
// fields, the scenario's own in Extra.
type PathResult struct {
	// Name is the path's key in the JSON and its column in the table
	// ("rpc", "mq").
	Name string
	// Title is the path's column header ("RPC"); default Name.
	Title string

	Offered, Accepted, Completed, Rejected, Lost, Oversold, Duplicates int64

	CapacityPerS, MaxDownstreamPerS float64
	P50ms, P99ms, MaxMs             float64
	DrainS                          float64

	// Extra are the scenario's own figures, in table order, beside the
	// required ones in the JSON.
	Extra []Figure
	// Series is the path's time series (nil: none), for CSV and charts.
	Series *Series

	na map[string]bool // keys of figures that do not apply (see NotApplicable)
}

// NotApplicable marks figures, required or extra, that do not apply to
// the path: each keeps its value (0, for a required figure the scenario
// does not set) in the JSON, and the table prints "n/a".
func (p *PathResult) NotApplicable(keys ...string) {
	if p.na == nil {
		p.na = map[string]bool{}
	}
	for _, k := range keys {
		p.na[k] = true
	}
}

// SetNA sets the scenario figure key to 0 and marks it not applicable.
func (p *PathResult) SetNA(key, label string, unit Unit) {
	p.Set(key, label, unit, 0)
	p.NotApplicable(key)
}

// Set sets the scenario figure key (adding it after the others the first
// time).
func (p *PathResult) Set(key, label string, unit Unit, v float64) {
	for i := range p.Extra {
		if p.Extra[i].Key == key {
			p.Extra[i] = Figure{Key: key, Label: label, Unit: unit, Value: v}
			delete(p.na, key)
			return
		}
	}
	p.Extra = append(p.Extra, Figure{Key: key, Label: label, Unit: unit, Value: v})
}

// SetLatency sets P50ms, P99ms and MaxMs from s.
func (p *PathResult) SetLatency(s LatencySummary) {
	p.P50ms, p.P99ms, p.MaxMs = millis(s.P50), millis(s.P99), millis(s.Max)
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Figures returns every figure, required first, in table order.
func (p *PathResult) Figures() []Figure {
	f := []Figure{
		{Key: "offered", Label: "offered", Unit: UnitCount, Value: float64(p.Offered)},
		{Key: "accepted", Label: "accepted", Unit: UnitCount, Value: float64(p.Accepted)},
		{Key: "completed", Label: "completed", Unit: UnitCount, Value: float64(p.Completed)},
		{Key: "rejected", Label: "rejected", Unit: UnitCount, Value: float64(p.Rejected)},
		{Key: "lost", Label: "lost", Unit: UnitCount, Value: float64(p.Lost)},
		{Key: "oversold", Label: "oversold", Unit: UnitCount, Value: float64(p.Oversold)},
		{Key: "duplicates", Label: "duplicates absorbed", Unit: UnitCount, Value: float64(p.Duplicates)},
		{Key: "capacity_per_s", Label: "capacity C", Unit: UnitRate, Value: p.CapacityPerS},
		{Key: "max_downstream_per_s", Label: "max downstream rate", Unit: UnitRate, Value: p.MaxDownstreamPerS},
		{Key: "p50_ms", Label: "latency p50", Unit: UnitMillis, Value: p.P50ms},
		{Key: "p99_ms", Label: "latency p99", Unit: UnitMillis, Value: p.P99ms},
		{Key: "max_ms", Label: "latency max", Unit: UnitMillis, Value: p.MaxMs},
		{Key: "drain_s", Label: "drain time", Unit: UnitSeconds, Value: p.DrainS},
	}
	f = append(f, p.Extra...)
	for i := range f {
		f[i].NA = f[i].NA || p.na[f[i].Key]
	}
	return f
}

// Figure returns the figure key's value, required or extra.
func (p *PathResult) Figure(key string) (float64, bool) {
	for _, f := range p.Figures() {
		if f.Key == key {
			return f.Value, true
		}
	}
	return 0, false
}

// Value returns the figure key's value, required or extra; 0 when the
// path has no such figure.
func (p *PathResult) Value(key string) float64 {
	v, _ := p.Figure(key)
	return v
}

// MarshalJSON writes the path as one flat object: every required key and
// every extra figure (keys sorted). Integral values print as integers;
// values that are not finite as null.
func (p *PathResult) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	for _, f := range p.Figures() {
		switch {
		case math.IsNaN(f.Value) || math.IsInf(f.Value, 0):
			m[f.Key] = nil
		case f.Value == math.Trunc(f.Value) && math.Abs(f.Value) < 1<<53:
			m[f.Key] = int64(f.Value)
		default:
			m[f.Key] = math.Round(f.Value*1000) / 1000
		}
	}
	return json.Marshal(m)
}

// ScenarioResult is one scenario's report.
type ScenarioResult struct {
	// Name is the scenario's name.
	Name string
	// Title says in one line what the scenario did.
	Title string
	// Setup says in one line what it ran with (rates, capacity, pools).
	Setup string
	// Config holds the knobs it ran with, for the JSON.
	Config map[string]any
	// Paths are the paths, in table order.
	Paths []*PathResult
	// Verdicts are short claims, each backed by the figures.
	Verdicts []string
	// Charts are the charts WriteOut draws; nil draws DefaultCharts.
	Charts []Chart
}

// Path returns the named path, or nil.
func (s *ScenarioResult) Path(name string) *PathResult {
	for _, p := range s.Paths {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// MarshalJSON writes {"name", "title", "setup", "config", "paths": {name:
// PathResult}, "verdicts"}.
func (s *ScenarioResult) MarshalJSON() ([]byte, error) {
	paths := map[string]*PathResult{}
	for _, p := range s.Paths {
		paths[p.Name] = p
	}
	verdicts := s.Verdicts
	if verdicts == nil {
		verdicts = []string{}
	}
	config := s.Config
	if config == nil {
		config = map[string]any{}
	}
	return json.Marshal(struct {
		Name     string                 `json:"name"`
		Title    string                 `json:"title"`
		Setup    string                 `json:"setup"`
		Config   map[string]any         `json:"config"`
		Paths    map[string]*PathResult `json:"paths"`
		Verdicts []string               `json:"verdicts"`
	}{s.Name, s.Title, s.Setup, config, paths, verdicts})
}

// Report is a run's results.
type Report struct {
	// Scenarios are the scenarios run, in order.
	Scenarios []*ScenarioResult `json:"scenarios"`
}

// WriteJSON writes the report as one indented JSON object:
// {"scenarios": [...]}.
func (r *Report) WriteJSON(w io.Writer) error {
	out := *r
	if out.Scenarios == nil {
		out.Scenarios = []*ScenarioResult{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("demo: writing JSON: %w", err)
	}
	return nil
}
