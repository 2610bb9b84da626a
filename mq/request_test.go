package mq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// TestRoundTrip sends a DescribeRequest through a micro endpoint (and a
// plain subscription) made with mq.Handler, in every encoding, and checks
// the response and that the request id and traceparent reached the
// handler.
func TestRoundTrip(t *testing.T) {
	nc := connect(t)
	ctx := testContext(t)
	addService(t, nc, map[string]micro.Handler{
		describeSubject: mq.Handler(func() *lockv1.DescribeRequest { return new(lockv1.DescribeRequest) }, describeEcho),
	})
	sub, err := nc.Subscribe("mqtest.plain.describe", mq.MsgHandler(func() *lockv1.DescribeRequest { return new(lockv1.DescribeRequest) }, describeEcho))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	tests := []struct {
		name    string
		subject string
		opts    []mq.CallOption
	}{
		{name: "protobuf", subject: describeSubject},
		{name: "json", subject: describeSubject, opts: []mq.CallOption{mq.WithJSON()}},
		{name: "x-protobuf", subject: describeSubject, opts: []mq.CallOption{mq.WithContentType(mq.ContentTypeXProtobuf)}},
		{name: "json with protobuf reply", subject: describeSubject, opts: []mq.CallOption{mq.WithJSON(), mq.WithAccept(mq.ContentTypeProtobuf)}},
		{name: "plain subscription", subject: "mqtest.plain.describe", opts: []mq.CallOption{mq.WithJSON()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]mq.CallOption{mq.WithRequestID("req-" + tt.name), mq.WithTraceContext(validTraceParent, "")}, tt.opts...)
			var resp lockv1.DescribeResponse
			if err := mq.Request(ctx, nc, tt.subject, &lockv1.DescribeRequest{Name: "orders/42"}, &resp, opts...); err != nil {
				t.Fatal(err)
			}
			want := &lockv1.DescribeResponse{Name: "orders/42", Holder: &lockv1.Contender{RequestId: "req-" + tt.name, Owner: validTraceParent}}
			if !proto.Equal(&resp, want) {
				t.Fatalf("response %v, want %v", &resp, want)
			}
		})
	}
}

// TestRequestLikeNATSCLI sends what `nats req -H Content-Type:application/json`
// sends — raw JSON with a duration as a string — and reads the JSON reply
// with encoding/json.
func TestRequestLikeNATSCLI(t *testing.T) {
	nc := connect(t)
	addService(t, nc, map[string]micro.Handler{
		acquireSubject: mq.Handler(func() *lockv1.AcquireRequest { return new(lockv1.AcquireRequest) }, acquireEcho),
	})
	msg := nats.NewMsg(acquireSubject)
	msg.Header.Set("Content-Type", "application/json")
	msg.Header.Set("Switchyard-Timeout", "5s")
	msg.Data = []byte(`{"name":"orders/42","ttl":"10s"}`)
	reply, err := nc.RequestMsg(msg, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if ct := reply.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("reply Content-Type %q, want application/json", ct)
	}
	var got struct {
		Lease struct {
			Name string `json:"name"`
			TTL  string `json:"ttl"`
		} `json:"lease"`
	}
	if err := json.Unmarshal(reply.Data, &got); err != nil {
		t.Fatalf("reply %q is not JSON: %v", reply.Data, err)
	}
	if got.Lease.Name != "orders/42" || got.Lease.TTL != "10s" {
		t.Errorf("reply %s, want lease orders/42 with ttl 10s", reply.Data)
	}
}

// TestBadInput sends malformed requests as raw NATS messages: each gets
// an error reply with the right code, in the request's encoding, and the
// handler is never called.
func TestBadInput(t *testing.T) {
	nc := connect(t)
	var calls atomic.Int32
	addService(t, nc, map[string]micro.Handler{
		acquireSubject: mq.Handler(func() *lockv1.AcquireRequest { return new(lockv1.AcquireRequest) },
			func(ctx context.Context, meta mq.Meta, req *lockv1.AcquireRequest) (*lockv1.AcquireResponse, error) {
				calls.Add(1)
				return acquireEcho(ctx, meta, req)
			}),
	})
	valid := []byte(`{"name":"orders/42"}`)
	jsonCT := nats.Header{"Content-Type": {"application/json"}}
	with := func(h nats.Header, k, v string) nats.Header {
		out := nats.Header{}
		for k, vs := range h {
			out[k] = vs
		}
		out.Set(k, v)
		return out
	}
	tests := []struct {
		name     string
		header   nats.Header
		data     []byte
		wantCode codes.Code
		wantCT   string
	}{
		{name: "garbage protobuf", data: []byte{0xff, 0xff, 0xff, 0xff}, wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeProtobuf},
		{name: "invalid json", header: jsonCT, data: []byte(`{"name":`), wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeJSON},
		{name: "unknown json field", header: jsonCT, data: []byte(`{"name":"orders/42","colour":"red"}`), wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeJSON},
		{name: "wrong json type", header: jsonCT, data: []byte(`{"ttl":10}`), wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeJSON},
		{name: "unsupported content type", header: nats.Header{"Content-Type": {"text/plain"}}, data: valid, wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeProtobuf},
		{name: "unsupported content type accept json", header: nats.Header{"Content-Type": {"text/plain"}, "Accept": {"application/json"}}, data: valid, wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeJSON},
		{name: "bad deadline", header: with(jsonCT, mq.HeaderDeadline, "next tuesday"), data: valid, wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeJSON},
		{name: "bad timeout", header: with(jsonCT, mq.HeaderTimeout, "5"), data: valid, wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeJSON},
		{name: "deadline passed", header: with(jsonCT, mq.HeaderDeadline, time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)), data: valid, wantCode: codes.DeadlineExceeded, wantCT: mq.ContentTypeJSON},
		{name: "request id too long", header: with(jsonCT, mq.HeaderRequestID, strings.Repeat("r", 129)), data: valid, wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeJSON},
		{name: "request id control character", header: with(nil, mq.HeaderRequestID, "r\x7f1"), data: nil, wantCode: codes.InvalidArgument, wantCT: mq.ContentTypeProtobuf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			reply, err := nc.RequestMsg(&nats.Msg{Subject: acquireSubject, Header: tt.header, Data: tt.data}, testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			err = mq.StatusFromMsg(reply)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", code, err, tt.wantCode)
			}
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "mq: ") {
				t.Errorf("message %q lacks the mq: prefix", msg)
			}
			if ct := reply.Header.Get(mq.HeaderContentType); ct != tt.wantCT {
				t.Errorf("reply Content-Type %q, want %q", ct, tt.wantCT)
			}
			if len(reply.Data) == 0 {
				t.Error("error reply without a google.rpc.Status body")
			}
			if tt.wantCT == mq.ContentTypeJSON {
				var body struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(reply.Data, &body); err != nil || body.Code != int(tt.wantCode) {
					t.Errorf("JSON body %s: code %d (%v), want %d", reply.Data, body.Code, err, tt.wantCode)
				}
			}
			if calls.Load() != before {
				t.Error("handler called for a bad request")
			}
		})
	}
}

// TestNoReplySubject publishes to a Handler endpoint and a MsgHandler
// subscription without a reply subject: nothing panics, the handler is not
// called, the drop is logged with ErrNoReply, and both keep serving.
// Respond and RespondError on such a request return ErrNoReply.
func TestNoReplySubject(t *testing.T) {
	nc := connect(t)
	ctx := testContext(t)
	rec := newLogRecorder()
	var calls atomic.Int32
	fn := func(ctx context.Context, meta mq.Meta, req *lockv1.DescribeRequest) (*lockv1.DescribeResponse, error) {
		calls.Add(1)
		return describeEcho(ctx, meta, req)
	}
	newReq := func() *lockv1.DescribeRequest { return new(lockv1.DescribeRequest) }
	addService(t, nc, map[string]micro.Handler{
		describeSubject: mq.Handler(newReq, fn, mq.WithHandlerLogger(slog.New(rec))),
	})
	sub, err := nc.Subscribe("mqtest.plain.describe", mq.MsgHandler(newReq, fn, mq.WithHandlerLogger(slog.New(rec))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	for _, subject := range []string{describeSubject, "mqtest.plain.describe"} {
		t.Run(subject, func(t *testing.T) {
			data, _ := mq.Marshal(mq.ContentTypeProtobuf, &lockv1.DescribeRequest{Name: "a"})
			if err := nc.Publish(subject, data); err != nil {
				t.Fatal(err)
			}
			r := rec.next(t, "mq: request dropped")
			if err := attrError(r); !errors.Is(err, mq.ErrNoReply) {
				t.Errorf("logged error %v, want ErrNoReply", err)
			}
			var resp lockv1.DescribeResponse
			if err := mq.Request(ctx, nc, subject, &lockv1.DescribeRequest{Name: "b"}, &resp); err != nil || resp.GetName() != "b" {
				t.Fatalf("request after the dropped one: %v, %v", &resp, err)
			}
		})
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("handler called %d times, want 2 (only the requests with a reply subject)", got)
	}

	noReply := &nats.Msg{Subject: "x"}
	if err := mq.RespondMsg(noReply, mq.Meta{}, &lockv1.DescribeResponse{}); !errors.Is(err, mq.ErrNoReply) {
		t.Errorf("RespondMsg without reply subject: %v, want ErrNoReply", err)
	}
	if err := mq.RespondMsgError(noReply, mq.Meta{}, errors.New("x")); !errors.Is(err, mq.ErrNoReply) {
		t.Errorf("RespondMsgError without reply subject: %v, want ErrNoReply", err)
	}
}

// TestTooLarge checks both directions of the size limit: a request above
// the maximum payload fails with ResourceExhausted before anything is
// published, and a reply above it becomes a ResourceExhausted error reply.
func TestTooLarge(t *testing.T) {
	nc := connect(t)
	ctx := testContext(t)
	limit := int(nc.MaxPayload())
	rec := newLogRecorder()
	addService(t, nc, map[string]micro.Handler{
		describeSubject: mq.Handler(func() *lockv1.DescribeRequest { return new(lockv1.DescribeRequest) },
			func(_ context.Context, _ mq.Meta, req *lockv1.DescribeRequest) (*lockv1.DescribeResponse, error) {
				return &lockv1.DescribeResponse{Name: strings.Repeat("n", limit)}, nil
			}, mq.WithHandlerLogger(slog.New(rec))),
	})

	t.Run("request", func(t *testing.T) {
		sub, err := nc.SubscribeSync("mqtest.big")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		err = mq.Request(ctx, nc, "mqtest.big", &lockv1.DescribeRequest{Name: strings.Repeat("n", limit)}, &lockv1.DescribeResponse{})
		if status.Code(err) != codes.ResourceExhausted || !errors.Is(err, mq.ErrTooLarge) {
			t.Fatalf("oversized request: %v, want ResourceExhausted wrapping ErrTooLarge", err)
		}
		// Messages on one connection arrive in order: if the oversized
		// request had been published, it would come before the marker.
		if err := nc.Publish("mqtest.big", []byte("marker")); err != nil {
			t.Fatal(err)
		}
		m, err := sub.NextMsg(testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != "marker" {
			t.Fatalf("first message on the subject is %d bytes, not the marker: the oversized request was published", len(m.Data))
		}
	})
	t.Run("reply", func(t *testing.T) {
		for _, ct := range []string{mq.ContentTypeProtobuf, mq.ContentTypeJSON} {
			err := mq.Request(ctx, nc, describeSubject, &lockv1.DescribeRequest{Name: "x"}, &lockv1.DescribeResponse{}, mq.WithContentType(ct))
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("%s: oversized reply: %v, want ResourceExhausted", ct, err)
			}
			if err := attrError(rec.next(t, "mq: cannot send reply")); !errors.Is(err, mq.ErrTooLarge) {
				t.Errorf("%s: logged %v, want ErrTooLarge", ct, err)
			}
		}
	})
}

// TestErrorMapping has handlers fail in each way and checks what the
// requester gets, in both encodings: a status with an ErrorInfo detail
// arrives whole; a plain error and a panic are Internal without their
// text, and the service keeps serving after the panic.
func TestErrorMapping(t *testing.T) {
	nc := connect(t)
	ctx := testContext(t)
	rec := newLogRecorder()
	detailed := withInfo(t, status.New(codes.FailedPrecondition, "the lease of \"orders/42\" is held by replica \"r2\""))
	handlers := map[string]func() error{
		"status":  func() error { return detailed.Err() },
		"plain":   func() error { return errors.New("zk: session 0x1234 expired talking to 10.1.2.3:2181") },
		"panic":   func() error { panic("boom at 10.1.2.3") },
		"context": func() error { return fmt.Errorf("waiting: %w", context.DeadlineExceeded) },
	}
	endpoints := map[string]micro.Handler{
		describeSubject: mq.Handler(func() *lockv1.DescribeRequest { return new(lockv1.DescribeRequest) }, describeEcho),
	}
	for name, fail := range handlers {
		endpoints["mqtest.fail."+name] = mq.Handler(func() *lockv1.DescribeRequest { return new(lockv1.DescribeRequest) },
			func(context.Context, mq.Meta, *lockv1.DescribeRequest) (*lockv1.DescribeResponse, error) {
				return nil, fail()
			}, mq.WithHandlerLogger(slog.New(rec)))
	}
	addService(t, nc, endpoints)

	tests := []struct {
		name    string
		subject string
		want    *status.Status
	}{
		{name: "status with details", subject: "mqtest.fail.status", want: detailed},
		{name: "plain error", subject: "mqtest.fail.plain", want: status.New(codes.Internal, "internal error")},
		{name: "panic", subject: "mqtest.fail.panic", want: status.New(codes.Internal, "internal error")},
		{name: "context error", subject: "mqtest.fail.context", want: status.New(codes.DeadlineExceeded, "context deadline exceeded")},
	}
	for _, tt := range tests {
		for _, ct := range []string{mq.ContentTypeProtobuf, mq.ContentTypeJSON} {
			t.Run(tt.name+" "+ct, func(t *testing.T) {
				err := mq.Request(ctx, nc, tt.subject, &lockv1.DescribeRequest{Name: "orders/42"}, &lockv1.DescribeResponse{}, mq.WithContentType(ct))
				got := status.Convert(err)
				if !proto.Equal(got.Proto(), tt.want.Proto()) {
					t.Fatalf("status %v, want %v", got.Proto(), tt.want.Proto())
				}
				if strings.Contains(err.Error(), "10.1.2.3") {
					t.Errorf("raw error text leaked to the requester: %v", err)
				}
				if tt.want.Code() == codes.FailedPrecondition {
					var info *errdetails.ErrorInfo
					for _, d := range got.Details() {
						if i, ok := d.(*errdetails.ErrorInfo); ok {
							info = i
						}
					}
					if info.GetReason() != "OTHER_REPLICA" || info.GetMetadata()["replica"] != "r2" {
						t.Errorf("ErrorInfo %v, want reason OTHER_REPLICA for replica r2", info)
					}
				}
			})
		}
	}
	r := rec.next(t, "mq: handler panicked")
	if p := attrString(r, "panic"); p != "boom at 10.1.2.3" {
		t.Errorf("panic logged as %q, want the panic value", p)
	}
	if !strings.Contains(attrString(r, "stack"), "runtime/debug.Stack") {
		t.Errorf("panic log lacks the stack")
	}
	var resp lockv1.DescribeResponse
	if err := mq.Request(ctx, nc, describeSubject, &lockv1.DescribeRequest{Name: "still"}, &resp); err != nil || resp.GetName() != "still" {
		t.Fatalf("after panics: %v, %v", &resp, err)
	}
	// The panicking endpoint itself keeps serving.
	if err := mq.Request(ctx, nc, "mqtest.fail.panic", &lockv1.DescribeRequest{}, &resp); status.Code(err) != codes.Internal {
		t.Fatalf("panicking endpoint after panics: %v, want Internal", err)
	}
}

// TestRequestFailures checks the requester's mapping of transport
// failures: no responders, canceled context, bad options, closed
// connection.
func TestRequestFailures(t *testing.T) {
	nc := connect(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	closed := connect(t)
	closed.Close()
	tests := []struct {
		name     string
		nc       *nats.Conn
		ctx      context.Context
		opts     []mq.CallOption
		wantCode codes.Code
		wantErr  []error
	}{
		{name: "no responders", nc: nc, ctx: testContext(t), wantCode: codes.Unavailable, wantErr: []error{mq.ErrNoResponders, nats.ErrNoResponders}},
		{name: "canceled", nc: nc, ctx: canceled, wantCode: codes.Canceled, wantErr: []error{context.Canceled}},
		{name: "closed connection", nc: closed, ctx: testContext(t), wantCode: codes.Unavailable, wantErr: []error{mq.ErrUnavailable, nats.ErrConnectionClosed}},
		{name: "bad content type", nc: nc, ctx: testContext(t), opts: []mq.CallOption{mq.WithContentType("text/plain")}, wantCode: codes.InvalidArgument, wantErr: []error{mq.ErrContentType}},
		{name: "bad request id", nc: nc, ctx: testContext(t), opts: []mq.CallOption{mq.WithRequestID("a\nb")}, wantCode: codes.InvalidArgument, wantErr: []error{mq.ErrHeader}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mq.Request(tt.ctx, tt.nc, "mqtest.nobody", &lockv1.DescribeRequest{}, &lockv1.DescribeResponse{}, tt.opts...)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", code, err, tt.wantCode)
			}
			if !errorsIs(err, tt.wantErr...) {
				t.Errorf("%v does not wrap all of %v", err, tt.wantErr)
			}
		})
	}
	err := mq.Request(testContext(t), nc, "mqtest.nobody", &lockv1.DescribeRequest{}, &lockv1.DescribeResponse{})
	if want := "mq: no responders on mqtest.nobody"; status.Convert(err).Message() != want {
		t.Errorf("message %q, want %q", status.Convert(err).Message(), want)
	}
}

// TestDeadlinePropagates checks that the handler runs under the
// requester's deadline (Switchyard-Deadline) or the shell user's timeout
// (Switchyard-Timeout), and that a requester whose deadline passes gets
// DeadlineExceeded.
func TestDeadlinePropagates(t *testing.T) {
	nc := connect(t)
	type seen struct {
		deadline time.Time
		ok       bool
	}
	seenCh := make(chan seen, 1)
	addService(t, nc, map[string]micro.Handler{
		describeSubject: mq.Handler(func() *lockv1.DescribeRequest { return new(lockv1.DescribeRequest) },
			func(ctx context.Context, _ mq.Meta, req *lockv1.DescribeRequest) (*lockv1.DescribeResponse, error) {
				d, ok := ctx.Deadline()
				seenCh <- seen{d, ok}
				if req.GetName() == "block" {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				return &lockv1.DescribeResponse{Name: req.GetName()}, nil
			}),
	})

	t.Run("deadline", func(t *testing.T) {
		// Long enough to reach the handler on a slow machine: a deadline
		// that passes before the request arrives is answered without
		// calling it. The handler blocks until the deadline anyway.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		want, _ := ctx.Deadline()
		err := mq.Request(ctx, nc, describeSubject, &lockv1.DescribeRequest{Name: "block"}, &lockv1.DescribeResponse{})
		got := recv(t, seenCh, "handler deadline")
		if !got.ok || !got.deadline.Equal(want) {
			t.Errorf("handler deadline %v (set %v), want the requester's %v", got.deadline, got.ok, want)
		}
		// Either the requester's context ends first, or the handler's
		// DeadlineExceeded reply arrives just before: both are the code.
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("request past its deadline: %v, want DeadlineExceeded", err)
		}
	})
	t.Run("timeout header", func(t *testing.T) {
		msg := nats.NewMsg(describeSubject)
		msg.Header.Set(mq.HeaderTimeout, "30s")
		sent := time.Now()
		reply, err := nc.RequestMsg(msg, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if err := mq.StatusFromMsg(reply); err != nil {
			t.Fatal(err)
		}
		got := recv(t, seenCh, "handler deadline")
		if lo, hi := sent.Add(30*time.Second), time.Now().Add(30*time.Second); !got.ok || got.deadline.Before(lo) || got.deadline.After(hi) {
			t.Errorf("handler deadline %v (set %v), want between %v and %v", got.deadline, got.ok, lo, hi)
		}
	})
	t.Run("no deadline", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer time.AfterFunc(testTimeout, cancel).Stop()
		if err := mq.Request(ctx, nc, describeSubject, &lockv1.DescribeRequest{Name: "x"}, &lockv1.DescribeResponse{}); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, seenCh, "handler deadline"); got.ok {
			t.Errorf("handler has deadline %v, want none", got.deadline)
		}
	})
}

// TestForeignReplies checks what Request makes of replies that this
// package did not write: undecodable bodies and unknown content types are
// Internal, a micro error with an HTTP-style code is Unknown with its
// text, and a JSON reply with fields the requester lacks still decodes.
func TestForeignReplies(t *testing.T) {
	nc := connect(t)
	ctx := testContext(t)
	tests := []struct {
		name     string
		header   nats.Header
		data     []byte
		wantCode codes.Code
		wantErr  error
		wantName string
	}{
		{name: "garbage body", data: []byte{0xff, 0xff, 0xff}, wantCode: codes.Internal, wantErr: mq.ErrDecode},
		{name: "unknown content type", header: nats.Header{"Content-Type": {"text/plain"}}, data: []byte("hi"), wantCode: codes.Internal, wantErr: mq.ErrContentType},
		{name: "micro error with http code", header: nats.Header{mq.HeaderErrorCode: {"500"}, mq.HeaderError: {"boom"}}, wantCode: codes.Unknown},
		{name: "json with a newer field", header: nats.Header{"Content-Type": {"application/json"}}, data: []byte(`{"name":"n","futureField":1}`), wantCode: codes.OK, wantName: "n"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subject := fmt.Sprintf("mqtest.foreign.%d", i)
			sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
				_ = m.RespondMsg(&nats.Msg{Subject: m.Reply, Header: tt.header, Data: tt.data})
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			var resp lockv1.DescribeResponse
			err = mq.Request(ctx, nc, subject, &lockv1.DescribeRequest{}, &resp)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", code, err, tt.wantCode)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("%v does not wrap %v", err, tt.wantErr)
			}
			if resp.GetName() != tt.wantName {
				t.Errorf("response name %q, want %q", resp.GetName(), tt.wantName)
			}
		})
	}
}

// TestHandWrittenHandler uses Decode, Respond and RespondError in a micro
// handler of its own: replies arrive as with Handler, and micro counts the
// error replies as errors.
func TestHandWrittenHandler(t *testing.T) {
	nc := connect(t)
	ctx := testContext(t)
	svc := addService(t, nc, map[string]micro.Handler{
		describeSubject: micro.HandlerFunc(func(r micro.Request) {
			var req lockv1.DescribeRequest
			meta, err := mq.Decode(r, &req, time.Now())
			switch {
			case err != nil:
				err = mq.RespondError(r, meta, err)
			case req.GetName() == "missing":
				err = mq.RespondError(r, meta, status.Error(codes.NotFound, "no such lock"))
			default:
				err = mq.Respond(r, meta, &lockv1.DescribeResponse{Name: req.GetName()})
			}
			if err != nil {
				t.Errorf("reply: %v", err)
			}
		}),
	})
	var resp lockv1.DescribeResponse
	if err := mq.Request(ctx, nc, describeSubject, &lockv1.DescribeRequest{Name: "here"}, &resp, mq.WithJSON()); err != nil || resp.GetName() != "here" {
		t.Fatalf("request: %v, %v", &resp, err)
	}
	err := mq.Request(ctx, nc, describeSubject, &lockv1.DescribeRequest{Name: "missing"}, &resp)
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != "no such lock" {
		t.Fatalf("missing lock: %v, want NotFound", err)
	}
	bad := nats.NewMsg(describeSubject)
	bad.Header.Set(mq.HeaderRequestID, "bad\tid")
	reply, err := nc.RequestMsg(bad, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if err := mq.StatusFromMsg(reply); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad request id: %v, want InvalidArgument", err)
	}
	// micro counts a request after its handler returns, one request at a
	// time: once this reply is in, the three before are counted.
	if err := mq.Request(ctx, nc, describeSubject, &lockv1.DescribeRequest{Name: "last"}, &resp); err != nil {
		t.Fatal(err)
	}
	stats := svc.Stats()
	if len(stats.Endpoints) != 1 || stats.Endpoints[0].NumRequests < 3 || stats.Endpoints[0].NumErrors != 2 {
		t.Errorf("micro stats %+v, want at least 3 requests and 2 errors", stats.Endpoints)
	}
}

// TestPublishReply publishes replies to a subject, as a worker answering
// a request taken from a stream does, and reads them with DecodeReply:
// the encoding the request asked for, its request id, error replies that
// leak no raw error text, and a reply too large sent as RESOURCE_EXHAUSTED.
func TestPublishReply(t *testing.T) {
	nc := connect(t)
	sub, err := nc.SubscribeSync("mqtest.replies")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	limit := int(nc.MaxPayload())
	tests := []struct {
		name     string
		meta     mq.Meta
		resp     *lockv1.DescribeResponse
		err      error
		wantCT   string
		wantCode codes.Code
		wantMsg  string
		wantSent error // PublishReply's error
		dropsID  bool  // meta.RequestID may not go in a header: none is sent
	}{
		{name: "protobuf", meta: mq.Meta{RequestID: "r-1"}, resp: &lockv1.DescribeResponse{Name: "n"}, wantCT: mq.ContentTypeProtobuf},
		{name: "json asked for", meta: mq.Meta{RequestID: "r-2", Accept: mq.ContentTypeJSON}, resp: &lockv1.DescribeResponse{Name: "n"}, wantCT: mq.ContentTypeJSON},
		{name: "no request id", meta: mq.Meta{ContentType: mq.ContentTypeJSON}, resp: &lockv1.DescribeResponse{Name: "n"}, wantCT: mq.ContentTypeJSON},
		{name: "status error", meta: mq.Meta{RequestID: "r-3", ContentType: mq.ContentTypeJSON}, err: status.Error(codes.NotFound, "no lock"), wantCT: mq.ContentTypeJSON, wantCode: codes.NotFound, wantMsg: "no lock"},
		{name: "plain error", meta: mq.Meta{RequestID: "r-4"}, err: errors.New("zk: secret detail"), wantCT: mq.ContentTypeProtobuf, wantCode: codes.Internal, wantMsg: "internal error"},
		{name: "too large", meta: mq.Meta{RequestID: "r-5"}, resp: &lockv1.DescribeResponse{Name: strings.Repeat("n", limit)}, wantCT: mq.ContentTypeProtobuf, wantCode: codes.ResourceExhausted, wantSent: mq.ErrTooLarge},
		{name: "request id too long", meta: mq.Meta{RequestID: strings.Repeat("r", mq.MaxRequestIDLen+1)}, resp: &lockv1.DescribeResponse{Name: "n"}, wantCT: mq.ContentTypeProtobuf, dropsID: true},
		{name: "request id not printable", meta: mq.Meta{RequestID: "r-6\r\nX-Injected: 1"}, resp: &lockv1.DescribeResponse{Name: "n"}, wantCT: mq.ContentTypeProtobuf, dropsID: true},
		{name: "error with a bad request id", meta: mq.Meta{RequestID: "r-7\x00"}, err: status.Error(codes.NotFound, "no lock"), wantCT: mq.ContentTypeProtobuf, wantCode: codes.NotFound, wantMsg: "no lock", dropsID: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp proto.Message
			if tt.resp != nil {
				resp = tt.resp
			}
			err := mq.PublishReply(nc, "mqtest.replies", tt.meta, resp, tt.err)
			if (err != nil) != (tt.wantSent != nil) || (tt.wantSent != nil && !errors.Is(err, tt.wantSent)) {
				t.Fatalf("PublishReply = %v, want %v", err, tt.wantSent)
			}
			m, err := sub.NextMsg(testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Header.Get(mq.HeaderContentType); got != tt.wantCT {
				t.Errorf("Content-Type %q, want %q", got, tt.wantCT)
			}
			wantID := tt.meta.RequestID
			if tt.dropsID {
				wantID = ""
			}
			if got := m.Header.Values(mq.HeaderRequestID); wantID == "" && len(got) != 0 || wantID != "" && (len(got) != 1 || got[0] != wantID) {
				t.Errorf("request id %q, want %q", got, wantID)
			}
			if got := m.Header.Get("X-Injected"); got != "" {
				t.Errorf("a header X-Injected %q came with the reply", got)
			}
			var got lockv1.DescribeResponse
			err = mq.DecodeReply(m, &got)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("DecodeReply: code %v (%v), want %v", code, err, tt.wantCode)
			}
			if tt.wantMsg != "" && status.Convert(err).Message() != tt.wantMsg {
				t.Errorf("message %q, want %q", status.Convert(err).Message(), tt.wantMsg)
			}
			if err == nil && got.GetName() != tt.resp.GetName() {
				t.Errorf("response name %q, want %q", got.GetName(), tt.resp.GetName())
			}
		})
	}

	if err := mq.PublishReply(nc, "", mq.Meta{}, &lockv1.DescribeResponse{}, nil); !errors.Is(err, mq.ErrNoReply) {
		t.Errorf("PublishReply to no subject = %v, want ErrNoReply", err)
	}
}
