package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

// A stream is one request through the proxy and its two hops: its
// context, its recording, its SSE-aware faults' waits, and how it ended.

// stream is one request through the proxy and its two hops.
type stream struct {
	p        *Proxy
	ctx      context.Context
	client   *hopConn
	upstream atomic.Pointer[hopConn]
	request  int
	id       string // the recording's stream id
	method   string
	path     string
	start    time.Time
	rec      *recording.Stream

	statusFault   *Fault // http-status with a timeout, drawn for this request
	statusCode    int
	statusTimeout time.Duration

	cancel context.CancelCauseFunc // ends ctx: the stream was cut by a fault, or its client left

	// h1 is the response writer of an HTTP/1.1 client (nil on HTTP/2):
	// the stream's body is then copied by the connection's goroutine.
	h1 *h1Writer
	// upload ends when the request body's writer (a goroutine of the
	// upstream round trip) is done with it.
	upload <-chan error

	// h2 is set when the client speaks HTTP/2, h2ID the stream's id (0
	// when the wire could not tell it).
	h2   bool
	h2ID uint32
	// events counts the SSE events forwarded to the client on this
	// stream, written the bytes of its response body.
	events  atomic.Int64
	written atomic.Int64
	// cut is set once a fault has ended the stream (RST_STREAM); abort
	// asks its handler to end with net/http's abort (RST_STREAM
	// INTERNAL_ERROR on HTTP/2) when the frame could not be written.
	cut   atomic.Bool
	abort atomic.Bool

	classMu sync.Mutex
	// clientClass is the error class the client was given (ECONNRESET,
	// UNEXPECTED_EOF, H2_RST_STREAM:..., HTTP_502; "" for a clean end),
	// for the recording: the first one set stays.
	clientClass string
}

// errStreamCut is the cause of a stream's context when a fault ended it.
var errStreamCut = errors.New("stream cut by an injected fault")

func (st *stream) setClientClass(class string) {
	st.classMu.Lock()
	if st.clientClass == "" {
		st.clientClass = class
	}
	st.classMu.Unlock()
}

func (st *stream) getClientClass() string {
	st.classMu.Lock()
	defer st.classMu.Unlock()
	return st.clientClass
}

// addEvents counts n SSE events forwarded to the client.
func (st *stream) addEvents(n int64) {
	st.events.Add(n)
	st.client.eventsDown.Add(n)
	st.p.eventsDown.Add(n)
}

// abortIfAsked ends the handler with net/http's abort when a fault asked
// for it (see resetH2).
func (st *stream) abortIfAsked() {
	if st.abort.Load() {
		panic(http.ErrAbortHandler)
	}
}

func streamFrom(ctx context.Context) *stream {
	st, _ := ctx.Value(streamKey{}).(*stream)
	return st
}

// beginStream sets up the stream of request r on client: its context, its
// HTTP/2 stream id (from the wire's field h2Field), its faults and its
// recording. It is a function of its own, not part of ServeHTTP, because
// ServeHTTP's frame stays on the stack of every idle stream.
func (p *Proxy) beginStream(client *hopConn, r *http.Request, h2Field []string, now time.Time) *stream {
	p.streams.Add(1)
	n := int(client.requests.Add(1))
	pq := pathQuery(r.URL)
	st := &stream{p: p, client: client, request: n, id: client.connID, method: r.Method, path: pq, start: now}
	if n > 1 {
		st.id = client.connID + "#" + strconv.Itoa(n)
	}
	if r.ProtoMajor == 2 && client.wire != nil && client.wire.isH2() {
		st.h2 = true
		if len(h2Field) > 0 {
			// The wire's field comes last in the header block.
			if id, err := strconv.ParseUint(h2Field[len(h2Field)-1], 10, 31); err == nil {
				st.h2ID = uint32(id)
			}
		}
	}
	st.ctx, st.cancel = context.WithCancelCause(context.WithValue(r.Context(), streamKey{}, st))
	client.setRequest(r.Method, pq)
	client.inflight.Add(1)
	client.addStream(st)
	if st.h2ID != 0 {
		client.wire.trackStream(st.h2ID)
	}
	p.attachFaults(client, pq, now)
	for _, w := range client.streamWatchers() {
		w.streamStarted(st)
	}
	st.rec = p.recorder.Begin(st.id, r, now)
	return st
}

// end closes the stream's books once its handler is done.
func (st *stream) end() {
	st.finish()
	st.cancel(nil)
	if up := st.upstream.Load(); up != nil {
		up.closeWith(ActionFIN, "proxy") // one upstream socket per request
	}
	if st.upload != nil {
		<-st.upload // the request body's writer has let go of the client's reader
	}
	client := st.client
	if st.h2ID != 0 {
		client.wire.untrackStream(st.h2ID)
	}
	client.removeStream(st)
	client.requestEnd.Store(time.Now().UnixNano())
	client.inflight.Add(-1)
}

// unitFaults reports whether SSE-aware faults act on either hop.
func (st *stream) unitFaults() bool {
	if f := st.client.faults.Load(); f != nil && len(f.units) > 0 {
		return true
	}
	if up := st.upstream.Load(); up != nil {
		if f := up.faults.Load(); f != nil && len(f.units) > 0 {
			return true
		}
	}
	return false
}

// unitAttachments are the SSE-aware effects of both hops.
func (st *stream) unitAttachments() []*attachment {
	var out []*attachment
	if f := st.client.faults.Load(); f != nil {
		out = append(out, f.units...)
	}
	if up := st.upstream.Load(); up != nil {
		if f := up.faults.Load(); f != nil {
			out = append(out, f.units...)
		}
	}
	return out
}

// waitUntil waits until at; it returns early when the SSE faults are all
// removed (held events pass) and false when ctx ends.
func (st *stream) waitUntil(ctx context.Context, at time.Time) bool {
	for {
		d := time.Until(at)
		if d <= 0 || !st.unitFaults() {
			return true
		}
		var upChanged <-chan struct{}
		if up := st.upstream.Load(); up != nil {
			upChanged = up.changes()
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			t.Stop()
			return false
		case <-st.client.dead:
			t.Stop()
			return false
		case <-st.client.changes():
			t.Stop()
		case <-upChanged:
			t.Stop()
		}
	}
}

// staller is the stall effect's release.
type staller interface{ stalled() <-chan struct{} }

// waitStall holds the stream until the stall's fault is removed or the
// stream ends.
func (st *stream) waitStall(ctx context.Context, atts []*attachment) bool {
	var release <-chan struct{}
	for _, a := range atts {
		if s, ok := a.effect.(staller); ok {
			release = s.stalled()
			break
		}
	}
	var upDead <-chan struct{}
	if up := st.upstream.Load(); up != nil {
		upDead = up.dead
	}
	select {
	case <-release:
		return true
	case <-upDead:
		return true // nothing more can come: pass on what was held
	case <-ctx.Done():
		return false
	case <-st.client.dead:
		return false
	}
}

// finish ends the stream's recording with how it ended.
func (st *stream) finish() {
	if st.rec == nil {
		return
	}
	by, how, class := st.client.endState()
	if by == "" {
		if up := st.upstream.Load(); up != nil {
			by, how, class = up.endState()
		}
	}
	if c := st.getClientClass(); c != "" && (class == "" || st.h2) {
		class = c // on HTTP/2 the connection's end is not the stream's
	}
	endedBy := session.EndedByProxy
	switch by {
	case "":
		how = session.EndingFIN
	case "client":
		endedBy = session.EndedByClient
	case "server":
		endedBy = session.EndedByUpstream
	}
	st.rec.End(endedBy, how, class, time.Now())
}
