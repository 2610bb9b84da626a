package demo

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteText writes the report for a reader: per scenario, its title and
// setup, a table with one row per figure and one column per path, and
// its verdicts.
func (r *Report) WriteText(w io.Writer) error {
	for i, s := range r.Scenarios {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := s.WriteText(w); err != nil {
			return err
		}
	}
	return nil
}

// WriteText writes one scenario's title, setup, table and verdicts.
func (s *ScenarioResult) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "== %s: %s\n", s.Name, s.Title)
	if s.Setup != "" {
		fmt.Fprintln(w, s.Setup)
	}
	fmt.Fprintln(w)
	header := []string{"FIGURE"}
	for _, p := range s.Paths {
		header = append(header, strings.ToUpper(cmp.Or(p.Title, p.Name)))
	}
	rows, labels := s.rows()
	// Labels left-aligned, values right-aligned, columns 3 apart.
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for r, row := range rows {
		widths[0] = max(widths[0], utf8.RuneCountInString(labels[r]))
		for i, c := range row {
			widths[i+1] = max(widths[i+1], utf8.RuneCountInString(c))
		}
	}
	line := func(label string, cells []string) {
		var b strings.Builder
		b.WriteString(label + strings.Repeat(" ", widths[0]-utf8.RuneCountInString(label)))
		for i, c := range cells {
			b.WriteString(strings.Repeat(" ", 3+widths[i+1]-utf8.RuneCountInString(c)) + c)
		}
		fmt.Fprintln(w, b.String())
	}
	line(header[0], header[1:])
	for r, row := range rows {
		line(labels[r], row)
	}
	if len(s.Verdicts) > 0 {
		fmt.Fprintln(w)
		for _, v := range s.Verdicts {
			fmt.Fprintf(w, "  %s\n", v)
		}
	}
	return nil
}

// rows returns the table's cells and row labels: every figure any path
// has, in the order the paths list them; a path without one shows "-".
func (s *ScenarioResult) rows() (rows [][]string, labels []string) {
	type row struct {
		label string
		cells map[string]string
	}
	var (
		order []string
		byKey = map[string]*row{}
	)
	for _, p := range s.Paths {
		for _, f := range p.Figures() {
			r, ok := byKey[f.Key]
			if !ok {
				r = &row{label: f.Label, cells: map[string]string{}}
				byKey[f.Key] = r
				order = append(order, f.Key)
			}
			r.cells[p.Name] = FormatFigure(f)
		}
	}
	for _, k := range order {
		r := byKey[k]
		var cells []string
		for _, p := range s.Paths {
			c, ok := r.cells[p.Name]
			if !ok {
				c = "-"
			}
			cells = append(cells, c)
		}
		rows = append(rows, cells)
		labels = append(labels, r.label)
	}
	return rows, labels
}

// FormatFigure formats a figure's value in its unit: counts as integers,
// rates as "/s", latencies in ms below ten seconds and in s above, shares
// as percentages; a figure that does not apply as "n/a".
func FormatFigure(f Figure) string {
	v := f.Value
	switch {
	case f.NA:
		return "n/a"
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	}
	switch f.Unit {
	case UnitRate:
		return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
	case UnitMillis:
		return FormatMillis(v)
	case UnitSeconds:
		return strconv.FormatFloat(v, 'f', 1, 64) + " s"
	case UnitPercent:
		return strconv.FormatFloat(v, 'f', 1, 64) + " %"
	}
	if v == math.Trunc(v) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// FormatMillis formats a latency in milliseconds for a reader.
func FormatMillis(ms float64) string {
	switch {
	case ms >= 10000:
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + " s"
	case ms >= 1000:
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + " s"
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
}
