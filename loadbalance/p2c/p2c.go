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
// slowness immediately and forgives it gradually.
//
// Select it with rpc.WithBalancer(p2c.Name); importing the package
// registers it.
package p2c

import (
	"math"
	"math/rand/v2"
	"slices"
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

func init() { balancer.Register(builder{}) }

type builder struct{}

func (builder) Name() string { return Name }

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &p2cBalancer{stats: map[balancer.SubConn]*stats{}}
	b.Balancer = base.NewBalancerBuilder(Name, b, base.Config{}).Build(cc, opts)
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
	p := &picker{}
	live := make(map[balancer.SubConn]*stats, len(info.ReadySCs))
	for sc, sci := range info.ReadySCs {
		p.ids = append(p.ids, b.Records.Get(sci.Address).GetId())
		st := b.stats[sc]
		if st == nil {
			st = &stats{}
		}
		live[sc] = st
		p.subConns = append(p.subConns, sc)
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

// load is the estimate times the calls in flight plus one.
func (s *stats) load() float64 {
	return math.Float64frombits(s.ewma.Load()) * float64(s.inflight.Load()+1)
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
	subConns []balancer.SubConn
	ids      []string // instance ids, for affinity
	stats    []*stats
}

// Pick sends a call that names an instance there (see package
// loadbalance), and any other to the less loaded of two drawn at random.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	i := 0
	if res, named, err := loadbalance.PickAffine(info, p.ids, p.subConns); named {
		if err != nil {
			return res, err
		}
		i = slices.Index(p.subConns, res.SubConn)
		return p.track(i), nil
	}
	if n := len(p.stats); n > 1 {
		i = rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		if p.stats[j].load() < p.stats[i].load() {
			i = j
		}
	}
	return p.track(i), nil
}

// track counts a call to instance i in flight until it is done.
func (p *picker) track(i int) balancer.PickResult {
	st := p.stats[i]
	st.inflight.Add(1)
	start := time.Now()
	return balancer.PickResult{
		SubConn: p.subConns[i],
		Done: func(balancer.DoneInfo) {
			now := time.Now()
			st.inflight.Add(-1)
			st.observe(now, now.Sub(start))
		},
	}
}
