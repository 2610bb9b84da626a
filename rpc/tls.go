package rpc

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrTLSConfig reports certificate, key or CA files that cannot serve for
// mutual TLS: missing, not PEM, a key that does not match its certificate,
// or a server certificate its own client CA would not accept. The error
// names the file and wraps the cause (errors.Is(err, fs.ErrNotExist)
// holds for a missing file).
var ErrTLSConfig = errors.New("rpc: bad TLS configuration")

// WithClientTLS makes the client use mutual TLS (1.3 or later): it
// presents the certificate in certFile with the key in keyFile (PEM), and
// accepts a server only if its certificate verifies under the CA
// certificates in caFile (PEM) and names the server: by default the
// service (the authority of zk:///<service>, so server certificates need
// the service name as a DNS name), or the name WithServerName gives. The
// files are read once, by NewClient, which returns an error wrapping
// ErrTLSConfig if one is missing, not PEM, or the key does not match.
// A server that rejects the client, or that the client rejects, fails
// calls with Unavailable.
func WithClientTLS(certFile, keyFile, caFile string) ClientOption {
	return func(o *clientOptions) { o.tls = &tlsFiles{cert: certFile, key: keyFile, ca: caFile} }
}

// WithServerName sets the name the client expects in servers'
// certificates, such as a DNS name every instance's certificate carries,
// instead of the service name. It is the connection's authority
// (grpc.WithAuthority), so it is also sent as :authority.
func WithServerName(name string) ClientOption {
	return func(o *clientOptions) { o.serverName = name }
}

// transportOptions returns the dial options for the client's transport
// security: insecure, or mutual TLS with WithClientTLS.
func transportOptions(o clientOptions) ([]grpc.DialOption, error) {
	creds := insecure.NewCredentials()
	if o.tls != nil {
		c, err := newClientTLS(*o.tls)
		if err != nil {
			return nil, err
		}
		creds = c
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if o.serverName != "" {
		opts = append(opts, grpc.WithAuthority(o.serverName))
	}
	return opts, nil
}

// tlsFiles names the PEM files of one side of mutual TLS.
type tlsFiles struct {
	cert, key, ca string
}

// serverTLS holds the credentials of a server with mutual TLS, and those
// its readiness check dials it with.
type serverTLS struct {
	creds credentials.TransportCredentials
	self  credentials.TransportCredentials
}

// newServerTLS loads f for a server that requires, and verifies under
// f.ca, a client certificate on every connection, over TLS 1.3 or later.
//
// Serve's readiness check dials the server's own listener and must pass
// that same verification, so it presents the server's certificate as its
// client certificate: the certificate must chain to f.ca and allow client
// authentication (extended key usage clientAuth, or none). That is checked
// here, so a mismatch fails before serving rather than as a failed health
// check. On its side, the check accepts exactly the server's own leaf
// certificate, which only a holder of the server's private key can
// present in a TLS 1.3 handshake: no name or root is needed for it.
func newServerTLS(f tlsFiles) (*serverTLS, error) {
	cert, err := loadKeyPair(f.cert, f.key)
	if err != nil {
		return nil, err
	}
	pool, err := loadCAs(f.ca)
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: intermediate certificate: %w", ErrTLSConfig, f.cert, err)
		}
		inter.AddCert(c)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("%w: %s is not a client certificate under the client CA %s, as Serve's readiness check, which presents it, needs: %w", ErrTLSConfig, f.cert, f.ca, err)
	}
	own := cert.Certificate[0]
	return &serverTLS{
		creds: credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS13,
		}),
		self: credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS13,
			// The peer is verified below, against the one certificate
			// it must present, instead of by root and name.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
				if len(rawCerts) == 0 || !bytes.Equal(rawCerts[0], own) {
					return errors.New("rpc: readiness check: the listener presented a certificate other than the server's own")
				}
				return nil
			},
		}),
	}, nil
}

// newClientTLS loads f for a client that presents its certificate and
// verifies the server's under f.ca, over TLS 1.3 or later.
func newClientTLS(f tlsFiles) (credentials.TransportCredentials, error) {
	cert, err := loadKeyPair(f.cert, f.key)
	if err != nil {
		return nil, err
	}
	pool, err := loadCAs(f.ca)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
	}), nil
}

// loadKeyPair loads a certificate chain and its key, with the leaf parsed.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: key pair %s, %s: %w", ErrTLSConfig, certFile, keyFile, err)
	}
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("%w: %s: %w", ErrTLSConfig, certFile, err)
		}
	}
	return cert, nil
}

// loadCAs reads a pool of CA certificates from a PEM file.
func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file: %w", ErrTLSConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrTLSConfig, file)
	}
	return pool, nil
}
