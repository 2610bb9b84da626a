package loadbalance

import (
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
)

// Records keeps the registry records of a channel's latest resolver
// update, by address. grpc-go's base balancer keeps the address a SubConn
// was created with, so a policy built on it reads weights and instance ids
// here, where changes (and an address reused by a new instance) show.
// It is safe for concurrent use.
type Records struct {
	mu sync.Mutex
	m  map[string]*registryv1.Instance
}

// Update replaces the records with those of s.
func (r *Records) Update(s resolver.State) {
	m := make(map[string]*registryv1.Instance, len(s.Addresses))
	for _, a := range s.Addresses {
		m[a.Addr] = registry.InstanceOfAddress(a)
	}
	r.mu.Lock()
	r.m = m
	r.mu.Unlock()
}

// All returns the latest records by address. The map must not be modified.
func (r *Records) All() map[string]*registryv1.Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m
}

// Get returns the latest record of addr, falling back to the record the
// address carries, or nil.
func (r *Records) Get(addr resolver.Address) *registryv1.Instance {
	r.mu.Lock()
	inst := r.m[addr.Addr]
	r.mu.Unlock()
	if inst == nil {
		inst = registry.InstanceOfAddress(addr)
	}
	return inst
}

// Tracked wraps a grpc-go base balancer so that Records holds the latest
// update's records whenever base rebuilds the picker: UpdateClientConnState
// records them first, with the policy's config and each address's Health,
// then passes the update on (base regenerates the picker on every update).
// A policy embeds Tracked, calls Init from its builder's Build, and calls
// Set in its picker builder.
type Tracked struct {
	balancer.Balancer
	Records Records

	target string // the channel's target, for errors

	mu     sync.Mutex
	cfg    *Config
	byAddr map[string]*Health // outlier state by address, outliving SubConns
	none   bool               // the latest update had no address
}

// Init builds the base balancer under t, with pb (the policy) as its
// picker builder.
func (t *Tracked) Init(name string, pb base.PickerBuilder, cc balancer.ClientConn, opts balancer.BuildOptions) {
	t.target = opts.Target.Endpoint()
	t.Balancer = base.NewBalancerBuilder(name, pb, base.Config{}).Build(trackedCC{cc, t}, opts)
}

// trackedCC is the ClientConn base sees. While the service has no
// address, it replaces base's failing picker ("produced zero addresses")
// with one that says which service has no instance, so that no call ever
// fails with the vaguer message.
type trackedCC struct {
	balancer.ClientConn
	t *Tracked
}

// NewSubConn follows the SubConn's connectivity into its address's
// Health, for affinity to tell an instance still connecting (wait) from
// one that failed (Unavailable). base updates the channel's state on every
// SubConn change, which re-runs blocked picks, so they see it.
func (cc trackedCC) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	if len(addrs) == 1 && opts.StateListener != nil {
		h, next := cc.t.health(addrs[0].Addr), opts.StateListener
		opts.StateListener = func(s balancer.SubConnState) {
			h.setState(s.ConnectivityState)
			next(s)
		}
	}
	return cc.ClientConn.NewSubConn(addrs, opts)
}

func (cc trackedCC) UpdateState(s balancer.State) {
	cc.t.mu.Lock()
	none := cc.t.none
	cc.t.mu.Unlock()
	if none && s.ConnectivityState == connectivity.TransientFailure {
		s.Picker = base.NewErrPicker(status.Errorf(codes.Unavailable, "%q has no serving instance in the registry", cc.t.target))
	}
	cc.ClientConn.UpdateState(s)
}

// UpdateClientConnState records the update's records, config and
// addresses, and passes it on.
func (t *Tracked) UpdateClientConnState(s balancer.ClientConnState) error {
	t.Records.Update(s.ResolverState)
	t.mu.Lock()
	if cfg, ok := s.BalancerConfig.(*Config); ok {
		t.cfg = cfg
	}
	live := make(map[string]*Health, len(s.ResolverState.Addresses))
	for _, a := range s.ResolverState.Addresses {
		h := t.byAddr[a.Addr]
		if h == nil {
			h = &Health{}
		}
		live[a.Addr] = h
	}
	t.byAddr = live
	t.none = len(s.ResolverState.Addresses) == 0
	t.mu.Unlock()
	return t.Balancer.UpdateClientConnState(s)
}

// config returns the latest config, or the defaults.
func (t *Tracked) config() *Config {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cfg == nil {
		t.cfg, _ = ParseConfig(nil)
	}
	return t.cfg
}

// health returns the Health of addr.
func (t *Tracked) health(addr string) *Health {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.byAddr[addr]
	if h == nil {
		if t.byAddr == nil {
			t.byAddr = map[string]*Health{}
		}
		h = &Health{}
		t.byAddr[addr] = h
	}
	return h
}
