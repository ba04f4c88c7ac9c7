package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
// root and a skipped line otherwise.
func TestBenchJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
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
