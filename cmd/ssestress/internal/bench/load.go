package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// Paths under comparison in the load and saturation rows.
const (
	pathDirect    = "direct"
	pathRelay     = "relay"
	pathProxy     = "proxy"
	pathLatency0  = "proxy, latency 0"
	pathRecord    = "proxy, recording"
	pathToxiproxy = "Toxiproxy"
)

// refToxiproxyP99 is the reference for Toxiproxy's p99 latency at
// 1,000 streams × 20 events/s on a 2-core machine, used when Toxiproxy
// cannot be measured in the same run.
const refToxiproxyP99 = 10 * time.Millisecond

// usageReader reads what a relay or proxy process used so far.
type usageReader func() (Usage, error)

// hop is a started relay or proxy between the clients and the server.
type hop struct {
	url   string
	usage usageReader // nil for direct
	stop  func()
}

// startPath starts the path named name in front of server and returns
// the URL the clients use.
func (s *suite) startPath(ctx context.Context, name, server string) (*hop, error) {
	if name == pathDirect {
		return &hop{url: server, stop: func() {}}, nil
	}
	if name == pathToxiproxy {
		return s.startToxiproxy(ctx, server)
	}
	var (
		c   *childProc
		err error
	)
	if name == pathRelay {
		u, _ := url.Parse(server)
		c, err = s.startChild(ctx, RoleRelay, "--upstream", u.Host)
	} else {
		out := s.tempPath("ssestress-bench-proxy-*.db") // the session writer refuses an existing file
		args := []string{"--upstream", server, "--out", out}
		switch name {
		case pathLatency0:
			args = append(args, "--fault", "latency:delay=0s")
		case pathRecord:
			args = append(args, "--record")
		}
		c, err = s.startChild(ctx, RoleProxy, args...)
		if err != nil {
			os.Remove(out)
			return nil, err
		}
		stop := func() { c.stop(); os.Remove(out) }
		return &hop{url: c.hello.URL, usage: c.stat, stop: stop}, nil
	}
	if err != nil {
		return nil, err
	}
	return &hop{url: c.hello.URL, usage: c.stat, stop: c.stop}, nil
}

// loadStats are one path's figures for one load, over one round or
// several merged.
type loadStats struct {
	path       string
	events     int64
	elapsed    time.Duration
	perS       float64 // events/s over every round
	p50, p99   time.Duration
	hopCPU     time.Duration // CPU of the relay or proxy process in the window
	hopMallocs uint64
	benchCPU   time.Duration // CPU of this process (server and clients) in the window
	errors     int64
	dropped    uint64          // records the session writer dropped in the window
	committed  uint64          // recorded frames committed to the session file in the window
	measured   bool            // the hop's usage could be read
	lat        []time.Duration // one round's latency samples
	rounds     []roundStat
}

// roundStat is what one round of a path measured.
type roundStat struct {
	p50, p99   time.Duration
	perS       float64
	committedS float64 // recorded frames committed per second
	dropped    uint64
}

// merge adds another round's measurement of the same path. Events, time
// and CPU add up; each round's percentiles and rate are kept apart.
func (l *loadStats) merge(o loadStats) {
	o.finish()
	l.path = o.path
	l.events += o.events
	l.elapsed += o.elapsed
	l.hopCPU += o.hopCPU
	l.hopMallocs += o.hopMallocs
	l.benchCPU += o.benchCPU
	l.errors += o.errors
	l.dropped += o.dropped
	l.committed += o.committed
	l.measured = o.measured && (len(l.rounds) == 0 || l.measured)
	var committedS float64
	if o.elapsed > 0 {
		committedS = float64(o.committed) / o.elapsed.Seconds()
	}
	l.rounds = append(l.rounds, roundStat{p50: o.p50, p99: o.p99, perS: o.perS, committedS: committedS, dropped: o.dropped})
}

// finish computes the rate over every round and the latency percentiles
// as the median of the rounds' own: on shared cores a round can fall on
// another process's burst, and the median is neither the lucky nor the
// unlucky round. A single round's samples give its percentiles.
func (l *loadStats) finish() {
	if l.elapsed > 0 {
		l.perS = float64(l.events) / l.elapsed.Seconds()
	}
	if len(l.lat) > 0 {
		slices.Sort(l.lat)
		l.p50, l.p99 = percentile(l.lat, 50), percentile(l.lat, 99)
		return
	}
	if len(l.rounds) == 0 {
		return
	}
	p50s, p99s := make([]time.Duration, len(l.rounds)), make([]time.Duration, len(l.rounds))
	for i, r := range l.rounds {
		p50s[i], p99s[i] = r.p50, r.p99
	}
	l.p50, l.p99 = median(p50s), median(p99s)
}

// medianPerS is the median of the rounds' rates: the path's rate as
// judged.
func (l loadStats) medianPerS() float64 {
	if len(l.rounds) == 0 {
		return l.perS
	}
	rates := make([]float64, len(l.rounds))
	for i, r := range l.rounds {
		rates[i] = r.perS
	}
	return median(rates)
}

// medianCommittedS is the median of the rounds' committed frames per
// second.
func (l loadStats) medianCommittedS() float64 {
	rates := make([]float64, len(l.rounds))
	for i, r := range l.rounds {
		rates[i] = r.committedS
	}
	return median(rates)
}

// median of values (the mean of the middle two for an even count).
func median[T ~int64 | ~float64](values []T) T {
	v := slices.Clone(values)
	slices.Sort(v)
	n := len(v)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// roundsText lists a figure per round, for the notes.
func (l loadStats) roundsText(f func(roundStat) string) string {
	var parts []string
	for _, r := range l.rounds {
		parts = append(parts, f(r))
	}
	return strings.Join(parts, ", ")
}

func (l loadStats) cpuPerEvent() float64 {
	if l.events == 0 {
		return 0
	}
	return float64(l.hopCPU.Nanoseconds()) / 1000 / float64(l.events)
}

func (l loadStats) allocsPerEvent() float64 {
	if l.events == 0 {
		return 0
	}
	return float64(l.hopMallocs) / float64(l.events)
}

// streamLoad is a set of client-engine streams and what they measured.
type streamLoad struct {
	counters  *clients.Counters
	measuring atomic.Bool
	base      time.Time
	mu        sync.Mutex
	lat       []time.Duration
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// openStreams opens n streams to target (paced at openRate) with the
// client engine. With stamped, each event's latency is taken while
// measuring is on; without, the client engine runs as the load engine does
// (no per-frame callback), for the saturation row.
func openStreams(ctx context.Context, target string, n int, base time.Time, stamped bool) (*streamLoad, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l := &streamLoad{counters: &clients.Counters{}, base: base}
	opts := &clients.Options{Counters: l.counters, UserAgent: "ssestress-bench"}
	if stamped {
		opts.OnFrame = l.frame
	}
	ctx, l.cancel = context.WithCancel(ctx)
	start := time.Now()
	for i := range n {
		s := clients.NewStream(clients.ClientID(i), "", u, opts)
		l.wg.Add(1)
		go func() { defer l.wg.Done(); s.Run(ctx) }()
		if d := time.Until(start.Add(time.Duration(i+1) * time.Second / openRate)); d > 0 {
			time.Sleep(d)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for l.counters.Active.Load() < int64(n) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			active := l.counters.Active.Load()
			l.close()
			return nil, fmt.Errorf("only %d of %d streams opened (%s)", active, n, clients.FormatErrors(l.counters.Errors()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l, nil
}

// frame is the client engine's OnFrame: the latency of a stamped event is
// the time of the read that completed it minus its send time.
func (l *streamLoad) frame(_ *clients.Stream, f *sse.Frame, at time.Time) {
	if f.Kind != sse.KindEvent || !l.measuring.Load() {
		return
	}
	var sent int64
	for _, c := range f.Data {
		if c < '0' || c > '9' {
			break
		}
		sent = sent*10 + int64(c-'0')
	}
	d := at.Sub(l.base) - time.Duration(sent)
	l.mu.Lock()
	l.lat = append(l.lat, d)
	l.mu.Unlock()
}

func (l *streamLoad) close() {
	l.cancel()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
}

// measureWindow measures events delivered, latency and CPU over window
// after warmUp.
func measureWindow(ctx context.Context, l *streamLoad, h *hop, warmUp, window time.Duration) (loadStats, error) {
	var st loadStats
	if !sleepCtx(ctx, warmUp) {
		return st, ctx.Err()
	}
	var u0, u1 Usage
	var err error
	if h.usage != nil {
		if u0, err = h.usage(); err != nil {
			return st, err
		}
	}
	m0, b0, e0, t0 := l.counters.Events.Load(), processCPU(), l.counters.ErrorTotal(), time.Now()
	l.measuring.Store(true)
	ok := sleepCtx(ctx, window)
	l.measuring.Store(false)
	m1, b1, e1, el := l.counters.Events.Load(), processCPU(), l.counters.ErrorTotal(), time.Since(t0)
	if !ok {
		return st, ctx.Err()
	}
	if h.usage != nil {
		if u1, err = h.usage(); err != nil {
			return st, err
		}
		st.measured = true
		st.hopCPU, st.hopMallocs = u1.CPU-u0.CPU, u1.Mallocs-u0.Mallocs
		st.dropped, st.committed = u1.Dropped-u0.Dropped, u1.Frames-u0.Frames
	}
	st.events, st.elapsed, st.benchCPU, st.errors = m1-m0, el, b1-b0, e1-e0
	l.mu.Lock()
	st.lat = l.lat
	l.lat = nil
	l.mu.Unlock()
	st.finish()
	return st, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// percentile of sorted values (nearest rank), 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// runPathLoad measures one path at the fixed load.
func (s *suite) runPathLoad(ctx context.Context, srv *loadServer, path string) (loadStats, error) {
	h, err := s.startPath(ctx, path, srv.URL)
	if err != nil {
		return loadStats{}, err
	}
	defer h.stop()
	l, err := openStreams(ctx, h.url+"/stream?rate="+strconv.Itoa(s.cfg.Rate), s.cfg.LoadStreams, srv.base, true)
	if err != nil {
		return loadStats{}, err
	}
	defer l.close()
	st, err := measureWindow(ctx, l, h, time.Second, s.cfg.Window)
	st.path = path
	return st, err
}

// loadPaths are the paths of the load row, in order.
func (s *suite) loadPaths() []string {
	paths := []string{pathDirect, pathRelay, pathProxy, pathLatency0, pathRecord}
	if s.toxi != "" {
		paths = append(paths, pathToxiproxy)
	}
	return paths
}

// measurePaths measures each path with measure, in rounds: forward
// order, then backward, and so on, each path's rounds merged. Other
// processes' load drifts during a run; alternating the order gives every
// path the same share of it. A path that fails gets one skipped line and
// is left out of the later rounds.
func (s *suite) measurePaths(ctx context.Context, row string, paths []string, measure func(path string) (loadStats, error)) (map[string]loadStats, error) {
	res := map[string]loadStats{}
	failed := map[string]bool{}
	for r := 0; r < s.cfg.Rounds; r++ {
		order := slices.Clone(paths)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			if failed[p] {
				continue
			}
			if p != pathDirect && p != pathToxiproxy && s.cfg.Spawn == nil {
				failed[p] = true
				s.skip(row, p, errNoSpawn.Error())
				continue
			}
			st, err := measure(p)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				failed[p] = true
				s.skip(row, p, oneLine(err.Error()))
				continue
			}
			lat := ""
			if len(st.lat) > 0 {
				lat = fmt.Sprintf(", p50 %v p99 %v", st.p50, st.p99)
			}
			s.logf("%s: %s, round %d: %.0f events/s%s, hop %.2f µs/event, bench %.2f µs/event, errors %d",
				row, p, r+1, st.perS, lat, st.cpuPerEvent(), usPerEvent(st.benchCPU, st.events), st.errors)
			acc := res[p]
			acc.merge(st)
			res[p] = acc
		}
	}
	for p, st := range res {
		if failed[p] {
			delete(res, p)
			continue
		}
		st.finish()
		res[p] = st
	}
	return res, nil
}

// runLoad is row 1: the same fixed load direct, through the relay, the
// proxy, the proxy with a latency fault of 0, the proxy recording, and
// Toxiproxy when installed.
func runLoad(ctx context.Context, s *suite) error {
	srv, err := startLoadServer()
	if err != nil {
		return err
	}
	defer srv.close()
	load := fmt.Sprintf("%d streams × %d events/s", s.cfg.LoadStreams, s.cfg.Rate)
	s.logf("load: %s, %v per path and round, %d rounds", load, s.cfg.Window, s.cfg.Rounds)
	res, err := s.measurePaths(ctx, RowLoad, s.loadPaths(), func(p string) (loadStats, error) { return s.runPathLoad(ctx, srv, p) })
	if err != nil {
		return err
	}
	s.loadResults = res
	s.loadFigures(load, res)
	return nil
}

// loadFigures turns the load row's measurements into lines of the table.
func (s *suite) loadFigures(load string, res map[string]loadStats) {
	direct, haveDirect := res[pathDirect]
	relay, haveRelay := res[pathRelay]
	proxy, haveProxy := res[pathProxy]
	toxi, haveToxi := res[pathToxiproxy]
	expected := float64(s.cfg.LoadStreams * s.cfg.Rate)

	for _, p := range s.loadPaths() {
		st, ok := res[p]
		if !ok {
			continue
		}
		// Events delivered.
		f := Figure{Row: RowLoad, Name: "events/s, " + p, Value: st.perS, Unit: "events/s", Text: fmtCount(st.perS)}
		f.Note = fmt.Sprintf("%s offered (%s), measured over %d × %v after a 1 s warm-up", fmtCount(expected), load, len(st.rounds), s.cfg.Window)
		if st.errors > 0 {
			f.Note += fmt.Sprintf("; %d stream errors", st.errors)
		}
		if st.perS < 0.95*expected {
			f.Note += fmt.Sprintf("; delivered %.0f%% of the offered load: the cores were saturated (see the load average above), so this path's latency is mostly queueing",
				100*st.perS/expected)
		}
		switch {
		case p == pathRecord && haveProxy:
			f.Versus, f.Ratio = "proxy, recording off", st.perS/proxy.perS
			f.Target = "≥ 0.8× recording off"
			f.atLeast(f.Ratio, 0.8, "×")
			f.Note += recordNote(st)
		case p != pathDirect && haveDirect:
			f.Versus, f.Ratio = "direct", st.perS/direct.perS
		}
		s.add(f)

		// Latency.
		f = Figure{Row: RowLoad, Name: "latency p50 / p99, " + p, Value: ms(st.p99), Unit: "ms",
			Text: fmt.Sprintf("%s / %s ms", fmtMS(st.p50), fmtMS(st.p99))}
		if len(st.rounds) > 1 {
			f.Note = "median of the rounds' p50 and p99; p50 / p99 per round: " + st.roundsText(func(r roundStat) string { return fmtMS(r.p50) + " / " + fmtMS(r.p99) }) + " ms"
		}
		switch {
		case p == pathProxy && haveToxi:
			f.Versus, f.Ratio = "Toxiproxy p99 "+fmtMS(toxi.p99)+" ms (same run)", ms(st.p99)/ms(toxi.p99)
			f.Target = "p99 < Toxiproxy's"
			f.below(ms(st.p99), ms(toxi.p99), " ms")
			if haveRelay {
				s.add(f)
				f = Figure{Row: RowLoad, Name: "latency p50, proxy", Value: ms(st.p50), Unit: "ms", Text: fmtMS(st.p50) + " ms",
					Versus: "relay p50 " + fmtMS(relay.p50) + " ms", Ratio: ms(st.p50) / ms(relay.p50), Target: "≤ 1.5× relay",
					Note: f.Note}
				f.atMost(f.Ratio, 1.5, "×")
			}
		case p == pathProxy:
			f.Versus, f.Ratio = "Toxiproxy p99 10 ms (issue's reference)", ms(st.p99)/ms(refToxiproxyP99)
			f.Target = "p99 < Toxiproxy's"
			f.below(ms(st.p99), ms(refToxiproxyP99), " ms")
			f.Note = strings.TrimPrefix(f.Note+"; Toxiproxy not installed, compared with the reference measured on a 2-core machine (install: go install github.com/Shopify/toxiproxy/v2/cmd/server@latest, as toxiproxy-server in PATH, or --toxiproxy PATH)", "; ")
		case p != pathDirect && p != pathRelay && haveRelay:
			f.Versus, f.Ratio = "relay p99 "+fmtMS(relay.p99)+" ms", ms(st.p99)/ms(relay.p99)
		case p == pathRelay && haveDirect:
			f.Versus, f.Ratio = "direct p99 "+fmtMS(direct.p99)+" ms", ms(st.p99)/ms(direct.p99)
		}
		s.add(f)

		// CPU per event.
		if p == pathDirect {
			s.add(Figure{Row: RowLoad, Name: "CPU per event, direct (server + clients)", Value: usPerEvent(st.benchCPU, st.events), Unit: "µs",
				Text: fmtUS(usPerEvent(st.benchCPU, st.events)), Note: "the bench process: server and client engine, for scale"})
			continue
		}
		if !st.measured {
			continue
		}
		f = Figure{Row: RowLoad, Name: "CPU per event, " + p + " process", Value: st.cpuPerEvent(), Unit: "µs", Text: fmtUS(st.cpuPerEvent())}
		switch {
		case p == pathProxy && haveRelay && relay.measured:
			f.Versus, f.Ratio = "relay "+fmtUS(relay.cpuPerEvent()), st.cpuPerEvent()/relay.cpuPerEvent()
			f.Target = "≤ 1.5× relay"
			f.atMost(f.Ratio, 1.5, "×")
		case p != pathRelay && haveProxy && proxy.measured:
			f.Versus, f.Ratio = "proxy "+fmtUS(proxy.cpuPerEvent()), st.cpuPerEvent()/proxy.cpuPerEvent()
		case p == pathRelay:
			f.Note = "the floor any proxy pays (issue's reference on a 2-core machine: 27 µs, Toxiproxy 35 µs)"
		}
		var notes []string
		if f.Note != "" {
			notes = append(notes, f.Note)
		}
		if p == pathToxiproxy {
			notes = append(notes, "from /proc/PID/stat (10 ms ticks)")
		}
		if haveDirect {
			// The whole run's view, as a single-process benchmark sees
			// it: everything this path added to the machine per event.
			whole := usPerEvent(st.benchCPU+st.hopCPU, st.events) - usPerEvent(direct.benchCPU, direct.events)
			notes = append(notes, fmt.Sprintf("bench process + this process, minus the direct run's: %s per event", fmtUS(whole)))
		}
		f.Note = strings.Join(notes, "; ")
		s.add(f)
	}
}

func recordNote(st loadStats) string {
	if st.dropped > 0 {
		return fmt.Sprintf("; %d records dropped by the session writer", st.dropped)
	}
	return ""
}

func usPerEvent(cpu time.Duration, events int64) float64 {
	if events == 0 {
		return 0
	}
	return float64(cpu.Nanoseconds()) / 1000 / float64(events)
}

// runSaturation is the saturation part of row 1: a few streams as fast as
// the path carries them, events/s delivered, proxy vs relay.
func runSaturation(ctx context.Context, s *suite) error {
	srv, err := startLoadServer()
	if err != nil {
		return err
	}
	defer srv.close()
	const streams = 4
	window := s.cfg.Window / 2
	paths := []string{pathDirect, pathRelay, pathProxy, pathRecord}
	if s.toxi != "" {
		paths = append(paths, pathToxiproxy)
	}
	s.logf("saturation: %d streams, %v per path and round, %d rounds", streams, window, s.cfg.Rounds)
	res, err := s.measurePaths(ctx, RowSaturation, paths, func(p string) (loadStats, error) {
		h, err := s.startPath(ctx, p, srv.URL)
		if err != nil {
			return loadStats{}, err
		}
		defer h.stop()
		l, err := openStreams(ctx, h.url+"/fast", streams, srv.base, false)
		if err != nil {
			return loadStats{}, err
		}
		defer l.close()
		return measureWindow(ctx, l, h, time.Second, window)
	})
	if err != nil {
		return err
	}
	s.satResults = res
	defer s.writerCeiling(ctx)
	relay, haveRelay := res[pathRelay]
	proxy, haveProxy := res[pathProxy]
	for _, p := range paths {
		st, ok := res[p]
		if !ok {
			continue
		}
		f := Figure{Row: RowSaturation, Name: "events/s at saturation, " + p, Value: st.medianPerS(), Unit: "events/s", Text: fmtCount(st.medianPerS()),
			Note: fmt.Sprintf("%d streams, the server writing %d events per flush; the median of %d rounds of %v", streams, fastBatch, len(st.rounds), window)}
		if len(st.rounds) > 1 {
			f.Note += " (" + st.roundsText(func(r roundStat) string { return fmtCount(r.perS) }) + ")"
		}
		switch {
		case p == pathProxy && haveRelay:
			f.Versus, f.Ratio = "relay "+fmtCount(relay.medianPerS()), st.medianPerS()/relay.medianPerS()
			f.Target = "≥ 0.9× relay"
			f.atLeast(f.Ratio, 0.9, "×")
		case p == pathRecord && haveProxy:
			f.Versus, f.Ratio = "proxy, recording off", st.medianPerS()/proxy.medianPerS()
			f.Note += "; delivered to the clients while every event is recorded"
			s.add(f)
			// What the issue judges: events committed to the session file
			// per second against the events delivered with recording off,
			// with no record dropped.
			c := st.medianCommittedS()
			f = Figure{Row: RowSaturation, Name: "events committed to the session file per second, proxy recording", Value: c, Unit: "events/s",
				Text: fmtCount(c), Versus: "proxy, recording off " + fmtCount(proxy.medianPerS()) + " delivered", Ratio: c / proxy.medianPerS(),
				Target: "≥ 0.8× recording off, 0 dropped",
				Note: fmt.Sprintf("frames of the recorded blocks committed (bbolt, fsync on) in each round's window, median of %d rounds (%s); records dropped by the session writer: %d in all (%s per round)",
					len(st.rounds), st.roundsText(func(r roundStat) string { return fmtCount(r.committedS) }), st.dropped,
					st.roundsText(func(r roundStat) string { return fmtCount(float64(r.dropped)) }))}
			f.atLeast(f.Ratio, 0.8, "×")
			if st.dropped > 0 && f.Status == Met {
				f.Status, f.Shortfall = Short, fmt.Sprintf("%d records dropped", st.dropped)
			}
		case p != pathDirect && haveRelay && p != pathRelay:
			f.Versus, f.Ratio = "relay "+fmtCount(relay.medianPerS()), st.medianPerS()/relay.medianPerS()
		case p == pathRelay:
			if d, ok := res[pathDirect]; ok {
				f.Versus, f.Ratio = "direct "+fmtCount(d.medianPerS()), st.medianPerS()/d.medianPerS()
			}
		}
		s.add(f)
	}
	return nil
}

// tempPath is a fresh path in the suite's temp dir.
func (s *suite) tempPath(pattern string) string {
	f, err := os.CreateTemp(s.tmp, pattern)
	if err != nil {
		return filepath.Join(s.tmp, fmt.Sprintf("%s-%d", pattern, time.Now().UnixNano()))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return name
}

// writerCeiling measures the highest rate this machine commits recorded
// events: the recorder of four streams fed the saturation row's batches as
// fast as the process goes, into a session file (bbolt, fsync on), for a
// few seconds; what the writer could not take is dropped and counted.
func (s *suite) writerCeiling(ctx context.Context) {
	path := s.tempPath("ssestress-bench-ceiling-*.db")
	defer os.Remove(path)
	w, err := session.Create(path, session.Options{})
	if err != nil {
		s.skip(RowSaturation, "session writer ceiling", oneLine(err.Error()))
		return
	}
	rec := recording.New(w, "bench", recording.Options{})
	var batch []byte
	for i := range fastBatch {
		batch = appendEvent(batch, i+1, 0)
	}
	window := s.cfg.Window
	start := time.Now()
	stop := start.Add(window + time.Second)
	var wg sync.WaitGroup
	var offered atomic.Int64
	for i := range 4 {
		req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/fast"}, Header: http.Header{}, Host: "bench"}
		st := rec.Begin("bench-ceiling-"+strconv.Itoa(i), req, start)
		st.Response(http.StatusOK, http.Header{"Content-Type": {"text/event-stream"}}, start)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				now := time.Now()
				if now.After(stop) {
					break
				}
				st.Write(batch, now)
				offered.Add(fastBatch)
			}
			st.End(session.EndedByProxy, session.EndingFIN, "", time.Now())
		}()
	}
	// Measured after a second's warm-up, over the window.
	sleepCtx(ctx, time.Second)
	f0, d0, o0, t0 := w.CommittedFrames(), w.Dropped(), offered.Load(), time.Now()
	sleepCtx(ctx, window)
	f1, d1, o1, el := w.CommittedFrames(), w.Dropped(), offered.Load(), time.Since(t0)
	wg.Wait()
	w.Close()
	rate := float64(f1-f0) / el.Seconds()
	size := int64(0)
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	s.add(Figure{Row: RowSaturation, Name: "session writer ceiling: recorded events committed per second", Value: rate, Unit: "events/s",
		Text: fmtCount(rate),
		Note: fmt.Sprintf("the highest rate this machine commits: the recorder of 4 streams fed %d-event batches as fast as they go (%s events/s offered), in this process, over %v; %d records dropped past the writer's budget meanwhile; file %s MB",
			fastBatch, fmtCount(float64(o1-o0)/el.Seconds()), window, d1-d0, fmtNum(float64(size)/1e6))})
}
