// Package clients is the load generator: EventSource-correct SSE clients
// (Stream), the scenarios that open and close them over time (Plan, Run) and
// the monitor that samples the run's metrics (Monitor).
//
// Data leaves the package in two ways: session records (ConnRecord at the
// open and close of every connection attempt, ErrorRecord for every
// failure, Sample at every monitor tick) are handed to a Recorder (a
// session.Writer), and running totals are kept in a Counters that the
// monitor and the summary read. Bytes enter from a Transport (HTTP1 by
// default) and are pushed into an sse.Parser without copies.
package clients

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/membudget"
	"github.com/ssestress/ssestress/internal/redact"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// Recorder receives session records. *session.Writer is one; Put must not
// block (the Writer only queues).
type Recorder interface {
	Put(session.Record)
}

// DefaultRetry is the reconnection time before the server advertises one,
// as browsers use.
const DefaultRetry = 3 * time.Second

// Backoff grows the reconnection delay after consecutive failed attempts:
// the n-th consecutive failure waits retry·2^(n-1), capped at Max, and with
// Jitter > 0 the wait is drawn uniformly from [(1-Jitter)·d, d]. An attempt
// that received at least one event resets the count. The zero value (Max 0)
// disables backoff: every reconnect waits the server's retry, as browsers do.
type Backoff struct {
	Max    time.Duration
	Jitter float64 // 0..1
}

// delay is the wait before a reconnect after failures consecutive failures.
func (b Backoff) delay(retry time.Duration, failures int, rnd func() float64) time.Duration {
	d := retry
	if b.Max > 0 && failures > 1 {
		for i := 1; i < failures && d < b.Max; i++ {
			d *= 2
		}
		d = min(d, b.Max)
	}
	if b.Jitter > 0 && d > 0 {
		j := min(b.Jitter, 1)
		d = time.Duration(float64(d) * (1 - j*rnd()))
	}
	return d
}

// Options configure Streams. One Options value is shared, read-only, by
// every stream of a run, so a stream carries only a pointer to it. The zero
// value means the defaults.
type Options struct {
	// Transport opens the connections (nil: an HTTP1 with default timeouts).
	Transport Transport
	// Header holds extra request headers (e.g. Authorization).
	Header http.Header
	// UserAgent is sent as User-Agent (default "ssestress").
	UserAgent string
	// Retry is the reconnection time until the server sends a retry field
	// (default DefaultRetry).
	Retry time.Duration
	// Backoff optionally grows the delay after consecutive failures.
	Backoff Backoff
	// RetryOnHTTPError reconnects after a non-200 status or a wrong
	// Content-Type instead of failing the stream for good as browsers do.
	RetryOnHTTPError bool
	// MaxReconnects ends the stream after that many reconnects (0: no limit).
	MaxReconnects int
	// NoReconnect makes one attempt: the stream ends with its first
	// connection, however that ends. replay run sets it, because a recorded
	// client's reconnect is a recorded stream of its own, replayed at its
	// own time.
	NoReconnect bool
	// MaxLine bounds one SSE line (0: sse.DefaultMaxLine). A longer line
	// ends the connection with LINE_TOO_LONG.
	MaxLine int
	// ReadSize is the size of the buffer the body is read into (default 2048).
	ReadSize int
	// Scenario is copied into the records.
	Scenario string
	// Redact, when set, is applied to every error message before it is
	// recorded or passed to OnError, so that a credential echoed by a
	// server or a library never reaches the session file.
	Redact func(string) string
	// Checkpoint rewrites an open attempt's ConnRecord at most this often
	// while bytes arrive, so a killed run still shows how far each
	// connection got (0: written only at open and close).
	Checkpoint time.Duration

	// Budget is the process's memory budget (--max-memory) the streams'
	// line and event buffers are charged to: past it the streams holding
	// the most end with MEMORY_BUDGET (nil: no budget).
	Budget *membudget.Budget

	// Recorder receives ConnRecords and ErrorRecords (nil: none written).
	Recorder Recorder
	// Counters accumulates totals (nil: not counted).
	Counters *Counters

	// OnFrame is called for every frame parsed (events, comments, retry),
	// with the time of the read that completed it. f and its slices are
	// valid only during the call. For tail; the load engine leaves it nil.
	OnFrame func(s *Stream, f *sse.Frame, at time.Time)
	// OnReconnect is called before each reconnect attempt, after its delay.
	OnReconnect func(s *Stream, attempt int, delay time.Duration)
	// OnError is called for every failure, after it was recorded.
	OnError func(s *Stream, rec *session.ErrorRecord)
	// OnOpen is called when an attempt got a valid event-stream response.
	OnOpen func(s *Stream, rec *session.ConnRecord)
}

// DefaultReadSize is the default of Options.ReadSize.
const DefaultReadSize = 2048

var defaultTransport Transport = &HTTP1{}

// Stream is one EventSource: a logical client connection with a stable ID
// that connects, reads events, and reconnects after failures with
// Last-Event-ID, until its context ends or it fails for good.
type Stream struct {
	ID    string // "c0007"
	Group string // symbol group "AAPL,MSFT,GOOG" (for the records)
	url   *url.URL
	opts  *Options
	// recURL is the URL as records carry it: credentials (user info
	// password, token=... query parameters) redacted.
	recURL string

	parser   sse.Parser
	retry    time.Duration // the server's last valid retry field
	retrySet bool          // a retry field was received (retry: 0 is valid)
	failures int           // consecutive failed attempts
	// localFailures counts consecutive attempts that failed for want of a
	// local resource (EMFILE, EADDRNOTAVAIL): they back off (see
	// localBackoff) whatever retry the server asked for.
	localFailures int
	attempt       int
	// hold is the attempt's share of Options.Budget: the parser asks it
	// before its buffers grow.
	hold *membudget.Holder
}

// NewStream returns a stream for rawURL with opts (shared, not copied).
func NewStream(id, group string, u *url.URL, opts *Options) *Stream {
	s := &Stream{ID: id, Group: group, url: u, recURL: redact.URL(u.String()), opts: opts, parser: sse.Parser{MaxLine: opts.MaxLine}}
	if opts.Budget != nil {
		s.parser.Grow, s.parser.Shrink = s.grow, s.shrink
	}
	return s
}

// grow charges a new buffer of the parser's to the attempt's share of the
// budget; shrink gives back the one it replaced.
func (s *Stream) grow(n int) error { return s.hold.Grow(int64(n)) }
func (s *Stream) shrink(n int)     { s.hold.Shrink(int64(n)) }

// URL is the stream's request URL.
func (s *Stream) URL() *url.URL { return s.url }

// LastEventID is the last event ID received so far.
func (s *Stream) LastEventID() string { return s.parser.LastEventID() }

// SetLastEventID seeds the last event ID before Run, so that even the first
// request resumes a stream with Last-Event-ID.
func (s *Stream) SetLastEventID(id string) { s.parser.SetLastEventID(id) }

// ErrGaveUp is returned by Run when MaxReconnects was reached.
var ErrGaveUp = errors.New("gave up after the maximum number of reconnects")

// Run connects and reconnects until ctx ends (it then returns nil: a
// client-initiated close is not an error) or the stream fails for good: an
// HTTP status other than 200 or a wrong Content-Type (unless
// RetryOnHTTPError), or MaxReconnects reached. That error is returned. With
// NoReconnect it returns after the first attempt, with that attempt's
// failure (nil when the client closed it).
func (s *Stream) Run(ctx context.Context) error {
	if c := s.opts.Counters; c != nil {
		c.Streams.Add(1)
	}
	for {
		if s.attempt > 0 {
			if s.opts.MaxReconnects > 0 && s.attempt > s.opts.MaxReconnects {
				return ErrGaveUp
			}
			delay := s.opts.Backoff.delay(s.retryDelay(), s.failures, rand.Float64)
			if s.localFailures > 0 {
				delay = max(delay, localBackoff.delay(minLocalBackoff, s.localFailures, rand.Float64))
			}
			if !sleep(ctx, delay) {
				return nil
			}
			if s.opts.OnReconnect != nil {
				s.opts.OnReconnect(s, s.attempt, delay)
			}
			if c := s.opts.Counters; c != nil {
				c.Reconnects.Add(1)
			}
		}
		permanent, err := s.connect(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if isLocalExhaustion(err) {
			s.localFailures++
		} else {
			s.localFailures = 0
		}
		if permanent || s.opts.NoReconnect {
			return err
		}
		s.attempt++
	}
}

func (s *Stream) retryDelay() time.Duration {
	if s.retrySet {
		return s.retry
	}
	return orDefault(s.opts.Retry, DefaultRetry)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attempt is the state of one connection attempt; its counters are owned
// by the stream's goroutine and published through the records.
type attempt struct {
	s *Stream
	// overBudget is set when another stream's request ended this one to
	// free the budget; body is what that closes.
	overBudget atomic.Bool
	bodyMu     sync.Mutex
	body       io.Closer
	rec        session.ConnRecord
	now        time.Time // time of the current read
	saved      time.Time // last time rec was written
	lastByte   time.Time
	lastEvent  time.Time
	batch      struct{ events, comments int64 }
}

// connect runs one attempt from dial to the end of the stream. permanent
// says the stream must not reconnect.
func (s *Stream) connect(ctx context.Context) (permanent bool, err error) {
	o := s.opts
	a := &attempt{s: s}
	a.rec = session.ConnRecord{
		ClientID: s.ID, Attempt: s.attempt, Scenario: o.Scenario, Group: s.Group,
		URL: s.recURL, Start: time.Now(),
	}
	s.put(a.rec)
	if c := o.Counters; c != nil {
		c.Attempts.Add(1)
	}
	s.parser.Reset()
	if o.Budget != nil {
		s.hold = o.Budget.Hold(a.endOverBudget)
		defer func() {
			s.parser.Reset() // the buffers go with the share
			s.hold.Release()
		}()
	}

	req := s.request()
	var info ConnInfo
	tr := o.Transport
	if tr == nil {
		tr = defaultTransport
	}
	resp, err := tr.Open(ctx, req, &info)
	a.rec.LocalAddr, a.rec.RemoteAddr, a.rec.Connected = info.LocalAddr, info.RemoteAddr, info.Connected
	if err != nil {
		return false, a.end(ctx, err)
	}
	defer resp.Body.Close()
	a.setBody(resp.Body)
	now := time.Now()
	a.rec.FirstByte, a.lastByte, a.saved = now, now, now
	a.rec.Status = resp.StatusCode
	if err := checkResponse(resp); err != nil {
		return !o.RetryOnHTTPError, a.end(ctx, err)
	}

	if c := o.Counters; c != nil {
		c.open()
		defer c.Active.Add(-1)
	}
	if o.OnOpen != nil {
		o.OnOpen(s, &a.rec)
	}
	size := o.ReadSize
	if size <= 0 {
		size = DefaultReadSize
	}
	buf := make([]byte, size)
	emit := a.frame
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			a.now = time.Now()
			a.lastByte = a.now
			a.rec.Bytes += int64(n)
			perr := s.parser.Feed(buf[:n], emit)
			a.flush()
			if perr != nil {
				return false, a.end(ctx, perr)
			}
			if o.Checkpoint > 0 && a.now.Sub(a.saved) >= o.Checkpoint {
				a.saved = a.now
				a.rec.LastEventID = s.parser.LastEventID()
				s.put(a.rec)
			}
		}
		if rerr != nil {
			if a.overBudget.Load() {
				rerr = &membudget.OverError{Limit: o.Budget.Limit(), Held: s.hold.Held()}
			}
			return false, a.end(ctx, rerr)
		}
	}
}

// endOverBudget ends the attempt for another stream's sake: its share of
// the memory budget is needed (membudget calls it, once).
func (a *attempt) endOverBudget() {
	a.overBudget.Store(true)
	a.bodyMu.Lock()
	b := a.body
	a.bodyMu.Unlock()
	if b != nil {
		b.Close()
	}
}

// setBody notes the response body endOverBudget closes; when the attempt
// was ended before it came, it is closed at once.
func (a *attempt) setBody(b io.Closer) {
	a.bodyMu.Lock()
	a.body = b
	a.bodyMu.Unlock()
	if a.overBudget.Load() {
		b.Close()
	}
}

// request builds the GET of an attempt.
func (s *Stream) request() *http.Request {
	h := make(http.Header, len(s.opts.Header)+4)
	for k, v := range s.opts.Header {
		h[k] = v
	}
	h.Set("Accept", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	ua := s.opts.UserAgent
	if ua == "" {
		ua = "ssestress"
	}
	h.Set("User-Agent", ua)
	if id := s.parser.LastEventID(); id != "" {
		h.Set("Last-Event-ID", id)
	}
	req := &http.Request{
		Method: http.MethodGet, URL: s.url, Host: s.url.Host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
	}
	return req
}

// checkResponse applies EventSource's rules: 200 and text/event-stream.
func checkResponse(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK {
		return &errclass.StatusError{Code: resp.StatusCode}
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "text/event-stream" {
		return &errclass.ContentTypeError{Got: ct}
	}
	return nil
}

// frame counts one parsed frame; it is the parser's callback.
func (a *attempt) frame(f *sse.Frame) error {
	switch f.Kind {
	case sse.KindEvent:
		a.rec.Events++
		a.batch.events++
		if a.rec.FirstEvent.IsZero() {
			a.rec.FirstEvent = a.now
		} else if gap := a.now.Sub(a.lastEvent); gap > a.rec.MaxGap.D() {
			a.rec.MaxGap = session.Seconds(gap)
		}
		a.lastEvent = a.now
	case sse.KindComment:
		a.rec.Comments++
		a.batch.comments++
	case sse.KindRetry:
		a.s.retry, a.s.retrySet = f.Retry, true
		a.rec.Retry = session.Seconds(f.Retry)
	}
	if fn := a.s.opts.OnFrame; fn != nil {
		fn(a.s, f, a.now)
	}
	return nil
}

// flush adds the counts of one read to the shared counters: one atomic add
// per read instead of one per event.
func (a *attempt) flush() {
	if c := a.s.opts.Counters; c != nil {
		if a.batch.events > 0 {
			c.Events.Add(a.batch.events)
		}
		if a.batch.comments > 0 {
			c.Comments.Add(a.batch.comments)
		}
	}
	if a.batch.events > 0 {
		a.s.failures = 0
	}
	a.batch.events, a.batch.comments = 0, 0
}

// end closes the attempt's records. When ctx ended, the client closed the
// stream: that is not an error. Otherwise the failure is classified and
// recorded, and returned.
func (a *attempt) end(ctx context.Context, err error) error {
	s, o := a.s, a.s.opts
	now := time.Now()
	a.rec.End = now
	a.rec.LastEventID = s.parser.LastEventID()
	if ctx.Err() != nil {
		a.rec.ClosedBy = session.ClosedBySelf
		s.put(a.rec)
		return nil
	}
	if a.rec.Events == 0 {
		s.failures++
	}
	class := errclass.Classify(err)
	msg := err.Error()
	if o.Redact != nil {
		msg = o.Redact(msg)
	}
	msg = redact.Text(msg) // a URL quoted with its token=...
	a.rec.EndClass = class
	a.rec.EndMessage = msg
	a.rec.ClosedBy = session.ClosedByPeer
	if errors.Is(err, sse.ErrLineTooLong) || errors.Is(err, sse.ErrEventTooLong) || errors.Is(err, membudget.ErrOver) {
		a.rec.ClosedBy = session.ClosedBySelf
	}
	s.put(a.rec)
	since := a.rec.Start
	if !a.lastByte.IsZero() {
		since = a.lastByte
	} else if !a.rec.Connected.IsZero() {
		since = a.rec.Connected
	}
	er := session.ErrorRecord{
		Time: now, Source: session.SourceClient, ClientID: s.ID, Attempt: s.attempt,
		Scenario: o.Scenario, Group: s.Group, Class: class, Message: msg,
		LocalAddr: a.rec.LocalAddr, RemoteAddr: a.rec.RemoteAddr,
		Age: session.Seconds(now.Sub(a.rec.Start)), Idle: session.Seconds(now.Sub(since)),
		Events: a.rec.Events, LastEventID: a.rec.LastEventID,
	}
	if o.Recorder != nil {
		o.Recorder.Put(er)
	}
	if c := o.Counters; c != nil {
		c.addError(class)
	}
	if o.OnError != nil {
		o.OnError(s, &er)
	}
	return err
}

func (s *Stream) put(rec session.ConnRecord) {
	if s.opts.Recorder != nil {
		s.opts.Recorder.Put(rec)
	}
}

// DefaultKeepalive is the TCP keepalive idle period of the clients'
// sockets: Go's default for a zero net.Dialer. It is recorded in the
// session file (RunInfo.Keepalive).
const DefaultKeepalive = 15 * time.Second

// Counters are a run's running totals, shared by every stream and read by
// the monitor. The fields are updated atomically.
type Counters struct {
	Streams    atomic.Int64 // generated clients started (client ids)
	Attempts   atomic.Int64 // connection attempts, first connects and reconnects
	Reconnects atomic.Int64
	Active     atomic.Int64 // attempts with a valid event-stream response, still open
	ActiveMax  atomic.Int64
	Events     atomic.Int64 // events dispatched
	Comments   atomic.Int64 // comments (heartbeats)

	mu     sync.Mutex
	errors map[string]int64
}

func (c *Counters) open() {
	n := c.Active.Add(1)
	for {
		m := c.ActiveMax.Load()
		if n <= m || c.ActiveMax.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *Counters) addError(class string) {
	c.mu.Lock()
	if c.errors == nil {
		c.errors = map[string]int64{}
	}
	c.errors[class]++
	c.mu.Unlock()
}

// Errors returns a copy of the error counts by class (never nil).
func (c *Counters) Errors() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.errors))
	for k, v := range c.errors {
		out[k] = v
	}
	return out
}

// ErrorTotal is the number of errors of every class.
func (c *Counters) ErrorTotal() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.errors {
		n += v
	}
	return n
}

// ParseTarget checks that raw is an absolute http or https URL with a host.
func ParseTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q (use e.g. http://127.0.0.1:8090)", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid URL %q: no host", raw)
	}
	return u, nil
}
