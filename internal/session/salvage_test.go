package session_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/session/damagetest"
)

// records reads every key and value of every bucket of the file at path.
func records(t *testing.T, path string) map[string]map[string][]byte {
	t.Helper()
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	all := map[string]map[string][]byte{}
	for _, b := range session.Buckets {
		all[b] = map[string][]byte{}
		if err := r.Each(b, func(k, v []byte) error { all[b][string(k)] = bytes.Clone(v); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

// TestSalvageIntactFile: salvaging a file that is not damaged copies every
// record, byte for byte, and reports nothing lost.
func TestSalvageIntactFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "real.db")
	if err := os.WriteFile(src, damagetest.Real(t, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "copy.db")
	rep, err := session.Salvage(src, out, session.SalvageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, got := records(t, src), records(t, out)
	for b, recs := range want {
		if len(got[b]) != len(recs) {
			t.Errorf("bucket %s: %d records copied, the file has %d", b, len(got[b]), len(recs))
		}
		for k, v := range recs {
			if !bytes.Equal(got[b][k], v) {
				t.Errorf("bucket %s key %q: copied %q, want %q", b, k, got[b][k], v)
				break
			}
		}
		if sb := rep.Buckets[b]; sb == nil || sb.Lost() || sb.Copied != int64(len(recs)) || sb.FromOlderTree+sb.FromLoosePages != 0 {
			t.Errorf("bucket %s: report %+v, want %d copied and nothing lost", b, sb, len(recs))
		}
	}
}

// TestSalvageAroundDamage: salvage copies what each kind of damage left
// readable and counts what it lost.
func TestSalvageAroundDamage(t *testing.T) {
	dir := t.TempDir()
	real := damagetest.Real(t, dir)
	byName := map[string][]byte{}
	for _, c := range damagetest.Crafted(t, real) {
		byName[c.Name] = c.Data
	}
	for _, tc := range []struct {
		name string
		// errors records copied at least, and pages lost from the errors
		// bucket's tree at most.
		minErrors int64
		maxLost   int64
	}{
		// The count of every page damaged: the first element tells the
		// real count, nothing is lost.
		{"every-page-count-ffff", 6000, 0},
		{"leaf-count-ffff", 6000, 0},
		// A root past the end: the root page is found by scanning.
		{"meta-root-past-end", 6000, 0},
		// The newer meta page's root past the end: the older one's.
		{"meta-newer-root-past-end", 6000, 0},
		// A branch child points outside the file: the page it pointed to
		// is found among the pages no tree reached.
		{"branch-child-past-end", 6000, 1},
		// A leaf page that says it is another: its records are lost.
		{"page-says-other-id", 5900, 1},
		// The last page cut off.
		{"truncated-one-page-short", 5900, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(dir, tc.name+".db")
			if err := os.WriteFile(src, byName[tc.name], 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, tc.name+".salvaged.db")
			rep, err := session.Salvage(src, out, session.SalvageOptions{})
			if err != nil {
				t.Fatal(err)
			}
			sb := rep.Buckets[session.BucketErrors]
			if sb == nil || sb.Copied < tc.minErrors || sb.PagesLost > tc.maxLost {
				t.Fatalf("errors: %+v, want at least %d copied and at most %d pages lost", sb, tc.minErrors, tc.maxLost)
			}
			r, err := session.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if n := r.Count(session.BucketErrors); int64(n) != sb.Copied {
				t.Errorf("the copy holds %d errors, the report says %d", n, sb.Copied)
			}
			if err := r.Check(); err != nil {
				t.Errorf("the copy fails bbolt's check: %v", err)
			}
			t.Logf("%+v", sb)
		})
	}
}

// TestSalvageCorpus: salvage never panics on any damaged file; it writes
// a copy readers accept, or says in one line why nothing could be copied.
func TestSalvageCorpus(t *testing.T) {
	dir := t.TempDir()
	cases := damagetest.Corpus(t, dir)
	paths := damagetest.Write(t, dir, cases)
	for i, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			out := paths[i] + ".salvaged"
			rep, err := session.Salvage(paths[i], out, session.SalvageOptions{})
			if err != nil {
				if !errors.Is(err, session.ErrDamaged) && !errors.Is(err, session.ErrNotSession) {
					t.Fatalf("unexpected error: %v", err)
				}
				if _, serr := os.Stat(out); serr == nil {
					t.Fatalf("a copy was left behind after %v", err)
				}
				return
			}
			r, err := session.Open(out)
			if err != nil {
				t.Fatalf("the copy: %v", err)
			}
			defer r.Close()
			for b, sb := range rep.Buckets {
				if n := r.Count(b); int64(n) != sb.Copied {
					t.Errorf("bucket %s: the copy holds %d, the report says %d", b, n, sb.Copied)
				}
			}
		})
	}
}

// TestSalvageNeverReplaces: an existing --out is refused unless Force,
// and a file that is not bbolt at all is refused.
func TestSalvageNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "small.db")
	os.WriteFile(src, damagetest.Small(t), 0o644)
	out := filepath.Join(dir, "out.db")
	os.WriteFile(out, []byte("precious"), 0o644)
	if _, err := session.Salvage(src, out, session.SalvageOptions{}); !errors.Is(err, session.ErrOutExists) {
		t.Fatalf("Salvage over an existing file: %v, want ErrOutExists", err)
	}
	if raw, _ := os.ReadFile(out); string(raw) != "precious" {
		t.Fatal("the existing file changed")
	}
	if _, err := session.Salvage(src, out, session.SalvageOptions{Force: true}); err != nil {
		t.Fatalf("Salvage --force: %v", err)
	}
	if n := len(records(t, out)[session.BucketErrors]); n != 500 {
		t.Errorf("the replaced copy holds %d errors, want 500", n)
	}
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, bytes.Repeat([]byte("notes, not bbolt "), 1000), 0o644)
	if _, err := session.Salvage(text, filepath.Join(dir, "x.db"), session.SalvageOptions{}); !errors.Is(err, session.ErrNotSession) {
		t.Errorf("Salvage of a text file: %v, want ErrNotSession", err)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, ".*salvage*")); len(names) > 0 {
		t.Errorf("temporary files left behind: %v", names)
	}
}
