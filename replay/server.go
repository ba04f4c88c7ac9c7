// Package replay plays a recording (internal/recording) back, in both
// directions: Server stands in for the recorded SSE server, sending each
// recorded stream's headers and frames with the recorded gaps and ending;
// Plan turns the recorded client population into a list of connection
// specs (when to open, what to ask for, how long to hold) that the command
// line drives with the load client engine at any scale.
//
// Data enters as a *recording.Recording loaded from a session file; the
// Server writes only to its clients, and Plan returns plain values.
package replay

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

// DefaultListen is where replay serve listens when no address is given.
const DefaultListen = "127.0.0.1:8091"

// HeaderStream names, in every replayed response, the recorded stream it
// replays ("<proxy>/<conn id>"), so a client can tell which one it got.
const HeaderStream = "X-Ssestress-Replay"

// HeaderRun names, in a request, the replay run its client belongs to
// (replay run sends it): the event ids a server delivered count for the
// clients of that run only, so that the runs of a --repeat series against
// one replay server each start where the recording started.
const HeaderRun = "X-Ssestress-Replay-Run"

// Config configures a Server. The zero value replays at the recorded speed,
// once, with the recorded endings.
type Config struct {
	// Speed divides every recorded gap (2 = twice as fast); zero means 1.
	Speed float64
	// Loop starts a stream over after its last frame instead of ending it,
	// with event ids kept increasing (numeric ids are shifted by the
	// recording's id span on each pass; other ids get "#<pass>"). A looped
	// stream never reaches its recorded ending.
	Loop bool
	// NoEndings keeps every stream open after its last frame until the
	// client leaves, instead of reproducing the recorded ending.
	NoEndings bool
}

// Server replays a recording as an SSE server. It is an http.Handler.
//
// A request is matched to a recorded stream with the same path: the one its
// HeaderStream request header names (replay run sends it, so that each
// replayed client gets the recorded stream it replays); else, for a
// Last-Event-ID this server delivered, the stream that delivered it; else
// those with the same symbol group first, then those whose group shares
// the most symbols with the request's; among equals, round-robin. The
// recorded status and headers are sent after the recorded response delay,
// then every frame at its recorded offset divided by Speed, scheduled
// against the stream's start so that gaps never accumulate error.
//
// Positions are the recording's: a Last-Event-ID resumes after the event
// that carried it only when this server delivered that id in this replay
// (a client reconnecting inside the replay): to a client of the same replay
// run (HeaderRun), or, for clients that name no run, to any of them. Any
// other id, such as one a replaying client copied from the recorded
// request headers, starts the stream where the recorded stream started,
// as the recorded server did.
//
// After the last frame the recorded ending (EndingOf) is reproduced at its
// recorded time: a clean end (the response ends), a reset (SetLinger(0) and
// Close on the hijacked connection: the client sees ECONNRESET) or a cut
// (the chunked body is aborted: UNEXPECTED_EOF). A stream the client ended,
// or still open when the recording stopped, is held open after its last
// frame until the client leaves.
type Server struct {
	cfg    Config
	byPath map[string][]*track
	byName map[string]*track

	mu sync.Mutex
	rr map[string]int // round-robin position per (path, group) asked for
	// delivered is, per replay run and track, the position (pass × frames
	// + index) of the furthest frame sent, -1 before any: the ids up to it
	// are the ones the run's clients can have got from this server.
	delivered map[delivery]*atomic.Int64

	served atomic.Int64
	active atomic.Int64
	frames atomic.Int64
}

// NewServer prepares rec for replay.
func NewServer(rec *recording.Recording, cfg Config) (*Server, error) {
	if cfg.Speed <= 0 {
		cfg.Speed = 1
	}
	s := &Server{cfg: cfg, byPath: map[string][]*track{}, byName: map[string]*track{}, rr: map[string]int{}, delivered: map[delivery]*atomic.Int64{}}
	for _, st := range rec.Streams {
		if st.Status == 0 {
			continue // no response recorded (the recording stopped first)
		}
		t := newTrack(st)
		s.byPath[st.Path] = append(s.byPath[st.Path], t)
		s.byName[st.Name()] = t
	}
	if len(s.byPath) == 0 {
		return nil, ErrNoStreams
	}
	return s, nil
}

// Stats are a Server's counters.
type Stats struct{ Served, Active, Frames int64 }

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{Served: s.served.Load(), Active: s.active.Load(), Frames: s.frames.Load()}
}

// track is one replayable stream with what replay needs precomputed.
type track struct {
	*recording.Stored
	symbols map[string]bool
	// numeric is set when every event id is a decimal number: ids of
	// later passes are then shifted by span.
	numeric      bool
	minID, maxID uint64
	span         uint64
	period       time.Duration // one pass of a looped stream
}

// delivery is a replay run's (HeaderRun, "" for clients naming none) use
// of a track.
type delivery struct {
	run string
	t   *track
}

func newTrack(st *recording.Stored) *track {
	t := &track{Stored: st, symbols: map[string]bool{}}
	for _, sym := range strings.Split(st.Group, ",") {
		if sym != "" {
			t.symbols[sym] = true
		}
	}
	first := true
	for _, e := range st.Events {
		if e.Kind != session.RecKindEvent || e.ID == "" {
			continue
		}
		v, err := strconv.ParseUint(e.ID, 10, 64)
		if err != nil || strconv.FormatUint(v, 10) != e.ID {
			t.numeric = false
			first = false
			break
		}
		if first {
			t.numeric, t.minID, t.maxID, first = true, v, v, false
		}
		t.minID, t.maxID = min(t.minID, v), max(t.maxID, v)
	}
	if t.numeric {
		t.span = t.maxID - t.minID + 1
	}
	if n := len(st.Events); n > 0 {
		firstOff, lastOff := st.Events[0].Offset.D(), st.Events[n-1].Offset.D()
		gap := time.Second
		if n > 1 && lastOff > firstOff {
			gap = (lastOff - firstOff) / time.Duration(n-1)
		}
		t.period = lastOff - firstOff + max(gap, time.Millisecond)
	}
	return t
}

// score is how well the track matches the symbols asked for: 2 for the
// same group, else the share of symbols in common (Jaccard index, 0..1).
func (t *track) score(group string, asked map[string]bool) float64 {
	if t.Group == group {
		return 2
	}
	common := 0
	for sym := range asked {
		if t.symbols[sym] {
			common++
		}
	}
	union := len(asked) + len(t.symbols) - common
	if union == 0 {
		return 1
	}
	return float64(common) / float64(union)
}

// pick chooses the recorded stream for a request, or nil: the one named
// (HeaderStream), else the one that delivered lastID, else the best match
// of the symbols asked for (see Server).
func (s *Server) pick(path, rawQuery, named, run, lastID string) *track {
	if t := s.byName[named]; t != nil && t.Path == path {
		return t
	}
	candidates := s.byPath[path]
	if len(candidates) == 0 {
		return nil
	}
	group := recording.Group(rawQuery)
	asked := map[string]bool{}
	for _, sym := range strings.Split(group, ",") {
		if sym != "" {
			asked[sym] = true
		}
	}
	best := -1.0
	var ties []*track
	for _, t := range candidates {
		switch sc := t.score(group, asked); {
		case sc > best:
			best, ties = sc, append(ties[:0], t)
		case sc == best:
			ties = append(ties, t)
		}
	}
	if lastID != "" {
		// A client of this replay reconnecting resumes where it was.
		for _, t := range ties {
			if s.wasDelivered(run, t, lastID) {
				return t
			}
		}
	}
	key := path + "?" + group
	s.mu.Lock()
	i := s.rr[key]
	s.rr[key] = i + 1
	s.mu.Unlock()
	return ties[i%len(ties)]
}

// position is the delivery position of frame i in pass k.
func (t *track) position(k, i int) int64 { return int64(k)*int64(len(t.Events)) + int64(i) }

// wasDelivered reports whether this server sent the event id lastID on
// track t to a client of the replay run (in any of its streams).
func (s *Server) wasDelivered(run string, t *track, lastID string) bool {
	k, next, ok := t.resume(lastID)
	if !ok || next == 0 || t.loopID(t.Events[next-1].ID, k) != lastID {
		return false
	}
	return t.position(k, next-1) <= s.deliveredOf(run, t).Load()
}

// deliveredOf is the delivery position of track t to the replay run.
func (s *Server) deliveredOf(run string, t *track) *atomic.Int64 {
	key := delivery{run, t}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.delivered[key]
	if d == nil {
		d = new(atomic.Int64)
		d.Store(-1)
		s.delivered[key] = d
	}
	return d
}

// loopID is the id event id carries on pass k.
func (t *track) loopID(id string, k int) string {
	if k == 0 || id == "" {
		return id
	}
	if t.numeric {
		v, _ := strconv.ParseUint(id, 10, 64)
		return strconv.FormatUint(v+uint64(k)*t.span, 10)
	}
	return id + "#" + strconv.Itoa(k)
}

// resume finds where a client that last saw lastID continues: the pass k
// and the index of the next frame. ok is false when lastID is not from this
// recording (the stream then starts from the beginning).
func (t *track) resume(lastID string) (k, next int, ok bool) {
	rid := lastID
	if t.numeric {
		v, err := strconv.ParseUint(lastID, 10, 64)
		if err != nil || v < t.minID {
			return 0, 0, false
		}
		k = int((v - t.minID) / t.span)
		rv := v - uint64(k)*t.span
		// The next frame is the one after the last event whose id is at
		// most the one the client saw.
		next = -1
		for i, e := range t.Events {
			if e.Kind != session.RecKindEvent || e.ID == "" {
				continue
			}
			if id, _ := strconv.ParseUint(e.ID, 10, 64); id <= rv {
				next = i + 1
			}
		}
		if next < 0 {
			return 0, 0, false
		}
		return k, next, true
	}
	if i := strings.LastIndexByte(lastID, '#'); i > 0 {
		if n, err := strconv.Atoi(lastID[i+1:]); err == nil && n > 0 {
			k, rid = n, lastID[:i]
		}
	}
	for i := len(t.Events) - 1; i >= 0; i-- {
		if e := t.Events[i]; e.Kind == session.RecKindEvent && e.ID == rid {
			return k, i + 1, true
		}
	}
	return 0, 0, false
}

// hopHeaders are not replayed: the server sets them itself.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "Content-Length": true,
	"Trailer": true, "Upgrade": true, "Te": true, "Proxy-Connection": true, "Date": true,
}

// ServeHTTP replays the recorded stream matched to r.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	lastID := r.Header.Get("Last-Event-ID")
	run := r.Header.Get(HeaderRun)
	t := s.pick(r.URL.Path, r.URL.RawQuery, r.Header.Get(HeaderStream), run, lastID)
	if t == nil {
		http.Error(w, fmt.Sprintf("replay: no recorded stream for path %s", r.URL.Path), http.StatusNotFound)
		return
	}
	s.served.Add(1)
	s.active.Add(1)
	defer s.active.Add(-1)
	p := player{srv: s, t: t, w: w, ctx: r.Context(), t0: t0, speed: s.cfg.Speed, delivered: s.deliveredOf(run, t)}
	p.play(run, lastID)
}

// player sends one replayed stream.
type player struct {
	srv   *Server
	t     *track
	w     http.ResponseWriter
	rc    *http.ResponseController
	ctx   context.Context
	t0    time.Time
	speed float64
	timer *time.Timer
	buf   []byte
	last  string // the last event id the client knows
	// sent is the position of the last frame in buf (-1: none), and
	// delivered the furthest position sent to the client's replay run.
	sent      int64
	delivered *atomic.Int64
}

// at is the wall time of recorded offset off (relative to base).
func (p *player) at(off time.Duration) time.Time {
	return p.t0.Add(time.Duration(float64(off) / p.speed))
}

// fineWindow is the last stretch before a frame is due that a stream
// sleeps with fineSleep (nanosleep on Linux) instead of a runtime timer:
// when the process is idle, the runtime's timers wait in epoll with
// millisecond granularity and fire up to a millisecond late, which would be
// most of the 2 ms gap budget. fineSlots bounds how many streams do so at
// once, since each holds an OS thread meanwhile; beyond it a stream makes
// do with the timer (a busy process checks its timers often anyway).
const fineWindow = 1200 * time.Microsecond

var fineSlots = make(chan struct{}, 4)

// waitUntil sleeps until when; false when the client left first.
func (p *player) waitUntil(when time.Time) bool {
	d := time.Until(when)
	if d <= 0 {
		return p.ctx.Err() == nil
	}
	if d > fineWindow && !p.sleep(d-fineWindow) {
		return false
	}
	if haveFineSleep {
		select {
		case fineSlots <- struct{}{}:
			if d := time.Until(when); d > 0 {
				fineSleep(d)
			}
			<-fineSlots
			return p.ctx.Err() == nil
		default:
		}
	}
	if d := time.Until(when); d > 0 && !p.sleep(d) {
		return false
	}
	return p.ctx.Err() == nil
}

// sleep waits d on the stream's timer; false when the client left first.
func (p *player) sleep(d time.Duration) bool {
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-p.timer.C:
		return true
	case <-p.ctx.Done():
		p.timer.Stop()
		return false
	}
}

func (p *player) play(run, lastID string) {
	t := p.t
	p.rc = http.NewResponseController(p.w)
	k, next, resumed := 0, 0, false
	p.sent = -1
	if lastID != "" && p.srv.wasDelivered(run, t, lastID) {
		k, next, resumed = t.resume(lastID)
	}
	var base time.Duration // recorded offset that maps to t0
	if resumed && k > 0 && !p.srv.cfg.Loop {
		// An id from a later pass of a looped replay: without --loop the
		// client has seen the whole recording.
		k, next = 0, len(t.Events)
	}
	if resumed {
		p.last = lastID
		if next > 0 {
			// The next frame comes its recorded gap after the one the
			// client saw, in the pass it saw it in.
			base = t.Events[next-1].Offset.D() + time.Duration(k)*t.period
		}
	} else {
		k, next = 0, 0
		if !p.waitUntil(p.at(t.RespAt.D())) {
			return
		}
	}
	h := p.w.Header()
	for name, vs := range t.RespHeader {
		if hopHeaders[name] {
			continue
		}
		for _, v := range vs {
			if v != recording.RedactedValue {
				h.Add(name, v)
			}
		}
	}
	h.Set(HeaderStream, t.Name())
	p.w.WriteHeader(t.Status)
	p.rc.Flush()
	if t.Status != http.StatusOK {
		return // only the status and headers of a failed response are recorded
	}
	if len(t.Events) == 0 {
		p.ending(base)
		return
	}
	for {
		for ; next < len(t.Events); next++ {
			e := &t.Events[next]
			if !p.waitUntil(p.at(e.Offset.D() + time.Duration(k)*t.period - base)) {
				return
			}
			p.append(e, k)
			p.sent = t.position(k, next)
			// Send what is due together, then flush once.
			if next+1 < len(t.Events) && !time.Now().Before(p.at(t.Events[next+1].Offset.D()+time.Duration(k)*t.period-base)) {
				continue
			}
			if !p.send() {
				return
			}
		}
		if len(p.buf) > 0 && !p.send() {
			return
		}
		if !p.srv.cfg.Loop {
			break
		}
		k, next = k+1, 0
	}
	p.ending(base)
}

// send writes and flushes what p.buf holds; false when the client is gone.
// Its frames count as delivered from before the write: a client may read
// them, and reconnect with their id, before the write returns here.
func (p *player) send() bool {
	if p.sent >= 0 {
		for cur := p.delivered.Load(); p.sent > cur && !p.delivered.CompareAndSwap(cur, p.sent); cur = p.delivered.Load() {
		}
	}
	if _, err := p.w.Write(p.buf); err != nil {
		return false
	}
	p.buf = p.buf[:0]
	return p.rc.Flush() == nil
}

// append adds the wire form of e (pass k) to p.buf.
func (p *player) append(e *session.RecEvent, k int) {
	p.srv.frames.Add(1)
	b := p.buf
	switch e.Kind {
	case session.RecKindEvent:
		if id := p.t.loopID(e.ID, k); id != p.last {
			if id == "" {
				b = append(b, "id\n"...)
			} else {
				b = append(b, "id: "...)
				b = appendLine(b, id)
			}
			p.last = id
		}
		if e.Type != "" && e.Type != "message" {
			b = append(b, "event: "...)
			b = appendLine(b, e.Type)
		}
		data := e.Data
		for {
			i := strings.IndexAny(data, "\r\n")
			b = append(b, "data: "...)
			if i < 0 {
				b = append(b, data...)
				b = append(b, '\n')
				break
			}
			b = append(b, data[:i]...)
			b = append(b, '\n')
			if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			data = data[i+1:]
		}
		b = append(b, '\n')
	case session.RecKindComment:
		b = append(b, ": "...)
		b = appendLine(b, e.Comment)
		b = append(b, '\n')
	case session.RecKindRetry:
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, e.Retry.D().Milliseconds(), 10)
		b = append(b, "\n\n"...)
	}
	p.buf = b
}

// appendLine appends s with CR and LF replaced by spaces (they would end
// the line), then LF.
func appendLine(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return append(b, '\n')
}

// ending reproduces how the recorded stream ended (EndingOf), after its
// last frame, at its recorded time.
func (p *player) ending(base time.Duration) {
	t := p.t
	kind := EndingOf(t.Stored)
	switch {
	case p.srv.cfg.NoEndings, kind != session.EndKindReset && kind != session.EndKindClean && kind != session.EndKindCut:
		<-p.ctx.Done()
		return
	case !p.waitUntil(p.at(t.End.D() - base)):
		return
	}
	switch kind {
	case session.EndKindReset:
		p.reset()
	case session.EndKindClean:
		// Returning finishes the chunked body.
	case session.EndKindCut:
		p.rc.Flush()
		panic(http.ErrAbortHandler) // the chunked body is cut: UNEXPECTED_EOF
	}
}

// reset closes the client's connection with a TCP RST.
func (p *player) reset() {
	p.rc.Flush()
	conn, _, err := p.rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // cannot reach the socket: cut instead
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	conn.Close()
}

// Running is a Server listening on a real socket.
type Running struct {
	*Server
	URL    string // http://host:port
	Addr   string
	http   *http.Server
	cancel context.CancelFunc
}

// Start listens on addr (DefaultListen when empty; "127.0.0.1:0" picks a
// free port) and serves rec until Shutdown.
func Start(addr string, rec *recording.Recording, cfg Config) (*Running, error) {
	s, err := NewServer(rec, cfg)
	if err != nil {
		return nil, err
	}
	if addr == "" {
		addr = DefaultListen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("replay server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// Streams held open end when the server shuts down.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go hs.Serve(ln)
	return &Running{Server: s, URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), http: hs, cancel: cancel}, nil
}

// Shutdown ends every stream, closes the listener and waits (at most a few
// seconds) for the handlers.
func (r *Running) Shutdown() {
	r.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r.http.Shutdown(ctx) != nil {
		r.http.Close()
	}
}
