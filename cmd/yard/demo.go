package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/switchyard-dev/switchyard/internal/demo"
)

// demoFlags are the flags of `yard demo`.
type demoFlags struct {
	zk, nats string
	json     bool
	out      string
	capacity float64
	scale    float64
	timeout  time.Duration
}

// plan is a checked `yard demo` command line: what to run and with what.
type plan struct {
	scenarios []demo.Scenario
	env       demo.Config
}

// check checks the arguments and flags, with messages that name them, and
// makes the scenarios. It touches no network; it creates --out.
func (f *demoFlags) check(cmd *cobra.Command, args []string) (plan, error) {
	var p plan
	opts := demo.Options{Capacity: f.capacity, Scale: f.scale}
	switch {
	case !(f.capacity >= 1 && f.capacity <= 5000):
		return p, fmt.Errorf("--capacity %v: want 1 to 5000 purchases a second", f.capacity)
	case !(f.scale >= 0.01 && f.scale <= 100):
		return p, fmt.Errorf("--scale %v: want a factor from 0.01 to 100", f.scale)
	case f.timeout <= 0:
		return p, fmt.Errorf("--timeout %v: want a positive duration", f.timeout)
	}
	if cmd.Flags().Changed("zk") {
		addrs, err := zkAddrs(f.zk, true)
		if err != nil {
			return p, err
		}
		p.env.ZK = strings.Join(addrs, ",")
	}
	if cmd.Flags().Changed("nats") {
		if err := checkNATSURL(f.nats); err != nil {
			return p, err
		}
		p.env.NATS = f.nats
	}
	if f.out != "" {
		if st, err := os.Stat(f.out); err == nil && !st.IsDir() {
			return p, fmt.Errorf("--out %s: not a directory", f.out)
		}
		if err := os.MkdirAll(f.out, 0o755); err != nil {
			return p, fmt.Errorf("--out: %w", err)
		}
	}
	entries, err := demo.Select(args)
	if err != nil {
		return p, err
	}
	for _, e := range entries {
		s, err := e.New(opts)
		if err != nil {
			return p, fmt.Errorf("%s: %w", e.Name, err)
		}
		p.scenarios = append(p.scenarios, s)
	}
	p.env.SetupTimeout = f.timeout
	return p, nil
}

func newDemoCmd() *cobra.Command {
	var f demoFlags
	names := strings.Join(demo.Names(), "|")
	cmd := &cobra.Command{
		Use:   "demo [" + names + "|all]...",
		Short: "Measure what a message queue buys over RPC, and what it costs, on a flash sale",
		Long: `demo runs the trade-off demos of issue #7 on a flash sale: an inventory of
items, each purchase locking its item through the lock service, decrementing
the stock at a store that checks fencing tokens, and unlocking. The
downstream has a fixed capacity C (--capacity). Load is open-loop: purchases
are sent on a schedule and latency counts from the scheduled send.

Each scenario runs the RPC path (gRPC through the registry, the RPC stack's
limiter, callers with a deadline) and the MQ path (a JetStream work queue
and a fixed worker pool) on the same schedule, and prints them side by
side with a verdict per claim. Broadcast sends sale events instead of
purchases, over three paths: RPC (a call per subscriber found in the
registry), core NATS (one publish) and JetStream (durable consumers).

` + scenarioList() + `

With no argument, or "all", every scenario runs.

The stack is started here and stopped at the end — ZooKeeper as a child
process of the installed package, NATS embedded, two lock-service replicas,
the shop and the workers — unless --zk and --nats name running servers
(the replicas, shop and workers still run here).

--json prints {"scenarios": [{"name", "title", "setup", "config", "paths":
{"rpc": {...}, "mq": {...}}, "verdicts"}]}; every path
object has offered, accepted, completed, rejected, lost, oversold,
duplicates, capacity_per_s, max_downstream_per_s, p50_ms, p99_ms, max_ms and
drain_s, and the scenario's own figures beside them (a figure that does
not apply to a path is 0 in the JSON, "n/a" in the table). --out DIR also
writes each flash-sale scenario's raw time series (<scenario>.csv) and
charts of its rates and queue depth over time (<scenario>-rate.png,
<scenario>-depth.png), and broadcast's fan-out chart (broadcast-fanout.png).

Progress goes to stderr.`,
		Example: `  yard demo                                  # every scenario, ~2 min
  yard demo peak-shaving --out docs/img
  yard demo peak-shaving --scale 0.3 --capacity 100 --json | jq '.scenarios[0].paths.mq'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := f.check(cmd, args)
			if err != nil {
				return err
			}
			return runDemo(cmd, &f, p)
		},
	}
	def := demo.DefaultOptions()
	fl := cmd.Flags()
	fl.StringVar(&f.zk, "zk", "", "use the running ZooKeeper at host:port[,host:port...] instead of starting one")
	fl.StringVar(&f.nats, "nats", "", "use the running NATS server (with JetStream) at this URL instead of embedding one")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON")
	fl.StringVar(&f.out, "out", "", "also write the time series (CSV) and charts (PNG) into this directory")
	fl.Float64Var(&f.capacity, "capacity", def.Capacity, "the downstream's capacity C, purchases a second")
	fl.Float64Var(&f.scale, "scale", def.Scale, "a factor on every scenario's durations (0.2: a fifth as long)")
	fl.DurationVar(&f.timeout, "timeout", time.Minute, "how long to wait for each step of starting the stack")
	return cmd
}

// scenarioList lists the catalog for the help text.
func scenarioList() string {
	var b strings.Builder
	for _, e := range demo.Catalog {
		fmt.Fprintf(&b, "  %-13s %s\n", e.Name, e.Summary)
	}
	return strings.TrimRight(b.String(), "\n")
}

// runDemo starts the stack, runs the plan's scenarios with a progress bar
// on stderr, stops the stack, and prints the report (and writes --out).
func runDemo(cmd *cobra.Command, f *demoFlags, p plan) (err error) {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p.env.Logger = logger
	p.env.Status = func(s string) { fmt.Fprintf(stderr, "demo: %s\n", s) }
	env, err := demo.Start(ctx, p.env)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(stderr, "demo: ZooKeeper %s, NATS %s, lock-service replicas %s\n", env.ZK, env.NATS, strings.Join(env.Replicas, ", "))
	bar := &progressBar{w: stderr}
	report, err := demo.Run(ctx, env, p.scenarios, func(i int, s demo.Scenario) demo.Progress {
		bar.begin(fmt.Sprintf("%s (%d/%d)", s.Name(), i+1, len(p.scenarios)))
		return bar
	})
	bar.end()
	if cerr := env.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("demo: stopping the stack: %w", cerr))
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("demo: interrupted: %w", err)
		}
		return err
	}
	out := cmd.OutOrStdout()
	if f.json {
		err = report.WriteJSON(out)
	} else {
		err = report.WriteText(out)
	}
	if err != nil {
		return fmt.Errorf("demo: writing the report: %w", err)
	}
	if f.out != "" {
		files, err := report.WriteOut(f.out)
		if err != nil {
			return fmt.Errorf("demo: --out: %w", err)
		}
		fmt.Fprintf(stderr, "demo: wrote %s\n", strings.Join(files, ", "))
	}
	return nil
}

// progressBar draws one line on w, redrawn in place with \r:
// [#######.............]  35%  peak-shaving (1/1)  rpc: burst 800/s · ...
// When w is not a terminal (a log file, a pipe), it writes a whole line
// every few seconds instead, so the log stays readable.
type progressBar struct {
	w io.Writer

	mu     sync.Mutex
	label  string
	shown  int // runes on the line now
	open   bool
	plain  *bool     // w is not a terminal; decided on first use
	last   time.Time // of the last plain line
	lastAt float64   // its fraction
}

// plainEvery is how often a progress line is written when w is not a
// terminal.
const plainEvery = 5 * time.Second

// isPlain reports whether w is not a terminal. b.mu must be held.
func (b *progressBar) isPlain() bool {
	if b.plain == nil {
		plain := true
		if f, ok := b.w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				plain = false
			}
		}
		b.plain = &plain
	}
	return *b.plain
}

var _ demo.Progress = (*progressBar)(nil)

// begin starts a new bar for label, ending the previous one's line.
func (b *progressBar) begin(label string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open {
		fmt.Fprintln(b.w)
	}
	b.label, b.shown, b.open = label, 0, false
	b.last, b.lastAt = time.Time{}, 0
}

// Update redraws the bar.
func (b *progressBar) Update(stage string, done float64) {
	const width, maxLine = 24, 140
	b.mu.Lock()
	defer b.mu.Unlock()
	done = min(max(done, 0), 1)
	n := int(done * width)
	line := fmt.Sprintf("[%s%s] %3.0f%%  %s  %s", strings.Repeat("#", n), strings.Repeat(".", width-n), 100*done, b.label, stage)
	if utf8.RuneCountInString(line) > maxLine {
		line = string([]rune(line)[:maxLine-1]) + "…"
	}
	if b.isPlain() {
		if time.Since(b.last) >= plainEvery || (done == 1 && b.lastAt < 1) {
			fmt.Fprintln(b.w, line)
			b.last, b.lastAt = time.Now(), done
		}
		return
	}
	pad := max(b.shown-utf8.RuneCountInString(line), 0)
	fmt.Fprintf(b.w, "\r%s%s", line, strings.Repeat(" ", pad))
	b.shown, b.open = utf8.RuneCountInString(line), true
}

// end finishes the current line.
func (b *progressBar) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open {
		fmt.Fprintln(b.w)
		b.open = false
	}
}
