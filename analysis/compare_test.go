package analysis

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// goldenDoc renders doc in every text format and compares each with
// testdata/<name>.<ext>, checking every table shows up; the table format
// fits its widths (checkLayout) and every CSV section is a rectangular
// table with numbers as numbers (checkCSV).
func goldenDoc(t *testing.T, name string, doc *Document) {
	t.Helper()
	checkLayout(t, doc)
	checkCSV(t, doc)
	for format, ext := range formatExt {
		var buf bytes.Buffer
		if err := RenderDoc(&buf, doc, format); err != nil {
			t.Fatal(err)
		}
		for _, tb := range doc.Tables {
			if !tablePresent(format, tb, buf.String()) {
				t.Errorf("table %s missing from the %s output", tb.ID, format)
			}
		}
		golden(t, name+"."+ext, buf.Bytes())
	}
}

// TestBaseline: a run where the idle-timeout resets 24 streams, then the
// same run after the fix (heartbeats in time): the reset rate falls, and
// significantly.
func TestBaseline(t *testing.T) {
	dir := t.TempDir()
	before, err := LoadFiles(idleSession(t, filepath.Join(dir, "before.db"), 24))
	if err != nil {
		t.Fatal(err)
	}
	after, err := LoadFiles(idleSession(t, filepath.Join(dir, "after.db"), 1))
	if err != nil {
		t.Fatal(err)
	}
	c := Compare(stable(before), stable(after))
	if c.RateUnit != "connection-hour" {
		t.Errorf("rate unit %q", c.RateUnit)
	}
	if !strings.HasPrefix(c.Judgement, "Fewer resets and cuts: the rate fell from") || !strings.Contains(c.Judgement, "significant: p = ") {
		t.Errorf("judgement %q", c.Judgement)
	}
	var reset *RateChange
	for i, r := range c.ByClass {
		if r.Key == errclass.ECONNRESET {
			reset = &c.ByClass[i]
		}
	}
	if reset == nil || reset.BeforeCount != 48 || reset.AfterCount != 2 || !reset.Significant || reset.ChangePct > -80 {
		t.Errorf("ECONNRESET change %+v", reset)
	}
	var origin *RateChange
	for i, r := range c.ByOrigin {
		if r.Key == "proxy p1 (idle-timeout) on p1/client" {
			origin = &c.ByOrigin[i]
		}
	}
	if origin == nil || origin.BeforeCount != 48 || origin.AfterCount != 2 {
		t.Errorf("origin changes %+v", c.ByOrigin)
	}
	goldenDoc(t, "baseline", c.Doc())
}

func TestBaselineNotSignificant(t *testing.T) {
	dir := t.TempDir()
	a, _ := LoadFiles(idleSession(t, filepath.Join(dir, "a.db"), 2))
	b, _ := LoadFiles(idleSession(t, filepath.Join(dir, "b.db"), 3))
	c := Compare(a, b)
	if !strings.HasPrefix(c.Judgement, "No significant change in the rate of resets and cuts") {
		t.Errorf("judgement %q", c.Judgement)
	}
}

func TestRateTest(t *testing.T) {
	for _, tc := range []struct {
		b, a   int64
		eb, ea float64
		want   float64 // p-value, to 2 significant digits; <0 for "not significant"
	}{
		// The example: 8 resets in 0.03 connection-hours before a
		// fix, 0 in 0.12 after: p = (0.03/0.15)^8.
		{8, 0, 0.03, 0.12, math.Pow(0.2, 8)},
		{0, 5, 1, 1, 2 * math.Pow(0.5, 5)}, // appeared: 5 in equal exposure, two-sided
		{48, 2, 1, 1, 2 * 1276 / math.Pow(2, 50)},
		{5, 4, 1, 1, -1},
		{50, 50, 1, 1, -1},
		{100, 50, 2, 1, -1}, // the same rate
		{100, 150, 1, 1, 0.0019},
		{0, 0, 1, 1, -1},
		{300000, 300900, 1, 1, -1},     // normal approximation, no change
		{300000, 320000, 1, 1, 1e-150}, // normal approximation, a change (p tiny)
	} {
		p := rateTest(tc.b, tc.a, tc.eb, tc.ea)
		switch {
		case tc.want < 0 && p < significance:
			t.Errorf("rateTest(%d, %d, %v, %v) = %v, want not significant", tc.b, tc.a, tc.eb, tc.ea, p)
		case tc.want >= 0 && tc.want > 1e-100 && math.Abs(p-tc.want)/tc.want > 0.05:
			t.Errorf("rateTest(%d, %d, %v, %v) = %v, want %v", tc.b, tc.a, tc.eb, tc.ea, p, tc.want)
		case tc.want >= 0 && tc.want <= 1e-100 && p > 1e-100:
			t.Errorf("rateTest(%d, %d, %v, %v) = %v, want tiny", tc.b, tc.a, tc.eb, tc.ea, p)
		}
	}
}

// TestCompareSmallCounts: the example through Compare: a fix that
// took 8 resets in 0.03 connection-hours to 0 in 0.12 is a significant
// improvement, not "no significant change"; the reverse is a regression.
func TestCompareSmallCounts(t *testing.T) {
	rep := func(resets int64, hours float64) *Report {
		r := &Report{Connections: ConnStats{ConnHours: hours}}
		if resets > 0 {
			r.Patterns = []ErrorPattern{{Class: errclass.ECONNRESET, Hop: "p1/upstream", Origin: "server", Cause: "natural", Count: resets}}
		}
		return r
	}
	fix := Compare(rep(8, 0.03), rep(0, 0.12))
	if !strings.HasPrefix(fix.Judgement, "Fewer resets") || fix.Regression || math.Abs(fix.ResetsPValue-math.Pow(0.2, 8)) > 1e-8 {
		t.Errorf("fix: %q p=%v regression=%v", fix.Judgement, fix.ResetsPValue, fix.Regression)
	}
	worse := Compare(rep(0, 0.12), rep(8, 0.03))
	if !strings.HasPrefix(worse.Judgement, "Resets or cuts appeared") || !worse.Regression {
		t.Errorf("regression: %q regression=%v", worse.Judgement, worse.Regression)
	}
	same := Compare(rep(3, 1), rep(4, 1))
	if !strings.HasPrefix(same.Judgement, "No significant change") || same.Regression {
		t.Errorf("same: %q regression=%v", same.Judgement, same.Regression)
	}
}

// productionCSV writes the errors of a session file as a production log
// would: its own column names, ages and idle times in milliseconds, times
// as RFC 3339; ageFactor stretches the ages.
func productionCSV(t *testing.T, sessionPath, out string, ageFactor float64) {
	t.Helper()
	r, err := session.Open(sessionPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	errs, err := session.All[session.ErrorRecord](r, session.BucketErrors)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"ts", "errno", "msg", "conn_age_ms", "idle_ms", "peer"})
	for _, e := range errs {
		w.Write([]string{e.Time.Format(time.RFC3339Nano), e.Class, e.Message,
			fmt.Sprintf("%.3f", e.Age.Seconds()*1000*ageFactor), fmt.Sprintf("%.3f", e.Idle.Seconds()*1000), e.RemoteAddr})
	}
	w.Flush()
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

var prodCols = ProductionColumns{Time: "ts", Class: "errno", Message: "msg", Age: "conn_age_ms", Idle: "idle_ms", Server: "peer", Unit: time.Millisecond}

func readProd(t *testing.T, path string, cols ProductionColumns) []ProductionError {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prod, err := ReadProduction(f, filepath.Base(path), cols)
	if err != nil {
		t.Fatal(err)
	}
	return prod
}

// TestProductionMatch: production errors made from the reproduction's own
// errors match it.
func TestProductionMatch(t *testing.T) {
	dir := t.TempDir()
	db := idleTimeoutSession(t, dir)
	rep, err := LoadFiles(db)
	if err != nil {
		t.Fatal(err)
	}
	csvPath := filepath.Join(dir, "prod.csv")
	productionCSV(t, db, csvPath, 1)
	pc := CompareProduction(stable(rep), readProd(t, csvPath, prodCols))
	if !pc.Match || pc.ClassDistance != 0 || pc.Age == nil || pc.Age.KS > 0.001 || pc.Idle == nil || pc.Idle.KS > 0.001 {
		t.Fatalf("comparison %+v (age %+v)", pc, pc.Age)
	}
	if !strings.HasPrefix(pc.Judgement, "The reproduction matches production (class mix, age, idle time compared") {
		t.Errorf("judgement %q", pc.Judgement)
	}
	goldenDoc(t, "production-match", pc.Doc(rep, "prod.csv"))
}

// TestProductionAgeMismatch: the same errors with ages ten times longer do
// not match.
func TestProductionAgeMismatch(t *testing.T) {
	dir := t.TempDir()
	db := idleTimeoutSession(t, dir)
	rep, _ := LoadFiles(db)
	csvPath := filepath.Join(dir, "prod.csv")
	productionCSV(t, db, csvPath, 10)
	pc := CompareProduction(rep, readProd(t, csvPath, prodCols))
	if pc.Match || pc.Age == nil || !pc.Age.Differ || pc.Idle.Differ || pc.ClassDistance != 0 {
		t.Fatalf("comparison %+v age %+v", pc, pc.Age)
	}
	if !strings.HasPrefix(pc.Judgement, "The reproduction does not match production: the age distributions differ (KS ") {
		t.Errorf("judgement %q", pc.Judgement)
	}
}

// TestProductionClassMismatch: production is mostly HTTP 502s given as
// messages only, in JSON lines, with default column names.
func TestProductionClassMismatch(t *testing.T) {
	dir := t.TempDir()
	rep, _ := LoadFiles(idleTimeoutSession(t, dir))
	var lines []string
	for i := range 40 {
		msg := "upstream returned status 502 Bad Gateway"
		if i%4 == 0 {
			msg = "Error: read ECONNRESET"
		}
		b, _ := json.Marshal(map[string]any{"timestamp": 1735787045 + i, "message": msg, "idle": 1.01})
		lines = append(lines, string(b))
	}
	path := filepath.Join(dir, "prod.jsonl")
	os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	prod := readProd(t, path, ProductionColumns{})
	if prod[0].Class != errclass.ECONNRESET || prod[1].Class != errclass.HTTP(502) || prod[1].IdleS != 1.01 || !math.IsNaN(prod[1].AgeS) {
		t.Fatalf("read %+v", prod[:2])
	}
	pc := CompareProduction(rep, prod)
	if pc.Match || pc.ClassDistance < 0.5 || pc.Age != nil {
		t.Fatalf("comparison %+v", pc)
	}
	if !strings.Contains(pc.Judgement, "the class mix differs") {
		t.Errorf("judgement %q", pc.Judgement)
	}
}

func TestReadProductionErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		cols       ProductionColumns
		want       string
	}{
		{"empty", "", ProductionColumns{}, "production errors: p is empty"},
		{"no time", "class,age\nECONNRESET,1\n", ProductionColumns{}, "p has no time column (tried time, timestamp, ts, @timestamp, date; name it with --production-time)"},
		{"no class", "time,age\n2025-01-01T00:00:00Z,1\n", ProductionColumns{}, "p has neither an error class nor a message column"},
		{"mapped missing", "time,class\n2025-01-01T00:00:00Z,EOF\n", ProductionColumns{Age: "conn_age"}, `p has no column "conn_age" (--production-age)`},
		{"bad time", "time,class\nyesterday,EOF\n", ProductionColumns{}, `p:2: column "time": cannot read "yesterday" as a time`},
		{"bad age", "time,class,age\n2025-01-01T00:00:00Z,EOF,soon\n", ProductionColumns{}, `p:2: column "age": invalid duration "soon"`},
		{"header only", "time,class\n", ProductionColumns{}, "p has a header but no rows"},
		{"bad json", "{\"time\": 1, \"message\": \"EOF\"}\n{oops\n", ProductionColumns{}, "p:2: not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadProduction(strings.NewReader(tc.text), "p", tc.cols)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestClassifyText(t *testing.T) {
	for text, want := range map[string]string{
		"ECONNRESET":                        errclass.ECONNRESET,
		"Error: read ECONNRESET":            errclass.ECONNRESET,
		"connection reset by peer":          errclass.ECONNRESET,
		"socket hang up":                    errclass.ECONNRESET,
		"write: broken pipe":                errclass.EPIPE,
		"EOF":                               errclass.EOF,
		"unexpected EOF":                    errclass.UnexpectedEOF,
		"HTTP_502":                          errclass.HTTP(502),
		"status code 504":                   errclass.HTTP(504),
		"503":                               errclass.HTTP(503),
		"i/o timeout":                       errclass.ETIMEDOUT,
		"dial tcp: connection refused":      errclass.ECONNREFUSED,
		"something odd":                     errclass.Other,
		"":                                  "",
		"accept: too many open files":       errclass.EMFILE,
		"ECONNABORTED":                      errclass.ECONNRESET,
		"premature close of the SSE stream": errclass.UnexpectedEOF,
	} {
		if got := ClassifyText(text); got != want {
			t.Errorf("ClassifyText(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestKSDistance(t *testing.T) {
	a := []float64{1, 2, 3, 4, 5}
	if d := ksDistance(append([]float64(nil), a...), append([]float64(nil), a...)); d != 0 {
		t.Errorf("identical: %v", d)
	}
	if d := ksDistance([]float64{1, 2, 3}, []float64{10, 20, 30}); d != 1 {
		t.Errorf("disjoint: %v", d)
	}
	if d := ksDistance([]float64{1, 2, 3, 4}, []float64{3, 4, 5, 6}); d != 0.5 {
		t.Errorf("half overlap: %v", d)
	}
	if c := ksCritical(100, 100); math.Abs(c-0.192) > 0.001 {
		t.Errorf("critical(100,100) = %v", c)
	}
}

// TestReproduction: five identical runs reproduce ECONNRESET five times
// with one fingerprint; a mix of runs with and without the fault gives the
// rate the files hold.
func TestReproduction(t *testing.T) {
	dir := t.TempDir()
	var same []string
	for i := range 5 {
		same = append(same, idleSession(t, filepath.Join(dir, fmt.Sprintf("same-%d.db", i)), 24))
	}
	res, err := Reproduction(same, errclass.ECONNRESET)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reproduced != 5 || res.Total != 5 || !res.SameFingerprint || len(res.Fingerprints) != 1 {
		t.Fatalf("result %+v", res)
	}
	f := res.Fingerprints[0].Fingerprint
	if f.Hop != "p1/client" || f.Origin != "proxy p1" || f.Fault != "idle-timeout" || f.Dimension != "idle" || math.Abs(f.CenterS-1.02) > 0.03 {
		t.Errorf("fingerprint %+v", f)
	}
	if res.FirstS.Min != res.FirstS.Max || res.FirstS.Min <= 0 {
		t.Errorf("time to first %+v", res.FirstS)
	}
	if !strings.HasPrefix(res.Statement, "Reproduced ECONNRESET in 5 of 5 runs (100%).") || !strings.Contains(res.Statement, "The same fingerprint in every run") {
		t.Errorf("statement %q", res.Statement)
	}
	goldenDoc(t, "reproduction", res.Doc())

	// Runs with 0, 1 and 24 reset streams: the rate is what the files hold.
	var mixed []string
	want := 0
	for i, n := range []int{0, 24, 0, 1, 24} {
		mixed = append(mixed, idleSession(t, filepath.Join(dir, fmt.Sprintf("mixed-%d.db", i)), n))
		if n > 0 {
			want++
		}
	}
	res, err = Reproduction(mixed, errclass.ECONNRESET)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reproduced != want || res.Total != 5 || res.Runs[0].Reproduced || res.Runs[0].FirstS != -1 || res.Runs[0].Matching != 0 {
		t.Fatalf("result %+v", res)
	}
	// Any error: the natural EOFs appear in every run.
	res, _ = Reproduction(mixed, "")
	if res.Reproduced != 5 {
		t.Errorf("any error: %d of 5", res.Reproduced)
	}
}
