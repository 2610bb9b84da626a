package rpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	"github.com/switchyard-dev/switchyard/rpc"
)

// logLines collects a JSON slog handler's lines.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// calls returns the "finished call" lines of the echo service, by code.
func (l *logLines) calls(tb testing.TB) map[string]int {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(l.buf.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			tb.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "finished call" && rec["grpc.service"] == echoService && rec["grpc.method"] == "Echo" {
			out[rec["grpc.code"].(string)]++
		}
	}
	return out
}

// TestCallLogging makes OK and failing calls with loggers at info and at
// debug level: at info only the failures are logged, one line a call on
// each side with its code; at debug every call is (go-grpc-middleware's
// lines).
func TestCallLogging(t *testing.T) {
	const ok, failed = 3, 2
	for _, tt := range []struct {
		level slog.Level
		want  map[string]int
	}{
		{slog.LevelInfo, map[string]int{"Unavailable": failed}},
		{slog.LevelDebug, map[string]int{"OK": ok, "Unavailable": failed}},
	} {
		t.Run(tt.level.String(), func(t *testing.T) {
			var server, client logLines
			logger := func(w *logLines) *slog.Logger {
				return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: tt.level}))
			}
			impl := &lbtest.Faulty{Server: echo.Server{ID: "logged"}}
			serve(t, lbtest.Dial(t), impl, rpc.WithLogger(logger(&server)))
			c := newClient(t, echoService, rpc.WithClientLogger(logger(&client)))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range ok {
				if _, err := c.Echo(ctx, &echov1.EchoRequest{}, grpc.WaitForReady(true)); err != nil {
					t.Fatal(err)
				}
			}
			impl.Fail.Store(true)
			for range failed {
				if _, err := c.Echo(ctx, &echov1.EchoRequest{}); err == nil {
					t.Fatal("a call to the failing server succeeded")
				}
			}
			for side, lines := range map[string]*logLines{"server": &server, "client": &client} {
				got := lines.calls(t)
				if len(got) != len(tt.want) || got["OK"] != tt.want["OK"] || got["Unavailable"] != tt.want["Unavailable"] {
					t.Errorf("%s at %v logged calls by code %v, want %v", side, tt.level, got, tt.want)
				}
			}
		})
	}
}
