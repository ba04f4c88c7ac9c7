package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// toxiproxyCLI finds toxiproxy-cli 2.5.0: $TOXIPROXY_CLI (what .ci/run
// installs), else toxiproxy-cli on PATH.
func toxiproxyCLI(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TOXIPROXY_CLI"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("TOXIPROXY_CLI=%s: %v", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("toxiproxy-cli"); err == nil {
		return p
	}
	t.Skip("toxiproxy-cli not found: set TOXIPROXY_CLI to the binary of `GOBIN=DIR go install github.com/Shopify/toxiproxy/v2/cmd/cli@v2.5.0` (.ci/run does)")
	return ""
}

// sseResult is what one SSE stream read through a proxy gave.
type sseResult struct {
	events int
	first  time.Duration // from the request to the first event
	class  string        // what ended it ("" when the test stopped it)
	end    time.Duration
}

// readSSE reads a stream until it ends, max events arrive, or d passes.
func readSSE(t *testing.T, url string, max int, d time.Duration) sseResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	var res sseResult
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		res.class, res.end = errclass.Classify(err), time.Since(start)
		return res
	}
	defer resp.Body.Close()
	dec := sse.NewDecoder(resp.Body, 0)
	for res.events < max {
		f, err := dec.Next()
		if err != nil {
			if ctx.Err() == nil {
				res.class = errclass.Classify(err)
			}
			res.end = time.Since(start)
			return res
		}
		if f.Kind == sse.KindEvent {
			if res.events == 0 {
				res.first = time.Since(start)
			}
			res.events++
		}
	}
	return res
}

// TestToxiproxyCLI drives a real ssestress proxy process with toxiproxy-cli
// 2.5.0: list, create a proxy, add a reset_peer toxic and see a real SSE
// stream through it reset, remove it, add a latency toxic and see the
// events late, update it, toggle the proxy off and on, delete it. The
// proxy added at run time writes its records into the process's session
// file under its own name.
func TestToxiproxyCLI(t *testing.T) {
	cli := toxiproxyCLI(t)
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 1200, Max: 1200}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	dir := t.TempDir()
	out := filepath.Join(dir, "proxy.db")
	p := startProcess(t, "proxy", "--name", "edge", "--upstream", srv.URL, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
		"--http", "127.0.0.1:0", "--out", out)
	api := p.wait(t, regexp.MustCompile(`control API on (http://127\.0\.0\.1:\d+)`), 60*time.Second)[1]
	live := p.wait(t, regexp.MustCompile(`live view on (http://127\.0\.0\.1:\d+)/metrics`), time.Second)[1]
	toxi := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, append([]string{"-h", api}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("toxiproxy-cli %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}

	if got := toxi("list"); !strings.Contains(got, "edge\t"+strings.TrimPrefix(p.wait(t, listeningOn, time.Second)[1], "http://")) ||
		!strings.Contains(got, srv.Addr) || !strings.Contains(got, "enabled") {
		t.Fatalf("list:\n%s", got)
	}
	if got := toxi("create", "-l", "127.0.0.1:0", "-u", srv.Addr, "feed2"); !strings.Contains(got, "Created new proxy feed2") {
		t.Fatalf("create:\n%s", got)
	}
	m := regexp.MustCompile(`(?m)^feed2\t(127\.0\.0\.1:\d+)\t` + regexp.QuoteMeta(srv.Addr) + `\tenabled\t0$`).FindStringSubmatch(toxi("list"))
	if m == nil {
		t.Fatalf("list after create:\n%s", toxi("list"))
	}
	feed2 := m[1]
	stream := "http://" + feed2 + "/stream?symbols=AAPL"
	if r := readSSE(t, stream, 3, 10*time.Second); r.events != 3 {
		t.Fatalf("through feed2: %+v", r)
	}

	// The live view counts the proxy added at run time.
	resp, err := http.Get(live + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^ssestress_proxy_requests_total\{proxy="feed2"\} [1-9]`).Match(metrics) {
		t.Fatalf("/metrics does not count feed2's requests:\n%s", metrics)
	}

	if got := toxi("toxic", "add", "-t", "reset_peer", "-a", "timeout=300", "-n", "rp", "feed2"); !strings.Contains(got, "Added downstream reset_peer toxic 'rp' on proxy 'feed2'") {
		t.Fatalf("toxic add reset_peer:\n%s", got)
	}
	if got := toxi("inspect", "feed2"); !strings.Contains(got, "rp\ttype=reset_peer\tstream=downstream\ttoxicity=1.00\tattributes=[\ttimeout=300\t]") {
		t.Fatalf("inspect:\n%s", got)
	}
	r := readSSE(t, stream, 1<<30, 10*time.Second)
	if r.class != errclass.ECONNRESET || r.events == 0 || r.end < 280*time.Millisecond || r.end > 3*time.Second {
		t.Fatalf("through reset_peer timeout=300: %+v, want ECONNRESET 300ms after the request (tolerance -20ms, +2.7s) and some events", r)
	}
	if got := toxi("toxic", "remove", "-n", "rp", "feed2"); !strings.Contains(got, "Removed toxic 'rp' on proxy 'feed2'") {
		t.Fatalf("toxic remove:\n%s", got)
	}
	if r := readSSE(t, stream, 20, 10*time.Second); r.events != 20 || r.class != "" {
		t.Fatalf("after removing reset_peer: %+v", r)
	}

	toxi("toxic", "add", "-t", "latency", "-a", "latency=400", "-n", "lat", "feed2")
	if r := readSSE(t, stream, 2, 10*time.Second); r.events != 2 || r.first < 380*time.Millisecond {
		t.Fatalf("through latency=400: %+v, want the first event after 400ms", r)
	}
	toxi("toxic", "update", "-n", "lat", "-a", "jitter=50", "feed2")
	if got := toxi("inspect", "feed2"); !strings.Contains(got, "lat\ttype=latency\tstream=downstream\ttoxicity=1.00\tattributes=[\tjitter=50\tlatency=400\t]") {
		t.Fatalf("inspect after update:\n%s", got)
	}
	toxi("toxic", "delete", "-n", "lat", "feed2")
	if r := readSSE(t, stream, 2, 10*time.Second); r.events != 2 || r.first >= 400*time.Millisecond {
		t.Fatalf("after removing latency: %+v, want the first event before the 400ms latency", r)
	}

	if got := toxi("toggle", "feed2"); !strings.Contains(got, "is now disabled") {
		t.Fatalf("toggle:\n%s", got)
	}
	if c, err := net.DialTimeout("tcp", feed2, time.Second); err == nil {
		c.Close()
		t.Fatal("a disabled proxy accepted a connection")
	}
	toxi("toggle", "feed2")
	if r := readSSE(t, stream, 2, 10*time.Second); r.events != 2 {
		t.Fatalf("enabled again: %+v", r)
	}
	// Toxiproxy's upstream stream is the upstream hop of the first proxy.
	if got := toxi("toxic", "add", "-t", "slow_close", "-u", "-a", "delay=100", "-n", "sc", "edge"); !strings.Contains(got, "Added upstream slow_close toxic 'sc' on proxy 'edge'") {
		t.Fatalf("toxic add -u:\n%s", got)
	}
	if got := toxi("delete", "feed2"); !strings.Contains(got, "Deleted proxy feed2") {
		t.Fatalf("delete:\n%s", got)
	}
	if got := toxi("list"); strings.Contains(got, "feed2") || !strings.Contains(got, "edge") {
		t.Fatalf("list after delete:\n%s", got)
	}

	if code := p.stop(t); code != exitOK {
		t.Fatalf("proxy exited %d:\n%s", code, p.output())
	}
	rd, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	infos, err := session.All[session.ProxyInfo](rd, session.BucketProxies)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]session.ProxyInfo{}
	for _, pi := range infos {
		byName[pi.Name] = pi
	}
	if f2, ok := byName["feed2"]; !ok || f2.Connections < 6 || f2.Upstream != srv.Addr || f2.Stopped.IsZero() {
		t.Fatalf("feed2 in the session file: %+v (all: %+v)", f2, infos)
	}
	faults, err := session.All[session.FaultEvent](rd, session.BucketFaults)
	if err != nil {
		t.Fatal(err)
	}
	var resets int
	for _, f := range faults {
		if f.Proxy == "feed2" && f.FaultName == "rp" && f.Ending == session.EndingRST {
			resets++
		}
	}
	if resets != 1 {
		t.Fatalf("feed2's reset_peer firings in the file: %d, want 1 (%+v)", resets, faults)
	}
}
