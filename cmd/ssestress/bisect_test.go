package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/proxy"
)

// TestBisectChain: two in-process proxies in front of the embedded server,
// client → p1 → p2 → server, with a reset fault only on p2's upstream hop.
// Run against all three entry points at once, bisect names the hop
// p2 → server.
func TestBisectChain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 1200, Max: 1200}, Retry: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	spec, err := proxy.ParseFault("reset:hop=upstream,events=3")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := proxy.Start(ctx, proxy.Config{Listen: "127.0.0.1:0", Upstream: srv.URL, Name: "p2", Faults: []proxy.FaultSpec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	p1, err := proxy.Start(ctx, proxy.Config{Listen: "127.0.0.1:0", Upstream: p2.URL(), Name: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	dir := filepath.Join(t.TempDir(), "bisect")
	stdout, stderr, code := reportCLI(t, "bisect", "--entry", "p1="+p1.URL(), "--entry", "p2="+p2.URL(), "--entry", "server="+srv.URL,
		"--scenario=flood", "--connections=6", "--rate=50", "--duration=2s", "--dir", dir, "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		From, To  string
		Monotone  bool
		Statement string
		Points    []struct {
			Name     string
			Attempts int64
			Resets   int64
		}
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if res.From != "p2" || res.To != "server" || !res.Monotone || !strings.HasPrefix(res.Statement, "The resets and cuts enter on the hop p2 → server: p2: ") {
		t.Fatalf("result %+v", res)
	}
	if len(res.Points) != 3 || res.Points[0].Resets == 0 || res.Points[1].Resets == 0 || res.Points[2].Resets != 0 {
		t.Errorf("points %+v", res.Points)
	}
	for _, p := range res.Points {
		if p.Attempts < 2 {
			t.Errorf("%s: %d connections, want its share of 6 (2) or more with reconnects", p.Name, p.Attempts)
		}
	}
}

func TestBisectBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bisect", "--entry", "a=http://127.0.0.1:1"}, "ssestress: bisect: give at least two --entry NAME=URL, outermost first\n"},
		{[]string{"bisect", "--entry", "a", "--entry", "b=http://127.0.0.1:1"}, `ssestress: bisect: --entry "a": use NAME=URL, e.g. --entry lb=http://lb:80` + "\n"},
		{[]string{"bisect", "--entry", "a=http://127.0.0.1:1", "--entry", "a=http://127.0.0.1:2"}, `ssestress: bisect: --entry "a=http://127.0.0.1:2": names must be distinct and hold no / \ or space` + "\n"},
		{[]string{"bisect", "--entry", "a=ftp://x", "--entry", "b=http://127.0.0.1:1"}, `ssestress: bisect: --entry "a=ftp://x": the URL must be http:// or https:// with a host` + "\n"},
		{[]string{"bisect", "--entry", "a=http://127.0.0.1:1", "--entry", "b=http://127.0.0.1:2", "--target", "http://x"}, "ssestress: bisect: --target: set per entry point: give --entry NAME=URL\n"},
		{[]string{"bisect", "--entry", "a=http://127.0.0.1:1", "--entry", "b=http://127.0.0.1:2", "--format", "yaml"}, `ssestress: bisect: --format "yaml": use csv, html, json, markdown, table` + "\n"},
		{[]string{"bisect", "--entry", "a=http://127.0.0.1:1", "--entry", "b=http://127.0.0.1:2", "--scenario", "nope"}, "ssestress: bisect: run: --scenario: "},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			_, stderr, code := reportCLI(t, tc.args...)
			if code != 2 || !strings.HasPrefix(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want 2, %q", code, stderr, tc.want)
			}
		})
	}
}

func TestSplitConnections(t *testing.T) {
	if got := splitConnections([]string{"--connections", "7"}, 3); got[0] != 3 || got[1] != 2 || got[2] != 2 {
		t.Errorf("7 over 3: %v", got)
	}
	if got := splitConnections([]string{"--connections=2"}, 3); got[0] != 1 || got[1] != 1 || got[2] != 1 {
		t.Errorf("2 over 3: %v", got)
	}
	if got := splitConnections([]string{"--duration=1s"}, 2); got[0] != -1 {
		t.Errorf("none: %v", got)
	}
	got := withConnections([]string{"--scenario=flood", "--connections", "7", "--duration=1s"}, 3)
	if strings.Join(got, " ") != "--scenario=flood --duration=1s --connections=3" {
		t.Errorf("withConnections: %q", got)
	}
}
