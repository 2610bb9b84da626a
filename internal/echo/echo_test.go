package echo_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/echo"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
)

// serve runs the echo service on a loopback port through the generated
// registration and returns a generated client to it.
func serve(tb testing.TB) echov1.EchoServiceClient {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer()
	echov1.RegisterEchoServiceServer(srv, &echo.Server{ID: "echo-1"})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	tb.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return echov1.NewEchoServiceClient(conn)
}

func TestEcho(t *testing.T) {
	client := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Echo(ctx, &echov1.EchoRequest{Message: "hello", Payload: []byte{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetMessage() != "hello" || string(resp.GetPayload()) != "\x00\x01\x02" || resp.GetServedBy() != "echo-1" {
		t.Fatalf("Echo = %v", resp)
	}
}

func TestEchoStream(t *testing.T) {
	client := serve(t)
	tests := []struct {
		name     string
		req      *echov1.EchoStreamRequest
		wantN    int
		wantCode codes.Code
	}{
		{name: "three", req: &echov1.EchoStreamRequest{Message: "m", Count: 3}, wantN: 3},
		{name: "paced", req: &echov1.EchoStreamRequest{Message: "m", Count: 2, Interval: durationpb.New(10 * time.Millisecond)}, wantN: 2},
		{name: "none", req: &echov1.EchoStreamRequest{Message: "m"}, wantN: 0},
		{name: "too many", req: &echov1.EchoStreamRequest{Count: echo.MaxStreamCount + 1}, wantCode: codes.InvalidArgument},
		{name: "negative interval", req: &echov1.EchoStreamRequest{Count: 1, Interval: durationpb.New(-time.Second)}, wantCode: codes.InvalidArgument},
		{name: "interval too long", req: &echov1.EchoStreamRequest{Count: 1, Interval: durationpb.New(time.Hour)}, wantCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stream, err := client.EchoStream(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					if got := status.Code(err); got != tt.wantCode {
						t.Fatalf("code %v (%v), want %v", got, err, tt.wantCode)
					}
					return
				}
				n++
				if resp.GetSequence() != uint32(n) || resp.GetMessage() != tt.req.GetMessage() {
					t.Fatalf("response %d = %v", n, resp)
				}
			}
			if tt.wantCode != codes.OK {
				t.Fatalf("stream ended without the %v error", tt.wantCode)
			}
			if n != tt.wantN {
				t.Fatalf("%d responses, want %d", n, tt.wantN)
			}
		})
	}
}
