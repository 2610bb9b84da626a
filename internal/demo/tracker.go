package demo

import (
	"sync"
	"time"
)

// Tracker follows each request of one path from offered to settled, by
// request id, and records the events in a Recorder: offered at the
// scheduled time, accepted or refused when the path answered, completed
// when the request was settled at the store. It is safe for concurrent
// use; events may arrive in any order (a worker can settle a purchase
// before its producer hears that the publish was acknowledged).
type Tracker struct {
	rec *Recorder

	mu          sync.Mutex
	reqs        map[string]*request
	counts      TrackerCounts
	lastSettled time.Time
}

type request struct {
	scheduled time.Time
	phase     int
	accepted  bool
	refused   string // the column it was refused under
	settled   bool
	settledAt time.Time
}

// TrackerCounts are a Tracker's counts.
type TrackerCounts struct {
	Offered, Accepted, Rejected, TimedOut, Failed int64
	// Settled counts requests settled at the store; Completed those of
	// them that were accepted.
	Settled, Completed int64
	// Pending counts accepted requests not settled yet.
	Pending int64
	// LastSettled is the time of the last settlement (zero for none).
	LastSettled time.Time
}

// NewTracker returns a tracker recording into rec.
func NewTracker(rec *Recorder) *Tracker {
	return &Tracker{rec: rec, reqs: map[string]*request{}}
}

// Offer records request id as sent, due at scheduled, in the profile's
// phase phase.
func (t *Tracker) Offer(id string, scheduled time.Time, phase int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.reqs[id]; ok {
		return
	}
	t.reqs[id] = &request{scheduled: scheduled, phase: phase}
	t.counts.Offered++
	t.rec.Count(ColOffered, scheduled)
}

// Accept records that the path took request id at at.
func (t *Tracker) Accept(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.reqs[id]
	if !ok || r.accepted || r.refused != "" {
		return
	}
	r.accepted = true
	t.counts.Accepted++
	t.rec.Count(ColAccepted, at)
	if r.settled {
		t.counts.Completed++
	}
}

// Refuse records that the path refused request id at at, under col:
// ColRejected, ColTimedOut or ColFailed.
func (t *Tracker) Refuse(id string, at time.Time, col string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.reqs[id]
	if !ok || r.accepted || r.refused != "" {
		return
	}
	r.refused = col
	switch col {
	case ColRejected:
		t.counts.Rejected++
	case ColTimedOut:
		t.counts.TimedOut++
	default:
		col = ColFailed
		t.counts.Failed++
	}
	t.rec.Count(col, at)
}

// Settle records that request id was settled at the store at at: the
// first time counts (as completed, once the request is accepted too);
// later settlements (redeliveries) are ignored.
func (t *Tracker) Settle(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.reqs[id]
	if !ok || r.settled {
		return
	}
	r.settled, r.settledAt = true, at
	t.counts.Settled++
	if r.accepted {
		t.counts.Completed++
	}
	if at.After(t.lastSettled) {
		t.lastSettled = at
	}
	t.rec.Count(ColCompleted, at)
}

// Counts returns the counts so far.
func (t *Tracker) Counts() TrackerCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counts
	c.Pending = c.Accepted - c.Completed
	c.LastSettled = t.lastSettled
	return c
}

// Accepted returns the ids of the accepted requests.
func (t *Tracker) Accepted() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []string
	for id, r := range t.reqs {
		if r.accepted {
			ids = append(ids, id)
		}
	}
	return ids
}

// Phase returns how many requests of phase were offered and how many of
// them were refused (rejected, timed out or failed).
func (t *Tracker) Phase(phase int) (offered, refused int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.reqs {
		if r.phase == phase {
			offered++
			if r.refused != "" {
				refused++
			}
		}
	}
	return offered, refused
}

// SettledBefore looks at the accepted requests scheduled before
// scheduled: it returns the latest time one of them was settled (zero for
// none) and how many are not settled yet. After an outage, the first is
// when the backlog it left was worked off.
func (t *Tracker) SettledBefore(scheduled time.Time) (last time.Time, pending int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.reqs {
		if !r.accepted || !r.scheduled.Before(scheduled) {
			continue
		}
		if !r.settled {
			pending++
		} else if r.settledAt.After(last) {
			last = r.settledAt
		}
	}
	return last, pending
}

// Latencies summarises the latency of the completed requests (accepted
// and settled), from the scheduled send to the settlement.
func (t *Tracker) Latencies() LatencySummary {
	return t.latencies(func(*request) bool { return true })
}

// PhaseLatencies is Latencies over phase's requests alone.
func (t *Tracker) PhaseLatencies(phase int) LatencySummary {
	return t.latencies(func(r *request) bool { return r.phase == phase })
}

func (t *Tracker) latencies(keep func(*request) bool) LatencySummary {
	t.mu.Lock()
	var lat []time.Duration
	for _, r := range t.reqs {
		if r.accepted && r.settled && keep(r) {
			lat = append(lat, r.settledAt.Sub(r.scheduled))
		}
	}
	t.mu.Unlock()
	return Summarise(lat)
}
