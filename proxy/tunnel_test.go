package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// sseServer counts its requests and streams three events, then ends.
func sseServer(t *testing.T, tlsOn bool) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := 1; i <= 3; i++ {
			sse.WriteEvent(w, fmt.Sprint(i), "quote", "host="+r.Host)
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	})
	var srv *httptest.Server
	if tlsOn {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, &hits
}

// connectTunnel opens a CONNECT tunnel to target through the proxy at addr.
func connectTunnel(t *testing.T, addr, target string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	return conn, br
}

// TestConnectTunnelPlainHTTP: requests inside a CONNECT tunnel to an
// allowed host are recorded like any stream, and go to the tunnel's target
// whatever their Host header or absolute URL names: another server, never
// allowed, sees nothing.
func TestConnectTunnelPlainHTTP(t *testing.T) {
	target, hits := sseServer(t, false)
	other, otherHits := sseServer(t, false)
	tu, _ := url.Parse(target.URL)
	ou, _ := url.Parse(other.URL)
	w, path := newSession(t)
	p := startProxy(t, Config{AllowHosts: []string{tu.Host}, Session: w, Name: "fwd", Recorder: recording.New(w, "fwd", recording.Options{})})

	conn, br := connectTunnel(t, p.Addr(), tu.Host)
	for i, line := range []string{
		"GET /stream?symbols=AAPL HTTP/1.1\r\nHost: " + ou.Host + "\r\nAccept: text/event-stream\r\n\r\n",
		"GET http://" + ou.Host + "/stream?symbols=MSFT HTTP/1.1\r\nHost: " + ou.Host + "\r\nAccept: text/event-stream\r\n\r\n",
	} {
		io.WriteString(conn, line)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Count(string(body), "event: quote") != 3 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	conn.Close()
	if hits.Load() != 2 || otherHits.Load() != 0 {
		t.Fatalf("target served %d, the host the requests named %d: a tunnel must reach its target only", hits.Load(), otherHits.Load())
	}
	readSession(t, p, w, path)
	rec, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Streams) != 2 {
		t.Fatalf("recorded %d streams, want 2", len(rec.Streams))
	}
	for i, s := range rec.Streams {
		want := []string{"AAPL", "MSFT"}[i]
		if s.Group != want || len(s.Events) != 3 || !s.Ended || s.Status != 200 {
			t.Errorf("stream %s: group %q, %d frames, ended %v, status %d", s.Name(), s.Group, len(s.Events), s.Ended, s.Status)
		}
	}
	if info := p.Info(); len(info.UnrecordedTunnels) != 0 {
		t.Errorf("unrecorded tunnels %v", info.UnrecordedTunnels)
	}
}

// TestConnectTunnelTLS: an https target through forward mode. With MITM
// the client verifies the proxy's CA (and a client without it refuses),
// the stream is recorded and re-encrypted toward the target; the CA's key
// is written 0600 and never reaches the session file. Without MITM the
// tunnel passes through, unrecorded, and is counted by target.
func TestConnectTunnelTLS(t *testing.T) {
	target, hits := sseServer(t, true)
	tu, _ := url.Parse(target.URL)
	targetPool := x509.NewCertPool()
	targetPool.AddCert(target.Certificate())
	get := func(p *Proxy, roots *x509.CertPool) (string, error) {
		pu, _ := url.Parse(p.URL())
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true,
		}}
		resp, err := c.Get(target.URL + "/stream?symbols=TSLA")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}

	t.Run("mitm", func(t *testing.T) {
		dir := t.TempDir()
		caOut := filepath.Join(dir, "ca.pem")
		w, path := newSession(t)
		p := startProxy(t, Config{
			AllowHosts: []string{tu.Host}, Session: w, Name: "mitm", Recorder: recording.New(w, "mitm", recording.Options{}),
			TLSClientConfig: &tls.Config{RootCAs: targetPool},
			MITMConfig:      MITMConfig{MITM: true, MITMCAOut: caOut},
		})
		caPEM, err := os.ReadFile(caOut)
		if err != nil || string(caPEM) != string(p.MITMCACertPEM()) {
			t.Fatalf("CA certificate file: %v", err)
		}
		keyFile := MITMKeyFile(caOut)
		st, err := os.Stat(keyFile)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("CA key file %s: %v, mode %v", keyFile, err, st)
		}
		if _, err := get(p, targetPool); err == nil {
			t.Fatal("a client that does not trust the proxy's CA got through")
		} else if !errors.As(err, new(*tls.CertificateVerificationError)) && !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("client without the CA: %v, want a certificate error", err)
		}
		caPool := x509.NewCertPool()
		caPool.AppendCertsFromPEM(caPEM)
		body, err := get(p, caPool)
		if err != nil || strings.Count(body, "event: quote") != 3 {
			t.Fatalf("client trusting the CA: %v %q", err, body)
		}
		readSession(t, p, w, path)
		rec, err := recording.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range rec.Streams {
			if s.Status == 200 {
				got = append(got, fmt.Sprintf("%s %d", s.Group, len(s.Events)))
			}
		}
		if len(got) != 1 || got[0] != "TSLA 3" {
			t.Fatalf("recorded %v, want the TSLA stream with 3 frames", got)
		}
		key, _ := os.ReadFile(keyFile)
		raw, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(key), "\n") {
			if len(line) > 20 && strings.Contains(string(raw), line) {
				t.Fatal("the CA's private key is in the session file")
			}
		}
		if hits.Load() != 1 {
			t.Errorf("target served %d requests, want 1 (the client without the CA never got through)", hits.Load())
		}
	})

	t.Run("no mitm", func(t *testing.T) {
		w, path := newSession(t)
		p := startProxy(t, Config{AllowHosts: []string{tu.Host}, Session: w, Name: "plain", Recorder: recording.New(w, "plain", recording.Options{})})
		body, err := get(p, targetPool)
		if err != nil || strings.Count(body, "event: quote") != 3 {
			t.Fatalf("tunnel passed through: %v %q", err, body)
		}
		info := p.Info()
		if info.UnrecordedTunnels[tu.Host] != 1 || len(info.UnrecordedTunnels) != 1 {
			t.Fatalf("unrecorded tunnels %v, want %s: 1", info.UnrecordedTunnels, tu.Host)
		}
		readSession(t, p, w, path)
		r, err := session.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		proxies, _ := session.All[session.ProxyInfo](r, session.BucketProxies)
		if len(proxies) != 1 || proxies[0].UnrecordedTunnels[tu.Host] != 1 {
			t.Fatalf("stored proxy info %+v", proxies)
		}
		if n := r.Count(session.BucketRecStreams); n != 0 {
			t.Fatalf("%d streams recorded from a tunnel the proxy could not read", n)
		}
	})
}

// TestMITMConfigRefused: --mitm without forward mode, a CA that is not
// one, and a CA file that exists already are refused before anything
// listens.
func TestMITMConfigRefused(t *testing.T) {
	dir := t.TempDir()
	exists := filepath.Join(dir, "ca.pem")
	os.WriteFile(exists, []byte("x"), 0o644)
	leafCert, leafKey := filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "leaf-key.pem")
	writeLeaf(t, leafCert, leafKey)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Upstream: "http://127.0.0.1:1", MITMConfig: MITMConfig{MITM: true}}, "give --allow-host"},
		{Config{AllowHosts: []string{"a"}, MITMConfig: MITMConfig{MITMCA: "x,y"}}, "go with --mitm"},
		{Config{AllowHosts: []string{"a"}, MITMConfig: MITMConfig{MITM: true, MITMCA: "only-one"}}, "CERT,KEY"},
		{Config{AllowHosts: []string{"a"}, MITMConfig: MITMConfig{MITM: true, MITMCA: leafCert + "," + leafKey}}, "is not a CA"},
		{Config{AllowHosts: []string{"a"}, MITMConfig: MITMConfig{MITM: true, MITMCAOut: exists}}, "never overwritten"},
	} {
		tc.cfg.Listen = "127.0.0.1:0"
		p, err := Start(t.Context(), tc.cfg)
		if err == nil {
			p.Close()
			t.Errorf("%+v accepted", tc.cfg.MITMConfig)
			continue
		}
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want ErrBadConfig saying %q", tc.cfg.MITMConfig, err, tc.want)
		}
	}
}

// writeLeaf writes a certificate that is not a CA, and its key.
func writeLeaf(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"a"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}
