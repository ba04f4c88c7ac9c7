package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssestress/ssestress/internal/session"
)

// TestParseThreshold: the grammar, strictly.
func TestParseThreshold(t *testing.T) {
	for in, want := range map[string]threshold{
		"ECONNRESET>0":                         {name: "ECONNRESET", op: ">", bound: 0},
		" errors >= 10 ":                       {name: "errors", op: ">=", bound: 10},
		"econnreset!=0":                        {name: "ECONNRESET", op: "!=", bound: 0},
		"HTTP_502==1":                          {name: "HTTP_502", op: "==", bound: 1},
		"H2_RST_STREAM:CANCEL>0":               {name: "H2_RST_STREAM:CANCEL", op: ">", bound: 0},
		"rate(errors)>1/h":                     {stat: "rate", name: "errors", op: ">", bound: 1, unit: "h"},
		"rate(ECONNRESET)>0.5/connection-hour": {stat: "rate", name: "ECONNRESET", op: ">", bound: 0.5, unit: "connection-hour"},
		"rate(events) < 100/s":                 {stat: "rate", name: "events", op: "<", bound: 100, unit: "s"},
		"resets>0":                             {name: "resets", op: ">", bound: 0},
		"p99(idle_at_error)<55s":               {stat: "p", q: 0.99, name: "idle_at_error", op: "<", bound: 55},
		"p99.9(age_at_error)<=1m":              {stat: "p", q: percent(99.9), name: "age_at_error", op: "<=", bound: 60},
		"max(idle_at_error)>350s":              {stat: "max", name: "idle_at_error", op: ">", bound: 350},
		"mean(age_at_error)<1500ms":            {stat: "mean", name: "age_at_error", op: "<", bound: 1.5},
	} {
		got, err := parseThreshold(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		want.expr = strings.TrimSpace(in)
		if got != want {
			t.Errorf("%q: %+v, want %+v", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"ECONNRESET":               "not METRIC OP VALUE",
		">0":                       "not METRIC OP VALUE",
		"ECONNRESET>":              "not METRIC OP VALUE",
		"ECONNRESET=>0":            "not METRIC OP VALUE",
		"ECONNRESTE>0":             "neither a count",
		"errors>ten":               "not a count",
		"errors>-1":                "not a count",
		"rate(errors)>1":           "a rate needs its unit: write 1/s, 1/min, 1/h, 1/d or 1/connection-hour",
		"rate(errors)>1/m":         "a rate needs its unit",
		"rate(idle_at_error)>1/h":  "is a distribution",
		"p99(errors)<1s":           "the statistics take age_at_error or idle_at_error",
		"p99(idle_at_error)<55":    "55 has no unit",
		"p0(idle_at_error)<5s":     "not a percentile",
		"median(idle_at_error)<5s": "unknown function",
		"rate(errors>1/h":          "ends with )",
	} {
		if _, err := parseThreshold(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// TestEvaluateThresholds: counts, resets by the attribution's definition,
// rates over run time and connection time, percentiles, and what has no
// value.
func TestEvaluateThresholds(t *testing.T) {
	f := &thresholdFlags{exprs: stringList{"ECONNRESET>0", "resets>=3", "cuts>0", "errors>10", "rate(errors)>1/h",
		"rate(ECONNRESET)>0.5/connection-hour", "p50(idle_at_error)<2s", "max(age_at_error)>=30s", "attempts==5"}}
	if err := f.check("run"); err != nil {
		t.Fatal(err)
	}
	d := thresholdData{errors: map[string]int64{"ECONNRESET": 2, "EPIPE": 1, "UNEXPECTED_EOF": 1, "EOF": 4}, attempts: 5,
		runS: 7200, connHours: 4, age: []float64{10, 20, 30}, idle: []float64{1, 2, 3}}
	got := f.evaluate(d)
	want := []struct {
		value  float64
		passed bool
	}{{2, false}, {3, false}, {1, false}, {8, true}, {4, false}, {0.5, true}, {2, true}, {30, false}, {5, false}}
	for i, w := range want {
		if got[i].Value == nil || *got[i].Value != w.value || got[i].Passed != w.passed {
			t.Errorf("%s: %+v, want value %v passed %v", got[i].Expr, got[i], w.value, w.passed)
		}
	}
	if got[4].Unit != "/h" || got[6].Unit != "s" || got[0].Unit != "" {
		t.Errorf("units: %q %q %q", got[4].Unit, got[6].Unit, got[0].Unit)
	}
	// No errors: percentiles have no value and pass; rates are 0.
	clean := f.evaluate(thresholdData{errors: map[string]int64{}, attempts: 5, runS: 10})
	if clean[6].Value != nil || !clean[6].Passed || clean[6].Note == "" || *clean[4].Value != 0 || !clean[4].Passed {
		t.Errorf("clean run: %+v %+v", clean[6], clean[4])
	}
	// Errors over no connection time: unbounded, fails a > threshold.
	none := f.evaluate(thresholdData{errors: map[string]int64{"ECONNRESET": 1}, runS: 10})
	if r := none[5]; r.Value != nil || r.Passed || !strings.Contains(r.Note, "unbounded") {
		t.Errorf("no exposure: %+v", r)
	}
	raw, _ := json.Marshal(none[5])
	if !strings.Contains(string(raw), `"value":null`) {
		t.Errorf("JSON %s", raw)
	}
	var pooled thresholdData
	pooled.add(d)
	pooled.add(d)
	if p := f.evaluate(pooled); *p[0].Value != 4 || *p[4].Value != 4 || *p[5].Value != 0.5 || math.IsNaN(*p[6].Value) {
		t.Errorf("pooled: %+v", p)
	}
}

// TestRunFailOn: run --fail-on exits 3 on a run with resets, after
// printing its summary with the thresholds and closing its file, which
// keeps them; 0 on a clean run; 2 for a bad expression, before anything
// runs.
func TestRunFailOn(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()

	resets := filepath.Join(dir, "resets.db")
	out, errOut, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=3", "--rate=50", "--duration=1500ms",
		"--fault", "reset:after=300ms", "--fail-on", "ECONNRESET>0", "--fail-on", "rate(errors)>100000/h",
		"--fail-on", "p99(age_at_error)<10s", "--out", resets)
	if code != exitThreshold {
		t.Fatalf("a run with resets exited %d, want 3:\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "threshold failed: ECONNRESET>0 (") || !strings.Contains(out, "FAILED  ECONNRESET>0") ||
		!strings.Contains(out, "passed  rate(errors)>100000/h") || !strings.Contains(out, "session file: "+resets) {
		t.Fatalf("summary and message:\n%s\n%s", out, errOut)
	}
	r, err := session.Open(resets)
	if err != nil {
		t.Fatal(err)
	}
	var sum session.Summary
	if _, err := r.Meta(session.MetaSummary, &sum); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if len(sum.Thresholds) != 3 || sum.Thresholds[0].Passed || sum.Thresholds[0].Value == nil || *sum.Thresholds[0].Value < 1 ||
		!sum.Thresholds[1].Passed || sum.Thresholds[2].Passed || sum.Thresholds[2].Unit != "s" {
		t.Fatalf("thresholds in the file: %+v", sum.Thresholds)
	}

	clean := filepath.Join(dir, "clean.db")
	out, errOut, code = runCLI(t, ctx, "run", "--scenario=flood", "--connections=3", "--rate=50", "--duration=1500ms",
		"--fail-on", "ECONNRESET>0", "--fail-on", "resets>0", "--fail-on", "rate(errors)>1/connection-hour", "--json", "--out", clean)
	if code != exitOK {
		t.Fatalf("a clean run exited %d:\n%s\n%s", code, out, errOut)
	}
	var js struct {
		Thresholds []struct {
			Expr   string   `json:"expr"`
			Value  *float64 `json:"value"`
			Passed bool     `json:"passed"`
		} `json:"thresholds"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || len(js.Thresholds) != 3 || !js.Thresholds[2].Passed ||
		js.Thresholds[0].Value == nil || *js.Thresholds[0].Value != 0 || js.Thresholds[2].Expr != "rate(errors)>1/connection-hour" {
		t.Fatalf("--json: %v\n%s", err, out)
	}

	bad := filepath.Join(dir, "bad.db")
	_, errOut, code = runCLI(t, ctx, "run", "--duration=1s", "--fail-on", "rate(errors)>1", "--out", bad)
	if code != exitUsage || !strings.Contains(errOut, `--fail-on "rate(errors)>1": a rate needs its unit`) {
		t.Fatalf("a bad expression exited %d: %s", code, errOut)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatalf("a bad expression left %s: %v", bad, err)
	}
}

// TestRunFailOnSeries: with --repeat each run is judged on its own and the
// series on its runs pooled, which decides the exit code.
func TestRunFailOnSeries(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stem := filepath.Join(dir, "s.db")
	out, errOut, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=2", "--rate=50", "--duration=800ms", "--repeat=2",
		"--fault", "reset:after=200ms", "--fail-on", "errors>=2", "--json", "--out", stem)
	if code != exitThreshold {
		t.Fatalf("series exited %d:\n%s\n%s", code, out, errOut)
	}
	var ss seriesSummary
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		t.Fatal(err)
	}
	if len(ss.Runs) != 2 || len(ss.Thresholds) != 1 || ss.Thresholds[0].Passed || *ss.Thresholds[0].Value < 2 {
		t.Fatalf("series: %+v", ss)
	}
	var sum float64
	for _, r := range ss.Runs {
		if len(r.Summary.Thresholds) != 1 || r.Summary.Thresholds[0].Value == nil {
			t.Fatalf("run %d: %+v", r.Run, r.Summary.Thresholds)
		}
		sum += *r.Summary.Thresholds[0].Value
	}
	if sum != *ss.Thresholds[0].Value {
		t.Fatalf("pooled errors %v, runs' sum %v", *ss.Thresholds[0].Value, sum)
	}
	if !strings.Contains(errOut, "run series: threshold failed: errors>=2") {
		t.Fatalf("stderr: %s", errOut)
	}
}

// percent is v/100 computed at run time, as the parser does.
func percent(v float64) float64 { return v / 100 }
