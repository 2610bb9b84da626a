package mq_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// Subjects of the test service.
const (
	describeSubject = "mqtest.describe"
	acquireSubject  = "mqtest.acquire"
)

// testContext returns a context that ends with the test or after
// testTimeout.
func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// connect starts an embedded server and returns a connection to it.
func connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	return natstest.Connect(tb, natstest.Start(tb).ClientURL())
}

// addService adds a micro service on nc with one endpoint per subject,
// stopped when tb ends.
func addService(tb testing.TB, nc *nats.Conn, endpoints map[string]micro.Handler) micro.Service {
	tb.Helper()
	svc, err := micro.AddService(nc, micro.Config{Name: "mqtest", Version: "1.0.0"})
	if err != nil {
		tb.Fatalf("add service: %v", err)
	}
	tb.Cleanup(func() { _ = svc.Stop() })
	for subject, h := range endpoints {
		name := strings.NewReplacer(".", "_", "*", "any", ">", "all").Replace(subject)
		if err := svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject)); err != nil {
			tb.Fatalf("add endpoint %s: %v", subject, err)
		}
	}
	// The server has the subscriptions once a flush returns, so other
	// connections' requests find them.
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	return svc
}

// describeEcho answers a DescribeRequest with its name, and the request
// id and traceparent it saw as the holder's owner and request id.
func describeEcho(_ context.Context, meta mq.Meta, req *lockv1.DescribeRequest) (*lockv1.DescribeResponse, error) {
	return &lockv1.DescribeResponse{
		Name:   req.GetName(),
		Holder: &lockv1.Contender{RequestId: meta.RequestID, Owner: meta.TraceParent},
	}, nil
}

// acquireEcho grants a lease with the asked name and ttl.
func acquireEcho(_ context.Context, _ mq.Meta, req *lockv1.AcquireRequest) (*lockv1.AcquireResponse, error) {
	ttl := req.GetTtl()
	if ttl == nil {
		ttl = durationpb.New(10 * time.Second)
	}
	return &lockv1.AcquireResponse{Lease: &lockv1.Lease{Name: req.GetName(), Ttl: ttl, RequestId: req.GetRequestId()}}, nil
}

// logRecorder is a slog.Handler that hands every record to a channel.
type logRecorder struct {
	ch    chan slog.Record
	attrs []slog.Attr
}

func newLogRecorder() *logRecorder { return &logRecorder{ch: make(chan slog.Record, 64)} }

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(l.attrs...)
	select {
	case l.ch <- r:
	default:
	}
	return nil
}

func (l *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorder{ch: l.ch, attrs: append(append([]slog.Attr(nil), l.attrs...), as...)}
}

func (l *logRecorder) WithGroup(string) slog.Handler { return l }

// next waits for a record with message msg and returns it.
func (l *logRecorder) next(tb testing.TB, msg string) slog.Record {
	tb.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case r := <-l.ch:
			if r.Message == msg {
				return r
			}
		case <-timeout:
			tb.Fatalf("no log record %q within %v", msg, testTimeout)
		}
	}
}

// attrError returns the error attribute of r, or nil.
func attrError(r slog.Record) error {
	var err error
	r.Attrs(func(a slog.Attr) bool {
		if e, ok := a.Value.Any().(error); ok && a.Key == "error" {
			err = e
			return false
		}
		return true
	})
	return err
}

// attrString returns r's attribute key as a string, or "".
func attrString(r slog.Record, key string) string {
	var s string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			s = a.Value.String()
			return false
		}
		return true
	})
	return s
}

// recv waits for a value on ch.
func recv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		tb.Fatalf("no %s within %v", what, testTimeout)
	}
	var zero T
	return zero
}

// errorsIs reports whether err matches every target.
func errorsIs(err error, targets ...error) bool {
	for _, t := range targets {
		if !errors.Is(err, t) {
			return false
		}
	}
	return true
}

// lockedSlice is a slice safe for concurrent appends.
type lockedSlice[T any] struct {
	mu sync.Mutex
	s  []T
}

func (l *lockedSlice[T]) add(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s = append(l.s, v)
}

func (l *lockedSlice[T]) get() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.s...)
}
