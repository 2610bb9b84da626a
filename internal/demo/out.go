package demo

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// ChartKind says what a chart plots.
type ChartKind int

const (
	// ChartRates plots count columns per second, one panel per path,
	// with the capacity C as a dashed line.
	ChartRates ChartKind = iota
	// ChartGauge plots one gauge column, every path in one panel.
	ChartGauge
	// ChartFigures plots figures against a parameter of the scenario
	// (the number of subscribers, say): a panel per key pattern in
	// Columns, a line per path through the points (X[i], the figure
	// fmt.Sprintf(pattern, X[i])). It needs no series.
	ChartFigures
)

// Chart is one PNG file WriteOut draws for a scenario.
type Chart struct {
	// File is the file name under the output directory ("peak-shaving-rate.png").
	File string
	// Title heads the chart.
	Title string
	// Kind says what it plots.
	Kind ChartKind
	// Columns are the columns plotted: count columns for ChartRates, one
	// gauge for ChartGauge, figure key patterns for ChartFigures.
	Columns []string
	// YLabel labels the y axis.
	YLabel string
	// X, XLabel and Panels are ChartFigures': the parameter's values, its
	// axis label, and a title per panel (one per pattern in Columns).
	X      []float64
	XLabel string
	Panels []string
}

// DefaultCharts returns the charts of a scenario that sets none: its
// rates over time per path (a column that stays 0, such as failed calls
// in most runs, is left out), and its queue depth over time.
func DefaultCharts(scenario string) []Chart {
	return []Chart{
		{File: scenario + "-rate.png", Title: scenario + ": rates over time", Kind: ChartRates,
			Columns: []string{ColOffered, ColAccepted, ColRejected, ColTimedOut, ColDownstream, ColCompleted, ColFailed}, YLabel: "requests/s"},
		{File: scenario + "-depth.png", Title: scenario + ": queue depth over time", Kind: ChartGauge,
			Columns: []string{ColQueueDepth}, YLabel: "requests waiting or in progress"},
	}
}

// WriteOut writes, under dir (made if missing), each scenario's series as
// <scenario>.csv and its charts as PNG files, and returns the files'
// paths.
func (r *Report) WriteOut(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo: output directory: %w", err)
	}
	var files []string
	for _, s := range r.Scenarios {
		charts := s.Charts
		if s.hasSeries() {
			f := filepath.Join(dir, s.Name+".csv")
			if err := s.writeCSV(f); err != nil {
				return files, err
			}
			files = append(files, f)
			if charts == nil {
				charts = DefaultCharts(s.Name)
			}
		} else {
			// Without series only the figure charts can be drawn.
			charts = slices.DeleteFunc(slices.Clone(charts), func(c Chart) bool { return c.Kind != ChartFigures })
		}
		for _, c := range charts {
			f := filepath.Join(dir, c.File)
			if err := s.drawChart(f, c); err != nil {
				return files, fmt.Errorf("demo: chart %s: %w", f, err)
			}
			files = append(files, f)
		}
	}
	return files, nil
}

func (s *ScenarioResult) hasSeries() bool {
	return slices.ContainsFunc(s.Paths, func(p *PathResult) bool { return p.Series != nil })
}

// writeCSV writes one row per path and bucket: path, t_s (the bucket's
// start, from the start of the schedule), bucket_s, then every column any
// path has (counts per bucket; gauges as sampled, empty when not).
func (s *ScenarioResult) writeCSV(file string) (err error) {
	var cols []string
	for _, p := range s.Paths {
		if p.Series == nil {
			continue
		}
		for _, c := range p.Series.Columns {
			if !slices.Contains(cols, c.Name) {
				cols = append(cols, c.Name)
			}
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("demo: %w", cerr)
		}
	}()
	w := csv.NewWriter(f)
	if err := w.Write(append([]string{"path", "t_s", "bucket_s"}, cols...)); err != nil {
		return fmt.Errorf("demo: %s: %w", file, err)
	}
	for _, p := range s.Paths {
		ser := p.Series
		if ser == nil {
			continue
		}
		for b := range ser.Buckets() {
			row := []string{p.Name, fmtFloat(ser.Width.Seconds() * float64(b)), fmtFloat(ser.Width.Seconds())}
			for _, c := range cols {
				v := ser.Column(c)
				if v == nil || math.IsNaN(v[b]) {
					row = append(row, "")
					continue
				}
				row = append(row, fmtFloat(v[b]))
			}
			if err := w.Write(row); err != nil {
				return fmt.Errorf("demo: %s: %w", file, err)
			}
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("demo: %s: %w", file, err)
	}
	return nil
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// drawChart draws chart c of the scenario's series into file as PNG.
func (s *ScenarioResult) drawChart(file string, c Chart) error {
	var paths []*PathResult
	for _, p := range s.Paths {
		if p.Series != nil {
			paths = append(paths, p)
		}
	}
	if c.Kind == ChartFigures {
		return s.drawFigures(file, c)
	}
	var panels []*plot.Plot
	switch c.Kind {
	case ChartRates:
		for _, p := range paths {
			pl, err := ratePanel(p, c)
			if err != nil {
				return err
			}
			panels = append(panels, pl)
		}
	case ChartGauge:
		pl, err := gaugePanel(paths, c)
		if err != nil {
			return err
		}
		panels = append(panels, pl)
	default:
		return fmt.Errorf("unknown chart kind %d", c.Kind)
	}
	if len(panels) == 0 {
		return errors.New("no path has a series")
	}
	// Every panel of a chart on the same time axis.
	var xmax float64
	for _, pl := range panels {
		xmax = max(xmax, pl.X.Max)
	}
	for _, pl := range panels {
		pl.X.Min, pl.X.Max = 0, xmax
		pl.X.Tick.Marker = secondTicks{}
	}
	return writePanels(file, c.Title, panels)
}

// writePanels writes panels one above the other into file as PNG, title
// heading the first.
func writePanels(file, title string, panels []*plot.Plot) error {
	if panels[0].Title.Text == "" {
		panels[0].Title.Text = title
	} else {
		panels[0].Title.Text = title + "\n" + panels[0].Title.Text
	}

	const width, panelHeight = 9 * vg.Inch, 3.2 * vg.Inch
	img := vgimg.New(width, panelHeight*vg.Length(len(panels)))
	dc := draw.New(img)
	grid := make([][]*plot.Plot, len(panels))
	for i, pl := range panels {
		grid[i] = []*plot.Plot{pl}
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align(grid, tiles, dc)
	for i, pl := range panels {
		pl.Draw(canvases[i][0])
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// drawFigures draws ChartFigures chart c into file: a panel per key
// pattern, a line per path with a marker at each point.
func (s *ScenarioResult) drawFigures(file string, c Chart) error {
	if len(c.X) == 0 || len(c.Columns) == 0 {
		return errors.New("a figure chart with no points")
	}
	var panels []*plot.Plot
	for i, pattern := range c.Columns {
		pl := plot.New()
		if i < len(c.Panels) {
			pl.Title.Text = c.Panels[i]
		}
		pl.X.Label.Text = c.XLabel
		pl.Y.Label.Text = c.YLabel
		pl.Legend.Top, pl.Legend.Left = true, true
		pl.Add(plotter.NewGrid())
		var top float64
		for j, p := range s.Paths {
			var xy plotter.XYs
			for _, x := range c.X {
				if v, ok := p.Figure(fmt.Sprintf(pattern, x)); ok && !math.IsNaN(v) {
					xy = append(xy, plotter.XY{X: x, Y: v})
					top = max(top, v)
				}
			}
			if len(xy) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(xy)
			if err != nil {
				return err
			}
			line.Color, points.Color = plotutil.Color(j), plotutil.Color(j)
			points.Shape = plotutil.Shape(j)
			line.Width = vg.Points(1.5)
			pl.Add(line, points)
			pl.Legend.Add(cmp.Or(p.Title, p.Name), line, points)
		}
		pl.X.Min, pl.X.Max = 0, slices.Max(c.X)*1.05
		pl.Y.Min, pl.Y.Max = 0, max(top*1.25, 1)
		panels = append(panels, pl)
	}
	return writePanels(file, c.Title, panels)
}

// ratePanel plots c's count columns of one path per second, and its
// capacity.
func ratePanel(p *PathResult, c Chart) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = "path: " + cmp.Or(p.Title, p.Name)
	pl.X.Label.Text = "time since the schedule began (s)"
	pl.Y.Label.Text = c.YLabel
	pl.Legend.Top = true
	pl.Add(plotter.NewGrid())
	ser := p.Series
	per := ser.Width.Seconds()
	var top float64
	for i, col := range c.Columns {
		v := ser.Column(col)
		if v == nil || sum(v) == 0 {
			continue
		}
		xy := make(plotter.XYs, len(v))
		for b, x := range v {
			xy[b] = plotter.XY{X: per * float64(b), Y: x / per}
			top = max(top, x/per)
		}
		line, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		// A column keeps its colour in every panel; dashes tell apart
		// lines that lie on each other (offered and accepted, downstream
		// and completed).
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.4)
		if i%2 == 1 {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		pl.Add(line)
		pl.Legend.Add(col, line)
	}
	if p.CapacityPerS > 0 && ser.Buckets() > 0 {
		end := per * float64(ser.Buckets())
		line, err := plotter.NewLine(plotter.XYs{{X: 0, Y: p.CapacityPerS}, {X: end, Y: p.CapacityPerS}})
		if err != nil {
			return nil, err
		}
		line.Color = color.Black
		line.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		pl.Add(line)
		pl.Legend.Add(fmt.Sprintf("capacity C = %g/s", p.CapacityPerS), line)
		top = max(top, p.CapacityPerS)
	}
	pl.Y.Min, pl.Y.Max = 0, top*1.3 // room for the legend
	return pl, nil
}

// gaugePanel plots gauge column c.Columns[0] of every path.
func gaugePanel(paths []*PathResult, c Chart) (*plot.Plot, error) {
	pl := plot.New()
	pl.X.Label.Text = "time since the schedule began (s)"
	pl.Y.Label.Text = c.YLabel
	pl.Legend.Top = true
	pl.Add(plotter.NewGrid())
	var top float64
	for i, p := range paths {
		v := p.Series.Column(c.Columns[0])
		if v == nil {
			continue
		}
		per := p.Series.Width.Seconds()
		var xy plotter.XYs
		for b, x := range v {
			if !math.IsNaN(x) {
				xy = append(xy, plotter.XY{X: per * float64(b), Y: x})
				top = max(top, x)
			}
		}
		if len(xy) == 0 {
			continue
		}
		line, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		pl.Add(line)
		pl.Legend.Add(cmp.Or(p.Title, p.Name), line)
	}
	pl.Y.Min, pl.Y.Max = 0, max(top*1.2, 1)
	return pl, nil
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		if !math.IsNaN(x) {
			s += x
		}
	}
	return s
}

// secondTicks marks a time axis in seconds at a round step (1, 2, 5, 10,
// ... s) that gives five to ten labels, with unlabelled ticks between.
type secondTicks struct{}

// Ticks returns the ticks between lo and hi.
func (secondTicks) Ticks(lo, hi float64) []plot.Tick {
	span := hi - lo
	if !(span > 0) {
		return nil
	}
	step := 1.0
	for _, s := range []float64{0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500} {
		step = s
		if span/s <= 10 {
			break
		}
	}
	var ticks []plot.Tick
	for x := math.Ceil(lo/step) * step; x <= hi+1e-9; x += step {
		ticks = append(ticks, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'f', -1, 64)})
		if minor := x + step/2; minor < hi {
			ticks = append(ticks, plot.Tick{Value: minor})
		}
	}
	return ticks
}
