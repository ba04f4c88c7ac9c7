package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

// quoteServer streams three events and ends.
func quoteServer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(w, "id: %d\nevent: quote\ndata: %s %d\n\n", i, r.URL.Query().Get("symbols"), i)
		w.(http.Flusher).Flush()
	}
}

// TestProxyRecordsTunnels is issue 18's tunnel check with ssestress proxy
// as a process of its own in forward mode: a stream through a CONNECT
// tunnel carrying plain HTTP is recorded; with --mitm an https stream is
// recorded, its client verifying the proxy's generated CA (written to a
// file, its key 0600 and nowhere in the session file or the output); a
// proxy without --mitm passes the https tunnel through and counts it as
// unrecorded in its summary and in the report.
func TestProxyRecordsTunnels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	plain := httptest.NewServer(http.HandlerFunc(quoteServer))
	defer plain.Close()
	secure := httptest.NewTLSServer(http.HandlerFunc(quoteServer))
	defer secure.Close()
	secureCA := filepath.Join(dir, "server.pem")
	os.WriteFile(secureCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}), 0o644)
	pu, _ := url.Parse(plain.URL)
	su, _ := url.Parse(secure.URL)

	// With --mitm.
	mitmFile := filepath.Join(dir, "mitm.db")
	p := startProcess(t, "proxy", "--listen", "127.0.0.1:0", "--name", "fwd", "--allow-host", pu.Host, "--allow-host", su.Host,
		"--record", mitmFile, "--mitm", "--upstream-ca", secureCA)
	proxyURL := p.wait(t, listeningOn, 60*time.Second)[1]
	caFile := filepath.Join(dir, "mitm-mitm-ca.pem")
	p.wait(t, regexp.MustCompile(`MITM CA certificate `+regexp.QuoteMeta(caFile)), 10*time.Second)

	// Plain HTTP inside a CONNECT tunnel, its Host header naming another
	// host: recorded, and served by the tunnel's target.
	conn, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", pu.Host, pu.Host)
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	fmt.Fprintf(conn, "GET /stream?symbols=PLAIN HTTP/1.1\r\nHost: elsewhere.example\r\nAccept: text/event-stream\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	conn.Close()
	if resp.StatusCode != 200 || strings.Count(string(body), "event: quote") != 3 {
		t.Fatalf("plain HTTP in the tunnel: %d %q", resp.StatusCode, body)
	}

	// https: the client trusts the CA the proxy wrote, and only that.
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "mitm-mitm-ca-key.pem")
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key %s: %v %v", keyFile, err, st)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	getTLS := func(proxyURL string, roots *x509.CertPool) (string, error) {
		u, _ := url.Parse(proxyURL)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u),
			TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}}
		resp, err := c.Get(secure.URL + "/stream?symbols=SECURE")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := getTLS(proxyURL, roots); err != nil || strings.Count(body, "event: quote") != 3 {
		t.Fatalf("https through --mitm: %v %q", err, body)
	}
	if _, err := getTLS(proxyURL, x509.NewCertPool()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client not trusting the CA: %v, want a certificate error", err)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("proxy exited %d:\n%s", code, p.output())
	}
	rec, err := recording.Load(mitmFile)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, s := range rec.Streams {
		if s.Status == 200 {
			got[s.Group] = len(s.Events)
		}
	}
	if got["PLAIN"] != 3 || got["SECURE"] != 3 {
		t.Errorf("recorded %v, want PLAIN and SECURE with 3 frames each", got)
	}
	key, _ := os.ReadFile(keyFile)
	raw, _ := os.ReadFile(mitmFile)
	for _, line := range strings.Split(string(key), "\n") {
		if len(line) > 20 && (strings.Contains(string(raw), line) || strings.Contains(p.output(), line)) {
			t.Fatal("the CA's private key is in the session file or the proxy's output")
		}
	}

	// Without --mitm: the https tunnel passes, unrecorded, and is counted.
	plainFile := filepath.Join(dir, "plain.db")
	q := startProcess(t, "proxy", "--listen", "127.0.0.1:0", "--name", "fwd", "--allow-host", su.Host, "--record", plainFile)
	qURL := q.wait(t, listeningOn, 60*time.Second)[1]
	serverRoots := x509.NewCertPool()
	serverRoots.AddCert(secure.Certificate())
	if body, err := getTLS(qURL, serverRoots); err != nil || strings.Count(body, "event: quote") != 3 {
		t.Fatalf("https tunnel without --mitm: %v %q", err, body)
	}
	if code := q.stop(t); code != 0 {
		t.Fatalf("proxy exited %d:\n%s", code, q.output())
	}
	if out := q.output(); !regexp.MustCompile(`tunnels not recorded\s*│\s*1 \(TLS without --mitm\): ` + regexp.QuoteMeta(su.Host) + ` ×1`).MatchString(out) {
		t.Errorf("summary does not count the unrecorded tunnel:\n%s", out)
	}
	r, err := session.Open(plainFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Count(session.BucketRecStreams); n != 0 {
		t.Errorf("%d streams recorded from a tunnel the proxy could not read", n)
	}
	r.Close()
	stdout, stderr, code := replayCLI(t, ctx, "report", plainFile)
	if code != 0 || !strings.Contains(stdout, "Tunnels passed through without recording") || !strings.Contains(stdout, su.Host) {
		t.Errorf("report: exit %d %s\n%s", code, stderr, stdout)
	}
}
