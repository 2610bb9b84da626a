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
}

// Set sets the scenario figure key (adding it after the others the first
// time).
func (p *PathResult) Set(key, label string, unit Unit, v float64) {
	for i := range p.Extra {
		if p.Extra[i].Key == key {
			p.Extra[i] = Figure{Key: key, Label: label, Unit: unit, Value: v}
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
		{"offered", "offered", UnitCount, float64(p.Offered)},
		{"accepted", "accepted", UnitCount, float64(p.Accepted)},
		{"completed", "completed", UnitCount, float64(p.Completed)},
		{"rejected", "rejected", UnitCount, float64(p.Rejected)},
		{"lost", "lost", UnitCount, float64(p.Lost)},
		{"oversold", "oversold", UnitCount, float64(p.Oversold)},
		{"duplicates", "duplicates absorbed", UnitCount, float64(p.Duplicates)},
		{"capacity_per_s", "capacity C", UnitRate, p.CapacityPerS},
		{"max_downstream_per_s", "max downstream rate", UnitRate, p.MaxDownstreamPerS},
		{"p50_ms", "latency p50", UnitMillis, p.P50ms},
		{"p99_ms", "latency p99", UnitMillis, p.P99ms},
		{"max_ms", "latency max", UnitMillis, p.MaxMs},
		{"drain_s", "drain time", UnitSeconds, p.DrainS},
	}
	return append(f, p.Extra...)
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
	// NotBuilt names the catalog's scenarios `all` could not run.
	NotBuilt []string `json:"not_built"`
}

// WriteJSON writes the report as one indented JSON object:
// {"scenarios": [...], "not_built": [...]}.
func (r *Report) WriteJSON(w io.Writer) error {
	out := *r
	if out.Scenarios == nil {
		out.Scenarios = []*ScenarioResult{}
	}
	if out.NotBuilt == nil {
		out.NotBuilt = []string{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("demo: writing JSON: %w", err)
	}
	return nil
}
