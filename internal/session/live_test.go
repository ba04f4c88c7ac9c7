package session

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestWriterReader: a Writer's Reader sees what is committed while the
// file stays locked for everyone else, and closing it leaves the Writer
// working.
func TestWriterReader(t *testing.T) {
	w, _ := newFile(t, Options{})
	defer w.Close()
	w.Put(ErrorRecord{ClientID: "c0001", Class: "ECONNRESET"})
	w.Flush()
	r := w.Reader()
	errs, err := All[ErrorRecord](r, BucketErrors)
	if err != nil || len(errs) != 1 || errs[0].ClientID != "c0001" {
		t.Fatalf("read back %+v, %v", errs, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	w.Put(ErrorRecord{ClientID: "c0002", Class: "EOF"})
	w.Flush()
	if n := w.Reader().Count(BucketErrors); n != 2 {
		t.Fatalf("after the Reader's Close the Writer stored %d records, want 2", n)
	}
}

// TestInUseNamesLiveView: a reader refused by the lock is told where the
// live view of the writing process is, in one line, within the open
// timeout; without a hint the message stays the generic one.
func TestInUseNamesLiveView(t *testing.T) {
	w, path := newFile(t, Options{})
	defer w.Close()
	_, err := Open(path)
	if !errors.Is(err, ErrInUse) || strings.Contains(err.Error(), "http://") {
		t.Fatalf("no hint: %v", err)
	}
	remove, err := WriteLiveURL(path, "http://127.0.0.1:9090")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Open(path)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Open took %s", d)
	}
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "http://127.0.0.1:9090/report") ||
		!strings.Contains(err.Error(), "http://127.0.0.1:9090/metrics") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("with hint: %v", err)
	}
	remove()
	if _, err := os.Stat(path + LiveSuffix); !os.IsNotExist(err) {
		t.Fatalf("hint not removed: %v", err)
	}
	os.WriteFile(path+LiveSuffix, []byte("file:///etc/passwd\n"), 0o644)
	if u := LiveURL(path); u != "" {
		t.Fatalf("junk hint read as %q", u)
	}
}
