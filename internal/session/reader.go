package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/ssestress/ssestress/internal/inputfile"
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
	// snapshotAt and cleanup are set on a snapshot of a file in use
	// (OpenCommitted): when it was taken, and what removes its copy.
	snapshotAt time.Time
	cleanup    func()
	// file is the file validated before bbolt opened it, kept open (with
	// its shared lock) to validate the key order again for Check: the
	// same bytes bbolt reads, even once a snapshot's copy is unlinked.
	file *os.File
}

// Open opens path read-only. It waits at most about a second for a writer's
// lock and then returns ErrInUse. Before bbolt maps the file, the file is
// validated (Validate) under a shared lock, so that a damaged file is an
// error naming what is wrong (ErrNotSession, ErrTruncated, ErrDamaged),
// never a crash inside bbolt.
func Open(path string) (*Reader, error) { return open(path, false) }

// open is Open; keyOrder validates the order of every key too
// (ValidateKeyOrder), as a writer appending to the file needs.
func open(path string, keyOrder bool) (*Reader, error) {
	if err := inputfile.CheckRegular(path); err != nil {
		var nr *inputfile.NotRegularError
		if errors.As(err, &nr) {
			return nil, fmt.Errorf("%s %w (it is %s)", path, ErrNotSession, nr.Kind)
		}
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	// f holds the shared lock until bbolt holds its own; it stays open
	// with the Reader.
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	if err := lockShared(f, openLockTimeout); err != nil {
		if errors.Is(err, errLocked) {
			return nil, inUseError(path)
		}
		return nil, fmt.Errorf("%s: lock: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	validate := Validate
	if keyOrder {
		validate = ValidateKeyOrder
	}
	if err := validate(f, path, st.Size()); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o444, &bolt.Options{ReadOnly: true, Timeout: openLockTimeout})
	if err != nil {
		return nil, openError(path, err)
	}
	r := &Reader{db: db, path: path, file: f}
	var version string
	err = r.View(func(tx *bolt.Tx) error {
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
	ok = true
	return r, nil
}

// ErrTruncated: the file is shorter than its own header says.
var ErrTruncated = errors.New("is truncated (shorter than its header says); it cannot be read safely")

// openLockTimeout is how long Open waits for a writer's lock.
const openLockTimeout = 800 * time.Millisecond

// errLocked: lockShared's wait ran out.
var errLocked = errors.New("locked by a writer")

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
	err := r.db.Close()
	if r.file != nil {
		r.file.Close()
	}
	if r.cleanup != nil {
		r.cleanup()
	}
	return err
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
	err := r.View(func(tx *bolt.Tx) error {
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
	r.View(func(tx *bolt.Tx) error {
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
	return r.View(func(tx *bolt.Tx) error {
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
// The key order is validated first (ValidateKeyOrder): bbolt's check
// rebuilds an unsynced freelist with a walk that panics, in a goroutine of
// its own, on the first key out of order.
func (r *Reader) Check() error {
	if err := r.validateKeyOrder(); err != nil {
		return err
	}
	return r.View(func(tx *bolt.Tx) error {
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
