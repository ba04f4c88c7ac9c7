package session

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ErrDamaged: the file is a bbolt file whose structure is broken (a meta
// page, a page, an element or a bucket points outside the file or its
// page, or pages form a loop): reading it through bbolt could crash, so it
// is refused before bbolt maps it. Salvage copies what can still be read.
var ErrDamaged = errors.New("is damaged")

// damagedf is ErrDamaged for path with what is wrong.
func damagedf(path, format string, args ...any) error {
	return fmt.Errorf("%s %w: %s", path, ErrDamaged, fmt.Sprintf(format, args...))
}

// Validate checks the bbolt file r (size bytes, named path in errors)
// before bbolt maps it: the meta page bbolt will use (validated as bbolt
// does, its page size, high-water mark, root and freelist within the
// file), then every page of the B+tree from the root bucket through every
// nested and inline bucket: page ids within the file and below the
// high-water mark, each page reached once (no loops), its type, element
// count, overflow pages, keys and values within the page and laid out as
// bbolt writes them; and the freelist page. What it accepts, bbolt reads
// without leaving the file or its pages; what it refuses is one error
// naming the file and what is wrong (ErrNotSession, ErrTruncated or
// ErrDamaged).
//
// Its cost is one read of every page's first page (overflow pages are not
// read): see BenchmarkValidate for the figure per GB.
func Validate(r io.ReaderAt, path string, size int64) error {
	return validate(r, path, size, false)
}

// ValidateKeyOrder is Validate that also checks the order of every key
// (which reads every page whole: about twice Validate's cost). bbolt's
// consistency check needs it, and so does a writer opening a file whose
// freelist is not synced (session files): bbolt rebuilds the freelist with
// that check and panics, in a goroutine nothing can recover, on the first
// key out of order.
func ValidateKeyOrder(r io.ReaderAt, path string, size int64) error {
	return validate(r, path, size, true)
}

func validate(r io.ReaderAt, path string, size int64, keyOrder bool) error {
	bf, err := openBoltFile(r, path, size)
	if err != nil {
		return err
	}
	bf.wholePages = keyOrder
	v := &validator{bf: bf, high: bf.meta.highWater, seen: make([]uint64, (bf.meta.highWater+63)/64), keyOrder: keyOrder}
	if _, err := v.tree("the root bucket", bf.meta.root, 0, 0, nil, nil); err != nil {
		return damagedf(path, "%v", err)
	}
	if err := v.freelist(); err != nil {
		return damagedf(path, "%v", err)
	}
	return nil
}

// validator walks one meta page's tree.
type validator struct {
	bf       *boltFile
	keyOrder bool
	high     uint64   // the high-water mark: pages at or above it are not in use
	seen     []uint64 // bitset of the pages reached so far
}

// mark records pages id … id+n-1 as reached, and fails when one was
// reached before: a page belongs to one place in one tree.
func (v *validator) mark(id uint64, n uint64) error {
	for i := id; i < id+n; i++ {
		w, b := i/64, uint64(1)<<(i%64)
		if v.seen[w]&b != 0 {
			return fmt.Errorf("page %d is reached twice (a loop, or two parents)", i)
		}
		v.seen[w] |= b
	}
	return nil
}

// tree checks the B+tree page id of bucket (named for messages) and
// everything below it. With keyOrder it also checks the order bbolt's
// consistency check (tx.Check, and the freelist rebuild of a writer
// opening a file without a synced freelist) expects, the way it does:
// keys within [minKey, maxKey) and increasing, each branch key above the
// largest key of the subtree before it. It returns the largest key of
// the subtree (keyOrder only).
func (v *validator) tree(bucket string, id uint64, depth, bucketDepth int, minKey, maxKey []byte) ([]byte, error) {
	if depth > maxTreeDepth {
		return nil, fmt.Errorf("%s: tree deeper than %d pages at page %d", bucket, maxTreeDepth, id)
	}
	p, err := v.bf.readPage(id, v.high)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", bucket, err)
	}
	if err := v.mark(id, 1+uint64(p.overflow)); err != nil {
		return nil, fmt.Errorf("%s: %v", bucket, err)
	}
	if p.flags != flagBranch && p.flags != flagLeaf {
		return nil, fmt.Errorf("%s: page %d is a %s page where a branch or leaf page belongs", bucket, id, pageType(p.flags))
	}
	elems, err := p.elements(true)
	if err != nil {
		return nil, fmt.Errorf("%s: %s page %d: %v", bucket, pageType(p.flags), id, err)
	}
	var keys [][]byte
	if v.keyOrder {
		if keys, err = p.keys(elems); err != nil {
			return nil, fmt.Errorf("%s: %s page %d: %v", bucket, pageType(p.flags), id, err)
		}
	}
	if p.flags == flagBranch {
		if len(elems) == 0 {
			return nil, fmt.Errorf("%s: branch page %d has no elements", bucket, id)
		}
		var maxInSubtree []byte
		running := minKey
		for i, e := range elems {
			if v.keyOrder {
				if err := keyInOrder(i, keys[i], running, maxKey); err != nil {
					return nil, fmt.Errorf("%s: branch page %d: %v", bucket, id, err)
				}
			}
			var next []byte = maxKey
			if v.keyOrder && i < len(elems)-1 {
				next = keys[i+1]
			}
			var lo []byte
			if v.keyOrder {
				lo = keys[i]
			}
			if maxInSubtree, err = v.tree(bucket, e.child, depth+1, bucketDepth, lo, next); err != nil {
				return nil, err
			}
			running = maxInSubtree
		}
		return maxInSubtree, nil
	}
	if v.keyOrder {
		running := minKey
		for i := range elems {
			if err := keyInOrder(i, keys[i], running, maxKey); err != nil {
				return nil, fmt.Errorf("%s: leaf page %d: %v", bucket, id, err)
			}
			running = keys[i]
		}
	}
	if err := v.leafBuckets(bucket, p, elems, bucketDepth); err != nil {
		return nil, err
	}
	if v.keyOrder && len(keys) > 0 {
		return keys[len(keys)-1], nil
	}
	return nil, nil
}

// keyInOrder is bbolt's verifyKeyOrder: element i's key against the key
// before it (or the lower bound) and the upper bound.
func keyInOrder(i int, key, previous, maxKey []byte) error {
	if i == 0 && previous != nil && bytes.Compare(previous, key) > 0 {
		return fmt.Errorf("key %d is below the key its parent gives", i)
	}
	if i > 0 && bytes.Compare(previous, key) >= 0 {
		return fmt.Errorf("key %d is not above the key before it", i)
	}
	if maxKey != nil && bytes.Compare(key, maxKey) >= 0 {
		return fmt.Errorf("key %d is not below the next key of its parent", i)
	}
	return nil
}

// leafBuckets checks the buckets stored in a leaf page's elements.
func (v *validator) leafBuckets(bucket string, p *page, elems []element, bucketDepth int) error {
	for i, e := range elems {
		if !e.isBucket() {
			continue
		}
		where := fmt.Sprintf("%s: leaf page %d element %d", bucket, p.id, i)
		if p.inline != nil {
			where = fmt.Sprintf("%s: inline page element %d", bucket, i)
		}
		if bucketDepth >= maxBucketDepth {
			return fmt.Errorf("%s: buckets nested deeper than %d", where, maxBucketDepth)
		}
		name, err := p.key(e)
		if err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		val, err := p.value(e)
		if err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		child := "bucket " + bucketLabel(name)
		if bucket != "the root bucket" {
			child = bucket + "/" + bucketLabel(name)
		}
		root, err := bucketRoot(val)
		if err != nil {
			return fmt.Errorf("%s: %v", child, err)
		}
		if root != 0 {
			if _, err := v.tree(child, root, 0, bucketDepth+1, nil, nil); err != nil {
				return err
			}
			continue
		}
		ip, err := inlinePage(val)
		if err != nil {
			return fmt.Errorf("%s: %v", child, err)
		}
		if ip.flags != flagLeaf {
			// bbolt would follow a branch element of an inline page back
			// to the same page for ever.
			return fmt.Errorf("%s: its inline page is a %s page, not a leaf page", child, pageType(ip.flags))
		}
		ielems, err := ip.elements(true)
		if err != nil {
			return fmt.Errorf("%s: inline page: %v", child, err)
		}
		if err := v.leafBuckets(child, ip, ielems, bucketDepth+1); err != nil {
			return err
		}
	}
	return nil
}

// freelist checks the freelist page bbolt reads when it loads the
// freelist (a consistency check, or a writer appending): its ids are
// pages below the high-water mark that no tree uses.
func (v *validator) freelist() error {
	id := v.bf.meta.freelist
	if id == noFreelist {
		return nil
	}
	p, err := v.bf.readPage(id, v.high)
	if err != nil {
		return fmt.Errorf("freelist: %v", err)
	}
	if err := v.mark(id, 1+uint64(p.overflow)); err != nil {
		return fmt.Errorf("freelist: %v", err)
	}
	ids, err := p.freelistIDs()
	if err != nil {
		return err
	}
	for _, f := range ids {
		if f < 2 || f >= v.high {
			return fmt.Errorf("freelist page %d: free page %d is outside pages 2 to %d", id, f, v.high-1)
		}
		if v.seen[f/64]&(1<<(f%64)) != 0 {
			return fmt.Errorf("freelist page %d: page %d is both free and in use", id, f)
		}
	}
	return nil
}

// bucketLabel prints a bucket name for a message: as is when it is
// printable and short, quoted otherwise.
func bucketLabel(name []byte) string {
	if len(name) > 64 {
		return strconv.Quote(string(name[:64])) + "…"
	}
	for _, c := range name {
		if c < 0x21 || c > 0x7e {
			return strconv.Quote(string(name))
		}
	}
	return string(name)
}
