package analysis

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// exportSession writes a session file with a record of every exported kind.
func exportSession(t *testing.T, path string) {
	t.Helper()
	w, err := session.Create(path, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		id := "c000" + strconv.Itoa(i)
		start := t0.Add(time.Duration(i) * time.Second)
		w.Put(session.ConnRecord{ClientID: id, Scenario: "flood", Group: "AAPL,MSFT", URL: "http://127.0.0.1:8090/stream?symbols=AAPL,MSFT",
			LocalAddr: "127.0.0.1:4000" + strconv.Itoa(i), RemoteAddr: "127.0.0.1:8090", Start: start, Connected: start.Add(time.Millisecond),
			FirstEvent: start.Add(20 * time.Millisecond), End: start.Add(61 * time.Second), Status: 200, Events: 40, MaxGap: session.Seconds(1500 * time.Millisecond),
			EndClass: "ECONNRESET", ClosedBy: session.ClosedByPeer})
		w.Put(session.ErrorRecord{Time: start.Add(61 * time.Second), Source: session.SourceClient, ClientID: id, Class: "ECONNRESET",
			Message: `read tcp "quoted", comma: reset`, Age: session.Seconds(61 * time.Second), Idle: session.Seconds(60*time.Second + time.Nanosecond), Events: 40})
	}
	// A connection still open: empty cells, not zeros.
	w.Put(session.ConnRecord{ClientID: "c0009", Start: t0, URL: "http://127.0.0.1:8090/stream"})
	w.Put(session.Sample{Time: t0.Add(time.Second), Uptime: session.Seconds(time.Second), Active: 3, Events: 120, RSS: 40 << 20,
		TimerLag: session.Seconds(150 * time.Microsecond), Errors: map[string]int64{"ECONNRESET": 2, "EOF": 1}})
	w.Put(session.HopConn{Proxy: "p1", ConnID: "p1-1", Hop: session.HopClient, LocalAddr: "127.0.0.1:8080", RemoteAddr: "127.0.0.1:40000",
		Opened: t0, Closed: t0.Add(time.Second), ClosedBy: session.ClosedBySelf, Ending: session.EndingRST})
	w.Put(session.FaultEvent{Time: t0, Proxy: "p1", ConnID: "p1-1", Hop: session.HopClient, FaultName: "r", FaultKind: "reset",
		Action: session.ActionRST, Ending: session.EndingRST})
	w.Put(session.KernelEvent{Time: t0, Event: session.KernelSendReset, LocalAddr: "127.0.0.1:8090", RemoteAddr: "127.0.0.1:40000",
		Reason: "TCP_ABORT_ON_CLOSE", PID: 42, Comm: "node"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestExport: every kind exports as a rectangular CSV table with a header
// and as JSON Lines with the same keys; numbers are numbers.
func TestExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.db")
	exportSession(t, path)
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// resets: the kernel's reset (a segment), the fault's, and the three client
	// errors no record explains (one unknown root cause each).
	want := map[string]int{"errors": 3, "conns": 4, "samples": 1, "hop_conns": 1, "faults": 1, "kernel_events": 1, "resets": 5}
	for _, kind := range ExportKinds() {
		var buf bytes.Buffer
		if err := Export(&buf, []*session.Reader{r}, kind[0], "csv"); err != nil {
			t.Fatalf("%s: %v", kind[0], err)
		}
		rows, err := csv.NewReader(&buf).ReadAll() // refuses ragged rows
		if err != nil {
			t.Fatalf("%s csv: %v", kind[0], err)
		}
		if len(rows)-1 != want[kind[0]] || rows[0][0] != "file" {
			t.Errorf("%s: %d rows, header %v", kind[0], len(rows)-1, rows[0])
		}
		buf.Reset()
		if err := Export(&buf, []*session.Reader{r}, kind[0], "jsonl"); err != nil {
			t.Fatal(err)
		}
		n := 0
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s jsonl line %q: %v", kind[0], sc.Text(), err)
			}
			if len(m) != len(rows[0]) {
				t.Errorf("%s: jsonl has %d keys, csv %d columns", kind[0], len(m), len(rows[0]))
			}
			for k, v := range m {
				if (strings.HasSuffix(k, "_s") || strings.HasSuffix(k, "_bytes")) && v != nil {
					if _, ok := v.(float64); !ok {
						t.Errorf("%s: %s = %v (%T), want a number", kind[0], k, v, v)
					}
				}
			}
			n++
		}
		if n != want[kind[0]] {
			t.Errorf("%s: %d jsonl lines", kind[0], n)
		}
	}
	var buf bytes.Buffer
	Export(&buf, []*session.Reader{r}, "errors", "jsonl")
	if !strings.Contains(buf.String(), `"idle_s":60.000000001`) || !strings.Contains(buf.String(), `"file":"run.db"`) {
		t.Errorf("errors jsonl:\n%s", buf.String())
	}
	if err := Export(&buf, []*session.Reader{r}, "flows2", "csv"); !errors.Is(err, ErrUnknownExport) {
		t.Errorf("unknown kind: %v", err)
	}
	if err := Export(&buf, []*session.Reader{r}, "errors", "xml"); !errors.Is(err, ErrUnknownExport) {
		t.Errorf("unknown format: %v", err)
	}
}

// TestExportPandas: pandas reads every export as a rectangular table with
// numeric columns (the data user's check). Debian's python3-pandas is
// installed by .ci/run.
func TestExportPandas(t *testing.T) {
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import pandas").CombinedOutput(); err != nil {
		t.Skipf("needs %s with pandas (Debian: apt-get install python3-pandas): %v %s", py, err, out)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "run.db")
	exportSession(t, path)
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	script := `
import sys, pandas as pd
for f in sys.argv[1:]:
    df = pd.read_json(f, lines=True) if f.endswith(".jsonl") else pd.read_csv(f)
    bad = [c for c in df.columns if (c.endswith("_s") or c.endswith("_bytes")) and not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        sys.exit("%s: not numeric: %s" % (f, bad))
    print(f, df.shape[0], df.shape[1])
`
	args := []string{"-c", script}
	for _, kind := range ExportKinds() {
		for _, format := range ExportFormats {
			var buf bytes.Buffer
			if err := Export(&buf, []*session.Reader{r}, kind[0], format); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, kind[0]+"."+format)
			os.WriteFile(f, buf.Bytes(), 0o644)
			args = append(args, f)
		}
	}
	// One interpreter for every file: importing pandas takes seconds.
	if out, err := exec.Command(py, args...).CombinedOutput(); err != nil {
		t.Errorf("pandas: %v\n%s", err, out)
	}
}
