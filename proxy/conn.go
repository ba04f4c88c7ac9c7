package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/membudget"
	"github.com/ssestress/ssestress/internal/redact"
	"github.com/ssestress/ssestress/internal/session"
)

// errShut is what Read returns once the proxy has begun to close the
// socket.
var errShut = fmt.Errorf("connection closed by the proxy: %w", net.ErrClosed)

// ErrInjected is returned by a hop connection's Read or Write once a fault
// has closed or reset it.
var ErrInjected = fmt.Errorf("connection closed by an injected fault: %w", net.ErrClosed)

// hopConn is the proxy's socket on one hop of one stream: the client's
// connection (wrapped at Accept) or the upstream connection (wrapped at
// dial). It counts bytes and activity each way, sees how the peer ended
// (EOF = FIN, ECONNRESET = RST), and applies the connection-level faults
// attached to it. With no fault attached, Read and Write cost one atomic
// load, the system call and the counters.
type hopConn struct {
	net.Conn
	tcp *net.TCPConn // for SetLinger(0); nil when the conn is not TCP

	p       *Proxy
	hop     string // session.HopClient or session.HopUpstream
	connID  string
	open    time.Time
	local   string
	remote  string
	readDir string // the direction of the data Read returns
	// writeDir is the direction of the data Write sends.
	writeDir string

	bytesUp, bytesDown atomic.Int64
	eventsDown         atomic.Int64
	// lastUp and lastDown are the times (UnixNano) a byte last passed each
	// way: the idle clock of idle-timeout and nat-drop.
	lastUp, lastDown atomic.Int64
	inflight         atomic.Int32 // requests being served (client hop)
	requestEnd       atomic.Int64 // UnixNano when the last request ended (client hop)
	slowDone         atomic.Bool  // a slow close has waited its delay
	slowPending      atomic.Bool  // a delayed Close is scheduled
	// shut is set when the proxy begins to close the socket: what a
	// pending Read returns after that (the peer's answer to the FIN) is
	// not passed on.
	shut     atomic.Bool
	requests atomic.Int32 // requests seen so far (client hop)

	// wire is what the HTTP server reads and writes on the client hop
	// (TLS, HTTP/2 framing); nil on the upstream hop.
	wire *clientWire

	faults atomic.Pointer[connFaults] // nil: no fault attached (fast path)
	dead   chan struct{}              // closed when the socket is closed
	closed chan struct{}              // closed when the close is recorded

	// mem is the hop's share of the memory budget: what its delay lines
	// hold (memory.go).
	mem     *membudget.Holder
	memOnce sync.Once
	// dropCh is closed when the hop is ended past the budget: the delay
	// lines stop waiting and drop what they hold (memory.go).
	dropCh   chan struct{}
	dropOnce sync.Once
	dropMu   sync.Mutex

	// Delay lines, created when a shaping fault first acts on a side.
	wline       atomic.Pointer[writeLine]
	rline       atomic.Pointer[readLine]
	lineMu      sync.Mutex
	readDline   time.Time     // the read deadline asked for (guarded by lineMu)
	noneChanged chan struct{} // closed when a first fault attaches (guarded by lineMu)

	mu        sync.Mutex
	attached  []*attachment
	decided   map[*Fault]bool // faults whose toxicity was drawn for this connection
	fired     []session.FaultFiring
	request   int // upstream hop: the request's number on its client connection
	method    string
	path      string
	status    int
	upErr     string // UpstreamErrorAction
	closedBy  string
	how       string
	class     string
	endAt     time.Time
	closing   bool // the proxy began to close it (or a slow close is pending)
	finalized bool
	// streams are the requests in progress on a client connection: one at
	// a time on HTTP/1.1, many on HTTP/2.
	streams map[*stream]struct{}
}

// Peers of each hop, as recorded in ClosedBy.
func peerOf(hop string) string {
	if hop == session.HopClient {
		return "client"
	}
	return "server"
}

func newHopConn(p *Proxy, c net.Conn, hop, connID string, request int) *hopConn {
	now := time.Now()
	h := &hopConn{
		Conn: c, p: p, hop: hop, connID: connID, open: now, request: request,
		local: c.LocalAddr().String(), remote: c.RemoteAddr().String(),
		dead: make(chan struct{}), closed: make(chan struct{}),
	}
	h.tcp, _ = c.(*net.TCPConn)
	if hop == session.HopClient {
		h.readDir, h.writeDir = DirUp, DirDown
	} else {
		h.readDir, h.writeDir = DirDown, DirUp
	}
	h.lastUp.Store(now.UnixNano())
	h.lastDown.Store(now.UnixNano())
	return h
}

// count adds n bytes that crossed the socket in dir at now.
func (h *hopConn) count(dir string, n int, now time.Time) {
	if dir == DirUp {
		h.bytesUp.Add(int64(n))
		h.lastUp.Store(now.UnixNano())
	} else {
		h.bytesDown.Add(int64(n))
		h.lastDown.Store(now.UnixNano())
	}
}

// bytes is the count in dir ("both" sums the two).
func (h *hopConn) bytes(dir string) int64 {
	switch dir {
	case DirUp:
		return h.bytesUp.Load()
	case DirDown:
		return h.bytesDown.Load()
	}
	return h.bytesUp.Load() + h.bytesDown.Load()
}

// lastActivity is the last time a byte passed in dir ("both": either way).
func (h *hopConn) lastActivity(dir string) time.Time {
	switch dir {
	case DirUp:
		return time.Unix(0, h.lastUp.Load())
	case DirDown:
		return time.Unix(0, h.lastDown.Load())
	}
	return time.Unix(0, max(h.lastUp.Load(), h.lastDown.Load()))
}

func (h *hopConn) isDead() bool {
	select {
	case <-h.dead:
		return true
	default:
		return false
	}
}

// Read returns the data that crossed the socket toward the proxy, after
// the faults of readDir.
func (h *hopConn) Read(b []byte) (int, error) {
	if rl := h.rline.Load(); rl != nil {
		return rl.read(b)
	}
	f := h.faults.Load()
	if f == nil {
		n, err := h.Conn.Read(b)
		if h.shut.Load() {
			return 0, errShut
		}
		if n > 0 {
			h.count(h.readDir, n, time.Now())
		}
		if err != nil {
			h.observe(err)
		}
		return n, err
	}
	if len(f.read.shapers) > 0 {
		return h.startReadLine().read(b)
	}
	return h.readNow(b)
}

// readNow reads from the socket and applies the read side's guards,
// blockers and limiters (not its shapers).
func (h *hopConn) readNow(b []byte) (int, error) {
	for {
		f := h.faults.Load()
		var lim *limitCheck
		if f != nil && len(f.read.limiters) > 0 {
			lim = tightest(f.read.limiters)
			if lim.remaining == 0 {
				lim.l.reached()
				return 0, ErrInjected
			}
			if lim.remaining > 0 && int64(len(b)) > lim.remaining {
				b = b[:lim.remaining]
			}
		}
		idleSince := h.lastActivity(DirBoth)
		n, err := h.Conn.Read(b)
		if h.shut.Load() {
			return 0, errShut
		}
		now := time.Now()
		f = h.faults.Load()
		if n > 0 && f != nil {
			for _, g := range f.read.guards {
				if g.forgotten(now, idleSince) {
					return 0, ErrInjected
				}
			}
		}
		if n > 0 {
			h.count(h.readDir, n, now)
		}
		if err != nil {
			h.observe(err)
		}
		if n > 0 && f != nil && blocked(f.read.blockers, now) {
			if err == nil {
				continue // a black hole: the data is read and dropped
			}
			n = 0
		}
		if lim != nil && lim.remaining > 0 && int64(n) >= lim.remaining {
			lim.l.reached()
		}
		return n, err
	}
}

// Write sends b toward the peer, after the faults of writeDir.
func (h *hopConn) Write(b []byte) (int, error) {
	if wl := h.wline.Load(); wl != nil {
		return wl.write(b)
	}
	f := h.faults.Load()
	if f == nil {
		n, err := h.Conn.Write(b)
		if n > 0 {
			h.count(h.writeDir, n, time.Now())
		}
		if err != nil {
			h.observe(err)
		}
		return n, err
	}
	if len(f.write.shapers) > 0 {
		return h.startWriteLine().write(b)
	}
	return h.writeNow(b)
}

// writeNow writes to the socket, applying the write side's guards,
// blockers and limiters (not its shapers).
func (h *hopConn) writeNow(b []byte) (int, error) {
	f := h.faults.Load()
	now := time.Now()
	var lim *limitCheck
	if f != nil {
		idleSince := h.lastActivity(DirBoth)
		for _, g := range f.write.guards {
			if g.forgotten(now, idleSince) {
				return 0, ErrInjected
			}
		}
		if blocked(f.write.blockers, now) {
			return len(b), nil // a black hole
		}
		if len(f.write.limiters) > 0 {
			lim = tightest(f.write.limiters)
			if lim.remaining == 0 {
				lim.l.reached()
				return 0, ErrInjected
			}
		}
	}
	full := len(b)
	if lim != nil && lim.remaining > 0 && int64(len(b)) > lim.remaining {
		b = b[:lim.remaining]
	}
	n, err := h.Conn.Write(b)
	if n > 0 {
		h.count(h.writeDir, n, time.Now())
	}
	if err != nil {
		h.observe(err)
		return n, err
	}
	if lim != nil && lim.remaining > 0 && int64(n) >= lim.remaining {
		lim.l.reached()
		if n < full {
			return n, ErrInjected
		}
	}
	return n, nil
}

// limitCheck is the limiter closest to its limit.
type limitCheck struct {
	l         limiter
	remaining int64 // -1: no active limit
}

func tightest(ls []limiter) *limitCheck {
	best := &limitCheck{remaining: -1}
	for _, l := range ls {
		r := l.remaining()
		if r >= 0 && (best.remaining < 0 || r < best.remaining) {
			best.l, best.remaining = l, r
		}
	}
	return best
}

func blocked(bs []blocker, now time.Time) bool {
	for _, b := range bs {
		if b.blocks(now) {
			return true
		}
	}
	return false
}

// observe notes how the peer ended the connection, from an error of Read
// or Write on the socket: EOF is a FIN, ECONNRESET (or EPIPE, after a RST)
// a RST. Other errors (deadlines the HTTP code sets, the proxy's own close)
// say nothing about the peer. Only the first end counts, and none once the
// proxy has begun to close the socket itself.
func (h *hopConn) observe(err error) {
	var how string
	switch {
	case errors.Is(err, io.EOF):
		how = session.EndingFIN
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		how = session.EndingRST
	default:
		return
	}
	h.mu.Lock()
	first := h.closedBy == "" && !h.closing
	class := errclass.Classify(err)
	if first {
		h.closedBy, h.how, h.endAt = peerOf(h.hop), how, time.Now()
		if h.class == "" {
			h.class = class
		}
	}
	h.mu.Unlock()
	if first && how == session.EndingRST {
		h.p.countError(h.hop, class)
	}
	if first && h.p.events.has() {
		h.p.events.publish(h.event("peer-close"))
	}
}

// Close closes the socket with a FIN; data a delay line still holds is
// written first. A slow-close fault postpones the first close (this one or
// CloseWrite) by its delay.
func (h *hopConn) Close() error {
	if h.slowPending.Load() {
		return nil // a slow close is under way
	}
	if d, acting := h.slowClose(); d > 0 {
		h.slowPending.Store(true)
		time.AfterFunc(d, func() {
			h.slowDone.Store(true)
			h.closeWith(ActionFIN, "proxy")
		})
		fireSlowClose(acting, d)
		return nil
	}
	return h.closeWith(ActionFIN, "proxy")
}

// CloseWrite sends a FIN (net/http's server does this before closing)
// after the data a delay line holds; a slow close waits its delay first.
func (h *hopConn) CloseWrite() error {
	if d, acting := h.slowClose(); d > 0 {
		fireSlowClose(acting, d)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-h.dead:
			t.Stop()
			return net.ErrClosed
		}
		h.slowDone.Store(true)
	}
	if wl := h.wline.Load(); wl != nil {
		wl.drain(h.p.drainLimit())
	}
	if h.tcp != nil {
		return h.tcp.CloseWrite()
	}
	return nil
}

// slowClose returns the slow-close delay to apply to the first close, once.
func (h *hopConn) slowClose() (time.Duration, []*attachment) {
	f := h.faults.Load()
	if f == nil || h.slowDone.Load() {
		return 0, nil
	}
	d, acting := f.closeDelay(time.Now())
	if d <= 0 {
		return 0, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing || h.finalized {
		return 0, nil
	}
	h.closing = true
	return d, acting
}

func fireSlowClose(acting []*attachment, d time.Duration) {
	for _, a := range acting {
		a.fire(session.ActionDelayClose, "close delayed by "+d.String())
	}
}

// reset closes the socket with a RST: the peer sees ECONNRESET.
func (h *hopConn) reset() { h.closeWith(ActionRST, "proxy") }

// closeWith closes the socket once: action rst (SetLinger(0)) or fin. by
// is recorded as the closer unless the peer ended first.
func (h *hopConn) closeWith(action, by string) error { return h.close(action, by, true) }

// closeNow closes without waiting for a write delay line to drain: for
// faults acting from inside Read or Write (the line's own goroutine).
func (h *hopConn) closeNow(action string) error { return h.close(action, "proxy", false) }

func (h *hopConn) close(action, by string, drain bool) error {
	h.mu.Lock()
	if h.finalized {
		h.mu.Unlock()
		// Another caller is closing it: wait until its record is queued,
		// so that Proxy.Close returns with every record written. (A fault
		// acting inside Read or Write does not wait: the other closer may
		// be waiting for that very write.)
		if drain {
			<-h.closed
		}
		return nil
	}
	h.finalized = true
	h.closing = true
	h.shut.Store(true)
	if h.closedBy == "" {
		h.closedBy, h.endAt = by, time.Now()
		h.how = session.EndingFIN
		if action == ActionRST {
			h.how = session.EndingRST
		}
	}
	h.mu.Unlock()
	if action == ActionRST {
		if h.tcp != nil {
			h.tcp.SetLinger(0)
		}
	} else {
		if wl := h.wline.Load(); wl != nil && drain {
			wl.drain(h.p.drainLimit())
		}
		if h.tcp != nil {
			// The FIN goes out before anything else: closing a socket
			// with unread data makes the kernel send a RST instead.
			h.tcp.CloseWrite()
		}
	}
	err := h.Conn.Close()
	close(h.dead)
	h.memRelease() // what the delay lines held goes with them
	h.detachAll()
	h.put()
	h.p.counts.closed1(h)
	close(h.closed)
	h.p.forget(h)
	if h.p.events.has() {
		h.p.events.publish(h.event("close"))
	}
	return err
}

// Deadlines: with a read delay line the proxy keeps the read deadline
// itself (the pump reads the socket without one).

func (h *hopConn) SetDeadline(t time.Time) error {
	if err := h.SetReadDeadline(t); err != nil {
		return err
	}
	return h.Conn.SetWriteDeadline(t)
}

func (h *hopConn) SetReadDeadline(t time.Time) error {
	h.lineMu.Lock()
	h.readDline = t
	rl := h.rline.Load()
	h.lineMu.Unlock()
	if rl != nil {
		rl.deadlineChanged()
		return nil
	}
	return h.Conn.SetReadDeadline(t)
}

// setRequest notes the request served on this hop.
func (h *hopConn) setRequest(method, path string) {
	h.mu.Lock()
	h.method, h.path = method, path
	h.mu.Unlock()
}

func (h *hopConn) setStatus(code int) {
	h.mu.Lock()
	h.status = code
	h.mu.Unlock()
}

func (h *hopConn) setUpstreamErrorAction(a string) {
	h.mu.Lock()
	h.upErr = a
	h.mu.Unlock()
}

func (h *hopConn) currentPath() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.path
}

// record is the HopConn as it stands.
func (h *hopConn) record() session.HopConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := session.HopConn{
		Proxy: h.p.name, ConnID: h.connID, Hop: h.hop, Request: h.request,
		LocalAddr: h.local, RemoteAddr: h.remote,
		Method: h.method, Path: redact.Text(h.path), Status: h.status,
		Opened: h.open, Closed: h.endAt, ClosedBy: closedByOf(h.closedBy), Ending: h.how, Class: h.class,
		BytesUp: h.bytesUp.Load(), BytesDown: h.bytesDown.Load(), EventsDown: h.eventsDown.Load(),
		OnUpstreamError: h.upErr,
		Faults:          append([]session.FaultFiring(nil), h.fired...),
	}
	if !h.finalized {
		// Still open: the peer's end, if seen, is only provisional.
		rec.Closed, rec.ClosedBy, rec.Ending, rec.Class = time.Time{}, "", "", ""
	} else if idle := h.endAt.Sub(h.lastActivity(DirBoth)); idle > 0 {
		rec.Idle = session.Seconds(idle)
	}
	return rec
}

// closedByOf turns the hop's closer ("proxy", or the peer's role) into the
// schema's point of view: the proxy itself, or the peer.
func closedByOf(by string) string {
	switch by {
	case "":
		return ""
	case "proxy":
		return session.ClosedBySelf
	}
	return session.ClosedByPeer
}

// put writes the HopConn to the session file (open, then again at close).
func (h *hopConn) put() {
	if h.p.session != nil {
		h.p.session.Put(h.record())
	}
}

// fire records a fault that acted on this connection: in the HopConn, as a
// FaultEvent of its own, and on the control API's event stream.
func (h *hopConn) fire(f *Fault, dir, action, detail string) {
	h.fireRequest(f, dir, action, detail, 0)
}

// fireRequest is fire for one request of the connection (0: the current
// one), as the HTTP/2 faults need: many streams share a client connection.
func (h *hopConn) fireRequest(f *Fault, dir, action, detail string, request int) {
	now := time.Now()
	h.mu.Lock()
	h.fired = append(h.fired, session.FaultFiring{FaultName: f.Spec.Name, FaultKind: f.Spec.Kind, Action: action,
		Ending: session.ActionEnding(action), Time: now})
	if request == 0 {
		request = h.request
		if h.hop == session.HopClient {
			request = int(h.requests.Load())
		}
	}
	closed := h.finalized
	h.mu.Unlock()
	if closed {
		// The close was recorded already (a fault that acted just as the
		// connection ended): the record is rewritten with the firing.
		h.put()
	}
	h.p.faultFired(session.FaultEvent{
		Time: now, Proxy: h.p.name, ConnID: h.connID, Request: request, Hop: h.hop,
		FaultName: f.Spec.Name, FaultKind: f.Spec.Kind, Direction: dir, Action: action,
		Ending: session.ActionEnding(action), Detail: detail, LocalAddr: h.local, RemoteAddr: h.remote,
	})
}

// event is a connection event for the control API.
func (h *hopConn) event(typ string) ConnEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return ConnEvent{
		Time: time.Now(), Type: typ, Proxy: h.p.name, ConnID: h.connID, Request: h.request, Hop: h.hop,
		LocalAddr: h.local, RemoteAddr: h.remote, Path: redact.Text(h.path),
		ClosedBy: h.closedBy, How: h.how, Class: h.class,
		BytesUp: h.bytesUp.Load(), BytesDown: h.bytesDown.Load(), EventsDown: h.eventsDown.Load(),
	}
}

// setClass records why the proxy gave up on this hop (no response headers
// in time, an event over the size limit, a response that is not HTTP, a
// failed TLS handshake), unless an error class is already known; a hop already
// closed has its record rewritten. It counts the error once.
func (h *hopConn) setClass(class string) {
	if class == "" {
		return
	}
	h.mu.Lock()
	if h.class != "" && h.class != errclass.EOF { // a clean FIN says less than the failure
		h.mu.Unlock()
		return
	}
	h.class = class
	final := h.finalized
	h.mu.Unlock()
	h.p.countError(h.hop, class)
	if final {
		h.put()
	}
}

// addStream and removeStream keep the requests in progress on a client
// connection.
func (h *hopConn) addStream(st *stream) {
	h.mu.Lock()
	if h.streams == nil {
		h.streams = map[*stream]struct{}{}
	}
	h.streams[st] = struct{}{}
	h.mu.Unlock()
}

func (h *hopConn) removeStream(st *stream) {
	h.mu.Lock()
	delete(h.streams, st)
	h.mu.Unlock()
}

func (h *hopConn) liveStreams() []*stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*stream, 0, len(h.streams))
	for st := range h.streams {
		out = append(out, st)
	}
	return out
}

// streamWatchers are the attached effects told of each new stream.
func (h *hopConn) streamWatchers() []streamWatcher {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []streamWatcher
	for _, a := range h.attached {
		if w, ok := a.effect.(streamWatcher); ok {
			out = append(out, w)
		}
	}
	return out
}

// endState is who ended the hop so far, how, and the class seen.
func (h *hopConn) endState() (by, how, class string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closedBy, h.how, h.class
}

// fireAs records a fault of another hop on this connection's stream (an
// upstream refused before it had a socket).
func (h *hopConn) fireAs(hop string, f *Fault, action, detail string) {
	now := time.Now()
	h.mu.Lock()
	h.fired = append(h.fired, session.FaultFiring{FaultName: f.Spec.Name, FaultKind: f.Spec.Kind, Action: action,
		Ending: session.ActionEnding(action), Time: now})
	h.mu.Unlock()
	h.p.faultFired(session.FaultEvent{
		Time: now, Proxy: h.p.name, ConnID: h.connID, Request: int(h.requests.Load()), Hop: hop,
		FaultName: f.Spec.Name, FaultKind: f.Spec.Kind, Action: action, Ending: session.ActionEnding(action), Detail: detail,
	})
}
