package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshake serves one TLS connection with srvCfg on loopback and dials it
// with cliCfg as host; it returns the client's handshake error and the
// negotiated protocol.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config, host string) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, srvCfg)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		tc.Handshake()
		tc.Read(make([]byte, 1)) // until the client closes
	}()
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cfg := cliCfg.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"h2", "http/1.1"}
	tc := tls.Client(raw, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	err = tc.Handshake()
	return tc.ConnectionState().NegotiatedProtocol, err
}

// TestSelfSignedTrustedWithCA: the generated certificate, written with
// CertOut, is what a client's --ca needs; without it the system roots
// refuse it; --insecure accepts it. h2 is offered by the server.
func TestSelfSignedTrustedWithCA(t *testing.T) {
	dir := t.TempDir()
	certOut := filepath.Join(dir, "cert.pem")
	srvCfg, certPEM, err := ServerConfig(ServerOptions{SelfSigned: true, CertOut: certOut})
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(certOut)
	if err != nil || string(onDisk) != string(certPEM) {
		t.Fatalf("cert-out holds %q (%v)", onDisk, err)
	}
	if strings.Contains(string(onDisk), "PRIVATE KEY") {
		t.Fatal("the certificate file holds the private key")
	}

	withCA, err := ClientConfig(ClientOptions{CAFile: certOut})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		proto, err := handshake(t, srvCfg, withCA, host)
		if err != nil || proto != "h2" {
			t.Fatalf("--ca, host %s: %q, %v", host, proto, err)
		}
	}
	if _, err := handshake(t, srvCfg, withCA, "example.com"); err == nil {
		t.Fatal("a certificate for loopback names was accepted for example.com")
	}
	_, err = handshake(t, srvCfg, nil, "127.0.0.1")
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	if !errors.As(err, &unknown) && !errors.As(err, &verify) {
		t.Fatalf("no --ca: %v, want an unknown-authority error", err)
	}
	insecure, err := ClientConfig(ClientOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, srvCfg, insecure, "127.0.0.1"); err != nil {
		t.Fatalf("--insecure: %v", err)
	}
}

// TestLoadKeyPair: --tls-cert/--tls-key files are loaded and served.
func TestLoadKeyPair(t *testing.T) {
	dir := t.TempDir()
	cert, certPEM, err := SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	srvCfg, generated, err := ServerConfig(ServerOptions{CertFile: certFile, KeyFile: keyFile})
	if err != nil || generated != nil {
		t.Fatalf("load: %v (generated %d bytes)", err, len(generated))
	}
	pool, err := PoolOf(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, srvCfg, &tls.Config{RootCAs: pool}, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if time.Until(cert.Leaf.NotAfter) > 2*time.Hour {
		t.Fatalf("validity not honoured: %v", cert.Leaf.NotAfter)
	}
}

// TestBadOptions: each mistake is one typed error naming the options
// (never a command's flags), so the command can name its own.
func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	for _, tc := range []struct {
		name  string
		err   func() error
		check func(error) bool
		want  string
	}{
		{"ca and insecure", func() error {
			_, err := ClientConfig(ClientOptions{CAFile: notPEM, Insecure: true})
			return err
		}, func(err error) bool {
			var ce *ConflictError
			return errors.As(err, &ce) && ce.A == OptCAFile && ce.B == OptInsecure && errors.Is(err, ErrConflict)
		}, "CAFile and Insecure exclude each other: the one trusts a certificate, the other trusts any: give one or the other"},
		{"ca missing", func() error {
			_, err := ClientConfig(ClientOptions{CAFile: filepath.Join(dir, "nope.pem")})
			return err
		}, func(err error) bool {
			var oe *OptionError
			return errors.As(err, &oe) && oe.Option == OptCAFile && errors.Is(err, os.ErrNotExist)
		}, "stat " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"ca not PEM", func() error {
			_, err := ClientConfig(ClientOptions{CAFile: notPEM})
			return err
		}, func(err error) bool {
			var oe *OptionError
			var nc *NoCertsError
			return errors.As(err, &oe) && oe.Option == OptCAFile && errors.As(err, &nc) && nc.Path == notPEM
		}, notPEM + " holds no PEM certificate"},
		{"certificate without key", func() error {
			_, _, err := ServerConfig(ServerOptions{CertFile: notPEM})
			return err
		}, func(err error) bool {
			var me *MissingError
			return errors.As(err, &me) && me.Given == OptCertFile && me.Missing == OptKeyFile && errors.Is(err, ErrNoServerCert)
		}, "CertFile needs KeyFile"},
		{"no certificate", func() error {
			_, _, err := ServerConfig(ServerOptions{})
			return err
		}, func(err error) bool { return errors.Is(err, ErrNoServerCert) }, ErrNoServerCert.Error()},
		{"self-signed and files", func() error {
			_, _, err := ServerConfig(ServerOptions{SelfSigned: true, CertFile: notPEM, KeyFile: notPEM})
			return err
		}, func(err error) bool {
			var ce *ConflictError
			return errors.As(err, &ce) && ce.A == OptSelfSigned && ce.B == OptCertFile
		}, "SelfSigned and CertFile exclude each other: one generates the certificate, the other loads one: give one or the other"},
		{"bad pair", func() error {
			_, _, err := ServerConfig(ServerOptions{CertFile: notPEM, KeyFile: notPEM})
			return err
		}, func(err error) bool {
			var oe *OptionError
			return errors.As(err, &oe) && oe.Option == OptCertFile
		}, "load certificate " + notPEM + " / key " + notPEM + ": tls: failed to find any PEM data in certificate input"},
	} {
		err := tc.err()
		if err == nil || err.Error() != tc.want || !tc.check(err) {
			t.Errorf("%s: %v (%T)\nwant %q", tc.name, err, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "--") {
			t.Errorf("%s: %q names a flag", tc.name, err)
		}
	}
	if cfg, err := ClientConfig(ClientOptions{}); cfg != nil || err != nil {
		t.Errorf("no options: %v, %v; want Go's defaults (nil)", cfg, err)
	}
}
