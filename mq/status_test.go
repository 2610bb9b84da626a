package mq_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

func withInfo(t testing.TB, st *status.Status) *status.Status {
	t.Helper()
	d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "OTHER_REPLICA", Domain: "lock.switchyard.dev", Metadata: map[string]string{"replica": "r2"}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestErrorHeaders checks how errors become error replies: statuses as
// they are (details included, in both encodings), context errors by
// their codes, anything else Internal without its text; and that the
// headers are one safe line.
func TestErrorHeaders(t *testing.T) {
	detailed := withInfo(t, status.New(codes.FailedPrecondition, "held by r2"))
	tests := []struct {
		name        string
		err         error
		contentType string
		want        *status.Status
		wantHeader  string
	}{
		{name: "status protobuf", err: detailed.Err(), contentType: mq.ContentTypeProtobuf, want: detailed, wantHeader: "held by r2"},
		{name: "status json", err: detailed.Err(), contentType: mq.ContentTypeJSON, want: detailed, wantHeader: "held by r2"},
		{name: "wrapped status", err: fmt.Errorf("acquire: %w", status.Error(codes.NotFound, "no lock")), want: status.New(codes.NotFound, "acquire: rpc error: code = NotFound desc = no lock"), wantHeader: "acquire: rpc error: code = NotFound desc = no lock"},
		{name: "plain error", err: errors.New("zk: dial 10.0.0.7:2181: secret"), want: status.New(codes.Internal, "internal error"), wantHeader: "internal error"},
		{name: "deadline", err: fmt.Errorf("wait: %w", context.DeadlineExceeded), want: status.New(codes.DeadlineExceeded, "context deadline exceeded"), wantHeader: "context deadline exceeded"},
		{name: "canceled", err: context.Canceled, want: status.New(codes.Canceled, "context canceled"), wantHeader: "context canceled"},
		{name: "empty message", err: status.Error(codes.NotFound, ""), want: status.New(codes.NotFound, ""), wantHeader: "NotFound"},
		{name: "multi-line message", err: status.Error(codes.Aborted, "line one\r\nline two"), contentType: mq.ContentTypeJSON, want: status.New(codes.Aborted, "line one\r\nline two"), wantHeader: "line one  line two"},
		{name: "unknown content type", err: status.Error(codes.NotFound, "x"), contentType: "text/plain", want: status.New(codes.NotFound, "x"), wantHeader: "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body := mq.ErrorHeaders(tt.err, tt.contentType)
			if got, want := h.Get(mq.HeaderErrorCode), fmt.Sprint(int(tt.want.Code())); got != want {
				t.Errorf("%s = %q, want %q", mq.HeaderErrorCode, got, want)
			}
			if got := h.Get(mq.HeaderError); got != tt.wantHeader {
				t.Errorf("%s = %q, want %q", mq.HeaderError, got, tt.wantHeader)
			}
			wantCT := tt.contentType
			if wantCT != mq.ContentTypeJSON {
				wantCT = mq.ContentTypeProtobuf
			}
			if got := h.Get(mq.HeaderContentType); got != wantCT {
				t.Errorf("Content-Type %q, want %q", got, wantCT)
			}
			var st spb.Status
			if err := mq.Unmarshal(wantCT, body, &st); err != nil {
				t.Fatalf("body does not parse as google.rpc.Status: %v", err)
			}
			if !proto.Equal(&st, tt.want.Proto()) {
				t.Errorf("body %v, want %v", &st, tt.want.Proto())
			}
			got := mq.StatusFromMsg(&nats.Msg{Header: h, Data: body})
			if !proto.Equal(status.Convert(got).Proto(), tt.want.Proto()) {
				t.Errorf("StatusFromMsg = %v, want %v", status.Convert(got).Proto(), tt.want.Proto())
			}
		})
	}
}

// TestStatusFromMsg checks replies that this package did not make:
// success, headers without (or with a bad) body, a code that is not
// gRPC's.
func TestStatusFromMsg(t *testing.T) {
	pbBody, _ := mq.Marshal(mq.ContentTypeProtobuf, status.New(codes.NotFound, "from body").Proto())
	tests := []struct {
		name     string
		msg      *nats.Msg
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "success", msg: &nats.Msg{Data: []byte("x")}, wantCode: codes.OK},
		{name: "success with content type", msg: &nats.Msg{Header: nats.Header{"Content-Type": {"application/json"}}}, wantCode: codes.OK},
		{name: "headers only", msg: &nats.Msg{Header: nats.Header{mq.HeaderErrorCode: {"5"}, mq.HeaderError: {"no lock"}}}, wantCode: codes.NotFound, wantMsg: "no lock"},
		{name: "unparsable body", msg: &nats.Msg{Header: nats.Header{mq.HeaderErrorCode: {"5"}, mq.HeaderError: {"no lock"}}, Data: []byte{0xff, 0xff}}, wantCode: codes.NotFound, wantMsg: "no lock"},
		{name: "json body in protobuf", msg: &nats.Msg{Header: nats.Header{mq.HeaderErrorCode: {"5"}, mq.HeaderError: {"no lock"}}, Data: []byte(`{"code":5}`)}, wantCode: codes.NotFound, wantMsg: "no lock"},
		{name: "body code disagrees", msg: &nats.Msg{Header: nats.Header{mq.HeaderErrorCode: {"7"}, mq.HeaderError: {"denied"}}, Data: pbBody}, wantCode: codes.PermissionDenied, wantMsg: "denied"},
		{name: "body agrees", msg: &nats.Msg{Header: nats.Header{mq.HeaderErrorCode: {"5"}, mq.HeaderError: {"header"}}, Data: pbBody}, wantCode: codes.NotFound, wantMsg: "from body"},
		{name: "http-style code", msg: &nats.Msg{Header: nats.Header{mq.HeaderErrorCode: {"500"}, mq.HeaderError: {"boom"}}}, wantCode: codes.Unknown, wantMsg: `boom (Nats-Service-Error-Code "500")`},
		{name: "text code", msg: &nats.Msg{Header: nats.Header{mq.HeaderErrorCode: {"NOT_FOUND"}, mq.HeaderError: {"boom"}}}, wantCode: codes.Unknown, wantMsg: `boom (Nats-Service-Error-Code "NOT_FOUND")`},
		{name: "code zero", msg: &nats.Msg{Header: nats.Header{mq.HeaderErrorCode: {"0"}, mq.HeaderError: {"odd"}}}, wantCode: codes.Unknown, wantMsg: `odd (Nats-Service-Error-Code "0")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mq.StatusFromMsg(tt.msg)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", code, err, tt.wantCode)
			}
			if err != nil && status.Convert(err).Message() != tt.wantMsg {
				t.Errorf("message %q, want %q", status.Convert(err).Message(), tt.wantMsg)
			}
		})
	}
}

// TestErrorHeaderBounded checks that a huge message is cut in the header
// and kept whole in the body.
func TestErrorHeaderBounded(t *testing.T) {
	long := strings.Repeat("é", 2000)
	h, body := mq.ErrorHeaders(status.Error(codes.Aborted, long), mq.ContentTypeProtobuf)
	if got := len(h.Get(mq.HeaderError)); got > 1024 || got == 0 {
		t.Errorf("error header is %d bytes, want 1..1024", got)
	}
	if err := mq.StatusFromMsg(&nats.Msg{Header: h, Data: body}); status.Convert(err).Message() != long {
		t.Errorf("message from body was cut")
	}
}

func TestHeaderText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{name: "plain", in: "lock held", n: 64, want: "lock held"},
		{name: "control characters", in: "a\nb\r\tc\x7fd", n: 64, want: "a b  c d"},
		{name: "cut", in: "abcdef", n: 3, want: "abc"},
		{name: "cut in a rune", in: "aé", n: 2, want: "a"},
		{name: "empty", in: "", n: 8, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mq.HeaderText(tt.in, tt.n); got != tt.want {
				t.Errorf("HeaderText(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

// TestDecodeReply reads replies as they might come: success in either
// encoding (leniently), error replies, and replies that do not decode,
// which are Internal.
func TestDecodeReply(t *testing.T) {
	pb, _ := mq.Marshal(mq.ContentTypeProtobuf, &lockv1.DescribeResponse{Name: "n"})
	errH, errBody := mq.ErrorHeaders(status.Error(codes.NotFound, "no lock"), mq.ContentTypeJSON)
	tests := []struct {
		name     string
		msg      *nats.Msg
		wantCode codes.Code
		wantErr  error
		wantName string
	}{
		{name: "protobuf", msg: &nats.Msg{Data: pb}, wantName: "n"},
		{name: "json with a newer field", msg: &nats.Msg{Header: nats.Header{"content-type": {"application/json"}}, Data: []byte(`{"name":"n","futureField":1}`)}, wantName: "n"},
		{name: "empty body", msg: &nats.Msg{}},
		{name: "error reply", msg: &nats.Msg{Header: errH, Data: errBody}, wantCode: codes.NotFound},
		{name: "garbage body", msg: &nats.Msg{Data: []byte{0xff, 0xff, 0xff}}, wantCode: codes.Internal, wantErr: mq.ErrDecode},
		{name: "unknown content type", msg: &nats.Msg{Header: nats.Header{"Content-Type": {"text/plain"}}, Data: []byte("hi")}, wantCode: codes.Internal, wantErr: mq.ErrContentType},
		{name: "no message", msg: nil, wantCode: codes.Internal, wantErr: mq.ErrDecode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &lockv1.DescribeResponse{Name: "stale"}
			err := mq.DecodeReply(tt.msg, resp)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", code, err, tt.wantCode)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("%v does not wrap %v", err, tt.wantErr)
			}
			if err == nil && resp.GetName() != tt.wantName {
				t.Errorf("response name %q, want %q", resp.GetName(), tt.wantName)
			}
		})
	}
}
