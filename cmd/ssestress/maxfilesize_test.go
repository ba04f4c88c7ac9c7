package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunMaxFileSizeKeepsSummary: a run whose session file reaches
// --max-file-size goes on to its end, and the file, never past the size,
// holds the run's end and its summary (with the records it dropped), as
// inspect shows.
func TestRunMaxFileSizeKeepsSummary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	out := filepath.Join(t.TempDir(), "full.db")
	const limit = 64 << 10
	_, stderr, code := runCLI(t, ctx, "run", "--connections=50", "--rate=1000", "--duration=2s",
		"--monitor-interval=100ms", "--max-file-size=64KiB", "--out="+out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "reached --max-file-size (65536 bytes): recording stopped") {
		t.Fatalf("the file never filled, or nothing said so: %s", stderr)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() > limit {
		t.Fatalf("file: %v, %v bytes (limit %d)", err, fi.Size(), limit)
	}
	rep, err := inspectFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || rep.Run == nil || rep.Run.EndedAt.IsZero() {
		t.Fatalf("the run's end was not kept: %+v", rep.Run)
	}
	if s := rep.Summary; s == nil || s.RecordsDropped == 0 || s.Clients != 50 || s.Events == 0 || s.DurationS < 2 {
		t.Fatalf("summary %+v", rep.Summary)
	}
}
