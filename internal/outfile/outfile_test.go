package outfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestNeverOverwrittenUnlessForced(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "report.md")
	if err := WriteFile(p, []byte("first"), 0o644, false); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(p, []byte("second"), 0o644, false)
	var ee *ExistsError
	if !errors.As(err, &ee) || !errors.Is(err, ErrExists) || ee.Path != p {
		t.Fatalf("second write: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "first" {
		t.Fatalf("content %q", b)
	}
	if err := WriteFile(p, []byte("forced"), 0o600, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "forced" {
		t.Fatalf("content %q", b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}

// TestAppearedMeanwhile: a file made between Create and Commit is kept,
// and the temporary file goes.
func TestAppearedMeanwhile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.jsonl")
	f, err := Create(p, 0o644, false)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("mine")
	os.WriteFile(p, []byte("theirs"), 0o644)
	if err := f.Commit(); !errors.Is(err, ErrExists) {
		t.Fatalf("commit: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "theirs" {
		t.Fatalf("content %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	f, err := Create(filepath.Join(dir, "x"), 0o644, false)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half")
	f.Abort()
	f.Abort()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
	if err := Check(dir, true); err == nil {
		t.Fatal("a directory accepted as an output file")
	}
}
