package analysis

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ssestress/ssestress/internal/errclass"
)

// TestReportCSVPandas: pandas loads every CSV section of every kind of
// report (a plain report of each fixture, --baseline, --production,
// --reproduction) as a rectangular table whose numeric fields are numeric
// columns, with the rows the table has. Debian's python3-pandas is
// installed by .ci/run.
func TestReportCSVPandas(t *testing.T) {
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import pandas").CombinedOutput(); err != nil {
		t.Skipf("needs %s with pandas (Debian: apt-get install python3-pandas): %v %s", py, err, out)
	}
	dir := t.TempDir()
	docs := map[string]*Document{"idle": loadIdle(t).Doc(), "shards": loadShards(t).Doc(), "capture": loadCapture(t).Doc()}
	before, _ := LoadFiles(idleSession(t, filepath.Join(dir, "before.db"), 24))
	after, _ := LoadFiles(idleSession(t, filepath.Join(dir, "after.db"), 1))
	docs["baseline"] = Compare(before, after).Doc()
	prodPath := filepath.Join(dir, "prod.csv")
	productionCSV(t, filepath.Join(dir, "before.db"), prodPath, 1)
	docs["production"] = CompareProduction(before, readProd(t, prodPath, prodCols)).Doc(before, "prod.csv")
	var runs []string
	for i := range 3 {
		runs = append(runs, idleSession(t, filepath.Join(dir, fmt.Sprintf("run-%d.db", i)), 8*i))
	}
	res, err := Reproduction(runs, errclass.ECONNRESET)
	if err != nil {
		t.Fatal(err)
	}
	docs["reproduction"] = res.Doc()

	// What each file must hold: its rows and its numeric fields.
	type want struct {
		Rows    int      `json:"rows"`
		Columns int      `json:"columns"`
		Numeric []string `json:"numeric"`
	}
	manifest := map[string]want{}
	for name, doc := range docs {
		paths, err := WriteCSVDir(filepath.Join(dir, name), doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, tb := range doc.Tables {
			w := want{Rows: len(tb.Data), Columns: len(tb.Fields), Numeric: []string{}}
			for _, f := range tb.Fields {
				if f.Numeric {
					w.Numeric = append(w.Numeric, f.Name)
				}
			}
			manifest[paths[i]] = w
		}
	}
	mpath := filepath.Join(dir, "manifest.json")
	b, _ := json.Marshal(manifest)
	os.WriteFile(mpath, b, 0o644)
	script := `
import json, sys, pandas as pd
bad = []
for path, want in json.load(open(sys.argv[1])).items():
    df = pd.read_csv(path)
    if df.shape != (want["rows"], want["columns"]):
        bad.append("%s: shape %s, want (%d, %d)" % (path, df.shape, want["rows"], want["columns"]))
        continue
    for c in want["numeric"]:
        if want["rows"] > 0 and not pd.api.types.is_numeric_dtype(df[c]):
            bad.append("%s: %s is %s, not numeric: %s" % (path, c, df[c].dtype, list(df[c])[:5]))
if bad:
    sys.exit("\n".join(bad))
print(len(json.load(open(sys.argv[1]))), "tables")
`
	// One interpreter for every file: importing pandas takes seconds.
	out, err := exec.Command(py, "-c", script, mpath).CombinedOutput()
	if err != nil {
		t.Errorf("pandas: %v\n%s", err, out)
	}
	t.Logf("pandas read %s", out)
}
