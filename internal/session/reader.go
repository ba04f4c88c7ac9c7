package session

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors a Reader returns, each wrapped with the file's path.
var (
	// ErrInUse: another process holds the file open for writing.
	ErrInUse = errors.New("is in use by a running ssestress")
	// ErrNotSession: the file is not a bbolt file, or not one ssestress wrote.
	ErrNotSession = errors.New("is not an ssestress session file")
	// ErrNewerSchema: written by a newer ssestress.
	ErrNewerSchema = errors.New("was written by a newer ssestress (schema version too new)")
)

// Reader reads a session file. It opens it read-only and never writes.
type Reader struct {
	db       *bolt.DB
	path     string
	version  int  // the file's schema version
	borrowed bool // the Writer's database (Writer.Reader): Close leaves it open
}

// Open opens path read-only. It waits at most about a second for a writer's
// lock and then returns ErrInUse.
func Open(path string) (*Reader, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s %w", path, ErrNotSession)
	}
	if err := checkSize(path, st.Size()); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o444, &bolt.Options{ReadOnly: true, Timeout: 800 * time.Millisecond})
	if err != nil {
		return nil, openError(path, err)
	}
	r := &Reader{db: db, path: path}
	var version string
	err = db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket([]byte(BucketMeta))
		if m == nil {
			return fmt.Errorf("%s %w (no meta bucket)", path, ErrNotSession)
		}
		version = string(m.Get([]byte(MetaSchema)))
		return nil
	})
	if err == nil {
		v, convErr := strconv.Atoi(version)
		switch {
		case convErr != nil:
			err = fmt.Errorf("%s %w (bad schema version %q)", path, ErrNotSession, version)
		case v > SchemaVersion:
			err = fmt.Errorf("%s %w: version %d, this ssestress reads up to %d", path, ErrNewerSchema, v, SchemaVersion)
		case v < 1:
			err = fmt.Errorf("%s %w (bad schema version %d)", path, ErrNotSession, v)
		}
		r.version = v
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return r, nil
}

// ErrTruncated: the file is shorter than its own header says.
var ErrTruncated = errors.New("is truncated (shorter than its header says); it cannot be read safely")

// checkSize refuses a bbolt file shorter than the high-water mark its meta
// pages record. bbolt maps the file and would fault (SIGSEGV, not an error)
// on the first page past the end, so this is checked before it opens.
//
// Layout read here (bbolt 1.x): pages 0 and 1 are meta pages; each starts
// with a 16-byte page header followed by magic u32, version u32, pageSize
// u32, flags u32, root bucket (16 bytes), freelist pgid u64, pgid u64 (the
// high-water mark), txid u64, checksum u64 — little-endian on every
// platform bbolt supports here.
func checkSize(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const hdr, magic = 16, 0xED0CDAED
	var page0 [hdr + 64]byte
	if _, err := f.ReadAt(page0[:], 0); err != nil {
		return fmt.Errorf("%s %w (too short to be a bbolt file)", path, ErrNotSession)
	}
	pageSize := int64(binary.LittleEndian.Uint32(page0[hdr+8:]))
	if binary.LittleEndian.Uint32(page0[hdr:]) != magic || pageSize < 512 || pageSize > 1<<20 {
		return nil // not a bbolt file at all: bbolt's own check says so
	}
	var highWater int64
	for i := int64(0); i < 2; i++ {
		var m [hdr + 64]byte
		if _, err := f.ReadAt(m[:], i*pageSize); err != nil {
			continue
		}
		if binary.LittleEndian.Uint32(m[hdr:]) != magic {
			continue
		}
		highWater = max(highWater, int64(binary.LittleEndian.Uint64(m[hdr+40:])))
	}
	if highWater*pageSize > size {
		return fmt.Errorf("%s %w: %d bytes, header says %d", path, ErrTruncated, size, highWater*pageSize)
	}
	return nil
}

// openError turns bbolt's open errors into the package's errors.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return inUseError(path)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch),
		errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrInvalidMapping):
		return fmt.Errorf("%s %w (%v)", path, ErrNotSession, err)
	}
	// bbolt reports some damaged files with plain errors ("file size too small").
	return fmt.Errorf("%s %w (%v)", path, ErrNotSession, err)
}

// Path is the file's path.
func (r *Reader) Path() string { return r.path }

// Close closes the file (a Writer's Reader leaves it to the Writer).
func (r *Reader) Close() error {
	if r.borrowed {
		return nil
	}
	return r.db.Close()
}

// DB gives read access to the underlying database for consumers with needs
// the helpers below do not cover.
func (r *Reader) DB() *bolt.DB { return r.db }

// Version is the file's schema version (older files are read upgraded).
func (r *Reader) Version() int { return r.version }

// Upgrade returns a raw value of bucket as the current schema writes it
// (see Upgrade); for consumers that walk the database themselves.
func (r *Reader) Upgrade(bucket string, key, val []byte) ([]byte, error) {
	return Upgrade(r.version, bucket, key, val)
}

// Meta decodes the meta value under key into v. It returns false when the
// key is absent.
func (r *Reader) Meta(key string, v any) (bool, error) {
	var found bool
	err := r.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket([]byte(BucketMeta)).Get([]byte(key))
		if raw == nil {
			return nil
		}
		found = true
		raw, err := r.Upgrade(BucketMeta, []byte(key), raw)
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, v)
	})
	return found, err
}

// Captures returns every capture the file describes (a version 1 file's
// single capture included), in key order.
func (r *Reader) Captures() ([]CaptureInfo, error) {
	out, err := All[CaptureInfo](r, BucketCaptures)
	if err != nil || r.version >= 2 {
		return out, err
	}
	var ci CaptureInfo
	found, err := r.Meta(v1MetaCapture, &ci)
	if err != nil {
		return nil, fmt.Errorf("%s: capture info: %w", r.path, err)
	}
	if found {
		out = append(out, ci)
	}
	return out, nil
}

// Count is the number of records in bucket (0 when it does not exist).
func (r *Reader) Count(bucket string) int {
	n := 0
	r.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(bucket)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

// Each calls fn for every raw value of bucket, in key order, as the
// current schema writes it. The slices are valid only during the call.
func (r *Reader) Each(bucket string, fn func(key, val []byte) error) error {
	return r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if r.version >= SchemaVersion {
			return b.ForEach(fn)
		}
		return b.ForEach(func(k, v []byte) error {
			up, err := r.Upgrade(bucket, k, v)
			if err != nil {
				return fmt.Errorf("%s: bucket %s key %q: %w", r.path, bucket, k, err)
			}
			return fn(k, up)
		})
	})
}

// Check runs bbolt's consistency check and returns the first problem found.
func (r *Reader) Check() error {
	return r.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

// Decode calls fn with every record of bucket decoded as T, in key order.
func Decode[T any](r *Reader, bucket string, fn func(*T) error) error {
	return r.Each(bucket, func(key, val []byte) error {
		var v T
		if err := json.Unmarshal(val, &v); err != nil {
			return fmt.Errorf("%s: bucket %s key %q: %w", r.path, bucket, key, err)
		}
		return fn(&v)
	})
}

// All returns every record of bucket decoded as T.
func All[T any](r *Reader, bucket string) ([]T, error) {
	var out []T
	err := Decode(r, bucket, func(v *T) error {
		out = append(out, *v)
		return nil
	})
	return out, err
}
