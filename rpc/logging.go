package rpc

import (
	"context"
	"log/slog"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
)

// callLogging adapts log to go-grpc-middleware's logging interceptors: one
// line per finished call, OK calls at debug level and the others at the
// level toLevel gives their code (the library's server or client default).
func callLogging(log *slog.Logger, toLevel logging.CodeToLevel) (logging.Logger, []logging.Option) {
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	return logger, []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			if c == codes.OK {
				return logging.LevelDebug
			}
			return toLevel(c)
		}),
	}
}
