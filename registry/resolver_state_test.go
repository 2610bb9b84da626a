package registry

import (
	"testing"

	"google.golang.org/grpc/resolver"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

// TestStateCarriesRecords checks what the resolver pushes: one endpoint
// per SERVING instance, each with its record in the endpoint attributes
// and in its address's balancer attributes (which do not make gRPC
// reconnect when a weight changes), and no DRAINING instance.
func TestStateCarriesRecords(t *testing.T) {
	a := &registryv1.Instance{Id: "a", Service: "s", Address: "127.0.0.1:1", Weight: 7, Zone: "z1"}
	b := &registryv1.Instance{Id: "b", Service: "s", Address: "127.0.0.1:2", State: registryv1.InstanceState_INSTANCE_STATE_DRAINING}
	c := &registryv1.Instance{Id: "c", Service: "s", Address: "127.0.0.1:3", State: registryv1.InstanceState_INSTANCE_STATE_SERVING}
	st := stateOf(Snapshot{Instances: []*registryv1.Instance{a, b, c}})

	if len(st.Endpoints) != 2 || len(st.Addresses) != 2 {
		t.Fatalf("%d endpoints, %d addresses; want 2 each (the draining one left out)", len(st.Endpoints), len(st.Addresses))
	}
	for i, want := range []*registryv1.Instance{a, c} {
		ep := st.Endpoints[i]
		if got := InstanceOf(ep); got != want {
			t.Fatalf("endpoint %d carries %v, want %v", i, got, want)
		}
		if got := InstanceOfAddress(ep.Addresses[0]); got != want || ep.Addresses[0].Addr != want.GetAddress() {
			t.Fatalf("address %d = %v carrying %v", i, ep.Addresses[0], got)
		}
		if ep.Addresses[0].Attributes != nil {
			t.Fatalf("address %d has identity attributes %v: a weight change would reconnect", i, ep.Addresses[0].Attributes)
		}
	}
	if InstanceOf(resolver.Endpoint{}) != nil {
		t.Fatal("InstanceOf of a foreign endpoint is not nil")
	}

	// A changed weight is a different attribute value; an equal record is
	// an equal one, so an unchanged list does not look changed.
	a2 := &registryv1.Instance{Id: "a", Service: "s", Address: "127.0.0.1:1", Weight: 8, Zone: "z1"}
	same := &registryv1.Instance{Id: "a", Service: "s", Address: "127.0.0.1:1", Weight: 7, Zone: "z1"}
	ep := st.Endpoints[0]
	if ep.Attributes.Equal(stateOf(Snapshot{Instances: []*registryv1.Instance{a2}}).Endpoints[0].Attributes) {
		t.Fatal("a weight change left the endpoint attributes equal")
	}
	if !ep.Attributes.Equal(stateOf(Snapshot{Instances: []*registryv1.Instance{same}}).Endpoints[0].Attributes) {
		t.Fatal("an identical record made unequal endpoint attributes")
	}
}
