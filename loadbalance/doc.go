// Package loadbalance holds what Switchyard's balancing policies share;
// each policy is a sub-package (weighted, p2c) that registers itself
// through Register. All of them honour, composed with their own choice:
//
//   - Instance affinity: a call whose context names an instance id
//     (WithInstance) is sent to that instance, or fails with Unavailable
//     if it is not connected and ready — never sent elsewhere. The lock
//     service uses it to reach the replica that holds a lease. The id
//     travels as a context value, not metadata: the choice is the caller's
//     own balancer's, and reading a value on every pick costs no copy.
//     Affinity overrides zone preference and ejection.
//   - Zone preference (Config.Zone): calls go to instances of the caller's
//     zone while any of them is ready and not ejected, and to every
//     instance when none is. The policy then chooses within that group.
//   - Outlier ejection (Config.Ejection, on by default): an instance that
//     keeps failing is taken out of rotation for a while, and let back to
//     prove itself; see Ejection.
//
// Ejection and zone groups are read on each pick from per-instance
// atomics, so a change in an instance's health takes effect on the next
// call without rebuilding the picker, and a pick takes no lock for them.
package loadbalance

import (
	"encoding/json"
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/serviceconfig"
)

var (
	namesMu sync.Mutex
	names   = map[string]bool{}
)

// Builder is a Switchyard policy's builder: it parses Config.
type Builder interface {
	balancer.Builder
	balancer.ConfigParser
}

// Register registers a Switchyard policy with gRPC (call it from init) and
// remembers its name, so that IsSwitchyard can tell which policies take
// Config.
func Register(b Builder) {
	namesMu.Lock()
	names[b.Name()] = true
	namesMu.Unlock()
	balancer.Register(b)
}

// IsSwitchyard reports whether name is a policy registered through
// Register, one that takes Config.
func IsSwitchyard(name string) bool {
	namesMu.Lock()
	defer namesMu.Unlock()
	return names[name]
}

// ConfigParser implements balancer.ConfigParser with ParseConfig; a
// policy's builder embeds it.
type ConfigParser struct{}

// ParseConfig parses the policy's Config.
func (ConfigParser) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}
