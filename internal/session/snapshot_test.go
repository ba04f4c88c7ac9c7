package session

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOpenCommittedWhileWriting: a file another writer holds (bbolt's lock
// refuses Open) is read through a snapshot of what the writer committed,
// while the writer goes on committing every 20 ms (five times as often as
// the session writer does) and rewriting many pages each time: every
// snapshot passes bbolt's consistency check, decodes, holds at least what
// was committed before it was taken, and leaves no copy behind when
// closed; almost every one is taken. A writer that serves a live view is
// pointed at instead of copied.
func TestOpenCommittedWhileWriting(t *testing.T) {
	w, path := newFile(t, Options{})
	defer w.Close()
	w.PutMeta(MetaRun, RunInfo{Command: "proxy", PID: os.Getpid()})
	w.Flush()
	var committed atomic.Int64 // records committed so far
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pad := strings.Repeat("x", 3000) // a page or so per record: commits rewrite many pages
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for j := 0; j < 20; j++ {
				w.Put(ErrorRecord{ClientID: fmt.Sprintf("c%06d", i*20+j), Class: "ECONNRESET", Message: pad})
			}
			w.Flush()
			committed.Store(int64(i+1) * 20)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	before := tempSnapshots(t)
	deadline := time.Now().Add(20 * time.Second)
	taken := 0
	for n := 0; n < 15 && time.Now().Before(deadline); n++ {
		time.Sleep(40 * time.Millisecond) // the writer commits twice meanwhile
		floor := committed.Load()
		start := time.Now()
		r, err := OpenCommitted(path)
		if errors.Is(err, ErrKeepsChanging) {
			t.Logf("snapshot %d: %v", n, err)
			continue
		}
		if err != nil {
			t.Fatalf("snapshot %d: %v", n, err)
		}
		if r.SnapshotAt().IsZero() || r.Path() != path {
			t.Errorf("snapshot %d: at %v, path %q", n, r.SnapshotAt(), r.Path())
		}
		if err := r.Check(); err != nil {
			t.Fatalf("snapshot %d fails bbolt's check: %v", n, err)
		}
		errs, err := All[ErrorRecord](r, BucketErrors)
		if err != nil {
			t.Fatalf("snapshot %d: %v", n, err)
		}
		var info RunInfo
		if ok, err := r.Meta(MetaRun, &info); !ok || err != nil || info.Command != "proxy" {
			t.Errorf("snapshot %d: run info %+v, %v", n, info, err)
		}
		if int64(len(errs)) < floor {
			t.Errorf("snapshot %d holds %d records, %d were committed before it", n, len(errs), floor)
		}
		r.Close()
		taken++
		t.Logf("snapshot %d: %d records in %v", n, len(errs), time.Since(start).Round(time.Millisecond))
	}
	close(stop)
	wg.Wait()
	if taken < 12 {
		t.Errorf("%d of 15 snapshots taken", taken)
	}
	if after := tempSnapshots(t); after > before {
		t.Errorf("%d snapshot copies left in %s", after-before, os.TempDir())
	}

	// A writer with a live view: the view is named, nothing is copied.
	remove, err := WriteLiveURL(path, "http://127.0.0.1:9090")
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	if _, err := OpenCommitted(path); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "http://127.0.0.1:9090/report") {
		t.Errorf("with a live view: %v", err)
	}
}

// tempSnapshots counts the snapshot copies in the temporary directory.
func tempSnapshots(t *testing.T) int {
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "ssestress-snapshot-*.db"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}
