package rpc

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// callLog logs one line per finished call: OK calls at debug level, the
// others at the level toLevel gives their code (go-grpc-middleware's
// server or client default).
//
// While debug is enabled, go-grpc-middleware's logging interceptors write
// the lines, with all their fields. Otherwise the interceptors here call
// straight through and log only failed calls, with the same keys: the
// middleware builds every field of every call before the logger can say
// the line is not wanted, which cost the stack a third of its throughput
// against raw grpc-go (yard bench rpc) for lines nobody sees.
type callLog struct {
	log       *slog.Logger
	toLevel   logging.CodeToLevel
	component string // "server" or "client"
	logger    logging.Logger
	opts      []logging.Option
}

func newCallLog(log *slog.Logger, toLevel logging.CodeToLevel, component string) *callLog {
	c := &callLog{log: log, toLevel: toLevel, component: component}
	c.logger = logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	c.opts = []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(c.level),
	}
	return c
}

func (c *callLog) level(code codes.Code) logging.Level {
	if code == codes.OK {
		return logging.LevelDebug
	}
	return c.toLevel(code)
}

// verbose reports whether every call is logged (debug is enabled).
func (c *callLog) verbose(ctx context.Context) bool { return c.log.Enabled(ctx, slog.LevelDebug) }

// failed logs a failed call, as the middleware would have.
func (c *callLog) failed(ctx context.Context, fullMethod, kind string, start time.Time, err error) {
	code := status.Code(err)
	lvl := slog.Level(c.level(code))
	if !c.log.Enabled(ctx, lvl) {
		return
	}
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	c.log.Log(ctx, lvl, "finished call",
		"protocol", "grpc", "grpc.component", c.component, "grpc.service", service, "grpc.method", method,
		"grpc.method_type", kind, "grpc.code", code.String(), "grpc.error", err,
		"grpc.time_ms", float64(time.Since(start).Microseconds())/1000)
}

func (c *callLog) unaryServer() grpc.UnaryServerInterceptor {
	full := logging.UnaryServerInterceptor(c.logger, c.opts...)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if c.verbose(ctx) {
			return full(ctx, req, info, handler)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		if err != nil {
			c.failed(ctx, info.FullMethod, "unary", start, err)
		}
		return resp, err
	}
}

func (c *callLog) streamServer() grpc.StreamServerInterceptor {
	full := logging.StreamServerInterceptor(c.logger, c.opts...)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if c.verbose(ss.Context()) {
			return full(srv, ss, info, handler)
		}
		start := time.Now()
		err := handler(srv, ss)
		if err != nil {
			c.failed(ss.Context(), info.FullMethod, "stream", start, err)
		}
		return err
	}
}

func (c *callLog) unaryClient() grpc.UnaryClientInterceptor {
	full := logging.UnaryClientInterceptor(c.logger, c.opts...)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if c.verbose(ctx) {
			return full(ctx, method, req, reply, cc, invoker, opts...)
		}
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err != nil {
			c.failed(ctx, method, "unary", start, err)
		}
		return err
	}
}

// streamClient logs a stream that fails to start; one that fails later
// is logged by the middleware only while debug is enabled, since its end
// is seen by the caller's RecvMsg, not here.
func (c *callLog) streamClient() grpc.StreamClientInterceptor {
	full := logging.StreamClientInterceptor(c.logger, c.opts...)
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if c.verbose(ctx) {
			return full(ctx, desc, cc, method, streamer, opts...)
		}
		start := time.Now()
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			c.failed(ctx, method, "stream", start, err)
		}
		return cs, err
	}
}
