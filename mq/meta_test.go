package mq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

const validTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestParseMeta checks every header of the contract: defaults, accepted
// spellings, the earlier of two deadlines, dropped trace context, and the
// code of every bad value.
func TestParseMeta(t *testing.T) {
	received := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	tests := []struct {
		name     string
		header   nats.Header
		want     mq.Meta
		wantCode codes.Code
		wantErr  error
	}{
		{name: "no headers", want: mq.Meta{ContentType: mq.ContentTypeProtobuf}},
		{
			name:   "json with charset and accept",
			header: nats.Header{"Content-Type": {"application/json; charset=utf-8"}, "Accept": {"text/plain, application/protobuf"}},
			want:   mq.Meta{ContentType: mq.ContentTypeJSON, Accept: mq.ContentTypeProtobuf},
		},
		{
			name:   "x-protobuf",
			header: nats.Header{"Content-Type": {"application/x-protobuf"}},
			want:   mq.Meta{ContentType: mq.ContentTypeProtobuf},
		},
		{
			name:   "names without regard to case",
			header: nats.Header{"content-type": {"application/json"}, "switchyard-request-id": {"r-1"}, "SWITCHYARD-TIMEOUT": {"2s"}},
			want:   mq.Meta{ContentType: mq.ContentTypeJSON, RequestID: "r-1", Deadline: received.Add(2 * time.Second)},
		},
		{
			name: "deadline earlier than timeout",
			header: nats.Header{
				mq.HeaderDeadline: {received.Add(time.Second).Format(time.RFC3339Nano)},
				mq.HeaderTimeout:  {"5s"},
			},
			want: mq.Meta{ContentType: mq.ContentTypeProtobuf, Deadline: received.Add(time.Second)},
		},
		{
			name: "timeout earlier than deadline",
			header: nats.Header{
				mq.HeaderDeadline: {received.Add(time.Minute).In(time.FixedZone("x", 3600)).Format(time.RFC3339Nano)},
				mq.HeaderTimeout:  {"1500ms"},
			},
			want: mq.Meta{ContentType: mq.ContentTypeProtobuf, Deadline: received.Add(1500 * time.Millisecond)},
		},
		{
			name:   "trace context",
			header: nats.Header{mq.HeaderTraceParent: {validTraceParent}, mq.HeaderTraceState: {"congo=t61rcWkgMzE"}},
			want:   mq.Meta{ContentType: mq.ContentTypeProtobuf, TraceParent: validTraceParent, TraceState: "congo=t61rcWkgMzE"},
		},
		{
			name:   "invalid traceparent dropped with tracestate",
			header: nats.Header{mq.HeaderTraceParent: {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}, mq.HeaderTraceState: {"congo=t61rcWkgMzE"}},
			want:   mq.Meta{ContentType: mq.ContentTypeProtobuf},
		},
		{
			name:   "all-zero trace id dropped",
			header: nats.Header{mq.HeaderTraceParent: {"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}},
			want:   mq.Meta{ContentType: mq.ContentTypeProtobuf},
		},
		{
			name:     "unsupported content type",
			header:   nats.Header{"Content-Type": {"text/plain"}, "Accept": {"application/json"}},
			want:     mq.Meta{Accept: mq.ContentTypeJSON},
			wantCode: codes.InvalidArgument, wantErr: mq.ErrContentType,
		},
		{
			name:     "bad deadline",
			header:   nats.Header{"Content-Type": {"application/json"}, mq.HeaderDeadline: {"tomorrow"}},
			want:     mq.Meta{ContentType: mq.ContentTypeJSON},
			wantCode: codes.InvalidArgument, wantErr: mq.ErrHeader,
		},
		{
			name:     "bad timeout",
			header:   nats.Header{mq.HeaderTimeout: {"5 seconds"}},
			want:     mq.Meta{ContentType: mq.ContentTypeProtobuf},
			wantCode: codes.InvalidArgument, wantErr: mq.ErrHeader,
		},
		{
			name:     "negative timeout",
			header:   nats.Header{mq.HeaderTimeout: {"-1s"}},
			want:     mq.Meta{ContentType: mq.ContentTypeProtobuf},
			wantCode: codes.InvalidArgument, wantErr: mq.ErrHeader,
		},
		{
			name:     "deadline passed",
			header:   nats.Header{mq.HeaderDeadline: {received.Add(-time.Millisecond).Format(time.RFC3339Nano)}},
			want:     mq.Meta{ContentType: mq.ContentTypeProtobuf, Deadline: received.Add(-time.Millisecond)},
			wantCode: codes.DeadlineExceeded, wantErr: mq.ErrDeadline,
		},
		{
			name:     "request id too long",
			header:   nats.Header{mq.HeaderRequestID: {strings.Repeat("x", mq.MaxRequestIDLen+1)}},
			want:     mq.Meta{ContentType: mq.ContentTypeProtobuf},
			wantCode: codes.InvalidArgument, wantErr: mq.ErrHeader,
		},
		{
			name:   "request id at the limit",
			header: nats.Header{mq.HeaderRequestID: {strings.Repeat("x", mq.MaxRequestIDLen)}},
			want:   mq.Meta{ContentType: mq.ContentTypeProtobuf, RequestID: strings.Repeat("x", mq.MaxRequestIDLen)},
		},
		{
			name:     "request id with a control character",
			header:   nats.Header{mq.HeaderRequestID: {"a\x01b"}},
			want:     mq.Meta{ContentType: mq.ContentTypeProtobuf},
			wantCode: codes.InvalidArgument, wantErr: mq.ErrHeader,
		},
		{
			name:     "request id not ASCII",
			header:   nats.Header{mq.HeaderRequestID: {"zürich"}},
			want:     mq.Meta{ContentType: mq.ContentTypeProtobuf},
			wantCode: codes.InvalidArgument, wantErr: mq.ErrHeader,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mq.ParseMeta(tt.header, received)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("ParseMeta error %v (code %v), want code %v", err, code, tt.wantCode)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseMeta error %v does not wrap %v", err, tt.wantErr)
			}
			if err != nil && !strings.HasPrefix(status.Convert(err).Message(), "mq: ") {
				t.Errorf("status message %q lacks the mq: prefix", status.Convert(err).Message())
			}
			if !got.Deadline.Equal(tt.want.Deadline) {
				t.Errorf("Deadline %v, want %v", got.Deadline, tt.want.Deadline)
			}
			got.Deadline, tt.want.Deadline = time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("ParseMeta = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestMetaHeaderRoundTrip writes a Meta as headers and parses it back,
// and checks that Context ends at its deadline.
func TestMetaHeaderRoundTrip(t *testing.T) {
	received := time.Now()
	in := mq.Meta{
		RequestID:   "req-7",
		Deadline:    received.Add(3*time.Second + 123456789).In(time.FixedZone("x", -7200)),
		TraceParent: validTraceParent,
		TraceState:  "a=b",
		ContentType: mq.ContentTypeJSON,
		Accept:      mq.ContentTypeProtobuf,
	}
	h := in.Header()
	if got := h.Get(mq.HeaderDeadline); !strings.HasSuffix(got, "Z") {
		t.Errorf("deadline header %q is not UTC", got)
	}
	out, err := mq.ParseMeta(h, received)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Deadline.Equal(in.Deadline) {
		t.Errorf("deadline %v, want %v", out.Deadline, in.Deadline)
	}
	out.Deadline, in.Deadline = time.Time{}, time.Time{}
	if out != in {
		t.Errorf("round trip %+v, want %+v", out, in)
	}

	d := received.Add(time.Hour)
	ctx, cancel := mq.Meta{Deadline: d}.Context(context.Background())
	defer cancel()
	if got, ok := ctx.Deadline(); !ok || !got.Equal(d) {
		t.Errorf("Context deadline %v %v, want %v", got, ok, d)
	}
	ctx, cancel = mq.Meta{}.Context(context.Background())
	cancel()
	if _, ok := ctx.Deadline(); ok || ctx.Err() == nil {
		t.Errorf("Context without deadline: deadline set %v, err %v after cancel", ok, ctx.Err())
	}
}

// TestCodec checks the codec primitives: both encodings, strictness on
// requests, empty bodies, and content-type selection.
func TestCodec(t *testing.T) {
	msg := &lockv1.DescribeRequest{Name: "orders/42"}
	tests := []struct {
		name        string
		contentType string
		data        []byte // nil: Marshal(msg)
		want        proto.Message
		wantErr     error
	}{
		{name: "protobuf", contentType: mq.ContentTypeProtobuf, want: msg},
		{name: "x-protobuf", contentType: mq.ContentTypeXProtobuf, want: msg},
		{name: "default", contentType: "", want: msg},
		{name: "json", contentType: mq.ContentTypeJSON, want: msg},
		{name: "json proto names", contentType: mq.ContentTypeJSON, data: []byte(`{"name":"orders/42"}`), want: msg},
		{name: "empty json body", contentType: mq.ContentTypeJSON, data: []byte{}, want: &lockv1.DescribeRequest{}},
		{name: "unknown json field", contentType: mq.ContentTypeJSON, data: []byte(`{"name":"a","color":"red"}`), wantErr: mq.ErrDecode},
		{name: "garbage protobuf", contentType: mq.ContentTypeProtobuf, data: []byte{0xff, 0xff, 0xff, 0xff}, wantErr: mq.ErrDecode},
		{name: "unsupported", contentType: "text/xml", data: []byte("<x/>"), wantErr: mq.ErrContentType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data
			if data == nil {
				var err error
				if data, err = mq.Marshal(tt.contentType, msg); err != nil {
					t.Fatal(err)
				}
			}
			got := &lockv1.DescribeRequest{Name: "stale"}
			err := mq.Unmarshal(tt.contentType, data, got)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("Unmarshal error %v, want %v", err, tt.wantErr)
			}
			if err == nil && !proto.Equal(got, tt.want) {
				t.Fatalf("Unmarshal = %v, want %v", got, tt.want)
			}
		})
	}

	replyTypes := []struct {
		name   string
		header nats.Header
		want   string
	}{
		{name: "none", want: mq.ContentTypeProtobuf},
		{name: "json", header: nats.Header{"Content-Type": {"application/json"}}, want: mq.ContentTypeJSON},
		{name: "accept overrides", header: nats.Header{"Content-Type": {"application/json"}, "Accept": {"application/x-protobuf"}}, want: mq.ContentTypeProtobuf},
		{name: "unknown accept ignored", header: nats.Header{"Content-Type": {"application/json"}, "Accept": {"*/*"}}, want: mq.ContentTypeJSON},
		{name: "unsupported request", header: nats.Header{"Content-Type": {"text/plain"}}, want: mq.ContentTypeProtobuf},
	}
	for _, tt := range replyTypes {
		t.Run("reply "+tt.name, func(t *testing.T) {
			meta, _ := mq.ParseMeta(tt.header, time.Now()) // the error reply too goes in the reply content type
			if got := meta.ReplyContentType(); got != tt.want {
				t.Errorf("ParseMeta(...).ReplyContentType() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHeaderValue checks that header names match without regard to case,
// the exact spelling first, and that values are trimmed.
func TestHeaderValue(t *testing.T) {
	tests := []struct {
		name   string
		header nats.Header
		want   string
	}{
		{name: "nil header", header: nil, want: ""},
		{name: "absent", header: nats.Header{"Other": {"x"}}, want: ""},
		{name: "exact", header: nats.Header{mq.HeaderRequestID: {"id-1"}}, want: "id-1"},
		{name: "lowercase", header: nats.Header{"switchyard-request-id": {"id-2"}}, want: "id-2"},
		{name: "uppercase", header: nats.Header{"SWITCHYARD-REQUEST-ID": {"id-3"}}, want: "id-3"},
		{name: "exact wins", header: nats.Header{"switchyard-request-id": {"other"}, mq.HeaderRequestID: {"id-4"}}, want: "id-4"},
		{name: "trimmed", header: nats.Header{mq.HeaderRequestID: {"  id-5 \t"}}, want: "id-5"},
		{name: "first value", header: nats.Header{mq.HeaderRequestID: {"id-6", "id-7"}}, want: "id-6"},
		{name: "no values", header: nats.Header{mq.HeaderRequestID: {}}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mq.HeaderValue(tt.header, mq.HeaderRequestID); got != tt.want {
				t.Errorf("HeaderValue = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCheckRequestID checks the request-id rule that ParseMeta and
// Request apply.
func TestCheckRequestID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{name: "none", id: "", ok: true},
		{name: "printable", id: "req 7/~!", ok: true},
		{name: "longest", id: strings.Repeat("a", mq.MaxRequestIDLen), ok: true},
		{name: "too long", id: strings.Repeat("a", mq.MaxRequestIDLen+1)},
		{name: "tab", id: "a\tb"},
		{name: "non-ascii", id: "é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mq.CheckRequestID(tt.id)
			if tt.ok {
				if err != nil {
					t.Errorf("CheckRequestID(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !errors.Is(err, mq.ErrHeader) {
				t.Errorf("CheckRequestID(%q) = %v, want InvalidArgument wrapping ErrHeader", tt.id, err)
			}
		})
	}
}

func TestMergeRequestID(t *testing.T) {
	tests := []struct {
		name, body, header, want string
		differ                   bool
	}{
		{name: "neither"},
		{name: "body only", body: "a", want: "a"},
		{name: "header only", header: "b", want: "b"},
		{name: "both, the same", body: "a", header: "a", want: "a"},
		{name: "both, differing", body: "a", header: "b", differ: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mq.MergeRequestID(tt.body, tt.header, mq.HeaderRequestID)
			if tt.differ {
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), mq.HeaderRequestID) {
					t.Errorf("MergeRequestID(%q, %q) = %q, %v; want InvalidArgument naming %s", tt.body, tt.header, got, err, mq.HeaderRequestID)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("MergeRequestID(%q, %q) = %q, %v; want %q", tt.body, tt.header, got, err, tt.want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{name: "short", in: "a\tb", want: `"a\tb"`},
		{name: "64 bytes", in: strings.Repeat("x", 64), want: `"` + strings.Repeat("x", 64) + `"`},
		{name: "long", in: strings.Repeat("x", 65), want: `"` + strings.Repeat("x", 64) + `"...`},
		{name: "cut in a rune", in: strings.Repeat("x", 63) + "éé", want: `"` + strings.Repeat("x", 63) + `"...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mq.Quote(tt.in); got != tt.want {
				t.Errorf("Quote = %s, want %s", got, tt.want)
			}
		})
	}
}
