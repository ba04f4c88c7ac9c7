package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/ssestress/ssestress/internal/inputfile"
)

// ErrOutExists is returned by Salvage when the output file exists and
// SalvageOptions.Force is not set.
var ErrOutExists = errors.New("already exists")

// SalvageOptions configure Salvage. The zero value refuses to replace an
// existing output file.
type SalvageOptions struct {
	// Force replaces an existing output file.
	Force bool
}

// SalvageReport says what Salvage copied and what it could not.
type SalvageReport struct {
	Source string `json:"source"`
	Out    string `json:"out"`
	// Trees are the B+tree roots read, in order: the meta page bbolt
	// would use first, then the other meta page's (the commit before),
	// then root pages found by scanning the file when no meta page led to
	// one. Records missing from the first are taken from the next.
	Trees   []string                   `json:"trees"`
	Buckets map[string]*SalvagedBucket `json:"buckets"`
	// LoosePagesUnknown counts leaf pages no tree reached whose records
	// could not be told to belong to a bucket (not copied).
	LoosePagesUnknown int64 `json:"loose_pages_unknown,omitempty"`
	// SchemaAssumed: the schema version was lost; the output says
	// SchemaVersion.
	SchemaAssumed bool `json:"schema_assumed,omitempty"`
}

// SalvagedBucket counts one bucket's records.
type SalvagedBucket struct {
	Copied int64 `json:"copied"`
	// FromOlderTree counts the copied records found only in a later tree
	// of Trees (they were under a page of the first that could not be read).
	FromOlderTree int64 `json:"from_older_tree,omitempty"`
	// FromLoosePages counts the copied records found on leaf pages no tree
	// reached (after pages were lost), recognised as this bucket's by
	// their keys and values; a record found there may be an older
	// version than the one lost.
	FromLoosePages int64 `json:"from_loose_pages,omitempty"`
	// Unreadable counts records found whose key or value lay outside their
	// page, whose value does not decode as the bucket's record type, or
	// that are buckets the schema does not have.
	Unreadable int64 `json:"unreadable"`
	// PagesLost counts pages of the first tree that could not be read
	// (out of the file, of the wrong type, a loop): how many records they
	// held is unknown; FromOlderTree says how many a later tree gave back.
	PagesLost int64 `json:"pages_lost"`
	// FirstProblem describes the first unreadable record or page.
	FirstProblem string `json:"first_problem,omitempty"`
}

// Lost reports whether anything of the bucket was not copied.
func (b *SalvagedBucket) Lost() bool { return b.Unreadable > 0 || b.PagesLost > 0 }

// Salvage copies every record of the session file src that can still be
// read into a new session file out, and reports what it copied and what
// it lost, per bucket. It reads src with ReadAt, never through bbolt (bbolt
// would crash on the damage), walking the B+tree of each meta page and
// skipping what lies outside the file or its pages; a record is copied
// when its key and value lie inside its page and its value is JSON (the
// schema version in meta: a decimal). The output is written beside out
// and renamed into place when complete and valid; it never replaces an
// existing file unless opts.Force. src is not changed.
func Salvage(src, out string, opts SalvageOptions) (*SalvageReport, error) {
	if err := inputfile.CheckRegular(src); err != nil {
		var nr *inputfile.NotRegularError
		if errors.As(err, &nr) {
			return nil, fmt.Errorf("%s %w (it is %s)", src, ErrNotSession, nr.Kind)
		}
		return nil, err
	}
	if !opts.Force {
		if _, err := os.Lstat(out); err == nil {
			return nil, fmt.Errorf("%s %w (give --force to replace it)", out, ErrOutExists)
		}
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := lockShared(f, openLockTimeout); err != nil {
		if errors.Is(err, errLocked) {
			return nil, inUseError(src)
		}
		return nil, fmt.Errorf("%s: lock: %w", src, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	s, err := newSalvager(f, src, st.Size())
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".salvage-*")
	if err != nil {
		return nil, err
	}
	tmpPath := tmp.Name()
	tmp.Close()
	os.Remove(tmpPath) // bbolt makes it anew
	done := false
	defer func() {
		if !done {
			os.Remove(tmpPath)
		}
	}()
	rep, err := s.copyTo(tmpPath)
	if err != nil {
		return nil, err
	}
	rep.Source, rep.Out = src, out
	// The copy must be what a reader accepts.
	r, err := open(tmpPath, true)
	if err != nil {
		return nil, fmt.Errorf("salvaged copy of %s: %w", src, err)
	}
	r.Close()
	if opts.Force {
		err = os.Rename(tmpPath, out)
	} else if err = os.Link(tmpPath, out); err == nil {
		// A link never replaces an existing file, even one made meanwhile.
		os.Remove(tmpPath)
	} else if errors.Is(err, os.ErrExist) {
		err = fmt.Errorf("%s %w (give --force to replace it)", out, ErrOutExists)
	}
	if err != nil {
		return nil, err
	}
	done = true
	return rep, nil
}

// salvager reads a damaged file's pages defensively.
type salvager struct {
	bf    *boltFile
	roots []salvageRoot
	// reached are the pages the tree walks read.
	reached map[uint64]bool
	// newestLost: the newest commit's meta page leads to no root.
	newestLost bool
	// version is the file's schema version once its meta record is read
	// (the meta bucket is copied first), SchemaVersion until then:
	// records of older versions are checked upgraded, and copied as they
	// are.
	version int
}

type salvageRoot struct {
	page uint64
	what string
}

// newSalvager finds the page size and the candidate roots: the valid meta
// pages' roots (the one bbolt would use first), else root-like pages
// found by a scan.
func newSalvager(r *os.File, path string, size int64) (*salvager, error) {
	if size < pageHeaderSize+metaSize {
		return nil, fmt.Errorf("%s %w (too short to be a bbolt file)", path, ErrNotSession)
	}
	bf := &boltFile{r: r, path: path, size: size, wholePages: true}
	// The page size: bbolt's choice when it is sane, else a meta page's
	// own claim whose second meta page sits where it says.
	if ps, err := bf.bboltPageSize(); err == nil && validPageSize(ps) {
		bf.pageSize = ps
	} else {
		var buf [pageHeaderSize + metaSize]byte
		for ps := int64(minPageSize); ps <= maxPageSize && bf.pageSize == 0; ps *= 2 {
			if _, err := r.ReadAt(buf[:], ps); err == nil {
				if m := parseMeta(buf[:]); m.magic == boltMagic && int64(m.pageSize) == ps {
					bf.pageSize = ps
				}
			}
		}
		if bf.pageSize == 0 {
			if _, err := r.ReadAt(buf[:], 0); err != nil || parseMeta(buf[:]).magic != boltMagic {
				return nil, fmt.Errorf("%s %w (%v)", path, ErrNotSession, errNotBolt)
			}
			bf.pageSize = int64(os.Getpagesize())
		}
	}
	bf.pages = uint64(size / bf.pageSize)
	s := &salvager{bf: bf, reached: map[uint64]bool{}, version: SchemaVersion}
	var metas []metaPage
	var buf [pageHeaderSize + metaSize]byte
	magic := false
	for i := int64(0); i < 2; i++ {
		if _, err := r.ReadAt(buf[:], i*bf.pageSize); err == nil {
			m := parseMeta(buf[:])
			magic = magic || m.magic == boltMagic
			if m.invalid == "" {
				metas = append(metas, m)
			}
		}
	}
	if !magic {
		return nil, fmt.Errorf("%s %w (%v)", path, ErrNotSession, errNotBolt)
	}
	sort.Slice(metas, func(i, j int) bool { return metas[i].txid > metas[j].txid })
	// The newest commit's root first; when its meta page does not lead to
	// a root, the root pages a scan finds (the highest page first: bbolt
	// allocates a commit's pages at the end of the file unless freed pages
	// fit, so the newest root is often the last), then the older commit's.
	newest := len(metas) > 0 && metas[0].root >= 2 && metas[0].root < bf.pages && s.rootLike(metas[0].root)
	s.newestLost = !newest
	if newest {
		m := metas[0]
		s.roots = append(s.roots, salvageRoot{m.root, fmt.Sprintf("root page %d of transaction %d", m.root, m.txid)})
	} else {
		for id := bf.pages; id > 2; {
			id--
			if s.rootLike(id) {
				s.roots = append(s.roots, salvageRoot{id, fmt.Sprintf("root page %d found by scanning", id)})
			}
		}
	}
	if len(metas) > 1 && metas[1].root >= 2 && metas[1].root < bf.pages && metas[1].root != metas[0].root {
		m := metas[1]
		s.roots = append(s.roots, salvageRoot{m.root, fmt.Sprintf("root page %d of transaction %d", m.root, m.txid)})
	}
	return s, nil
}

// rootLike reports whether page id is a leaf page holding at least two of
// the schema's buckets: the root of a session file.
func (s *salvager) rootLike(id uint64) bool {
	p, err := s.bf.readPage(id, s.bf.pages)
	if err != nil || p.flags != flagLeaf {
		return false
	}
	elems, _ := p.elements(false)
	known := 0
	for _, e := range elems {
		if !e.isBucket() || e.ksize > 64 {
			continue
		}
		if k, err := p.key(e); err == nil && bucketOrder(string(k)) < len(Buckets) {
			known++
		}
	}
	return known >= 2
}

// salvageCommitEvery bounds a write transaction of the copy.
const salvageCommitEvery = 20000

// copyTo writes every readable record into a new bbolt file at path.
func (s *salvager) copyTo(path string) (*SalvageReport, error) {
	db, err := bolt.Open(path, 0o644, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	w := &salvageWriter{db: db}
	rep := &SalvageReport{Buckets: map[string]*SalvagedBucket{}}
	for _, r := range s.roots {
		rep.Trees = append(rep.Trees, r.what)
	}
	err = w.begin()
	for _, name := range Buckets {
		if err == nil {
			_, err = w.tx.CreateBucketIfNotExists([]byte(name))
		}
	}
	lost := true
	if err == nil {
		lost, err = s.copyBuckets(w, rep)
	}
	if err == nil && lost {
		// Pages were lost: the records on leaf pages no tree reached.
		err = s.copyLoosePages(w, rep)
	}
	if err == nil && len(rep.Buckets) == 0 {
		trees := "no meta page leads to a root, and no page holds the session's buckets"
		if len(rep.Trees) > 0 {
			trees = strings.Join(rep.Trees, ", ")
		}
		err = damagedf(s.bf.path, "no root bucket could be read (%s) and no page holds records: nothing can be salvaged", trees)
	}
	if err == nil {
		meta := w.tx.Bucket([]byte(BucketMeta))
		if meta.Get([]byte(MetaSchema)) == nil {
			rep.SchemaAssumed = true
			err = meta.Put([]byte(MetaSchema), []byte(strconv.Itoa(SchemaVersion)))
		}
	}
	if err == nil {
		err = w.tx.Commit()
		w.tx = nil
	}
	if w.tx != nil {
		w.tx.Rollback()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, ErrDamaged) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("salvage into %s: %w", path, err)
	}
	return rep, nil
}

// salvageWriter writes the copy in transactions of salvageCommitEvery
// records.
type salvageWriter struct {
	db      *bolt.DB
	tx      *bolt.Tx
	pending int
}

func (w *salvageWriter) begin() (err error) {
	w.tx, err = w.db.Begin(true)
	w.pending = 0
	return err
}

// put stores key/val in bucket unless onlyNew and the key is there; it
// reports whether it stored.
func (w *salvageWriter) put(bucket string, key, val []byte, onlyNew bool) (bool, error) {
	b, err := w.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return false, err
	}
	b.FillPercent = 0.9
	if onlyNew && b.Get(key) != nil {
		return false, nil
	}
	if err := b.Put(key, val); err != nil {
		return false, err
	}
	if w.pending++; w.pending >= salvageCommitEvery {
		if err := w.tx.Commit(); err != nil {
			w.tx = nil
			return false, err
		}
		return true, w.begin()
	}
	return true, nil
}

// copyBuckets copies each top-level bucket from the first tree that has
// it, then, for a bucket whose walk lost pages, the records of the later
// trees that the first did not have. It reports whether pages were lost
// in the end (or no tree could be read).
func (s *salvager) copyBuckets(w *salvageWriter, rep *SalvageReport) (bool, error) {
	type found struct {
		root   uint64
		inline []byte
	}
	trees := make([]map[string]found, len(s.roots))
	var names []string
	seen := map[string]bool{}
	for i, r := range s.roots {
		trees[i] = map[string]found{}
		p, err := s.bf.readPage(r.page, s.bf.pages)
		if err != nil || p.flags != flagLeaf {
			continue
		}
		elems, _ := p.elements(false)
		for _, e := range elems {
			if !e.isBucket() {
				continue
			}
			k, err1 := p.key(e)
			v, err2 := p.value(e)
			if err1 != nil || err2 != nil {
				continue
			}
			root, err := bucketRoot(v)
			if err != nil || root >= s.bf.pages {
				continue
			}
			name := string(k)
			trees[i][name] = found{root: root, inline: v}
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	sort.Slice(names, func(i, j int) bool {
		return bucketOrder(names[i]) < bucketOrder(names[j]) || bucketOrder(names[i]) == bucketOrder(names[j]) && names[i] < names[j]
	})
	lost := len(names) == 0 || s.newestLost
	for _, name := range names {
		sb := &SalvagedBucket{}
		rep.Buckets[name] = sb
		first := true
		for i := range trees {
			fb, ok := trees[i][name]
			if !ok {
				continue
			}
			walk := &bucketWalk{s: s, w: w, bucket: name, sb: sb, older: !first, seen: map[uint64]bool{}}
			if fb.root == 0 {
				walk.inline(fb.inline)
			} else {
				walk.page(fb.root, 0)
			}
			if walk.err != nil {
				return false, walk.err
			}
			if first {
				sb.PagesLost = walk.pagesLost
				first = false
				if walk.pagesLost == 0 {
					break // nothing for a later tree to fill in
				}
				lost = true
			}
		}
	}
	return lost, nil
}

// copyLoosePages copies the records of the leaf pages that no tree walk
// reached: a page lost from a tree leaves its children and the older
// versions of pages behind. Each page's records are recognised by
// decoding them as each record type: a keyed record whose key is the one
// it is stored under, or a record under a sequence key that decodes with
// no unknown field; the bucket most of a page's records match is the
// page's. Records the copy already has are kept as they are.
func (s *salvager) copyLoosePages(w *salvageWriter, rep *SalvageReport) error {
	for id := s.bf.pages; id > 2; {
		id--
		if s.reached[id] {
			continue
		}
		p, err := s.bf.readPage(id, s.bf.pages)
		if err != nil || p.flags != flagLeaf {
			continue
		}
		elems, _ := p.elements(false)
		bucket := classifyPage(s.version, p, elems)
		if bucket == "" {
			if len(elems) > 0 {
				rep.LoosePagesUnknown++
			}
			continue
		}
		sb := rep.Buckets[bucket]
		if sb == nil {
			sb = &SalvagedBucket{}
			rep.Buckets[bucket] = sb
		}
		for _, e := range elems {
			k, err1 := p.key(e)
			v, err2 := p.value(e)
			if err1 != nil || err2 != nil || e.isBucket() || !validRecord(s.version, bucket, k, v) {
				continue
			}
			stored, err := w.put(bucket, k, v, true)
			if err != nil {
				return err
			}
			if stored {
				sb.Copied++
				sb.FromLoosePages++
			}
		}
	}
	return nil
}

// classifySample is how many records of a page classifyPage decodes.
const classifySample = 5

// recordKinds recognise a record of each bucket by its key and value.
var recordKinds = []struct {
	bucket string
	match  func(key, val []byte) bool
}{
	{BucketMeta, func(key, val []byte) bool {
		switch string(key) {
		case MetaSchema, MetaRun, MetaSummary, MetaKernel, v1MetaCapture:
			return true
		}
		return false
	}},
	{BucketTopology, sequenced[Endpoint]},
	{BucketConns, keyed[ConnRecord]},
	{BucketErrors, sequenced[ErrorRecord]},
	{BucketSamples, sequenced[Sample]},
	{BucketProxies, keyed[ProxyInfo]},
	{BucketHopConns, keyed[HopConn]},
	{BucketFaults, sequenced[FaultEvent]},
	{BucketCaptures, keyed[CaptureInfo]},
	{BucketFlows, keyed[Flow]},
	{BucketResets, keyed[Reset]},
	{BucketRecStreams, keyed[RecStream]},
	{BucketRecEvents, keyed[RecEvent]},
	{BucketKernelEvents, keyed[KernelEvent]},
}

// keyed matches a record that decodes as T and whose own key is key.
func keyed[T Keyed](key, val []byte) bool {
	var v T
	return json.Unmarshal(val, &v) == nil && bytes.Equal(v.Key(), key)
}

// sequenced matches a record under an 8-byte sequence key that decodes as
// T with no field T does not have.
func sequenced[T any](key, val []byte) bool {
	if len(key) != 8 {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(val))
	dec.DisallowUnknownFields()
	var v T
	return dec.Decode(&v) == nil
}

// classifyPage names the bucket most of the page's records match, "" when
// none or two match as many. It looks at up to classifySample records
// spread over the page (a leaf page holds one bucket's records), upgraded
// from the file's schema version.
func classifyPage(version int, p *page, elems []element) string {
	if len(elems) > classifySample {
		sample := make([]element, classifySample)
		for i := range sample {
			sample[i] = elems[i*len(elems)/classifySample]
		}
		elems = sample
	}
	best, bestN, tie := "", 0, false
	for _, kind := range recordKinds {
		n := 0
		for _, e := range elems {
			k, err1 := p.key(e)
			v, err2 := p.value(e)
			if err1 != nil || err2 != nil || e.isBucket() {
				continue
			}
			if up, err := Upgrade(version, kind.bucket, k, v); err == nil && kind.match(k, up) {
				n++
			}
		}
		switch {
		case n > bestN:
			best, bestN, tie = kind.bucket, n, false
		case n == bestN && n > 0:
			tie = true
		}
	}
	if tie || bestN*2 <= len(elems) {
		return ""
	}
	return best
}

// bucketWalk walks one bucket's tree in one of the candidate trees.
type bucketWalk struct {
	s         *salvager
	w         *salvageWriter
	bucket    string
	sb        *SalvagedBucket
	older     bool // a later tree: only records the copy does not have
	seen      map[uint64]bool
	pagesLost int64
	err       error
}

func (b *bucketWalk) problem(format string, args ...any) {
	if b.sb.FirstProblem == "" {
		b.sb.FirstProblem = fmt.Sprintf(format, args...)
	}
}

func (b *bucketWalk) lose(id uint64, why string) {
	b.pagesLost++
	if !b.older {
		b.problem("page %d: %s", id, why)
	}
}

// page walks page id and what is below it.
func (b *bucketWalk) page(id uint64, depth int) {
	if b.err != nil {
		return
	}
	if depth > maxTreeDepth {
		b.lose(id, "tree too deep")
		return
	}
	if b.seen[id] {
		b.lose(id, "reached twice")
		return
	}
	b.seen[id] = true
	b.s.reached[id] = true
	p, err := b.s.bf.readPage(id, b.s.bf.pages)
	if err != nil {
		b.lose(id, err.Error())
		return
	}
	if p.flags != flagBranch && p.flags != flagLeaf {
		b.lose(id, "a "+pageType(p.flags)+" page where a branch or leaf page belongs")
		return
	}
	elems, perr := p.elements(false)
	if p.flags == flagBranch {
		if perr != nil && len(elems) == 0 {
			b.lose(id, perr.Error())
		}
		for _, e := range elems {
			b.page(e.child, depth+1)
		}
		return
	}
	if perr != nil {
		// Elements that lay outside the page: records lost, as far as the
		// page tells.
		lost := p.usable - int64(len(elems))
		if lost > 0 && !b.older {
			b.sb.Unreadable += lost
			b.problem("leaf page %d: %v", id, perr)
		}
	}
	b.records(p, elems)
}

// inline walks an inline bucket's page.
func (b *bucketWalk) inline(value []byte) {
	p, err := inlinePage(value)
	if err != nil || p.flags != flagLeaf {
		b.lose(0, "inline bucket page unreadable")
		return
	}
	elems, perr := p.elements(false)
	if lost := p.usable - int64(len(elems)); perr != nil && lost > 0 && !b.older {
		b.sb.Unreadable += lost
		b.problem("inline page: %v", perr)
	}
	b.records(p, elems)
}

// records copies a leaf page's records.
func (b *bucketWalk) records(p *page, elems []element) {
	for _, e := range elems {
		if b.err != nil {
			return
		}
		k, err1 := p.key(e)
		v, err2 := p.value(e)
		switch {
		case err1 != nil || err2 != nil:
			b.unreadable(k, "unreadable key or value")
			continue
		case e.isBucket():
			b.unreadable(k, "a nested bucket, not a record")
			continue
		case !validRecord(b.s.version, b.bucket, k, v):
			b.unreadable(k, "value does not decode as its record type")
			continue
		}
		stored, err := b.w.put(b.bucket, k, v, b.older)
		if err != nil {
			b.err = err
			return
		}
		if b.bucket == BucketMeta && string(k) == MetaSchema && stored {
			b.s.version, _ = strconv.Atoi(string(v))
		}
		if stored {
			b.sb.Copied++
			if b.older {
				b.sb.FromOlderTree++
			}
		}
	}
}

func (b *bucketWalk) unreadable(key []byte, why string) {
	if b.older {
		return
	}
	b.sb.Unreadable++
	b.problem("key %q: %s", key, why)
}

// validRecord reports whether val is what the schema stores under key of
// bucket in a file of schema version, as readers decode it: the schema
// version as a decimal, the record type of the bucket (or of the meta
// key), JSON in a bucket the schema does not know.
func validRecord(version int, bucket string, key, val []byte) bool {
	if bucket == BucketMeta && string(key) == MetaSchema {
		_, err := strconv.Atoi(string(val))
		return err == nil
	}
	val, err := Upgrade(version, bucket, key, val)
	if err != nil {
		return false
	}
	if bucket == BucketMeta {
		switch string(key) {
		case MetaRun:
			return decodes[RunInfo](val)
		case MetaSummary:
			return decodes[Summary](val)
		case MetaKernel:
			return decodes[KernelInfo](val)
		case v1MetaCapture:
			return decodes[CaptureInfo](val)
		}
	}
	if d, ok := recordDecoders[bucket]; ok {
		return d(val)
	}
	return json.Valid(val)
}

// recordDecoders decode a record of each bucket as its readers do.
var recordDecoders = map[string]func([]byte) bool{
	BucketTopology:     decodes[Endpoint],
	BucketConns:        decodes[ConnRecord],
	BucketErrors:       decodes[ErrorRecord],
	BucketSamples:      decodes[Sample],
	BucketProxies:      decodes[ProxyInfo],
	BucketHopConns:     decodes[HopConn],
	BucketFaults:       decodes[FaultEvent],
	BucketCaptures:     decodes[CaptureInfo],
	BucketFlows:        decodes[Flow],
	BucketResets:       decodes[Reset],
	BucketRecStreams:   decodes[RecStream],
	BucketRecEvents:    decodes[RecEvent],
	BucketKernelEvents: decodes[KernelEvent],
}

func decodes[T any](val []byte) bool {
	var v T
	return json.Unmarshal(val, &v) == nil
}
