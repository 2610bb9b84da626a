package demo

import (
	"time"

	"github.com/switchyard-dev/switchyard/examples/flashsale"
)

// PathRun is what one path's run leaves behind, to be turned into its
// figures.
type PathRun struct {
	// Name and Title name the path (PathRun.Result copies them).
	Name, Title string
	// Tracker followed the path's requests; Recorder holds its series.
	Tracker  *Tracker
	Recorder *Recorder
	// Store is the path's store, audited for what was lost and oversold.
	Store *flashsale.Store
	// Capacity is the downstream's C.
	Capacity float64
	// ScheduleEnd is when the schedule's last phase ended: drain_s counts
	// from it, and the series runs at least through it.
	ScheduleEnd time.Time
	// Dispatch is how the schedule was kept.
	Dispatch DispatchStats
}

// Result returns the path's required figures, and these beside them:
// timed_out, failed, sold, sold_out, applied_not_accepted (purchases the
// store applied though the caller was told they failed, or never heard),
// queue_depth_max, client_dropped and max_send_lag_ms (how well the
// client kept to the schedule: both near 0 for a valid run).
func (r PathRun) Result() *PathResult {
	c := r.Tracker.Counts()
	p := &PathResult{
		Name: r.Name, Title: r.Title,
		Offered: c.Offered, Accepted: c.Accepted, Completed: c.Completed, Rejected: c.Rejected,
		CapacityPerS:      r.Capacity,
		MaxDownstreamPerS: r.Recorder.MaxRate(ColDownstream, time.Second),
	}
	var appliedAccepted int64
	for _, id := range r.Tracker.Accepted() {
		if _, ok := r.Store.Lookup(id); ok {
			appliedAccepted++
		} else {
			p.Lost++
		}
	}
	st := r.Store.Stats()
	p.Oversold = st.Oversold + r.Store.Audit()
	p.Duplicates = st.Duplicates
	p.SetLatency(r.Tracker.Latencies())
	if !c.LastSettled.IsZero() {
		p.DrainS = max(c.LastSettled.Sub(r.ScheduleEnd).Seconds(), 0)
	}
	end := r.ScheduleEnd
	if c.LastSettled.After(end) {
		end = c.LastSettled
	}
	p.Series = r.Recorder.Series(r.Name, end)

	var depth float64
	for _, x := range p.Series.Column(ColQueueDepth) {
		if x > depth {
			depth = x
		}
	}
	p.Set("timed_out", "timed out", UnitCount, float64(c.TimedOut))
	p.Set("failed", "failed (other errors)", UnitCount, float64(c.Failed))
	p.Set("sold", "units sold", UnitCount, float64(st.Purchased))
	p.Set("sold_out", "sold-out answers", UnitCount, float64(st.SoldOut))
	p.Set("applied_not_accepted", "applied, caller not told", UnitCount, float64(st.Applied-appliedAccepted))
	p.Set("queue_depth_max", "queue depth max", UnitCount, depth)
	p.Set("client_dropped", "sends dropped by client", UnitCount, float64(r.Dispatch.Dropped))
	p.Set("max_send_lag_ms", "max send lag", UnitMillis, millis(r.Dispatch.MaxLag))
	return p
}
