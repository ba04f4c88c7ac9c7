// Package feed is the embedded SSE server: a production-like quote feed to
// run against out of the box (ssestress serve, and run without --target).
//
// GET /stream?symbols=A,B,C streams "event: quote" events with JSON data for
// the symbols of that group and increasing ids, at a configurable message
// rate (or none: heartbeats only), with comment heartbeats and a retry
// advertisement. Each symbol group has one generator and a bounded
// history, so a client that reconnects with Last-Event-ID resumes without
// loss or duplicates while its id is still in the history. A group's
// generator runs only while the group has subscribers, and a group without
// any is forgotten after Config.GroupExpiry: a feed without clients uses
// no CPU, and one-off groups no memory. Every write is flushed: nothing is
// buffered.
package feed

import (
	"context"
	"crypto/tls"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/sse"
)

// DefaultListen is where serve listens when no address is given.
const DefaultListen = "127.0.0.1:8090"

// DefaultSymbols is the group served when a request names none.
const DefaultSymbols = "AAPL,MSFT,GOOG"

// Rate is a message rate per minute: fixed (Min == Max) or a range from
// which each gap is drawn.
type Rate struct{ Min, Max float64 }

// NoMessages is the Rate of a feed that sends no events, heartbeats only
// ("0"): the natural stream to test idle timeouts with.
var NoMessages = Rate{-1, -1}

// ParseRate reads "600" or "100-1000" (messages per minute), or "0" for
// NoMessages.
func ParseRate(s string) (Rate, error) {
	if v, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && v == 0 {
		return NoMessages, nil
	}
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	min, err := strconv.ParseFloat(lo, 64)
	if err != nil || !(min > 0) || math.IsInf(min, 0) {
		return Rate{}, fmt.Errorf("invalid message rate %q (use messages per minute, e.g. 600 or 100-1000)", s)
	}
	max := min
	if found {
		max, err = strconv.ParseFloat(hi, 64)
		if err != nil || !(max >= min) || math.IsInf(max, 0) {
			return Rate{}, fmt.Errorf("invalid message rate %q (use messages per minute, e.g. 600 or 100-1000)", s)
		}
	}
	return Rate{min, max}, nil
}

func (r Rate) String() string {
	if r.silent() {
		return "0"
	}
	if r.Min == r.Max {
		return strconv.FormatFloat(r.Min, 'f', -1, 64)
	}
	return strconv.FormatFloat(r.Min, 'f', -1, 64) + "-" + strconv.FormatFloat(r.Max, 'f', -1, 64)
}

// silent reports whether the rate sends no messages (NoMessages).
func (r Rate) silent() bool { return r.Min < 0 }

// gap draws the time to the next message.
func (r Rate) gap(rng *rand.Rand) time.Duration {
	perMin := r.Min
	if r.Max > r.Min {
		perMin = r.Min + rng.Float64()*(r.Max-r.Min)
	}
	return time.Duration(float64(time.Minute) / perMin)
}

// DefaultGroupExpiry is how long a symbol group without subscribers is
// kept, with its history for Last-Event-ID resumption.
const DefaultGroupExpiry = 10 * time.Minute

// Config configures a Server. Zero values mean the defaults.
type Config struct {
	// Rate is the message rate of each symbol group (default 600/min; a
	// negative Min, NoMessages, sends heartbeats only).
	Rate Rate
	// Heartbeat is the interval of ": heartbeat" comments (default 15 s;
	// negative disables them).
	Heartbeat time.Duration
	// Retry is advertised with "retry:" at the start of each stream
	// (default 3 s; negative sends none).
	Retry time.Duration
	// History is how many events per group are kept for Last-Event-ID
	// resumption (default 10,000).
	History int
	// GroupExpiry is how long a symbol group with no subscriber is kept
	// before it is forgotten, history and all (default
	// DefaultGroupExpiry; negative: as soon as its last subscriber
	// leaves). A group's generator stops when its last subscriber leaves
	// and starts again with the next, so a feed without clients uses no
	// CPU, and one-off groups cost no memory once expired. A client that
	// comes back with Last-Event-ID after its group was forgotten gets
	// ids that go on from its last one.
	GroupExpiry time.Duration
}

func (c Config) withDefaults() Config {
	if c.Rate == (Rate{}) {
		c.Rate = Rate{600, 600}
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.Retry == 0 {
		c.Retry = 3 * time.Second
	}
	if c.History <= 0 {
		c.History = 10000
	}
	if c.GroupExpiry == 0 {
		c.GroupExpiry = DefaultGroupExpiry
	}
	return c
}

// Server is the quote feed. Create it with New; it is an http.Handler.
type Server struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	mux    *http.ServeMux

	mu     sync.Mutex
	groups map[string]*group
	wg     sync.WaitGroup

	active     atomic.Int64
	opened     atomic.Int64
	sent       atomic.Int64
	generating atomic.Int64
}

// New returns a Server. Its generators run until Close.
func New(cfg Config) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg.withDefaults(), ctx: ctx, cancel: cancel, groups: map[string]*group{}}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /stream", s.stream)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "ok active=%d\n", s.active.Load())
	})
	return s
}

// ServeHTTP serves /stream and /healthz.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Stats are the server's counters.
type Stats struct {
	Active, Opened, Sent int64
	// Groups are the symbol groups kept (with subscribers, or without for
	// less than GroupExpiry); Generating those whose generator runs.
	Groups, Generating int64
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	groups := int64(len(s.groups))
	s.mu.Unlock()
	return Stats{Active: s.active.Load(), Opened: s.opened.Load(), Sent: s.sent.Load(),
		Groups: groups, Generating: s.generating.Load()}
}

// Close stops the generators and ends every stream.
func (s *Server) Close() {
	s.cancel()
	s.mu.Lock()
	for _, g := range s.groups {
		g.mu.Lock()
		if g.expire != nil {
			g.expire.Stop()
		}
		g.mu.Unlock()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Running is an embedded server listening on a real socket.
type Running struct {
	*Server
	URL  string // http://127.0.0.1:port
	Addr string
	http *http.Server
}

// Start listens on addr (DefaultListen when empty; "127.0.0.1:0" picks a
// free port) and serves until Shutdown. It speaks HTTP/1.1 and, for
// clients that start with the HTTP/2 preface, h2c (HTTP/2 without TLS).
func Start(addr string, cfg Config) (*Running, error) {
	return StartTLS(addr, cfg, nil)
}

// StartTLS is Start with TLS when tlsConfig is not nil: the URL is https
// and HTTP/2 is offered with ALPN beside HTTP/1.1, as production SSE
// services behind a CDN are reached.
func StartTLS(addr string, cfg Config, tlsConfig *tls.Config) (*Running, error) {
	if addr == "" {
		addr = DefaultListen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded server: %w", err)
	}
	s := New(cfg)
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	hs.Protocols = new(http.Protocols)
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetHTTP2(true)
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
		tc := tlsConfig.Clone()
		if len(tc.NextProtos) == 0 {
			tc.NextProtos = []string{"h2", "http/1.1"}
		}
		hs.TLSConfig = tc
		go hs.ServeTLS(ln, "", "")
	} else {
		hs.Protocols.SetUnencryptedHTTP2(true)
		go hs.Serve(ln)
	}
	return &Running{Server: s, URL: scheme + "://" + ln.Addr().String(), Addr: ln.Addr().String(), http: hs}, nil
}

// Shutdown ends the streams, closes the listener and waits for handlers.
func (r *Running) Shutdown() {
	r.Server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.http.Shutdown(ctx)
}

type event struct {
	id   uint64
	data string
}

// group is one symbol group: its generator, history and subscribers.
type group struct {
	key     string
	symbols []string
	mu      sync.Mutex
	seq     uint64
	history []event // the last History to 2*History events, oldest first
	subs    map[chan event]struct{}
	prices  []float64 // kept while the generator pauses
	// stop is closed to stop the running generator; nil when none runs.
	stop chan struct{}
	// expire forgets the group GroupExpiry after its last subscriber left;
	// idle numbers the idle periods, so a timer that fires after a new
	// subscriber came (and left again) does nothing.
	expire *time.Timer
	idle   uint64
}

const subBuffer = 1024

// subscribe registers a subscriber of the group key, making the group if
// it is not kept, and returns the history after lastID (resume), under the
// server's lock so that the group cannot be forgotten in between. A group
// made for a client resuming from lastID numbers its events from there.
func (s *Server) subscribe(key string, lastID uint64, resume bool) (*group, chan event, []event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[key]
	if g == nil {
		g = &group{key: key, symbols: strings.Split(key, ","), subs: map[chan event]struct{}{}}
		if resume {
			g.seq = lastID
		}
		g.prices = make([]float64, len(g.symbols))
		for i := range g.prices {
			g.prices[i] = 100 + rand.Float64()*100
		}
		s.groups[key] = g
	}
	c := make(chan event, subBuffer)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.expire != nil {
		g.expire.Stop()
		g.expire = nil
	}
	var backlog []event
	if resume {
		i := sort.Search(len(g.history), func(i int) bool { return g.history[i].id > lastID })
		backlog = append(backlog, g.history[i:]...)
	}
	g.subs[c] = struct{}{}
	if g.stop == nil && !s.cfg.Rate.silent() && s.ctx.Err() == nil {
		g.stop = make(chan struct{})
		s.wg.Add(1)
		s.generating.Add(1)
		go s.generate(g, g.stop)
	}
	return g, c, backlog
}

// unsubscribe removes a subscriber; the last one stops the generator and
// starts the group's expiry.
func (s *Server) unsubscribe(g *group, c chan event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.subs, c)
	s.idleIfEmpty(g)
}

// idleIfEmpty stops the generator of a group left without subscribers and
// arms its expiry. g.mu is held.
func (s *Server) idleIfEmpty(g *group) {
	if len(g.subs) > 0 {
		return
	}
	if g.stop != nil {
		close(g.stop)
		g.stop = nil
	}
	if g.expire != nil || s.ctx.Err() != nil {
		return
	}
	g.idle++
	idle := g.idle
	g.expire = time.AfterFunc(max(s.cfg.GroupExpiry, 0), func() { s.forget(g, idle) })
}

// forget drops a group still idle since idle period idle.
func (s *Server) forget(g *group, idle uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.idle != idle || len(g.subs) > 0 || s.groups[g.key] != g {
		return
	}
	g.expire = nil
	delete(s.groups, g.key)
}

// generate produces the group's events until stop is closed (its last
// subscriber left) or the server closes. A subscriber that cannot keep up
// (its buffer is full) is dropped, as a real server would drop a slow
// consumer, and its stream ends.
func (s *Server) generate(g *group, stop chan struct{}) {
	defer s.wg.Done()
	defer s.generating.Add(-1)
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var buf []byte
	for {
		select {
		case <-s.ctx.Done():
			g.mu.Lock()
			for c := range g.subs {
				close(c)
				delete(g.subs, c)
			}
			g.mu.Unlock()
			return
		case <-stop:
			return
		case <-timer.C:
		}
		now := time.Now()
		g.mu.Lock()
		if g.stop != stop {
			g.mu.Unlock()
			return
		}
		i := rng.IntN(len(g.symbols))
		g.prices[i] *= 1 + (rng.Float64()-0.5)/100
		buf = buf[:0]
		buf = fmt.Appendf(buf, `{"symbol":%q,"price":%.4f,"ts":%d}`, g.symbols[i], g.prices[i], now.UnixMilli())
		g.seq++
		ev := event{id: g.seq, data: string(buf)}
		g.history = append(g.history, ev)
		if len(g.history) >= 2*s.cfg.History {
			// Keep the newest History events; amortised O(1) per event.
			g.history = append([]event(nil), g.history[len(g.history)-s.cfg.History:]...)
		}
		for c := range g.subs {
			select {
			case c <- ev:
			default:
				close(c)
				delete(g.subs, c)
			}
		}
		s.idleIfEmpty(g)
		g.mu.Unlock()
		// Schedule against the ideal time so the rate does not drift.
		next = next.Add(s.cfg.Rate.gap(rng))
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
		} else {
			next = time.Now()
			timer.Reset(0)
		}
	}
}

// groupKey normalises the symbols parameter: "msft, aapl" → "AAPL,MSFT".
func groupKey(q string) string {
	if q == "" {
		q = DefaultSymbols
	}
	var syms []string
	for _, f := range strings.Split(q, ",") {
		if f = strings.ToUpper(strings.TrimSpace(f)); f != "" {
			syms = append(syms, f)
		}
	}
	if len(syms) == 0 {
		syms = strings.Split(DefaultSymbols, ",")
	}
	sort.Strings(syms)
	return strings.Join(syms, ",")
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	var lastID uint64
	resume := false
	if h := r.Header.Get("Last-Event-ID"); h != "" {
		if v, err := strconv.ParseUint(h, 10, 64); err == nil {
			lastID, resume = v, true
		}
	}
	g, sub, backlog := s.subscribe(groupKey(r.URL.Query().Get("symbols")), lastID, resume)
	defer s.unsubscribe(g, sub)
	s.active.Add(1)
	s.opened.Add(1)
	defer s.active.Add(-1)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if s.cfg.Retry > 0 {
		sse.WriteRetry(w, s.cfg.Retry)
	} else {
		sse.WriteComment(w, "ok")
	}
	for _, ev := range backlog {
		if s.send(w, ev) != nil {
			return
		}
	}
	flusher.Flush()

	var heartbeat <-chan time.Time
	if s.cfg.Heartbeat > 0 {
		t := time.NewTicker(s.cfg.Heartbeat)
		defer t.Stop()
		heartbeat = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return // the server closes (a stream with no generator too)
		case ev, ok := <-sub:
			if !ok {
				return // server closing, or this client was too slow
			}
			if s.send(w, ev) != nil {
				return
			}
		case <-heartbeat:
			if sse.WriteComment(w, "heartbeat") != nil {
				return
			}
		}
		flusher.Flush()
	}
}

func (s *Server) send(w http.ResponseWriter, ev event) error {
	if err := sse.WriteEvent(w, strconv.FormatUint(ev.id, 10), "quote", ev.data); err != nil {
		return err
	}
	s.sent.Add(1)
	return nil
}
