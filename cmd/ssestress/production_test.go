package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/metrics/metricstest"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// waitFor polls cond every 20 ms until it holds or runTestTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(runTestTimeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// startServeCLI runs "ssestress serve args..." in the background and
// returns the URL it prints; the server stops at the end of the test.
func startServeCLI(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut runTestBuffer
	done := make(chan int, 1)
	go func() { done <- exitCode(run(ctx, append([]string{"serve"}, args...), &out, &errOut), &errOut) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(runTestTimeout):
			t.Error("serve did not stop")
		}
	})
	re := regexp.MustCompile(`serving SSE quote feed on (\S+)/stream`)
	var url string
	waitFor(t, "serve to print its URL", func() bool {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, errOut.String())
		default:
		}
		if m := re.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			return true
		}
		return false
	})
	return url
}

// readSession returns the summary, run info, conns and errors of a file.
func readSession(t *testing.T, path string) (session.Summary, session.RunInfo, []session.ConnRecord, []session.ErrorRecord) {
	t.Helper()
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var sum session.Summary
	var info session.RunInfo
	r.Meta(session.MetaSummary, &sum)
	r.Meta(session.MetaRun, &info)
	conns, err := session.All[session.ConnRecord](r, session.BucketConns)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := session.All[session.ErrorRecord](r, session.BucketErrors)
	if err != nil {
		t.Fatal(err)
	}
	return sum, info, conns, errs
}

// TestHTTPSServeWithCAAndInsecure: serve --tls-self-signed writes its
// certificate; run and tail reach it with --ca and with --insecure (over
// HTTP/1.1 and HTTP/2), and without either they refuse it, classified TLS,
// with the way out in the message.
func TestHTTPSServeWithCAAndInsecure(t *testing.T) {
	dir := t.TempDir()
	certFile := filepath.Join(dir, "feed-cert.pem")
	url := startServeCLI(t, "--listen", "127.0.0.1:0", "--event-rate", "3000", "--tls-self-signed", "--tls-cert-out", certFile)
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("serve URL %s", url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*runTestTimeout)
	defer cancel()
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"ca", []string{"--ca", certFile}},
		{"insecure", []string{"--insecure"}},
		{"ca-http2", []string{"--ca", certFile, "--http2"}},
	} {
		out := filepath.Join(dir, tc.name+".db")
		args := append([]string{"run", "--target", url, "--connections=3", "--rate=50", "--duration=1s", "--json", "--out=" + out}, tc.flags...)
		stdout, stderr, code := runCLI(t, ctx, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.name, code, stderr)
		}
		var sum session.Summary
		if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Events == 0 || len(sum.Errors) != 0 || sum.ActiveMax != 3 {
			t.Fatalf("%s: summary %s (%v)", tc.name, stdout, err)
		}
		_, _, conns, _ := readSession(t, out)
		tuples := map[string]bool{}
		for _, c := range conns {
			tuples[c.LocalAddr] = true
		}
		if want := map[bool]int{false: 3, true: 1}[tc.name == "ca-http2"]; len(tuples) != want {
			t.Errorf("%s: streams on %d connections, want %d", tc.name, len(tuples), want)
		}
	}

	out := filepath.Join(dir, "refused.db")
	_, stderr, code := runCLI(t, ctx, "run", "--target", url, "--connections=1", "--duration=1s", "--out="+out)
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "cannot reach target "+url) ||
		!strings.Contains(stderr, "(TLS; trust its certificate with --ca FILE, or skip verification with --insecure)") {
		t.Fatalf("untrusted: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused run left a session file")
	}

	for _, flags := range [][]string{{"--ca", certFile}, {"--insecure", "--http2"}} {
		args := append([]string{"tail", "--json", "--count", "2", url + "/stream?symbols=AAPL"}, flags...)
		stdout, stderr, code := runCLI(t, ctx, args...)
		if code != 0 || strings.Count(stdout, `"type":"event"`) != 2 {
			t.Fatalf("tail %v: exit %d\n%s\n%s", flags, code, stdout, stderr)
		}
	}
	_, stderr, code = runCLI(t, ctx, "tail", url+"/stream")
	if code != 1 || !strings.Contains(stderr, "(TLS; trust its certificate") {
		t.Fatalf("tail untrusted: exit %d: %s", code, stderr)
	}
}

// credentials of TestCredentialsNeverRecorded: long enough to be unique.
const (
	testToken  = "tok-6f1c2d9e8b7a4c3f-never-recorded"
	testCookie = "ck-91ab37c5d2e04f68-never-recorded"
	testAPIKey = "key-5e2f8a1b3c7d9046-never-recorded"
)

// authServer is a target that demands the bearer token, the cookie and the
// API key, and answers the group ECHO with a content type that quotes the
// token (a server echoing a credential into an error).
func authServer(t *testing.T) *httptest.Server {
	t.Helper()
	inner := feed.New(feed.Config{Rate: feed.Rate{Min: 3000, Max: 3000}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie("sid")
		if r.Header.Get("Authorization") != "Bearer "+testToken || c == nil || c.Value != testCookie || r.Header.Get("X-Api-Key") != testAPIKey {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("symbols") == "ECHO" {
			w.Header().Set("Content-Type", "text/plain; seen="+r.Header.Get("Authorization"))
			io.WriteString(w, "no stream here")
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); inner.Close() })
	return srv
}

// assertNoSecret fails when any credential is in what.
func assertNoSecret(t *testing.T, name string, what []byte) {
	t.Helper()
	for _, s := range []string{testToken, testCookie, testAPIKey} {
		if bytes.Contains(what, []byte(s)) {
			t.Errorf("%s contains the credential %q", name, s)
		}
	}
}

// TestCredentialsNeverRecorded: a target that demands a bearer token (from
// --token-file), a cookie and an API key gets them; none of them appears in
// the raw bytes of the session file, on stdout or on stderr, even when the
// server echoes the token into an error message; the args are stored
// redacted.
func TestCredentialsNeverRecorded(t *testing.T) {
	srv := authServer(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600)
	out := filepath.Join(dir, "auth.db")
	ctx, cancel := context.WithTimeout(context.Background(), 2*runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "run", "--target", srv.URL, "--token-file", tokenFile,
		"--cookie", "sid="+testCookie, "--header", "X-Api-Key: "+testAPIKey, "--header=X-Trace: visible",
		"--symbol-groups", "AAPL;MSFT;ECHO", "--connections=3", "--rate=50", "--duration=1200ms",
		"--monitor-interval=200ms", "--json", "--out="+out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sum session.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Events == 0 || sum.Errors["BAD_CONTENT_TYPE"] != 1 || len(sum.Errors) != 1 {
		t.Fatalf("summary %s (%v); stderr %s", stdout, err, stderr)
	}
	assertNoSecret(t, "stdout", []byte(stdout))
	assertNoSecret(t, "stderr", []byte(stderr))
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "the session file", raw)

	_, info, conns, errs := readSession(t, out)
	args := strings.Join(info.Args, " ")
	for _, want := range []string{"sid=[redacted]", "X-Api-Key: [redacted]", "--header=X-Trace: visible", "--token-file " + tokenFile} {
		if !strings.Contains(args, want) {
			t.Errorf("stored args lack %q: %s", want, args)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "Bearer [redacted]") {
		t.Errorf("the echoed token is not redacted in the error record: %+v", errs)
	}
	for _, c := range conns {
		if c.Group != "ECHO" && (c.Status != 200 || c.Events == 0) {
			t.Errorf("conn %+v did not get through", c)
		}
	}

	// The same target without the token: every stream fails with 401.
	_, stderr, code = runCLI(t, ctx, "run", "--target", srv.URL, "--cookie", "sid="+testCookie,
		"--header", "X-Api-Key: "+testAPIKey, "--connections=1", "--duration=1s", "--out="+filepath.Join(dir, "noauth.db"))
	if code != 1 || !strings.Contains(stderr, "HTTP_401") {
		t.Fatalf("without token: exit %d: %s", code, stderr)
	}
	assertNoSecret(t, "stderr without token", []byte(stderr))

	// tail with --token-env prints events, never the token.
	t.Setenv("SSESTRESS_TEST_TOKEN", testToken)
	stdout, stderr, code = runCLI(t, ctx, "tail", "--token-env", "SSESTRESS_TEST_TOKEN", "--cookie", "sid="+testCookie,
		"--header", "X-Api-Key: "+testAPIKey, "--count", "2", srv.URL+"/stream?symbols=AAPL")
	if code != 0 || strings.Count(stdout, "quote") != 2 {
		t.Fatalf("tail: exit %d\n%s\n%s", code, stdout, stderr)
	}
	assertNoSecret(t, "tail output", []byte(stdout+stderr))
}

// TestRequestFlagErrors: each bad credential or TLS flag is one line and
// exit 2, and no message quotes a credential.
func TestRequestFlagErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(testToken), 0o600)
	twoLines := filepath.Join(dir, "two")
	os.WriteFile(twoLines, []byte(testToken+"\n"+testToken), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--token-file", filepath.Join(dir, "nope")}, "run: --token-file: stat " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{[]string{"run", "--token-file", empty}, "run: --token-file " + empty + ": the token is empty"},
		{[]string{"run", "--token-file", twoLines}, "run: --token-file " + twoLines + ": the token contains a control character (a line break in the middle?)"},
		{[]string{"run", "--token-env", "SSESTRESS_UNSET_VARIABLE"}, "run: --token-env: environment variable SSESTRESS_UNSET_VARIABLE is not set"},
		{[]string{"run", "--token-file", tokenFile, "--header", "Authorization: Bearer " + testToken}, "run: " + errTokenConflict.Error()},
		{[]string{"run", "--token-file", tokenFile, "--token-env", "X"}, "run: " + errTokenConflict.Error()},
		{[]string{"run", "--header", "Authorization Bearer " + testToken}, "run: --header number 1 is not 'Name: value' (not shown: it may hold a credential)"},
		{[]string{"run", "--cookie", "=" + testCookie}, `run: --cookie: "=[redacted]" is not 'name=value'`},
		{[]string{"run", "--cookie", "sid=a", "--header", "Cookie: x=y"}, "run: give cookies with --cookie or with --header 'Cookie: ...', not both"},
		{[]string{"run", "--ca", empty, "--insecure"}, "run: --ca and --insecure exclude each other: the one trusts a certificate, the other trusts any: give one or the other"},
		{[]string{"run", "--ca", empty}, "run: --ca: " + empty + " holds no PEM certificate"},
		{[]string{"run", "--http", "no:port:here"}, `run: --http "no:port:here": use HOST:PORT, e.g. 127.0.0.1:9090`},
		{[]string{"run", "--server-pid", "2147483646"}, "run: --server-pid 2147483646: no such process readable here"},
		{[]string{"tail", "--insecure", "--ca", empty, "http://127.0.0.1:1/"}, "tail: --ca and --insecure exclude each other: the one trusts a certificate, the other trusts any: give one or the other"},
		{[]string{"serve", "--tls-cert", empty}, "serve: --tls-cert needs --tls-key"},
		{[]string{"serve", "--tls-cert-out", filepath.Join(dir, "c.pem")}, "serve: --tls-cert-out writes the certificate --tls-self-signed generates"},
		{[]string{"completion"}, "completion: no shell given (usage: ssestress completion bash|zsh|fish)"},
		{[]string{"completion", "tcsh"}, `completion: unknown shell "tcsh" (use bash, zsh or fish)`},
	} {
		stdout, stderr, code := runCLI(t, ctx, tc.args...)
		if code != 2 || stderr != "ssestress: "+tc.want+"\n" || stdout != "" {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, stderr, tc.want)
		}
		assertNoSecret(t, fmt.Sprint(tc.args), []byte(stderr))
	}
}

// TestRedactArgs: every way to write a credential flag is redacted; the
// rest is kept as typed.
func TestRedactArgs(t *testing.T) {
	in := []string{"--header", "Authorization: Bearer abc123", "-header=X-Api-Key: k3y", "--header", "X-Trace: 1",
		"--cookie=a=1; b=2", "-cookie", "sid=zzz", "--target", "https://user:pw@host/", "--token-file", "/t",
		"http://u:secret@h/stream", "--duration", "1s", "--json", "--", "--header", "Authorization: x"}
	got := redactArgs(in, []string{"leaked-elsewhere"})
	want := []string{"--header", "Authorization: [redacted]", "-header=X-Api-Key: [redacted]", "--header", "X-Trace: 1",
		"--cookie=a=[redacted]; b=[redacted]", "-cookie", "sid=[redacted]", "--target", "https://user:[redacted]@host/", "--token-file", "/t",
		"http://u:[redacted]@h/stream", "--duration", "1s", "--json", "--", "--header", "Authorization: x"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("redactArgs:\n got %q\nwant %q", got, want)
	}
	if got := redactArgs([]string{"--path=/s?k=leaked-elsewhere"}, []string{"leaked-elsewhere"}); got[0] != "--path=/s?k=[redacted]" {
		t.Fatalf("secret in another flag: %q", got)
	}
	if strings.Join(in, "") == strings.Join(got, "") {
		t.Fatal("redactArgs changed its input")
	}
}

// parseMetrics scrapes url: the body must pass Prometheus' reference
// parser and promlint.
func parseMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	return metricstest.Scrape(t, url)
}

// metricValue is the sum of name's samples whose labels include want.
func metricValue(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	return metricstest.Value(fams, name, want...)
}

// TestRunLiveView: run --http serves /metrics (parsed with Prometheus'
// parser) and /report while the run goes on; report on the file in use
// answers within a second or two, naming the live view; at the end the
// counters of /metrics agree with the session file; --server-pid is
// sampled into the samples and the metrics.
func TestRunLiveView(t *testing.T) {
	inner := feed.New(feed.Config{Rate: feed.Rate{Min: 3000, Max: 3000}})
	defer inner.Close()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("symbols") == "FAIL" {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer target.Close()
	server := exec.Command("sleep", "120") // stands in for the server's process
	if err := server.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	defer func() { server.Process.Kill(); server.Wait() }()

	out := filepath.Join(t.TempDir(), "live.db")
	var stdout, stderr runTestBuffer
	o, err := parseRunArgs([]string{"--target", target.URL, "--symbol-groups", "AAPL;MSFT;FAIL", "--connections=6", "--rate=20",
		"--duration=5s", "--monitor-interval=200ms", "--http", "127.0.0.1:0", "--server-pid", fmt.Sprint(server.Process.Pid),
		"--json", "--out=" + out}, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	type final struct {
		fams map[string]*dto.MetricFamily
		url  string
	}
	finished := make(chan final, 1)
	o.afterRun = func(lv *liveView) {
		finished <- final{parseMetrics(t, lv.URL+"/metrics"), lv.URL}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*runTestTimeout)
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- o.execute(ctx, &stdout, &stderr) }()

	re := regexp.MustCompile(`live view on (http://127\.0\.0\.1:\d+)/metrics`)
	var live string
	waitFor(t, "the live view", func() bool {
		m := re.FindStringSubmatch(stderr.String())
		if m != nil {
			live = m[1]
		}
		return m != nil
	})
	waitFor(t, "open streams in /metrics", func() bool {
		v, _ := metricValue(parseMetrics(t, live+"/metrics"), "ssestress_streams_active")
		return v >= 1
	})

	// While the file is held: report says so at once and names the view.
	start := time.Now()
	_, repErr, code := runCLI(t, ctx, "report", out)
	if code == 0 || time.Since(start) > 3*time.Second || strings.Count(repErr, "\n") != 1 ||
		!strings.Contains(repErr, "is in use by a running ssestress") || !strings.Contains(repErr, live+"/report") {
		t.Errorf("report on the file in use: exit %d after %v: %s", code, time.Since(start), repErr)
	}
	resp, err := http.Get(live + "/report?format=json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !json.Valid(body) {
		t.Errorf("/report?format=json: %s %q: %.200s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	resp, err = http.Get(live + "/report?format=nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown format: %s", resp.Status)
	}

	var end final
	select {
	case end = <-finished:
	case <-ctx.Done():
		t.Fatal("the run did not finish")
	}
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(end.url + "/metrics"); err == nil {
		t.Error("the live view is still up after the run")
	}
	if _, err := os.Stat(out + session.LiveSuffix); !os.IsNotExist(err) {
		t.Errorf("live view hint left behind: %v", err)
	}

	sum, _, conns, errs := readSession(t, out)
	var events int64
	ids := map[string]bool{}
	for _, c := range conns {
		events += c.Events
		ids[c.ClientID] = true
	}
	byClass := map[string]int{}
	for _, e := range errs {
		byClass[e.Class]++
	}
	if byClass["HTTP_503"] != 2 || len(byClass) != 1 {
		t.Fatalf("error records by class %v, want 2 HTTP_503", byClass)
	}
	checks := []struct {
		name string
		want float64
		lbl  []string
	}{
		{"ssestress_events_total", float64(events), nil},
		{"ssestress_events_total", float64(sum.Events), nil},
		{"ssestress_attempts_total", float64(len(conns)), nil},
		{"ssestress_clients_total", float64(len(ids)), nil},
		{"ssestress_clients_total", float64(sum.Clients), nil},
		{"ssestress_reconnects_total", float64(sum.Reconnects), nil},
		{"ssestress_streams_active_max", float64(sum.ActiveMax), nil},
		{"ssestress_streams_active", 0, nil},
		{"ssestress_client_errors_total", 2, []string{"class", "HTTP_503", "hop", "client→target"}},
		{"ssestress_client_error_age_seconds", 2, []string{"class", "HTTP_503", "hop", "client→target"}},
		{"ssestress_client_error_idle_seconds", 2, []string{"class", "HTTP_503", "hop", "client→target"}},
		{"ssestress_server_up", 1, []string{"pid", fmt.Sprint(server.Process.Pid)}},
		{"ssestress_info", 1, []string{"command", "run", "scenario", "flood"}},
	}
	for _, c := range checks {
		got, ok := metricValue(end.fams, c.name, c.lbl...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), session file says %v", c.name, c.lbl, got, ok, c.want)
		}
	}
	if rss, _ := metricValue(end.fams, "ssestress_server_process_resident_memory_bytes", "pid", fmt.Sprint(server.Process.Pid)); rss <= 0 {
		t.Errorf("server rss %v", rss)
	}
	// The tool's own process, as stock dashboards read it.
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines"} {
		if v, ok := metricValue(end.fams, name); !ok || (name != "process_cpu_seconds_total" && v <= 0) {
			t.Errorf("%s = %v (found %v)", name, v, ok)
		}
	}

	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	samples, _ := session.All[session.Sample](r, session.BucketSamples)
	if len(samples) == 0 || samples[0].ServerPID != server.Process.Pid || samples[0].ServerRSS == 0 || samples[0].ServerFDs == 0 {
		t.Fatalf("samples lack the server's figures: %+v", samples[:min(len(samples), 1)])
	}
	// The server's threads are sampled too (its TCP states: see
	// clients' TestMonitorServerTCPStates; this stand-in has no sockets).
	if samples[0].ServerThreads == 0 {
		t.Fatalf("samples lack the server's threads: %+v", samples[0])
	}
}

// TestRunHTTP2Embedded: run --http2 without a target measures the embedded
// server over h2 with a generated certificate: one shared connection.
func TestRunHTTP2Embedded(t *testing.T) {
	out := filepath.Join(t.TempDir(), "h2.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "run", "--http2", "--connections=5", "--rate=50", "--duration=1s",
		"--event-rate=3000", "--json", "--out="+out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "against https://127.0.0.1:") || !strings.Contains(stderr, "HTTP/2") {
		t.Errorf("start line: %s", stderr)
	}
	sum, info, conns, _ := readSession(t, out)
	if sum.Events == 0 || len(sum.Errors) != 0 || len(conns) != 5 || !strings.HasPrefix(info.Target, "https://") {
		t.Fatalf("summary %+v, %d conns, target %s; %s", sum, len(conns), info.Target, stdout)
	}
	for _, c := range conns {
		if c.LocalAddr != conns[0].LocalAddr || c.Events == 0 {
			t.Errorf("conn %+v: not on the shared connection %s, or no events", c, conns[0].LocalAddr)
		}
	}
}

// TestRunConfigGroupPaths: a group object carries its own path; the config
// stored in the session file reads back the same; bad group objects are
// rejected with the field named.
func TestRunConfigGroupPaths(t *testing.T) {
	cfg, err := parseRunConfig("c.json", []byte(`{"symbolGroups": [{"symbols": ["AAPL","MSFT"], "path": "/v2/q?s={symbols}"}, ["AMZN"], {"symbols": "NVDA,AMD"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg.SymbolGroups) != "[[AAPL MSFT] [AMZN] [NVDA AMD]]" || fmt.Sprint(cfg.GroupPaths) != "[/v2/q?s={symbols}  ]" {
		t.Fatalf("groups %v paths %q", cfg.SymbolGroups, cfg.GroupPaths)
	}
	raw, err := json.Marshal(cfg.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	back, err := parseRunConfig("stored", raw)
	if err != nil {
		t.Fatalf("the stored config does not read back: %v\n%s", err, raw)
	}
	if fmt.Sprint(back.GroupPaths) != fmt.Sprint(cfg.GroupPaths) || fmt.Sprint(back.SymbolGroups) != fmt.Sprint(cfg.SymbolGroups) {
		t.Fatalf("round trip: %v %q", back.SymbolGroups, back.GroupPaths)
	}
	plain, _ := json.Marshal(runConfig{SymbolGroups: [][]string{{"A"}}})
	if !strings.Contains(string(plain), `"symbol-groups":[["A"]]`) {
		t.Fatalf("a group without a path is not a plain array: %s", plain)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"symbolGroups": [{"symbols": ["A"], "colour": 1}]}`, `c.json:1: "symbolGroups": group 1: unknown field "colour" (a group object has "symbols" and "path")`},
		{`{"symbolGroups": [["A"], {"path": "/x"}]}`, `c.json:1: "symbolGroups": group 2: a group object needs "symbols"`},
		{`{"symbolGroups": [{"symbols": ["A"], "path": "x"}]}`, `c.json:1: "symbolGroups": group 1: path must start with /, got "x"`},
		{`{"symbolGroups": [{"symbols": 5}]}`, `c.json:1: "symbolGroups": group 1: symbols must be an array of strings or "A,B", got 5`},
	} {
		if _, err := parseRunConfig("c.json", []byte(tc.in)); err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %s", tc.in, err, tc.want)
		}
	}
}

// TestEveryCommandHelpHasExamples: every subcommand in the table, and each
// of their own subcommands, answers --help with exit 0 and an Examples
// section.
func TestEveryCommandHelpHasExamples(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	var mu sync.Mutex
	missing := []string{}
	check := func(args ...string) string {
		stdout, stderr, code := runCLI(t, ctx, append(args, "--help")...)
		if code != 0 || !strings.Contains(stdout, "Examples:") {
			mu.Lock()
			missing = append(missing, fmt.Sprintf("%v (exit %d, %q)", args, code, strings.TrimSpace(stderr)))
			mu.Unlock()
		}
		return stdout
	}
	for name, c := range commands {
		if c.hidden {
			continue
		}
		check(name)
		for _, sub := range c.subs {
			check(name, sub.name)
		}
	}
	if len(missing) > 0 {
		t.Errorf("--help without examples or failing: %s", strings.Join(missing, "; "))
	}
}

// TestServeTLSCertKey: serve --tls-cert/--tls-key serves the given
// certificate; tail trusts it with --ca, over HTTP/2 too.
func TestServeTLSCertKey(t *testing.T) {
	dir := t.TempDir()
	cert, certPEM, err := tlsutil.SelfSigned(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	url := startServeCLI(t, "--listen", "127.0.0.1:0", "--event-rate", "3000", "--tls-cert", certFile, "--tls-key", keyFile)
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	for _, flags := range [][]string{{"--ca", certFile}, {"--ca", certFile, "--http2"}} {
		args := append([]string{"tail", "--count", "1", strings.Replace(url, "127.0.0.1", "localhost", 1) + "/stream?symbols=AAPL"}, flags...)
		stdout, stderr, code := runCLI(t, ctx, args...)
		if code != 0 || !strings.Contains(stdout, "quote") {
			t.Fatalf("tail %v: exit %d\n%s\n%s", flags, code, stdout, stderr)
		}
	}
}
