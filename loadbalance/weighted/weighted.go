// Package weighted is a gRPC load-balancing policy that spreads calls in
// proportion to the weights instances carry in the registry, with slow
// start: a newly registered instance's weight ramps up linearly over its
// warm-up, so a cold process (empty caches, unwarmed JIT or pools) is not
// handed its full share at once.
//
// Picks follow smooth weighted round robin (as nginx does): over any run
// of picks each instance gets its share within one pick, interleaved
// rather than in bursts. An instance's warm-up is the Go duration in its
// record's metadata under WarmupKey (none: no slow start), counted from
// its registered_at; clocks of servers and clients are assumed to agree
// to well within a warm-up.
//
// Zone preference, instance affinity and outlier ejection come from
// package loadbalance: the round robin runs over the usable instances of
// the caller's zone while there are any.
//
// Select it with rpc.WithBalancer(weighted.Name) or the service config
// {"loadBalancingConfig":[{"weighted":{}}]}; importing the package
// registers it.
package weighted

import (
	"sync"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"

	"github.com/switchyard-dev/switchyard/loadbalance"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
)

// Name is the policy's name in service configs.
const Name = "weighted"

// WarmupKey is the metadata key of an instance's warm-up, a Go duration
// such as "30s".
const WarmupKey = "warmup"

func init() { loadbalance.Register(builder{}) }

type builder struct{ loadbalance.ConfigParser }

func (builder) Name() string { return Name }

// Build makes, per channel, a base balancer (which manages the SubConns)
// whose picker builder reads weights from the latest records (see
// loadbalance.Tracked: base alone would keep stale weights).
func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &weightedBalancer{}
	b.Init(Name, b, cc, opts)
	return b
}

type weightedBalancer struct{ loadbalance.Tracked }

// Build is the picker builder: base calls it whenever the ready SubConns
// or the addresses change.
func (b *weightedBalancer) Build(info base.PickerBuildInfo) balancer.Picker {
	if len(info.ReadySCs) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	p := &picker{now: time.Now, set: b.Set(info)}
	for _, e := range p.set.Endpoints {
		p.entries = append(p.entries, newEntry(e.Record))
	}
	return p
}

type entry struct {
	weight  float64   // full weight
	start   time.Time // registered_at
	warmup  time.Duration
	current float64 // smooth round robin state; guarded by picker.mu
}

func newEntry(inst *registryv1.Instance) *entry {
	e := &entry{weight: registry.DefaultWeight}
	if inst != nil {
		e.weight = float64(registry.EffectiveWeight(inst))
		e.start = inst.GetRegisteredAt().AsTime()
		if d, err := time.ParseDuration(inst.GetMetadata()[WarmupKey]); err == nil && d > 0 {
			e.warmup = d
		}
	}
	return e
}

// effective returns the weight at now: ramped linearly during the warm-up,
// never below 1% of the full weight so a warming instance still gets some
// traffic to warm on.
func (e *entry) effective(now time.Time) float64 {
	if e.warmup == 0 {
		return e.weight
	}
	age := now.Sub(e.start)
	if age >= e.warmup {
		return e.weight
	}
	return e.weight * max(float64(age)/float64(e.warmup), 0.01)
}

type picker struct {
	now func() time.Time
	set *loadbalance.Set

	mu      sync.Mutex
	entries []*entry // in the order of set.Endpoints
}

// Pick sends a call that names an instance there (see package
// loadbalance); any other runs one step of smooth weighted round robin
// over the usable instances of its group: every one gains its weight, the
// largest is picked and loses the total.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	if i, named, err := p.set.Affine(info); named {
		if err != nil {
			return balancer.PickResult{}, err
		}
		e := &p.set.Endpoints[i]
		return balancer.PickResult{SubConn: e.SubConn, Done: e.Done}, nil
	}
	now := p.now()
	ns := now.UnixNano()
	g := p.set.Group(ns)
	skipEjected := false // unless every instance of g is ejected
	for _, i := range g {
		if p.set.Usable(i, ns) {
			skipEjected = true
			break
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	total := 0.0
	for _, i := range g {
		if skipEjected && !p.set.Usable(i, ns) {
			continue
		}
		e := p.entries[i]
		w := e.effective(now)
		e.current += w
		total += w
		if best < 0 || e.current > p.entries[best].current {
			best = i
		}
	}
	p.entries[best].current -= total
	e := &p.set.Endpoints[best]
	return balancer.PickResult{SubConn: e.SubConn, Done: e.Done}, nil
}
