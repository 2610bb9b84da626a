package loadbalance

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

// Health is one instance's outlier state. It outlives pickers (it is kept
// by address in Tracked), and every field is an atomic, so recording a
// call's outcome takes no lock.
type Health struct {
	failures  atomic.Int32 // consecutive server failures
	ejections atomic.Int32 // ejections in the current run of them
	until     atomic.Int64 // unix ns the current ejection ends; 0: never ejected
	state     atomic.Int32 // connectivity.State of its SubConn; TransientFailure sticks until Ready
}

// setState records a SubConn state. A failure sticks through the
// reconnection attempts that follow it, until the SubConn is Ready (as
// gRPC reports a channel's state).
func (h *Health) setState(s connectivity.State) {
	if (s == connectivity.Connecting || s == connectivity.Idle) && connectivity.State(h.state.Load()) == connectivity.TransientFailure {
		return
	}
	h.state.Store(int32(s))
}

// Ejected reports whether the instance is out of rotation at now (unix ns).
func (h *Health) Ejected(now int64) bool { return h.until.Load() > now }

// Endpoint is one ready SubConn as a picker sees it.
type Endpoint struct {
	SubConn balancer.SubConn
	Record  *registryv1.Instance // nil when the address carries none
	Health  *Health
	// Done records a call's outcome in Health; a picker returns it (or
	// calls it from its own Done). Made once per picker, so a pick that
	// uses it allocates nothing.
	Done func(balancer.DoneInfo)
}

// Set is what a picker is built on: the ready endpoints, which of them
// are in the caller's zone, and the ejection policy. A Set is immutable
// but for the endpoints' Health; it is safe for concurrent use.
type Set struct {
	Endpoints []Endpoint

	all   []int // every index
	local []int // indexes in the caller's zone; nil: no preference or none there
	eject Ejection
	known map[string]*Health // every instance the resolver lists, ready or not, by id

	ejectMu sync.Mutex // serialises ejection decisions (rare), for MaxPercent
}

// Set builds the Set for a picker from the ready SubConns base reports,
// with the latest records, health and config.
func (t *Tracked) Set(info base.PickerBuildInfo) *Set {
	cfg := t.config()
	s := &Set{eject: *cfg.Ejection, known: map[string]*Health{}}
	for addr, rec := range t.Records.All() {
		s.known[rec.GetId()] = t.health(addr)
	}
	for sc, sci := range info.ReadySCs {
		rec := t.Records.Get(sci.Address)
		s.Endpoints = append(s.Endpoints, Endpoint{SubConn: sc, Record: rec, Health: t.health(sci.Address.Addr)})
	}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		h := e.Health
		e.Done = func(di balancer.DoneInfo) { s.record(h, di.Err) }
		s.all = append(s.all, i)
		if cfg.Zone != "" && e.Record.GetZone() == cfg.Zone {
			s.local = append(s.local, i)
		}
	}
	return s
}

// Affine resolves a call that names an instance (see WithInstance): ok
// is false for a call that names none; otherwise i is the endpoint's
// index, or err says why not: ErrNoSubConnAvailable while the instance is
// listed and still connecting (the call waits for the next picker, as
// every pick does), Unavailable when it failed to connect or is not
// listed. Affinity overrides zone preference and ejection.
func (s *Set) Affine(info balancer.PickInfo) (i int, ok bool, err error) {
	id, named := AffinityOf(info.Ctx)
	if !named {
		return 0, false, nil
	}
	for i := range s.Endpoints {
		if s.Endpoints[i].Record.GetId() == id {
			return i, true, nil
		}
	}
	h := s.known[id]
	if h == nil {
		return 0, true, status.Errorf(codes.Unavailable, "instance %q is not in the registry", id)
	}
	switch st := connectivity.State(h.state.Load()); st {
	case connectivity.Idle, connectivity.Connecting, connectivity.Ready: // Ready: a newer picker has it
		return 0, true, balancer.ErrNoSubConnAvailable
	default:
		return 0, true, status.Errorf(codes.Unavailable, "instance %q is not available (%v)", id, st)
	}
}

// Group returns the indexes a call may go to at now (unix ns): those in
// the caller's zone while any of them is not ejected, else all.
func (s *Set) Group(now int64) []int {
	for _, i := range s.local {
		if !s.Endpoints[i].Health.Ejected(now) {
			return s.local
		}
	}
	return s.all
}

// Usable reports whether endpoint i takes calls at now.
func (s *Set) Usable(i int, now int64) bool { return !s.Endpoints[i].Health.Ejected(now) }

// AnyUsable returns a usable index of g, from a random start, or g's
// first when none is (every instance ejected: better to try one than to
// fail every call).
func (s *Set) AnyUsable(g []int, now int64) int {
	off := rand.IntN(len(g))
	for k := range g {
		if i := g[(off+k)%len(g)]; s.Usable(i, now) {
			return i
		}
	}
	return g[off]
}

// serverFailure reports whether a call's error says the instance failed,
// rather than the caller or its request.
func serverFailure(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DataLoss:
		return true
	}
	return false
}

// record folds a call's outcome into h, and ejects the instance when it
// has failed too often in a row.
func (s *Set) record(h *Health, err error) {
	if s.eject.Off {
		return
	}
	if !serverFailure(err) {
		if h.failures.Load() != 0 {
			h.failures.Store(0)
		}
		return
	}
	if h.failures.Add(1) < int32(s.eject.ConsecutiveFailures) {
		return
	}
	s.ejectMu.Lock()
	defer s.ejectMu.Unlock()
	now := time.Now().UnixNano()
	if h.Ejected(now) || h.failures.Load() < int32(s.eject.ConsecutiveFailures) {
		return // ejected meanwhile by another failing call
	}
	ejected := 0
	for i := range s.Endpoints {
		if s.Endpoints[i].Health.Ejected(now) {
			ejected++
		}
	}
	if (ejected+1)*100 > s.eject.MaxPercent*len(s.Endpoints) {
		return // too many out already; keep counting, try at the next failure
	}
	// A run of ejections: one that comes within MaxTime of the end of
	// the last lasts longer; an instance that behaved for longer starts over.
	n := h.ejections.Load() + 1
	if last := h.until.Load(); last == 0 || now-last > int64(s.eject.MaxTime) {
		n = 1
	}
	h.ejections.Store(n)
	d := min(time.Duration(n)*time.Duration(s.eject.BaseTime), time.Duration(s.eject.MaxTime))
	h.until.Store(now + int64(d))
	h.failures.Store(0)
}
