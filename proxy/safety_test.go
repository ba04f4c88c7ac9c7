package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
)

// TestListenDefaultsToLoopback: a listen address without a host binds
// loopback (the proxy and its API); a host given is bound as given.
func TestListenDefaultsToLoopback(t *testing.T) {
	for _, c := range []struct{ in, def, want string }{
		{"", "127.0.0.1:8080", "127.0.0.1:8080"},
		{":8080", "", "127.0.0.1:8080"},
		{"8080", "", "127.0.0.1:8080"},
		{" :0 ", "", "127.0.0.1:0"},
		{"0.0.0.0:8080", "", "0.0.0.0:8080"},
		{"[::]:8080", "", "[::]:8080"},
		{"localhost:8080", "", "localhost:8080"},
		{"", "", ""},
	} {
		if got := LoopbackDefault(c.in, c.def); got != c.want {
			t.Errorf("LoopbackDefault(%q, %q) = %q, want %q", c.in, c.def, got, c.want)
		}
	}
	p, err := Start(context.Background(), Config{Listen: ":0", API: ":0", Upstream: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatalf("a bare port for the API needs no token, it binds loopback: %v", err)
	}
	defer p.Close()
	for what, addr := range map[string]string{"listener": p.Addr(), "API": p.APIAddr()} {
		if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
			t.Errorf("the %s bound %s, want 127.0.0.1", what, addr)
		}
	}
}

// TestAPIToken: every wrong or missing token is refused the same way. The
// comparison is of SHA-256 digests with crypto/subtle, so it takes the
// same time whatever the token's length or content (not measured here:
// timing on a shared machine proves nothing).
func TestAPIToken(t *testing.T) {
	p := startProxy(t, Config{Upstream: "http://127.0.0.1:1", API: "127.0.0.1:0", APIToken: "s3cret-token"})
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer s", "Bearer s3cret-toke", "Bearer s3cret-token2",
		"Bearer S3CRET-TOKEN", "Basic s3cret-token", "s3cret-token", "Bearer  s3cret-token"} {
		req, _ := http.NewRequest("GET", "http://"+p.APIAddr()+"/stats", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(string(body), "missing or wrong API token") {
			t.Errorf("Authorization %q: %d %s", auth, resp.StatusCode, body)
		}
	}
	if code, _ := api(t, p, "s3cret-token", "GET", "/stats", ""); code != 200 {
		t.Fatalf("the right token: %d", code)
	}
}

// TestForwardModeAllowHost: forward mode serves exactly the --allow-host
// hosts, and CONNECT only to them.
func TestForwardModeAllowHost(t *testing.T) {
	p := &Proxy{allow: []string{"api.example", "127.0.0.1:8443", "[::1]"}}
	for host, want := range map[string]bool{
		"api.example": true, "api.example:443": true, "API.Example:80": true,
		"127.0.0.1:8443": true, "127.0.0.1:8444": false, "127.0.0.1": false,
		"[::1]:9000": true, "evil.example": false, "api.example.evil": false, "sub.api.example": false,
		"": false,
	} {
		if got := p.allowed(host); got != want {
			t.Errorf("allowed(%q) = %v, want %v", host, got, want)
		}
	}

	// A reverse-mode proxy with no --allow-host refuses CONNECT and
	// absolute-form requests: it is never an open proxy.
	srv := startFeedT(t)
	su, _ := url.Parse(srv)
	rev := startProxy(t, Config{Upstream: srv})
	if code := connect(t, rev.Addr(), su.Host); code != http.StatusForbidden {
		t.Errorf("CONNECT through a reverse proxy: %d", code)
	}
	pu, _ := url.Parse(rev.URL())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get(srv + "/ticks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("an absolute-form request through a reverse proxy: %d", resp.StatusCode)
	}

	// CONNECT to an allowed host tunnels.
	fwd := startProxy(t, Config{AllowHosts: []string{su.Host}})
	conn, err := net.Dial("tcp", fwd.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", su.Host, su.Host)
	br := bufio.NewReader(conn)
	cr, err := http.ReadResponse(br, nil)
	if err != nil || cr.StatusCode != 200 {
		t.Fatalf("CONNECT to an allowed host: %v %v", cr, err)
	}
	fmt.Fprintf(conn, "GET /ticks HTTP/1.1\r\nHost: %s\r\n\r\n", su.Host)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET through the tunnel: %v %v", resp, err)
	}
}

// connect sends CONNECT host through the proxy at addr and returns the
// status.
func connect(t *testing.T, addr, host string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", host, host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// TestRecordingRedactedByDefault: credentials sent through a recording
// proxy appear nowhere in the session file.
func TestRecordingRedactedByDefault(t *testing.T) {
	srv := script(t, ticker(3, 10*time.Millisecond, 0))
	w, path := newSession(t)
	rec := recording.New(w, "p", recording.Options{})
	p := startProxy(t, Config{Upstream: srv.URL, Name: "p", Session: w, Recorder: rec})
	req, _ := http.NewRequest("GET", p.URL()+"/ticks", nil)
	req.Header.Set("Authorization", "Bearer tok-SECRET-1")
	req.Header.Set("Cookie", "session=cookie-SECRET-2")
	req.Header.Set("Proxy-Authorization", "Basic cHJveHktU0VDUkVULTM=")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"tok-SECRET-1", "cookie-SECRET-2", "cHJveHktU0VDUkVULTM="} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the session file holds %q", secret)
		}
	}
	if h := oneRecordedStream(t, path).Header; h.Get("Authorization") != recording.RedactedValue || h.Get("Cookie") != recording.RedactedValue {
		t.Fatalf("recorded headers %v", h)
	}
}
