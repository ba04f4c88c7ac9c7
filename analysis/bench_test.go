package analysis

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// benchRecords is the size of the benchmark's session file: half
// connection attempts (each with its event counts), half errors.
const benchRecords = 1_000_000

// millionSession returns a session file of benchRecords records, written
// once and kept in the temp dir (it takes a while to write: bbolt commits
// and JSON encoding of a million records).
func millionSession(b *testing.B) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("ssestress-analysis-bench-%d-v1.db", benchRecords))
	if r, err := session.Open(path); err == nil {
		n := r.Count(session.BucketConns) + r.Count(session.BucketErrors)
		r.Close()
		if n == benchRecords {
			return path
		}
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	start := time.Now()
	w, err := session.Create(tmp, session.Options{BatchSize: 5000, MaxPending: 200_000})
	if err != nil {
		b.Fatal(err)
	}
	w.PutMeta(session.MetaRun, session.RunInfo{Command: "run", Scenario: "long-running", StartedAt: t0, EndedAt: at(72 * time.Hour)})
	classes := []string{errclass.ECONNRESET, errclass.ECONNRESET, errclass.ECONNRESET, errclass.EOF, errclass.UnexpectedEOF, errclass.HTTP(502), errclass.ETIMEDOUT}
	conns := benchRecords / 2
	for i := range conns {
		start := time.Duration(i) * 72 * time.Hour / time.Duration(conns)
		age := time.Duration(5+i%600) * time.Second
		idle := 60*time.Second + time.Duration(i%400)*time.Millisecond
		if i%3 == 0 {
			idle = time.Duration(i%50) * 100 * time.Millisecond
		}
		connID := fmt.Sprintf("c%05d", i%20000)
		local := fmt.Sprintf("127.0.0.1:%d", 20000+i%40000)
		class := classes[i%len(classes)]
		msg := fmt.Sprintf("read tcp %s->127.0.0.1:8090: read: connection reset by peer", local)
		if class != errclass.ECONNRESET {
			msg = class
		}
		group := groups[i%len(groups)]
		w.Put(session.ConnRecord{ClientID: connID, Attempt: i / 20000, Scenario: "long-running", Group: group, URL: "http://127.0.0.1:8090/stream",
			LocalAddr: local, RemoteAddr: "127.0.0.1:8090", Start: at(start), Connected: at(start + ms(1)), FirstByte: at(start + ms(2)),
			FirstEvent: at(start + ms(30)), End: at(start + age), Status: 200, Events: int64(i % 900), Comments: int64(i % 40),
			Bytes: int64(i%900) * 120, MaxGap: session.Seconds(idle), EndClass: class, EndMessage: msg, ClosedBy: session.ClosedByPeer})
		w.Put(session.ErrorRecord{Time: at(start + age), Source: "client", ClientID: connID, Attempt: i / 20000, Scenario: "long-running",
			Group: group, Hop: session.HopClient, Class: class, Message: msg, LocalAddr: local, RemoteAddr: "127.0.0.1:8090",
			Age: session.Seconds(age), Idle: session.Seconds(idle), Events: int64(i % 900)})
		if i%50_000 == 49_999 {
			w.Flush()
		}
	}
	for s := 0; s < 72*60; s++ {
		w.Put(session.Sample{Time: at(time.Duration(s) * time.Minute), Active: 20000, Events: int64(s) * 1000, RSS: 400 << 20, FDs: 20010, Goroutines: 40000})
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if w.Dropped() != 0 {
		b.Fatalf("%d records dropped writing the benchmark file", w.Dropped())
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote %s (%d records) in %s", path, benchRecords, time.Since(start).Round(time.Millisecond))
	return path
}

// BenchmarkReportMillion is the target: the report of a session
// file with one million error and connection records, loaded and rendered
// as a table, in under 10 s on a 2-core machine.
//
//	go test ./analysis -run '^$' -bench ReportMillion -benchtime 3x
func BenchmarkReportMillion(b *testing.B) {
	path := millionSession(b)
	b.ReportAllocs()
	for b.Loop() {
		rep, err := LoadFiles(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := Render(io.Discard, rep, "table"); err != nil {
			b.Fatal(err)
		}
		if rep.Connections.Attempts != benchRecords/2 || len(rep.raw.points) != benchRecords/2 {
			b.Fatalf("read %d attempts, %d errors", rep.Connections.Attempts, len(rep.raw.points))
		}
	}
}
