package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/proxy"
)

// TestReportFitsWidth renders two real reports in the table format at 80
// and 120 columns: the README's demo (time-compressed: a flood through the
// in-process proxy whose upstream hop resets half the connections) and a
// run with resets on several hops (the in-process proxy's upstream hop,
// and the client hop of a second proxy b between it and the feed, whose
// file joins the report). No line passes the width, and the first
// paragraph is the verdict's statement, wrapped.
func TestReportFitsWidth(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*runTestTimeout)
	defer cancel()

	demo := filepath.Join(dir, "demo.db")
	_, stderr, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=20", "--rate=100", "--duration=3s",
		"--event-rate=1200", "--out="+demo, "--fault", "reset:hop=upstream,after=1s,toxicity=0.5")
	if code != 0 {
		t.Fatalf("demo run: exit %d: %s", code, stderr)
	}

	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 20, Max: 20}, Retry: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	bDB := filepath.Join(dir, "b.db")
	w, err := session.Create(bDB, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.PutMeta(session.MetaRun, session.RunInfo{Command: "proxy", Args: []string{"--name", "b"}, StartedAt: time.Now()})
	spec, err := proxy.ParseFault("reset:hop=client,after=1500ms,toxicity=0.4")
	if err != nil {
		t.Fatal(err)
	}
	b, err := proxy.Start(ctx, proxy.Config{Listen: "127.0.0.1:0", Upstream: srv.URL, Name: "b", Faults: []proxy.FaultSpec{spec}, Session: w})
	if err != nil {
		t.Fatal(err)
	}
	hops := filepath.Join(dir, "hops.db")
	_, stderr, code = runCLI(t, ctx, "run", "--scenario=flood", "--connections=20", "--rate=100", "--duration=4s",
		"--target="+b.URL()+"/stream?symbols={symbols}", "--out="+hops, "--fault", "reset:hop=upstream,after=1s,toxicity=0.3")
	b.Close()
	w.Close()
	if code != 0 {
		t.Fatalf("run through b: exit %d: %s", code, stderr)
	}

	for name, files := range map[string][]string{"demo": {demo}, "hops": {hops, bDB}} {
		stdout, stderr, code := reportCLI(t, append([]string{"report", "--format", "json"}, files...)...)
		if code != 0 {
			t.Fatalf("%s: report --format json: exit %d: %s", name, code, stderr)
		}
		var rep struct {
			Verdict struct{ Statement string }
			Hops    []struct{ Proxy, Hop string }
		}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatal(err)
		}
		if name == "hops" && len(rep.Hops) < 4 {
			t.Errorf("hops: %d proxy hops in the report, want both hops of both proxies: %+v", len(rep.Hops), rep.Hops)
		}
		for _, width := range []string{"80", "120"} {
			args := append([]string{"report", "--width", width}, files...)
			stdout, stderr, code := reportCLI(t, args...)
			if code != 0 {
				t.Fatalf("%s at %s: exit %d: %s", name, width, code, stderr)
			}
			if d := os.Getenv("KEEP_REPORT_DIR"); d != "" {
				os.WriteFile(filepath.Join(d, name+"-"+width+".txt"), []byte(stdout), 0o644)
			}
			limit := map[string]int{"80": 80, "120": 120}[width]
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			for i, l := range lines {
				if n := utf8.RuneCountInString(l); n > limit {
					t.Errorf("%s at %s columns: line %d is %d wide: %q", name, width, i+1, n, l)
				}
			}
			first, _, _ := strings.Cut(stdout, "\n\n")
			if strings.Join(strings.Fields(first), " ") != rep.Verdict.Statement {
				t.Errorf("%s at %s columns: the first paragraph is not the verdict:\n%s\nwant %q", name, width, first, rep.Verdict.Statement)
			}
			if len(lines) < 20 || !strings.Contains(stdout, "== Errors by class × hop × origin ==") {
				t.Errorf("%s at %s columns: %d lines, no pattern table", name, width, len(lines))
			}
		}
	}
}
