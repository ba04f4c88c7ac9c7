package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// readSeries parses a series summary (stdout of --json, or the file).
func readSeries(t *testing.T, raw []byte) seriesSummary {
	t.Helper()
	var ss seriesSummary
	if err := json.Unmarshal(raw, &ss); err != nil {
		t.Fatalf("series summary: %v\n%s", err, raw)
	}
	return ss
}

// TestRunRepeatDeterministicFault: --repeat 5 with a reset injected on the
// upstream hop 300 ms into every connection reproduces the reset in 5 of
// 5 runs with one fingerprint, writes one session file per run and the
// summary file, and --json prints that same summary.
func TestRunRepeatDeterministicFault(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=2", "--rate=100",
		"--duration=1s", "--event-rate=1200", "--fault", "reset:hop=upstream,after=300ms",
		"--repeat", "5", "--expect", "econnreset", "--json", "--out="+filepath.Join(dir, "det.db"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ss := readSeries(t, []byte(stdout))
	file, err := os.ReadFile(filepath.Join(dir, "det-repeat.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(readSeries(t, file))
	b, _ := json.Marshal(ss)
	if string(a) != string(b) {
		t.Errorf("the summary file and --json differ:\n%s\n%s", a, b)
	}
	rep := ss.Reproduction
	if ss.Command != "run" || ss.Repeat != 5 || ss.Completed != 5 || ss.Interrupted || len(ss.Runs) != 5 || rep == nil {
		t.Fatalf("series %+v", ss)
	}
	if rep.Expect != "ECONNRESET" || rep.Reproduced != 5 || rep.Total != 5 || rep.Rate != 1 || !rep.SameFingerprint || len(rep.Fingerprints) != 1 {
		t.Fatalf("reproduction %+v", rep)
	}
	fp := rep.Fingerprints[0].Fingerprint
	if fp.Class != "ECONNRESET" || fp.Fault != "reset" || !strings.HasSuffix(fp.Hop, "/upstream") {
		t.Errorf("fingerprint %+v", fp)
	}
	// The fault fires 300 ms after each upstream connection: the first
	// reset of every run comes then, plus scheduling on a loaded machine.
	if rep.FirstS.Min < 0.29 || rep.FirstS.Max > 0.9 || rep.FirstS.P50 < rep.FirstS.Min || rep.FirstS.P50 > rep.FirstS.Max {
		t.Errorf("time to first %+v, want about 0.3 s", rep.FirstS)
	}
	if !strings.Contains(rep.Statement, "Reproduced ECONNRESET in 5 of 5 runs (100%)") {
		t.Errorf("statement %q", rep.Statement)
	}
	for i, run := range ss.Runs {
		want := filepath.Join(dir, fmt.Sprintf("det-%d.db", i+1))
		if run.Run != i+1 || run.SessionFile != want || run.Summary.Errors["ECONNRESET"] == 0 || run.Summary.Clients != 2 {
			t.Errorf("run %d: %+v", i+1, run)
		}
		_, info, _, errs := readSession(t, want)
		if info.Command != "run" || info.EndedAt.IsZero() || len(errs) == 0 {
			t.Errorf("%s: run info %+v, %d errors", want, info, len(errs))
		}
	}
	if !strings.Contains(stderr, "ssestress run: run 5 of 5 ended: 2 clients, errors ECONNRESET") {
		t.Errorf("no per-run line on stderr:\n%s", stderr)
	}

	// The table form says the same, and report --reproduction on the files
	// agrees.
	stdout, stderr, code = reportCLI(t, "report", "--reproduction", "--expect", "ECONNRESET", "--format", "json",
		filepath.Join(dir, "det-1.db"), filepath.Join(dir, "det-2.db"), filepath.Join(dir, "det-3.db"),
		filepath.Join(dir, "det-4.db"), filepath.Join(dir, "det-5.db"))
	if code != 0 || !strings.Contains(stdout, `"reproduced": 5`) {
		t.Fatalf("report --reproduction: exit %d: %s\n%s", code, stderr, stdout)
	}
}

// TestRunRepeatToxicity: with toxicity=0.5 on a single connection a run
// reproduces the reset or not by chance; the rate the series reports is
// the one the session files hold, counted here from their error records.
// (Each of 0..5 is a valid outcome: 0 and 5 together have probability
// 1/16, too likely to refuse.)
func TestRunRepeatToxicity(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=1",
		"--duration=800ms", "--event-rate=1200", "--fault", "reset:hop=upstream,after=200ms,toxicity=0.5",
		"--repeat", "5", "--json", "--out="+filepath.Join(dir, "tox.db"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ss := readSeries(t, []byte(stdout))
	rep := ss.Reproduction
	if rep == nil || rep.Total != 5 || len(rep.Runs) != 5 || ss.Completed != 5 {
		t.Fatalf("series %+v", ss)
	}
	counted := 0
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("tox-%d.db", i)
		_, _, conns, errs := readSession(t, filepath.Join(dir, name))
		resets := 0
		for _, e := range errs {
			if e.Class == "ECONNRESET" {
				resets++
			}
		}
		if len(errs) != resets {
			t.Errorf("%s: errors other than resets: %+v", name, errs)
		}
		if len(conns) == 0 {
			t.Errorf("%s: no connection", name)
		}
		if resets > 0 {
			counted++
		}
		run := rep.Runs[i-1]
		if run.File != name || run.Reproduced != (resets > 0) || run.Matching != int64(resets) {
			t.Errorf("%s holds %d resets; the series says %+v", name, resets, run)
		}
	}
	if rep.Reproduced != counted || rep.Rate != float64(counted)/5 {
		t.Fatalf("the series reports %d of 5 (rate %v); the files hold %d", rep.Reproduced, rep.Rate, counted)
	}
	t.Logf("toxicity 0.5: reproduced in %d of 5 runs", counted)
}

// TestRunRepeatInterrupted: cancelling during the second run (what
// Ctrl-C does) ends that run as an interrupted run, starts no third, and
// the summary covers the completed run.
func TestRunRepeatInterrupted(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	second := filepath.Join(dir, "int-2.db")
	go func() {
		deadline := time.Now().Add(runTestTimeout)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(second); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		cancel()
	}()
	stdout, stderr, code := runCLI(t, ctx, "run", "--connections=2", "--rate=100", "--duration=1500ms",
		"--repeat", "4", "--out="+filepath.Join(dir, "int.db"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "interrupted: 1 of 4 runs completed") || !strings.Contains(stdout, "Reproduced an error in 0 of 1 runs") {
		t.Errorf("stdout:\n%s", stdout)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "int-repeat.json"))
	if err != nil {
		t.Fatal(err)
	}
	ss := readSeries(t, raw)
	if !ss.Interrupted || ss.Completed != 1 || len(ss.Runs) != 2 || !ss.Runs[1].Summary.Interrupted || ss.Reproduction == nil || ss.Reproduction.Total != 1 {
		t.Fatalf("series %+v", ss)
	}
	if _, err := os.Stat(filepath.Join(dir, "int-3.db")); err == nil {
		t.Fatal("a third run started after the interrupt")
	}
	r, err := session.Open(second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var sum session.Summary
	if ok, _ := r.Meta(session.MetaSummary, &sum); !ok || !sum.Interrupted {
		t.Fatalf("the interrupted run's file: %+v", sum)
	}
}

// TestRunRepeatBadInput: the series' files are never overwritten (checked
// before the first run), and bad --repeat/--expect values are one line.
func TestRunRepeatBadInput(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "s-3.db")
	os.WriteFile(existing, []byte("not mine"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--repeat=3", "--out=" + filepath.Join(dir, "s.db")}, "run: " + existing + " already exists (choose another --out, or remove it)", 2},
		{[]string{"--repeat=-1"}, "run: --repeat must be between 1 and 10000, got -1", 2},
		{[]string{"--expect=ECONNRESET"}, "run: --expect goes with --repeat N", 2},
		{[]string{"--repeat=2", "--expect=ECONN RESET"}, `run: --expect "ECONN RESET" is not an error class (e.g. ECONNRESET, HTTP_502, H2_RST_STREAM:CANCEL)`, 2},
		{[]string{"--repeat=2", "--shard=2/3", "--connections=2"}, "run: --shard: 3 shards need at least 3 connections, got 2 (shard 3/3 would open none)", 2},
		{[]string{"--shard=0/3"}, `run: --shard: invalid shard "0/3": shards are numbered from 1 (a Kubernetes completion index is the shard minus one)`, 2},
	} {
		args := append([]string{"run", "--duration=1s"}, tc.args...)
		stdout, stderr, code := runCLI(t, ctx, args...)
		if want := "ssestress: " + tc.want + "\n"; stderr != want || code != tc.code || stdout != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want %d, %q", tc.args, code, stderr, stdout, tc.code, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "s-1.db")); err == nil {
		t.Fatal("a run started although a file of the series existed")
	}
	if raw, _ := os.ReadFile(existing); string(raw) != "not mine" {
		t.Fatal("an existing file was overwritten")
	}
	// An unknown but well-formed class is a note, not an error.
	class := "SOMETHING_NEW"
	notes, err := checkRepeatFlags("run", 2, &class)
	if err != nil || len(notes) != 1 || !strings.Contains(notes[0], "not one of the error classes known here") {
		t.Errorf("unknown class: %v, %v", notes, err)
	}
	for _, known := range []string{"ECONNRESET", "HTTP_502", "H2_GOAWAY:NO_ERROR", "UNEXPECTED_EOF"} {
		if notes, err := checkRepeatFlags("run", 2, &known); err != nil || len(notes) != 0 {
			t.Errorf("%s: %v, %v", known, notes, err)
		}
	}
}
