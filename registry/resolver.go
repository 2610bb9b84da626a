package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/protobuf/proto"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

// Scheme is the URI scheme of registry targets: zk:///<service>, or
// zk://<host:port,...>/<service> to name the ZooKeeper servers.
const Scheme = "zk"

// ResolverBuilder returns a gRPC resolver builder for Scheme that resolves
// through c; give it to a client with grpc.WithResolvers. A target whose
// authority names other ZooKeeper servers than c's gets a Client of its
// own, closed with the resolver.
//
// The resolver pushes the service's SERVING instances as endpoints, each
// carrying its record (see InstanceOf), on every change. While ZooKeeper
// is unreachable it pushes nothing, so the channel keeps its connections
// to the last known instances.
func (c *Client) ResolverBuilder() resolver.Builder { return builder{c} }

type builder struct{ c *Client }

func (builder) Scheme() string { return Scheme }

func (b builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	service := strings.TrimPrefix(target.URL.Path, "/")
	if err := ValidateName(service); err != nil {
		return nil, fmt.Errorf("registry: target %q: service: %w", target.URL.String(), err)
	}
	client, own := b.c, (*Client)(nil)
	if host := target.URL.Host; host != "" && host != b.c.connect {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		opts := b.c.opts
		var err error
		own, err = Dial(ctx, host, func(o *options) { *o = opts })
		if err != nil {
			return nil, fmt.Errorf("registry: target %q: %w", target.URL.String(), err)
		}
		client = own
	}
	w, err := client.Watch(service)
	if err != nil {
		if own != nil {
			own.Close()
		}
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &zkResolver{w: w, cc: cc, own: own, cancel: cancel}
	r.wg.Go(func() { r.run(ctx) })
	return r, nil
}

type zkResolver struct {
	w      *Watcher
	cc     resolver.ClientConn
	own    *Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (r *zkResolver) run(ctx context.Context) {
	for {
		snap, err := r.w.Next(ctx)
		if err != nil {
			return
		}
		if snap.Stale {
			continue // keep routing to the last list
		}
		// An error from UpdateState means the channel could not use the
		// state; it logs why, and the next change is pushed regardless.
		_ = r.cc.UpdateState(stateOf(snap))
		if len(snap.Instances) == 0 && len(snap.Problems) > 0 {
			r.cc.ReportError(errors.Join(snap.Problems...))
		}
	}
}

// stateOf turns a snapshot into the resolver state: one endpoint per
// SERVING instance.
func stateOf(snap Snapshot) resolver.State {
	var st resolver.State
	for _, inst := range snap.Instances {
		if inst.GetState() == registryv1.InstanceState_INSTANCE_STATE_DRAINING {
			continue
		}
		attr := instanceAttr{inst}
		addr := resolver.Address{Addr: inst.GetAddress(), BalancerAttributes: attributes.New(instanceKey{}, attr)}
		st.Addresses = append(st.Addresses, addr)
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{
			Addresses:  []resolver.Address{addr},
			Attributes: attributes.New(instanceKey{}, attr),
		})
	}
	return st
}

// ResolveNow does nothing: the watch pushes every change as it happens.
func (r *zkResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the resolver and waits for its goroutine.
func (r *zkResolver) Close() {
	r.cancel()
	r.wg.Wait()
	r.w.Close()
	if r.own != nil {
		r.own.Close()
	}
}

type instanceKey struct{}

// instanceAttr carries a record in attributes; Equal compares contents so
// that an unchanged record does not look like a change to gRPC.
type instanceAttr struct{ inst *registryv1.Instance }

func (a instanceAttr) Equal(o any) bool {
	b, ok := o.(instanceAttr)
	return ok && proto.Equal(a.inst, b.inst)
}

// InstanceOf returns the registry record of an endpoint the resolver
// produced, or nil. Balancers read weight, zone, version and metadata
// from it. The record must not be modified.
func InstanceOf(ep resolver.Endpoint) *registryv1.Instance {
	a, _ := ep.Attributes.Value(instanceKey{}).(instanceAttr)
	return a.inst
}

// InstanceOfAddress is InstanceOf for an address of such an endpoint.
func InstanceOfAddress(addr resolver.Address) *registryv1.Instance {
	a, _ := addr.BalancerAttributes.Value(instanceKey{}).(instanceAttr)
	return a.inst
}
