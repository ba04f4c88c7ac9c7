package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssestress/ssestress/analysis"
)

// TestExportCommand: ssestress export writes every record kind of a real
// run (its in-process proxy resetting the streams) as CSV and JSON Lines
// that Python's csv module and pandas read as rectangular tables with
// numeric columns; resets are the attribution engine's, one per reset;
// -o is never overwritten without --force; bad input is exit 2.
func TestExportCommand(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	db := filepath.Join(dir, "run.db")
	if out, errOut, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=3", "--rate=50", "--duration=1500ms",
		"--fault", "reset:after=300ms", "--out", db); code != exitOK {
		t.Fatalf("run: %d\n%s\n%s", code, out, errOut)
	}

	var files []string
	rows := map[string]int{}
	for _, k := range analysis.ExportKinds() {
		for _, format := range analysis.ExportFormats {
			f := filepath.Join(dir, k[0]+"."+format)
			if out, errOut, code := runCLI(t, ctx, "export", db, k[0], "--format", format, "-o", f); code != exitOK {
				t.Fatalf("export %s %s: %d\n%s\n%s", k[0], format, code, out, errOut)
			}
			files = append(files, f)
		}
		fh, err := os.Open(filepath.Join(dir, k[0]+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		table, err := csv.NewReader(fh).ReadAll() // refuses ragged rows
		fh.Close()
		if err != nil {
			t.Fatalf("%s.csv: %v", k[0], err)
		}
		rows[k[0]] = len(table) - 1
	}
	if rows["errors"] != 3 || rows["conns"] != 3 || rows["resets"] != 3 || rows["faults"] != 3 || rows["hop_conns"] < 6 {
		t.Fatalf("rows per kind: %v", rows)
	}
	resets, _ := os.ReadFile(filepath.Join(dir, "resets.csv"))
	if strings.Count(string(resets), ",records,proxy,run-proxy,") != 3 || strings.Count(string(resets), ",injected,") != 3 ||
		strings.Count(string(resets), ",ECONNRESET,") != 3 {
		t.Fatalf("resets.csv:\n%s", resets)
	}

	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import pandas").CombinedOutput(); err != nil {
		t.Skipf("the pandas check needs %s with pandas (Debian: apt-get install python3-pandas): %v %s", py, err, out)
	}
	// One interpreter reads every file with csv and pandas and reports its
	// shape and the columns that should be numbers and are not.
	script := `
import csv, json, sys, pandas as pd
out = {}
for f in sys.argv[1:]:
    if f.endswith(".csv"):
        with open(f, newline="") as fh:
            rows = list(csv.reader(fh))
        widths = sorted({len(r) for r in rows})
        df = pd.read_csv(f)
    else:
        widths = sorted({len(json.loads(l)) for l in open(f)} | {0})[1:] or [0]
        df = pd.read_json(f, lines=True, dtype=False)
    numeric = [c for c in df.columns if c.endswith(("_s", "_bytes")) or c in ("attempt", "events", "bytes_up", "bytes_down", "status", "captures")]
    bad = [c for c in numeric if df[c].notna().any() and not pd.api.types.is_numeric_dtype(df[c])]
    out[f.rsplit("/", 1)[1]] = {"rows": int(df.shape[0]), "columns": int(df.shape[1]), "widths": widths, "not_numeric": bad}
print(json.dumps(out))
`
	out, err := exec.Command(py, append([]string{"-c", script}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var shapes map[string]struct {
		Rows, Columns int
		Widths        []int
		NotNumeric    []string `json:"not_numeric"`
	}
	if err := json.Unmarshal(out, &shapes); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for name, s := range shapes {
		kind := strings.TrimSuffix(strings.TrimSuffix(name, ".csv"), ".jsonl")
		if s.Rows != rows[kind] || len(s.Widths) != 1 || s.Widths[0] != s.Columns || len(s.NotNumeric) > 0 {
			t.Errorf("%s: pandas %d×%d, csv row widths %v, not numeric %v; want %d rows", name, s.Rows, s.Columns, s.Widths, s.NotNumeric, rows[kind])
		}
	}

	existing := filepath.Join(dir, "errors.csv")
	before, _ := os.ReadFile(existing)
	if _, errOut, code := runCLI(t, ctx, "export", db, "conns", "-o", existing); code != exitUsage || !strings.Contains(errOut, "already exists (give --force") {
		t.Fatalf("over an existing -o: %d %s", code, errOut)
	}
	if now, _ := os.ReadFile(existing); string(now) != string(before) {
		t.Fatal("the refused export changed the file")
	}
	if _, errOut, code := runCLI(t, ctx, "export", db, "conns", "-o", existing, "--force"); code != exitOK {
		t.Fatalf("--force: %d %s", code, errOut)
	}
	if now, _ := os.ReadFile(existing); !strings.HasPrefix(string(now), "file,client_id,") {
		t.Fatalf("--force did not replace the file:\n%s", now)
	}
	for _, args := range [][]string{
		{"export", db, "flows"},
		{"export", db, "errors", "--format", "xml"},
		{"export", db, "errors", "conns"},
		{"export", db, "errors", "--force"},
	} {
		if _, errOut, code := runCLI(t, ctx, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errOut)
		}
	}
	if _, _, code := runCLI(t, ctx, "export", filepath.Join(dir, "errors.csv"), "errors"); code != exitDamaged {
		t.Errorf("a file that is not a session file: exit %d, want 4", code)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
