package proxy

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Fault is a fault installed in a proxy: its spec and the behaviour of its
// kind, with durations already shrunk by the time scale. A preset is a
// Fault made of parts, each a Fault of its own kind and hop.
type Fault struct {
	Spec  FaultSpec
	b     behaviour
	after time.Duration // Spec.After, scaled
	parts []*Fault
}

// behaviour is what a kind does, built once from a spec's parameters. Its
// one method attaches the fault to one hop connection and returns the
// per-connection effect, or nil when the kind does not act on connections
// (down, http-status act at accept, dial or request time). What an effect
// can do is told by the optional interfaces it implements: shaper, limiter,
// blocker, guard, closeDelayer, unitFault, unitObserver, stopper.
type behaviour interface {
	attach(a *attachment) any
}

// downer is a behaviour that refuses or resets connections as they open
// (kind down).
type downer interface {
	downAction() string
}

// responder is a behaviour that answers a request with a status instead of
// the upstream's response (kind http-status). A zero timeout answers at
// once; otherwise only when the upstream has not answered within it.
type responder interface {
	respond() (code int, timeout time.Duration)
}

// Effect abilities.
type (
	// shaper schedules the data of a direction: it sets the time each
	// piece may pass and may split pieces. It is a pure function of the
	// pieces' arrival times and its own state.
	shaper interface {
		shape(dir string, now time.Time, ps []piece) []piece
	}
	// limiter lets only so many bytes pass, then acts (reached).
	limiter interface {
		remaining() int64 // bytes still allowed; -1 when not limiting now
		reached()
	}
	// blocker drops the data of its directions while it blocks.
	blocker interface {
		blocks(now time.Time) bool
	}
	// guard checks a connection before data passes: true means the flow is
	// gone and the connection has been reset.
	guard interface {
		forgotten(now, idleSince time.Time) bool
	}
	// closeDelayer postpones the proxy's close of the socket.
	closeDelayer interface {
		closeDelay(now time.Time) time.Duration
	}
	// unitFault acts on an SSE unit (an event, or a comment or other block)
	// before it is forwarded: it may drop, delay or stall it.
	unitFault interface {
		unit(u *unit)
	}
	// unitObserver is told of each unit once it has been forwarded.
	unitObserver interface {
		forwarded(u *unit)
	}
	// stopper releases what an effect holds when its fault is removed.
	stopper interface {
		stop()
	}
)

// piece is data on its way through a delay line: it may pass at at.
type piece struct {
	data  []byte
	at    time.Time
	err   error         // read side: the error that ended reading
	flush chan struct{} // write side: closed when every earlier piece is written
}

// unit is one SSE dispatch unit on its way to the client.
type unit struct {
	data    []byte
	event   bool
	arrival time.Time // when its last byte arrived from the upstream
	at      time.Time // when it may be forwarded
	drop    bool
	stall   bool
	st      *stream // the stream it belongs to (nil in the shapers' unit tests)
}

// newFault builds the Fault of a spec at a time scale.
func newFault(spec FaultSpec, scale float64) (*Fault, error) {
	if spec.Kind == "preset" {
		pr, ok := presets[spec.Preset]
		if !ok {
			return nil, fmt.Errorf("%w: unknown preset %q", ErrBadFault, spec.Preset)
		}
		f := &Fault{Spec: spec}
		for _, text := range pr.faults {
			ps, err := ParseFault(text)
			if err != nil {
				return nil, fmt.Errorf("preset %s: %w", spec.Preset, err)
			}
			ps.Name = spec.Name + "/" + ps.Kind
			ps.Toxicity = spec.Toxicity
			if spec.Match != "" {
				ps.Match = spec.Match
			}
			ps.After += spec.After
			part, err := newFault(ps, scale)
			if err != nil {
				return nil, err
			}
			f.parts = append(f.parts, part)
		}
		return f, nil
	}
	kd, ok := kinds[spec.Kind]
	if !ok {
		return nil, fmt.Errorf("%w: unknown fault kind %q", ErrBadFault, spec.Kind)
	}
	b, err := kd.build(spec, scale)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadFault, spec.Spec, err)
	}
	return &Fault{Spec: spec, b: b, after: scaled(spec.After, scale)}, nil
}

// leaves are the faults that act: the parts of a preset, or the fault.
func (f *Fault) leaves() []*Fault {
	if f.parts != nil {
		return f.parts
	}
	return []*Fault{f}
}

// attachment is one fault attached to one hop connection.
type attachment struct {
	f      *Fault
	h      *hopConn
	dirs   string    // down, up or both
	since  time.Time // when it was attached
	start  time.Time // when it begins to act: since + after
	effect any

	mu      sync.Mutex
	timers  []*time.Timer
	stopped bool
	once    atomic.Bool
}

func (a *attachment) active(now time.Time) bool { return !now.Before(a.start) }

func (a *attachment) actsOn(dir string) bool { return a.dirs == DirBoth || a.dirs == dir }

// at runs fn at t unless the attachment is stopped first. The timer it
// returns may be Reset by fn to run again (one timer per effect, however
// long the connection lives); it is nil when the attachment is stopped.
func (a *attachment) at(t time.Time, fn func()) *time.Timer {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return nil
	}
	timer := time.AfterFunc(time.Until(t), func() {
		if a.isStopped() || a.h.isDead() {
			return
		}
		fn()
	})
	a.timers = append(a.timers, timer)
	return timer
}

func (a *attachment) isStopped() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopped
}

func (a *attachment) stop() {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	a.stopped = true
	for _, t := range a.timers {
		t.Stop()
	}
	a.timers = nil
	a.mu.Unlock()
	if s, ok := a.effect.(stopper); ok {
		s.stop()
	}
}

// fire records that the fault acted (an attachment without a connection,
// as in the shapers' unit tests, records nothing).
func (a *attachment) fire(action, detail string) {
	if a.h == nil {
		return
	}
	a.h.fire(a.f, a.f.Spec.Direction, action, detail)
}

// firstTime is true the first time only: a fault that acts continuously
// (latency, drop-events, ...) records its first action, once per
// connection; hot paths test it before building the detail.
func (a *attachment) firstTime() bool { return !a.once.Load() && a.once.CompareAndSwap(false, true) }

// closeConn closes the connection (rst or fin) from a fault acting inside
// Read or Write: at once, so that nothing else closes it first, and without
// waiting for a delay line (the caller may be the line's own goroutine).
func (a *attachment) closeConn(action string) {
	a.h.closeNow(action)
}

// kind is one entry of the registry: its documentation and constructor.
type kind struct {
	summary     string
	keys        []keyDoc
	directional bool
	defaultDir  string
	hops        []string // hops it may act on (empty: both); the first is the default
	build       func(fs FaultSpec, scale float64) (behaviour, error)
}

// keyDoc documents one key of a kind.
type keyDoc struct{ name, doc string }

func (k *kind) key(name string) *keyDoc {
	for i := range k.keys {
		if k.keys[i].name == name {
			return &k.keys[i]
		}
	}
	return nil
}

func (k *kind) keyNames() []string {
	var names []string
	for _, kd := range k.keys {
		names = append(names, kd.name)
	}
	for _, c := range commonKeys {
		if c == "direction" && !k.directional {
			continue
		}
		names = append(names, c)
	}
	return names
}

func (k *kind) defaultHop() string {
	if len(k.hops) > 0 {
		return k.hops[0]
	}
	return session.HopClient
}

// kinds is the registry of fault kinds, by name.
var kinds = map[string]*kind{
	"latency": {
		summary: "delay the data of a direction", directional: true, defaultDir: DirDown,
		keys:  []keyDoc{{"delay", "added to every piece of data (default 100ms)"}, {"jitter", "± random spread added to delay"}},
		build: buildLatency,
	},
	"bandwidth": {
		summary: "limit the rate of a direction", directional: true, defaultDir: DirDown,
		keys:  []keyDoc{{"rate", "bytes per second, e.g. 10KB (required)"}},
		build: buildBandwidth,
	},
	"slicer": {
		summary: "split the data into small writes", directional: true, defaultDir: DirDown,
		keys: []keyDoc{{"size", "average slice in bytes (default 8)"}, {"variation", "± random bytes per slice"},
			{"delay", "pause between slices"}},
		build: buildSlicer,
	},
	"slow-close": {
		summary: "delay the proxy's close of the socket",
		keys:    []keyDoc{{"delay", "how long the close waits (default 1s)"}},
		build:   buildSlowClose,
	},
	"limit-data": {
		summary: "close (FIN) once bytes have passed", directional: true, defaultDir: DirDown,
		keys:  []keyDoc{{"bytes", "bytes that pass before the close (required)"}},
		build: buildLimitData,
	},
	"down": {
		summary: "refuse or reset connections as they open",
		keys: []keyDoc{{"action", "rst (default on hop client), fin, or refuse (default on hop upstream; " +
			"on hop client the listener closes while the fault is installed)"}},
		build: buildDown,
	},
	"timeout": {
		summary: "stop passing data, close after timeout", directional: true, defaultDir: DirBoth,
		keys:  []keyDoc{{"timeout", "close this long after the data stops; 0 = never, a black hole (default 0)"}, {"action", "fin (default) or rst"}},
		build: buildTimeout,
	},
	"reset": {
		summary: "TCP reset after a time, a number of bytes or a number of SSE events", directional: true, defaultDir: DirDown,
		keys:  []keyDoc{{"bytes", "reset once this many bytes have passed in direction"}, {"events", "reset once this many SSE events have been forwarded"}},
		build: buildReset,
	},
	"idle-timeout": {
		summary: "close when no byte passed for idle, like a load balancer", directional: true, defaultDir: DirBoth,
		keys: []keyDoc{{"idle", "silence that closes (required)"}, {"action", "rst or fin (default fin)"},
			{"scope", "always (default) or between-requests (a keep-alive timeout: only while no request is in flight)"}},
		build: buildIdleTimeout,
	},
	"max-age": {
		summary: "close a connection once it is that old",
		keys:    []keyDoc{{"age", "connection lifetime (required)"}, {"action", "rst or fin (default fin)"}},
		build:   buildMaxAge,
	},
	"nat-drop": {
		summary: "forget the flow after idle; the next packet either way is answered with a reset",
		keys:    []keyDoc{{"idle", "silence after which the flow is forgotten (required)"}},
		build:   buildNATDrop,
	},
	"drop-events": {
		summary: "drop every Nth SSE event",
		keys:    []keyDoc{{"every", "drop events N, 2N, ... (default 2)"}},
		build:   buildDropEvents,
	},
	"delay-events": {
		summary: "delay every SSE event",
		keys:    []keyDoc{{"delay", "added to each event (default 100ms)"}},
		build:   buildDelayEvents,
	},
	"stall": {
		summary: "stop forwarding in the middle of an SSE event",
		keys:    []keyDoc{{"events", "events forwarded before the stall (default 0)"}},
		build:   buildStall,
	},
	"http-status": {
		summary: "answer a status instead of streaming", hops: []string{session.HopClient},
		keys: []keyDoc{{"code", "the status, 400-599 (default 502)"},
			{"timeout", "answer only if the upstream sends no response headers within timeout (0 = at once)"}},
		build: buildHTTPStatus,
	},
	"h2-rst-stream": {
		summary: "reset an HTTP/2 stream (RST_STREAM) after a time or a number of SSE events (HTTP/2 clients only)",
		hops:    []string{session.HopClient},
		keys: []keyDoc{{"code", "the error code, a name (CANCEL, INTERNAL_ERROR, REFUSED_STREAM, ...) or a number (default INTERNAL_ERROR)"},
			{"events", "reset once this many SSE events were forwarded on the stream (without it: after the key after, from the stream's start)"}},
		build: buildH2RSTStream,
	},
	"h2-goaway": {
		summary: "send GOAWAY on an HTTP/2 connection, then close it (HTTP/2 clients only)",
		hops:    []string{session.HopClient},
		keys: []keyDoc{{"code", "the error code, a name (NO_ERROR, PROTOCOL_ERROR, ENHANCE_YOUR_CALM, ...) or a number (default NO_ERROR)"},
			{"grace", "time between the GOAWAY and the close, the streams going on meanwhile (default 0)"}},
		build: buildH2GoAway,
	},
}

// KindNames lists the fault kinds in order.
func KindNames() []string {
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// KindHelp is one line per kind with its keys, for --help.
func KindHelp() string {
	var b strings.Builder
	for _, n := range KindNames() {
		k := kinds[n]
		var keys []string
		for _, kd := range k.keys {
			keys = append(keys, kd.name)
		}
		fmt.Fprintf(&b, "  %-21s %s (%s)\n", n, k.summary, strings.Join(keys, ", "))
	}
	for _, n := range PresetNames() {
		fmt.Fprintf(&b, "  %-21s %s\n", "preset:"+n, presets[n].summary)
	}
	return b.String()
}

// preset bundles the defaults of a real middlebox.
type preset struct {
	summary string
	faults  []string
}

// presets, by name. Their durations shrink with the time scale like any
// other.
var presets = map[string]preset{
	"aws-alb": {"AWS ALB: closes a client connection idle for 60 s (heartbeats keep it open)",
		[]string{"idle-timeout:hop=client,idle=60s,action=fin"}},
	"aws-nat": {"AWS NAT gateway: forgets a flow idle for 350 s, the next packet gets a RST",
		[]string{"nat-drop:hop=client,idle=350s"}},
	"nginx": {"nginx: proxy_read_timeout 60 s, no byte from the upstream for 60 s closes it",
		[]string{"idle-timeout:hop=upstream,direction=down,idle=60s,action=fin"}},
	"cloudflare": {"Cloudflare: 524 when the origin sends no headers for 100 s, and a stream idle for 100 s is closed",
		[]string{"http-status:code=524,timeout=100s", "idle-timeout:hop=upstream,direction=down,idle=100s,action=fin"}},
	"node-keepalive": {"Node.js server: keepAliveTimeout 5 s closes a client connection idle between requests (the keep-alive race)",
		[]string{"idle-timeout:hop=client,idle=5s,action=fin,scope=between-requests"}},
}

// PresetNames lists the presets in order.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ---- latency

type latency struct{ delay, jitter time.Duration }

func buildLatency(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "delay", 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	j, err := paramDuration(fs, "jitter", 0)
	if err != nil {
		return nil, err
	}
	return latency{scaled(d, scale), scaled(j, scale)}, nil
}

func (l latency) attach(a *attachment) any { return &latencyEffect{a: a, l: l} }

type latencyEffect struct {
	a    *attachment
	l    latency
	mu   sync.Mutex
	last [2]time.Time // per direction: pieces never overtake each other
}

func dirIndex(dir string) int {
	if dir == DirUp {
		return 1
	}
	return 0
}

func (e *latencyEffect) shape(dir string, now time.Time, ps []piece) []piece {
	if !e.a.active(now) {
		return ps
	}
	if e.a.firstTime() {
		e.a.fire(session.ActionDelay, "delay "+e.l.delay.String())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i := dirIndex(dir)
	for k := range ps {
		d := e.l.delay
		if e.l.jitter > 0 {
			d += time.Duration(rand.Int64N(2*int64(e.l.jitter)+1)) - e.l.jitter
			d = max(d, 0)
		}
		at := ps[k].at.Add(d)
		if at.Before(e.last[i]) {
			at = e.last[i]
		}
		e.last[i] = at
		ps[k].at = at
	}
	return ps
}

// ---- bandwidth

type bandwidth struct{ rate int64 }

func buildBandwidth(fs FaultSpec, scale float64) (behaviour, error) {
	r, err := paramBytes(fs, "rate")
	if err != nil {
		return nil, err
	}
	if r <= 0 {
		return nil, fmt.Errorf("bandwidth needs rate=BYTES per second (e.g. rate=10KB)")
	}
	return bandwidth{r}, nil
}

func (b bandwidth) attach(a *attachment) any { return &bandwidthEffect{a: a, rate: b.rate} }

type bandwidthEffect struct {
	a    *attachment
	rate int64
	mu   sync.Mutex
	next [2]time.Time // per direction: when the link is free again
}

// shape splits pieces into 50 ms worth of bytes and spaces them at rate.
func (e *bandwidthEffect) shape(dir string, now time.Time, ps []piece) []piece {
	if !e.a.active(now) {
		return ps
	}
	if e.a.firstTime() {
		e.a.fire(session.ActionThrottle, fmt.Sprintf("%d bytes/s", e.rate))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i := dirIndex(dir)
	chunk := int(max(e.rate/20, 1))
	out := make([]piece, 0, len(ps))
	for _, p := range ps {
		for len(p.data) > 0 {
			n := min(chunk, len(p.data))
			at := p.at
			if at.Before(e.next[i]) {
				at = e.next[i]
			}
			out = append(out, piece{data: p.data[:n], at: at})
			e.next[i] = at.Add(time.Duration(int64(n) * int64(time.Second) / e.rate))
			p.data = p.data[n:]
		}
	}
	return out
}

// ---- slicer

type slicer struct {
	size, variation int64
	delay           time.Duration
}

func buildSlicer(fs FaultSpec, scale float64) (behaviour, error) {
	size, err := paramBytes(fs, "size")
	if err != nil {
		return nil, err
	}
	if size < 0 {
		size = 8
	}
	if size == 0 {
		return nil, fmt.Errorf("size must be at least 1 byte")
	}
	v, err := paramBytes(fs, "variation")
	if err != nil {
		return nil, err
	}
	v = max(v, 0)
	if v >= size {
		return nil, fmt.Errorf("variation (%d) must be smaller than size (%d)", v, size)
	}
	d, err := paramDuration(fs, "delay", 0)
	if err != nil {
		return nil, err
	}
	return slicer{size, v, scaled(d, scale)}, nil
}

func (s slicer) attach(a *attachment) any { return &slicerEffect{a: a, s: s} }

type slicerEffect struct {
	a    *attachment
	s    slicer
	mu   sync.Mutex
	last [2]time.Time
}

func (e *slicerEffect) shape(dir string, now time.Time, ps []piece) []piece {
	if !e.a.active(now) {
		return ps
	}
	if e.a.firstTime() {
		e.a.fire(session.ActionSlice, fmt.Sprintf("slices of %d±%d bytes, %s apart", e.s.size, e.s.variation, e.s.delay))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i := dirIndex(dir)
	var out []piece
	for _, p := range ps {
		at := p.at
		if at.Before(e.last[i]) {
			at = e.last[i]
		}
		for first := true; len(p.data) > 0; first = false {
			n := e.s.size
			if e.s.variation > 0 {
				n += rand.Int64N(2*e.s.variation+1) - e.s.variation
			}
			n = min(max(n, 1), int64(len(p.data)))
			if !first {
				at = at.Add(e.s.delay)
			}
			out = append(out, piece{data: p.data[:n], at: at})
			p.data = p.data[n:]
		}
		e.last[i] = at
	}
	return out
}

// ---- slow-close

type slowClose struct{ delay time.Duration }

func buildSlowClose(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "delay", time.Second)
	if err != nil {
		return nil, err
	}
	return slowClose{scaled(d, scale)}, nil
}

func (s slowClose) attach(a *attachment) any { return &slowCloseEffect{a: a, delay: s.delay} }

type slowCloseEffect struct {
	a     *attachment
	delay time.Duration
}

func (e *slowCloseEffect) closeDelay(now time.Time) time.Duration {
	if !e.a.active(now) {
		return 0
	}
	return e.delay
}

// ---- limit-data and reset by bytes

type byteLimit struct {
	bytes  int64
	action string
}

func buildLimitData(fs FaultSpec, scale float64) (behaviour, error) {
	n, err := paramBytes(fs, "bytes")
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("limit-data needs bytes=N")
	}
	return byteLimit{n, ActionFIN}, nil
}

func (b byteLimit) attach(a *attachment) any {
	return &byteLimitEffect{a: a, b: b, base: a.h.bytes(a.dirs)}
}

type byteLimitEffect struct {
	a    *attachment
	b    byteLimit
	base int64 // bytes already passed when the fault attached
	done atomic.Bool
}

func (e *byteLimitEffect) remaining() int64 {
	if e.done.Load() {
		return 0
	}
	if !e.a.active(time.Now()) {
		return -1
	}
	return max(e.base+e.b.bytes-e.a.h.bytes(e.a.dirs), 0)
}

func (e *byteLimitEffect) reached() {
	if !e.done.CompareAndSwap(false, true) {
		return
	}
	e.a.fire(e.b.action, fmt.Sprintf("after %d bytes %s", e.b.bytes, e.a.dirs))
	e.a.closeConn(e.b.action)
}

// ---- down

type down struct{ action string }

func buildDown(fs FaultSpec, scale float64) (behaviour, error) {
	def := ActionRST
	if fs.Hop == session.HopUpstream {
		def = ActionRefuse
	}
	action, err := paramAction(fs, def, ActionRST, ActionFIN, ActionRefuse)
	if err != nil {
		return nil, err
	}
	if action == ActionRefuse && fs.Hop == session.HopClient && (fs.Toxicity != 1 || fs.Match != "" || fs.After != 0) {
		return nil, fmt.Errorf("down:action=refuse on hop client closes the whole listener: toxicity, match and after do not apply")
	}
	return down{action}, nil
}

func (d down) attach(a *attachment) any { return nil }
func (d down) downAction() string       { return d.action }

// ---- timeout

type timeout struct {
	timeout time.Duration
	action  string
}

func buildTimeout(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "timeout", 0)
	if err != nil {
		return nil, err
	}
	action, err := paramAction(fs, ActionFIN, ActionFIN, ActionRST)
	if err != nil {
		return nil, err
	}
	return timeout{scaled(d, scale), action}, nil
}

func (t timeout) attach(a *attachment) any {
	e := &timeoutEffect{a: a, t: t}
	a.at(a.start, func() {
		detail := "data stopped, never closed"
		if t.timeout > 0 {
			detail = "data stopped, close in " + t.timeout.String()
		}
		a.fire(session.ActionBlackhole, detail)
	})
	if t.timeout > 0 {
		a.at(a.start.Add(t.timeout), func() {
			a.fire(t.action, "closed "+t.timeout.String()+" after the data stopped")
			a.closeConn(t.action)
		})
	}
	return e
}

type timeoutEffect struct {
	a *attachment
	t timeout
}

func (e *timeoutEffect) blocks(now time.Time) bool { return e.a.active(now) }

// ---- reset

type reset struct {
	bytes, events int64
}

func buildReset(fs FaultSpec, scale float64) (behaviour, error) {
	b, err := paramBytes(fs, "bytes")
	if err != nil {
		return nil, err
	}
	ev, err := paramInt(fs, "events")
	if err != nil {
		return nil, err
	}
	if b >= 0 && ev >= 0 {
		return nil, fmt.Errorf("give bytes or events, not both")
	}
	return reset{b, ev}, nil
}

func (r reset) attach(a *attachment) any {
	switch {
	case r.bytes >= 0:
		return &byteLimitEffect{a: a, b: byteLimit{r.bytes, ActionRST}, base: a.h.bytes(a.dirs)}
	case r.events >= 0:
		return &resetEventsEffect{a: a, n: r.events}
	}
	a.at(a.start, func() {
		a.fire(ActionRST, "after "+a.f.after.String())
		a.h.reset()
	})
	return struct{}{}
}

// resetEventsEffect resets once n events have been forwarded.
type resetEventsEffect struct {
	a    *attachment
	n    int64
	seen atomic.Int64
	done atomic.Bool
}

func (e *resetEventsEffect) forwarded(u *unit) {
	if !u.event || !e.a.active(time.Now()) || e.done.Load() {
		return
	}
	if e.seen.Add(1) >= e.n && e.done.CompareAndSwap(false, true) {
		e.a.fire(ActionRST, fmt.Sprintf("after %d events", e.n))
		e.a.h.reset()
	}
}

// unit lets a reset after 0 events act before the first event.
func (e *resetEventsEffect) unit(u *unit) {
	if e.n == 0 && e.a.active(time.Now()) && e.done.CompareAndSwap(false, true) {
		e.a.fire(ActionRST, "after 0 events")
		e.a.h.reset()
		u.drop = true
	}
}

// ---- idle-timeout

type idleTimeout struct {
	idle        time.Duration
	action      string
	betweenReqs bool
}

func buildIdleTimeout(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "idle", 0)
	if err != nil {
		return nil, err
	}
	if _, ok := fs.Params["idle"]; !ok || d <= 0 {
		return nil, fmt.Errorf("idle-timeout needs idle=DURATION (e.g. idle=60s)")
	}
	action, err := paramAction(fs, ActionFIN, ActionFIN, ActionRST)
	if err != nil {
		return nil, err
	}
	scope := fs.Params["scope"]
	if scope != "" && scope != "always" && scope != "between-requests" {
		return nil, fmt.Errorf("scope %q must be always or between-requests", scope)
	}
	return idleTimeout{scaled(d, scale), action, scope == "between-requests"}, nil
}

func (t idleTimeout) attach(a *attachment) any {
	e := &idleEffect{a: a, t: t}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.timer = a.at(a.start.Add(t.idle), e.check)
	return e
}

type idleEffect struct {
	a     *attachment
	t     idleTimeout
	mu    sync.Mutex
	timer *time.Timer
}

// rearm runs check again at t.
func (e *idleEffect) rearm(t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.timer != nil {
		e.timer.Reset(time.Until(t))
	}
}

// check runs when the connection may have been idle for long enough; it
// fires or re-arms for the time still missing.
func (e *idleEffect) check() {
	now := time.Now()
	if e.t.betweenReqs && e.a.h.inflight.Load() > 0 {
		e.rearm(now.Add(e.t.idle))
		return
	}
	last := e.a.h.lastActivity(e.a.dirs)
	if last.Before(e.a.start) {
		last = e.a.start
	}
	if e.t.betweenReqs {
		// The response's last bytes may still sit in the server's buffer:
		// the idle time between requests starts when the request ends.
		if end := time.Unix(0, e.a.h.requestEnd.Load()); end.After(last) {
			last = end
		}
	}
	idle := now.Sub(last)
	if idle < e.t.idle {
		e.rearm(last.Add(e.t.idle))
		return
	}
	e.a.fire(e.t.action, fmt.Sprintf("idle %s (idle bound %s)", idle.Round(time.Microsecond), e.t.idle))
	e.a.h.closeWith(e.t.action, "proxy")
}

// ---- max-age

type maxAge struct {
	age    time.Duration
	action string
}

func buildMaxAge(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "age", 0)
	if err != nil {
		return nil, err
	}
	if _, ok := fs.Params["age"]; !ok || d <= 0 {
		return nil, fmt.Errorf("max-age needs age=DURATION (e.g. age=10m)")
	}
	action, err := paramAction(fs, ActionFIN, ActionFIN, ActionRST)
	if err != nil {
		return nil, err
	}
	return maxAge{scaled(d, scale), action}, nil
}

func (m maxAge) attach(a *attachment) any {
	at := a.h.open.Add(m.age)
	if at.Before(a.start) {
		at = a.start
	}
	a.at(at, func() {
		a.fire(m.action, "age "+time.Since(a.h.open).Round(time.Microsecond).String()+" (max "+m.age.String()+")")
		a.h.closeWith(m.action, "proxy")
	})
	return struct{}{}
}

// ---- nat-drop

type natDrop struct{ idle time.Duration }

func buildNATDrop(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "idle", 0)
	if err != nil {
		return nil, err
	}
	if _, ok := fs.Params["idle"]; !ok || d <= 0 {
		return nil, fmt.Errorf("nat-drop needs idle=DURATION (e.g. idle=350s)")
	}
	return natDrop{scaled(d, scale)}, nil
}

func (n natDrop) attach(a *attachment) any { return &natDropEffect{a: a, idle: n.idle} }

type natDropEffect struct {
	a    *attachment
	idle time.Duration
	done atomic.Bool
}

// forgotten is checked with the time a byte last passed before this one:
// after idle of silence the flow is gone and this packet meets a reset.
func (e *natDropEffect) forgotten(now, idleSince time.Time) bool {
	if e.done.Load() {
		return true
	}
	if !e.a.active(now) {
		return false
	}
	if idleSince.Before(e.a.start) {
		idleSince = e.a.start
	}
	silence := now.Sub(idleSince)
	if silence < e.idle || !e.done.CompareAndSwap(false, true) {
		return e.done.Load()
	}
	e.a.fire(ActionRST, fmt.Sprintf("flow forgotten after %s idle (bound %s); next packet answered with a reset",
		silence.Round(time.Microsecond), e.idle))
	e.a.h.reset()
	return true
}

// ---- drop-events

type dropEvents struct{ every int64 }

func buildDropEvents(fs FaultSpec, scale float64) (behaviour, error) {
	n, err := paramInt(fs, "every")
	if err != nil {
		return nil, err
	}
	if n < 0 {
		n = 2
	}
	if n == 0 {
		return nil, fmt.Errorf("every must be at least 1")
	}
	return dropEvents{n}, nil
}

func (d dropEvents) attach(a *attachment) any { return &dropEffect{a: a, every: d.every} }

type dropEffect struct {
	a       *attachment
	every   int64
	seen    atomic.Int64
	dropped atomic.Int64
}

func (e *dropEffect) unit(u *unit) {
	if !u.event || u.drop || !e.a.active(time.Now()) {
		return
	}
	if e.seen.Add(1)%e.every == 0 {
		u.drop = true
		e.dropped.Add(1)
		if e.a.firstTime() {
			e.a.fire(session.ActionDrop, fmt.Sprintf("dropping every %d events", e.every))
		}
	}
}

// ---- delay-events

type delayEvents struct{ delay time.Duration }

func buildDelayEvents(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "delay", 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	return delayEvents{scaled(d, scale)}, nil
}

func (d delayEvents) attach(a *attachment) any { return &delayEventsEffect{a: a, delay: d.delay} }

type delayEventsEffect struct {
	a     *attachment
	delay time.Duration
}

func (e *delayEventsEffect) unit(u *unit) {
	if !u.event || !e.a.active(u.arrival) {
		return
	}
	if e.a.firstTime() {
		e.a.fire(session.ActionDelay, "events delayed by "+e.delay.String())
	}
	if at := u.arrival.Add(e.delay); at.After(u.at) {
		u.at = at
	}
}

// ---- stall

type stall struct{ events int64 }

func buildStall(fs FaultSpec, scale float64) (behaviour, error) {
	n, err := paramInt(fs, "events")
	if err != nil {
		return nil, err
	}
	return stall{max(n, 0)}, nil
}

func (s stall) attach(a *attachment) any {
	return &stallEffect{a: a, events: s.events, release: make(chan struct{})}
}

type stallEffect struct {
	a       *attachment
	events  int64
	seen    atomic.Int64
	fired   atomic.Bool
	release chan struct{} // closed when the fault is removed
	once    sync.Once
}

func (e *stallEffect) unit(u *unit) {
	if !u.event || u.drop || !e.a.active(time.Now()) || e.fired.Load() {
		return
	}
	if e.seen.Load() >= e.events && e.fired.CompareAndSwap(false, true) {
		u.stall = true
		e.a.fire(session.ActionStall, fmt.Sprintf("stalled in the middle of event %d", e.seen.Load()+1))
	}
}

func (e *stallEffect) forwarded(u *unit) {
	if u.event && !e.fired.Load() && e.a.active(time.Now()) {
		e.seen.Add(1)
	}
}

func (e *stallEffect) stop() { e.once.Do(func() { close(e.release) }) }

// stalled is closed when the stall ends (its fault removed).
func (e *stallEffect) stalled() <-chan struct{} { return e.release }

// ---- http-status

type httpStatus struct {
	code    int
	timeout time.Duration
}

func buildHTTPStatus(fs FaultSpec, scale float64) (behaviour, error) {
	code := int64(502)
	if v, ok := fs.Params["code"]; ok {
		var err error
		if code, err = parseStatusCode(v); err != nil {
			return nil, err
		}
	}
	d, err := paramDuration(fs, "timeout", 0)
	if err != nil {
		return nil, err
	}
	return httpStatus{int(code), scaled(d, scale)}, nil
}

func parseStatusCode(v string) (int64, error) {
	var code int64
	if _, err := fmt.Sscanf(v, "%d", &code); err != nil || fmt.Sprint(code) != v || code < 400 || code > 599 {
		return 0, fmt.Errorf("code %q must be a status between 400 and 599", v)
	}
	return code, nil
}

func (s httpStatus) attach(a *attachment) any                   { return nil }
func (s httpStatus) respond() (code int, timeout time.Duration) { return s.code, s.timeout }
