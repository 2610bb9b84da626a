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

func init() { balancer.Register(builder{}) }

type builder struct{}

func (builder) Name() string { return Name }

// Build makes, per channel, a base balancer (which manages the SubConns)
// whose picker builder reads weights from the latest records (see
// loadbalance.Tracked: base alone would keep stale weights).
func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &weightedBalancer{}
	b.Balancer = base.NewBalancerBuilder(Name, b, base.Config{}).Build(cc, opts)
	return b
}

type weightedBalancer struct{ loadbalance.Tracked }

// Build is the picker builder: base calls it whenever the ready SubConns
// or the addresses change.
func (b *weightedBalancer) Build(info base.PickerBuildInfo) balancer.Picker {
	if len(info.ReadySCs) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	p := &picker{now: time.Now}
	for sc, sci := range info.ReadySCs {
		inst := b.Records.Get(sci.Address)
		p.entries = append(p.entries, newEntry(sc, inst))
		p.ids = append(p.ids, inst.GetId())
		p.subConns = append(p.subConns, sc)
	}
	return p
}

type entry struct {
	sc      balancer.SubConn
	weight  float64   // full weight
	start   time.Time // registered_at
	warmup  time.Duration
	current float64 // smooth round robin state; guarded by picker.mu
}

func newEntry(sc balancer.SubConn, inst *registryv1.Instance) *entry {
	e := &entry{sc: sc, weight: registry.DefaultWeight}
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
	now      func() time.Time
	ids      []string           // instance ids, for affinity
	subConns []balancer.SubConn // in the order of ids

	mu      sync.Mutex
	entries []*entry
}

// Pick sends a call that names an instance there (see package
// loadbalance); any other runs one step of smooth weighted round robin:
// every entry gains its weight, the largest is picked and loses the total.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	if res, named, err := loadbalance.PickAffine(info, p.ids, p.subConns); named {
		return res, err
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *entry
	total := 0.0
	for _, e := range p.entries {
		w := e.effective(now)
		e.current += w
		total += w
		if best == nil || e.current > best.current {
			best = e
		}
	}
	best.current -= total
	return balancer.PickResult{SubConn: best.sc}, nil
}
