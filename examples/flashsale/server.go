package flashsale

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
	"github.com/switchyard-dev/switchyard/registry"
	"github.com/switchyard-dev/switchyard/rpc"
)

// ServiceName is the flash-sale service's name in the registry and on the
// wire.
var ServiceName = flashsalev1.FlashSaleService_ServiceDesc.ServiceName

// Server is the shop's gRPC front door: FlashSaleService over a Shop.
type Server struct {
	flashsalev1.UnimplementedFlashSaleServiceServer
	shop *Shop
	log  *slog.Logger
}

var _ flashsalev1.FlashSaleServiceServer = (*Server)(nil)

// NewServer returns the service over shop; logger (nil: slog.Default())
// logs the errors that become INTERNAL.
func NewServer(shop *Shop, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	return &Server{shop: shop, log: logger}
}

// NewGRPCServer returns an rpc.Server serving shop as ServiceName,
// registered in reg while it serves. opts are the RPC stack's: the demo
// gives it rpc.WithRateLimit and rpc.WithMaxConcurrent, the limiter that
// turns calls over the shop's capacity away with RESOURCE_EXHAUSTED
// before they take any of it. Serve it with its Serve.
func NewGRPCServer(reg *registry.Client, shop *Shop, logger *slog.Logger, opts ...rpc.ServerOption) *rpc.Server {
	s := rpc.NewServer(reg, opts...)
	flashsalev1.RegisterFlashSaleServiceServer(s, NewServer(shop, logger))
	return s
}

// Purchase runs Shop.Purchase and answers once the store has applied it.
func (s *Server) Purchase(ctx context.Context, req *flashsalev1.PurchaseRequest) (*flashsalev1.PurchaseResponse, error) {
	res, err := s.shop.Purchase(ctx, req)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &flashsalev1.PurchaseResponse{
		PurchaseId: req.GetPurchaseId(),
		Outcome:    res.Outcome,
		Remaining:  res.Remaining,
		Duplicate:  res.Duplicate,
		Token:      res.Token,
	}, nil
}

// Stock reads an item's stock from the store.
func (s *Server) Stock(ctx context.Context, req *flashsalev1.StockRequest) (*flashsalev1.StockResponse, error) {
	remaining, sold, err := s.shop.Store().Stock(req.GetItem())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &flashsalev1.StockResponse{Item: req.GetItem(), Remaining: remaining, Sold: sold}, nil
}

// status maps the shop's errors to gRPC codes, in this one place.
func (s *Server) status(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrInvalidPurchase), errors.Is(err, ErrUnknownItem):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNoCapacity), errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, ErrStaleToken):
		// The lock moved on while this purchase held it: retrying takes it again.
		return status.Error(codes.Aborted, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		// The lock service's answer, as the lock client passed it on.
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted:
			return status.Error(st.Code(), err.Error())
		}
	}
	s.log.ErrorContext(ctx, "flashsale: purchase failed", "err", err)
	return status.Error(codes.Internal, "internal error")
}
