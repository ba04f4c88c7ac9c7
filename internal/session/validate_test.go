package session_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/session/damagetest"
)

// TestValidateAcceptsRealFile: the validator accepts a real session file
// (branch pages, overflow pages, inline buckets, a freelist), and bbolt's
// own consistency check agrees with it.
func TestValidateAcceptsRealFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "real.db")
	if err := os.WriteFile(path, damagetest.Real(t, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := session.Open(path)
	if err != nil {
		t.Fatalf("Open refused a real file: %v", err)
	}
	defer r.Close()
	if err := r.Check(); err != nil {
		t.Fatalf("bbolt's check: %v", err)
	}
	if n := r.Count(session.BucketErrors); n != 6000 {
		t.Errorf("errors: %d records, want 6000", n)
	}
}

// TestDamagedCorpusRefused: every file of the corpus (the shared fixtures
// that crashed readers, crafted damage, random damage) is refused by Open
// with one line that names the file and wraps the expected error, without
// a panic.
func TestDamagedCorpusRefused(t *testing.T) {
	dir := t.TempDir()
	cases := damagetest.Corpus(t, dir)
	paths := damagetest.Write(t, dir, cases)
	for i, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("Open panicked: %v", p)
				}
			}()
			r, err := session.Open(paths[i])
			if err == nil {
				r.Close()
				t.Fatalf("Open accepted it")
			}
			want := c.Want
			if want == nil && !errors.Is(err, session.ErrDamaged) && !errors.Is(err, session.ErrTruncated) && !errors.Is(err, session.ErrNotSession) {
				t.Fatalf("error %q wraps none of ErrDamaged, ErrTruncated, ErrNotSession", err)
			}
			if want != nil && !errors.Is(err, want) {
				t.Fatalf("error %q does not wrap %q", err, want)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, paths[i]+" ") || strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line starting with the file's name: %q", msg)
			}
			t.Log(err)
		})
	}
}

// TestValidateCatchesWhatBboltTrusts: a file the validator refuses for a
// damaged page is one bbolt opens without complaint, then faults or
// panics on, so the check is needed (this guards against a test corpus
// that bbolt itself would have refused anyway).
func TestValidateCatchesWhatBboltTrusts(t *testing.T) {
	dir := t.TempDir()
	var opened int
	cases := damagetest.Crafted(t, damagetest.Real(t, dir))
	for _, c := range cases {
		p := filepath.Join(dir, c.Name+".db")
		if err := os.WriteFile(p, c.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(p, 0o444, &bolt.Options{ReadOnly: true})
		if err == nil {
			opened++
			db.Close()
		}
	}
	if opened < len(cases)/2 {
		t.Errorf("bbolt itself refused %d of %d crafted files: the corpus does not test the validator", len(cases)-opened, len(cases))
	}
}

// TestKeysOutOfOrder: a leaf page whose keys are out of order reads as a
// file with records in an odd order (Open accepts it; bbolt reads it
// without leaving its pages), but bbolt's consistency check and a writer
// appending to it (which rebuilds the freelist with that check, and
// panics in a goroutine of its own on the first such key) refuse it with
// ErrDamaged before bbolt sees it.
func TestKeysOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	data := damagetest.Small(t)
	path := filepath.Join(dir, "swapped.db")
	if err := os.WriteFile(path, damagetest.SwapFirstKeys(t, data, session.BucketErrors), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := session.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if n := r.Count(session.BucketErrors); n != 500 {
		t.Errorf("errors: %d records, want 500", n)
	}
	err = r.Check()
	r.Close()
	if !errors.Is(err, session.ErrDamaged) || !strings.Contains(err.Error(), "key 1 is not above the key before it") {
		t.Errorf("Check: %v, want ErrDamaged naming the key", err)
	}
	if _, err := session.Create(path, session.Options{Append: true}); !errors.Is(err, session.ErrDamaged) {
		t.Errorf("Create(Append): %v, want ErrDamaged", err)
	}
}
