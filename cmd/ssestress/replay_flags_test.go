package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
	"github.com/ssestress/ssestress/replay"
)

// TestReplayRunRequestFlags: replay run takes run's request flags. A
// target that demands a bearer token (--token-file), a cookie and an API
// key (--header) gets them on every replayed stream; none of them is in
// the session file's bytes, on stdout or stderr; the stored args and
// config hold them redacted.
func TestReplayRunRequestFlags(t *testing.T) {
	path := recordTestSession(t)
	srv := authServer(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600)
	out := filepath.Join(dir, "auth-replay.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "replay", "run", "--recording", path, "--target", srv.URL,
		"--token-file", tokenFile, "--cookie", "sid="+testCookie, "--header", "X-Api-Key: "+testAPIKey,
		"--header=X-Trace: visible", "--duration=1s", "--json", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sum session.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Clients != 4 || sum.Events == 0 || len(sum.Errors) != 0 {
		t.Fatalf("summary %s (%v); stderr %s", stdout, err, stderr)
	}
	assertNoSecret(t, "stdout", []byte(stdout))
	assertNoSecret(t, "stderr", []byte(stderr))
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "the session file", raw)
	_, info, conns, _ := readSession(t, out)
	args := strings.Join(info.Args, " ")
	for _, want := range []string{"sid=[redacted]", "X-Api-Key: [redacted]", "--header=X-Trace: visible", "--token-file " + tokenFile} {
		if !strings.Contains(args, want) {
			t.Errorf("stored args lack %q: %s", want, args)
		}
	}
	var cfg replayRunConfig
	if err := json.Unmarshal(info.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Header.Get("Authorization") != redactedValue || cfg.Header.Get("X-Api-Key") != redactedValue || cfg.Header.Get("X-Trace") != "visible" {
		t.Errorf("stored config headers %v", cfg.Header)
	}
	for _, c := range conns {
		if c.Status != 200 || c.Events == 0 {
			t.Errorf("conn %+v did not get through", c)
		}
	}

	// Without the token every stream is refused: the flags were what let
	// them through.
	stdout, stderr, code = runCLI(t, ctx, "replay", "run", "--recording", path, "--target", srv.URL,
		"--cookie", "sid="+testCookie, "--header", "X-Api-Key: "+testAPIKey, "--duration=500ms", "--json",
		"--out", filepath.Join(dir, "noauth.db"))
	if code != 0 || !strings.Contains(stdout, `"HTTP_401":4`) {
		t.Fatalf("without the token: exit %d: %s\n%s", code, stdout, stderr)
	}
}

// TestReplayRunViaProxyFault: replay run takes run's hop flags: --fault
// starts the in-process proxy between the replayed clients and the
// target, the reset fires on the upstream hop, and the session file holds
// the proxy's records and the attributed resets, as run's does.
func TestReplayRunViaProxyFault(t *testing.T) {
	path := recordTestSession(t)
	rec, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	target, err := replay.Start("127.0.0.1:0", rec, replay.Config{NoEndings: true})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Shutdown()
	out := filepath.Join(t.TempDir(), "faulted.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "replay", "run", "--recording", path, "--target", target.URL,
		"--scale=2", "--duration=1200ms", "--fault", "reset:hop=upstream,after=300ms", "--json", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "ssestress replay run: via in-process proxy http://127.0.0.1:") {
		t.Errorf("stderr does not say the proxy started:\n%s", stderr)
	}
	var sum session.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Clients != 8 || sum.Errors["ECONNRESET"] < 8 {
		t.Fatalf("summary %s (%v)", stdout, err)
	}
	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	faults, _ := session.All[session.FaultEvent](r, session.BucketFaults)
	hopConns, _ := session.All[session.HopConn](r, session.BucketHopConns)
	fired := 0
	for _, f := range faults {
		if f.FaultKind == "reset" && f.Hop == session.HopUpstream {
			fired++
		}
	}
	if fired < 8 || len(hopConns) == 0 {
		t.Fatalf("%d upstream reset firings, %d hop records", fired, len(hopConns))
	}
	if !strings.Contains(stderr, "ssestress replay run: Proxy run-proxy injected the resets, on its upstream hop (fault reset:hop=upstream") {
		t.Errorf("stderr lacks the end line:\n%s", stderr)
	}
	var info session.RunInfo
	if ok, _ := r.Meta(session.MetaRun, &info); !ok || info.Command != "replay run" {
		t.Errorf("run info %+v", info)
	}
}

// liveURL waits for "live view on URL/metrics" in what a command printed.
func liveURL(t *testing.T, out *runTestBuffer, done <-chan int) string {
	t.Helper()
	re := regexp.MustCompile(`live view on (http://\S+)/metrics`)
	var url string
	waitFor(t, "the live view's URL", func() bool {
		select {
		case code := <-done:
			t.Fatalf("the command exited %d before its live view was seen:\n%s", code, out.String())
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

// TestReplayLiveView: replay run --http serves /metrics (Prometheus text,
// labelled replay run) and /report while it runs, here in a --repeat
// series whose summary names the command; replay serve --http serves its
// own counters.
func TestReplayLiveView(t *testing.T) {
	path := recordTestSession(t)
	rec, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	target, err := replay.Start("127.0.0.1:0", rec, replay.Config{NoEndings: true})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Shutdown()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	var stdout, stderr runTestBuffer
	done := make(chan int, 1)
	go func() {
		done <- exitCode(run(ctx, []string{"replay", "run", "--recording", path, "--target", target.URL,
			"--duration=2s", "--http", "127.0.0.1:0", "--repeat", "2", "--json", "--out", filepath.Join(dir, "live.db")}, &stdout, &stderr), &stderr)
	}()
	url := liveURL(t, &stderr, done)
	fams := parseMetrics(t, url+"/metrics")
	if v, ok := metricValue(fams, "ssestress_info", "command", "replay run", "scenario", "replay"); !ok || v != 1 {
		t.Errorf("ssestress_info{command=\"replay run\"} = %v, %v", v, ok)
	}
	if _, ok := metricValue(fams, "ssestress_clients_total"); !ok {
		t.Error("no ssestress_clients_total")
	}
	resp, err := http.Get(url + "/report?format=json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"scenarios"`) {
		t.Errorf("/report: %s %s", resp.Status, body)
	}
	var code int
	select {
	case code = <-done:
	case <-ctx.Done():
		t.Fatal("replay run did not end")
	}
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	ss := readSeries(t, []byte(stdout.String()))
	if ss.Command != "replay run" || ss.Completed != 2 || ss.Reproduction == nil || ss.Reproduction.Total != 2 {
		t.Fatalf("series %+v", ss)
	}
	for _, f := range []string{"live-1.db", "live-2.db", "live-repeat.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}

	// replay serve --http.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var serveOut, serveErr runTestBuffer
	serveDone := make(chan int, 1)
	go func() {
		serveDone <- exitCode(run(sctx, []string{"replay", "serve", "--recording", path, "--listen", "127.0.0.1:0",
			"--http", "127.0.0.1:0"}, &serveOut, &serveErr), &serveErr)
	}()
	url = liveURL(t, &serveOut, serveDone)
	m := regexp.MustCompile(`on (http://\S+) \(speed`).FindStringSubmatch(serveOut.String())
	if m == nil {
		t.Fatalf("no server URL in %q", serveOut.String())
	}
	sreq, _ := http.NewRequestWithContext(ctx, "GET", m[1]+"/stream?symbols=GOOG", nil)
	sresp, err := http.DefaultTransport.RoundTrip(sreq)
	if err != nil {
		t.Fatal(err)
	}
	dec := sse.NewDecoder(sresp.Body, 0)
	for range 2 {
		if _, err := dec.Next(); err != nil {
			t.Fatalf("replayed stream: %v", err)
		}
	}
	sresp.Body.Close()
	fams = parseMetrics(t, url+"/metrics")
	if v, ok := metricValue(fams, "ssestress_replay_streams_served_total"); !ok || v != 1 {
		t.Errorf("streams served = %v, %v; want 1", v, ok)
	}
	if v, ok := metricValue(fams, "ssestress_replay_frames_total"); !ok || v == 0 {
		t.Errorf("frames = %v, %v", v, ok)
	}
	if v, ok := metricValue(fams, "ssestress_info", "command", "replay serve"); !ok || v != 1 {
		t.Errorf("ssestress_info = %v, %v", v, ok)
	}
	stop()
	select {
	case code := <-serveDone:
		if code != 0 {
			t.Fatalf("replay serve exit %d: %s", code, serveErr.String())
		}
	case <-time.After(runTestTimeout):
		t.Fatal("replay serve did not stop")
	}
}

// TestReplayRunFlagsBadInput: the shared flags' mistakes are one line
// naming replay run.
func TestReplayRunFlagsBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.db")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--via-proxy", "--http2"}, "replay run: --http2 with --via-proxy"},
		{[]string{"--fault", "explode"}, "replay run: --fault"},
		{[]string{"--iface=lo"}, "replay run: --iface and --pcap need --capture"},
		{[]string{"--expect=ECONNRESET"}, "replay run: --expect goes with --repeat N"},
		{[]string{"--header=NoColon"}, "replay run: --header number 1 is not 'Name: value'"},
		{[]string{"--token-file", path}, "replay run: --token-file: stat " + path},
		{[]string{"--http", "127.0.0.1:http:x"}, "replay run: --http"},
	} {
		args := append([]string{"replay", "run", "--recording", path, "--target", "http://127.0.0.1:1"}, tc.args...)
		_, stderr, code := runCLI(t, context.Background(), args...)
		if code != 2 || !strings.HasPrefix(stderr, "ssestress: "+tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line starting %q", tc.args, code, stderr, tc.want)
		}
	}
}
