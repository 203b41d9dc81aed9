package natsbus_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/natsbus"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemFile string // the CA certificate, PEM
}

func nextSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+"-ca.pem")
	writePEM(t, file, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, pemFile: file}
}

// issue signs a leaf certificate for 127.0.0.1/localhost (server) or a
// client, writes cert and key as PEM files and returns them and the pair.
func (ca *testCA) issue(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

// startTLSServer runs a server whose certificate ca signed; with clientCA
// set it also requires client certificates signed by clientCA.
func startTLSServer(t *testing.T, dir string, ca, clientCA *testCA) *server.Server {
	t.Helper()
	_, _, pair := ca.issue(t, dir, "server", x509.ExtKeyUsageServerAuth)
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	o := &server.Options{TLS: true, TLSConfig: cfg, TLSTimeout: 5}
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA.cert)
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		o.TLSVerify = true
	}
	return startServer(t, o)
}

func requireTLS(t *testing.T, nc *nats.Conn) {
	t.Helper()
	st, err := nc.TLSConnectionState()
	if err != nil || !st.HandshakeComplete {
		t.Fatalf("connection is not TLS: %v", err)
	}
}

func jetStream(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestConnectTLSVerifiesServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, dir, "bridge-test")
	srv := startTLSServer(t, dir, ca, nil)
	url := srv.ClientURL()

	nc := mustConnect(t, natsbus.Options{URL: url, TLSCAFile: ca.pemFile})
	requireTLS(t, nc)
	tlsURL := "tls://" + srv.Addr().String()
	requireTLS(t, mustConnect(t, natsbus.Options{URL: tlsURL, TLSCAFile: ca.pemFile}))

	// Verification is on: a server whose CA the client does not trust is
	// refused, whether the client names another CA or uses system roots.
	stranger := newCA(t, dir, "stranger")
	wantRefused(t, natsbus.Options{URL: url, TLSCAFile: stranger.pemFile}, "certificate")
	wantRefused(t, natsbus.Options{URL: tlsURL}, "certificate")

	// A CA file that does not exist is a configuration error: said at once.
	wantRefused(t, natsbus.Options{URL: url, TLSCAFile: filepath.Join(dir, "missing-ca.pem")}, "missing-ca.pem")
}

func TestConnectTLSClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, dir, "bridge-test")
	clientCA := newCA(t, dir, "clients")
	srv := startTLSServer(t, dir, ca, clientCA)
	url := srv.ClientURL()

	cert, key, _ := clientCA.issue(t, dir, "bridge-client", x509.ExtKeyUsageClientAuth)
	requireTLS(t, mustConnect(t, natsbus.Options{URL: url, TLSCAFile: ca.pemFile, TLSCertFile: cert, TLSKeyFile: key}))

	// No client certificate, or one from a CA the server does not trust.
	wantRefused(t, natsbus.Options{URL: url, TLSCAFile: ca.pemFile}, "tls")
	otherCert, otherKey, _ := ca.issue(t, dir, "untrusted-client", x509.ExtKeyUsageClientAuth)
	wantRefused(t, natsbus.Options{URL: url, TLSCAFile: ca.pemFile, TLSCertFile: otherCert, TLSKeyFile: otherKey}, "tls")
	// A client certificate file that does not exist.
	wantRefused(t, natsbus.Options{URL: url, TLSCAFile: ca.pemFile, TLSCertFile: filepath.Join(dir, "nope.pem"), TLSKeyFile: key}, "certificate")
}

// A TLS-only client against a plain server is refused, not retried.
func TestConnectTLSWantedPlainServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, dir, "bridge-test")
	srv := startServer(t, &server.Options{})
	wantRefused(t, natsbus.Options{URL: srv.ClientURL(), TLSCAFile: ca.pemFile}, "secure connection")
}
