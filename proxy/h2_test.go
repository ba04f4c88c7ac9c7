package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// tlsProxy starts a proxy with a self-signed certificate in front of
// upstream and returns it with the pool that trusts it.
func tlsProxy(t *testing.T, cfg Config) (*Proxy, *x509.CertPool) {
	t.Helper()
	cfg.TLSSelfSigned = true
	p := startProxy(t, cfg)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.CertPEM()) {
		t.Fatal("the proxy's certificate does not parse")
	}
	return p, pool
}

// h2Client speaks HTTP/2 over TLS (ALPN h2) with net/http's own client, as
// the errors a browser-like Go client sees come from its bundled HTTP/2.
func h2Client(pool *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true}}
}

// h1TLSClient speaks HTTP/1.1 over TLS (it offers no h2).
func h1TLSClient(pool *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool},
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, DisableKeepAlives: true}}
}

// h2cClient speaks HTTP/2 without TLS (prior knowledge), with x/net's
// client, as the clients package's --http2 does for http URLs.
func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
}

// lines collects the proxy's log lines.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, fmt.Sprintf(format, args...))
}

func (l *lines) find(sub string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.l {
		if strings.Contains(s, sub) {
			return s
		}
	}
	return ""
}

// TestTLSListener: the TLS listener serves HTTP/1.1 and h2 (ALPN), writes
// its certificate for --ca, answers plain HTTP with 400, and a TCP fault
// still resets the real socket under TLS.
func TestTLSListener(t *testing.T) {
	srv := script(t, ticker(100, 20*time.Millisecond, time.Second))
	certOut := filepath.Join(t.TempDir(), "proxy.pem")
	w, path := newSession(t)
	p, pool := tlsProxy(t, Config{Upstream: srv.URL, Session: w, TLSCertOut: certOut,
		Faults: withFaults(t, "reset:after=400ms,match=/reset")})
	if !strings.HasPrefix(p.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s", p.URL())
	}
	if pem, err := os.ReadFile(certOut); err != nil || string(pem) != string(p.CertPEM()) {
		t.Fatalf("--tls-cert-out: %v", err)
	}
	g := readStreamWith(t, h1TLSClient(pool), p.URL()+"/ticks", 3, 5*time.Second)
	if len(g.events) != 3 || g.proto != 1 {
		t.Fatalf("HTTP/1.1 over TLS: %d events, HTTP/%d, %v", len(g.events), g.proto, g.err)
	}
	g = readStreamWith(t, h2Client(pool), p.URL()+"/ticks", 3, 5*time.Second)
	if len(g.events) != 3 || g.proto != 2 {
		t.Fatalf("h2: %d events, HTTP/%d, %v", len(g.events), g.proto, g.err)
	}
	g = readStreamWith(t, h2cClient(), "http://"+p.Addr()+"/ticks", 1, 5*time.Second)
	if g.err == nil || errclass.Classify(g.err) == "" {
		t.Fatalf("h2c to the TLS port: %+v", g)
	}
	// The reset fault acts on the TCP socket under TLS.
	g = readStreamWith(t, h1TLSClient(pool), p.URL()+"/reset", 0, 5*time.Second)
	if g.class != errclass.ECONNRESET || len(g.events) == 0 {
		t.Fatalf("reset under TLS: %d events then %s (%v)", len(g.events), g.class, g.err)
	}
	// Plain HTTP to the TLS port.
	r := rawGet(t, p.Addr(), "/ticks", 5*time.Second)
	if !strings.HasPrefix(string(r.data), "HTTP/1.0 400 Bad Request") {
		t.Fatalf("plain HTTP to the TLS port: %q", r.data)
	}
	hops, _ := readSession(t, p, w, path)
	tlsFailures := 0
	for _, h := range hops {
		if h.Hop == session.HopClient && h.Class == errclass.TLS {
			tlsFailures++
		}
	}
	if tlsFailures != 2 { // the h2c client and the plain HTTP client
		t.Errorf("%d client hops with class TLS, want 2", tlsFailures)
	}
}

// TestH2Faults: a client on HTTP/2 through the proxy sees the stream reset
// or GOAWAY the fault asks for, classified by errclass, and the session
// file records the injected fault.
func TestH2Faults(t *testing.T) {
	cases := []struct {
		name, fault, class string
		kind, action       string
		minEvents          int
		h2c                bool
	}{
		{"rst-after", "h2-rst-stream:code=CANCEL,after=300ms", "H2_RST_STREAM:CANCEL", "h2-rst-stream", ActionRSTStream, 3, false},
		{"rst-events-default-code", "h2-rst-stream:events=4", "H2_RST_STREAM:INTERNAL_ERROR", "h2-rst-stream", ActionRSTStream, 4, false},
		{"rst-h2c", "h2-rst-stream:code=0x7,events=2", "H2_RST_STREAM:REFUSED_STREAM", "h2-rst-stream", ActionRSTStream, 2, true},
		{"goaway", "h2-goaway:code=ENHANCE_YOUR_CALM,after=300ms", "H2_GOAWAY:ENHANCE_YOUR_CALM", "h2-goaway", ActionGoAway, 3, false},
		{"goaway-grace-default-code", "h2-goaway:after=200ms,grace=200ms", "H2_GOAWAY:NO_ERROR", "h2-goaway", ActionGoAway, 6, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := script(t, ticker(200, 25*time.Millisecond, time.Second))
			w, path := newSession(t)
			cfg := Config{Upstream: srv.URL, Name: "h2", Session: w, Faults: withFaults(t, c.fault)}
			var (
				p   *Proxy
				cl  *http.Client
				url string
			)
			if c.h2c {
				p, cl = startProxy(t, cfg), h2cClient()
				url = p.URL()
			} else {
				var pool *x509.CertPool
				p, pool = tlsProxy(t, cfg)
				cl, url = h2Client(pool), p.URL()
			}
			g := readStreamWith(t, cl, url+"/ticks", 0, 10*time.Second)
			if g.proto != 2 {
				t.Fatalf("the client spoke HTTP/%d", g.proto)
			}
			if g.class != c.class || len(g.events) < c.minEvents {
				t.Fatalf("client saw %d events then %q (%v), want at least %d then %s", len(g.events), g.class, g.err, c.minEvents, c.class)
			}
			if c.kind == "h2-rst-stream" && strings.Contains(c.fault, "events=") && len(g.events) != c.minEvents {
				t.Errorf("reset after %d events, want %d", len(g.events), c.minEvents)
			}
			// The firing is recorded by the fault's own goroutine just after
			// the frame it sent: the client may see the frame first.
			waitFor(t, 5*time.Second, "the firing recorded", func() bool { return p.Stats().FaultsFired >= 1 })
			hops, faults := readSession(t, p, w, path)
			if len(faults) == 0 || faults[0].FaultKind != c.kind || faults[0].Action != c.action || faults[0].Hop != session.HopClient {
				t.Fatalf("fault events %+v", faults)
			}
			client := hopRecord(t, hops, session.HopClient)
			if len(client.Faults) == 0 || client.Faults[0].FaultKind != c.kind {
				t.Errorf("client HopConn faults %+v", client.Faults)
			}
			if c.kind == "h2-goaway" && (client.ClosedBy != session.ClosedBySelf || client.Ending != session.EndingFIN) {
				t.Errorf("after GOAWAY the client hop was closed by %q how %q", client.ClosedBy, client.Ending)
			}
			t.Logf("%s: %s", faults[0].Action, faults[0].Detail)
		})
	}
}

// TestH2RSTStreamKeepsConnection: a stream reset leaves the connection and
// its other streams alone.
func TestH2RSTStreamKeepsConnection(t *testing.T) {
	srv := script(t, ticker(200, 20*time.Millisecond, time.Second))
	p, pool := tlsProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "h2-rst-stream:code=CANCEL,events=2,match=/doomed")})
	cl := h2Client(pool)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.URL()+"/lives", nil)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	g := readStreamWith(t, cl, p.URL()+"/doomed", 0, 5*time.Second)
	if g.class != "H2_RST_STREAM:CANCEL" || len(g.events) != 2 {
		t.Fatalf("doomed stream: %d events then %s", len(g.events), g.class)
	}
	seen := 0
	for seen < 5 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the other stream ended: %v", err)
		}
		if strings.HasPrefix(line, "data:") {
			seen++
		}
	}
	if st := p.Stats(); st.Conns != 1 || st.Streams != 2 {
		t.Fatalf("stats %+v: want both streams on one connection", st)
	}
}

// TestH2FaultsOnHTTP1: on an HTTP/1.1 client the HTTP/2 faults do nothing
// and say so, in the firing record and a log line.
func TestH2FaultsOnHTTP1(t *testing.T) {
	srv := script(t, ticker(100, 20*time.Millisecond, time.Second))
	w, path := newSession(t)
	var log lines
	p, pool := tlsProxy(t, Config{Upstream: srv.URL, Session: w, Logf: log.logf,
		Faults: withFaults(t, "h2-rst-stream:after=100ms", "h2-goaway:after=100ms")})
	g := readStreamWith(t, h1TLSClient(pool), p.URL()+"/ticks", 12, 5*time.Second)
	if len(g.events) != 12 || g.err != nil {
		t.Fatalf("HTTP/1.1 stream: %d events, %v", len(g.events), g.err)
	}
	waitFor(t, 5*time.Second, "both firings", func() bool { return p.Stats().FaultsFired == 2 })
	_, faults := readSession(t, p, w, path)
	kinds := map[string]bool{}
	for _, f := range faults {
		if f.Action != ActionNone || !strings.Contains(f.Detail, "HTTP/1.1") || !strings.Contains(f.Detail, "acts on HTTP/2 clients only") {
			t.Errorf("firing %+v", f)
		}
		kinds[f.FaultKind] = true
	}
	if len(faults) != 2 || !kinds["h2-rst-stream"] || !kinds["h2-goaway"] {
		t.Fatalf("fault events %+v", faults)
	}
	if l := log.find("not applied: the client speaks HTTP/1.1"); l == "" {
		t.Fatalf("no log line says the fault did not apply: %q", log.l)
	}
}

// TestH2UpstreamError: on HTTP/2, an upstream failure resets the client's
// stream, not the connection its other streams share.
func TestH2UpstreamError(t *testing.T) {
	up := resetter(t, 2)
	p, pool := tlsProxy(t, Config{Upstream: up})
	g := readStreamWith(t, h2Client(pool), p.URL()+"/x", 0, 5*time.Second)
	if g.class != "H2_RST_STREAM:INTERNAL_ERROR" || len(g.events) != 2 {
		t.Fatalf("client saw %d events then %s (%v)", len(g.events), g.class, g.err)
	}
}

// TestH2StreamHeaderNotForwarded: the wire's stream id field never reaches
// the upstream, and a client cannot forge it over HTTP/1.1.
func TestH2StreamHeaderNotForwarded(t *testing.T) {
	seen := make(chan string, 4)
	up := scriptHandler(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get(h2StreamHeader) + "|" + r.Header.Get("X-Other")
		io.WriteString(w, "ok")
	})
	p, pool := tlsProxy(t, Config{Upstream: up})
	for _, c := range []*http.Client{h2Client(pool), h1TLSClient(pool)} {
		req, _ := http.NewRequest("GET", p.URL()+"/", nil)
		req.Header.Set(h2StreamHeader, "99")
		req.Header.Set("X-Other", "kept")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := <-seen; got != "|kept" {
			t.Fatalf("upstream saw %q", got)
		}
	}
}

// TestHTTPSUpstream: TLS toward an https upstream, trusted with
// UpstreamCA or not verified with UpstreamInsecure; an unknown authority
// is a 502 with class TLS on the upstream hop; TCP faults on the upstream
// hop act under TLS.
func TestHTTPSUpstream(t *testing.T) {
	cert, certPEM, err := tlsutil.SelfSigned(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := feed.StartTLS("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}}, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	caFile := filepath.Join(t.TempDir(), "server.pem")
	if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{{UpstreamCA: caFile}, {UpstreamInsecure: true}} {
		cfg.Upstream = srv.URL
		p := startProxy(t, cfg)
		if g := readStream(t, p.URL()+"/stream?symbols=AAPL", 3, 10*time.Second); len(g.events) != 3 {
			t.Fatalf("%+v: %d events, %v", cfg, len(g.events), g.err)
		}
	}
	w, path := newSession(t)
	p := startProxy(t, Config{Upstream: srv.URL, Session: w})
	if g := readStream(t, p.URL()+"/stream", 1, 10*time.Second); g.class != "HTTP_502" {
		t.Fatalf("an untrusted upstream certificate: %s", g.class)
	}
	hops, _ := readSession(t, p, w, path)
	if up := hopRecord(t, hops, session.HopUpstream); up.Class != errclass.TLS {
		t.Fatalf("upstream hop %+v", up)
	}
	p = startProxy(t, Config{Upstream: srv.URL, UpstreamCA: caFile, Faults: withFaults(t, "reset:hop=upstream,events=2")})
	if g := readStream(t, p.URL()+"/stream?symbols=AAPL", 0, 10*time.Second); g.class != errclass.ECONNRESET || len(g.events) != 2 {
		t.Fatalf("reset under TLS on the upstream hop: %d events then %s", len(g.events), g.class)
	}
	if _, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", Upstream: srv.URL, UpstreamCA: caFile, UpstreamInsecure: true}); err == nil {
		t.Fatal("UpstreamCA with UpstreamInsecure started")
	}
}

func TestH2FaultSpecs(t *testing.T) {
	for in, want := range map[string]string{
		"h2-rst-stream":                        "h2-rst-stream:hop=client",
		"h2-rst-stream:code=cancel,events=3":   "h2-rst-stream:hop=client,code=cancel,events=3",
		"h2-goaway:code=0xb,grace=1s,after=5s": "h2-goaway:hop=client,code=0xb,grace=1s,after=5s",
	} {
		spec, err := ParseFault(in)
		if err != nil || spec.Spec != want {
			t.Errorf("ParseFault(%q) = %q, %v; want %q", in, spec.Spec, err, want)
		}
	}
	for in, msg := range map[string]string{
		"h2-rst-stream:code=BOGUS":       `code "BOGUS" is not an HTTP/2 error code`,
		"h2-rst-stream:code=0x100000000": `is not an HTTP/2 error code`,
		"h2-goaway:events=3":             `unknown key "events" for h2-goaway`,
		"h2-rst-stream:hop=upstream":     "h2-rst-stream acts on hop client only",
		"h2-goaway:grace=soon":           "grace:",
	} {
		if _, err := ParseFault(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseFault(%q): %v, want %q", in, err, msg)
		}
	}
	for v, want := range map[string]http2.ErrCode{"CANCEL": 8, "cancel": 8, "internal": 2, "NO_ERROR": 0, "8": 8, "0x1f": 0x1f} {
		if got, err := parseH2Code(v); err != nil || got != want {
			t.Errorf("parseH2Code(%q) = %v, %v", v, got, err)
		}
	}
}
