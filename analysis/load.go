package analysis

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// ErrNoFiles is returned by Load when it is given no session file.
var ErrNoFiles = errors.New("no session file given")

// LoadFiles opens the session files at paths, loads them into one Report
// and closes them.
func LoadFiles(paths ...string) (*Report, error) {
	readers, closeAll, err := openAll(paths)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	return Load(readers...)
}

// openAll opens every path; on failure it closes what it opened.
func openAll(paths []string) ([]*session.Reader, func(), error) {
	var readers []*session.Reader
	closeAll := func() {
		for _, r := range readers {
			r.Close()
		}
	}
	for _, p := range paths {
		r, err := session.OpenCommitted(p)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		readers = append(readers, r)
	}
	return readers, closeAll, nil
}

// Load reads one or more session files into one Report. Files merge: the
// shards of one run add up, and a run's file and its proxies' files are
// joined by the addresses they share. Records are streamed (decodeAll,
// decoding on every core) and reduced as they are read; only the few
// numbers per error and per connection that distributions and clusters
// need are kept, never the records themselves.
func Load(readers ...*session.Reader) (*Report, error) {
	if len(readers) == 0 {
		return nil, ErrNoFiles
	}
	a := newAccumulator()
	// Pass 1: what every error is matched against, from all files, so a
	// client error in one file finds the proxy record in another.
	for _, r := range readers {
		if err := a.readContext(r); err != nil {
			return nil, err
		}
	}
	a.eng = attribution.New(a.in, attribution.Options{})
	// Pass 2: the records that are counted.
	for i, r := range readers {
		if err := a.readCounted(i, r); err != nil {
			return nil, err
		}
	}
	return a.finish(), nil
}

// isBrokenClass reports whether a class means a stream was broken: a
// reset (a RST: ECONNRESET, EPIPE) or a cut (a FIN inside the stream,
// UNEXPECTED_EOF; an HTTP/2 stream reset or GOAWAY). attribution.Seen is
// the one definition.
func isBrokenClass(class string) bool { return attribution.IsBroken(class) }

// durationEdges are the bucket edges (seconds) of age, idle and lifetime
// tables; the last bucket is open.
var durationEdges = []float64{0, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 6 * 3600, 24 * 3600}

// errPoint is what is kept of one error after it was counted.
type errPoint struct {
	at    int64   // unix nanoseconds
	age   float64 // seconds
	idle  float64 // seconds
	attr  int32   // index into accumulator.attrs (the error's origin)
	file  uint16
	class uint16
}

// fileState is what the accumulator knows of one file.
type fileState struct {
	info       FileInfo
	run        session.RunInfo
	hasRun     bool
	summary    session.Summary
	hasSummary bool
	scenario   string
	first      time.Time // earliest record time
	last       time.Time // latest record time
	// connEvents counts events of the file's conn records per scenario.
	connEvents map[string]int64
	conns      int64
	// openStarts are the starts (unix ns) of the attempts still open at the
	// end: they count toward connection hours up to the file's end.
	openStarts []int64
	samples    []sampleRow
}

// start is the file's time zero: the run's start, or its first record.
func (f *fileState) start() time.Time {
	if f.hasRun && !f.run.StartedAt.IsZero() {
		return f.run.StartedAt
	}
	return f.first
}

// end is when the file's run ended, or its last record.
func (f *fileState) end() time.Time {
	if f.hasRun && !f.run.EndedAt.IsZero() {
		return f.run.EndedAt
	}
	if f.hasSummary && f.summary.DurationS > 0 {
		return f.start().Add(time.Duration(f.summary.DurationS * float64(time.Second)))
	}
	return f.last
}

func (f *fileState) see(t time.Time) {
	if t.IsZero() {
		return
	}
	if f.first.IsZero() || t.Before(f.first) {
		f.first = t
	}
	if t.After(f.last) {
		f.last = t
	}
}

// sampleRow is one monitor sample, reduced.
type sampleRow struct {
	at               time.Time
	active, messages int64
	heap, rss        uint64
	goroutines, fds  int
	lag              time.Duration
	uptime           time.Duration
	cpu              time.Duration // user + system CPU of the process since it started; 0: not recorded
	cpuUser, cpuSys  time.Duration
	server           *ResourceReading // nil when the server was not sampled
	serverPID        int
}

type scenarioAcc struct {
	sum       ScenarioSummary
	files     map[int]bool
	firstEvts []float64
}

type msgAcc struct {
	MessageCount
	first, last time.Time
	file        int
}

// accumulator builds a Report from streamed records.
type accumulator struct {
	// in is the evidence of every file; eng the attribution engine built
	// on it after pass 1, which explains each error as pass 2 streams it.
	in    *attribution.Input
	eng   *attribution.Engine
	files []*fileState

	classIdx map[string]uint16
	classes  []string
	attrIdx  map[origin]int32
	attrs    []origin
	keyAttr  map[string]int32 // explanation key → its origin's index

	points   []errPoint
	patterns map[[2]int32]int64 // class, attr → count

	scenarios map[string]*scenarioAcc
	groups    map[string]*GroupStats
	messages  map[string]*msgAcc
	msgOther  int64
	hops      map[string]*HopStats

	lifetimes, events, maxGaps, heartbeats []float64
	endedBy                                map[string]int64
	connMicros                             int64 // summed lifetimes: an integer, so the order of records does not matter
	attempts, reconnects                   int64
	timeScale                              float64
	seen                                   EvidenceSeen
	recorded                               recordedFacts // replay comparisons, unrecorded tunnels
}

// maxDistinctMessages bounds the message table's memory on hostile input.
const maxDistinctMessages = 10000

func newAccumulator() *accumulator {
	return &accumulator{
		in:        &attribution.Input{},
		classIdx:  map[string]uint16{},
		attrIdx:   map[origin]int32{},
		keyAttr:   map[string]int32{},
		patterns:  map[[2]int32]int64{},
		scenarios: map[string]*scenarioAcc{},
		groups:    map[string]*GroupStats{},
		messages:  map[string]*msgAcc{},
		hops:      map[string]*HopStats{},
		endedBy:   map[string]int64{},
		timeScale: 1,
	}
}

// readContext reads a file's run info, summary, topology and the evidence
// records (hop connections, fault events, capture).
func (a *accumulator) readContext(r *session.Reader) error {
	f := &fileState{connEvents: map[string]int64{}}
	f.info = FileInfo{Name: filepath.Base(r.Path()), Path: r.Path(), Records: map[string]int64{}}
	var err error
	if f.hasRun, err = f.meta(r, session.MetaRun, &f.run); err != nil {
		return fmt.Errorf("%s: run info: %w", r.Path(), err)
	}
	if f.hasSummary, err = f.meta(r, session.MetaSummary, &f.summary); err != nil {
		return fmt.Errorf("%s: summary: %w", r.Path(), err)
	}
	f.scenario = f.run.Scenario
	if f.scenario == "" {
		f.scenario = f.summary.Scenario
	}
	f.info.Command, f.info.Scenario, f.info.Shard, f.info.Host = f.run.Command, f.scenario, f.run.Shard, f.run.Host
	f.info.StartedAt = f.run.StartedAt
	f.info.SnapshotAt = r.SnapshotAt()
	f.info.Interrupted, f.info.Dropped = f.summary.Interrupted, f.summary.RecordsDropped
	if s := timeScaleOf(f.run); s != 1 {
		a.timeScale = s
	}
	a.files = append(a.files, f)
	if err := a.readRecorded(r); err != nil {
		return err
	}

	// The attribution engine's evidence: topology, proxies, hop records,
	// fault firings, captures and flows (errors are streamed in pass 2).
	hops, faults, topo := len(a.in.HopConns), len(a.in.Faults), len(a.in.Topology)
	flows, captures := len(a.in.Flows), len(a.in.Captures)
	kevents, kinfos := len(a.in.Kernel), len(a.in.KernelInfo)
	fileIndex, err := a.in.ReadFile(r, false)
	if err != nil {
		return err
	}
	for bucket, u := range a.in.Skipped[fileIndex] {
		f.skip(bucket, u)
	}
	f.info.Records[session.BucketTopology] = int64(len(a.in.Topology) - topo)
	for _, rec := range a.in.HopConns[hops:] {
		f.info.Records[session.BucketHopConns]++
		a.seen.ProxyRecords = true
		a.countHop(&rec.R)
		f.see(rec.R.Opened)
	}
	for _, rec := range a.in.Faults[faults:] {
		f.info.Records[session.BucketFaults]++
		a.seen.FaultEvents = true
		a.hop(rec.R.Proxy, rec.R.Hop).Faults[rec.R.FaultKind]++
		f.see(rec.R.Time)
	}
	for _, rec := range a.in.Captures[captures:] {
		if ci := rec.R; ci.Disabled != "" {
			a.seen.CaptureDisabled = ci.Disabled
		} else {
			a.seen.Capture = true
			a.seen.CapturePackets += ci.Packets
			a.seen.CaptureDrops += ci.KernelDrops
		}
	}
	if n := len(a.in.Flows) - flows; n > 0 {
		f.info.Records[session.BucketFlows] = int64(n)
		a.seen.Capture = true
	}
	for _, rec := range a.in.KernelInfo[kinfos:] {
		if rec.R.Disabled != "" {
			a.seen.KernelDisabled = rec.R.Disabled
		} else {
			a.seen.Kernel = true
			a.seen.KernelEventsLost += rec.R.EventsLost
		}
	}
	if n := len(a.in.Kernel) - kevents; n > 0 {
		f.info.Records[session.BucketKernelEvents] = int64(n)
		a.seen.Kernel = true
	}
	// The resets bucket is a cache of an earlier attribution: counted,
	// never read as evidence.
	if n := r.Count(session.BucketResets); n > 0 {
		f.info.Records[session.BucketResets] = int64(n)
	}
	return nil
}

// meta reads a meta value; one that does not decode is counted as
// unreadable (meta bucket) and read as absent.
func (f *fileState) meta(r *session.Reader, key string, v any) (bool, error) {
	ok, err := r.Meta(key, v)
	if err != nil && !errors.Is(err, session.ErrDamaged) {
		f.skip(session.BucketMeta, session.Unreadable{Records: 1})
		return false, nil
	}
	return ok, err
}

func (a *accumulator) hop(proxy, hop string) *HopStats {
	key := hopName(proxy, hop)
	h := a.hops[key]
	if h == nil {
		h = &HopStats{Proxy: proxy, Hop: hop, Ended: map[string]int64{}, Faults: map[string]int64{}}
		a.hops[key] = h
	}
	return h
}

func (a *accumulator) countHop(hc *session.HopConn) {
	h := a.hop(hc.Proxy, hc.Hop)
	h.Connections++
	if hc.Closed.IsZero() {
		h.Open++
		return
	}
	by, how := "?", strings.ToUpper(hc.Ending)
	switch {
	case hc.ClosedBy == session.ClosedBySelf:
		by = "proxy"
	case hc.ClosedBy == session.ClosedByPeer && hc.Hop == session.HopClient:
		by = "client"
	case hc.ClosedBy == session.ClosedByPeer:
		by = "upstream"
	}
	if how == "" {
		how = "?"
	}
	h.Ended[by+" "+how]++
}

// readCounted streams the file's conns, errors and samples.
func (a *accumulator) readCounted(fileNo int, r *session.Reader) error {
	f := a.files[fileNo]
	decodeConn := decodeConnView
	if !a.seen.ProxyRecords {
		decodeConn = decodeConnViewNoAddrs // nothing to join them with
	}
	skipped, err := decodeAll(r, session.BucketConns, decodeConn, func(c *connView) {
		f.info.Records[session.BucketConns]++
		a.addConn(fileNo, f, c)
	})
	if err != nil {
		return err
	}
	f.skip(session.BucketConns, skipped)
	skipped, err = decodeAll(r, session.BucketErrors, decodeErrorRecord, func(er *session.ErrorRecord) {
		f.info.Records[session.BucketErrors]++
		a.addError(fileNo, f, er)
	})
	if err != nil {
		return err
	}
	f.skip(session.BucketErrors, skipped)
	skipped, err = decodeAll(r, session.BucketSamples, jsonDecode[session.Sample], func(s *session.Sample) {
		f.info.Records[session.BucketSamples]++
		f.see(s.Time)
		f.samples = append(f.samples, sampleRow{
			at: s.Time, active: s.Active, messages: s.Events, heap: s.HeapAlloc, rss: s.RSS,
			goroutines: s.Goroutines, fds: s.FDs, lag: s.TimerLag.D(), server: serverReading(s), serverPID: s.ServerPID,
			uptime: s.Uptime.D(), cpu: (s.CPUUser + s.CPUSystem).D(), cpuUser: s.CPUUser.D(), cpuSys: s.CPUSystem.D(),
		})
	})
	f.skip(session.BucketSamples, skipped)
	return err
}

// skip counts the records of bucket that did not decode.
func (f *fileState) skip(bucket string, u session.Unreadable) {
	if u.Records == 0 {
		return
	}
	if f.info.Unreadable == nil {
		f.info.Unreadable = map[string]int64{}
	}
	f.info.Unreadable[bucket] += u.Records
}

// serverReading takes the server's readings (run --server-pid) out of a
// sample; nil when the server was not sampled. session.Sample carries its
// RSS and fds; threads and TCP sockets by state are not recorded yet, and
// the tables show "-" for them.
func serverReading(s *session.Sample) *ResourceReading {
	if s.ServerPID == 0 && s.ServerRSS == 0 && s.ServerFDs == 0 {
		return nil
	}
	return &ResourceReading{RSS: s.ServerRSS, FDs: s.ServerFDs, Threads: s.ServerThreads, TCP: s.ServerTCP}
}

func (a *accumulator) scenario(name string) *scenarioAcc {
	if name == "" {
		name = "(unnamed)"
	}
	s := a.scenarios[name]
	if s == nil {
		s = &scenarioAcc{sum: ScenarioSummary{Scenario: name, ErrorsBy: map[string]int64{}}, files: map[int]bool{}}
		a.scenarios[name] = s
	}
	return s
}

func (a *accumulator) addConn(fileNo int, f *fileState, c *connView) {
	a.seen.ClientRecords = true
	a.eng.ClientConn(fileNo, &session.ConnRecord{LocalAddr: c.LocalAddr, RemoteAddr: c.RemoteAddr, Start: c.Start, End: c.End})
	f.see(c.Start)
	f.see(c.End)
	name := c.Scenario
	if name == "" {
		name = f.scenario
	}
	s := a.scenario(name)
	s.files[fileNo] = true
	s.sum.Attempts++
	a.attempts++
	f.conns++
	f.connEvents[s.sum.Scenario] += c.Events
	if c.Attempt > 0 {
		s.sum.Reconnects++
		a.reconnects++
	}
	if !c.FirstEvent.IsZero() {
		s.firstEvts = append(s.firstEvts, c.FirstEvent.Sub(c.Start).Seconds())
	}
	a.events = append(a.events, float64(c.Events))
	a.maxGaps = append(a.maxGaps, c.MaxGap.Seconds())
	g := a.group(c.Group)
	g.Attempts++
	g.Events += c.Events
	if c.End.IsZero() {
		s.sum.Active++
		f.openStarts = append(f.openStarts, c.Start.UnixNano())
		a.endedBy["open at the end"]++
		return
	}
	life := c.End.Sub(c.Start)
	a.lifetimes = append(a.lifetimes, life.Seconds())
	a.connMicros += life.Microseconds()
	switch {
	case c.EndClass != "":
		a.endedBy[c.EndClass]++
	case c.ClosedBy == session.ClosedBySelf:
		a.endedBy["closed by the client"]++
	case c.ClosedBy == session.ClosedByPeer:
		a.endedBy["closed by the peer"]++
	default:
		a.endedBy["closed"]++
	}
	if c.Comments >= 2 && life > 0 {
		a.heartbeats = append(a.heartbeats, life.Seconds()/float64(c.Comments))
	}
}

func (a *accumulator) group(name string) *GroupStats {
	if name == "" {
		name = "(none)"
	}
	g := a.groups[name]
	if g == nil {
		g = &GroupStats{Group: name, ByClass: map[string]int64{}}
		a.groups[name] = g
	}
	return g
}

func (a *accumulator) intern(class string) uint16 {
	if i, ok := a.classIdx[class]; ok {
		return i
	}
	if len(a.classes) >= math.MaxUint16-1 && class != errclass.Other {
		// A file with this many classes is not a session file ssestress
		// wrote; keep counting rather than wrap around.
		return a.intern(errclass.Other)
	}
	i := uint16(len(a.classes))
	a.classIdx[class] = i
	a.classes = append(a.classes, class)
	return i
}

func (a *accumulator) attr(at origin) int32 {
	if i, ok := a.attrIdx[at]; ok {
		return i
	}
	i := int32(len(a.attrs))
	a.attrIdx[at] = i
	a.attrs = append(a.attrs, at)
	return i
}

func (a *accumulator) addError(fileNo int, f *fileState, er *session.ErrorRecord) {
	f.see(er.Time)
	class := er.Class
	if class == "" {
		class = errclass.Other
	}
	if er.Source != session.SourceProxy {
		a.seen.ClientRecords = true
	}
	x := a.eng.ExplainShared(fileNo, er)
	ai, ok := a.keyAttr[x.Key()]
	if !ok {
		ai = a.attr(originOf(x))
		a.keyAttr[x.Key()] = ai
	}
	ci := a.intern(class)
	a.patterns[[2]int32{int32(ci), ai}]++
	a.points = append(a.points, errPoint{
		at: er.Time.UnixNano(), age: er.Age.Seconds(), idle: er.Idle.Seconds(),
		attr: ai, file: uint16(fileNo), class: ci,
	})
	name := er.Scenario
	if name == "" {
		name = f.scenario
	}
	s := a.scenario(name)
	s.files[fileNo] = true
	s.sum.Errors++
	s.sum.ErrorsBy[class]++
	g := a.group(er.Group)
	g.Errors++
	g.ByClass[class]++

	key := normalizeMessage(er.Message) + "\x00" + class
	m := a.messages[key]
	if m == nil {
		if len(a.messages) >= maxDistinctMessages {
			a.msgOther++
			return
		}
		m = &msgAcc{MessageCount: MessageCount{Message: normalizeMessage(er.Message), Class: class}, first: er.Time, last: er.Time, file: fileNo}
		a.messages[key] = m
	}
	m.Count++
	if er.Time.Before(m.first) {
		m.first = er.Time
	}
	if er.Time.After(m.last) {
		m.last = er.Time
	}
}

// normalizeMessage replaces port numbers ("127.0.0.1:53412", "[::1]:53412")
// with '*' so the same failure on different connections reads as one
// message.
func normalizeMessage(msg string) string {
	if strings.IndexByte(msg, ':') < 0 {
		return msg
	}
	var b strings.Builder
	b.Grow(len(msg))
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		b.WriteByte(c)
		if c != ':' || i == 0 || !(isDigit(msg[i-1]) || msg[i-1] == ']' || isLetter(msg[i-1])) {
			continue
		}
		j := i + 1
		for j < len(msg) && isDigit(msg[j]) {
			j++
		}
		if n := j - (i + 1); n >= 1 && n <= 5 && (j == len(msg) || !isLetter(msg[j]) && msg[j] != '.' && msg[j] != ':') {
			b.WriteByte('*')
			i = j - 1
		}
	}
	return b.String()
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// timeScaleOf is the time scale a run's faults acted at (1 when none).
func timeScaleOf(run session.RunInfo) float64 {
	if run.TimeScale > 0 {
		return run.TimeScale
	}
	return 1
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// finish turns the accumulated numbers into the Report.
func (a *accumulator) finish() *Report {
	rep := &Report{TimeScale: a.timeScale, Evidence: a.seen, Replay: a.recorded.replay, UnrecordedTunnels: a.recorded.unrecorded}
	// The proxies' client connections no client recorded are explained
	// too (a proxy's file alone), before anything reads the tally.
	a.eng.ExplainProxyHops()
	a.finishFiles(rep)
	a.finishClasses(rep)
	a.finishScenarios(rep)
	a.finishPatterns(rep)
	a.finishBuckets(rep)
	a.finishClusters(rep)
	a.finishTimeline(rep)
	a.finishGroups(rep)
	a.finishMessages(rep)
	a.finishHops(rep)
	a.finishResetChains(rep)
	a.finishConnections(rep)
	a.finishHeartbeat(rep)
	a.finishResources(rep)
	rep.Graphs = a.graphs(rep)
	segs := a.eng.Segments(nil)
	rep.Verdict = a.eng.Verdict(attribution.VerdictContext{RSTSegments: int64(len(segs)), Reasons: attribution.SegmentReasons(segs),
		HopRecords: a.seen.ProxyRecords, CaptureDisabled: a.seen.CaptureDisabled, CaptureDrops: a.seen.CaptureDrops})
	timingHint(rep)
	rep.raw = &rawErrors{classes: a.classes, attrs: a.attrs, points: a.points}
	for _, f := range a.files {
		rep.raw.fileStarts = append(rep.raw.fileStarts, f.start().UnixNano())
	}
	return rep
}

func (a *accumulator) finishFiles(rep *Report) {
	for _, f := range a.files {
		if f.info.StartedAt.IsZero() {
			f.info.StartedAt = f.start()
		}
		if !f.start().IsZero() {
			f.info.DurationS = math.Max(0, f.end().Sub(f.start()).Seconds())
		}
		rep.Files = append(rep.Files, f.info)
	}
}

func (a *accumulator) finishClasses(rep *Report) {
	counts := make([]int64, len(a.classes))
	for k, n := range a.patterns {
		counts[k[0]] += n
	}
	rep.Classes = slices.Clone(a.classes)
	slices.SortStableFunc(rep.Classes, func(x, y string) int {
		cx, cy := counts[a.classIdx[x]], counts[a.classIdx[y]]
		if cx != cy {
			if cx > cy {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	})
}

func (a *accumulator) finishScenarios(rep *Report) {
	// Files without conns contribute their summary's totals.
	for i, f := range a.files {
		if f.conns == 0 && f.hasSummary {
			s := a.scenario(f.scenario)
			s.files[i] = true
			s.sum.Attempts += f.summary.Attempts
			s.sum.Reconnects += f.summary.Reconnects
		}
	}
	for _, name := range sortedKeys(a.scenarios) {
		s := a.scenarios[name]
		var intervals [][2]time.Time
		for i := range s.files {
			f := a.files[i]
			s.sum.Files++
			s.sum.Interrupted = s.sum.Interrupted || f.summary.Interrupted
			activeMax := f.summary.ActiveMax
			var lastMessages int64
			for _, sm := range f.samples {
				activeMax = max(activeMax, sm.active)
				lastMessages = max(lastMessages, sm.messages)
			}
			s.sum.ActiveMax += activeMax
			// A killed run's open conns carry no final event count: the
			// monitor's counter or the summary can be ahead of the conns.
			messages := f.connEvents[name]
			if len(f.connEvents) <= 1 {
				messages = max(messages, lastMessages, f.summary.Events)
			}
			s.sum.Events += messages
			if st, en := f.start(), f.end(); !st.IsZero() && en.After(st) {
				intervals = append(intervals, [2]time.Time{st, en})
			}
		}
		s.sum.DurationS = unionSeconds(intervals)
		if s.sum.DurationS > 0 {
			s.sum.EventsPerS = float64(s.sum.Events) / s.sum.DurationS
		}
		s.sum.FirstEventS = distOf(s.firstEvts)
		rep.Scenarios = append(rep.Scenarios, s.sum)
	}
}

// unionSeconds is the length of the union of time intervals: shards that
// ran side by side count once, runs one after another add up.
func unionSeconds(iv [][2]time.Time) float64 {
	slices.SortFunc(iv, func(x, y [2]time.Time) int { return x[0].Compare(y[0]) })
	var total time.Duration
	var cur [2]time.Time
	for i, v := range iv {
		if i == 0 || v[0].After(cur[1]) {
			if i > 0 {
				total += cur[1].Sub(cur[0])
			}
			cur = v
			continue
		}
		if v[1].After(cur[1]) {
			cur[1] = v[1]
		}
	}
	if len(iv) > 0 {
		total += cur[1].Sub(cur[0])
	}
	return total.Seconds()
}

func (a *accumulator) finishPatterns(rep *Report) {
	total := int64(len(a.points))
	for k, n := range a.patterns {
		at := a.attrs[k[1]]
		rep.Patterns = append(rep.Patterns, ErrorPattern{
			Class: a.classes[k[0]], Hop: at.Hop, Origin: at.Origin, Cause: at.Cause, Via: at.Via, Confidence: at.Confidence,
			Fault: at.Fault, Evidence: at.Evidence, Count: n, Share: float64(n) / float64(total),
		})
	}
	slices.SortFunc(rep.Patterns, func(x, y ErrorPattern) int {
		if x.Count != y.Count {
			if x.Count > y.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Class+x.Hop+x.Origin+x.Cause+x.Via+x.Fault+x.Evidence, y.Class+y.Hop+y.Origin+y.Cause+y.Via+y.Fault+y.Evidence)
	})
}

// bucketLabel names [lo, hi) for people.
func bucketLabel(lo, hi float64) string {
	if hi == 0 {
		return "≥ " + fmtEdge(lo)
	}
	return fmtEdge(lo) + " – " + fmtEdge(hi)
}

func fmtEdge(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 1:
		return strconv.FormatFloat(s*1000, 'f', -1, 64) + " ms"
	case s < 60:
		return strconv.FormatFloat(s, 'f', -1, 64) + " s"
	case s < 3600:
		return strconv.FormatFloat(s/60, 'f', -1, 64) + " min"
	default:
		return strconv.FormatFloat(s/3600, 'f', -1, 64) + " h"
	}
}

// bucketIndex is the index of the durationEdges bucket holding s.
func bucketIndex(s float64) int {
	i, found := slices.BinarySearch(durationEdges, s)
	if found {
		return i
	}
	return max(0, i-1)
}

func newBuckets() []DurationBucket {
	out := make([]DurationBucket, len(durationEdges))
	for i, lo := range durationEdges {
		hi := 0.0
		if i+1 < len(durationEdges) {
			hi = durationEdges[i+1]
		}
		out[i] = DurationBucket{Label: bucketLabel(lo, hi), LoS: lo, HiS: hi, ByClass: map[string]int64{}}
	}
	return out
}

// trimBuckets drops the empty buckets before the first and after the last
// non-empty one; empty ones in between stay, so gaps show.
func trimBuckets(b []DurationBucket) []DurationBucket {
	lo, hi := -1, -1
	for i, x := range b {
		if x.Count > 0 {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if lo < 0 {
		return nil
	}
	return b[lo : hi+1]
}

func (a *accumulator) finishBuckets(rep *Report) {
	age, idle := newBuckets(), newBuckets()
	for _, p := range a.points {
		class := a.classes[p.class]
		i := bucketIndex(p.age)
		age[i].Count++
		age[i].ByClass[class]++
		i = bucketIndex(p.idle)
		idle[i].Count++
		idle[i].ByClass[class]++
	}
	rep.AgeBuckets, rep.IdleBuckets = trimBuckets(age), trimBuckets(idle)
}

// finishClusters finds the fingerprints: per class, clusters of errors at
// the same idle time or connection age, each named by the injected fault
// its members carry, a configured fault timeout, or a known middlebox.
func (a *accumulator) finishClusters(rep *Report) {
	// labels are every cluster with the buckets its members fell in, so
	// each bucket is labelled by the clusters of its errors (an error at
	// 59.99 s idle belongs to a cluster centred at 60.1 s).
	var labels []clusterLabel
	label := func(c Cluster, values []float64) {
		name := c.Match
		if !strings.HasPrefix(name, "every "+c.Class) {
			name = c.Class + " " + name
		}
		l := clusterLabel{dim: c.Dimension, name: name, byBucket: map[int]int64{}}
		for _, v := range values {
			l.byBucket[bucketIndex(v)]++
		}
		labels = append(labels, l)
	}
	byClass := make([][]errPoint, len(a.classes))
	for _, p := range a.points {
		byClass[p.class] = append(byClass[p.class], p)
	}
	for _, class := range rep.Classes {
		pts := byClass[a.classIdx[class]]
		for _, dim := range []string{"idle", "age"} {
			value := func(p errPoint) float64 { return p.idle }
			if dim == "age" {
				value = func(p errPoint) float64 { return p.age }
			}
			slices.SortFunc(pts, func(x, y errPoint) int { return cmpFloat(value(x), value(y)) })
			sorted := make([]float64, len(pts))
			for i, p := range pts {
				sorted[i] = value(p)
			}
			for _, sp := range findClusters(sorted) {
				members := pts[sp.lo:sp.hi]
				if dim == "idle" && atConnect(members) {
					continue // the age cluster says it: these never got to be idle
				}
				c := a.describeCluster(class, dim, sorted[sp.lo:sp.hi], members, len(pts))
				if dim == "age" {
					if idle, ok := a.sameAsIdle(rep.Fingerprints, c); ok {
						// Shown once, as the idle cluster; the age table
						// still points at it.
						c.MatchKind, c.Match = "same", fmt.Sprintf("the errors of the idle cluster at %s (never received anything after connecting)", fmtSeconds(idle.CenterS))
						label(c, sorted[sp.lo:sp.hi])
						continue
					}
				}
				rep.Fingerprints = append(rep.Fingerprints, c)
				label(c, sorted[sp.lo:sp.hi])
			}
		}
		a.thresholds(rep, class, pts, label)
	}
	for i := range rep.AgeBuckets {
		rep.AgeBuckets[i].Fingerprint = bucketFingerprint(labels, "age", rep.AgeBuckets[i])
	}
	for i := range rep.IdleBuckets {
		rep.IdleBuckets[i].Fingerprint = bucketFingerprint(labels, "idle", rep.IdleBuckets[i])
	}
}

// clusterLabel is a cluster's name and how many of its errors fell in each
// bucket of its dimension (by index into durationEdges).
type clusterLabel struct {
	dim, name string
	byBucket  map[int]int64
}

// connectAge is the age below which an error is a connect failure.
const connectAge = 0.1

// atConnect reports whether most members failed while connecting.
func atConnect(members []errPoint) bool {
	n := 0
	for _, m := range members {
		if m.age < connectAge {
			n++
		}
	}
	return n*2 > len(members)
}

// sameAsIdle reports whether an age cluster is the idle cluster of the
// same class seen again: on a stream that never received anything, age and
// idle are one number.
func (a *accumulator) sameAsIdle(found []Cluster, c Cluster) (Cluster, bool) {
	for _, f := range found {
		if f.Class == c.Class && f.Dimension == "idle" && f.Count == c.Count && near(c.CenterS, f.CenterS) {
			return f, true
		}
	}
	return Cluster{}, false
}

func cmpFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func (a *accumulator) describeCluster(class, dim string, values []float64, members []errPoint, classTotal int) Cluster {
	c := Cluster{
		Dimension: dim, Class: class,
		CenterS: QuantileSorted(values, 0.5), LoS: values[0], HiS: values[len(values)-1],
		Count: int64(len(values)), Share: float64(len(values)) / float64(classTotal),
	}
	// The origin most members share.
	counts := map[int32]int{}
	for _, m := range members {
		counts[m.attr]++
	}
	best, bestN := int32(-1), 0
	for ai, n := range counts {
		if n > bestN || n == bestN && ai < best {
			best, bestN = ai, n
		}
	}
	at := a.attrs[best]
	if at.Origin != OriginUnknown {
		c.Hop, c.Origin = at.Hop, at.Origin
	}
	where := fmt.Sprintf("cluster at %s %s", fmtSeconds(c.CenterS), dim)
	a.nameFingerprint(&c, where, at, bestN, len(members))
	if c.MatchKind == "none" && c.CenterS < connectAge {
		if dim == "age" {
			c.Match = where + ": at connect, not a timeout"
		} else {
			c.Match = where + ": while data was flowing, not an idle timeout"
		}
	}
	return c
}

// nameFingerprint names what a fingerprint's value matches, ours first: a
// fault that injected most of its members, our own keepalive (a probe
// that only revealed a connection the peer no longer knew), a duration of
// a fault we configured; only then a known middlebox default. A number of
// ours is never named as a middlebox that shares it.
func (a *accumulator) nameFingerprint(c *Cluster, where string, at origin, n, members int) {
	value := c.CenterS
	if c.Shape == "threshold" {
		value = c.LoS
	}
	num, ok := attribution.NameNumber(a.eng.Numbers(), value)
	switch {
	case at.Fault != "" && n*2 >= members:
		c.MatchKind = "injected"
		c.Match = fmt.Sprintf("%s: matches the injected %s on %s (%d of %d)", where, at.Fault, hopWords(at.Hop), n, members)
	case ok && num.Kind == attribution.NumberKeepalive:
		c.MatchKind = "keepalive"
		c.Match = fmt.Sprintf("%s: matches %s, which only revealed connections the peer no longer knew (state lost during the silence), not a timeout", where, num.Words)
	case ok && num.Kind == attribution.NumberFault:
		c.MatchKind = "fault"
		c.Match = fmt.Sprintf("%s: matches %s", where, num.Words)
	case ok:
		c.MatchKind = "known"
		c.Match = fmt.Sprintf("%s: matches the %s", where, num.Words)
	default:
		c.MatchKind = "none"
		c.Match = where + ", no known middlebox"
	}
}

// thresholdMinCount is the fewest errors a threshold is drawn from: the
// lowest of a handful of values lands on some known number by chance.
const thresholdMinCount = 5

// thresholds finds, per broken class and origin, the idle time no error
// came below when the errors are not one cluster: "every reset after ≥
// 350 s idle" is how a NAT gateway's timeout shows once data or a probe
// follows the silence at any time after it.
func (a *accumulator) thresholds(rep *Report, class string, pts []errPoint, label func(Cluster, []float64)) {
	if !isBrokenClass(class) {
		return
	}
	byOrigin := map[int32][]float64{}
	for _, p := range pts {
		byOrigin[p.attr] = append(byOrigin[p.attr], p.idle)
	}
	for _, ai := range slices.Sorted(maps.Keys(byOrigin)) {
		idle := byOrigin[ai]
		if len(idle) < thresholdMinCount {
			continue
		}
		slices.Sort(idle)
		lo, hi := idle[0], idle[len(idle)-1]
		if lo < 1 || hi <= lo*(1+clusterWidth)+clusterSlack {
			continue // no silence before them, or one cluster (found already)
		}
		covered := false
		for _, c := range rep.Fingerprints {
			if c.Class == class && c.Dimension == "idle" && c.LoS <= lo && c.HiS >= hi {
				covered = true
			}
		}
		if covered {
			continue
		}
		c := Cluster{Shape: "threshold", Dimension: "idle", Class: class, CenterS: QuantileSorted(idle, 0.5), LoS: lo, HiS: hi,
			Count: int64(len(idle)), Share: float64(len(idle)) / float64(len(pts))}
		at := a.attrs[ai]
		if at.Origin != OriginUnknown {
			c.Hop, c.Origin = at.Hop, at.Origin
		}
		a.nameFingerprint(&c, fmt.Sprintf("every %s from %s after ≥ %s idle (up to %s)", class, at.Origin, fmtSeconds(lo), fmtSeconds(hi)), at, len(idle), len(idle))
		if c.MatchKind == "none" && len(idle) < 10 {
			continue // a lower bound of a few errors that names nothing says nothing
		}
		rep.Fingerprints = append(rep.Fingerprints, c)
		label(c, idle)
	}
}

// bucketFingerprint names the clusters the errors of bucket b belong to,
// with how many when the bucket holds errors of several, and how many
// belong to none.
func bucketFingerprint(labels []clusterLabel, dim string, b DurationBucket) string {
	bi := bucketIndex(b.LoS)
	var names []string
	var in []int64
	var covered int64
	for _, l := range labels {
		if n := l.byBucket[bi]; l.dim == dim && n > 0 {
			names = append(names, l.name)
			in = append(in, n)
			covered += n
		}
	}
	rest := b.Count - covered
	switch {
	case b.Count == 0:
		return ""
	case len(names) == 0:
		return "not in a cluster"
	case len(names) == 1 && rest <= 0:
		return names[0]
	}
	for i := range names {
		names[i] += fmt.Sprintf(" (%d)", in[i])
	}
	if rest > 0 {
		names = append(names, fmt.Sprintf("%d not in a cluster", rest))
	}
	return strings.Join(names, "; ")
}

func (a *accumulator) finishTimeline(rep *Report) {
	rep.Timeline = a.timeline(30)
}

// timeline bins the errors by time since their file's start into at most
// maxBins bins.
func (a *accumulator) timeline(maxBins int) Timeline { return a.timelineFrom(maxBins, time.Time{}) }

// timelineFrom bins the errors by time since origin (since their file's
// start when origin is zero) into at most maxBins bins.
func (a *accumulator) timelineFrom(maxBins int, origin time.Time) Timeline {
	zero := func(f *fileState) time.Time {
		if origin.IsZero() {
			return f.start()
		}
		return origin
	}
	var span time.Duration
	for _, f := range a.files {
		if st := f.start(); !st.IsZero() {
			span = max(span, f.end().Sub(zero(f)), f.last.Sub(zero(f)))
		}
	}
	if len(a.points) == 0 || span <= 0 {
		return Timeline{}
	}
	step := niceStep(span, maxBins)
	n := int(span/step) + 1
	bins := make([]TimeBin, n)
	for i := range bins {
		bins[i] = TimeBin{StartS: (time.Duration(i) * step).Seconds(), ByClass: map[string]int64{}}
	}
	starts := make([]int64, len(a.files))
	for i, f := range a.files {
		starts[i] = zero(f).UnixNano()
	}
	for _, p := range a.points {
		i := int(time.Duration(p.at-starts[p.file]) / step)
		i = max(0, min(i, n-1))
		bins[i].Count++
		class := a.classes[p.class]
		bins[i].ByClass[class]++
		if isBrokenClass(class) {
			if bins[i].BrokenByHop == nil {
				bins[i].BrokenByHop = map[string]int64{}
			}
			bins[i].BrokenByHop[a.attrs[p.attr].Hop]++
		}
	}
	return Timeline{BinS: step.Seconds(), Bins: bins}
}

func (a *accumulator) finishGroups(rep *Report) {
	for _, name := range sortedKeys(a.groups) {
		g := *a.groups[name]
		if g.Attempts > 0 {
			g.ErrorsPerAttempt = float64(g.Errors) / float64(g.Attempts)
		}
		rep.Groups = append(rep.Groups, g)
	}
}

// maxMessages is how many distinct messages the report lists.
const maxMessages = 25

func (a *accumulator) finishMessages(rep *Report) {
	all := make([]MessageCount, 0, len(a.messages))
	for _, m := range a.messages {
		st := a.files[m.file].start()
		m.FirstS, m.LastS = m.first.Sub(st).Seconds(), m.last.Sub(st).Seconds()
		all = append(all, m.MessageCount)
	}
	slices.SortFunc(all, func(x, y MessageCount) int {
		if x.Count != y.Count {
			if x.Count > y.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Message+x.Class, y.Message+y.Class)
	})
	if len(all) > maxMessages {
		rep.MessagesOmitted = len(all) - maxMessages
		all = all[:maxMessages]
	}
	if a.msgOther > 0 {
		rep.MessagesOmitted++
	}
	rep.Messages = all
}

func (a *accumulator) finishHops(rep *Report) {
	for _, k := range sortedKeys(a.hops) {
		rep.Hops = append(rep.Hops, *a.hops[k])
	}
}

func (a *accumulator) finishResetChains(rep *Report) {
	for _, g := range a.eng.Tally().Groups() {
		x := g.Example
		o := originOf(x)
		rep.ResetChains = append(rep.ResetChains, ResetChain{
			Chain: generalChain(x.ChainText(), g.IdleMin, g.IdleMax), Sender: o.Origin, Hop: o.Hop, Cause: x.Kind, Seen: x.Seen,
			Confidence: x.Confidence, Injected: x.Kind == attribution.KindInjected, Fault: x.FaultName,
			Forged: x.Kind == attribution.KindForged || x.InNameOf != nil, Idle: idleRange(g.IdleMin, g.IdleMax),
			IdleMinS: g.IdleMin.Seconds(), IdleMaxS: g.IdleMax.Seconds(),
			Count: g.Count, Source: x.Incident.Source,
		})
	}
}

// idleRange writes a group's idle times as the buckets of the idle table.
func idleRange(lo, hi time.Duration) string {
	a, b := bucketLabel(durationEdges[bucketIndex(lo.Seconds())], bucketHi(bucketIndex(lo.Seconds()))),
		bucketLabel(durationEdges[bucketIndex(hi.Seconds())], bucketHi(bucketIndex(hi.Seconds())))
	if a == b {
		return a
	}
	return a + " … " + b
}

func bucketHi(i int) float64 {
	if i+1 < len(durationEdges) {
		return durationEdges[i+1]
	}
	return 0
}

// generalChain writes a chain for its group: the ephemeral ports of
// addresses as '*' (a listener's port, the same for the whole group,
// stays), the client's id as "a client", and durations as the group's
// idle range.
func generalChain(chain string, lo, hi time.Duration) string {
	chain = clientID.ReplaceAllString(chain, "a client")
	chain = durationWords.ReplaceAllString(chain, "after "+idleRange(lo, hi)+" idle")
	return ephemeralPort.ReplaceAllStringFunc(chain, func(m string) string {
		if i := strings.LastIndexByte(m, ':'); i >= 0 {
			if p, err := strconv.Atoi(m[i+1:]); err == nil && p >= 32768 {
				return m[:i+1] + "*"
			}
		}
		return m
	})
}

var (
	clientID      = regexp.MustCompile(`client c[0-9A-Za-z_-]+`)
	durationWords = regexp.MustCompile(`after [0-9.<]+ (ms|s) idle`)
	ephemeralPort = regexp.MustCompile(`[0-9a-fA-F.:\[\]]+:[0-9]{1,5}\b`)
)

func (a *accumulator) finishConnections(rep *Report) {
	cs := ConnStats{Attempts: a.attempts, Reconnects: a.reconnects, EndedBy: a.endedBy}
	micros := a.connMicros
	for _, f := range a.files {
		end := f.end().UnixNano()
		for _, st := range f.openStarts {
			micros += max(0, end-st) / 1000
		}
	}
	hours := float64(micros) / 3.6e9
	cs.ConnHours = hours
	life := newBuckets()
	for _, l := range a.lifetimes {
		i := bucketIndex(l)
		life[i].Count++
	}
	for i := range life {
		life[i].ByClass = nil
	}
	cs.Lifetimes = trimBuckets(life)
	cs.LifetimeS = distOf(a.lifetimes)
	cs.Events = distOf(a.events)
	cs.MaxGapS = distOf(a.maxGaps)
	rep.Connections = cs
}

func (a *accumulator) finishHeartbeat(rep *Report) {
	hb := Heartbeat{Connections: int64(len(a.heartbeats)), MaxGapP99S: rep.Connections.MaxGapS.P99}
	if len(a.heartbeats) > 0 {
		hb.IntervalS = distOf(a.heartbeats).P50
	}
	for _, n := range a.eng.Numbers() {
		if n.Kind == attribution.NumberFault && n.Idle {
			hb.Timeouts = append(hb.Timeouts, HopTimeout{Where: hopWords(n.Where), TimeoutS: n.Seconds, Source: n.Words})
		}
	}
	for _, c := range rep.Fingerprints {
		if c.Dimension == "idle" && isBrokenClass(c.Class) && c.MatchKind != "injected" && c.MatchKind != "fault" && c.MatchKind != "keepalive" {
			where := "the path"
			if c.Hop != "" && c.Hop != HopUnknown {
				where = hopWords(c.Hop)
			}
			hb.Timeouts = append(hb.Timeouts, HopTimeout{Where: where, TimeoutS: c.CenterS, Source: "fingerprint (" + c.Class + " idle cluster)"})
		}
	}
	for _, t := range hb.Timeouts {
		switch {
		case hb.IntervalS > 0 && hb.IntervalS > t.TimeoutS:
			hb.Warnings = append(hb.Warnings, fmt.Sprintf("heartbeat interval %s is longer than the %s idle timeout of %s (%s): idle streams will be cut there",
				fmtSeconds(hb.IntervalS), fmtSeconds(t.TimeoutS), t.Where, t.Source))
		case hb.IntervalS == 0 && a.attempts > 0:
			hb.Warnings = append(hb.Warnings, fmt.Sprintf("no heartbeats seen: a stream silent for longer than the %s idle timeout of %s (%s) is cut there (p99 of the longest gap between events: %s)",
				fmtSeconds(t.TimeoutS), t.Where, t.Source, fmtSeconds(hb.MaxGapP99S)))
		}
	}
	rep.Heartbeat = hb
}

// maxResourceRows is how many rows of the sample series the tables show.
const maxResourceRows = 12

func (a *accumulator) finishResources(rep *Report) {
	for _, f := range a.files {
		if len(f.samples) == 0 {
			rep.Overhead = append(rep.Overhead, Overhead{Process: fmt.Sprintf("%s (%s)", commandName(f), f.info.Name), CPUPercent: -1,
				Note: "no monitor samples in this file: its CPU and timer lag are unknown"})
			continue
		}
		role := "client"
		if strings.HasPrefix(f.info.Command, "proxy") {
			role = "proxy"
		}
		process := fmt.Sprintf("%s (%s)", commandName(f), f.info.Name)
		slices.SortFunc(f.samples, func(x, y sampleRow) int { return x.at.Compare(y.at) })
		res := Resources{Process: process, Role: role, Samples: len(f.samples)}
		srv := Resources{Process: "server (" + f.info.Name + ")", Role: "server"}
		for _, s := range f.samples {
			if s.serverPID != 0 {
				srv.Process = fmt.Sprintf("server pid %d (%s)", s.serverPID, f.info.Name)
				break
			}
		}
		lags := make([]float64, 0, len(f.samples))
		st := f.start()
		for i, s := range f.samples {
			r := ResourceReading{RSS: s.rss, Heap: s.heap, Goroutines: s.goroutines, FDs: s.fds}
			if i == 0 {
				res.First = r
			}
			res.Last = r
			res.Peak = peak(res.Peak, r)
			lags = append(lags, s.lag.Seconds())
			if s.server != nil {
				if srv.Samples == 0 {
					srv.First = *s.server
				}
				srv.Samples++
				srv.Last = *s.server
				srv.Peak = peak(srv.Peak, *s.server)
			}
		}
		for _, i := range thin(len(f.samples), maxResourceRows) {
			s := f.samples[i]
			row := ResourceRow{AtS: s.at.Sub(st).Seconds(), Active: s.active, EventsPerS: messageRate(f.samples, i, st),
				ResourceReading: ResourceReading{RSS: s.rss, Heap: s.heap, Goroutines: s.goroutines, FDs: s.fds},
				TimerLagS:       s.lag.Seconds()}
			res.Rows = append(res.Rows, row)
			if s.server != nil {
				srv.Rows = append(srv.Rows, ResourceRow{AtS: row.AtS, Active: s.active, EventsPerS: row.EventsPerS, ResourceReading: *s.server})
			}
		}
		rep.Resources = append(rep.Resources, res)
		if srv.Samples > 0 {
			a.seen.ServerSamples = true
			rep.Evidence.ServerSamples = true
			rep.Resources = append(rep.Resources, srv)
		}
		o := Overhead{Process: process, Samples: len(f.samples), CPUPercent: -1, TimerLagS: distOf(lags)}
		cpuShare(&o, f.samples)
		switch {
		case o.TimerLagS.P99 >= 0.1:
			o.Note = fmt.Sprintf("timers fired up to %s late (p99): %s was short of CPU and may have been the bottleneck", fmtSeconds(o.TimerLagS.P99), role)
		case o.TimerLagS.Max >= 0.1:
			o.Note = fmt.Sprintf("isolated timer delays up to %s; p99 %s is fine", fmtSeconds(o.TimerLagS.Max), fmtSeconds(o.TimerLagS.P99))
		default:
			o.Note = "timer lag low: the tool kept up"
		}
		if o.CPUPercent >= 0 {
			o.Note += fmt.Sprintf("; CPU used: user %s, system %s", fmtSeconds(o.CPUUserS), fmtSeconds(o.CPUSystemS))
		}
		rep.Overhead = append(rep.Overhead, o)
	}
}

// minCPUSpan is the shortest stretch between two samples that the CPU share
// is measured over; below it the share is taken since the process started.
const minCPUSpan = time.Second

// cpuShare sets the process's CPU share from the CPU times in its samples
// (sorted by time): the CPU used between the first and the last sample that
// carry it, over the time between them, so the process's start-up does not
// count; with a single sample or a short span, the CPU since the start over
// the uptime. Files written before samples carried CPU times leave it at -1
// ("not recorded").
func cpuShare(o *Overhead, samples []sampleRow) {
	first, last := -1, -1
	for i, s := range samples {
		if s.cpu > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return
	}
	a, b := samples[first], samples[last]
	o.CPUUserS, o.CPUSystemS = b.cpuUser.Seconds(), b.cpuSys.Seconds()
	if span := b.at.Sub(a.at); span >= minCPUSpan && b.cpu >= a.cpu {
		o.CPUPercent = 100 * (b.cpu - a.cpu).Seconds() / span.Seconds()
	} else if b.uptime > 0 {
		o.CPUPercent = 100 * b.cpu.Seconds() / b.uptime.Seconds()
	}
}

func commandName(f *fileState) string {
	if f.info.Command != "" {
		return f.info.Command
	}
	return "ssestress"
}

// peak keeps the highest of each reading.
func peak(p, r ResourceReading) ResourceReading {
	p.RSS, p.Heap = max(p.RSS, r.RSS), max(p.Heap, r.Heap)
	p.Goroutines, p.Threads, p.FDs = max(p.Goroutines, r.Goroutines), max(p.Threads, r.Threads), max(p.FDs, r.FDs)
	for state, n := range r.TCP {
		if p.TCP == nil {
			p.TCP = map[string]int64{}
		}
		p.TCP[state] = max(p.TCP[state], n)
	}
	return p
}

// thin picks at most k indices out of n, evenly spaced, first and last
// included.
func thin(n, k int) []int {
	if n <= k {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, k)
	for i := range out {
		out[i] = i * (n - 1) / (k - 1)
	}
	return out
}

// messageRate is the events per second between sample i-1 and i; for the
// first sample, since the process's monitor started (the counter's zero:
// its uptime, or the file's start).
func messageRate(s []sampleRow, i int, start time.Time) float64 {
	if i == 0 {
		dt := s[0].uptime.Seconds()
		if dt <= 0 && !start.IsZero() {
			dt = s[0].at.Sub(start).Seconds()
		}
		if dt <= 0 {
			return 0
		}
		return math.Max(0, float64(s[0].messages)/dt)
	}
	dt := s[i].at.Sub(s[i-1].at).Seconds()
	if dt <= 0 {
		return 0
	}
	return math.Max(0, float64(s[i].messages-s[i-1].messages)/dt)
}

// timingHint adds to a verdict that cannot name a sender what the timing
// alone suggests: a fingerprint of the errors that matches a known
// middlebox default (never one of our own numbers, named as ours).
func timingHint(rep *Report) {
	v := &rep.Verdict
	if v.Cause == nil || v.Cause.Kind != attribution.KindUnknown {
		return
	}
	for _, c := range rep.Fingerprints {
		if c.MatchKind == "known" && isBrokenClass(c.Class) {
			v.Statement += fmt.Sprintf(" Timing alone suggests a middlebox, with low confidence: %d %s in a %s.", c.Count, c.Class, c.Match)
			return
		}
	}
}
