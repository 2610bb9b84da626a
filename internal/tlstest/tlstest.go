// Package tlstest makes throwaway certificate authorities and certificates
// for tests of mutual TLS: ECDSA P-256 keys, PEM files in the test's temp
// dir, nothing kept after the test.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority that lives for one test. Its methods are
// safe for concurrent use.
type CA struct {
	// CertFile is the CA's certificate as PEM, for a client CA or root
	// CA file.
	CertFile string

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Pair names a certificate file (PEM, leaf only) and its private key file
// (PEM, PKCS #8).
type Pair struct {
	CertFile, KeyFile string
}

// NewCA returns a new self-signed CA named name, valid from an hour ago
// for a day, with its certificate written under tb.TempDir().
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("tlstest: creating CA %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("tlstest: parsing CA %s: %v", name, err)
	}
	dir := tb.TempDir()
	return &CA{CertFile: writePEM(tb, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der), cert: cert, key: key}
}

// Cert returns the CA's certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// Pool returns a new pool holding only the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Issue returns a certificate signed by ca for both server and client
// authentication (so one process can present it either way), named name,
// with the subject alternative names 127.0.0.1, ::1, localhost and
// dnsNames, valid from an hour ago for a day. Its files are written under
// tb.TempDir().
func (ca *CA) Issue(tb testing.TB, name string, dnsNames ...string) Pair {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     append([]string{"localhost"}, dnsNames...),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatalf("tlstest: issuing %s: %v", name, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("tlstest: encoding the key of %s: %v", name, err)
	}
	dir := tb.TempDir()
	return Pair{
		CertFile: writePEM(tb, filepath.Join(dir, "cert.pem"), "CERTIFICATE", der),
		KeyFile:  writePEM(tb, filepath.Join(dir, "key.pem"), "PRIVATE KEY", pkcs8),
	}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("tlstest: generating a key: %v", err)
	}
	return key
}

// serial returns a random 128-bit serial number, as RFC 5280 advises.
func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		tb.Fatalf("tlstest: serial number: %v", err)
	}
	return n
}

func writePEM(tb testing.TB, path, blockType string, der []byte) string {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
	return path
}
