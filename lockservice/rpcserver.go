package lockservice

import (
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// ServiceName is the lock service's name in the registry and on the wire.
var ServiceName = lockv1.LockService_ServiceDesc.ServiceName

// Replica returns the replica's id, which every lease it grants names.
func (s *Server) Replica() string { return s.cfg.Replica }

// RPCServer returns the replica's gRPC front door: an rpc.Server serving s
// as ServiceName, registered in reg under s's replica id (the id every
// lease names, so that instance affinity reaches the replica holding a
// lease), and running Drain as its own drain begins, so that waiting
// acquires move to other replicas while it deregisters. opts come after
// these and may add to them (a logger, metrics, TLS, an advertised
// address); one that sets the instance must keep its id equal to the
// replica's. Serve it with its Serve; Close s after Serve returns.
func (s *Server) RPCServer(reg *registry.Client, opts ...rpc.ServerOption) *rpc.Server {
	base := []rpc.ServerOption{
		rpc.WithInstance(&registryv1.Instance{Id: s.cfg.Replica}),
		rpc.WithLogger(s.cfg.Logger),
		rpc.WithOnDrain(s.Drain),
	}
	rs := rpc.NewServer(reg, append(base, opts...)...)
	lockv1.RegisterLockServiceServer(rs, s)
	return rs
}
