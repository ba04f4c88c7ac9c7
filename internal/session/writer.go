package session

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrExists is returned by Create when the file is already there and
// Options.Append is not set: a session file is never overwritten.
var ErrExists = errors.New("session file already exists")

// FullError is passed to Options.OnError once, when the file reaches
// Options.MaxSize: recording stops (later records are dropped and counted)
// and the producer goes on.
type FullError struct {
	Path    string
	MaxSize int
	Dropped uint64 // records dropped when it was reported
}

func (e *FullError) Error() string {
	return fmt.Sprintf("session file %s reached its size limit of %d bytes: recording stopped, %d records dropped so far",
		e.Path, e.MaxSize, e.Dropped)
}

// Options configure a Writer. The zero value means the defaults.
type Options struct {
	// FlushInterval is the longest a record waits before it is committed
	// (default 100 ms).
	FlushInterval time.Duration
	// BatchSize commits early once this many records are queued (default 1000).
	BatchSize int
	// MaxPending bounds the queue; beyond it records are dropped and counted
	// rather than blocking a producer (default 1,000,000).
	MaxPending int
	// MaxSize is bbolt's MaxSize: once the file would grow past it, commits
	// fail, the Writer stops recording and says so through OnError, and the
	// run goes on (0 = no limit).
	MaxSize int
	// Append opens an existing session file instead of refusing it.
	Append bool
	// OnError is told, once per distinct problem, about failed commits.
	OnError func(error)
}

// Writer is the single writer of a session file. Put never blocks on disk.
type Writer struct {
	path string
	db   *bolt.DB
	opts Options

	mu      sync.Mutex
	pending []Record
	kick    chan struct{}
	closed  bool

	done      chan struct{}
	committed atomic.Uint64
	dropped   uint64 // guarded by mu
	full      bool   // MaxSize reached (guarded by mu)
	lastErr   string // guarded by mu
}

// Create makes a new session file at path and starts its writer.
func Create(path string, opts Options) (*Writer, error) {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 100 * time.Millisecond
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 1_000_000
	}
	if !opts.Append {
		if _, err := os.Stat(path); err == nil {
			return nil, fmt.Errorf("%s: %w", path, ErrExists)
		}
	} else if _, err := os.Stat(path); err == nil {
		// Appending to an existing file: it must be a session file we can
		// read, with its keys in order (bbolt rebuilds the freelist).
		r, err := open(path, true)
		if err != nil {
			return nil, err
		}
		r.Close()
	}
	db, err := bolt.Open(path, 0o644, &bolt.Options{
		Timeout: time.Second,
		MaxSize: opts.MaxSize,
		// Sessions only grow and are written in large batches: a map
		// freelist that is not synced on every commit (bbolt rebuilds it when
		// the file is next opened for writing) keeps the cost per record low.
		// No InitialMmapSize: bbolt would grow every file to that size.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, openError(path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range Buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(BucketMeta)).Put([]byte(MetaSchema), []byte(strconv.Itoa(SchemaVersion)))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	w := &Writer{
		path: path, db: db, opts: opts,
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	go w.loop()
	return w, nil
}

// Path is the file's path.
func (w *Writer) Path() string { return w.path }

// Put queues a record for the next commit. It never blocks on disk; after
// Close, or past MaxPending, the record is dropped and counted.
func (w *Writer) Put(r Record) {
	w.mu.Lock()
	if w.closed || w.full || len(w.pending) >= w.opts.MaxPending {
		w.dropped++
		w.mu.Unlock()
		return
	}
	w.pending = append(w.pending, r)
	n := len(w.pending)
	w.mu.Unlock()
	if n >= w.opts.BatchSize {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// metaRecord stores a value under a key of the meta bucket.
type metaRecord struct {
	key string
	val any
}

func (metaRecord) Bucket() string { return BucketMeta }
func (m metaRecord) Key() []byte  { return []byte(m.key) }

// PutMeta queues v (JSON-encoded) under key in the meta bucket.
func (w *Writer) PutMeta(key string, v any) { w.Put(metaRecord{key, v}) }

// Dropped is the number of records not stored (queue full, file full, or
// after Close).
func (w *Writer) Dropped() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// Committed is the number of records on disk.
func (w *Writer) Committed() uint64 { return w.committed.Load() }

// Flush commits everything queued so far and returns when it is on disk.
func (w *Writer) Flush() {
	w.mu.Lock()
	batch := w.pending
	w.pending = nil
	w.mu.Unlock()
	w.commit(batch)
}

// Close commits what is queued, stops the writer and closes the file.
// Closing twice is harmless.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.kick)
	<-w.done
	return w.db.Close()
}

func (w *Writer) loop() {
	defer close(w.done)
	t := time.NewTicker(w.opts.FlushInterval)
	defer t.Stop()
	for {
		open := true
		select {
		case <-t.C:
		case _, open = <-w.kick:
		}
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		w.mu.Unlock()
		w.commit(batch)
		if !open {
			return
		}
	}
}

// commit writes one batch in one transaction. Encoding happens here, off the
// producers' paths.
func (w *Writer) commit(batch []Record) {
	if len(batch) == 0 {
		return
	}
	err := w.db.Update(func(tx *bolt.Tx) error {
		var seq [8]byte
		for _, r := range batch {
			var v any = r
			if m, ok := r.(metaRecord); ok {
				v = m.val
			}
			val, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("encode %s record: %w", r.Bucket(), err)
			}
			b, err := tx.CreateBucketIfNotExists([]byte(r.Bucket()))
			if err != nil {
				return err
			}
			// Keys mostly grow (sequences, times, per-stream counters):
			// fuller pages mean fewer pages to write per commit.
			b.FillPercent = 0.9
			var key []byte
			if k, ok := r.(Keyed); ok {
				key = k.Key()
			} else {
				n, _ := b.NextSequence()
				binary.BigEndian.PutUint64(seq[:], n)
				key = seq[:]
			}
			if err := b.Put(key, val); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		w.committed.Add(uint64(len(batch)))
		return
	}
	w.mu.Lock()
	w.dropped += uint64(len(batch))
	if errors.Is(err, bolterrors.ErrMaxSizeReached) && !w.full {
		w.full = true
		err = &FullError{Path: w.path, MaxSize: w.opts.MaxSize, Dropped: w.dropped}
	}
	report := err.Error() != w.lastErr
	w.lastErr = err.Error()
	w.mu.Unlock()
	if report && w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}
