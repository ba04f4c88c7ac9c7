package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// proxyTestBuffer is a bytes.Buffer safe for a writer and a reader.
type proxyTestBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *proxyTestBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *proxyTestBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestProxyCommand runs ssestress proxy against the embedded server, sends
// a stream through it until the fault resets it, stops it like SIGINT
// does, and reads its session file.
func TestProxyCommand(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	dir := t.TempDir()
	out := filepath.Join(dir, "p.db")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr proxyTestBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", srv.URL, "--name", "p1",
			"--fault", "reset:hop=upstream,events=3", "--api", "127.0.0.1:0", "--record", out}, &stdout, &stderr)
	}()
	re := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == ""; {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no listening line: %q %q", stdout.String(), stderr.String())
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}).Get(url + "/stream?symbols=AAPL")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	events := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") {
			events++
		}
	}
	resp.Body.Close()
	if events != 3 || sc.Err() == nil || !strings.Contains(sc.Err().Error(), "connection reset") {
		t.Fatalf("read %d events then %v, want 3 then a reset", events, sc.Err())
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not stop")
	}
	for _, want := range []string{"fault reset:hop=upstream,direction=down,events=3", "control API on http://127.0.0.1:",
		"recording streams", "stopped: 1 client connections, 1 requests, 1 faults fired; session file " + out} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "fault reset:hop=upstream") {
		t.Errorf("stderr lacks the firing: %q", stderr.String())
	}
	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var info session.RunInfo
	if ok, err := r.Meta(session.MetaRun, &info); !ok || err != nil || info.Command != "proxy" || info.EndedAt.IsZero() {
		t.Fatalf("run info %+v %v", info, err)
	}
	if r.Count(session.BucketHopConns) != 2 || r.Count(session.BucketFaults) != 1 || r.Count(session.BucketTopology) != 2 || r.Count(session.BucketRecStreams) != 1 || r.Count(session.BucketProxies) != 1 {
		t.Fatalf("hop_conns %d faults %d topology %d rec_streams %d", r.Count(session.BucketHopConns),
			r.Count(session.BucketFaults), r.Count(session.BucketTopology), r.Count(session.BucketRecStreams))
	}
	eps, _ := session.All[session.Endpoint](r, session.BucketTopology)
	if eps[0].Role != session.RoleProxy || eps[0].Name != "p1" || eps[0].Hop != session.HopClient || eps[1].Role != session.RoleTarget || eps[1].URL != srv.URL {
		t.Fatalf("topology %+v", eps)
	}
}

// TestProxyCommandErrors: each bad command line gives one line naming what
// is wrong, exit code 2, and no session file.
func TestProxyCommandErrors(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "bad.json")
	os.WriteFile(cfgFile, []byte("{\n  \"fault\": [\"reset\", \"lag\"]\n}\n"), 0o644)
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"proxy"}, "ssestress: proxy: give --upstream URL (reverse mode) or --allow-host HOST (forward mode)\n"},
		{[]string{"proxy", "--upstream", "127.0.0.1:8090"}, `ssestress: proxy: --upstream: bad proxy config: upstream "127.0.0.1:8090" must be an http:// or https:// URL with a host` + "\n"},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--fault", "latency:dealy=5ms"},
			`ssestress: proxy: --fault bad fault "latency:dealy=5ms": unknown key "dealy" for latency (keys: delay, jitter, name, hop, direction, toxicity, match, after)` + "\n"},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--api", "0.0.0.0:0"},
			"ssestress: proxy: control API address 0.0.0.0:0 is not a loopback address: give --api-token (the API then requires it, compared in constant time) or bind the API to 127.0.0.1\n"},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--on-upstream-error", "close", "--listen", "127.0.0.1:0"},
			`ssestress: proxy: bad proxy config: on-upstream-error "close" must be reset, eof or abort` + "\n"},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--time-scale", "0"}, "ssestress: proxy: --time-scale 0 must be positive\n"},
		{[]string{"proxy", "--config", cfgFile}, "ssestress: proxy: --config " + cfgFile + `:2: fault 2: bad fault "lag": unknown fault kind "lag"`},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--out", "a.db", "--record", "b.db"}, "ssestress: proxy: --out a.db and --record b.db name two files"},
		{[]string{"proxy", "extra"}, `ssestress: proxy: unexpected argument "extra"`},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--tls-self-signed", "--tls-cert", "c.pem"},
			"ssestress: proxy: --tls-self-signed and --tls-cert exclude each other: one generates the certificate, the other loads one: give one or the other"},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--tls-cert", "c.pem"},
			"ssestress: proxy: --tls-cert needs --tls-key"},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--tls-cert-out", "c.pem"},
			"ssestress: proxy: bad proxy config: --tls-cert-out writes the certificate of --tls-self-signed: give that too"},
		{[]string{"proxy", "--upstream", "https://127.0.0.1:1", "--upstream-ca", "c.pem", "--upstream-insecure"},
			"ssestress: proxy: --upstream-ca trusts a certificate, --upstream-insecure trusts any: give one or the other"},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--upstream-header-timeout", "-1s"},
			`ssestress: proxy: invalid value "-1s" for flag -upstream-header-timeout: invalid duration "-1s": negative`},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--max-file-size", "lots"},
			`ssestress: proxy: invalid value "lots" for flag -max-file-size: invalid size "lots"`},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--fault", "h2-goaway:hop=upstream"},
			`ssestress: proxy: --fault bad fault "h2-goaway:hop=upstream": h2-goaway acts on hop client only`},
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases = append(cases,
		struct {
			args []string
			msg  string
		}{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--http", "127.0.0.1:http:x"}, `ssestress: proxy: --http "127.0.0.1:http:x": use HOST:PORT`},
		struct {
			args []string
			msg  string
		}{[]string{"proxy", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--http", busy.Addr().String()},
			"ssestress: proxy: --http: listen tcp " + busy.Addr().String() + ": bind: address already in use"},
	)
	wd, _ := os.Getwd()
	os.Chdir(dir)
	defer os.Chdir(wd)
	for _, c := range cases {
		var stdout, stderr proxyTestBuffer
		err := run(context.Background(), c.args, &stdout, &stderr)
		code := exitCode(err, &stderr)
		if code != 2 || !strings.HasPrefix(stderr.String(), c.msg) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", c.args, code, stderr.String(), c.msg)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.db")); len(left) != 0 {
		t.Errorf("session files left behind: %v", left)
	}
}

func TestProxyHelp(t *testing.T) {
	var stdout, stderr proxyTestBuffer
	err := run(context.Background(), []string{"proxy", "--help"}, &stdout, &stderr)
	if exitCode(err, &stderr) != 0 {
		t.Fatal(err)
	}
	for _, want := range []string{"-on-upstream-error", "idle-timeout", "preset:aws-alb", "Examples:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// startProxyCommand runs ssestress proxy with args until the returned stop
// is called; it returns the proxy's URL, its output and stop, which returns
// run's error.
func startProxyCommand(t *testing.T, args ...string) (string, *proxyTestBuffer, *proxyTestBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr proxyTestBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"proxy", "--listen", "127.0.0.1:0"}, args...), &stdout, &stderr)
	}()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("proxy did not stop")
			return nil
		}
	}
	re := regexp.MustCompile(`listening on (https?://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			return m[1], &stdout, &stderr, stop
		}
		select {
		case err := <-done:
			t.Fatalf("proxy ended: %v: %q %q", err, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no listening line: %q %q", stdout.String(), stderr.String())
		}
	}
}

// countEvents reads url with c until n events came, or the stream ends.
func countEvents(t *testing.T, c *http.Client, url string, n int) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	events := 0
	for events < n && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") {
			events++
		}
	}
	return events, sc.Err()
}

// TestProxyCommandTLS: --tls-self-signed with --tls-cert-out serves h2 to
// a client that trusts the written certificate; an h2-rst-stream fault
// reaches it as H2_RST_STREAM:CANCEL; and the session file of the proxy
// has its summary, so inspect shows a finished run.
func TestProxyCommandTLS(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	dir := t.TempDir()
	out, pem := filepath.Join(dir, "p.db"), filepath.Join(dir, "proxy.pem")
	url, stdout, stderr, stop := startProxyCommand(t, "--upstream", srv.URL, "--tls-self-signed", "--tls-cert-out", pem,
		"--fault", "h2-rst-stream:code=CANCEL,events=5", "--out", out)
	if !strings.HasPrefix(url, "https://") || !strings.Contains(stdout.String(), "certificate written to "+pem) {
		t.Fatalf("stdout %q", stdout.String())
	}
	pool, err := tlsutil.CertPool(pem)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	n, err := countEvents(t, c, url+"/stream?symbols=AAPL", 100)
	if n != 5 || errclass.Classify(err) != "H2_RST_STREAM:CANCEL" {
		t.Fatalf("h2 client: %d events then %v (%s)", n, err, errclass.Classify(err))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "h2-rst-stream") || !strings.Contains(stdout.String(), "client connections     │ 1") {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	var insp proxyTestBuffer
	if err := run(context.Background(), []string{"inspect", out}, &insp, &insp); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(insp.String(), "did not finish") || !strings.Contains(insp.String(), "proxy") ||
		!strings.Contains(insp.String(), "1 client connections") {
		t.Fatalf("inspect:\n%s", insp.String())
	}
	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var sum session.Summary
	if ok, err := r.Meta(session.MetaSummary, &sum); !ok || err != nil {
		t.Fatalf("no summary: %v", err)
	}
	if sum.Clients != 0 || sum.ActiveMax != 1 || sum.Events != 5 || sum.DurationS <= 0 || sum.SessionFile != out {
		t.Fatalf("summary %+v", sum)
	}
	proxies, _ := session.All[session.ProxyInfo](r, session.BucketProxies)
	if len(proxies) != 1 || proxies[0].Connections != 1 || proxies[0].Events != 5 || proxies[0].Stopped.IsZero() || proxies[0].Keepalive.D() != 15*time.Second {
		t.Fatalf("proxy info %+v", proxies)
	}
	faults, _ := session.All[session.FaultEvent](r, session.BucketFaults)
	if len(faults) != 1 || faults[0].FaultKind != "h2-rst-stream" || faults[0].Action != "rst-stream" {
		t.Fatalf("fault events %+v", faults)
	}
}

// TestProxyMaxFileSize: past --max-file-size the proxy says so in one line
// and goes on proxying; the file stays within the size, opens, and holds
// the proxy's end and summary.
func TestProxyMaxFileSize(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 60000, Max: 60000}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	out := filepath.Join(t.TempDir(), "p.db")
	const limit = 256 << 10
	url, _, stderr, stop := startProxyCommand(t, "--upstream", srv.URL, "--record", out, "--max-file-size", "256KiB", "--quiet")
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	// Recorded events fill the file.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "max-file-size"); {
		if time.Now().After(deadline) {
			t.Fatalf("the file never filled: %q", stderr.String())
		}
		if n, err := countEvents(t, c, url+"/stream?symbols=AAPL,MSFT,GOOG", 2000); n != 2000 {
			t.Fatalf("stream: %d events, %v", n, err)
		}
	}
	// Proxying goes on.
	if n, err := countEvents(t, c, url+"/stream?symbols=AAPL", 50); n != 50 {
		t.Fatalf("after the file filled: %d events, %v", n, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(stderr.String(), "\n"); got != 1 || !strings.Contains(stderr.String(), "reached --max-file-size (262144 bytes): recording stopped") {
		t.Fatalf("stderr: want one line about the limit, got %q", stderr.String())
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > limit {
		t.Fatalf("file is %d bytes, over the %d limit", fi.Size(), limit)
	}
	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	// The proxy's end and its summary landed in the reserve.
	rep, err := inspectFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || rep.Summary == nil || rep.Summary.RecordsDropped == 0 || len(rep.Proxies) != 1 {
		t.Fatalf("file lost its end: complete %v, summary %+v, proxies %d", rep.Complete, rep.Summary, len(rep.Proxies))
	}
}
