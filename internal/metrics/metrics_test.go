package metrics_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/metrics"
	"github.com/ssestress/ssestress/internal/metrics/metricstest"
	"github.com/ssestress/ssestress/internal/session"
)

// snapshotOf is a run with an in-process proxy "p1": its clients' errors,
// the proxy's endings, failures and firings; events grows with each
// scrape.
func snapshotOf(events *atomic.Int64) func() metrics.Snapshot {
	return func() metrics.Snapshot {
		return metrics.Snapshot{
			Clients: &metrics.Clients{
				Hop: "p1/client", Started: 20, Attempts: 25, Reconnects: 5, Events: events.Add(100), Comments: 3,
				Active: 18, ActiveMax: 20, Errors: map[string]int64{"ECONNRESET": 4, "HTTP_503": 1},
				HTTP2: true, HTTP2Connections: 1,
			},
			Proxies: []metrics.Proxy{{
				Name: "p1", Requests: 25, EventsForwarded: 2000,
				Opened: map[string]int64{session.HopClient: 25, session.HopUpstream: 24},
				Closed: map[string]int64{session.HopClient: 7, session.HopUpstream: 6},
				Endings: map[metrics.Ending]int64{
					{Hop: session.HopClient, Ending: session.EndingRST, ClosedBy: session.ClosedBySelf}:   4,
					{Hop: session.HopClient, Ending: session.EndingFIN, ClosedBy: session.ClosedByPeer}:   3,
					{Hop: session.HopUpstream, Ending: session.EndingRST, ClosedBy: session.ClosedByPeer}: 4,
					{Hop: session.HopUpstream, Ending: session.EndingFIN, ClosedBy: session.ClosedBySelf}: 2,
				},
				Fired:  map[metrics.Fired]int64{{Hop: session.HopUpstream, Kind: "reset"}: 4, {Hop: session.HopClient, Kind: "latency"}: 9},
				Errors: map[metrics.HopClass]int64{{Hop: session.HopUpstream, Class: "ECONNRESET"}: 4, {Hop: session.HopUpstream, Class: "ECONNREFUSED"}: 1},
			}},
			Session: &metrics.Session{Committed: 1000, Dropped: 2},
		}
	}
}

// TestScrape: the registry's exposition passes the reference parser and
// promlint, carries the standard process and Go series, the histograms and
// the counters; every ssestress series is read at scrape time; resets are
// counted by hop and sender from the proxy's endings (the clients' resets
// are the proxy's own, not counted twice).
func TestScrape(t *testing.T) {
	var events atomic.Int64
	reg := metrics.New(metrics.Options{Command: "run", Scenario: "flood", Version: "v1.2.3", Snapshot: snapshotOf(&events)})
	reg.ClientErrors.Observe("ECONNRESET", "p1/client", 90*time.Second, 61*time.Second)
	reg.ClientErrors.Observe("ECONNRESET", "p1/client", 3*time.Second, 200*time.Millisecond)
	reg.ProxyErrors.Observe("ECONNRESET", "p1/upstream", 45*time.Minute, 350*time.Second)
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()

	fams := metricstest.Scrape(t, srv.URL)
	for _, name := range []string{
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds",
		"go_goroutines", "go_threads", "go_memstats_heap_alloc_bytes", "go_gc_duration_seconds",
	} {
		if fams[name] == nil {
			t.Errorf("no %s: stock dashboards need it", name)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ssestress_info", []string{"command", "run", "scenario", "flood", "version", "v1.2.3"}, 1},
		{"ssestress_clients_total", nil, 20},
		{"ssestress_attempts_total", nil, 25},
		{"ssestress_reconnects_total", nil, 5},
		{"ssestress_events_total", nil, 100},
		{"ssestress_streams_active", nil, 18},
		{"ssestress_streams_active_max", nil, 20},
		{"ssestress_http2_connections", nil, 1},
		{"ssestress_client_errors_total", []string{"class", "ECONNRESET", "hop", "p1/client"}, 4},
		{"ssestress_client_errors_total", []string{"class", "HTTP_503", "hop", "p1/client"}, 1},
		{"ssestress_client_error_age_seconds", []string{"class", "ECONNRESET", "hop", "p1/client"}, 2},
		{"ssestress_client_error_idle_seconds", []string{"class", "ECONNRESET", "hop", "p1/client"}, 2},
		{"ssestress_proxy_error_age_seconds", []string{"class", "ECONNRESET", "hop", "p1/upstream"}, 1},
		{"ssestress_proxy_connections_total", []string{"hop", "p1/client"}, 25},
		{"ssestress_proxy_connections_active", []string{"hop", "p1/client"}, 18},
		{"ssestress_proxy_connections_active", []string{"hop", "p1/upstream"}, 18},
		{"ssestress_proxy_connections_closed_total", []string{"hop", "p1/upstream", "ending", "rst", "closed_by", "peer"}, 4},
		{"ssestress_proxy_requests_total", []string{"proxy", "p1"}, 25},
		{"ssestress_proxy_events_forwarded_total", []string{"proxy", "p1"}, 2000},
		{"ssestress_proxy_errors_total", []string{"class", "ECONNREFUSED", "hop", "p1/upstream"}, 1},
		{"ssestress_proxy_faults_fired_total", []string{"fault_kind", "reset", "hop", "p1/upstream"}, 4},
		{"ssestress_proxy_faults_fired_total", []string{"fault_kind", "latency", "hop", "p1/client"}, 9},
		{"ssestress_resets_total", []string{"hop", "p1/client", "sender", "proxy"}, 4},
		{"ssestress_resets_total", []string{"hop", "p1/upstream", "sender", "target"}, 4},
		{"ssestress_resets_total", nil, 8},
		{"ssestress_session_records_committed_total", nil, 1000},
		{"ssestress_session_records_dropped_total", nil, 2},
	} {
		if got, ok := metricstest.Value(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// The histograms cut where the report's age and idle tables do: the
	// 61 s idle is above 60, the 90 s age below 120.
	h := metricstest.Samples(fams["ssestress_client_error_idle_seconds"], "hop", "p1/client")[0].GetHistogram()
	want := map[float64]uint64{0.1: 0, 0.5: 1, 60: 1, 120: 2}
	for _, b := range h.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("idle bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	if h.GetSampleSum() != 61.2 {
		t.Errorf("idle sum %v, want 61.2", h.GetSampleSum())
	}
	// Read at scrape time: the events counter moved between scrapes.
	again := metricstest.Scrape(t, srv.URL)
	if v, _ := metricstest.Value(again, "ssestress_events_total"); v != 200 {
		t.Errorf("second scrape: events %v, want 200", v)
	}
	// The custom series of the old exposition are gone.
	for name := range again {
		if len(name) > len("ssestress_process_") && name[:len("ssestress_process_")] == "ssestress_process_" {
			t.Errorf("%s: process readings are the standard process_* series now", name)
		}
	}
}

// TestDirectLinkResets: clients that dial the server with no proxy of the
// process between count the resets they received, on their link, sent by
// the server.
func TestDirectLinkResets(t *testing.T) {
	reg := metrics.New(metrics.Options{Command: "run", Snapshot: func() metrics.Snapshot {
		return metrics.Snapshot{Clients: &metrics.Clients{Hop: "direct", Errors: map[string]int64{"ECONNRESET": 3, "EPIPE": 1, "EOF": 5},
			Resets: 4, ResetSender: metrics.SenderServer}}
	}})
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	fams := metricstest.Scrape(t, srv.URL)
	if v, ok := metricstest.Value(fams, "ssestress_resets_total", "hop", "direct", "sender", "server"); !ok || v != 4 {
		t.Errorf("resets on the direct link %v (found %v), want 4", v, ok)
	}
	if fams["ssestress_http2_connections"] != nil || fams["ssestress_proxy_connections_total"] != nil {
		t.Error("series of things this run does not have")
	}
}

// TestClassesBounded: beyond MaxClasses distinct classes the rest are
// counted as OTHER, in the counters and the histograms alike, and a class
// once named keeps its name.
func TestClassesBounded(t *testing.T) {
	errs := map[string]int64{}
	for i := range metrics.MaxClasses + 10 {
		errs[fmt.Sprintf("HTTP_%d", 500+i)] = 1
	}
	reg := metrics.New(metrics.Options{Command: "run", Snapshot: func() metrics.Snapshot {
		return metrics.Snapshot{Clients: &metrics.Clients{Hop: "direct", Errors: errs}}
	}})
	reg.ClientErrors.Observe("HTTP_500", "direct", time.Second, time.Second)
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	metricstest.Scrape(t, srv.URL) // admits the first classes, in name order
	reg.ClientErrors.Observe("HTTP_499", "direct", time.Second, time.Second)
	fams := metricstest.Scrape(t, srv.URL)
	series := fams["ssestress_client_errors_total"].GetMetric()
	if len(series) != metrics.MaxClasses+1 {
		t.Fatalf("%d series, want %d classes and OTHER", len(series), metrics.MaxClasses)
	}
	var total float64
	for _, m := range series {
		total += m.GetCounter().GetValue()
	}
	if total != float64(len(errs)) {
		t.Errorf("total %v, want %d: nothing lost in folding", total, len(errs))
	}
	if v, _ := metricstest.Value(fams, "ssestress_client_errors_total", "class", metrics.OtherClass); v != float64(len(errs)-metrics.MaxClasses) {
		t.Errorf("OTHER = %v", v)
	}
	if _, ok := metricstest.Value(fams, "ssestress_client_error_age_seconds", "class", "HTTP_500"); !ok {
		t.Error("HTTP_500, admitted, lost its name in the histogram")
	}
	if v, _ := metricstest.Value(fams, "ssestress_client_error_age_seconds", "class", metrics.OtherClass); v != 1 {
		t.Errorf("HTTP_499, beyond the bound, not counted as OTHER in the histogram (%v)", v)
	}
}

// TestServerProcess: --server-pid's readings are the standard process
// series under ssestress_server_, labelled with the pid, beside its
// threads and TCP sockets; once the process is gone, ssestress_server_up
// says 0 and the scrape still succeeds.
func TestServerProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc: the server's readings need Linux")
	}
	server := exec.Command("sleep", "60")
	if err := server.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	defer func() { server.Process.Kill(); server.Wait() }()
	pid := strconv.Itoa(server.Process.Pid)
	reg := metrics.New(metrics.Options{Command: "run", ServerPID: server.Process.Pid})
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	fams := metricstest.Scrape(t, srv.URL)
	for _, name := range []string{"ssestress_server_process_resident_memory_bytes", "ssestress_server_process_cpu_seconds_total",
		"ssestress_server_process_open_fds", "ssestress_server_threads"} {
		if v, ok := metricstest.Value(fams, name, "pid", pid); !ok || v < 0 || (name != "ssestress_server_process_cpu_seconds_total" && v == 0) {
			t.Errorf("%s{pid=%s} = %v (found %v)", name, pid, v, ok)
		}
	}
	if v, ok := metricstest.Value(fams, "ssestress_server_up", "pid", pid); !ok || v != 1 {
		t.Errorf("server up %v %v", v, ok)
	}
	if v, _ := metricstest.Value(fams, "process_resident_memory_bytes"); v <= 0 {
		t.Error("the tool's own process series are missing beside the server's")
	}
	server.Process.Kill()
	server.Wait()
	fams = metricstest.Scrape(t, srv.URL)
	if v, ok := metricstest.Value(fams, "ssestress_server_up", "pid", pid); !ok || v != 0 {
		t.Errorf("server gone: up %v %v, want 0", v, ok)
	}
	if fams["ssestress_server_process_resident_memory_bytes"] != nil {
		t.Error("readings of a process that is gone")
	}
}

// BenchmarkScrape renders /metrics for a run through one proxy with errors
// of a dozen classes and their histograms: the cost of one scrape
// (standard collectors included).
func BenchmarkScrape(b *testing.B) {
	var events atomic.Int64
	reg := metrics.New(metrics.Options{Command: "run", Scenario: "flood", Version: "bench", Snapshot: snapshotOf(&events)})
	for i := range 12 {
		reg.ClientErrors.Observe(fmt.Sprintf("HTTP_%d", 500+i), "p1/client", time.Duration(i)*time.Second, time.Second)
	}
	h := reg.Handler()
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
