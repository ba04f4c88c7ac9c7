package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchQuickReplayRow runs ssestress bench --quick --only replay end
// to end: one table with the machine above it, the row's two lines, each
// judged against its target.
func TestBenchQuickReplayRow(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 3 s of recording four times (about 15 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"bench", "--quick", "--only", "replay"}, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	table := out.String()
	for _, want := range []string{"cores", "load average", "layout:", "│ replay", "gap error p50 / p99, speed 1 ", "gap error p50 / p99, speed 10 ", "p99 ≤ 2 ms", "targets:"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, line := range strings.Split(table, "\n") {
		if strings.Contains(line, "gap error") && !strings.Contains(line, "│ met") && !strings.Contains(line, "│ short by") {
			t.Errorf("line not marked met or short: %s", line)
		}
	}
	if strings.Contains(table, "│ load") || strings.Contains(table, "│ conns") {
		t.Errorf("--only replay ran other rows:\n%s", table)
	}
	if !strings.Contains(errOut.String(), "bench: replay") {
		t.Errorf("no progress on stderr: %q", errOut.String())
	}
}

// TestBenchJSON prints the result as JSON; the capture row is quick as
// root and a skipped line otherwise. What the row wrote (its pcap) is gone
// at the end: the system's temp directory is as it was.
func TestBenchJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"bench", "--quick", "--quiet", "--only", "capture", "--json"}, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	var res struct {
		Machine struct {
			Cores int    `json:"cores"`
			Go    string `json:"go"`
		} `json:"machine"`
		Figures []struct {
			Row    string `json:"row"`
			Status string `json:"status"`
		} `json:"figures"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if res.Machine.Cores < 1 || res.Machine.Go == "" || len(res.Figures) == 0 {
		t.Fatalf("result %+v", res)
	}
	for _, f := range res.Figures {
		if f.Row != "capture" {
			t.Errorf("row %q in --only capture", f.Row)
		}
	}
	if errOut.Len() != 0 {
		t.Errorf("--quiet printed %q", errOut.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("bench left %v in the temp directory", left)
	}
}

// TestBenchCleansUp: the report row leaves its session file of records
// for a later run to reuse; bench removes it (with everything the rows
// wrote) at the end unless --keep, which says where it is.
func TestBenchCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reports 200,000 records twice (about 20 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"bench", "--quick", "--quiet", "--only", "report"}, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), filepath.Join(tmp, "ssestress-bench-")) {
		t.Fatalf("the report row's file is not under the temp directory:\n%s", out.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("bench left %v in the temp directory", left)
	}
	errOut.Reset()
	if err := run(ctx, []string{"bench", "--quick", "--only", "report", "--keep"}, &out, &errOut); err != nil {
		t.Fatalf("bench --keep: %v\n%s", err, errOut.String())
	}
	kept, _ := filepath.Glob(filepath.Join(tmp, "ssestress-bench-*", "*.db"))
	if len(kept) != 1 || !strings.Contains(errOut.String(), "kept what the rows wrote in "+filepath.Dir(kept[0])) {
		t.Errorf("kept %v; stderr %q", kept, errOut.String())
	}
}

// TestBenchBadCommandLines: each mistake is one usage error naming it.
func TestBenchBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--only", "load,bogus"}, `unknown row "bogus"`},
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--streams", "-1"}, "must not be negative"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--toxiproxy", "/nonexistent/toxiproxy-server"}, "not an executable"},
		{[]string{"--child"}, "needs a role"},
		{[]string{"--temp-dir", "/nonexistent/dir"}, "not a directory"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"bench"}, tc.args...), &out, &errOut)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %v: %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"bench", "--help"}, &out, &out); !errors.Is(err, errHelp) || !strings.Contains(out.String(), "saturation") {
		t.Errorf("--help: %v\n%s", err, out.String())
	}
}
