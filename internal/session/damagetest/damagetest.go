// Package damagetest makes damaged session files for tests of every
// reader: a real session file written by session.Writer, then the shared
// fixtures that crashed readers (testdata/*.db.gz, made by
// testdata/damage-page-counts.sh and by hand), crafted damage (meta pages
// with valid checksums whose root, freelist, high-water mark or page size
// point outside the file; huge element counts and overflow counts; loops;
// broken inline buckets and freelists; truncation) and seeded random
// damage. It parses the bbolt layout itself, independently of the
// validator it tests.
package damagetest

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ssestress/ssestress/internal/session"
)

//go:embed testdata/*.db.gz
var fixtures embed.FS

// Case is one damaged file.
type Case struct {
	Name string
	Data []byte
	// Want is the error session.Open must wrap: session.ErrDamaged,
	// ErrTruncated or ErrNotSession.
	Want error
}

var le = binary.LittleEndian

var (
	realOnce sync.Once
	realData []byte
	realErr  error
)

// Real returns the bytes of a real session file, written once per process
// by session.Writer in dir: a run's meta, 6,000 error records (a B+tree
// with branch pages), 300 connection records, recorded streams with 300
// frames, one of them 64 KiB (overflow pages), and the schema's empty
// buckets (inline buckets).
func Real(tb testing.TB, dir string) []byte {
	tb.Helper()
	realOnce.Do(func() { realData, realErr = writeReal(filepath.Join(dir, "real.db"), 300, 6000, 100, 64<<10) })
	if realErr != nil {
		tb.Fatal(realErr)
	}
	return realData
}

// Small is a real session file of 256 KiB (written by session.Writer,
// with branch pages, an overflow page and inline buckets) for a fuzzer to
// mutate: testdata/small.db.gz, fixed so that a crashing input replays
// (bbolt lays out the pages of one commit in map order, so a file written
// anew differs every time). Regenerate it with
//
//	go test ./internal/session/damagetest -run TestSmallFixture -update
func Small(tb testing.TB) []byte {
	tb.Helper()
	raw, err := fixtures.ReadFile("testdata/small.db.gz")
	if err != nil {
		tb.Fatal(err)
	}
	return gunzip(tb, raw)
}

// WriteSmall writes a new file of Small's kind at path.
func WriteSmall(path string) ([]byte, error) {
	return writeReal(path, 40, 500, 20, 10<<10)
}

func gunzip(tb testing.TB, raw []byte) []byte {
	tb.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func writeReal(path string, conns, errorRecords, frames, bigFrame int) ([]byte, error) {
	w, err := session.Create(path, session.Options{})
	if err != nil {
		return nil, err
	}
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	w.PutMeta(session.MetaRun, session.RunInfo{Tool: "ssestress test", Command: "run", Scenario: "flood", StartedAt: start, EndedAt: start.Add(time.Minute)})
	for i := range conns {
		w.Put(session.ConnRecord{ClientID: fmt.Sprintf("c%04d", i), Start: start.Add(time.Duration(i) * time.Millisecond), Events: 3})
	}
	for i := range errorRecords {
		w.Put(session.ErrorRecord{Time: start.Add(time.Duration(i) * time.Millisecond), ClientID: fmt.Sprintf("c%04d", i%conns), Class: "ECONNRESET",
			Message: "read tcp 127.0.0.1:40000->127.0.0.1:8090: read: connection reset by peer"})
	}
	for s := range 3 {
		conn := fmt.Sprintf("p1-%d", s+1)
		w.Put(session.RecStream{Proxy: "p1", ConnID: conn, Method: "GET", Path: "/stream", Start: start, Status: 200, Ended: true})
		for i := range frames {
			data := fmt.Sprintf(`{"symbol":"AAPL","price":%d}`, 100+i)
			if s == 0 && i == frames/2 {
				data = strings.Repeat("x", bigFrame)
			}
			w.Put(session.RecEvent{Proxy: "p1", ConnID: conn, Seq: i, Offset: session.Seconds(time.Duration(i) * time.Millisecond), Kind: session.RecKindEvent, Data: data})
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// Corpus returns every damaged file: the shared fixtures, the crafted
// damage of Real's file and random damage that Open refuses.
func Corpus(tb testing.TB, dir string) []Case {
	tb.Helper()
	cases := Fixtures(tb)
	cases = append(cases, Crafted(tb, Real(tb, dir))...)
	cases = append(cases, FreelistCases(tb, dir)...)
	cases = append(cases, Random(Real(tb, dir), 1, 200, 12)...)
	return cases
}

// Fixtures are the shared files that crashed readers (SIGSEGV, a fault
// or a panic inside bbolt).
func Fixtures(tb testing.TB) []Case {
	tb.Helper()
	want := map[string]error{
		"counts-huge-real":    session.ErrDamaged,
		"crash-29":            session.ErrDamaged,
		"crash-34":            session.ErrDamaged,
		"midrandom":           session.ErrDamaged,
		"root-beyond":         session.ErrDamaged,
		"trunc2-pgidoverflow": session.ErrTruncated,
	}
	names, err := fixtures.ReadDir("testdata")
	if err != nil {
		tb.Fatal(err)
	}
	var cases []Case
	for _, e := range names {
		name := strings.TrimSuffix(e.Name(), ".db.gz")
		if name == "small" {
			continue // not damaged: Small's base
		}
		raw, err := fixtures.ReadFile("testdata/" + e.Name())
		if err != nil {
			tb.Fatal(err)
		}
		data := gunzip(tb, raw)
		w, ok := want[name]
		if !ok {
			tb.Fatalf("fixture %s: no expected error in damagetest.Fixtures", name)
		}
		cases = append(cases, Case{Name: "fixture-" + name, Data: data, Want: w})
	}
	return cases
}

// Write writes each case into dir as <name>.db and returns the paths in
// the cases' order.
func Write(tb testing.TB, dir string, cases []Case) []string {
	tb.Helper()
	paths := make([]string, len(cases))
	for i, c := range cases {
		paths[i] = filepath.Join(dir, c.Name+".db")
		if err := os.WriteFile(paths[i], c.Data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return paths
}

// layout is what the crafting needs to know of a file.
type layout struct {
	ps       int
	meta     int // the meta page in use (the valid one with the higher txid)
	root     uint64
	high     uint64
	freelist uint64
	buckets  map[string]*bucket
}

// bucket is one top-level bucket.
type bucket struct {
	elem     int    // file offset of its element header in the root page
	value    int    // file offset of its value
	root     uint64 // 0: inline
	branches []uint64
	leaves   []uint64
}

func parse(data []byte) (*layout, error) {
	ps := int(le.Uint32(data[16+8:]))
	l := &layout{ps: ps, buckets: map[string]*bucket{}}
	if le.Uint64(data[ps+16+48:]) > le.Uint64(data[16+48:]) {
		l.meta = 1
	}
	m := l.meta*ps + 16
	l.root, l.freelist, l.high = le.Uint64(data[m+16:]), le.Uint64(data[m+32:]), le.Uint64(data[m+40:])
	rp := int(l.root) * ps
	if flags := le.Uint16(data[rp+8:]); flags != 0x02 {
		return nil, fmt.Errorf("root page %d has flags %#x, not a leaf page", l.root, flags)
	}
	for i := range int(le.Uint16(data[rp+10:])) {
		e := rp + 16 + 16*i
		if le.Uint32(data[e:])&1 == 0 {
			continue
		}
		k := e + int(le.Uint32(data[e+4:]))
		name := string(data[k : k+int(le.Uint32(data[e+8:]))])
		b := &bucket{elem: e, value: k + len(name)}
		b.root = le.Uint64(data[b.value:])
		if b.root != 0 {
			var walk func(id uint64)
			walk = func(id uint64) {
				p := int(id) * ps
				if le.Uint16(data[p+8:]) == 0x01 {
					b.branches = append(b.branches, id)
					for j := range int(le.Uint16(data[p+10:])) {
						walk(le.Uint64(data[p+16+16*j+8:]))
					}
					return
				}
				b.leaves = append(b.leaves, id)
			}
			walk(b.root)
		}
		l.buckets[name] = b
	}
	return l, nil
}

// reseal sets the checksum of meta page i.
func reseal(data []byte, ps, i int) {
	m := i*ps + 16
	h := fnv.New64a()
	h.Write(data[m : m+56])
	le.PutUint64(data[m+56:], h.Sum64())
}

// Crafted damages a copy of real (a file from Real) in each of the ways
// bbolt trusts blindly.
func Crafted(tb testing.TB, real []byte) []Case {
	tb.Helper()
	l, err := parse(real)
	if err != nil {
		tb.Fatal(err)
	}
	errs := l.buckets[session.BucketErrors]
	events := l.buckets[session.BucketRecEvents]
	if errs == nil || len(errs.branches) == 0 || len(errs.leaves) < 2 || events == nil {
		tb.Fatalf("the real file does not have the shape the crafted cases need (errors bucket %+v)", errs)
	}
	var inline *bucket
	for _, name := range session.Buckets {
		if b := l.buckets[name]; b != nil && b.root == 0 {
			inline = b
			break
		}
	}
	if inline == nil {
		tb.Fatal("the real file has no inline bucket")
	}
	ps := l.ps
	var cases []Case
	add := func(name string, want error, damage func(d []byte)) {
		d := bytes.Clone(real)
		damage(d)
		cases = append(cases, Case{Name: name, Data: d, Want: want})
	}
	// bothMetas sets a field of both meta pages and reseals them: the
	// checksums are valid, the values are not.
	bothMetas := func(set func(m []byte)) func(d []byte) {
		return func(d []byte) {
			for i := range 2 {
				set(d[i*ps+16:])
				reseal(d, ps, i)
			}
		}
	}
	page := func(d []byte, id uint64) []byte { return d[int(id)*ps:] }
	pages := uint64(len(real) / ps)

	add("meta-root-past-end", session.ErrDamaged, bothMetas(func(m []byte) { le.PutUint64(m[16:], 1_000_000) }))
	add("meta-root-is-meta-page", session.ErrDamaged, bothMetas(func(m []byte) { le.PutUint64(m[16:], 1) }))
	add("meta-freelist-past-end", session.ErrDamaged, bothMetas(func(m []byte) { le.PutUint64(m[32:], 1<<40) }))
	add("meta-highwater-past-end", session.ErrTruncated, bothMetas(func(m []byte) { le.PutUint64(m[40:], pages+1) }))
	// 2^52+1 pages of 4 KiB wrap around 2^64 to 4 KiB: a check that
	// multiplies in 64 bits passes it.
	add("meta-highwater-overflow", session.ErrTruncated, bothMetas(func(m []byte) { le.PutUint64(m[40:], 1<<52+1) }))
	add("meta-highwater-huge", session.ErrTruncated, bothMetas(func(m []byte) { le.PutUint64(m[40:], ^uint64(0)) }))
	add("meta-page-size-0", session.ErrDamaged, bothMetas(func(m []byte) { le.PutUint32(m[8:], 0) }))
	add("meta-page-size-3000", session.ErrDamaged, bothMetas(func(m []byte) { le.PutUint32(m[8:], 3000) }))
	add("meta-page-size-1MiB", session.ErrDamaged, bothMetas(func(m []byte) { le.PutUint32(m[8:], 1<<20) }))
	add("meta-version-3", session.ErrDamaged, bothMetas(func(m []byte) { le.PutUint32(m[4:], 3) }))
	add("meta-checksums-bad", session.ErrDamaged, func(d []byte) { d[16+40] ^= 0xFF; d[ps+16+40] ^= 0xFF })
	add("meta-magic-gone", session.ErrNotSession, func(d []byte) { le.PutUint32(d[16:], 0); le.PutUint32(d[ps+16:], 0) })
	add("meta-newer-root-past-end", session.ErrDamaged, func(d []byte) {
		m := l.meta*ps + 16
		le.PutUint64(d[m+16:], 1_000_000)
		reseal(d, ps, l.meta)
	})
	add("truncated-one-page-short", session.ErrTruncated, func(d []byte) {}) // cut below
	cases[len(cases)-1].Data = bytes.Clone(real[:int(l.high-1)*ps])
	add("truncated-inside-meta", session.ErrTruncated, func(d []byte) {})
	cases[len(cases)-1].Data = bytes.Clone(real[:ps+100])

	// Pages: the damage script's, and single pages of the errors bucket.
	add("every-page-count-ffff", session.ErrDamaged, func(d []byte) {
		for id := 2; id < len(d)/ps; id++ {
			le.PutUint16(d[id*ps+10:], 0xFFFF)
		}
	})
	add("leaf-count-ffff", session.ErrDamaged, func(d []byte) { le.PutUint16(page(d, errs.leaves[1])[10:], 0xFFFF) })
	add("leaf-count-plus-one", session.ErrDamaged, func(d []byte) {
		p := page(d, errs.leaves[1])
		le.PutUint16(p[10:], le.Uint16(p[10:])+1)
	})
	add("every-overflow-huge", session.ErrDamaged, func(d []byte) {
		for _, id := range append(errs.leaves, errs.branches...) {
			le.PutUint32(page(d, id)[12:], 0xFFFFFFFF)
		}
	})
	add("overflow-past-high-water", session.ErrDamaged, func(d []byte) {
		id := errs.leaves[len(errs.leaves)-1]
		le.PutUint32(page(d, id)[12:], uint32(l.high-id))
	})
	add("branch-child-past-end", session.ErrDamaged, func(d []byte) { le.PutUint64(page(d, errs.branches[0])[16+8:], 1<<50) })
	add("branch-child-is-itself", session.ErrDamaged, func(d []byte) { le.PutUint64(page(d, errs.branches[0])[16+8:], errs.branches[0]) })
	add("branch-children-same-page", session.ErrDamaged, func(d []byte) {
		p := page(d, errs.branches[0])
		le.PutUint64(p[16+16+8:], le.Uint64(p[16+8:]))
	})
	add("branch-child-meta-page", session.ErrDamaged, func(d []byte) { le.PutUint64(page(d, errs.branches[0])[16+8:], 0) })
	add("branch-no-elements", session.ErrDamaged, func(d []byte) { le.PutUint16(page(d, errs.branches[0])[10:], 0) })
	add("page-says-other-id", session.ErrDamaged, func(d []byte) { le.PutUint64(page(d, errs.leaves[1]), errs.leaves[1]+1) })
	add("leaf-typed-freelist", session.ErrDamaged, func(d []byte) { le.PutUint16(page(d, errs.leaves[1])[8:], 0x10) })
	add("leaf-typed-meta", session.ErrDamaged, func(d []byte) { le.PutUint16(page(d, errs.leaves[1])[8:], 0x04) })
	add("key-past-page", session.ErrDamaged, func(d []byte) { le.PutUint32(page(d, errs.leaves[1])[16+8:], 1<<30) })
	add("value-past-page", session.ErrDamaged, func(d []byte) { le.PutUint32(page(d, errs.leaves[1])[16+12:], 0xFFFFFFF0) })
	add("key-position-huge", session.ErrDamaged, func(d []byte) { le.PutUint32(page(d, errs.leaves[1])[16+4:], 0xFFFFFFF0) })
	add("key-empty", session.ErrDamaged, func(d []byte) { le.PutUint32(page(d, errs.leaves[1])[16+8:], 0) })
	add("bucket-root-past-end", session.ErrDamaged, func(d []byte) { le.PutUint64(d[errs.value:], 1<<40) })
	add("bucket-root-is-root-page", session.ErrDamaged, func(d []byte) { le.PutUint64(d[errs.value:], l.root) })
	add("bucket-value-short", session.ErrDamaged, func(d []byte) { le.PutUint32(d[errs.elem+12:], 8) })
	add("inline-page-branch", session.ErrDamaged, func(d []byte) { le.PutUint16(d[inline.value+16+8:], 0x01) })
	add("inline-count-ffff", session.ErrDamaged, func(d []byte) { le.PutUint16(d[inline.value+16+10:], 0xFFFF) })
	add("events-overflow-page-cut", session.ErrDamaged, func(d []byte) {
		// The largest page of rec_events (the 64 KiB frame) claims more
		// overflow pages than the file holds.
		for _, id := range events.leaves {
			if le.Uint32(page(d, id)[12:]) > 0 {
				le.PutUint32(page(d, id)[12:], uint32(pages))
			}
		}
	})
	return cases
}

// FreelistCases damage the freelist page of a session file written with
// bbolt's defaults (a synced freelist; session.Writer does not sync its
// own, but a file may come from elsewhere, and bbolt reads the freelist
// of one for its consistency check and when a writer appends).
func FreelistCases(tb testing.TB, dir string) []Case {
	tb.Helper()
	path := filepath.Join(dir, "freelist.db")
	os.Remove(path)
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for round := range 5 {
		err := db.Update(func(tx *bolt.Tx) error {
			for _, name := range session.Buckets {
				if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
					return err
				}
			}
			if err := tx.Bucket([]byte(session.BucketMeta)).Put([]byte(session.MetaSchema), []byte(fmt.Sprint(session.SchemaVersion))); err != nil {
				return err
			}
			b := tx.Bucket([]byte(session.BucketErrors))
			for i := range 200 {
				key := fmt.Sprintf("%02d-%04d", round, i)
				if err := b.Put([]byte(key), []byte(`{"class":"ECONNRESET","conn_id":"c0001"}`)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	real, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := parse(real)
	if err != nil {
		tb.Fatal(err)
	}
	if l.freelist == ^uint64(0) || l.freelist >= l.high {
		tb.Fatalf("bbolt wrote no freelist page (freelist %d, high-water mark %d)", l.freelist, l.high)
	}
	page := func(d []byte) []byte { return d[int(l.freelist)*l.ps:] }
	var cases []Case
	add := func(name string, damage func(d []byte)) {
		d := bytes.Clone(real)
		damage(d)
		cases = append(cases, Case{Name: name, Data: d, Want: session.ErrDamaged})
	}
	add("freelist-count-huge", func(d []byte) {
		le.PutUint16(page(d)[10:], 0xFFFF)
		le.PutUint64(page(d)[16:], 1<<60)
	})
	add("freelist-count-past-page", func(d []byte) { le.PutUint16(page(d)[10:], 0xFFF0) })
	add("freelist-id-past-end", func(d []byte) {
		le.PutUint16(page(d)[10:], 1)
		le.PutUint64(page(d)[16:], 1<<40)
	})
	add("freelist-frees-the-root", func(d []byte) {
		le.PutUint16(page(d)[10:], 1)
		le.PutUint64(page(d)[16:], l.root)
	})
	add("freelist-typed-leaf", func(d []byte) { le.PutUint16(page(d)[8:], 0x02) })
	add("freelist-overflow-huge", func(d []byte) { le.PutUint32(page(d)[12:], 0xFFFFFFFF) })
	return cases
}

// SwapFirstKeys returns a copy of data whose first leaf page of bucket
// has its first two keys swapped (keys of equal length, so the layout
// stays valid): the records are intact, their order is not.
func SwapFirstKeys(tb testing.TB, data []byte, bucketName string) []byte {
	tb.Helper()
	l, err := parse(data)
	if err != nil {
		tb.Fatal(err)
	}
	b := l.buckets[bucketName]
	if b == nil || len(b.leaves) == 0 {
		tb.Fatalf("bucket %s has no leaf page", bucketName)
	}
	d := bytes.Clone(data)
	p := int(b.leaves[0]) * l.ps
	k := func(i int) []byte {
		e := p + 16 + 16*i
		off := e + int(le.Uint32(d[e+4:]))
		return d[off : off+int(le.Uint32(d[e+8:]))]
	}
	a, c := k(0), k(1)
	if len(a) != len(c) {
		tb.Fatalf("keys of %d and %d bytes", len(a), len(c))
	}
	tmp := bytes.Clone(a)
	copy(a, c)
	copy(c, tmp)
	return d
}

// Random damages copies of real with seeded random writes (16 random
// bytes at a random offset, or a random bit flip, in the pages below the
// high-water mark) and keeps the first keep of n tries that Open
// refuses; Want is nil (any of ErrDamaged, ErrTruncated, ErrNotSession).
// The others are record-level damage: readers skip what does not decode.
func Random(real []byte, seed uint64, n, keep int) []Case {
	rng := rand.New(rand.NewPCG(seed, 0x5e55))
	l, err := parse(real)
	if err != nil {
		return nil
	}
	used := int(l.high) * l.ps
	dir, err := os.MkdirTemp("", "damagetest-")
	if err != nil {
		return nil
	}
	defer os.RemoveAll(dir)
	var cases []Case
	for i := 0; i < n && len(cases) < keep; i++ {
		d := bytes.Clone(real)
		name := ""
		if i%2 == 0 {
			off := rng.IntN(used - 16)
			for j := range 16 {
				d[off+j] = byte(rng.Uint32())
			}
			name = fmt.Sprintf("random-16-bytes-at-%d", off)
		} else {
			off := rng.IntN(used)
			d[off] ^= 1 << rng.IntN(8)
			name = fmt.Sprintf("random-bit-at-%d", off)
		}
		p := filepath.Join(dir, "try.db")
		if err := os.WriteFile(p, d, 0o644); err != nil {
			return cases
		}
		r, err := session.Open(p)
		if err == nil {
			r.Close()
			continue
		}
		if errors.Is(err, session.ErrDamaged) || errors.Is(err, session.ErrTruncated) || errors.Is(err, session.ErrNotSession) {
			cases = append(cases, Case{Name: name, Data: d})
		}
	}
	return cases
}
