// Package p2c is a gRPC load-balancing policy that picks, for each call,
// the less loaded of two instances drawn at random ("power of two
// choices"), where load is the instance's peak-EWMA latency times its
// calls in flight plus one (as Finagle's and Linkerd's p2c do). A slow or
// stuck instance is soon avoided, without a global ordering of instances.
//
// The picker takes no lock: the draw uses the runtime's per-thread random
// source, and each instance's in-flight count and latency estimate are
// atomics updated by compare-and-swap when a call ends. (go-zero's p2c
// takes one mutex on every pick; under many cores that serialises every
// call of the channel.)
//
// Peak EWMA: a latency above the estimate replaces it at once, one below
// decays into it with a time constant of Decay, so the estimate reacts to
// slowness immediately and forgives it gradually. Between calls the
// estimate decays with the same time constant, so an instance nobody has
// chosen for a while is drawn again and its estimate brought up to date.
//
// Zone preference, instance affinity and outlier ejection come from
// package loadbalance: p2c draws its two among the instances of the
// caller's zone while any is usable, and passes over ejected ones (an
// instance that fails fast would otherwise look the least loaded of all).
//
// Select it with rpc.WithBalancer(p2c.Name); importing the package
// registers it.
package p2c

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"

	"github.com/switchyard-dev/switchyard/loadbalance"
)

// Name is the policy's name in service configs.
const Name = "p2c_ewma"

// Decay is the time constant over which a latency estimate forgets.
const Decay = 10 * time.Second

func init() { loadbalance.Register(builder{}) }

type builder struct{ loadbalance.ConfigParser }

func (builder) Name() string { return Name }

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &p2cBalancer{stats: map[balancer.SubConn]*stats{}}
	b.Init(Name, b, cc, opts)
	return b
}

// p2cBalancer keeps each SubConn's statistics across picker rebuilds,
// and the latest records for affinity (see loadbalance.Tracked).
type p2cBalancer struct {
	loadbalance.Tracked

	mu    sync.Mutex // guards stats; taken when a picker is built, not per pick
	stats map[balancer.SubConn]*stats
}

// Build is the picker builder.
func (b *p2cBalancer) Build(info base.PickerBuildInfo) balancer.Picker {
	if len(info.ReadySCs) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := &picker{set: b.Set(info)}
	live := make(map[balancer.SubConn]*stats, len(p.set.Endpoints))
	for _, e := range p.set.Endpoints {
		st := b.stats[e.SubConn]
		if st == nil {
			st = &stats{}
		}
		live[e.SubConn] = st
		p.stats = append(p.stats, st)
	}
	b.stats = live // forget SubConns that are gone or not ready
	return p
}

// stats is one instance's load. All fields are atomics.
type stats struct {
	inflight atomic.Int64
	ewma     atomic.Uint64 // math.Float64bits of the latency estimate, in ns
	stamp    atomic.Int64  // unix ns of the last update
}

// load is the estimate at now (unix ns) times the calls in flight plus
// one. The estimate decays from its last update as if calls of no
// latency had come since (as Finagle's peak EWMA does): otherwise an
// instance that one slow call made look costly would never be drawn over
// the others again, and so never corrected.
func (s *stats) load(now int64) float64 {
	est := math.Float64frombits(s.ewma.Load())
	if last := s.stamp.Load(); last > 0 && now > last {
		est *= math.Exp(-float64(now-last) / float64(Decay))
	}
	return est * float64(s.inflight.Load()+1)
}

// observe folds a call's latency into the estimate, lock-free.
func (s *stats) observe(now time.Time, rtt time.Duration) {
	n := now.UnixNano()
	last := s.stamp.Swap(n)
	w := 0.0
	if last > 0 && n > last {
		w = math.Exp(-float64(n-last) / float64(Decay))
	}
	x := float64(rtt)
	for {
		old := s.ewma.Load()
		cur := math.Float64frombits(old)
		next := x
		if x < cur {
			next = cur*w + x*(1-w)
		}
		if s.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

type picker struct {
	set   *loadbalance.Set
	stats []*stats // in the order of set.Endpoints
}

// Pick sends a call that names an instance there (see package
// loadbalance), and any other to the less loaded of two usable instances
// drawn at random from its group.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	now := time.Now()
	if i, named, err := p.set.Affine(info); named {
		if err != nil {
			return balancer.PickResult{}, err
		}
		return p.track(i, now), nil
	}
	ns := now.UnixNano()
	g := p.set.Group(ns)
	a := rand.IntN(len(g))
	i := g[a]
	if n := len(g); n > 1 {
		b := rand.IntN(n - 1)
		if b >= a {
			b++
		}
		j := g[b]
		switch ui, uj := p.set.Usable(i, ns), p.set.Usable(j, ns); {
		case ui && uj:
			if p.stats[j].load(ns) < p.stats[i].load(ns) {
				i = j
			}
		case uj:
			i = j
		case !ui:
			i = p.set.AnyUsable(g, ns)
		}
	}
	return p.track(i, now), nil
}

// track counts a call to instance i in flight until it is done, and
// passes its outcome on for ejection.
func (p *picker) track(i int, start time.Time) balancer.PickResult {
	st, e := p.stats[i], &p.set.Endpoints[i]
	st.inflight.Add(1)
	return balancer.PickResult{
		SubConn: e.SubConn,
		Done: func(di balancer.DoneInfo) {
			now := time.Now()
			st.inflight.Add(-1)
			st.observe(now, now.Sub(start))
			e.Done(di)
		},
	}
}
