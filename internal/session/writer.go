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
	return fmt.Sprintf("session file %s reached its size limit of %d bytes: recording stopped, %d records dropped so far (the rest of the run is counted, and its end and summary are kept)",
		e.Path, e.MaxSize, e.Dropped)
}

// Options configure a Writer. The zero value means the defaults.
type Options struct {
	// FlushInterval is the longest a record waits before it is committed
	// (default 100 ms).
	FlushInterval time.Duration
	// BatchSize commits early once this many records are queued (default 1000).
	BatchSize int
	// MaxPending bounds the queue in records (default 1,000,000).
	MaxPending int
	// MaxPendingBytes bounds the queue in bytes (default
	// DefaultMaxPendingBytes): what producers queued and the writer has not
	// committed yet, with what a recorder reserved for the blocks it is
	// filling. Beyond either bound records are dropped and counted rather
	// than blocking a producer or growing the heap. It also bounds how far
	// the file lags behind: a kill -9 loses at most the queue, which the
	// default lets a disk commit in about a tenth of a second. A
	// process-wide memory budget sets it.
	MaxPendingBytes int64
	// MaxSize bounds the file: once it would grow past MaxSize less a
	// reserve (MaxSizeReserve), the Writer stops storing records, says so
	// through OnError, and counts what it drops; the run goes on. The
	// reserve is kept for the meta and proxies buckets, so the run's end and
	// its summary always land, and the file never passes MaxSize (0 = no
	// limit).
	MaxSize int
	// Append opens an existing session file instead of refusing it.
	Append bool
	// OnError is told, once per distinct problem, about failed commits.
	OnError func(error)
}

// DefaultMaxPendingBytes is the queue's byte bound when
// Options.MaxPendingBytes is zero.
const DefaultMaxPendingBytes = 16 << 20

// maxTxBytes bounds one commit: a longer queue is committed in several
// transactions, so each is quick and the file never lags far behind.
const maxTxBytes = 8 << 20

// recordBytes is what a record that does not state its size (Sized)
// counts for in the queue.
const recordBytes = 512

// Sized is a record that states what it holds in the queue, in bytes.
type Sized interface {
	Record
	QueueBytes() int
}

// BinaryRecord is a record whose value is its own encoding, not JSON (its
// first byte tells it from a JSON object: see RecChunks).
type BinaryRecord interface {
	Record
	AppendValue([]byte) []byte
}

// queued is a record waiting for its commit, with the bytes it counts for.
type queued struct {
	r    Record
	size int64
}

// Writer is the single writer of a session file. Put never blocks on disk.
type Writer struct {
	path string
	db   *bolt.DB
	opts Options

	mu           sync.Mutex
	freed        chan struct{} // closed (and replaced) when a commit frees budget
	pending      []queued
	pendingBytes int64 // queued and reserved, not committed yet
	kick         chan struct{}
	closed       bool
	hooks        []func(all bool)
	arena        []byte // keys and binary values of the commit in progress (under commitMu)
	commitMu     sync.Mutex

	done            chan struct{}
	committed       atomic.Uint64
	committedFrames atomic.Uint64
	dataSize        atomic.Int64
	dropped         uint64 // guarded by mu
	full            bool   // MaxSize reached (guarded by mu)
	lastErr         string // guarded by mu
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
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = DefaultMaxPendingBytes
	}
	created := false
	if !opts.Append {
		// The name is taken exclusively: a file that appears between a
		// check and bbolt's open is never written over.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%s: %w", path, ErrExists)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		f.Close()
		created = true
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
		if created {
			os.Remove(path)
		}
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
		if created {
			os.Remove(path)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	w := &Writer{
		path: path, db: db, opts: opts,
		kick:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		freed: make(chan struct{}),
	}
	go w.loop()
	return w, nil
}

// Path is the file's path.
func (w *Writer) Path() string { return w.path }

// Put queues a record for the next commit. It never blocks on disk; after
// Close, past the queue's bounds or once the file is full, the record is
// dropped and counted (the meta and proxies buckets' records still land in
// a full file: its reserve is theirs).
func (w *Writer) Put(r Record) {
	size := int64(recordBytes)
	if s, ok := r.(Sized); ok {
		size = int64(s.QueueBytes())
	}
	w.mu.Lock()
	essential := isEssential(r)
	if w.closed || (w.full && !essential) ||
		(!essential && (len(w.pending) >= w.opts.MaxPending || w.pendingBytes+size > w.opts.MaxPendingBytes)) {
		w.dropped++
		w.mu.Unlock()
		return
	}
	w.enqueue(r, size)
}

// enqueue adds r (w.mu held, released here).
func (w *Writer) enqueue(r Record, size int64) {
	w.pending = append(w.pending, queued{r, size})
	w.pendingBytes += size
	n := len(w.pending)
	big := w.pendingBytes >= maxTxBytes/2
	w.mu.Unlock()
	if n >= w.opts.BatchSize || big {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// isEssential tells the records a full file keeps room for.
func isEssential(r Record) bool {
	b := r.Bucket()
	return b == BucketMeta || b == BucketProxies
}

// Reserve takes n bytes of the queue's budget for a record being built
// (a recorder's block); it reports false, taking nothing, when the budget
// or the file is spent. Reserved bytes may fill seven eighths of the
// budget: the rest stays for other records (a recorded stream's own
// record, connection records), which a flood of body bytes never crowds
// out. The bytes are given back by PutReserved (then by
// the commit) or by Unreserve.
func (w *Writer) Reserve(n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.full || w.pendingBytes+int64(n) > w.opts.MaxPendingBytes-w.opts.MaxPendingBytes/8 {
		return false
	}
	w.pendingBytes += int64(n)
	return true
}

// ReserveWait is Reserve, waiting for the writer when the budget is
// spent: a producer that outruns the disk is held back while the writer
// makes progress, and drops only when no commit has freed anything for
// wait (the disk stalls), or after waitRounds times wait in all (others
// took what was freed each time).
func (w *Writer) ReserveWait(n int, wait time.Duration) bool {
	if w.Reserve(n) {
		return true
	}
	if wait <= 0 {
		return false
	}
	giveUp := time.Now().Add(waitRounds * wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		w.mu.Lock()
		freed, stop := w.freed, w.closed || w.full
		w.mu.Unlock()
		if stop {
			return false
		}
		select {
		case <-freed:
		case <-t.C:
			return w.Reserve(n)
		}
		if w.Reserve(n) {
			return true
		}
		// A commit freed room: the writer is busy, not stuck.
		left := time.Until(giveUp)
		if left <= 0 {
			return false
		}
		t.Reset(min(wait, left))
	}
}

// waitRounds bounds ReserveWait in all, in multiples of its wait.
const waitRounds = 10

// Unreserve gives back n bytes taken by Reserve and not queued.
func (w *Writer) Unreserve(n int) {
	w.mu.Lock()
	w.pendingBytes -= int64(n)
	w.mu.Unlock()
}

// PutReserved queues r, whose n bytes were taken with Reserve: it is not
// checked against the budget again. After Close it is dropped.
func (w *Writer) PutReserved(r Record, n int) {
	w.mu.Lock()
	w.pendingBytes -= int64(n)
	if w.closed {
		w.dropped++
		w.mu.Unlock()
		return
	}
	w.enqueue(r, int64(n))
}

// AddDropped counts n records a producer could not queue (a recorder's
// frames whose bytes did not fit the budget): they show in Dropped.
func (w *Writer) AddDropped(n uint64) {
	w.mu.Lock()
	w.dropped += n
	w.mu.Unlock()
}

// BeforeCommit registers fn, called by the writer's goroutine before each
// timed commit (every FlushInterval), with all false, and by Flush and
// Close with all true: a producer that fills records over time (a
// recorder's blocks) queues what it holds there, all of it or what has
// waited long enough, so that nothing waits more than about two flush
// intervals for its commit.
func (w *Writer) BeforeCommit(fn func(all bool)) {
	w.mu.Lock()
	w.hooks = append(w.hooks, fn)
	w.mu.Unlock()
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

// CommittedFrames is the number of recorded frames on disk in blocks
// (RecChunks).
func (w *Writer) CommittedFrames() uint64 { return w.committedFrames.Load() }

// DataSize is the bytes of the file in use as of the last commit:
// bbolt's high-water mark (the file itself grows ahead of it, in steps of
// up to 16 MiB).
func (w *Writer) DataSize() int64 { return w.dataSize.Load() }

// Committed is the number of records on disk.
func (w *Writer) Committed() uint64 { return w.committed.Load() }

// Flush commits everything queued so far and returns when it is on disk.
func (w *Writer) Flush() {
	w.runHooks(true)
	for w.commitNext() {
	}
}

// Close commits what is queued, stops the writer and closes the file.
// Closing twice is harmless.
func (w *Writer) Close() error {
	w.runHooks(true)
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

func (w *Writer) runHooks(all bool) {
	w.mu.Lock()
	hooks := w.hooks
	w.mu.Unlock()
	for _, fn := range hooks {
		fn(all)
	}
}

func (w *Writer) loop() {
	defer close(w.done)
	t := time.NewTicker(w.opts.FlushInterval)
	defer t.Stop()
	for {
		open := true
		select {
		case <-t.C:
			w.runHooks(false)
		case _, open = <-w.kick:
		}
		for w.commitNext() {
		}
		if !open {
			return
		}
	}
}

// commitNext commits the oldest queued records, at most maxTxBytes of
// them, in one transaction; it reports whether it committed any.
func (w *Writer) commitNext() bool {
	// One batch at a time, from taking it to its commit: a Flush that
	// finds the queue empty while the writer's goroutine commits what it
	// took returns only once that is on disk too.
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	w.mu.Lock()
	n, bytes := 0, int64(0)
	for n < len(w.pending) && (n == 0 || bytes+w.pending[n].size <= maxTxBytes) {
		bytes += w.pending[n].size
		n++
	}
	batch := w.pending[:n:n]
	w.pending = w.pending[n:]
	if len(w.pending) == 0 {
		w.pending = nil
	}
	w.mu.Unlock()
	if n == 0 {
		return false
	}
	w.commit(batch)
	for _, q := range batch {
		if c, ok := q.r.(*RecChunks); ok {
			c.release()
		}
	}
	w.mu.Lock()
	w.pendingBytes -= bytes
	close(w.freed)
	w.freed = make(chan struct{})
	w.mu.Unlock()
	return true
}

// reserveOf is the room MaxSize keeps for the end records.
func reserveOf(maxSize int) int64 {
	return min(int64(maxSize)/4, 1<<20)
}

// commit writes one batch in one transaction. Encoding happens here, off the
// producers' paths.
func (w *Writer) commit(batch []queued) {
	var size int64
	err := w.db.Update(func(tx *bolt.Tx) error {
		var err error
		// Transactions are one at a time (commitMu): the arena is theirs.
		w.arena, err = putAll(tx, batch, w.arena[:0])
		if cap(w.arena) > 4*maxTxBytes {
			w.arena = nil // a rare huge batch: not kept
		}
		if err != nil {
			return err
		}
		size = tx.Size()
		return nil
	})
	if err == nil {
		w.dataSize.Store(size)
		w.committed.Add(uint64(len(batch)))
		var frames uint64
		for _, q := range batch {
			switch c := q.r.(type) {
			case RecChunks:
				frames += uint64(c.Frames)
			case *RecChunks:
				frames += uint64(c.Frames)
			}
		}
		w.committedFrames.Add(frames)
		if w.opts.MaxSize > 0 && size >= int64(w.opts.MaxSize)-reserveOf(w.opts.MaxSize) {
			w.fill(nil)
		}
		return
	}
	if errors.Is(err, bolterrors.ErrMaxSizeReached) {
		// Past the reserve: the end records still go in, alone.
		var essential, lost []queued
		for _, q := range batch {
			if isEssential(q.r) {
				essential = append(essential, q)
			} else {
				lost = append(lost, q)
			}
		}
		if len(essential) > 0 {
			if w.db.Update(func(tx *bolt.Tx) error { _, err := putAll(tx, essential, nil); return err }) == nil {
				w.committed.Add(uint64(len(essential)))
			} else {
				lost = batch
			}
		}
		w.fill(lost)
		return
	}
	w.mu.Lock()
	w.dropped += uint64(len(batch))
	report := err.Error() != w.lastErr
	w.lastErr = err.Error()
	w.mu.Unlock()
	if report && w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}

// fill marks the file full (MaxSize less its reserve reached), dropping
// lost, and says so once.
func (w *Writer) fill(lost []queued) {
	w.mu.Lock()
	w.dropped += uint64(len(lost))
	first := !w.full
	w.full = true
	// What waits in the queue is dropped too, but for the end records.
	kept := w.pending[:0]
	for _, q := range w.pending {
		if isEssential(q.r) {
			kept = append(kept, q)
		} else {
			w.dropped++
			w.pendingBytes -= q.size
		}
	}
	w.pending = kept
	dropped := w.dropped
	w.mu.Unlock()
	if first && w.opts.OnError != nil {
		w.opts.OnError(&FullError{Path: w.path, MaxSize: w.opts.MaxSize, Dropped: dropped})
	}
}

// keyAppender is a Keyed record that can build its key in a buffer.
type keyAppender interface {
	AppendKey([]byte) []byte
}

// putAll stores the batch's records in tx. Binary values and appended
// keys are built in arena, which must stay untouched until the
// transaction is over (bbolt keeps them until then); it is returned for
// the next transaction.
func putAll(tx *bolt.Tx, batch []queued, arena []byte) ([]byte, error) {
	var seq [8]byte
	var bucketName string
	var b *bolt.Bucket
	for _, q := range batch {
		r := q.r
		var val []byte
		switch v := r.(type) {
		case BinaryRecord:
			n := len(arena)
			arena = v.AppendValue(arena)
			val = arena[n:len(arena):len(arena)]
		case metaRecord:
			j, err := json.Marshal(v.val)
			if err != nil {
				return arena, fmt.Errorf("encode %s record: %w", r.Bucket(), err)
			}
			val = j
		default:
			j, err := json.Marshal(r)
			if err != nil {
				return arena, fmt.Errorf("encode %s record: %w", r.Bucket(), err)
			}
			val = j
		}
		if name := r.Bucket(); b == nil || name != bucketName {
			var err error
			if b, err = tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return arena, err
			}
			bucketName = name
			// Keys mostly grow (sequences, times, per-stream counters):
			// fuller pages mean fewer pages to write per commit.
			b.FillPercent = 0.9
		}
		var key []byte
		if k, ok := r.(keyAppender); ok {
			n := len(arena)
			arena = k.AppendKey(arena)
			key = arena[n:len(arena):len(arena)]
		} else if k, ok := r.(Keyed); ok {
			key = k.Key()
		} else {
			n, _ := b.NextSequence()
			binary.BigEndian.PutUint64(seq[:], n)
			key = seq[:]
		}
		if err := b.Put(key, val); err != nil {
			return arena, err
		}
	}
	return arena, nil
}
