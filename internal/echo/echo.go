// Package echo implements switchyard.echo.v1.EchoService, the service the
// RPC stack's tests, examples and benchmarks call.
package echo

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
)

// Limits on EchoStream requests.
const (
	MaxStreamCount    = 10000
	MaxStreamInterval = time.Minute
)

// Server answers Echo and EchoStream, naming itself as ID in every
// response. The zero value is ready to use; it is safe for concurrent use.
type Server struct {
	echov1.UnimplementedEchoServiceServer

	// ID names the instance in responses' served_by.
	ID string
}

var _ echov1.EchoServiceServer = (*Server)(nil)

// Echo returns the request's message and payload.
func (s *Server) Echo(_ context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	return &echov1.EchoResponse{Message: req.GetMessage(), Payload: req.GetPayload(), ServedBy: s.ID}, nil
}

// EchoStream sends the message back req.count times, req.interval apart.
// It stops early, with the context's status, when the caller goes away.
func (s *Server) EchoStream(req *echov1.EchoStreamRequest, stream grpc.ServerStreamingServer[echov1.EchoStreamResponse]) error {
	if req.GetCount() > MaxStreamCount {
		return status.Errorf(codes.InvalidArgument, "count %d is over the limit of %d", req.GetCount(), MaxStreamCount)
	}
	var interval time.Duration
	if req.GetInterval() != nil {
		if err := req.GetInterval().CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "interval: %v", err)
		}
		interval = req.GetInterval().AsDuration()
		if interval < 0 || interval > MaxStreamInterval {
			return status.Errorf(codes.InvalidArgument, "interval %v is outside [0, %v]", interval, MaxStreamInterval)
		}
	}
	ctx := stream.Context()
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for i := uint32(1); i <= req.GetCount(); i++ {
		if i > 1 && tick != nil {
			select {
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			case <-tick:
			}
		}
		if err := stream.Send(&echov1.EchoStreamResponse{Message: req.GetMessage(), Sequence: i, ServedBy: s.ID}); err != nil {
			return err
		}
	}
	return nil
}
