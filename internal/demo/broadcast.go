package demo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
)

// PathJetStream is the broadcast scenario's third path, beside PathRPC and
// PathMQ (core NATS there): a JetStream stream with a durable consumer per
// subscriber.
const PathJetStream = "jetstream"

// BroadcastConfig is the broadcast scenario's knobs. Start from
// DefaultBroadcast.
type BroadcastConfig struct {
	// Counts are the subscriber counts of the fan-out step, ascending: the
	// step runs once per count.
	Counts []int
	// Subscribers is the count the slow and offline steps run with (0:
	// the middle of Counts).
	Subscribers int
	// Rate is the producer's events a second, on a schedule fixed in
	// advance (open loop: a slow send never delays the next).
	Rate float64
	// Step is how long each fan-out step, and the slow step, sends for:
	// Rate × Step events each.
	Step time.Duration
	// SlowDelay is how long the slow subscriber takes over each event.
	SlowDelay time.Duration
	// SlowPendingLimit lowers the slow subscriber's pending-message limit
	// on core NATS, so that the demo's few events can show what a
	// subscriber that falls behind its limit gets: messages dropped. 0
	// keeps nats.go's default (500,000 messages).
	SlowPendingLimit int
	// Offline is how long the offline subscriber is down while the
	// producer sends (Rate × Offline events); as many again are sent once
	// it is back.
	Offline time.Duration
	// Deadline bounds each RPC call and each JetStream publish (and core
	// NATS's flush).
	Deadline time.Duration
	// SettleTimeout bounds the wait, after a step's last send, for the
	// deliveries its path took to arrive; what has not arrived by then
	// counts as lost. 0: 5s plus the slow subscriber's work for one step.
	SettleTimeout time.Duration
}

// DefaultBroadcast returns the defaults under opts: 1, 16 and 64
// subscribers; 50 events a second, 0.4s (20 events) per step; at 16
// subscribers, one that takes 100ms per event (pending limit 8 on core
// NATS), then one offline for 0.2s (10 events) and back for 10 more;
// deadline 2s. Step and Offline are × opts.Scale.
func DefaultBroadcast(opts Options) BroadcastConfig {
	return BroadcastConfig{
		Counts:           []int{1, 16, 64},
		Rate:             50,
		Step:             opts.Scaled(400 * time.Millisecond),
		SlowDelay:        100 * time.Millisecond,
		SlowPendingLimit: 8,
		Offline:          opts.Scaled(200 * time.Millisecond),
		Deadline:         2 * time.Second,
	}
}

// maxSubscribers bounds a count: each subscriber is a gRPC server, a NATS
// connection and a JetStream consumer of this process's.
const maxSubscribers = 256

// Validate reports a configuration the scenario cannot run.
func (c BroadcastConfig) Validate() error {
	if len(c.Counts) == 0 {
		return errors.New("demo: broadcast: no subscriber counts")
	}
	for i, n := range c.Counts {
		if n < 1 || n > maxSubscribers || (i > 0 && n <= c.Counts[i-1]) {
			return fmt.Errorf("demo: broadcast: subscriber counts %v: want ascending counts from 1 to %d", c.Counts, maxSubscribers)
		}
	}
	switch {
	case c.Subscribers != 0 && (c.Subscribers < 2 || c.Subscribers > maxSubscribers):
		return fmt.Errorf("demo: broadcast: %d subscribers for the slow and offline steps: want 2 to %d (one slow or offline, the others not)", c.Subscribers, maxSubscribers)
	case c.Subscribers == 0 && c.subscribers() < 2:
		return fmt.Errorf("demo: broadcast: the middle of counts %v is %d: set Subscribers to 2 or more for the slow and offline steps", c.Counts, c.subscribers())
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0) || c.Rate > 10000:
		return fmt.Errorf("demo: broadcast: rate %v/s: want more than 0, at most 10000", c.Rate)
	case c.Deadline <= 0 || c.SettleTimeout < 0 || c.SlowPendingLimit < 0:
		return fmt.Errorf("demo: broadcast: deadline %v, settle timeout %v, slow pending limit %d: want a positive deadline and no negative values",
			c.Deadline, c.SettleTimeout, c.SlowPendingLimit)
	case c.SlowDelay <= 0 || c.SlowDelay >= c.Deadline:
		return fmt.Errorf("demo: broadcast: slow delay %v: want more than 0 and less than the deadline %v (a slower subscriber only times out)", c.SlowDelay, c.Deadline)
	case c.events(c.Step) < 1:
		return fmt.Errorf("demo: broadcast: a step of %v at %v/s sends no event", c.Step, c.Rate)
	case c.events(c.Offline) < 1:
		return fmt.Errorf("demo: broadcast: offline for %v at %v/s misses no event", c.Offline, c.Rate)
	}
	return nil
}

// subscribers returns the slow and offline steps' count.
func (c BroadcastConfig) subscribers() int {
	if c.Subscribers != 0 || len(c.Counts) == 0 {
		return c.Subscribers
	}
	return c.Counts[len(c.Counts)/2]
}

// schedule returns the producer's sends over d: Rate × d of them, evenly
// spaced.
func (c BroadcastConfig) schedule(d time.Duration) []Send {
	return Profile{{Rate: c.Rate, Duration: d}}.Sends()
}

// events returns how many events the producer sends in d.
func (c BroadcastConfig) events(d time.Duration) int { return len(c.schedule(d)) }

// settleTimeout returns SettleTimeout or its default.
func (c BroadcastConfig) settleTimeout() time.Duration {
	if c.SettleTimeout > 0 {
		return c.SettleTimeout
	}
	return 5*time.Second + time.Duration(c.events(c.Step))*c.SlowDelay
}

// Broadcast is scenario 2: one "sold out" or "price changed" event to N
// subscribers, three ways — RPC (the producer calls every subscriber
// instance it finds in the registry, through flashsale.Notifier), core
// NATS (one publish; each subscriber its own connection and
// subscription) and JetStream (one publish stored in a stream; each
// subscriber its own durable consumer). Per path it runs three steps on
// the same schedule: fan-out to each count, one slow subscriber, one
// offline subscriber.
//
// Its required figures count deliveries, one per event per subscriber:
// offered = deliveries owed; accepted = those the producer's path took
// (RPC: calls answered OK; core NATS: publishes × subscribers connected
// then; JetStream: acked publishes × subscribers); completed = those the
// subscribers received; rejected = producer-visible failures (failed
// calls, or publishes × subscribers); lost = owed and never received;
// duplicates = redeliveries a subscriber absorbed by event id; latency =
// scheduled send to receipt, over every delivery; drain_s = the offline
// subscriber's catch-up once back (JetStream; n/a elsewhere). Oversold,
// capacity_per_s and max_downstream_per_s do not apply.
type Broadcast struct{ cfg BroadcastConfig }

var _ Scenario = (*Broadcast)(nil)

// NewBroadcast returns the scenario with cfg.
func NewBroadcast(cfg BroadcastConfig) (*Broadcast, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Counts = slices.Clone(cfg.Counts)
	cfg.Subscribers = cfg.subscribers()
	return &Broadcast{cfg: cfg}, nil
}

// Name returns "broadcast".
func (*Broadcast) Name() string { return "broadcast" }

// Config returns the scenario's configuration (Subscribers filled in).
func (b *Broadcast) Config() BroadcastConfig {
	cfg := b.cfg
	cfg.Counts = slices.Clone(cfg.Counts)
	return cfg
}

// broadcastPaths are the paths in table order, with their titles.
var broadcastPaths = []struct{ name, title string }{
	{PathRPC, "RPC"},
	{PathMQ, "MQ (core NATS)"},
	{PathJetStream, "JetStream"},
}

// Run runs the three paths one after another, each through every step,
// and reports them side by side.
func (b *Broadcast) Run(ctx context.Context, env *Env, progress Progress) (*ScenarioResult, error) {
	cfg := b.cfg
	var prog progressState
	if progress != nil {
		stop := prog.run(progress, time.Now(), b.estimate())
		defer stop()
	}
	res := &ScenarioResult{
		Name:   b.Name(),
		Title:  fmt.Sprintf("one event to %s subscribers — one publish (NATS) or a call per subscriber (RPC); then a slow one, then an offline one", joinInts(cfg.Counts, ", ")),
		Setup:  b.setup(),
		Config: b.configJSON(),
	}
	for _, p := range broadcastPaths {
		prog.set(p.name, nil)
		r := &bcRun{cfg: cfg, env: env, scenario: b.Name(), path: p.name, prog: &prog}
		pr, err := r.run(ctx)
		if err != nil {
			return nil, err
		}
		pr.Title = p.title
		res.Paths = append(res.Paths, pr)
	}
	res.Verdicts = broadcastVerdicts(res, cfg)
	res.Charts = broadcastCharts(b.Name(), cfg)
	if progress != nil {
		progress.Update("done", 1)
	}
	return res, nil
}

// estimate guesses the run's length, for progress.
func (b *Broadcast) estimate() time.Duration {
	cfg := b.cfg
	perPath := time.Duration(len(cfg.Counts)+1)*cfg.Step + 2*cfg.Offline +
		time.Duration(cfg.events(cfg.Step))*cfg.SlowDelay + 2*time.Second
	return time.Duration(len(broadcastPaths)) * perPath
}

// setup says what the scenario runs with, and how its figures map to the
// required ones.
func (b *Broadcast) setup() string {
	cfg := b.cfg
	n := cfg.Subscribers
	lines := []string{
		fmt.Sprintf("fan-out to %s subscribers, %d events each at %s (each step starts with one uncounted warm-up event); at %d subscribers one takes %v per event (%d events), then one is offline for %d events and back for %d more",
			joinInts(cfg.Counts, ", "), cfg.events(cfg.Step), fmtRate(cfg.Rate), n, cfg.SlowDelay, cfg.events(cfg.Step), cfg.events(cfg.Offline), cfg.events(cfg.Offline)),
		fmt.Sprintf("RPC: each subscriber a gRPC server registered in ZooKeeper; the producer (flashsale.Notifier) calls every instance at once and waits for all, deadline %v; gRPC runs a subscriber's calls concurrently. Offline: its server stopped abruptly, its registry entry kept (as for a crashed process until its session times out)", cfg.Deadline),
		fmt.Sprintf("MQ: core NATS, one publish and a flush (until the server has it) per event; each subscriber its own connection and subscription, handed one message at a time; the slow one's pending limit %s. Offline: its connection closed", pendingLimit(cfg.SlowPendingLimit)),
		"JetStream: one publish per event, acked once stored (memory stream); each subscriber a durable pull consumer on its own connection, explicit acks, dedup by event id. Offline: its connection closed, its consumer kept",
		"figures count deliveries (event × subscriber): offered owed; accepted taken by the producer's path (RPC calls OK, NATS publishes × subscribers connected, JetStream acked publishes × subscribers); completed received; rejected producer-visible failures; lost owed, never received; latency scheduled send → receipt; drain the offline subscriber's catch-up",
	}
	return strings.Join(lines, "\n")
}

func pendingLimit(n int) string {
	if n == 0 {
		return "nats.go's default"
	}
	return fmt.Sprintf("lowered to %d messages", n)
}

func (b *Broadcast) configJSON() map[string]any {
	cfg := b.cfg
	return map[string]any{
		"counts": slices.Clone(cfg.Counts), "subscribers": cfg.Subscribers, "rate_per_s": cfg.Rate,
		"step_s": cfg.Step.Seconds(), "events_per_step": cfg.events(cfg.Step),
		"slow_delay_ms": cfg.SlowDelay.Milliseconds(), "slow_pending_limit": cfg.SlowPendingLimit,
		"offline_s": cfg.Offline.Seconds(), "offline_events": cfg.events(cfg.Offline),
		"deadline_ms": cfg.Deadline.Milliseconds(), "settle_timeout_ms": cfg.settleTimeout().Milliseconds(),
	}
}

func joinInts(v []int, sep string) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, sep)
}

// bcSub is one subscriber of one path: the first receipt of each event
// id, and the redeliveries it absorbed. Its handler is the same on every
// path. It is safe for concurrent use.
type bcSub struct {
	idx   int
	delay atomic.Int64 // per event, in nanoseconds: the slow step's

	mu   sync.Mutex
	got  map[string]time.Time
	dups int64
}

// handle records the event's receipt (the first of its id), then, when
// the subscriber is slow, takes its delay over it.
func (s *bcSub) handle(ctx context.Context, ev *flashsalev1.SaleEvent) (duplicate bool, err error) {
	now := time.Now()
	s.mu.Lock()
	_, seen := s.got[ev.GetEventId()]
	if seen {
		s.dups++
	} else {
		s.got[ev.GetEventId()] = now
	}
	s.mu.Unlock()
	if seen {
		return true, nil
	}
	if d := time.Duration(s.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return false, nil
}

func (s *bcSub) receivedAt(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.got[id]
	return at, ok
}

func (s *bcSub) duplicates() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dups
}

// bcSend is what one event's send came to at the producer.
type bcSend struct {
	sent bool
	// calls are the calls or publishes the producer made; errs those
	// that failed, as the producer saw.
	calls, errs int
	// accepted and rejected are deliveries: those the path took, and
	// those it failed in the producer's sight.
	accepted, rejected int
	// took is the producer's time: RPC until Notify returned; core NATS
	// publish and flush; JetStream until the publish was acked.
	took time.Duration
}

// bcStep is one step of one path: its events and subscribers, and what
// each send came to.
type bcStep struct {
	name      string
	subs      []*bcSub // owed every event
	ids       []string
	scheduled []time.Time
	sends     []bcSend
	sent      atomic.Int64

	slow          *bcSub // the slow step's slow subscriber
	droppedBefore int64  // its drops before the step (core NATS)
	dropped       int64  // its drops in the step

	offline  *bcSub    // the offline step's offline subscriber
	offlineN int       // the step's first offlineN events were sent while it was down
	back     time.Time // when it began to come back

	inFlight, inFlightMax atomic.Int64
}

// bcRun is one path's run through the steps.
type bcRun struct {
	cfg            BroadcastConfig
	env            *Env
	scenario, path string
	prog           *progressState

	tr    bcTransport
	subs  []*bcSub // the subscribers online now, by index
	all   []*bcSub // every subscriber the run started
	steps []*bcStep
	stage atomic.Pointer[string]
}

// run sets the path up, runs every step, tears the path down (on every
// return) and returns its figures.
func (r *bcRun) run(ctx context.Context) (_ *PathResult, err error) {
	r.setStage("setting up")
	r.prog.set(r.path, func() string { return *r.stage.Load() })
	setup, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch r.path {
	case PathRPC:
		r.tr, err = newRPCBroadcast(r.env, r.scenario, r.cfg.Deadline)
	case PathMQ:
		r.tr = newNATSBroadcast(r.env, r.scenario, r.cfg.Deadline)
	case PathJetStream:
		r.tr, err = newJetStreamBroadcast(setup, r.env, r.scenario, r.cfg)
	default:
		err = fmt.Errorf("demo: broadcast: unknown path %q", r.path)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cerr := r.tr.close(cctx); cerr != nil && err == nil {
			err = fmt.Errorf("demo: broadcast: %s path: stopping: %w", r.path, cerr)
		}
	}()

	for _, n := range r.cfg.Counts {
		if err := r.fanOut(ctx, n); err != nil {
			return nil, err
		}
	}
	if err := r.slow(ctx); err != nil {
		return nil, err
	}
	if err := r.offline(ctx); err != nil {
		return nil, err
	}
	r.setStage("done")
	return r.result(), nil
}

func (r *bcRun) setStage(s string) { r.stage.Store(&s) }

// fanOut runs the fan-out step at n subscribers.
func (r *bcRun) fanOut(ctx context.Context, n int) error {
	st, err := r.begin(ctx, fmt.Sprintf("fanout-%d", n), n, r.cfg.events(r.cfg.Step))
	if err != nil {
		return err
	}
	if err := r.dispatch(ctx, st, fmt.Sprintf("fan-out to %d", n), 0, r.cfg.Step); err != nil {
		return err
	}
	return r.settle(ctx, st)
}

// slow runs the slow step: subscriber 0 takes SlowDelay per event (with
// its pending limit lowered where the path has one, core NATS).
func (r *bcRun) slow(ctx context.Context) error {
	st, err := r.begin(ctx, "slow", r.cfg.Subscribers, r.cfg.events(r.cfg.Step))
	if err != nil {
		return err
	}
	st.slow = r.subs[0]
	dr, drops := r.tr.(bcDropper)
	if drops {
		if r.cfg.SlowPendingLimit > 0 {
			if err := dr.setPendingLimit(st.slow, r.cfg.SlowPendingLimit); err != nil {
				return err
			}
		}
		st.droppedBefore = dr.dropped(st.slow)
	}
	st.slow.delay.Store(int64(r.cfg.SlowDelay))
	err = r.dispatch(ctx, st, fmt.Sprintf("one of %d slow", r.cfg.Subscribers), 0, r.cfg.Step)
	if err == nil {
		err = r.settle(ctx, st)
	}
	st.slow.delay.Store(0)
	if drops {
		st.dropped = dr.dropped(st.slow) - st.droppedBefore
	}
	if err != nil {
		return err
	}
	if drops && r.cfg.SlowPendingLimit > 0 {
		return dr.setPendingLimit(st.slow, 0)
	}
	return nil
}

// offline runs the offline step: the last subscriber goes down, misses
// Rate × Offline events, comes back, and as many more are sent.
func (r *bcRun) offline(ctx context.Context) error {
	k := r.cfg.events(r.cfg.Offline)
	st, err := r.begin(ctx, "offline", r.cfg.Subscribers, 2*k)
	if err != nil {
		return err
	}
	st.offline, st.offlineN = r.subs[len(r.subs)-1], k
	if err := r.tr.crash(ctx, st.offline); err != nil {
		return err
	}
	if err := r.dispatch(ctx, st, fmt.Sprintf("one of %d offline", r.cfg.Subscribers), 0, r.cfg.Offline); err != nil {
		return err
	}
	r.setStage(fmt.Sprintf("one of %d offline: bringing it back", r.cfg.Subscribers))
	st.back = time.Now()
	if err := r.tr.rejoin(ctx, st.offline); err != nil {
		return err
	}
	if err := r.dispatch(ctx, st, fmt.Sprintf("one of %d back", r.cfg.Subscribers), k, r.cfg.Offline); err != nil {
		return err
	}
	return r.settle(ctx, st)
}

// begin brings the path to n subscribers, sends one uncounted warm-up
// event (the connections made lazily, gRPC's, are made then, not in the
// step), and returns a step of events events.
func (r *bcRun) begin(ctx context.Context, name string, n, events int) (*bcStep, error) {
	r.setStage(fmt.Sprintf("%s: starting subscribers", name))
	if err := r.resize(ctx, n); err != nil {
		return nil, err
	}
	st := &bcStep{name: name, subs: slices.Clone(r.subs), ids: make([]string, events),
		scheduled: make([]time.Time, events), sends: make([]bcSend, events)}
	for i := range st.ids {
		st.ids[i] = fmt.Sprintf("%s-%s-%s-%04d", r.env.RunID, r.path, name, i)
	}
	r.steps = append(r.steps, st)
	if err := r.warmUp(ctx, name); err != nil {
		return nil, err
	}
	return st, nil
}

// resize starts or stops subscribers until n are online.
func (r *bcRun) resize(ctx context.Context, n int) error {
	if have := len(r.subs); have < n {
		fresh := make([]*bcSub, 0, n-have)
		for i := have; i < n; i++ {
			fresh = append(fresh, &bcSub{idx: i, got: map[string]time.Time{}})
		}
		r.all = append(r.all, fresh...)
		if err := forEach(fresh, func(s *bcSub) error { return r.tr.join(ctx, s) }); err != nil {
			return err
		}
		r.subs = append(r.subs, fresh...)
	} else if have > n {
		gone := r.subs[n:]
		r.subs = r.subs[:n:n]
		if err := forEach(gone, func(s *bcSub) error { return r.tr.leave(ctx, s) }); err != nil {
			return err
		}
	}
	return r.tr.await(ctx, n)
}

// forEach runs fn on each of subs, a few at a time, and joins the errors.
func forEach(subs []*bcSub, fn func(*bcSub) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 16)
	)
	for _, s := range subs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(s); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// warmUp sends one event that no figure counts and waits (a few seconds
// at most) for every subscriber online to have it.
func (r *bcRun) warmUp(ctx context.Context, step string) error {
	id := fmt.Sprintf("%s-%s-%s-warm-up", r.env.RunID, r.path, step)
	r.tr.send(ctx, &flashsalev1.SaleEvent{EventId: id, Kind: flashsalev1.SaleEventKind_SALE_EVENT_KIND_PRICE_CHANGED, Item: ItemNames(1)[0], PriceCents: 1})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		all := true
		for _, s := range r.subs {
			if _, ok := s.receivedAt(id); !ok {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		if err := sleepUntil(ctx, time.Now().Add(5*time.Millisecond)); err != nil {
			return err
		}
	}
	return nil // a subscriber that is not there yet shows in the step's figures
}

// dispatch sends the step's events from from on, as many as the schedule
// over d has (cfg.schedule), each in a goroutine of its own (Dispatch),
// and returns once every send has returned.
func (r *bcRun) dispatch(ctx context.Context, st *bcStep, stage string, from int, d time.Duration) error {
	sends := r.cfg.schedule(d)
	total := len(st.ids)
	r.setStage(stage)
	r.prog.set(r.path, func() string {
		return fmt.Sprintf("%s: sent %d of %d", *r.stage.Load(), st.sent.Load(), total)
	})
	defer r.prog.set(r.path, func() string { return *r.stage.Load() })
	start := time.Now().Add(10 * time.Millisecond)
	Dispatch(ctx, start, sends, 10000, func(ctx context.Context, i int, scheduled time.Time) {
		j := from + i
		st.scheduled[j] = scheduled
		raiseTo(&st.inFlightMax, st.inFlight.Add(1))
		st.sends[j] = r.tr.send(ctx, r.event(st, j))
		st.inFlight.Add(-1)
		st.sent.Add(1)
	})
	return ctx.Err()
}

// event returns the step's j-th event: "sold out" and "price changed"
// in turn, over the sale's items.
func (r *bcRun) event(st *bcStep, j int) *flashsalev1.SaleEvent {
	ev := &flashsalev1.SaleEvent{EventId: st.ids[j], Item: fmt.Sprintf("item-%02d", j%16)}
	if j%2 == 0 {
		ev.Kind = flashsalev1.SaleEventKind_SALE_EVENT_KIND_SOLD_OUT
	} else {
		ev.Kind, ev.PriceCents = flashsalev1.SaleEventKind_SALE_EVENT_KIND_PRICE_CHANGED, int64(1000+j)
	}
	return ev
}

// settle waits until every delivery the path took in the step has
// arrived (or, on core NATS, been dropped), or SettleTimeout passes. A
// path that does not redeliver (RPC, core NATS) is also settled once
// nothing has arrived for a while: what it has not delivered by then it
// never will.
func (r *bcRun) settle(ctx context.Context, st *bcStep) error {
	r.setStage(st.name + ": waiting for deliveries")
	deadline := time.Now().Add(r.cfg.settleTimeout())
	quiet := max(2*r.cfg.SlowDelay, 300*time.Millisecond)
	last, changed := -1, time.Now()
	for {
		got := st.received()
		now := time.Now()
		if got != last {
			last, changed = got, now
		}
		var dropped int64
		if d, ok := r.tr.(bcDropper); ok && st.slow != nil {
			dropped = d.dropped(st.slow) - st.droppedBefore
		}
		switch {
		case int64(got)+dropped >= st.accepted():
			return nil
		case !r.tr.durable() && now.Sub(changed) >= quiet, now.After(deadline):
			return nil
		}
		if err := sleepUntil(ctx, time.Now().Add(5*time.Millisecond)); err != nil {
			return err
		}
	}
}

// received returns the step's deliveries received so far.
func (st *bcStep) received() int {
	n := 0
	for _, s := range st.subs {
		for _, id := range st.ids {
			if _, ok := s.receivedAt(id); ok {
				n++
			}
		}
	}
	return n
}

// accepted returns the step's deliveries its path took.
func (st *bcStep) accepted() int64 {
	var n int64
	for _, s := range st.sends {
		n += int64(s.accepted)
	}
	return n
}

// raiseTo raises m to v if v is larger.
func raiseTo(m *atomic.Int64, v int64) {
	for {
		cur := m.Load()
		if v <= cur || m.CompareAndSwap(cur, v) {
			return
		}
	}
}

// result returns the path's figures: the required ones over every step's
// deliveries, and each step's own.
func (r *bcRun) result() *PathResult {
	p := &PathResult{Name: r.path}
	var lat []time.Duration
	var calls, errs int64
	for _, st := range r.steps {
		for j, id := range st.ids {
			snd := st.sends[j]
			if !snd.sent {
				continue
			}
			p.Offered += int64(len(st.subs))
			p.Accepted += int64(snd.accepted)
			p.Rejected += int64(snd.rejected)
			calls += int64(snd.calls)
			errs += int64(snd.errs)
			for _, s := range st.subs {
				if at, ok := s.receivedAt(id); ok {
					p.Completed++
					lat = append(lat, at.Sub(st.scheduled[j]))
				}
			}
		}
	}
	p.Lost = p.Offered - p.Completed
	for _, s := range r.all {
		p.Duplicates += s.duplicates()
	}
	p.SetLatency(Summarise(lat))
	p.NotApplicable("oversold", "capacity_per_s", "max_downstream_per_s")
	p.Set("producer_calls", "producer calls or publishes", UnitCount, float64(calls))
	p.Set("producer_errors", "producer-visible errors", UnitCount, float64(errs))
	for _, st := range r.steps {
		switch {
		case st.slow != nil:
			r.slowFigures(p, st)
		case st.offline != nil:
			r.offlineFigures(p, st)
		default:
			r.fanOutFigures(p, st)
		}
	}
	return p
}

// fanOutFigures sets a fan-out step's figures: the producer's calls per
// event and its time, and the time until every subscriber had an event.
func (r *bcRun) fanOutFigures(p *PathResult, st *bcStep) {
	n := len(st.subs)
	var took, toAll []time.Duration
	var calls, sent int
	for j, id := range st.ids {
		snd := st.sends[j]
		if !snd.sent {
			continue
		}
		sent++
		calls += snd.calls
		took = append(took, snd.took)
		if last, ok := lastReceipt(st.subs, id); ok {
			toAll = append(toAll, last.Sub(st.scheduled[j]))
		}
	}
	pt, ta := Summarise(took), Summarise(toAll)
	key := func(s string) string { return fmt.Sprintf("fanout_n%d_%s", n, s) }
	label := func(s string) string { return fmt.Sprintf("N=%d: %s", n, s) }
	p.Set(key("producer_calls"), label("producer calls per event"), UnitCount, float64(calls)/float64(max(sent, 1)))
	p.Set(key("producer_p50_ms"), label("producer time p50"), UnitMillis, millis(pt.P50))
	p.Set(key("time_to_all_p50_ms"), label("time to all p50"), UnitMillis, millis(ta.P50))
	p.Set(key("time_to_all_p99_ms"), label("time to all p99"), UnitMillis, millis(ta.P99))
	p.Set(key("reached_all"), label("events that reached all"), UnitCount, float64(ta.N))
}

// lastReceipt returns when the last of subs received event id, if all did.
func lastReceipt(subs []*bcSub, id string) (time.Time, bool) {
	var last time.Time
	for _, s := range subs {
		at, ok := s.receivedAt(id)
		if !ok {
			return time.Time{}, false
		}
		if at.After(last) {
			last = at
		}
	}
	return last, true
}

// slowFigures sets the slow step's figures: whose latency the slow
// subscriber hurt.
func (r *bcRun) slowFigures(p *PathResult, st *bcStep) {
	var took, fast []time.Duration
	var lagMax time.Duration
	missed := 0
	for j, id := range st.ids {
		snd := st.sends[j]
		if !snd.sent {
			continue
		}
		took = append(took, snd.took)
		for _, s := range st.subs {
			at, ok := s.receivedAt(id)
			switch {
			case s == st.slow && ok:
				lagMax = max(lagMax, at.Sub(st.scheduled[j]))
			case s == st.slow:
				missed++
			case ok:
				fast = append(fast, at.Sub(st.scheduled[j]))
			}
		}
	}
	pt := Summarise(took)
	p.Set("slow_producer_p50_ms", "slow sub: producer time p50", UnitMillis, millis(pt.P50))
	p.Set("slow_producer_p99_ms", "slow sub: producer time p99", UnitMillis, millis(pt.P99))
	p.Set("slow_producer_in_flight_max", "slow sub: events in flight at the producer, max", UnitCount, float64(st.inFlightMax.Load()))
	p.Set("slow_fast_subs_p99_ms", "slow sub: the others' latency p99", UnitMillis, millis(Summarise(fast).P99))
	p.Set("slow_sub_lag_max_ms", "slow sub: its own lag max", UnitMillis, millis(lagMax))
	p.Set("slow_sub_missed", "slow sub: events it never got", UnitCount, float64(missed))
	if _, ok := r.tr.(bcDropper); ok {
		p.Set("slow_dropped", "slow sub: dropped past its pending limit", UnitCount, float64(st.dropped))
	} else {
		p.SetNA("slow_dropped", "slow sub: dropped past its pending limit", UnitCount)
	}
}

// offlineFigures sets the offline step's figures: what the offline
// subscriber missed, what the producer saw, and what came back.
func (r *bcRun) offlineFigures(p *PathResult, st *bcStep) {
	missed, caughtUp, errs := 0, 0, 0
	var last time.Time
	for j, id := range st.ids {
		snd := st.sends[j]
		if !snd.sent {
			continue
		}
		errs += snd.errs
		at, ok := st.offline.receivedAt(id)
		switch {
		case !ok:
			missed++
		case j < st.offlineN:
			caughtUp++
			if at.After(last) {
				last = at
			}
		}
	}
	p.Set("offline_events", "offline sub: events sent while it was down", UnitCount, float64(st.offlineN))
	p.Set("offline_missed", "offline sub: events it never got", UnitCount, float64(missed))
	p.Set("offline_producer_errors", "offline sub: producer-visible errors", UnitCount, float64(errs))
	p.Set("offline_caught_up", "offline sub: missed events delivered once back", UnitCount, float64(caughtUp))
	if r.tr.durable() {
		var catchUp time.Duration
		if caughtUp > 0 {
			catchUp = max(last.Sub(st.back), 0)
		}
		p.DrainS = catchUp.Seconds()
		p.Set("offline_catch_up_ms", "offline sub: catch-up once back", UnitMillis, millis(catchUp))
	} else {
		p.NotApplicable("drain_s")
		p.SetNA("offline_catch_up_ms", "offline sub: catch-up once back", UnitMillis)
	}
}

// broadcastVerdicts says, from the figures, what the scenario showed.
func broadcastVerdicts(res *ScenarioResult, cfg BroadcastConfig) []string {
	r, m, j := res.Path(PathRPC), res.Path(PathMQ), res.Path(PathJetStream)
	fig := func(p *PathResult, key string) float64 { v, _ := p.Figure(key); return v }
	ms := func(p *PathResult, key string) string { return FormatMillis(fig(p, key)) }
	var out []string

	lo, hi := cfg.Counts[0], cfg.Counts[len(cfg.Counts)-1]
	fk := func(n int, s string) string { return fmt.Sprintf("fanout_n%d_%s", n, s) }
	out = append(out, fmt.Sprintf("Fan-out to %d: core NATS made %.0f publish per event and all %d subscribers had it in %s (p50; p99 %s); JetStream %.0f acked publish, all in %s (p99 %s); RPC made %.0f calls per event, its producer busy %s per event (p50), all in %s (p99 %s).",
		hi, fig(m, fk(hi, "producer_calls")), hi, ms(m, fk(hi, "time_to_all_p50_ms")), ms(m, fk(hi, "time_to_all_p99_ms")),
		fig(j, fk(hi, "producer_calls")), ms(j, fk(hi, "time_to_all_p50_ms")), ms(j, fk(hi, "time_to_all_p99_ms")),
		fig(r, fk(hi, "producer_calls")), ms(r, fk(hi, "producer_p50_ms")), ms(r, fk(hi, "time_to_all_p50_ms")), ms(r, fk(hi, "time_to_all_p99_ms"))))
	if lo != hi {
		out = append(out, fmt.Sprintf("From %d to %d subscribers the RPC producer's work grew from %.0f to %.0f calls per event (time %s → %s); NATS's stayed at one publish (%s → %s), the server doing the fan-out.",
			lo, hi, fig(r, fk(lo, "producer_calls")), fig(r, fk(hi, "producer_calls")), ms(r, fk(lo, "producer_p50_ms")), ms(r, fk(hi, "producer_p50_ms")),
			ms(m, fk(lo, "producer_p50_ms")), ms(m, fk(hi, "producer_p50_ms"))))
	}

	rSlow, mSlow := fig(r, "slow_producer_p50_ms"), fig(m, "slow_producer_p50_ms")
	if rSlow > mSlow && rSlow >= millis(cfg.SlowDelay)/2 {
		out = append(out, fmt.Sprintf("A subscriber that takes %v per event holds RPC's producer: its time per event went to %s (p50) against %s on core NATS and %s on JetStream — Notify waits for its slowest call. This producer sends each event in a goroutine of its own, so it kept the schedule with up to %.0f events in flight; one that waits for each Notify before the next would manage %s.",
			cfg.SlowDelay, FormatMillis(rSlow), FormatMillis(mSlow), ms(j, "slow_producer_p50_ms"), fig(r, "slow_producer_in_flight_max"), fmtRate(1/cfg.SlowDelay.Seconds())))
	} else {
		out = append(out, fmt.Sprintf("The slow subscriber did not hold RPC's producer here: %s per event (p50) against %s on core NATS.", FormatMillis(rSlow), FormatMillis(mSlow)))
	}
	out = append(out, fmt.Sprintf("The other subscribers' latency p99 during it: RPC %s, core NATS %s, JetStream %s. The slow one's own lag: core NATS %s, and it lost %.0f events past its pending limit (the producer never knew); JetStream %s, lost %.0f; RPC %s — gRPC ran its calls side by side, so the wait fell on the producer instead.",
		ms(r, "slow_fast_subs_p99_ms"), ms(m, "slow_fast_subs_p99_ms"), ms(j, "slow_fast_subs_p99_ms"),
		ms(m, "slow_sub_lag_max_ms"), fig(m, "slow_sub_missed"), ms(j, "slow_sub_lag_max_ms"), fig(j, "slow_sub_missed"), ms(r, "slow_sub_lag_max_ms")))

	k := fig(r, "offline_events")
	out = append(out, fmt.Sprintf("Offline for %.0f events: RPC's producer saw %.0f errors and the subscriber missed %.0f — nobody sends them again; core NATS: it missed %.0f and the producer saw %.0f errors; JetStream: it missed %.0f — its durable consumer handed over the %.0f it had missed within %s of its coming back.",
		k, fig(r, "offline_producer_errors"), fig(r, "offline_missed"), fig(m, "offline_missed"), fig(m, "offline_producer_errors"),
		fig(j, "offline_missed"), fig(j, "offline_caught_up"), ms(j, "offline_catch_up_ms")))
	if j.Lost > 0 {
		out = append(out, fmt.Sprintf("JetStream lost %d deliveries: some did not arrive within the settle timeout.", j.Lost))
	}
	return out
}

// broadcastCharts are the scenario's chart: the fan-out's producer cost
// and time to all against the number of subscribers, per path.
func broadcastCharts(scenario string, cfg BroadcastConfig) []Chart {
	x := make([]float64, len(cfg.Counts))
	for i, n := range cfg.Counts {
		x[i] = float64(n)
	}
	return []Chart{{
		File: scenario + "-fanout.png", Title: scenario + ": one event to N subscribers", Kind: ChartFigures,
		Columns: []string{"fanout_n%v_producer_calls", "fanout_n%v_producer_p50_ms", "fanout_n%v_time_to_all_p99_ms"},
		Panels:  []string{"producer's calls or publishes per event", "producer's time per event, p50 (ms)", "time until all N have it, p99 (ms)"},
		X:       x, XLabel: "subscribers N",
	}}
}
