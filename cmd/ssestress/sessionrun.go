package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/session"
)

// The session set-up and teardown of the producers that run for a while
// (run, replay run, proxy), written once: the file created (never over
// another), the run's identity on disk before the first connection, the
// live view, the monitor, and at the end the summary, the closed file and
// the attribution of resets. A producer that fails before its work starts
// leaves no file behind.

// sessionSpec is what a producer says about its session file at the start.
type sessionSpec struct {
	command  string // "run", "replay run", "proxy": RunInfo.Command and messages
	path     string // the file
	flagName string // the flag that named it, for messages ("--out")
	maxSize  int64  // --max-file-size (0: none)
	// maxPending bounds the writer's queue (processMemory.writer; 0: the
	// writer's default).
	maxPending int64
	// info holds what the producer knows: Args, Scenario, Target, Config,
	// Shard, TimeScale, Keepalive. Tool, Host, PID and StartedAt are
	// filled here.
	info      session.RunInfo
	endpoints []session.Endpoint
	// errOut receives one line per error the writer reports (a full file).
	errOut io.Writer
}

// producerSession is a producer's open session file and what runs beside
// it.
type producerSession struct {
	spec    sessionSpec
	w       *session.Writer
	info    session.RunInfo
	file    *liveFile
	live    *liveView
	mon     *clients.Monitor
	stopMon func()
	ended   bool // the summary is written and the file closed
	// kept: the producer's work began, so the file stays whatever happens.
	kept bool
}

// openSession creates the session file, writes the run's identity and
// endpoints, and flushes them: a crash from here on leaves a file that says
// what ran.
func openSession(spec sessionSpec) (*producerSession, error) {
	w, err := session.Create(spec.path, session.Options{MaxSize: int(spec.maxSize), MaxPendingBytes: spec.maxPending, OnError: func(err error) {
		fmt.Fprintln(spec.errOut, "ssestress:", sessionWriteError(err, spec.command))
	}})
	if err != nil {
		return nil, sessionExists(err, spec.flagName)
	}
	s := &producerSession{spec: spec, w: w, info: spec.info, file: &liveFile{path: spec.path, w: w}}
	s.info.Tool = "ssestress " + version
	s.info.Command = spec.command
	s.info.Host, _ = os.Hostname()
	s.info.PID = os.Getpid()
	s.info.StartedAt = time.Now()
	w.PutMeta(session.MetaRun, s.info)
	for _, e := range spec.endpoints {
		w.Put(e)
	}
	w.Flush()
	return s, nil
}

// startedAt is when the session began.
func (s *producerSession) startedAt() time.Time { return s.info.StartedAt }

// serveLive starts the live view (--http) on addr: /metrics and the page
// from src, /report and the page's verdict (recomputed at most every
// interval) from the file. A bad address is a usage error.
func (s *producerSession) serveLive(addr string, interval time.Duration, src *liveSource) error {
	if addr == "" {
		return nil
	}
	src.attach(s.w, s.startedAt())
	live, err := startLiveView(liveConfig{addr: addr, registry: src.reg, source: src, report: s.file.report,
		verdict: s.file.verdict, interval: interval, session: s.spec.path})
	if err != nil {
		return err
	}
	s.live = live
	fmt.Fprintf(s.spec.errOut, "ssestress %s: live view on %s/metrics and %s/report; live page %s/\n", s.spec.command, live.URL, live.URL, live.URL)
	return nil
}

// monitor starts mon, which samples into the file, until end. From here on
// the producer's work has begun: the file is kept.
func (s *producerSession) monitor(mon *clients.Monitor) {
	s.kept = true
	mon.Recorder = s.w
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); mon.Run(ctx) }()
	s.mon = mon
	s.stopMon = func() { stop(); <-done }
}

// stopMonitor stops the monitor (its last sample is taken); safe twice.
func (s *producerSession) stopMonitor() {
	if s.stopMon != nil {
		s.stopMon()
		s.stopMon = nil
	}
}

// end stops the monitor, writes the summary (its session file and dropped
// records filled in) and the run's end, and closes the file.
func (s *producerSession) end(sum *session.Summary) error {
	s.stopMonitor()
	s.w.Flush()
	sum.SessionFile = s.spec.path
	sum.RecordsDropped = s.w.Dropped()
	s.info.EndedAt = time.Now()
	s.w.PutMeta(session.MetaRun, s.info)
	s.w.PutMeta(session.MetaSummary, *sum)
	s.ended = true
	if err := s.file.close(); err != nil {
		return fmt.Errorf("session file %s: %w", s.spec.path, err)
	}
	return nil
}

// attribute explains the closed file with the attribution engine and says
// in one line what it found: the verdict's first sentence.
func (s *producerSession) attribute(ctx context.Context, out io.Writer) {
	endOfRunAttribution(ctx, s.spec.command, s.spec.path, out)
}

// close stops the live view and, when the producer failed before its work
// began, closes and removes the file: nothing half-made is left. Safe after
// end and twice.
func (s *producerSession) close() {
	s.stopMonitor()
	s.live.close()
	s.live = nil
	if s.ended {
		return
	}
	s.ended = true
	s.file.close()
	if !s.kept {
		os.Remove(s.spec.path)
	}
}

// clientSummary is the summary of a run of generated clients.
func clientSummary(scenario string, elapsed time.Duration, c *clients.Counters, mon *clients.Monitor, interrupted bool) session.Summary {
	sum := session.Summary{
		Scenario:        scenario,
		DurationS:       elapsed.Seconds(),
		Clients:         c.Streams.Load(),
		Attempts:        c.Attempts.Load(),
		ActiveMax:       c.ActiveMax.Load(),
		Events:          c.Events.Load(),
		Reconnects:      c.Reconnects.Load(),
		Errors:          c.Errors(),
		MemoryPeakBytes: mon.PeakMemory(),
		Interrupted:     interrupted,
	}
	if s := elapsed.Seconds(); s > 0 {
		sum.EventsPerS = float64(sum.Events) / s
	}
	return sum
}

// liveFile is a session file as the live view's /report reads it: through
// the writer while the run holds it, then from the closed file. Its lock
// keeps a report off the file while the writer closes it.
type liveFile struct {
	path   string
	w      *session.Writer
	mu     sync.RWMutex
	closed bool
}

func (f *liveFile) report(out io.Writer, format string) error {
	return f.withReport(func(rep *analysis.Report) error { return analysis.Render(out, rep, format) })
}

// withReport calls use with the report of the file as it stands, under
// the lock: through the writer while the producer holds the file, then
// from the closed file.
func (f *liveFile) withReport(use func(*analysis.Report) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var (
		rep *analysis.Report
		err error
	)
	if f.closed {
		rep, err = analysis.LoadFiles(f.path)
	} else {
		rep, err = analysis.Load(f.w.Reader())
	}
	if err != nil {
		return err
	}
	return use(rep)
}

// close closes the writer with no report reading it; safe twice.
func (f *liveFile) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return f.w.Close()
}

// defaultSessionPath is ssestress-<name>-<timestamp>.db in the working
// directory, with a -2, -3 ... suffix if that file exists.
func defaultSessionPath(name string, now time.Time) string {
	return freshName("ssestress-"+name, ".db", now)
}

// freshName is <stem>-<timestamp><ext> in the working directory, with a
// -2, -3 ... suffix if that file exists: a default name never collides
// with an earlier run's file.
func freshName(stem, ext string, now time.Time) string {
	base := stem + "-" + now.Format("20060102-150405")
	name := base + ext
	for i := 2; i < 1000; i++ {
		if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		name = base + "-" + strconv.Itoa(i) + ext
	}
	return name
}
