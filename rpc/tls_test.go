package rpc_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/internal/echo"
	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/tlstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	echov1 "github.com/switchyard-dev/switchyard/proto/switchyard/echo/v1"
	"github.com/switchyard-dev/switchyard/rpc"
)

// peerRecorder counts Echo calls and records the common name of the last
// caller's TLS certificate.
type peerRecorder struct {
	echo.Server
	calls  atomic.Int64
	mu     sync.Mutex
	caller string
}

func (p *peerRecorder) Echo(ctx context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	p.calls.Add(1)
	if pr, ok := peer.FromContext(ctx); ok {
		if info, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			p.mu.Lock()
			p.caller = info.State.PeerCertificates[0].Subject.CommonName
			p.mu.Unlock()
		}
	}
	return p.Server.Echo(ctx, req)
}

func (p *peerRecorder) lastCaller() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.caller
}

// TestMTLSThroughRegistry serves with mutual TLS (so Serve's readiness
// check passed over TLS) and calls through zk:/// with a client
// certificate: by default the client expects the service name in the
// server's certificate, WithServerName another name. Each side sees the
// other's certificate over TLS 1.3.
func TestMTLSThroughRegistry(t *testing.T) {
	ca := tlstest.NewCA(t, "test-ca")
	srvPair := ca.Issue(t, "echo-server", echoService)
	cliPair := ca.Issue(t, "echo-client")
	impl := &peerRecorder{}
	serve(t, lbtest.Dial(t), impl, rpc.WithServerTLS(srvPair.CertFile, srvPair.KeyFile, ca.CertFile))

	tests := []struct {
		name string
		opts []rpc.ClientOption
	}{
		{"service name", nil},
		{"server name", []rpc.ClientOption{rpc.WithServerName("localhost")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]rpc.ClientOption{rpc.WithClientTLS(cliPair.CertFile, cliPair.KeyFile, ca.CertFile)}, tt.opts...)
			client := newClient(t, echoService, opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var p peer.Peer
			if _, err := client.Echo(ctx, &echov1.EchoRequest{Message: "hi"}, grpc.WaitForReady(true), grpc.Peer(&p)); err != nil {
				t.Fatal(err)
			}
			info, ok := p.AuthInfo.(credentials.TLSInfo)
			if !ok {
				t.Fatalf("peer auth %T, want TLS", p.AuthInfo)
			}
			if info.State.Version != tls.VersionTLS13 || info.State.PeerCertificates[0].Subject.CommonName != "echo-server" {
				t.Fatalf("TLS version %x with server %q, want TLS 1.3 with echo-server", info.State.Version, info.State.PeerCertificates[0].Subject.CommonName)
			}
			if got := impl.lastCaller(); got != "echo-client" {
				t.Fatalf("server saw caller %q, want echo-client", got)
			}
		})
	}
}

// TestMTLSRejects checks that a connection fails in its handshake, with
// Unavailable and without the handler running, when the client has no
// certificate, one from another CA, no TLS at all, or does not trust the
// server's certificate or name; then that a good client gets through.
func TestMTLSRejects(t *testing.T) {
	ca := tlstest.NewCA(t, "test-ca")
	other := tlstest.NewCA(t, "other-ca")
	srvPair := ca.Issue(t, "echo-server", echoService)
	good := ca.Issue(t, "echo-client")
	foreign := other.Issue(t, "foreign-client")
	impl := &peerRecorder{}
	serve(t, lbtest.Dial(t), impl, rpc.WithServerTLS(srvPair.CertFile, srvPair.KeyFile, ca.CertFile))

	noCert := credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13})
	tests := []struct {
		name string
		opts []rpc.ClientOption
	}{
		{"plaintext client", nil},
		{"client without a certificate", []rpc.ClientOption{rpc.WithDialOptions(grpc.WithTransportCredentials(noCert))}},
		{"client certificate from another CA", []rpc.ClientOption{rpc.WithClientTLS(foreign.CertFile, foreign.KeyFile, ca.CertFile)}},
		{"server from an untrusted CA", []rpc.ClientOption{rpc.WithClientTLS(good.CertFile, good.KeyFile, other.CertFile)}},
		{"server name not in its certificate", []rpc.ClientOption{rpc.WithClientTLS(good.CertFile, good.KeyFile, ca.CertFile), rpc.WithServerName("elsewhere.example")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := newClient(t, echoService, tt.opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := client.Echo(ctx, &echov1.EchoRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("call: %v, want Unavailable", err)
			}
			t.Logf("rejected: %v", err)
		})
	}
	if n := impl.calls.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for rejected clients", n)
	}
	client := newClient(t, echoService, rpc.WithClientTLS(good.CertFile, good.KeyFile, ca.CertFile))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Echo(ctx, &echov1.EchoRequest{}, grpc.WaitForReady(true)); err != nil || impl.calls.Load() != 1 {
		t.Fatalf("good client: %v, %d handler runs", err, impl.calls.Load())
	}
}

// TestTLSBadFiles checks that unusable certificate, key or CA files make
// Serve (for WithServerTLS) and NewClient (for WithClientTLS) fail with
// ErrTLSConfig and an error that says what is wrong.
func TestTLSBadFiles(t *testing.T) {
	ca := tlstest.NewCA(t, "test-ca")
	pair := ca.Issue(t, "one")
	another := ca.Issue(t, "another")
	foreign := tlstest.NewCA(t, "other-ca").Issue(t, "foreign")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cert, key  string
		caFile     string
		serverOnly bool  // WithClientTLS has no such check
		wrapped    error // also in the chain, if not nil
		says       string
	}{
		{name: "missing certificate", cert: missing, key: pair.KeyFile, caFile: ca.CertFile, wrapped: fs.ErrNotExist, says: "missing.pem"},
		{name: "missing key", cert: pair.CertFile, key: missing, caFile: ca.CertFile, wrapped: fs.ErrNotExist, says: "missing.pem"},
		{name: "certificate not PEM", cert: notPEM, key: pair.KeyFile, caFile: ca.CertFile, says: "PEM"},
		{name: "key not matching", cert: pair.CertFile, key: another.KeyFile, caFile: ca.CertFile, says: "does not match"},
		{name: "missing CA", cert: pair.CertFile, key: pair.KeyFile, caFile: missing, wrapped: fs.ErrNotExist, says: "missing.pem"},
		{name: "CA not PEM", cert: pair.CertFile, key: pair.KeyFile, caFile: notPEM, says: "no PEM certificate"},
		{name: "server certificate outside its client CA", cert: foreign.CertFile, key: foreign.KeyFile, caFile: ca.CertFile, serverOnly: true, says: "not a client certificate under the client CA"},
	}
	reg := lbtest.Dial(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(side string, err error) {
				t.Helper()
				t.Logf("%s: %v", side, err)
				if !errors.Is(err, rpc.ErrTLSConfig) || (tt.wrapped != nil && !errors.Is(err, tt.wrapped)) || !strings.Contains(err.Error(), tt.says) {
					t.Errorf("%s: %v, want ErrTLSConfig (and %v) saying %q", side, err, tt.wrapped, tt.says)
				}
			}
			s := rpc.NewServer(nil, rpc.WithServerTLS(tt.cert, tt.key, tt.caFile), rpc.WithLogger(zktest.Logger(t)))
			echov1.RegisterEchoServiceServer(s, &echo.Server{})
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			check("Serve", s.Serve(context.Background(), lis))
			if tt.serverOnly {
				return
			}
			conn, err := rpc.NewClient(reg, echoService, rpc.WithClientTLS(tt.cert, tt.key, tt.caFile))
			if err == nil {
				conn.Close()
			}
			check("NewClient", err)
		})
	}
}
