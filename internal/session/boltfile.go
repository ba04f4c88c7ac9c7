package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
	"os"
)

// This file reads a bbolt 1.x file the way bbolt lays it out, with ReadAt
// and never through a memory map, so that damage is an error and not a
// fault. bbolt itself maps the file and trusts every number it finds: a
// page id past the end, an element count larger than its page or a key
// that runs off its page makes it read outside the mapping (SIGSEGV or
// SIGBUS, which no recover catches) or panic. The validator (validate.go)
// and salvage (salvage.go) are built on it.
//
// Layout (go.etcd.io/bbolt internal/common, little-endian on every
// platform bbolt supports here):
//
//	page header (16 bytes)    id u64, flags u16, count u16, overflow u32
//	meta (after the header)   magic u32, version u32, pageSize u32, flags u32,
//	                          root bucket {root pgid u64, sequence u64},
//	                          freelist pgid u64, high-water mark pgid u64,
//	                          txid u64, checksum u64 (FNV-64a of the 56 bytes before it)
//	branch element (16 bytes) pos u32, ksize u32, pgid u64
//	leaf element (16 bytes)   flags u32, pos u32, ksize u32, vsize u32
//	bucket value              root pgid u64, sequence u64, then, when root
//	                          is 0, an inline leaf page (header and elements)
//
// An element's pos is counted from the element's own header. bbolt writes
// a page's keys and values right after its element headers, in element
// order, each key followed by its value; keys are never empty.

const (
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	pageHeaderSize     = 16
	elementSize        = 16 // branch and leaf elements are both 16 bytes
	bucketHeaderSize   = 16
	metaSize           = 64
	metaChecksumOffset = 56

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10

	bucketLeafFlag = 0x01

	noFreelist = ^uint64(0)

	// minPageSize and maxPageSize bound the page sizes accepted: bbolt uses
	// the OS page size (4 KiB, 16 KiB or 64 KiB); anything else in a meta
	// page is damage.
	minPageSize = 1 << 10
	maxPageSize = 1 << 16
	// maxTreeDepth bounds a B+tree's depth and maxBucketDepth the nesting
	// of buckets: a real tree with two keys per branch page and 2^64 pages
	// is 64 deep; deeper means a loop the validator must not follow.
	maxTreeDepth   = 64
	maxBucketDepth = 16

	// pageReadAhead is how much of a page readPage reads at once.
	pageReadAhead = 1024
)

// pageHeader is the 16-byte header of every page.
type pageHeader struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

func parsePageHeader(b []byte) pageHeader {
	return pageHeader{
		id:       binary.LittleEndian.Uint64(b[0:]),
		flags:    binary.LittleEndian.Uint16(b[8:]),
		count:    binary.LittleEndian.Uint16(b[10:]),
		overflow: binary.LittleEndian.Uint32(b[12:]),
	}
}

// pageType names a page's flags for messages.
func pageType(flags uint16) string {
	switch flags {
	case flagBranch:
		return "branch"
	case flagLeaf:
		return "leaf"
	case flagMeta:
		return "meta"
	case flagFreelist:
		return "freelist"
	}
	return fmt.Sprintf("unknown (flags %#x)", flags)
}

// metaPage is one of the two meta pages.
type metaPage struct {
	magic, version, pageSize, flags uint32
	root, sequence                  uint64
	freelist, highWater, txid, sum  uint64
	// invalid says why bbolt would refuse this meta page ("" when it
	// would use it).
	invalid string
}

// parseMeta reads a meta page from b (a page's first pageHeaderSize+metaSize
// bytes or more) and checks it as bbolt's Meta.Validate does.
func parseMeta(b []byte) metaPage {
	m := b[pageHeaderSize:]
	mp := metaPage{
		magic:     binary.LittleEndian.Uint32(m[0:]),
		version:   binary.LittleEndian.Uint32(m[4:]),
		pageSize:  binary.LittleEndian.Uint32(m[8:]),
		flags:     binary.LittleEndian.Uint32(m[12:]),
		root:      binary.LittleEndian.Uint64(m[16:]),
		sequence:  binary.LittleEndian.Uint64(m[24:]),
		freelist:  binary.LittleEndian.Uint64(m[32:]),
		highWater: binary.LittleEndian.Uint64(m[40:]),
		txid:      binary.LittleEndian.Uint64(m[48:]),
		sum:       binary.LittleEndian.Uint64(m[56:]),
	}
	h := fnv.New64a()
	h.Write(m[:metaChecksumOffset])
	switch {
	case mp.magic != boltMagic:
		mp.invalid = "no bbolt magic number"
	case mp.version != boltVersion:
		mp.invalid = fmt.Sprintf("bbolt format version %d, not %d", mp.version, boltVersion)
	case mp.sum != h.Sum64():
		mp.invalid = "checksum mismatch"
	}
	return mp
}

// boltFile is an open bbolt file read with ReadAt.
type boltFile struct {
	r        io.ReaderAt
	path     string
	size     int64
	pageSize int64
	metas    [2]metaPage
	// meta is the meta page bbolt would use (metas[metaIndex]).
	meta      metaPage
	metaIndex int
	// pages is the number of whole pages in the file.
	pages uint64
	// wholePages makes readPage read a page's first page whole, not just
	// its start (for reading every key).
	wholePages bool
}

// errNotBolt: the file has no valid meta page bbolt could start from.
var errNotBolt = errors.New("not a bbolt database")

// openBoltFile reads the meta pages of the file r (size bytes) and picks
// the page size and the meta page exactly as bbolt 1.5's Open does
// (getPageSize, mmap, DB.meta), so what is validated afterwards is what
// bbolt will read. It returns an error wrapping ErrNotSession when the
// file is not a bbolt file at all, and ErrDamaged or ErrTruncated when
// bbolt would read past the file or trust a broken meta page.
func openBoltFile(r io.ReaderAt, path string, size int64) (*boltFile, error) {
	if size < pageHeaderSize+metaSize {
		return nil, fmt.Errorf("%s %w (too short to be a bbolt file)", path, ErrNotSession)
	}
	bf := &boltFile{r: r, path: path, size: size}
	// A file cut short keeps a valid first meta page that bbolt's own
	// search may not find: say it is truncated rather than foreign.
	var head [pageHeaderSize + metaSize]byte
	if _, err := r.ReadAt(head[:], 0); err == nil {
		if m := parseMeta(head[:]); m.invalid == "" && validPageSize(int64(m.pageSize)) {
			if hi, lo := bits.Mul64(m.highWater, uint64(m.pageSize)); hi != 0 || lo > uint64(size) {
				return nil, truncatedError(path, size, m.highWater, int64(m.pageSize))
			}
		}
	}
	pageSize, err := bf.bboltPageSize()
	if err != nil {
		return nil, err
	}
	if !validPageSize(pageSize) {
		return nil, damagedf(path, "page size %d (a bbolt file uses a power of two from %d to %d)", pageSize, minPageSize, maxPageSize)
	}
	bf.pageSize = pageSize
	if size < 2*pageSize {
		return nil, fmt.Errorf("%s %w: %d bytes, smaller than its two meta pages of %d bytes", path, ErrTruncated, size, pageSize)
	}
	bf.pages = uint64(size / pageSize)
	var raw [pageHeaderSize + metaSize]byte
	for i := range bf.metas {
		if _, err := r.ReadAt(raw[:], int64(i)*pageSize); err != nil {
			return nil, fmt.Errorf("%s: read meta page %d: %w", path, i, err)
		}
		bf.metas[i] = parseMeta(raw[:])
	}
	// DB.meta: the valid meta page with the higher transaction id, else
	// the other one if it is valid.
	a, b := 0, 1
	if bf.metas[1].txid > bf.metas[0].txid {
		a, b = 1, 0
	}
	switch {
	case bf.metas[a].invalid == "":
		bf.metaIndex = a
	case bf.metas[b].invalid == "":
		bf.metaIndex = b
	default:
		if bf.metas[0].magic != boltMagic && bf.metas[1].magic != boltMagic {
			return nil, fmt.Errorf("%s %w (%v)", path, ErrNotSession, errNotBolt)
		}
		return nil, damagedf(path, "both meta pages are invalid (page 0: %s; page 1: %s)", bf.metas[0].invalid, bf.metas[1].invalid)
	}
	bf.meta = bf.metas[bf.metaIndex]
	if err := bf.checkMeta(bf.metaIndex); err != nil {
		return nil, err
	}
	return bf, nil
}

// validPageSize: a power of two from minPageSize to maxPageSize.
func validPageSize(n int64) bool {
	return n >= minPageSize && n <= maxPageSize && n&(n-1) == 0
}

// bboltPageSize is the page size bbolt's getPageSize settles on: the
// first meta page's if it is valid, else the one of the first valid meta
// page found at 1 KiB, 2 KiB, … 16 MiB, else the OS page size when either
// place could be read at all.
func (bf *boltFile) bboltPageSize() (int64, error) {
	var buf [0x1000]byte
	readable := false
	if n, err := bf.r.ReadAt(buf[:], 0); err == nil && n == len(buf) {
		readable = true
		if m := parseMeta(buf[:]); m.invalid == "" {
			return int64(m.pageSize), nil
		}
	}
	for i := 0; i <= 14; i++ {
		pos := int64(1024) << i
		if pos >= bf.size-1024 {
			break
		}
		n, err := bf.r.ReadAt(buf[:], pos)
		if (err == nil && n == len(buf)) || (err == io.EOF && int64(n) == bf.size-pos) {
			readable = true
			if n < pageHeaderSize+metaSize {
				continue
			}
			if m := parseMeta(buf[:n]); m.invalid == "" {
				return int64(m.pageSize), nil
			}
		}
	}
	if readable {
		return int64(os.Getpagesize()), nil
	}
	return 0, fmt.Errorf("%s %w (%v)", bf.path, ErrNotSession, errNotBolt)
}

// checkMeta checks what bbolt trusts in the chosen meta page: its page
// size is the file's, its high-water mark lies inside the file (without
// overflowing), its root bucket and freelist are pages below the mark.
func (bf *boltFile) checkMeta(i int) error {
	m := bf.metas[i]
	if int64(m.pageSize) != bf.pageSize {
		return damagedf(bf.path, "meta page %d: page size %d, but the file's first meta page says %d", i, m.pageSize, bf.pageSize)
	}
	if hi, lo := bits.Mul64(m.highWater, uint64(bf.pageSize)); hi != 0 || lo > uint64(bf.size) {
		return truncatedError(bf.path, bf.size, m.highWater, bf.pageSize)
	}
	if m.highWater < 3 {
		return damagedf(bf.path, "meta page %d: high-water mark %d leaves no room for the root bucket", i, m.highWater)
	}
	if m.root < 2 || m.root >= m.highWater {
		return damagedf(bf.path, "meta page %d: root bucket at page %d, outside pages 2 to %d", i, m.root, m.highWater-1)
	}
	if m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.highWater) {
		return damagedf(bf.path, "meta page %d: freelist at page %d, outside pages 2 to %d", i, m.freelist, m.highWater-1)
	}
	return nil
}

// truncatedError is ErrTruncated for a file of size bytes whose meta page
// claims highWater pages of pageSize bytes. The product is computed
// without overflow: a crafted high-water mark must not wrap around to a
// size that fits.
func truncatedError(path string, size int64, highWater uint64, pageSize int64) error {
	claim := fmt.Sprintf("%d pages of %d bytes", highWater, pageSize)
	if hi, lo := bits.Mul64(highWater, uint64(pageSize)); hi == 0 && lo <= 1<<62 {
		claim = fmt.Sprint(lo)
	}
	return fmt.Errorf("%s %w: %d bytes, header says %s", path, ErrTruncated, size, claim)
}

// page is one page (with its overflow pages) of the file, or an inline
// page inside a bucket value. Its bytes are read on demand.
type page struct {
	pageHeader
	bf   *boltFile
	off  int64 // file offset of the page (file pages)
	span int64 // bytes the page may use: (1+overflow) pages, or the inline value's length
	head []byte
	// inline holds an inline page's bytes.
	inline []byte
	// usable is how many elements the page holds as far as elements could
	// tell: its count, or fewer when the count is damaged.
	usable int64
}

// readPage reads the header of page id (and its first page) and checks
// that it and its overflow pages lie below high and inside the file, and
// that it says it is page id.
func (bf *boltFile) readPage(id, high uint64) (*page, error) {
	if id < 2 || id >= high {
		return nil, fmt.Errorf("page %d is outside pages 2 to %d", id, high-1)
	}
	off := int64(id) * bf.pageSize
	if off+bf.pageSize > bf.size {
		return nil, fmt.Errorf("page %d lies past the end of the file", id)
	}
	// The header and the first element headers; the rest is read when
	// needed (most pages of a session file hold a few dozen records, and
	// copying whole pages costs more than the read itself).
	head := make([]byte, min(bf.pageSize, pageReadAhead))
	if bf.wholePages {
		head = make([]byte, bf.pageSize)
	}
	if _, err := bf.r.ReadAt(head, off); err != nil {
		return nil, fmt.Errorf("page %d: %v", id, err)
	}
	p := &page{pageHeader: parsePageHeader(head), bf: bf, off: off, head: head}
	if p.id != id {
		return p, fmt.Errorf("page %d says it is page %d", id, p.id)
	}
	if uint64(p.overflow) >= high-id {
		return p, fmt.Errorf("page %d: %d overflow pages run past page %d", id, p.overflow, high-1)
	}
	p.span = (1 + int64(p.overflow)) * bf.pageSize
	if off+p.span > bf.size {
		return p, fmt.Errorf("page %d: %d overflow pages run past the end of the file", id, p.overflow)
	}
	return p, nil
}

// inlinePage is the leaf page stored inside an inline bucket's value
// (after the 16-byte bucket header).
func inlinePage(value []byte) (*page, error) {
	if len(value) < bucketHeaderSize+pageHeaderSize {
		return nil, fmt.Errorf("inline bucket value of %d bytes is too short for its page", len(value))
	}
	b := value[bucketHeaderSize:]
	return &page{pageHeader: parsePageHeader(b), span: int64(len(b)), inline: b, head: b}, nil
}

// bytes returns n bytes at offset off of the page; the caller has checked
// that they lie inside its span.
func (p *page) bytes(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > p.span {
		return nil, fmt.Errorf("bytes %d to %d outside the page's %d", off, off+n, p.span)
	}
	if off+n <= int64(len(p.head)) {
		return p.head[off : off+n], nil
	}
	b := make([]byte, n)
	if _, err := p.bf.r.ReadAt(b, p.off+off); err != nil {
		return nil, err
	}
	return b, nil
}

// element is one branch or leaf element with its key and value offsets
// from the page's start.
type element struct {
	flags      uint32 // leaf only
	keyOff     int64
	ksize      int64
	vsize      int64  // leaf only
	child      uint64 // branch only
	headerFrom int64
}

func (e element) isBucket() bool { return e.flags&bucketLeafFlag != 0 }

// elements reads and checks the page's element headers: the count fits
// the page, every key and value lies inside it, keys are not empty, and
// the data follow one another right after the headers as bbolt writes
// them. strict false (salvage) returns the elements that pass, with the
// first problem, instead of stopping at it.
func (p *page) elements(strict bool) ([]element, error) {
	if p.count == 0 {
		return nil, nil
	}
	count := int64(p.count)
	var problem error
	if pageHeaderSize+count*elementSize > p.span {
		problem = fmt.Errorf("%d elements do not fit in its %d bytes", count, p.span)
		if strict {
			return nil, problem
		}
		count = (p.span - pageHeaderSize) / elementSize
	}
	hdrs, err := p.bytes(pageHeaderSize, count*elementSize)
	if err != nil {
		return nil, err
	}
	if !strict {
		// A damaged count: bbolt puts the first key right after the last
		// element header, so the first element says how many there are.
		first := int64(binary.LittleEndian.Uint32(hdrs[4:]))
		if p.flags == flagBranch {
			first = int64(binary.LittleEndian.Uint32(hdrs[0:]))
		}
		if first%elementSize == 0 && first/elementSize < count && first > 0 {
			if problem == nil {
				problem = fmt.Errorf("element count %d, but its first key follows %d element headers", p.count, first/elementSize)
			}
			count = first / elementSize
		}
	}
	p.usable = count
	elems := make([]element, 0, count)
	next := pageHeaderSize + count*elementSize // where the next key must start
	for i := int64(0); i < count; i++ {
		h := hdrs[i*elementSize:]
		at := pageHeaderSize + i*elementSize
		var e element
		e.headerFrom = at
		if p.flags == flagBranch {
			e.keyOff = at + int64(binary.LittleEndian.Uint32(h[0:]))
			e.ksize = int64(binary.LittleEndian.Uint32(h[4:]))
			e.child = binary.LittleEndian.Uint64(h[8:])
		} else {
			e.flags = binary.LittleEndian.Uint32(h[0:])
			e.keyOff = at + int64(binary.LittleEndian.Uint32(h[4:]))
			e.ksize = int64(binary.LittleEndian.Uint32(h[8:]))
			e.vsize = int64(binary.LittleEndian.Uint32(h[12:]))
		}
		var bad error
		switch end := e.keyOff + e.ksize + e.vsize; {
		case e.ksize == 0:
			bad = fmt.Errorf("element %d has an empty key", i)
		case end > p.span:
			bad = fmt.Errorf("element %d runs to byte %d, past the page's %d", i, end, p.span)
		case strict && e.keyOff != next:
			bad = fmt.Errorf("element %d's key starts at byte %d, not %d where the previous one ends", i, e.keyOff, next)
		}
		if bad != nil {
			if strict {
				return nil, bad
			}
			if problem == nil {
				problem = bad
			}
			continue
		}
		next = e.keyOff + e.ksize + e.vsize
		elems = append(elems, e)
	}
	return elems, problem
}

// keys reads the keys of elems.
func (p *page) keys(elems []element) ([][]byte, error) {
	keys := make([][]byte, len(elems))
	for i, e := range elems {
		k, err := p.key(e)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	return keys, nil
}

// key and value read an element's bytes.
func (p *page) key(e element) ([]byte, error)   { return p.bytes(e.keyOff, e.ksize) }
func (p *page) value(e element) ([]byte, error) { return p.bytes(e.keyOff+e.ksize, e.vsize) }

// bucketRoot reads a bucket value's header: the root page, 0 for an inline
// bucket.
func bucketRoot(value []byte) (uint64, error) {
	if len(value) < bucketHeaderSize {
		return 0, fmt.Errorf("bucket value of %d bytes is shorter than a bucket header", len(value))
	}
	return binary.LittleEndian.Uint64(value), nil
}

// freelistIDs reads the freelist page's page ids.
func (p *page) freelistIDs() ([]uint64, error) {
	if p.flags != flagFreelist {
		return nil, fmt.Errorf("freelist page %d is a %s page", p.id, pageType(p.flags))
	}
	from, count := int64(pageHeaderSize), int64(p.count)
	if p.count == 0xFFFF {
		// More ids than a count holds: the first id slot holds the count.
		b, err := p.bytes(pageHeaderSize, 8)
		if err != nil {
			return nil, err
		}
		c := binary.LittleEndian.Uint64(b)
		if c > uint64(p.span/8) {
			return nil, fmt.Errorf("freelist page %d: %d ids do not fit in its %d bytes", p.id, c, p.span)
		}
		from, count = pageHeaderSize+8, int64(c)
	}
	if from+count*8 > p.span {
		return nil, fmt.Errorf("freelist page %d: %d ids do not fit in its %d bytes", p.id, count, p.span)
	}
	raw, err := p.bytes(from, count*8)
	if err != nil {
		return nil, err
	}
	ids := make([]uint64, count)
	for i := range ids {
		ids[i] = binary.LittleEndian.Uint64(raw[i*8:])
	}
	return ids, nil
}
