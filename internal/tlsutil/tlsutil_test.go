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

// TestBadOptions: each mistake is one clear error.
func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"ca and insecure", func() error {
			_, err := ClientConfig(ClientOptions{CAFile: notPEM, Insecure: true})
			return err
		}, "--ca trusts a certificate, --insecure trusts any"},
		{"ca missing", func() error {
			_, err := ClientConfig(ClientOptions{CAFile: filepath.Join(dir, "nope.pem")})
			return err
		}, "no such file"},
		{"ca not PEM", func() error {
			_, err := ClientConfig(ClientOptions{CAFile: notPEM})
			return err
		}, "holds no PEM certificate"},
		{"no certificate", func() error {
			_, _, err := ServerConfig(ServerOptions{CertFile: notPEM})
			return err
		}, "TLS needs --tls-cert and --tls-key, or --tls-self-signed"},
		{"self-signed and files", func() error {
			_, _, err := ServerConfig(ServerOptions{SelfSigned: true, CertFile: notPEM, KeyFile: notPEM})
			return err
		}, "give one or the other"},
		{"bad pair", func() error {
			_, _, err := ServerConfig(ServerOptions{CertFile: notPEM, KeyFile: notPEM})
			return err
		}, "load certificate"},
	} {
		err := tc.err()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if cfg, err := ClientConfig(ClientOptions{}); cfg != nil || err != nil {
		t.Errorf("no options: %v, %v; want Go's defaults (nil)", cfg, err)
	}
}
