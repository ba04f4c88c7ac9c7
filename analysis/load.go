package analysis

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

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
	a.ev.finish()
	// Pass 2: the records that are counted.
	for i, r := range readers {
		if err := a.readCounted(i, r); err != nil {
			return nil, err
		}
	}
	return a.finish(), nil
}

// isResetClass reports whether a class means a connection or stream was cut
// rather than closed: what the verdict explains. HTTP/2 stream resets and
// GOAWAYs count beside TCP resets.
func isResetClass(class string) bool {
	switch class {
	case errclass.ECONNRESET, errclass.UnexpectedEOF, errclass.EPIPE:
		return true
	}
	return errclass.IsH2Cut(class)
}

// durationEdges are the bucket edges (seconds) of age, idle and lifetime
// tables; the last bucket is open.
var durationEdges = []float64{0, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 6 * 3600, 24 * 3600}

// errPoint is what is kept of one error after it was counted.
type errPoint struct {
	at    int64   // unix nanoseconds
	age   float64 // seconds
	idle  float64 // seconds
	attr  int32   // index into accumulator.attrs
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
	ev    *evidence
	files []*fileState

	classIdx map[string]uint16
	classes  []string
	attrIdx  map[attribution]int32
	attrs    []attribution

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
		ev:        newEvidence(),
		classIdx:  map[string]uint16{},
		attrIdx:   map[attribution]int32{},
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

	skipped, err := session.DecodeEach(r, session.BucketTopology, func(*session.Endpoint) error {
		f.info.Records[session.BucketTopology]++
		return nil
	})
	if err != nil {
		return err
	}
	f.skip(session.BucketTopology, skipped)
	skipped, err = session.DecodeEach(r, session.BucketHopConns, func(h *session.HopConn) error {
		f.info.Records[session.BucketHopConns]++
		a.seen.ProxyRecords = true
		a.ev.addHopConn(h)
		a.countHop(h)
		f.see(h.Opened)
		return nil
	})
	if err != nil {
		return err
	}
	f.skip(session.BucketHopConns, skipped)
	skipped, err = session.DecodeEach(r, session.BucketFaults, func(fe *session.FaultEvent) error {
		f.info.Records[session.BucketFaults]++
		a.seen.FaultEvents = true
		a.ev.addFault(fe)
		h := a.hop(fe.Proxy, fe.Hop)
		h.Faults[fe.FaultKind]++
		f.see(fe.Time)
		return nil
	})
	if err != nil {
		return err
	}
	f.skip(session.BucketFaults, skipped)
	return a.readCapture(r, f)
}

// readCapture reads the capture's description (meta/"capture"), counts
// its flows and indexes the capture analysis's resets.
func (a *accumulator) readCapture(r *session.Reader, f *fileState) error {
	captures, err := r.Captures()
	if err != nil {
		return err
	}
	for _, ci := range captures {
		if ci.Disabled != "" {
			a.seen.CaptureDisabled = ci.Disabled
		} else {
			a.seen.Capture = true
			a.seen.CapturePackets += ci.Packets
			a.seen.CaptureDrops += ci.KernelDrops
		}
	}
	if n := r.Count(session.BucketFlows); n > 0 {
		f.info.Records[session.BucketFlows] = int64(n)
	}
	skipped, err := session.DecodeEach(r, session.BucketResets, func(rs *session.Reset) error {
		f.info.Records[session.BucketResets]++
		if rs.Confidence == ConfidenceHigh {
			a.seen.Capture = true
		}
		a.ev.captured.add(rs)
		f.see(rs.Time)
		return nil
	})
	f.skip(session.BucketResets, skipped)
	return err
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
	skipped, err := decodeAll(r, session.BucketConns, decodeConnView, func(c *connView) {
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
	g.Connections++
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

func (a *accumulator) attr(at attribution) int32 {
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
	var at attribution
	if er.Source == session.SourceProxy {
		at = a.ev.attributeProxy(er, er.Proxy)
	} else {
		a.seen.ClientRecords = true
		at = a.ev.attributeClient(er)
	}
	ci, ai := a.intern(class), a.attr(at)
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
	rep.Verdict = verdict(rep)
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
			Class: a.classes[k[0]], Hop: at.Hop, Origin: at.Origin, Confidence: at.Confidence,
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
		return strings.Compare(x.Class+x.Hop+x.Origin+x.Fault+x.Evidence, y.Class+y.Hop+y.Origin+y.Fault+y.Evidence)
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
	var folded []Cluster // age clusters that are idle clusters seen again
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
						folded = append(folded, c)
						continue
					}
				}
				rep.Fingerprints = append(rep.Fingerprints, c)
			}
		}
	}
	for i := range rep.AgeBuckets {
		rep.AgeBuckets[i].Fingerprint = bucketFingerprint(append(slices.Clip(rep.Fingerprints), folded...), "age", rep.AgeBuckets[i])
	}
	for i := range rep.IdleBuckets {
		rep.IdleBuckets[i].Fingerprint = bucketFingerprint(rep.Fingerprints, "idle", rep.IdleBuckets[i])
	}
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
		CenterS: quantileSorted(values, 0.5), LoS: values[0], HiS: values[len(values)-1],
		Count: int64(len(values)), Share: float64(len(values)) / float64(classTotal),
	}
	// The attribution most members share.
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
	known := knownMatch(c.CenterS, a.timeScale)
	switch {
	case at.Fault != "" && bestN*2 >= len(members):
		c.MatchKind = "injected"
		c.Match = fmt.Sprintf("%s: matches injected %s on %s (%d of %d)", where, at.Fault, hopWords(at.Hop), bestN, len(members))
		if known != "" {
			c.Match += "; it stands for the " + known
		}
	case a.configuredMatch(c.CenterS) != "":
		c.MatchKind = "configured"
		c.Match = where + ": matches " + a.configuredMatch(c.CenterS)
		if known != "" {
			c.Match += "; it stands for the " + known
		}
	case known != "":
		c.MatchKind = "known"
		c.Match = where + ": matches the " + known
	case c.CenterS < connectAge:
		c.MatchKind = "none"
		if dim == "age" {
			c.Match = where + ": at connect, not a timeout"
		} else {
			c.Match = where + ": while data was flowing, not an idle timeout"
		}
	default:
		c.MatchKind = "none"
		c.Match = where + ", no known middlebox"
	}
	return c
}

// configuredMatch names a fault whose configured idle timeout equals center.
func (a *accumulator) configuredMatch(center float64) string {
	for _, t := range sortedTimeouts(a.ev.timeouts) {
		if near(center, t.TimeoutS) {
			return fmt.Sprintf("the %s timeout (%s) configured on %s", t.Source, fmtSeconds(t.TimeoutS), t.Where)
		}
	}
	return ""
}

func sortedTimeouts(m map[HopTimeout]bool) []HopTimeout {
	out := make([]HopTimeout, 0, len(m))
	for t := range m {
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y HopTimeout) int {
		if c := strings.Compare(x.Where, y.Where); c != 0 {
			return c
		}
		if c := cmpFloat(x.TimeoutS, y.TimeoutS); c != 0 {
			return c
		}
		return strings.Compare(x.Source, y.Source)
	})
	return out
}

// bucketFingerprint names the clusters of dim whose centre lies in b.
func bucketFingerprint(cs []Cluster, dim string, b DurationBucket) string {
	var names []string
	for _, c := range cs {
		if c.Dimension == dim && c.CenterS >= b.LoS && (b.HiS == 0 || c.CenterS < b.HiS) {
			names = append(names, c.Class+" "+c.Match)
		}
	}
	if len(names) == 0 {
		if b.Count > 0 {
			return "no match"
		}
		return ""
	}
	return strings.Join(names, "; ")
}

func (a *accumulator) finishTimeline(rep *Report) {
	rep.Timeline = a.timeline(30)
}

// timeline bins the errors by time since their file's start into at most
// maxBins bins.
func (a *accumulator) timeline(maxBins int) Timeline {
	var span time.Duration
	for _, f := range a.files {
		if st := f.start(); !st.IsZero() {
			span = max(span, f.end().Sub(st), f.last.Sub(st))
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
		starts[i] = f.start().UnixNano()
	}
	for _, p := range a.points {
		i := int(time.Duration(p.at-starts[p.file]) / step)
		i = max(0, min(i, n-1))
		bins[i].Count++
		class := a.classes[p.class]
		bins[i].ByClass[class]++
		if isResetClass(class) {
			if bins[i].ResetsByHop == nil {
				bins[i].ResetsByHop = map[string]int64{}
			}
			bins[i].ResetsByHop[a.attrs[p.attr].Hop]++
		}
	}
	return Timeline{BinS: step.Seconds(), Bins: bins}
}

func (a *accumulator) finishGroups(rep *Report) {
	for _, name := range sortedKeys(a.groups) {
		g := *a.groups[name]
		if g.Connections > 0 {
			g.ErrorsPerConn = float64(g.Errors) / float64(g.Connections)
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
	for c, n := range a.ev.captured.chains {
		c.Count = n
		rep.ResetChains = append(rep.ResetChains, c)
	}
	slices.SortFunc(rep.ResetChains, func(x, y ResetChain) int {
		if x.Count != y.Count {
			if x.Count > y.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Chain+x.Sender+x.Hop+x.Confidence, y.Chain+y.Sender+y.Hop+y.Confidence)
	})
}

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
	hb.Timeouts = sortedTimeouts(a.ev.timeouts)
	for _, c := range rep.Fingerprints {
		if c.Dimension == "idle" && isResetClass(c.Class) && c.MatchKind != "injected" && c.MatchKind != "configured" {
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
			row := ResourceRow{AtS: s.at.Sub(st).Seconds(), Active: s.active, EventsPerS: messageRate(f.samples, i),
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

// messageRate is the messages per second between sample i-1 and i.
func messageRate(s []sampleRow, i int) float64 {
	if i == 0 {
		return 0
	}
	dt := s[i].at.Sub(s[i-1].at).Seconds()
	if dt <= 0 {
		return 0
	}
	return math.Max(0, float64(s[i].messages-s[i-1].messages)/dt)
}
