package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/proxy"
)

// reportCLI runs an ssestress command line as main does: stdout, stderr
// and the exit code.
func reportCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	code := exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// reportSession writes a small session file with client errors: resets
// after 1 s of silence and a few clean EOFs.
func reportSession(t *testing.T, path string) {
	t.Helper()
	w, err := session.Create(path, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	w.PutMeta(session.MetaRun, session.RunInfo{Command: "run", Scenario: "flood", StartedAt: t0, EndedAt: t0.Add(20 * time.Second)})
	for i := range 20 {
		start := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		age := time.Duration(2000+i*150) * time.Millisecond
		idle := time.Duration(1000+i*3) * time.Millisecond
		class := errclass.ECONNRESET
		if i%5 == 4 {
			class, idle = errclass.EOF, time.Duration(50+i*20)*time.Millisecond
		}
		local := fmt.Sprintf("127.0.0.1:%d", 40000+i)
		w.Put(session.ConnRecord{ClientID: fmt.Sprintf("c%04d", i), Scenario: "flood", Group: "AAPL", URL: "http://127.0.0.1:8090/stream",
			LocalAddr: local, Start: start, FirstEvent: start.Add(20 * time.Millisecond), End: start.Add(age), Events: 12, EndClass: class})
		w.Put(session.ErrorRecord{Time: start.Add(age), Source: "client", ClientID: fmt.Sprintf("c%04d", i), Scenario: "flood", Group: "AAPL",
			Class: class, Message: "read: connection reset by peer", LocalAddr: local, Age: session.Seconds(age), Idle: session.Seconds(idle)})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReportBadInput(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "run.db")
	reportSession(t, db)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("these are notes, not a session file at all"), 0o644)
	prod := filepath.Join(dir, "prod.csv")
	os.WriteFile(prod, []byte("when,what\n2025-03-04T05:06:09Z,ECONNRESET\n"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"report"}, 2, "ssestress: report: no session file given (usage: ssestress report SESSION.db [MORE.db ...] [--format table|markdown|json|csv|html] [-o FILE] [--graphs DIR] [--width N])\n"},
		{[]string{"report", db, "--format", "yaml"}, 2, `ssestress: report: --format "yaml": use csv, html, json, markdown, table` + "\n"},
		{[]string{"report", db, "--expect", "ECONNRESET"}, 2, "ssestress: report: --expect goes with --reproduction\n"},
		{[]string{"report", "--baseline", db, db, "--reproduction"}, 2, "ssestress: report: --baseline, --production and --reproduction do not combine: choose one\n"},
		{[]string{"report", db, "--production-age", "age"}, 2, "ssestress: report: the --production-* column flags go with --production FILE\n"},
		{[]string{"report", db, "--production", prod, "--production-unit", "fortnights"}, 2, `ssestress: report: --production-unit: unknown unit "fortnights" (use ns, us, ms, s, m or h)` + "\n"},
		{[]string{"report", db, "--nonsense"}, 2, "ssestress: report: flag provided but not defined: -nonsense (see ssestress report --help)\n"},
		{[]string{"report", filepath.Join(dir, "missing.db")}, 1, "ssestress: report: stat " + filepath.Join(dir, "missing.db") + ": no such file or directory\n"},
		{[]string{"report", text}, 4, "ssestress: report: " + text + " is not an ssestress session file"},
		{[]string{"report", db, "--production", prod}, 1, "ssestress: report: production errors: prod.csv has no time column (tried time, timestamp, ts, @timestamp, date; name it with --production-time)\n"},
		{[]string{"report", db, "--production", prod, "--production-time", "when"}, 1, "ssestress: report: production errors: prod.csv has neither an error class nor a message column (name one with --production-class or --production-message)\n"},
		{[]string{"report", "--baseline", db, db, "--graphs", dir}, 2, "ssestress: report: --graphs needs a plain report (not --baseline, --production or --reproduction)\n"},
		{[]string{"report", db, "--width", "30"}, 2, "ssestress: report: --width 30: give at least 40 columns, or 0 for no limit\n"},
		{[]string{"report", db, "--width", "100", "--format", "html"}, 2, "ssestress: report: --width goes with --format table (the other formats are not wrapped)\n"},
		{[]string{"report", db, "--section", "summary"}, 2, "ssestress: report: --section goes with --format csv\n"},
		{[]string{"report", db, "--format", "csv"}, 2, "ssestress: report: --format csv writes one table per file: --section NAME for one table on standard output (or -o FILE), or -o DIR for every table as DIR/<section>.csv\n"},
		{[]string{"report", db, "--format", "csv", "--section", "nope"}, 2, `ssestress: report: --section: unknown report section "nope" (sections: verdict, summary, error_patterns, `},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			stdout, stderr, code := reportCLI(t, tc.args...)
			if code != tc.code || !strings.HasPrefix(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit %d, stderr %q", code, stderr, tc.code, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "run.db")); err != nil {
		t.Fatal(err)
	}
}

func TestReportHelp(t *testing.T) {
	stdout, _, code := reportCLI(t, "report", "--help")
	if code != 0 || !strings.Contains(stdout, "Usage: ssestress report SESSION.db") || !strings.Contains(stdout, "ssestress report --baseline before.db after.db") {
		t.Errorf("exit %d:\n%s", code, stdout)
	}
}

// TestReportFormats: every format, flags after the file, --out and
// --graphs.
func TestReportFormats(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "run.db")
	reportSession(t, db)
	for _, format := range []string{"table", "markdown", "csv", "json", "html"} {
		args := []string{"report", db, "--format", format}
		if format == "csv" {
			args = append(args, "--section", "error_patterns")
		}
		stdout, stderr, code := reportCLI(t, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, stderr)
		}
		want := map[string]string{
			"table":    "== Verdict ==",
			"markdown": "## Errors by class × hop × origin",
			"csv":      "class,hop,origin,cause,via,confidence,fault,evidence,count,share\nECONNRESET,?,unknown,unknown,,none,,none,16,0.8\n",
			"json":     `"statement": "Not enough evidence to name who sent the resets: 16 of 16 client errors (ECONNRESET 16).`,
			"html":     `<h2 id="fingerprints">`,
		}[format]
		if !strings.Contains(stdout, want) {
			t.Errorf("%s output lacks %q:\n%.600s", format, want, stdout)
		}
	}
	out := filepath.Join(dir, "report.html")
	graphs := filepath.Join(dir, "graphs")
	_, stderr, code := reportCLI(t, "report", "--format=html", db, "--out", out, "--graphs", graphs)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "wrote html report to "+out) || !strings.Contains(stderr, "graphs to "+graphs) {
		t.Errorf("stderr %q", stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Fatalf("html %v: %.300s", err, b)
	}
	svgs, _ := filepath.Glob(filepath.Join(graphs, "*.svg"))
	if len(svgs) == 0 {
		t.Error("no svg written")
	}

	// CSV: every table as DIR/<section>.csv; one of them to a file.
	tables := filepath.Join(dir, "tables")
	_, stderr, code = reportCLI(t, "report", db, "--format", "csv", "-o", tables)
	if code != 0 || !strings.Contains(stderr, "csv tables to "+tables) {
		t.Fatalf("csv -o DIR: exit %d: %s", code, stderr)
	}
	for _, section := range []string{"verdict", "summary", "error_patterns", "files"} {
		b, err := os.ReadFile(filepath.Join(tables, section+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil || len(rows) < 2 {
			t.Errorf("%s.csv: %v, %d rows", section, err, len(rows))
		}
	}
	one := filepath.Join(dir, "summary.csv")
	_, stderr, code = reportCLI(t, "report", db, "--format", "csv", "--section", "summary", "-o", one)
	if b, _ := os.ReadFile(one); code != 0 || !bytes.HasPrefix(b, []byte("scenario,files,duration_s,attempts,")) {
		t.Errorf("csv --section -o FILE: exit %d: %s\n%s", code, stderr, b)
	}
}

// TestReportModes: --baseline, --reproduction and --production through the
// command line.
func TestReportModes(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "run.db")
	reportSession(t, db)

	stdout, stderr, code := reportCLI(t, "report", "--baseline", db, db, "--format", "json")
	if code != 0 {
		t.Fatalf("baseline: exit %d: %s", code, stderr)
	}
	var cmp struct{ Judgement string }
	if err := json.Unmarshal([]byte(stdout), &cmp); err != nil || !strings.HasPrefix(cmp.Judgement, "No significant change in the rate of resets and cuts") {
		t.Errorf("baseline judgement %q (%v)", cmp.Judgement, err)
	}

	// A run without resets as the baseline: the resets of run.db are a
	// significant regression, and the command says so with exit 3 after
	// printing the whole comparison.
	quiet := filepath.Join(dir, "quiet.db")
	qw, err := session.Create(quiet, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	qw.PutMeta(session.MetaRun, session.RunInfo{Command: "run", Scenario: "flood", StartedAt: t0, EndedAt: t0.Add(20 * time.Second)})
	for i := range 20 {
		qw.Put(session.ConnRecord{ClientID: fmt.Sprintf("c%04d", i), Scenario: "flood", Start: t0, End: t0.Add(20 * time.Second), Events: 12, ClosedBy: session.ClosedBySelf})
	}
	if err := qw.Close(); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = reportCLI(t, "report", "--baseline", quiet, db)
	if code != 3 || !strings.Contains(stdout, "Resets or cuts appeared") || !strings.Contains(stderr, "report: --baseline: Resets or cuts appeared") {
		t.Errorf("regression: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	stdout, stderr, code = reportCLI(t, "report", "--baseline", db, quiet)
	if code != 0 || !strings.Contains(stdout, "Fewer resets") {
		t.Errorf("improvement: exit %d, stderr %q\n%s", code, stderr, stdout)
	}

	stdout, stderr, code = reportCLI(t, "report", "--reproduction", "--expect", "ECONNRESET", db, db)
	if code != 0 || !strings.Contains(stdout, "Reproduced ECONNRESET in 2 of 2 runs (100%).") {
		t.Errorf("reproduction: exit %d: %s\n%s", code, stderr, stdout)
	}

	// Production errors in a log's own words, from the session's errors.
	r, err := session.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	errs, _ := session.All[session.ErrorRecord](r, session.BucketErrors)
	r.Close()
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"when", "error", "age_ms", "idle_ms"})
	for _, e := range errs {
		msg := "Error: read ECONNRESET"
		if e.Class == errclass.EOF {
			msg = "stream ended: EOF"
		}
		w.Write([]string{e.Time.Format(time.RFC3339Nano), msg, fmt.Sprint(e.Age.D().Milliseconds()), fmt.Sprint(e.Idle.D().Milliseconds())})
	}
	w.Flush()
	prod := filepath.Join(dir, "prod.csv")
	os.WriteFile(prod, buf.Bytes(), 0o644)
	stdout, stderr, code = reportCLI(t, "report", db, "--production", prod, "--production-time", "when", "--production-message", "error",
		"--production-age", "age_ms", "--production-idle", "idle_ms", "--production-unit", "ms")
	if code != 0 || !strings.Contains(stdout, "The reproduction matches production (class mix, age, idle time compared") {
		t.Errorf("production: exit %d: %s\n%s", code, stderr, stdout)
	}
}

// TestReportRealIdleTimeout is the acceptance test on real records: the
// embedded feed, an in-process proxy p1 with an idle-timeout of 60 s at
// --time-scale 60 (1 s) that resets the client hop, and ssestress run
// through it. The report over the run's and the proxy's session files
// names the idle cluster at 1 s and the proxy's client hop.
func TestReportRealIdleTimeout(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6, Max: 6}, Heartbeat: -1, Retry: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	proxyDB := filepath.Join(dir, "proxy.db")
	w, err := session.Create(proxyDB, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.PutMeta(session.MetaRun, session.RunInfo{Command: "proxy", Args: []string{"--name", "p1", "--time-scale", "60"}, StartedAt: time.Now()})
	spec, err := proxy.ParseFault("idle-timeout:hop=client,idle=60s,action=rst")
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.Start(ctx, proxy.Config{Listen: "127.0.0.1:0", Upstream: srv.URL, Name: "p1", TimeScale: 60,
		Faults: []proxy.FaultSpec{spec}, Session: w})
	if err != nil {
		t.Fatal(err)
	}
	runDB := filepath.Join(dir, "run.db")
	_, stderr, code := reportCLI(t, "run", "--scenario=flood", "--connections=4", "--rate=50", "--duration=4s",
		"--monitor-interval=500ms", "--target="+p.URL()+"/stream?symbols={symbols}", "--out="+runDB)
	p.Close()
	w.Close()
	if code != 0 {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	if d := os.Getenv("KEEP_REPORT_DIR"); d != "" {
		copyFile(t, runDB, filepath.Join(d, "run.db"))
		copyFile(t, proxyDB, filepath.Join(d, "proxy.db"))
	}
	stdout, stderr, code := reportCLI(t, "report", runDB, proxyDB, "--format", "json")
	if code != 0 {
		t.Fatalf("report: exit %d: %s", code, stderr)
	}
	var rep struct {
		Fingerprints []struct {
			Class, Dimension, Match string
			CenterS                 float64 `json:"center_s"`
			Count                   int64
		}
		Verdict attribution.Verdict
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	v := rep.Verdict
	if x := v.Cause; x == nil || x.Kind != attribution.KindInjected || x.Sender.Name != "p1" || x.Where() != "p1/client" || x.FaultKind != "idle-timeout" {
		t.Fatalf("verdict %+v\n%s", v, stdout[:min(len(stdout), 4000)])
	}
	found := false
	for _, c := range rep.Fingerprints {
		// 1 s idle, with a tolerance for timers on a loaded machine.
		if c.Class == errclass.ECONNRESET && c.Dimension == "idle" && c.CenterS >= 0.95 && c.CenterS <= 1.3 &&
			strings.Contains(c.Match, "matches the injected idle-timeout on proxy p1 client hop") {
			found = true
		}
	}
	if !found {
		t.Errorf("no idle cluster at 1 s naming the fault: %+v", rep.Fingerprints)
	}
}

// copyFile keeps a test's session file for a look by hand
// (KEEP_REPORT_DIR=/some/dir).
func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
