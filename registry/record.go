package registry

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

// maxDepartures bounds the departures kept in a service's instances node.
const maxDepartures = 64

// encodeInstance renders a record as protojson, the form stored in ZooKeeper.
func encodeInstance(inst *registryv1.Instance) ([]byte, error) {
	b, err := protojson.Marshal(inst)
	if err != nil {
		return nil, fmt.Errorf("registry: encoding instance: %w", err)
	}
	return b, nil
}

// DecodeInstance reads the data of the node of instance id of service.
// Unknown fields are ignored, so that records written by newer versions
// stay readable. The record must name the same service and id as its path
// and have a valid address; otherwise the error wraps ErrBadRecord.
func DecodeInstance(service, id string, data []byte) (*registryv1.Instance, error) {
	inst := &registryv1.Instance{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, inst); err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %v", ErrBadRecord, service, id, err)
	}
	if inst.GetService() != service || inst.GetId() != id {
		return nil, fmt.Errorf("%w: %s/%s holds the record of %q/%q", ErrBadRecord, service, id, inst.GetService(), inst.GetId())
	}
	if err := validateInstance(inst); err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %v", ErrBadRecord, service, id, err)
	}
	if inst.GetState() == registryv1.InstanceState_INSTANCE_STATE_UNSPECIFIED {
		inst.State = registryv1.InstanceState_INSTANCE_STATE_SERVING
	}
	return inst, nil
}

// decodeDepartures reads a service's instances node. Empty or unreadable
// data is an empty list: the list only refines how removals are judged.
func decodeDepartures(data []byte) *registryv1.Departures {
	d := &registryv1.Departures{}
	if len(data) > 0 {
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, d); err != nil {
			return &registryv1.Departures{}
		}
	}
	return d
}

// withDeparture returns the data of a departures list with id appended,
// keeping the newest maxDepartures.
func withDeparture(data []byte, id string, now *timestamppb.Timestamp) ([]byte, error) {
	d := decodeDepartures(data)
	d.Departures = append(d.Departures, &registryv1.Departure{Id: id, At: now})
	if n := len(d.Departures); n > maxDepartures {
		d.Departures = d.Departures[n-maxDepartures:]
	}
	return protojson.Marshal(d)
}

// sameRecord compares records by content: protojson output is not
// byte-stable, so stored bytes are never compared.
func sameRecord(a, b *registryv1.Instance) bool { return proto.Equal(a, b) }

// DefaultWeight is the weight of an instance whose record says 0.
const DefaultWeight = 100

// EffectiveWeight returns the weight balancers use for inst: its weight,
// or DefaultWeight when that is 0 (unset).
func EffectiveWeight(inst *registryv1.Instance) uint32 {
	if w := inst.GetWeight(); w != 0 {
		return w
	}
	return DefaultWeight
}
