package tlstest_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"

	"github.com/switchyard-dev/switchyard/internal/tlstest"
)

// TestIssuedCertificatesVerify checks an issued pair loads, verifies
// under its CA for both uses and every promised name, and not under
// another CA.
func TestIssuedCertificatesVerify(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	pair := ca.Issue(t, "leaf", "svc.example")
	kp, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for usage %v: %v", usage, err)
		}
	}
	for _, name := range []string{"127.0.0.1", "::1", "localhost", "svc.example"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("name %s: %v", name, err)
		}
	}
	other := tlstest.NewCA(t, "other")
	var unknown x509.UnknownAuthorityError
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: other.Pool()}); !errors.As(err, &unknown) {
		t.Fatalf("verify under another CA: %v, want UnknownAuthorityError", err)
	}
}

// TestMutualHandshake runs a TLS 1.3 handshake in which each side
// presents a certificate of the same CA and verifies the other's.
func TestMutualHandshake(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	load := func(p tlstest.Pair) tls.Certificate {
		kp, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	srvConn, cliConn := net.Pipe()
	srv := tls.Server(srvConn, &tls.Config{
		Certificates: []tls.Certificate{load(ca.Issue(t, "server"))},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS13,
	})
	cli := tls.Client(cliConn, &tls.Config{
		Certificates: []tls.Certificate{load(ca.Issue(t, "client"))},
		RootCAs:      ca.Pool(),
		ServerName:   "localhost",
		MinVersion:   tls.VersionTLS13,
	})
	defer srv.Close()
	defer cli.Close()
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if got := srv.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "client" {
		t.Fatalf("server saw client %q, want client", got)
	}
}
