package clients

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ssestress/ssestress/internal/procstat"
	"github.com/ssestress/ssestress/internal/session"
)

// Monitor samples a run's metrics (the seed's TestMetrics: active
// connections, errors by class, messages, memory, uptime; plus goroutines,
// open fds, RSS, the process's CPU time and the lag of its own timer)
// every Interval, hands each Sample to the Recorder and prints a status
// line: on a terminal one line rewritten in place (refreshed every second at
// most), otherwise one plain line per Interval.
type Monitor struct {
	Interval time.Duration // between stored samples (default DefaultMonitorInterval)
	Counters *Counters
	Recorder Recorder  // nil: samples not stored
	Out      io.Writer // nil: no status lines
	Terminal bool      // Out is a terminal: rewrite one line in place
	Start    time.Time // the run's start (uptime is measured from it)
	// ServerPID, when set, is a server process whose memory and open fds
	// are read into every sample (ssestress run --server-pid).
	ServerPID int
	// Gauges, when set and Counters is not, reads the connections open and
	// the events so far of a process that counts its own (the proxy: its
	// client connections, the events it forwarded), so its samples state
	// them instead of zeros.
	Gauges func() (active, events int64)

	mu         sync.Mutex
	peakRSS    uint64
	maxLag     time.Duration
	last       session.Sample
	lastLine   time.Time
	lastEvents int64
	statusLen  int
}

// DefaultMonitorInterval is used when Monitor.Interval is not set.
const DefaultMonitorInterval = 10 * time.Second

// refresh is the status line's refresh period on a terminal.
const refresh = time.Second

// Run samples until ctx ends, then takes a final sample and ends the status
// line. Call it in its own goroutine and wait for it to return.
func (m *Monitor) Run(ctx context.Context) {
	if m.Start.IsZero() {
		m.Start = time.Now()
	}
	if m.Interval <= 0 {
		m.Interval = DefaultMonitorInterval
	}
	step := m.Interval
	if m.Terminal && step > refresh {
		step = refresh
	}
	// Ticks are scheduled against the start, so their lateness is the
	// tool's own scheduling delay and does not accumulate.
	nextSample := m.Start.Add(m.Interval)
	nextTick := m.Start.Add(step)
	timer := time.NewTimer(time.Until(nextTick))
	defer timer.Stop()
	for {
		due := nextTick
		if nextSample.Before(due) {
			due = nextSample
		}
		timer.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			s := m.Sample(0)
			m.record(s)
			m.status(s, true)
			return
		case <-timer.C:
		}
		now := time.Now()
		lag := now.Sub(due)
		if !now.Before(nextSample) {
			s := m.Sample(lag)
			m.record(s)
			m.status(s, false)
		} else if m.Terminal {
			m.status(m.Sample(lag), false)
		}
		for !nextSample.After(now) {
			nextSample = nextSample.Add(m.Interval)
		}
		for !nextTick.After(now) {
			nextTick = nextTick.Add(step)
		}
	}
}

// Sample reads the metrics now. lag is the timer lag to report.
func (m *Monitor) Sample(lag time.Duration) session.Sample {
	now := time.Now()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := session.Sample{
		Time: now, Uptime: session.Seconds(now.Sub(m.Start)), HeapAlloc: ms.HeapAlloc,
		Goroutines: runtime.NumGoroutine(), TimerLag: session.Seconds(lag),
	}
	if c := m.Counters; c != nil {
		s.Active = c.Active.Load()
		s.Attempts = c.Attempts.Load()
		s.Events = c.Events.Load()
		s.Comments = c.Comments.Load()
		s.Reconnects = c.Reconnects.Load()
		if errs := c.Errors(); len(errs) > 0 {
			s.Errors = errs
		}
	} else if m.Gauges != nil {
		s.Active, s.Events = m.Gauges()
	}
	if m.ServerPID > 0 {
		if ps, err := procstat.Read(m.ServerPID); err == nil {
			s.ServerPID, s.ServerRSS, s.ServerFDs, s.ServerThreads = m.ServerPID, ps.RSS, ps.FDs, ps.Threads
			if states, err := procstat.TCPStates(m.ServerPID); err == nil && len(states) > 0 {
				s.ServerTCP = make(map[string]int64, len(states))
				for st, n := range states {
					s.ServerTCP[st] = int64(n)
				}
			}
		}
	}
	if cpu, err := procstat.SelfCPU(); err == nil {
		s.CPUUser, s.CPUSystem = session.Seconds(cpu.User), session.Seconds(cpu.System)
	}
	peak := ms.Sys
	if ps, err := procstat.Self(); err == nil {
		s.RSS, s.FDs = ps.RSS, ps.FDs
		peak = max(ps.RSS, ps.RSSPeak)
	}
	m.mu.Lock()
	m.peakRSS = max(m.peakRSS, peak)
	m.maxLag = max(m.maxLag, lag)
	m.mu.Unlock()
	return s
}

func (m *Monitor) record(s session.Sample) {
	m.mu.Lock()
	m.last = s
	m.mu.Unlock()
	if m.Recorder != nil {
		m.Recorder.Put(s)
	}
}

// PeakMemory is the highest resident memory seen (the process's VmHWM where
// /proc exists, else the Go runtime's Sys).
func (m *Monitor) PeakMemory() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peakRSS
}

// MaxLag is the largest timer lag seen.
func (m *Monitor) MaxLag() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.maxLag
}

// Last is the last stored sample.
func (m *Monitor) Last() session.Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// status prints the status line for s.
func (m *Monitor) status(s session.Sample, final bool) {
	if m.Out == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rate := 0.0
	if !m.lastLine.IsZero() && !final {
		if d := s.Time.Sub(m.lastLine).Seconds(); d > 0 {
			rate = float64(s.Events-m.lastEvents) / d
		}
	} else if d := s.Uptime.Seconds(); d > 0 {
		rate = float64(s.Events) / d
	}
	m.lastLine, m.lastEvents = s.Time, s.Events
	line := StatusLine(s, rate)
	switch {
	case m.Terminal:
		pad := ""
		if n := m.statusLen - len(line); n > 0 {
			pad = strings.Repeat(" ", n)
		}
		m.statusLen = len(line)
		end := ""
		if final {
			end = "\n"
		}
		fmt.Fprintf(m.Out, "\r%s%s%s", line, pad, end)
	default:
		fmt.Fprintln(m.Out, line)
	}
}

// StatusLine formats a sample as one line; rate is events per second.
func StatusLine(s session.Sample, rate float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] active %d  attempts %d  reconnects %d  events %d (%.0f/s)  errors %d",
		s.Uptime.D().Round(time.Second), s.Active, s.Attempts, s.Reconnects, s.Events, rate, sum(s.Errors))
	if len(s.Errors) > 0 {
		b.WriteString(" (")
		b.WriteString(FormatErrors(s.Errors))
		b.WriteString(")")
	}
	fmt.Fprintf(&b, "  rss %s  heap %s  goroutines %d  fds %d  lag %s",
		Bytes(s.RSS), Bytes(s.HeapAlloc), s.Goroutines, s.FDs, s.TimerLag.D().Round(10*time.Microsecond))
	if s.ServerPID > 0 {
		fmt.Fprintf(&b, "  server rss %s  fds %d", Bytes(s.ServerRSS), s.ServerFDs)
	}
	return b.String()
}

// FormatErrors writes error counts as "ECONNRESET 2, EOF 1", largest first.
func FormatErrors(errs map[string]int64) string {
	classes := make([]string, 0, len(errs))
	for c := range errs {
		classes = append(classes, c)
	}
	sort.Slice(classes, func(i, j int) bool {
		if errs[classes[i]] != errs[classes[j]] {
			return errs[classes[i]] > errs[classes[j]]
		}
		return classes[i] < classes[j]
	})
	parts := make([]string, len(classes))
	for i, c := range classes {
		parts[i] = fmt.Sprintf("%s %d", c, errs[c])
	}
	return strings.Join(parts, ", ")
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// Bytes formats a byte count with binary units: "14.2 MiB".
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
