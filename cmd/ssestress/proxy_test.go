package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
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
	if r.Count(session.BucketHopConns) != 2 || r.Count(session.BucketFaults) != 1 || r.Count(session.BucketTopology) != 2 || r.Count(session.BucketRecStreams) != 1 {
		t.Fatalf("hop_conns %d faults %d topology %d rec_streams %d", r.Count(session.BucketHopConns),
			r.Count(session.BucketFaults), r.Count(session.BucketTopology), r.Count(session.BucketRecStreams))
	}
	eps, _ := session.All[session.Endpoint](r, session.BucketTopology)
	if eps[0].Role != session.RoleProxy || eps[0].Name != "p1" || eps[0].Side != session.HopClient || eps[1].Side != session.HopUpstream || eps[1].URL != srv.URL {
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
	}
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
