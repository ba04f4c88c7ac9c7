package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// reportRecords is the size of the report row's session file (issue 6:
// one million error and event records, rendered in under 10 s).
const reportRecords = 1_000_000

const targetReport = 10 * time.Second

// reportFile returns a session file of n records (half connection
// attempts, half errors, over 72 hours, like analysis's benchmark),
// written once and kept in dir: writing it takes longer than reading it.
func reportFile(ctx context.Context, dir string, n int, logf func(string, ...any)) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("ssestress-bench-report-%d-v1.db", n))
	if r, err := session.Open(path); err == nil {
		got := r.Count(session.BucketConns) + r.Count(session.BucketErrors)
		r.Close()
		if got == n {
			return path, nil
		}
	}
	if _, err := os.Lstat(path); err == nil {
		// Not the file an earlier run wrote: never replaced.
		return "", fmt.Errorf("%s exists and is not the report file of %d records this row writes (remove it, or choose another --temp-dir)", path, n)
	}
	logf("report: writing %s (%d records, once; kept for later runs)", path, n)
	tmpFile, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	tmp := tmpFile.Name()
	tmpFile.Close()
	os.Remove(tmp) // session.Create makes it anew
	w, err := session.Create(tmp, session.Options{BatchSize: 5000, MaxPending: 200_000, MaxPendingBytes: 256 << 20})
	if err != nil {
		return "", err
	}
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	w.PutMeta(session.MetaRun, session.RunInfo{Tool: "ssestress bench", Command: "run", Scenario: "long-running", StartedAt: t0, EndedAt: at(72 * time.Hour)})
	classes := []string{errclass.ECONNRESET, errclass.ECONNRESET, errclass.ECONNRESET, errclass.EOF, errclass.UnexpectedEOF, errclass.HTTP(502), errclass.ETIMEDOUT}
	groups := []string{"AAPL,MSFT", "AMZN,META", "GOOG", "NVDA,TSLA,AMD"}
	conns := n / 2
	for i := range conns {
		if i%50_000 == 0 && ctx.Err() != nil {
			w.Close()
			os.Remove(tmp)
			return "", ctx.Err()
		}
		start := time.Duration(i) * 72 * time.Hour / time.Duration(conns)
		age := time.Duration(5+i%600) * time.Second
		idle := 60*time.Second + time.Duration(i%400)*time.Millisecond
		if i%3 == 0 {
			idle = time.Duration(i%50) * 100 * time.Millisecond
		}
		connID := fmt.Sprintf("c%05d", i%20000)
		local := fmt.Sprintf("127.0.0.1:%d", 20000+i%40000)
		class := classes[i%len(classes)]
		msg := class
		if class == errclass.ECONNRESET {
			msg = "read tcp " + local + "->127.0.0.1:8090: read: connection reset by peer"
		}
		group := groups[i%len(groups)]
		w.Put(session.ConnRecord{ClientID: connID, Attempt: i / 20000, Scenario: "long-running", Group: group, URL: "http://127.0.0.1:8090/stream",
			LocalAddr: local, RemoteAddr: "127.0.0.1:8090", Start: at(start), Connected: at(start + time.Millisecond), FirstByte: at(start + 2*time.Millisecond),
			FirstEvent: at(start + 30*time.Millisecond), End: at(start + age), Status: 200, Events: int64(i % 900), Comments: int64(i % 40),
			Bytes: int64(i%900) * 120, MaxGap: session.Seconds(idle), EndClass: class, EndMessage: msg, ClosedBy: session.ClosedByPeer})
		w.Put(session.ErrorRecord{Time: at(start + age), Source: session.SourceClient, ClientID: connID, Attempt: i / 20000, Scenario: "long-running",
			Group: group, Class: class, Message: msg, LocalAddr: local, RemoteAddr: "127.0.0.1:8090",
			Age: session.Seconds(age), Idle: session.Seconds(idle), Events: int64(i % 900)})
		if i%50_000 == 49_999 {
			w.Flush()
		}
	}
	for m := 0; m < 72*60; m++ {
		w.Put(session.Sample{Time: at(time.Duration(m) * time.Minute), Active: 20000, Events: int64(m) * 1000, RSS: 400 << 20, FDs: 20010, Goroutines: 40000})
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	if w.Dropped() != 0 {
		os.Remove(tmp)
		return "", fmt.Errorf("%d records dropped writing the report file", w.Dropped())
	}
	// A link never replaces a file that appeared meanwhile.
	err = os.Link(tmp, path)
	os.Remove(tmp)
	return path, err
}

// runReport is row 5: the time to load and render (as the default table)
// a session file of one million records. A quick run uses the million
// file only when an earlier run left it; otherwise 200,000 records, and
// the time is scaled to a million (reading is linear in the records).
func runReport(ctx context.Context, s *suite) error {
	n := reportRecords
	if s.cfg.Quick {
		path := filepath.Join(s.tmp, fmt.Sprintf("ssestress-bench-report-%d-v1.db", reportRecords))
		if _, err := os.Stat(path); err != nil {
			n = reportRecords / 5
		}
	}
	path, err := reportFile(ctx, s.tmp, n, s.logf)
	if err != nil {
		return err
	}
	runs := 2
	if s.cfg.Quick {
		runs = 1
	}
	var best time.Duration
	for i := 0; i < runs; i++ {
		start := time.Now()
		rep, err := analysis.LoadFiles(path)
		if err != nil {
			return err
		}
		if err := analysis.Render(io.Discard, rep, "table"); err != nil {
			return err
		}
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	scaled := time.Duration(float64(best) * float64(reportRecords) / float64(n))
	f := Figure{Row: RowReport, Name: "report of 1,000,000 records", Value: scaled.Seconds(), Unit: "s", Text: fmtNum(scaled.Seconds()) + " s",
		Versus: "target 10 s", Ratio: scaled.Seconds() / targetReport.Seconds(), Target: "< 10 s (issue 6)",
		Note: fmt.Sprintf("load and render as a table (ssestress report FILE), best of %d; file %s", runs, path)}
	if n != reportRecords {
		f.Note = fmt.Sprintf("quick run: %s records took %s s, scaled ×%d (a full run writes the million-record file once); file %s",
			fmtCount(float64(n)), fmtNum(best.Seconds()), reportRecords/n, path)
	}
	f.below(scaled.Seconds(), targetReport.Seconds(), " s")
	s.add(f)
	return nil
}
