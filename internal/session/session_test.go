package session

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func newFile(t *testing.T, opts Options) (*Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	w, err := Create(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return w, path
}

func openChecked(t *testing.T, path string) *Reader {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Check(); err != nil {
		t.Fatalf("consistency check: %v", err)
	}
	return r
}

func TestWriteReadRoundTrip(t *testing.T) {
	w, path := newFile(t, Options{})
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	w.PutMeta(MetaRun, RunInfo{Tool: "ssestress test", Command: "run", Scenario: "flood", StartedAt: start})
	w.Put(Endpoint{Role: RoleServer, Addr: "127.0.0.1:3000"})
	w.Put(ConnRecord{ClientID: "c0001", Attempt: 0, Start: start})
	// The close rewrites the open record under the same key.
	w.Put(ConnRecord{ClientID: "c0001", Attempt: 0, Start: start, End: start.Add(time.Second), Events: 5, EndClass: "ECONNRESET"})
	w.Put(ConnRecord{ClientID: "c0001", Attempt: 1, Start: start.Add(2 * time.Second)})
	for i := 0; i < 2500; i++ {
		w.Put(ErrorRecord{Time: start, ClientID: fmt.Sprintf("c%04d", i), Class: "ECONNRESET", Age: Seconds(time.Duration(i) * time.Millisecond)})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	r := openChecked(t, path)
	var run RunInfo
	if ok, err := r.Meta(MetaRun, &run); !ok || err != nil || run.Scenario != "flood" || !run.StartedAt.Equal(start) {
		t.Fatalf("run meta %+v ok=%v err=%v", run, ok, err)
	}
	conns, err := All[ConnRecord](r, BucketConns)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 2 || conns[0].Events != 5 || conns[0].EndClass != "ECONNRESET" || conns[1].Attempt != 1 {
		t.Fatalf("conns %+v", conns)
	}
	if n := r.Count(BucketErrors); n != 2500 {
		t.Fatalf("errors = %d, want 2500", n)
	}
	errs, _ := All[ErrorRecord](r, BucketErrors)
	for i, e := range errs { // sequence keys keep the order of Put
		if e.Age.D() != time.Duration(i)*time.Millisecond {
			t.Fatalf("error %d out of order: %+v", i, e)
		}
	}
	if r.Count(BucketTopology) != 1 || r.Count("no-such-bucket") != 0 {
		t.Fatalf("topology count %d", r.Count(BucketTopology))
	}
}

func TestConnKeyOrder(t *testing.T) {
	if got := string(ConnKey("c0007", 12)); got != "c0007/00012" {
		t.Fatalf("ConnKey = %q", got)
	}
	if string(ConnKey("c", 2)) >= string(ConnKey("c", 10)) {
		t.Fatal("attempt keys do not sort numerically")
	}
}

func TestCommitWithinFlushInterval(t *testing.T) {
	w, path := newFile(t, Options{FlushInterval: 20 * time.Millisecond})
	defer w.Close()
	w.Put(Sample{Active: 3})
	deadline := time.Now().Add(5 * time.Second)
	for w.Committed() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("record not committed within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = path
}

func TestPutNeverBlocksAndCountsDrops(t *testing.T) {
	w, _ := newFile(t, Options{MaxPending: 10, FlushInterval: time.Hour, BatchSize: 1 << 30})
	for i := 0; i < 25; i++ {
		w.Put(Sample{})
	}
	if d := w.Dropped(); d != 15 {
		t.Fatalf("dropped = %d, want 15", d)
	}
	w.Close()
	w.Put(Sample{}) // after Close: dropped, no panic
	if d := w.Dropped(); d != 16 {
		t.Fatalf("dropped after close = %d", d)
	}
}

func TestConcurrentProducers(t *testing.T) {
	w, path := newFile(t, Options{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				w.Put(ErrorRecord{Class: "EOF"})
			}
		}()
	}
	wg.Wait()
	w.Close()
	if n := openChecked(t, path).Count(BucketErrors); n != 4000 {
		t.Fatalf("errors = %d, want 4000", n)
	}
}

func TestCreateRefusesExistingFile(t *testing.T) {
	w, path := newFile(t, Options{})
	w.Close()
	if _, err := Create(path, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("err = %v, want ErrExists", err)
	}
	w2, err := Create(path, Options{Append: true})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	w2.Put(Sample{})
	w2.Close()
}

func TestOpenRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	notBolt := filepath.Join(dir, "notes.txt")
	os.WriteFile(notBolt, []byte(strings.Repeat("not a database\n", 1000)), 0o644)
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o644)

	// A bbolt file that is not ours (no meta bucket).
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err })
	db.Close()

	// A session file from a newer schema.
	newer := filepath.Join(dir, "newer.db")
	w, _ := Create(newer, Options{})
	w.Close()
	db, _ = bolt.Open(newer, 0o644, nil)
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(BucketMeta)).Put([]byte(MetaSchema), []byte("99"))
	})
	db.Close()

	// A truncated session file.
	truncated := filepath.Join(dir, "truncated.db")
	w, _ = Create(truncated, Options{})
	for i := 0; i < 5000; i++ {
		w.Put(ErrorRecord{Class: "EOF", Message: strings.Repeat("m", 100)})
	}
	w.Close()
	st, _ := os.Stat(truncated)
	os.Truncate(truncated, st.Size()/3)

	for _, tc := range []struct {
		path string
		want error
	}{
		{notBolt, ErrNotSession}, {empty, ErrNotSession}, {foreign, ErrNotSession},
		{newer, ErrNewerSchema}, {truncated, ErrTruncated},
	} {
		before, _ := os.ReadFile(tc.path)
		_, err := Open(tc.path)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", filepath.Base(tc.path), err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: message is not one line: %q", filepath.Base(tc.path), err)
		}
		after, _ := os.ReadFile(tc.path)
		if string(before) != string(after) {
			t.Errorf("%s: Open changed the file", filepath.Base(tc.path))
		}
	}
}

func TestOpenWhileWriterHoldsIt(t *testing.T) {
	w, path := newFile(t, Options{})
	defer w.Close()
	start := time.Now()
	_, err := Open(path)
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("err = %v, want ErrInUse", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Open took %s on a busy file", d)
	}
}

func TestMaxSizeStopsRecordingNotTheRun(t *testing.T) {
	var reported []error
	var mu sync.Mutex
	w, path := newFile(t, Options{MaxSize: 256 << 10, OnError: func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	}})
	big := strings.Repeat("x", 4096)
	for i := 0; i < 2000; i++ {
		w.Put(ErrorRecord{Class: "EOF", Message: big})
		if i%100 == 0 {
			w.Flush()
		}
	}
	w.Close()
	mu.Lock()
	defer mu.Unlock()
	var full *FullError
	if len(reported) == 0 || !errors.As(reported[0], &full) || full.Path != path || full.MaxSize != 256<<10 || full.Dropped == 0 {
		t.Fatalf("reported %v, want a FullError first", reported)
	}
	if w.Dropped() == 0 {
		t.Fatal("nothing dropped past MaxSize")
	}
	r := openChecked(t, path)
	if n := r.Count(BucketErrors); n == 0 || n >= 2000 {
		t.Fatalf("errors stored = %d", n)
	}
}

func BenchmarkWriterPut(b *testing.B) {
	path := filepath.Join(b.TempDir(), "b.db")
	w, err := Create(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	rec := ErrorRecord{Time: time.Now(), ClientID: "c0001", Class: "ECONNRESET", Message: "read tcp 127.0.0.1:5000->127.0.0.1:3000: read: connection reset by peer", LocalAddr: "127.0.0.1:5000", RemoteAddr: "127.0.0.1:3000"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Put(rec)
	}
	w.Close()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestQueueBoundedInBytes: the queue holds at most MaxPendingBytes, big
// records and reserved bytes included; past it records are dropped and
// counted, and the end records (meta) still go in.
func TestQueueBoundedInBytes(t *testing.T) {
	w, path := newFile(t, Options{MaxPendingBytes: 64 << 10, FlushInterval: time.Hour, BatchSize: 1 << 30})
	block := RecChunks{Proxy: "p", ConnID: "c", Data: make([]byte, 20<<10)}
	for i := 0; i < 5; i++ {
		block.Block = i
		w.Put(block)
	}
	if d := w.Dropped(); d != 2 {
		t.Fatalf("dropped = %d, want 2 of 5 blocks of 20 KiB in 64 KiB", d)
	}
	if w.Reserve(8 << 10) {
		t.Fatal("reserved 8 KiB in a full queue")
	}
	w.PutMeta(MetaSummary, Summary{Scenario: "end"})
	w.Close()
	r := openChecked(t, path)
	if n := r.Count(BucketRecEvents); n != 3 {
		t.Fatalf("%d blocks stored, want 3", n)
	}
	var sum Summary
	if ok, err := r.Meta(MetaSummary, &sum); !ok || err != nil || sum.Scenario != "end" {
		t.Fatalf("summary %+v %v %v", sum, ok, err)
	}
}

// TestMaxSizeKeepsTheEnd: a file that reaches MaxSize keeps room for the
// run's end and its summary, and never passes MaxSize.
func TestMaxSizeKeepsTheEnd(t *testing.T) {
	const limit = 4 << 20
	var reports []error
	w, path := newFile(t, Options{MaxSize: limit, OnError: func(err error) { reports = append(reports, err) }})
	w.PutMeta(MetaRun, RunInfo{Command: "run", StartedAt: time.Now()})
	big := strings.Repeat("x", 4096)
	for i := 0; i < 4000; i++ {
		w.Put(ErrorRecord{Class: "EOF", Message: big})
		if i%200 == 0 {
			w.Flush()
		}
	}
	w.Flush()
	if w.Dropped() == 0 {
		t.Fatal("nothing dropped past MaxSize")
	}
	w.PutMeta(MetaRun, RunInfo{Command: "run", EndedAt: time.Now()})
	w.PutMeta(MetaSummary, Summary{Scenario: "flood", RecordsDropped: w.Dropped()})
	w.Put(ProxyInfo{Name: "p"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var full *FullError
	if len(reports) != 1 || !errors.As(reports[0], &full) || full.MaxSize != 4<<20 {
		t.Fatalf("reported %v, want one FullError", reports)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > limit {
		t.Fatalf("file is %d bytes, over the %d limit", fi.Size(), limit)
	}
	r := openChecked(t, path)
	var run RunInfo
	var sum Summary
	if ok, _ := r.Meta(MetaRun, &run); !ok || run.EndedAt.IsZero() {
		t.Fatalf("the run's end did not land: %+v", run)
	}
	if ok, _ := r.Meta(MetaSummary, &sum); !ok || sum.Scenario != "flood" || sum.RecordsDropped == 0 {
		t.Fatalf("the summary did not land: %+v", sum)
	}
	if n := r.Count(BucketProxies); n != 1 {
		t.Fatalf("proxy info: %d records", n)
	}
}

// TestRecChunksRoundTrip: a block's pieces come back as they went in,
// and damage is refused.
func TestRecChunksRoundTrip(t *testing.T) {
	var data []byte
	data = AppendRecChunk(data, 5*time.Millisecond, false, []byte("data: a\n"))
	data = AppendRecChunk(data, 7*time.Millisecond, true, []byte("\n"))
	val := RecChunks{Frames: 1, Data: data}.AppendValue(nil)
	if !IsRecChunks(val) || IsRecChunks([]byte(`{"seq":0}`)) {
		t.Fatal("format byte not told apart from JSON")
	}
	var got []string
	frames, err := DecodeRecChunks(val, func(off time.Duration, gap bool, p []byte) error {
		got = append(got, fmt.Sprintf("%v %v %q", off, gap, p))
		return nil
	})
	if err != nil || frames != 1 || strings.Join(got, "|") != `5ms false "data: a\n"|7ms true "\n"` {
		t.Fatalf("frames %d err %v pieces %v", frames, err, got)
	}
	for cut := 1; cut < len(val)-1; cut++ {
		if _, err := DecodeRecChunks(val[:cut], func(time.Duration, bool, []byte) error { return nil }); err == nil && cut < len(val)-2 {
			// A cut at a piece boundary decodes to fewer pieces; elsewhere
			// it must fail, never panic.
			continue
		}
	}
}

// TestReserveWaitHoldsWhileCommitsFree: a producer whose budget is spent
// waits as long as commits keep freeing room, past its wait in all, and
// gets the room; with no commit at all it gives up after its wait.
func TestReserveWaitHoldsWhileCommitsFree(t *testing.T) {
	const unit = 8 << 10
	w, _ := newFile(t, Options{MaxPendingBytes: 64 << 10, FlushInterval: 5 * time.Millisecond, BatchSize: 1 << 30})
	defer w.Close()
	// Seven eighths of the budget, in blocks reserved and not yet queued.
	held := 0
	for w.Reserve(unit) {
		held++
	}
	if held != 7 {
		t.Fatalf("reserved %d blocks of 8 KiB in 64 KiB, want 7", held)
	}

	// No commit frees anything: the wait runs out.
	start := time.Now()
	if w.ReserveWait(unit, 50*time.Millisecond) {
		t.Fatal("room reserved while nothing was committed")
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
		t.Fatalf("gave up after %v, want its 50ms wait", d)
	}

	// A block queued every 50 ms: each timed commit frees 8 KiB, and the
	// producer asking for all seven waits about 350 ms, past its 200 ms.
	go func() {
		for i := 0; i < held; i++ {
			time.Sleep(50 * time.Millisecond)
			w.PutReserved(RecChunks{Proxy: "p", ConnID: "c", Block: i, Data: make([]byte, 100)}, unit)
		}
	}()
	start = time.Now()
	if !w.ReserveWait(held*unit, 200*time.Millisecond) {
		t.Fatalf("dropped after %v while commits freed room", time.Since(start))
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("got the room after %v: the test did not wait past the producer's wait", d)
	}
	if d := w.Dropped(); d != 0 {
		t.Fatalf("%d records dropped", d)
	}
}

// TestDataSize: DataSize follows what the commits used, never past the
// file's length, which bbolt grows ahead of it; Flush returns with every
// record committed.
func TestDataSize(t *testing.T) {
	w, path := newFile(t, Options{})
	defer w.Close()
	if w.DataSize() != 0 {
		t.Fatalf("DataSize %d before any commit", w.DataSize())
	}
	var sizes []int64
	rng := rand.New(rand.NewPCG(1, 1))
	msg := make([]byte, 500)
	for round := 0; round < 2; round++ {
		before := w.Committed()
		for i := 0; i < 2000; i++ {
			for k := range msg {
				msg[k] = byte(rng.Uint32())
			}
			w.Put(ErrorRecord{Class: "EOF", Message: hex.EncodeToString(msg)}) // 1,000 bytes that do not compress
		}
		w.Flush()
		if d := w.Dropped(); d != 0 {
			t.Fatalf("%d records dropped", d)
		}
		// Flush returns once all is on disk, what the writer's goroutine
		// was committing included.
		if c := w.Committed() - before; c != 2000 {
			t.Fatalf("round %d: %d of 2000 records committed when Flush returned", round, c)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if d := w.DataSize(); d <= 0 || d > fi.Size() {
			t.Fatalf("round %d: DataSize %d, file %d bytes", round, d, fi.Size())
		}
		sizes = append(sizes, w.DataSize())
	}
	// Pages freed by the first round's commits may take some of the
	// second's 2 MB, not most of it.
	if sizes[1] < sizes[0]+1000*1000 {
		t.Fatalf("DataSize %d after 2 MB more than %d", sizes[1], sizes[0])
	}
}

// TestFlushWaitsForTheWritersCommit: Flush returns with everything queued
// before it on disk, also when the writer's goroutine has just taken the
// last of it and is committing it (a block of 6 MiB: milliseconds).
func TestFlushWaitsForTheWritersCommit(t *testing.T) {
	w, _ := newFile(t, Options{})
	defer w.Close()
	rng := rand.New(rand.NewPCG(2, 2))
	data := make([]byte, 6<<20)
	for i := range data {
		data[i] = byte(rng.Uint32()) // incompressible: the commit writes it all
	}
	for round := 0; round < 3; round++ {
		before := w.Committed()
		w.Put(RecChunks{Proxy: "p", ConnID: "c", Block: round, Data: data}) // past 4 MiB: the writer is woken
		for taken := false; !taken; {
			w.mu.Lock()
			taken = len(w.pending) == 0
			w.mu.Unlock()
			runtime.Gosched()
		}
		w.Flush()
		if c := w.Committed() - before; c != 1 {
			t.Fatalf("round %d: the block the writer took was not committed when Flush returned", round)
		}
	}
}
