package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/metrics/metricstest"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// TestLiveMetrics scrapes the /metrics of a real run (through its
// in-process proxy, with a fault that resets the upstream hop, and
// --server-pid) and of a real standalone proxy (an upstream that resets
// its streams, a fault that resets some clients): both pass Prometheus'
// reference parser and promlint, carry the standard process and Go
// series, the histograms of age and idle time at each error and the
// counters of faults fired and resets by hop and sender, and agree with
// the session files. Then every query of the Grafana dashboard is checked
// against the two scrapes.
func TestLiveMetrics(t *testing.T) {
	var runFams, h2Fams, proxyFams map[string]*dto.MetricFamily
	t.Run("run", func(t *testing.T) { runFams = scrapeRun(t) })
	t.Run("run-http2", func(t *testing.T) { h2Fams = scrapeRunHTTP2(t) })
	t.Run("proxy", func(t *testing.T) { proxyFams = scrapeProxy(t) })
	t.Run("dashboard", func(t *testing.T) {
		if runFams == nil || h2Fams == nil || proxyFams == nil {
			t.Skip("no scrapes to check the dashboard against")
		}
		checkDashboard(t, "../../deploy/grafana/ssestress.json", runFams, h2Fams, proxyFams)
	})
}

// standardSeries are what stock Go and process dashboards read.
var standardSeries = []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
	"process_start_time_seconds", "go_goroutines", "go_threads", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds"}

func checkStandard(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	for _, name := range standardSeries {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	if fams["process_cpu_seconds_total"].GetType() != dto.MetricType_COUNTER {
		t.Error("process_cpu_seconds_total is not a counter")
	}
	for name := range fams {
		if strings.HasPrefix(name, "ssestress_process_") || name == "ssestress_go_goroutines" || name == "ssestress_uptime_seconds" {
			t.Errorf("%s: the old custom series is still there", name)
		}
	}
}

// runAndScrape runs ssestress run with args and --http, and scrapes its
// /metrics once the session file is closed (the counters final), before
// the view stops. The scrape has the standard series.
func runAndScrape(t *testing.T, args ...string) map[string]*dto.MetricFamily {
	t.Helper()
	var stdout, stderr runTestBuffer
	o, err := parseRunArgs(append(args, "--http", "127.0.0.1:0", "--json"), &stdout)
	if err != nil {
		t.Fatal(err)
	}
	var fams map[string]*dto.MetricFamily
	o.afterRun = func(lv *liveView) { fams = metricstest.Scrape(t, lv.URL+"/metrics") }
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	if err := o.execute(ctx, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if fams == nil {
		t.Fatal("no scrape at the end of the run")
	}
	checkStandard(t, fams)
	return fams
}

func scrapeRun(t *testing.T) map[string]*dto.MetricFamily {
	// The embedded server runs in this process: it is the server's pid,
	// with TCP sockets to count.
	pid := fmt.Sprint(os.Getpid())
	out := filepath.Join(t.TempDir(), "run.db")
	fams := runAndScrape(t, "--connections=4", "--rate=50", "--duration=3s", "--event-rate=3000",
		"--fault", "reset:hop=upstream,after=300ms", "--monitor-interval=200ms", "--server-pid", pid, "--out="+out)

	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	errs, _ := session.All[session.ErrorRecord](r, session.BucketErrors)
	hops, _ := session.All[session.HopConn](r, session.BucketHopConns)
	faults, _ := session.All[session.FaultEvent](r, session.BucketFaults)
	byClass := map[string]float64{}
	var clientResets float64
	for _, e := range errs {
		byClass[e.Class]++
		if attribution.IsReset(e.Class) {
			clientResets++
		}
	}
	proxySent := map[string]float64{}
	for _, h := range hops {
		if h.Ending == session.EndingRST && h.ClosedBy == session.ClosedBySelf {
			proxySent[h.Hop]++
		}
	}
	if byClass[errclass.ECONNRESET] == 0 || len(faults) == 0 {
		t.Fatalf("the fault reset nothing: errors %v, %d firings", byClass, len(faults))
	}
	hop := "run-proxy/client"
	for class, n := range byClass {
		for _, name := range []string{"ssestress_client_errors_total", "ssestress_client_error_age_seconds", "ssestress_client_error_idle_seconds"} {
			if v, _ := metricValue(fams, name, "class", class, "hop", hop); v != n {
				t.Errorf("%s{class=%s,hop=%s} = %v, the session file has %v errors", name, class, hop, v, n)
			}
		}
	}
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ssestress_proxy_faults_fired_total", []string{"fault_kind", "reset", "hop", "run-proxy/upstream"}, float64(len(faults))},
		{"ssestress_resets_total", []string{"hop", "run-proxy/upstream", "sender", "proxy"}, proxySent[session.HopUpstream]},
		{"ssestress_resets_total", []string{"hop", "run-proxy/client", "sender", "proxy"}, proxySent[session.HopClient]},
		{"ssestress_proxy_connections_total", []string{"hop", "run-proxy/client"}, float64(countHops(hops, session.HopClient))},
		{"ssestress_server_up", []string{"pid", pid}, 1},
	}
	for _, c := range checks {
		if v, ok := metricValue(fams, c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), the session file says %v", c.name, c.labels, v, ok, c.want)
		}
	}
	// The clients' resets are the proxy's, counted once, on its client hop.
	if v, _ := metricValue(fams, "ssestress_resets_total", "hop", hop); v < clientResets {
		t.Errorf("resets on %s: %v, fewer than the %v the clients saw", hop, v, clientResets)
	}
	if _, ok := metricValue(fams, "ssestress_server_process_resident_memory_bytes", "pid", pid); !ok {
		t.Error("no server readings")
	}
	if v, _ := metricValue(fams, "ssestress_server_tcp_sockets", "pid", pid, "state", "LISTEN"); v == 0 {
		t.Error("the server's listening sockets are not counted")
	}
	return fams
}

// scrapeRunHTTP2 scrapes a run of HTTP/2 clients on the embedded server:
// their shared connections, and their link ("direct").
func scrapeRunHTTP2(t *testing.T) map[string]*dto.MetricFamily {
	fams := runAndScrape(t, "--http2", "--connections=3", "--rate=50", "--duration=1s", "--event-rate=3000",
		"--out="+filepath.Join(t.TempDir(), "h2.db"))
	if _, ok := metricValue(fams, "ssestress_http2_connections"); !ok {
		t.Error("no ssestress_http2_connections")
	}
	if v, _ := metricValue(fams, "ssestress_events_total"); v == 0 {
		t.Error("no events")
	}
	if fams["ssestress_proxy_connections_total"] != nil {
		t.Error("proxy series without a proxy")
	}
	return fams
}

func countHops(hops []session.HopConn, hop string) int {
	n := 0
	for _, h := range hops {
		if h.Hop == hop {
			n++
		}
	}
	return n
}

// resettingUpstream answers every request with an SSE head and two events,
// then resets the connection.
func resettingUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
				for i := 1; i <= 2; i++ {
					ev := fmt.Sprintf("id: %d\ndata: %d\n\n", i, i)
					fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
					time.Sleep(20 * time.Millisecond)
				}
				c.(*net.TCPConn).SetLinger(0)
			})
		}
	})
	return "http://" + ln.Addr().String()
}

// streamOnce reads one stream to its end and returns its error class.
func streamOnce(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := (&http.Transport{Proxy: nil, DisableKeepAlives: true}).RoundTrip(req)
	if err != nil {
		return errclass.Classify(err)
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return errclass.Classify(err)
}

func scrapeProxy(t *testing.T) map[string]*dto.MetricFamily {
	out := filepath.Join(t.TempDir(), "proxy.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var stdout, stderr runTestBuffer
	done := make(chan int, 1)
	go func() {
		done <- exitCode(run(pctx, []string{"proxy", "--upstream", resettingUpstream(t), "--listen", "127.0.0.1:0",
			"--fault", "reset:hop=client,events=1,match=/reset", "--monitor-interval", "200ms",
			"--http", "127.0.0.1:0", "--out", out}, &stdout, &stderr), &stderr)
	}()
	live := liveURL(t, &stderr, done)
	var proxyURL string
	waitFor(t, "the proxy's URL", func() bool {
		m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(stdout.String())
		if m != nil {
			proxyURL = m[1]
		}
		return m != nil
	})
	if hint := session.LiveURL(out); hint != live {
		t.Errorf("live view hint beside the session file: %q, want %q", hint, live)
	}
	for range 3 {
		if class := streamOnce(t, proxyURL+"/stream"); class != errclass.ECONNRESET {
			t.Errorf("stream through the proxy ended with %q, want the upstream's reset passed on", class)
		}
	}
	for range 2 {
		if class := streamOnce(t, proxyURL+"/reset"); class != errclass.ECONNRESET {
			t.Errorf("stream through the fault ended with %q, want ECONNRESET", class)
		}
	}
	var fams map[string]*dto.MetricFamily
	waitFor(t, "the proxy's hops closed in /metrics", func() bool {
		fams = metricstest.Scrape(t, live+"/metrics")
		v, _ := metricValue(fams, "ssestress_proxy_connections_active")
		return v == 0
	})
	checkStandard(t, fams)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ssestress_info", []string{"command", "proxy"}, 1},
		{"ssestress_proxy_connections_total", []string{"hop", "proxy/client"}, 5},
		{"ssestress_proxy_connections_total", []string{"hop", "proxy/upstream"}, 5},
		{"ssestress_proxy_requests_total", []string{"proxy", "proxy"}, 5},
		{"ssestress_proxy_errors_total", []string{"class", "ECONNRESET", "hop", "proxy/upstream"}, 3},
		{"ssestress_proxy_error_age_seconds", []string{"class", "ECONNRESET", "hop", "proxy/upstream"}, 3},
		{"ssestress_proxy_error_idle_seconds", []string{"class", "ECONNRESET", "hop", "proxy/upstream"}, 3},
		{"ssestress_proxy_faults_fired_total", []string{"fault_kind", "reset", "hop", "proxy/client"}, 2},
		{"ssestress_proxy_connections_closed_total", []string{"hop", "proxy/upstream", "ending", "rst", "closed_by", "peer"}, 3},
		{"ssestress_resets_total", []string{"hop", "proxy/upstream", "sender", "target"}, 3},
		{"ssestress_resets_total", []string{"hop", "proxy/client", "sender", "proxy"}, 5},
	} {
		if v, ok := metricValue(fams, c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if fams["ssestress_clients_total"] != nil {
		t.Error("a proxy exposes generated clients it does not have")
	}
	// The page's feed says the same.
	snap := firstSnapshot(t, live)
	if snap.Command != "proxy" || snap.Active != 0 || snap.Events != 3*2+2*1 || len(snap.Faults) != 1 ||
		!slices.Contains(snap.Errors, liveCount{Hop: "proxy/upstream", Class: errclass.ECONNRESET, Count: 3}) ||
		!slices.Contains(snap.Resets, liveCount{Hop: "proxy/upstream", Sender: "target", Count: 3}) ||
		!slices.Contains(snap.Resets, liveCount{Hop: "proxy/client", Sender: "proxy", Count: 5}) {
		t.Errorf("/live/events snapshot %+v", snap)
	}
	stop()
	select {
	case code := <-done:
		if code != 0 && code != exitInterrupted {
			t.Fatalf("proxy exit %d: %s", code, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("the proxy did not stop")
	}
	if _, err := os.Stat(out + session.LiveSuffix); !os.IsNotExist(err) {
		t.Errorf("live view hint left behind: %v", err)
	}
	return fams
}

// promqlName is a metric name or function, or a keyword, in PromQL.
var promqlName = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// promqlKeywords are PromQL's words that are not metric names.
var promqlKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
	"group_right": true, "bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true}

// promqlMetricNames are the metric names a PromQL expression selects: its
// identifiers once strings, label matchers, ranges and grouping clauses
// are taken out, less functions (followed by "(") and keywords.
func promqlMetricNames(expr string) []string {
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`"(\\.|[^"\\])*"`),
		regexp.MustCompile(`\{[^}]*\}`),
		regexp.MustCompile(`\[[^\]]*\]`),
		regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
	} {
		expr = re.ReplaceAllString(expr, " ")
	}
	var names []string
	for _, loc := range promqlName.FindAllStringIndex(expr, -1) {
		word := expr[loc[0]:loc[1]]
		if loc[0] > 0 && (expr[loc[0]-1] == '$' || (expr[loc[0]-1] >= '0' && expr[loc[0]-1] <= '9') || expr[loc[0]-1] == '.') {
			continue // a Grafana variable, or a number's exponent
		}
		if promqlKeywords[strings.ToLower(word)] || strings.HasPrefix(strings.TrimLeft(expr[loc[1]:], " \t\n"), "(") {
			continue
		}
		names = append(names, word)
	}
	return names
}

// TestPromQLMetricNames: the extractor the dashboard test relies on finds
// the metric names and nothing else.
func TestPromQLMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (le, class) (rate(ssestress_client_error_age_seconds_bucket{instance=~"$instance", hop!="a}b"}[$__rate_interval]))`: {"ssestress_client_error_age_seconds_bucket"},
		`histogram_quantile(0.95, sum by (le) (rate(foo_bucket[5m]))) / on(instance) group_left(pid) bar + 1e3 * baz offset 5m`:     {"foo_bucket", "bar", "baz"},
		`rate(process_cpu_seconds_total{instance=~"$instance"}[$__rate_interval]) and up`:                                           {"process_cpu_seconds_total", "up"},
		`label_values(ssestress_info, instance)`: {"ssestress_info", "instance"},
	} {
		if got := promqlMetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", expr, got, want)
		}
	}
}

// checkDashboard parses the dashboard and checks that every query names
// series the scrapes export (a histogram's _bucket, _sum and _count are
// its family's), that each panel uses the datasource variable, and that
// the panels the live view promises are there.
func checkDashboard(t *testing.T, path string, scrapes ...map[string]*dto.MetricFamily) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string            `json:"title"`
		UID        string            `json:"uid"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s does not parse: %v", path, err)
	}
	type panel struct {
		Title      string          `json:"title"`
		Type       string          `json:"type"`
		Datasource json.RawMessage `json:"datasource"`
		Panels     []panel         `json:"panels"`
		Targets    []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	for _, rawPanel := range dash.Panels {
		var p panel
		if err := json.Unmarshal(rawPanel, &p); err != nil {
			t.Fatal(err)
		}
		walk([]panel{p})
	}
	exported := func(name string) bool {
		for _, fams := range scrapes {
			if fams[name] != nil {
				return true
			}
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok {
					if f := fams[base]; f != nil && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
						return true
					}
				}
			}
		}
		return false
	}
	used := map[string]bool{}
	queries := 0
	for _, p := range all {
		if p.Type == "row" {
			continue
		}
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q: datasource %s, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			names := promqlMetricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: no metric in %q", p.Title, tg.Expr)
			}
			for _, n := range names {
				used[n] = true
				if !exported(n) {
					t.Errorf("panel %q: %s is not a series run or proxy export (%s)", p.Title, n, tg.Expr)
				}
			}
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(v.Definition)
		if m == nil || !exported(m[1]) {
			t.Errorf("variable %s: %q does not read an exported series", v.Name, v.Definition)
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries", queries)
	}
	for _, want := range []string{"ssestress_events_total", "ssestress_streams_active", "ssestress_client_errors_total",
		"ssestress_resets_total", "ssestress_proxy_faults_fired_total", "ssestress_client_error_age_seconds_bucket",
		"ssestress_client_error_idle_seconds_bucket", "process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines"} {
		if !used[want] {
			t.Errorf("the dashboard has no panel on %s", want)
		}
	}
}

// firstSnapshot reads the first snapshot of a live view's /live/events.
func firstSnapshot(t *testing.T, live string) liveSnap {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", live+"/live/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("/live/events: content type %q", ct)
	}
	dec := sse.NewDecoder(resp.Body, 0)
	for {
		f, err := dec.Next()
		if err != nil {
			t.Fatalf("/live/events: %v", err)
		}
		if f.Kind != sse.KindEvent {
			continue
		}
		if f.Type != "snapshot" {
			t.Fatalf("/live/events: first event %q", f.Type)
		}
		var snap liveSnap
		if err := json.Unmarshal(f.Data, &snap); err != nil {
			t.Fatalf("snapshot %s: %v", f.Data, err)
		}
		return snap
	}
}
