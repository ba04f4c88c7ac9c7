// Package recording records SSE streams into the session file and reads them
// back: the Recorder an ssestress proxy calls for every stream it forwards,
// the Recording a replay loads, and the jsonl export/import codec.
//
// Data enters through the proxy: Recorder.Begin when a request arrives,
// Stream.Response when its headers come back, Stream.Write with the body
// bytes as they are forwarded to the client (in any pieces) and Stream.End
// when it is over. Each piece is appended, with its offset from the
// stream's start, to the stream's block (session.RecChunks: a compact
// binary value), and its frames are counted (sse.Splitter) without being
// parsed; a block is queued once it holds BlockSize bytes, and whatever a
// stream holds is queued before every commit of the session.Writer (every
// FlushInterval), so a kill -9 loses no more than other records. Reading
// (Read, Load) feeds the pieces to the shared SSE parser and gives the
// very session.RecEvents, offsets included, a frame-by-frame recording
// gave. The bytes a stream holds count against the Writer's byte budget
// (Reserve); past it pieces are dropped, their frames counted as dropped
// records (the summary's records_dropped), and the next piece kept is
// marked as following a gap. The record types and their keys are
// documented in internal/session (schema.go, recording.go, recchunks.go).
package recording

import (
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/redact"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// RedactedValue replaces the value of every redacted header and query
// parameter (redact.Marker).
const RedactedValue = redact.Marker

// DefaultRedact are the standard credential headers. They, and every other
// name package redact takes for a credential (X-Api-Key, X-Auth-Token,
// token, access_token, api_key, key, sig, ...), are redacted unless
// Options.NoRedact, in headers and in the query alike.
var DefaultRedact = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

// Options configure a Recorder. The zero value records with the default
// redaction.
type Options struct {
	// Redact names more headers and query parameters (any case) whose
	// values are replaced by RedactedValue, in the request and in the
	// response (--redact), besides those package redact knows.
	Redact []string
	// NoRedact records every header and the query as they were,
	// credentials included (--no-redact). Redact is ignored then.
	NoRedact bool
	// MaxLine bounds one SSE line; zero means sse.DefaultMaxLine. A stream
	// with a longer line is recorded up to that line.
	MaxLine int
	// BlockSize is the size at which a stream's block is queued (default
	// DefaultBlockSize).
	BlockSize int
	// BlockAge is how long a block's first piece waits before the block
	// is queued with the writer's next commit (default DefaultBlockAge).
	BlockAge time.Duration
	// MaxWait is how long a piece waits for the session writer to free
	// room when its byte budget is spent: it is dropped once no commit has
	// freed any for MaxWait, or after ten times MaxWait in all (default
	// DefaultMaxWait; negative: never wait).
	MaxWait time.Duration
}

// DefaultBlockAge is Options.BlockAge's default: two flush intervals of
// the session writer. Among many slow streams (1,000 at 20 events/s)
// each block then holds a few events and commits cost fewer than two
// allocations per event (2.6 at an age of one interval); a piece reaches
// the file at most BlockAge plus one interval after it passed, and the
// file's newest piece is at most one interval old (a few streams are all
// queued at every commit; among many, some age out at each).
const DefaultBlockAge = 200 * time.Millisecond

// DefaultMaxWait is Options.MaxWait's default: a stream that outruns a
// busy writer is held back as long as commits free room (backpressure, at
// most ten times this per piece), and drops pieces only when the disk
// stalls this long.
const DefaultMaxWait = 50 * time.Millisecond

// DefaultBlockSize is a block's size when Options.BlockSize is zero: large
// enough that a busy stream costs one record per few hundred events, small
// enough that a stream holds little.
const DefaultBlockSize = 32 << 10

// Recorder records the streams of one proxy into a session file. It is safe
// for concurrent use; a nil *Recorder records nothing.
type Recorder struct {
	w      *session.Writer
	proxy  string
	opts   Options
	redact map[string]bool // lower-cased names of Options.Redact

	enabled atomic.Bool
	seq     atomic.Uint64 // for Begin calls without a connection id
	streams atomic.Int64
	frames  atomic.Int64 // frames stored
	dropped atomic.Int64 // frames dropped past the writer's budget

	mu   sync.Mutex
	live map[*Stream]struct{}
	// pending are the streams holding a block not yet queued (guarded by
	// mu): the writer's hook queues them before each commit.
	pending map[*Stream]struct{}
}

// New returns an enabled Recorder writing through w, naming proxyName in
// every record.
func New(w *session.Writer, proxyName string, opts Options) *Recorder {
	if opts.BlockSize <= 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.BlockAge <= 0 {
		opts.BlockAge = DefaultBlockAge
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = DefaultMaxWait
	}
	r := &Recorder{w: w, proxy: proxyName, opts: opts, redact: map[string]bool{}, live: map[*Stream]struct{}{}, pending: map[*Stream]struct{}{}}
	w.BeforeCommit(r.queueHeld)
	for _, h := range opts.Redact {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			r.redact[h] = true
		}
	}
	r.enabled.Store(true)
	return r
}

// Enabled reports whether new streams are recorded.
func (r *Recorder) Enabled() bool { return r != nil && r.enabled.Load() }

// SetEnabled starts or stops recording (the control API's start/stop).
// Stopping also finishes every stream being recorded: each is stored with
// Stopped set and records nothing more, although the stream itself goes on.
func (r *Recorder) SetEnabled(on bool) {
	if r == nil {
		return
	}
	r.enabled.Store(on)
	if on {
		return
	}
	r.mu.Lock()
	live := make([]*Stream, 0, len(r.live))
	for s := range r.live {
		live = append(live, s)
	}
	r.mu.Unlock()
	for _, s := range live {
		s.stop()
	}
}

// Counts is how many streams were begun and frames recorded so far.
func (r *Recorder) Counts() (streams, frames int64) {
	if r == nil {
		return 0, 0
	}
	return r.streams.Load(), r.frames.Load()
}

// Stream is the recording of one stream. Its methods are safe for
// concurrent use and do nothing on a nil *Stream, so the proxy can call
// them unconditionally.
type Stream struct {
	r      *Recorder
	mu     sync.Mutex
	rec    session.RecStream
	split  sse.Splitter
	done   bool // ended or stopped
	notSSE bool // the response is not text/event-stream: bytes are counted, not stored
	cut    bool // the SSE bounds were passed: nothing more can be parsed, nothing more is stored

	block    []byte    // the pieces not yet queued
	reserved int       // bytes of the writer's budget block holds
	frames   int64     // frames stored when block began
	blocks   int       // blocks queued so far
	gap      bool      // pieces were dropped since the last one kept
	firstAt  time.Time // when block got its first piece
}

// Begin starts recording the stream of req, which reached the proxy at
// start, on the proxy's connection connID (unique within the proxy; "" lets
// the Recorder number it). It returns nil when recording is off.
func (r *Recorder) Begin(connID string, req *http.Request, start time.Time) *Stream {
	if !r.Enabled() {
		return nil
	}
	if connID == "" {
		connID = r.proxy + "-r" + itoa(r.seq.Add(1))
	}
	s := &Stream{r: r}
	s.split.MaxLine = r.opts.MaxLine
	rec := &s.rec
	rec.Proxy, rec.ConnID = r.proxy, connID
	rec.Start = start
	rec.ClientAddr = req.RemoteAddr
	rec.Method = req.Method
	rec.Host = req.Host
	if req.URL != nil {
		rec.Path = r.cleanText(req.URL.Path)
		rec.Query = r.cleanQuery(req.URL.RawQuery, &rec.Redacted)
	}
	rec.Group = Group(rec.Query)
	rec.Header = r.clean(req.Header, &rec.Redacted)
	r.mu.Lock()
	r.live[s] = struct{}{}
	r.mu.Unlock()
	r.streams.Add(1)
	r.w.Put(*rec)
	return s
}

// credential reports whether a header or query parameter name is
// redacted.
func (r *Recorder) credential(name string) bool {
	return !r.opts.NoRedact && (redact.Name(name) || r.redact[strings.ToLower(name)])
}

// clean copies h with the redacted headers' values replaced, and the
// credentials other headers quote (a server echoing "Bearer xyz" or a URL
// with its token into a Content-Type or a Location) replaced in theirs
// (redact.Text); it adds the names it changed to names.
func (r *Recorder) clean(h http.Header, names *[]string) http.Header {
	if h == nil {
		return nil
	}
	out := h.Clone()
	for k, vs := range out {
		changed := false
		for i, v := range vs {
			switch {
			case r.credential(k):
				vs[i], changed = RedactedValue, true
			case !r.opts.NoRedact:
				if t := redact.Text(v); t != v {
					vs[i], changed = t, true
				}
			}
		}
		if changed && !contains(*names, k) {
			*names = append(*names, k)
		}
	}
	sort.Strings(*names)
	return out
}

// cleanQuery is a raw query with the values of credential parameters
// replaced; it adds "?name" to names for each (a header and a parameter of
// the same name stay apart).
func (r *Recorder) cleanQuery(raw string, names *[]string) string {
	if r.opts.NoRedact || raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	changed := false
	for i, part := range parts {
		name, _, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		n, err := url.QueryUnescape(name)
		if err != nil {
			n = name
		}
		if r.credential(n) {
			parts[i] = name + "=" + RedactedValue
			changed = true
			if !contains(*names, "?"+n) {
				*names = append(*names, "?"+n)
			}
		}
	}
	if !changed {
		return raw
	}
	sort.Strings(*names)
	return strings.Join(parts, "&")
}

// cleanText replaces credentials in a path (;jsessionid=...).
func (r *Recorder) cleanText(s string) string {
	if r.opts.NoRedact {
		return s
	}
	return redact.Text(s)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Response records the response status and headers, received at at. The
// body of a response that is not text/event-stream is counted but not
// parsed into frames.
func (s *Stream) Response(status int, h http.Header, at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.rec.Status = status
	s.rec.RespHeader = s.r.clean(h, &s.rec.Redacted)
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "text/event-stream" {
		s.notSSE = true
	}
	s.rec.RespAt = session.Seconds(at.Sub(s.rec.Start))
	s.r.w.Put(s.rec)
}

// Write records p, a piece of the response body as forwarded to the client
// (after transfer decoding), which passed the proxy at at. Pieces may split
// lines and events anywhere: every frame completed by p is read back with
// the offset of at. It never blocks on the session file.
func (s *Stream) Write(p []byte, at time.Time) {
	if s == nil || len(p) == 0 {
		return
	}
	s.write(p, at, nil)
}

// Splitter is a splitter configured as the stream's own (its bounds), at
// the stream's start: for a caller that scans the stream's bytes anyway
// and passes it to WriteSplit, so that each byte is scanned once.
func (s *Stream) Splitter() sse.Splitter {
	if s == nil {
		return sse.Splitter{EventsOnly: true}
	}
	return sse.Splitter{MaxLine: s.r.opts.MaxLine}
}

// WriteSplit is Write for a caller that counts the stream's events itself:
// split, from Splitter and fed every byte of the stream given to Write or
// WriteSplit so far (and nothing else), scans p once for both, in place
// of the stream's own splitter. It returns the events p ends. A caller
// that stops feeding split the stream's bytes hands its state over with
// AdoptSplitter first.
func (s *Stream) WriteSplit(p []byte, at time.Time, split *sse.Splitter) int64 {
	before := split.Frames()
	events := split.CountEvents(p)
	if s != nil && len(p) > 0 {
		s.write(p, at, &scanned{frames: split.Frames() - before, err: split.Err()})
	}
	return events
}

// AdoptSplitter makes split, fed the stream's bytes so far through
// WriteSplit, the stream's own splitter again: Write counts with it from
// here on.
func (s *Stream) AdoptSplitter(split sse.Splitter) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.split = split
	s.mu.Unlock()
}

// scanned is what a caller's splitter found in a piece (WriteSplit).
type scanned struct {
	frames int64
	err    error
}

// write records p; sc is what the caller's splitter found in it, nil to
// scan it with the stream's own.
func (s *Stream) write(p []byte, at time.Time, sc *scanned) {
	// The budget is taken before the lock: a wait for the writer must not
	// hold the stream (the writer queues held blocks under it).
	need := len(p) + session.RecChunkOverhead
	kept := s.r.w.ReserveWait(need, s.r.opts.MaxWait)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || s.notSSE || s.cut {
		if kept {
			s.r.w.Unreserve(need)
		}
		if !s.done {
			s.rec.Bytes += int64(len(p))
		}
		return
	}
	s.rec.Bytes += int64(len(p))
	if sc == nil {
		before := s.split.Frames()
		s.split.CountEvents(p)
		sc = &scanned{frames: s.split.Frames() - before, err: s.split.Err()}
	}
	completed := sc.frames
	if err := sc.err; err != nil {
		// A line or an event over the bound: a parser refuses the rest of
		// the stream, so nothing more is stored; the ending still is.
		s.cut = true
		s.rec.Class = errclass.Classify(err)
	}
	if !kept {
		// Past the writer's byte budget: the piece is dropped, and its
		// frames are counted as dropped records.
		s.gap = true
		s.r.w.AddDropped(uint64(completed))
		s.r.dropped.Add(completed)
		return
	}
	if s.block != nil && !session.BlockFits(s.block, need) {
		s.queueLocked()
	}
	if s.block == nil {
		s.block = session.BlockBuf()
		s.frames = s.rec.Frames
		s.firstAt = time.Now()
		s.r.mu.Lock()
		s.r.pending[s] = struct{}{}
		s.r.mu.Unlock()
	}
	s.block = session.AppendRecChunk(session.GrowBlock(s.block, need), at.Sub(s.rec.Start), s.gap, p)
	s.reserved += need
	s.gap = false
	s.rec.Frames += completed
	s.r.frames.Add(completed)
	if len(s.block) >= s.r.opts.BlockSize {
		s.queueLocked()
	}
}

// queueLocked queues the stream's block (s.mu held).
func (s *Stream) queueLocked() {
	if s.block == nil {
		return
	}
	blk := session.NewRecChunks()
	*blk = session.RecChunks{Proxy: s.rec.Proxy, ConnID: s.rec.ConnID, Block: s.blocks,
		Frames: int(s.rec.Frames - s.frames), Data: s.block}
	s.blocks++
	s.block = nil
	reserved := s.reserved
	s.reserved = 0
	s.r.mu.Lock()
	delete(s.r.pending, s)
	s.r.mu.Unlock()
	s.r.w.PutReserved(blk, reserved)
}

// queueAllBelow is how many streams holding blocks are all queued at
// every timed commit; past it, only the blocks BlockAge old are.
const queueAllBelow = 64

// queueHeld queues the blocks held: all of them, or, when many streams
// hold one, those whose first piece came at least BlockAge ago. The writer
// calls it before each timed commit, so a piece waits at most BlockAge
// plus one flush interval, the file's newest piece at most one interval,
// and a slow stream among many stores a few events per record, not one.
func (r *Recorder) queueHeld(all bool) {
	before := time.Now().Add(-r.opts.BlockAge)
	r.mu.Lock()
	streams := make([]*Stream, 0, len(r.pending))
	for s := range r.pending {
		streams = append(streams, s)
	}
	r.mu.Unlock()
	// A few streams are all queued at every commit: the file's newest
	// piece is then never more than one interval old. Among many, those
	// that age out at each commit hold pieces up to it.
	all = all || len(streams) <= queueAllBelow
	for _, s := range streams {
		s.mu.Lock()
		if all || !s.firstAt.After(before) {
			s.queueLocked()
		}
		s.mu.Unlock()
	}
}

// frameEvent is the RecEvent of one parsed frame, the seq-th of its
// stream, completed by a piece that passed at offset.
func frameEvent(proxy, connID string, seq int, offset session.Seconds, f *sse.Frame) session.RecEvent {
	e := session.RecEvent{Proxy: proxy, ConnID: connID, Seq: seq, Offset: offset}
	switch f.Kind {
	case sse.KindEvent:
		e.Kind = session.RecKindEvent
		e.ID = validText(f.ID)
		e.Type = validText(f.Type)
		e.Data = textOf(f.Data)
	case sse.KindComment:
		e.Kind = session.RecKindComment
		e.Comment = textOf(f.Comment)
	case sse.KindRetry:
		e.Kind = session.RecKindRetry
		e.Retry = session.Seconds(f.Retry)
	}
	return e
}

// textOf copies b as UTF-8 text.
func textOf(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// End records how the stream ended, at at: endedBy is session.EndedByClient,
// EndedByProxy or EndedByUpstream; ending is session.EndingFIN or
// EndingRST; class is the errclass of the failure, "" for none. Only the
// first End counts.
func (s *Stream) End(endedBy, ending, class string, at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.queueLocked()
	s.done = true
	s.rec.Ended = true
	s.rec.End = session.Seconds(at.Sub(s.rec.Start))
	s.rec.EndedBy, s.rec.Ending = endedBy, ending
	if class != "" || s.rec.Class == "" {
		s.rec.Class = class
	}
	rec := s.rec
	s.mu.Unlock()
	s.r.w.Put(rec)
	s.r.forget(s)
}

// stop finishes the recording of a stream that goes on (recording stopped).
func (s *Stream) stop() {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.queueLocked()
	s.done = true
	s.rec.Stopped = true
	rec := s.rec
	s.mu.Unlock()
	s.r.w.Put(rec)
	s.r.forget(s)
}

func (r *Recorder) forget(s *Stream) {
	r.mu.Lock()
	delete(r.live, s)
	r.mu.Unlock()
}

// Group is the symbol group named by a raw query: the symbols parameter's
// entries trimmed, upper-cased, sorted and joined with commas ("" when the
// query names none). The embedded server groups streams the same way.
func Group(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	q, _ := url.ParseQuery(rawQuery)
	v := q.Get("symbols")
	if v == "" {
		return ""
	}
	var syms []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.ToUpper(strings.TrimSpace(f)); f != "" {
			syms = append(syms, f)
		}
	}
	sort.Strings(syms)
	return strings.Join(syms, ",")
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// Redact replaces the credentials the streams of rec carry (headers,
// query, path) as a recording proxy does by default: an imported
// recording is held to the same rule as a recorded one.
func (rec *Recording) Redact() {
	r := &Recorder{redact: map[string]bool{}}
	for _, s := range rec.Streams {
		s.Header = r.clean(s.Header, &s.Redacted)
		s.RespHeader = r.clean(s.RespHeader, &s.Redacted)
		s.Query = r.cleanQuery(s.Query, &s.Redacted)
		s.Path = r.cleanText(s.Path)
	}
}
