package damagetest

import (
	"bytes"
	"compress/gzip"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/ssestress/ssestress/internal/session"
)

var update = flag.Bool("update", false, "rewrite testdata/small.db.gz")

// TestSmallFixture: Small's file opens as a session file with the records
// it was written with; -update writes a new one.
func TestSmallFixture(t *testing.T) {
	dir := t.TempDir()
	if *update {
		data, err := WriteSmall(filepath.Join(dir, "new.db"))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(data)
		zw.Close()
		if err := os.WriteFile("testdata/small.db.gz", buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "small.db")
	if err := os.WriteFile(path, Small(t), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	if n := r.Count(session.BucketErrors); n != 500 {
		t.Errorf("errors: %d records, want 500", n)
	}
}
