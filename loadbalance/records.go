package loadbalance

import (
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/resolver"

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
// records them first, then passes the update on (base regenerates the
// picker on every update). A policy embeds Tracked, sets Balancer to the
// base balancer it builds with itself as picker builder, and reads Records
// in its picker builder.
type Tracked struct {
	balancer.Balancer
	Records Records
}

// UpdateClientConnState records the update's records and passes it on.
func (t *Tracked) UpdateClientConnState(s balancer.ClientConnState) error {
	t.Records.Update(s.ResolverState)
	return t.Balancer.UpdateClientConnState(s)
}
