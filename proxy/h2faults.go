package proxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// The HTTP/2 faults: what a CDN or an HTTP/2 load balancer does instead
// of a TCP reset. They act on the client hop of clients that speak
// HTTP/2 to the proxy (h2 over the TLS listener, or h2c); the frames are
// written by the proxy's clientWire with exactly the code asked for, since
// net/http's server can send RST_STREAM only with INTERNAL_ERROR (a
// handler's panic) and GOAWAY only with NO_ERROR (Shutdown). On an
// HTTP/1.1 client they do nothing and say so: a firing with action "none"
// whose detail says why, once per connection, and its log line.

// Actions of the HTTP/2 faults.
const (
	ActionRSTStream = session.ActionRSTStream
	ActionGoAway    = session.ActionGoAway
	// ActionNone records a fault that could not act (an HTTP/2 fault on
	// an HTTP/1.1 client): its firing ends nothing.
	ActionNone = session.ActionNone
)

// parseH2Code reads an HTTP/2 error code: its RFC 9113 name (any case,
// "_ERROR" optional: "cancel", "INTERNAL_ERROR") or its number (8, 0x8).
func parseH2Code(v string) (http2.ErrCode, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	for c := uint32(0); c < 14; c++ {
		name := errclass.H2Code(c)
		if s == name || s+"_ERROR" == name {
			return http2.ErrCode(c), nil
		}
	}
	if n, err := strconv.ParseUint(strings.ToLower(s), 0, 32); err == nil {
		return http2.ErrCode(n), nil
	}
	return 0, fmt.Errorf("code %q is not an HTTP/2 error code (a name such as CANCEL, INTERNAL_ERROR, REFUSED_STREAM, or a number)", v)
}

func paramH2Code(fs FaultSpec, def http2.ErrCode) (http2.ErrCode, error) {
	v, ok := fs.Params["code"]
	if !ok {
		return def, nil
	}
	return parseH2Code(v)
}

// streamWatcher is an effect told of every stream (request) that starts on
// its client connection.
type streamWatcher interface {
	streamStarted(st *stream)
}

// notH2 records, once per connection, that an HTTP/2 fault met a client
// that does not speak HTTP/2.
func notH2(a *attachment, st *stream, proto string) {
	if a.firstTime() {
		a.fireStream(st, ActionNone, fmt.Sprintf("not applied: the client speaks %s on this connection; %s acts on HTTP/2 clients only (h2 over TLS, or h2c)", proto, a.f.Spec.Kind))
	}
}

// ---- h2-rst-stream

type h2RSTStream struct {
	code   http2.ErrCode
	events int64 // -1: by time (after)
}

func buildH2RSTStream(fs FaultSpec, scale float64) (behaviour, error) {
	code, err := paramH2Code(fs, http2.ErrCodeInternal)
	if err != nil {
		return nil, err
	}
	ev, err := paramInt(fs, "events")
	if err != nil {
		return nil, err
	}
	return h2RSTStream{code, ev}, nil
}

func (k h2RSTStream) attach(a *attachment) any {
	var e streamWatcher
	if k.events >= 0 {
		e = &h2RSTEventsEffect{a: a, k: k}
	} else {
		e = &h2RSTTimeEffect{a: a, k: k}
	}
	for _, st := range a.h.liveStreams() {
		e.streamStarted(st)
	}
	return e
}

// h2RSTTimeEffect resets each HTTP/2 stream of its connection (that match
// selects: per stream, not per connection as for the connection faults)
// after the common key after, counted from the stream's start (or from the
// fault's attachment, for a stream already running).
type h2RSTTimeEffect struct {
	a *attachment
	k h2RSTStream
}

func (e *h2RSTTimeEffect) streamStarted(st *stream) {
	if !e.a.f.Spec.matches(st.path) {
		return
	}
	if !st.h2 {
		notH2(e.a, st, "HTTP/1.1")
		return
	}
	from := st.start
	if from.Before(e.a.since) {
		from = e.a.since
	}
	t := time.AfterFunc(time.Until(from.Add(e.a.f.after)), func() {
		if !e.a.isStopped() && !e.a.h.isDead() {
			st.resetH2(e.a, e.k.code, "after "+e.a.f.after.String())
		}
	})
	context.AfterFunc(st.ctx, func() { t.Stop() })
}

// h2RSTEventsEffect resets each HTTP/2 stream of its connection once that
// many SSE events were forwarded on it (events=0: before the first).
type h2RSTEventsEffect struct {
	a *attachment
	k h2RSTStream
}

func (e *h2RSTEventsEffect) streamStarted(st *stream) {
	if !st.h2 && e.a.f.Spec.matches(st.path) {
		notH2(e.a, st, "HTTP/1.1")
	}
}

func (e *h2RSTEventsEffect) unit(u *unit) {
	if e.k.events == 0 && u.st != nil && u.st.h2 && e.a.f.Spec.matches(u.st.path) && e.a.active(time.Now()) {
		u.st.resetH2(e.a, e.k.code, "before the first event")
		u.drop = true
	}
}

func (e *h2RSTEventsEffect) forwarded(u *unit) {
	st := u.st
	if e.k.events <= 0 || st == nil || !st.h2 || !u.event || !e.a.f.Spec.matches(st.path) || !e.a.active(time.Now()) {
		return
	}
	if st.events.Load() >= e.k.events {
		st.resetH2(e.a, e.k.code, fmt.Sprintf("after %d events", e.k.events))
	}
}

// ---- h2-goaway

type h2GoAway struct {
	code  http2.ErrCode
	grace time.Duration
}

func buildH2GoAway(fs FaultSpec, scale float64) (behaviour, error) {
	code, err := paramH2Code(fs, http2.ErrCodeNo)
	if err != nil {
		return nil, err
	}
	g, err := paramDuration(fs, "grace", 0)
	if err != nil {
		return nil, err
	}
	return h2GoAway{code, scaled(g, scale)}, nil
}

func (k h2GoAway) attach(a *attachment) any {
	a.at(a.start, func() { goAway(a, k) })
	return struct{}{}
}

// goAway sends GOAWAY on a client connection once its protocol is known,
// then closes it at a frame boundary, grace later.
func goAway(a *attachment, k h2GoAway) {
	h := a.h
	w := h.wire
	if w == nil {
		return
	}
	select {
	case <-w.detected:
	case <-h.dead:
		return
	}
	if a.isStopped() {
		return
	}
	if !w.isH2() {
		notH2(a, nil, "HTTP/1.1")
		return
	}
	last := w.maxStream.Load()
	name := errclass.H2Code(uint32(k.code))
	closeNow := k.grace <= 0
	if err := w.inject(goAwayFrame(last, k.code, "ssestress fault "+a.f.Spec.Name), closeNow); err != nil {
		a.fire(ActionGoAway, fmt.Sprintf("GOAWAY %s could not be sent (%v): connection closed", name, err))
		h.closeWith(ActionFIN, "proxy")
		return
	}
	class := errclass.H2GoAway(uint32(k.code))
	for _, st := range h.liveStreams() {
		if st.h2ID != 0 && st.h2ID <= last {
			st.setClientClass(class)
		}
	}
	if closeNow {
		a.fire(ActionGoAway, fmt.Sprintf("GOAWAY %s (last stream %d), connection closed", name, last))
		h.closeWith(ActionFIN, "proxy")
		return
	}
	a.fire(ActionGoAway, fmt.Sprintf("GOAWAY %s (last stream %d), connection closed %s later", name, last, k.grace))
	a.at(time.Now().Add(k.grace), func() {
		w.inject(nil, true) // stop the server's output at a frame boundary
		h.closeWith(ActionFIN, "proxy")
	})
}

// fireStream records a firing for one stream (its request number), or for
// the connection when st is nil.
func (a *attachment) fireStream(st *stream, action, detail string) {
	if a.h == nil {
		return
	}
	request := 0
	if st != nil {
		request = st.request
	}
	a.h.fireRequest(a.f, a.f.Spec.Direction, action, detail, request)
}

// resetH2 ends one HTTP/2 stream with RST_STREAM(code), written between
// two of the server's frames, then stops the stream's handler (its
// upstream request is cancelled). The server's later frames on that
// stream are ignored by the client, which has forgotten the stream. When
// the stream's id is unknown or the frame cannot be written, the stream is
// reset the only way net/http's server allows, with INTERNAL_ERROR, and the
// record says so.
func (st *stream) resetH2(a *attachment, code http2.ErrCode, why string) {
	if !st.cut.CompareAndSwap(false, true) {
		return
	}
	name := errclass.H2Code(uint32(code))
	var err error
	if st.h2ID == 0 {
		err = fmt.Errorf("the stream id is not known")
	} else {
		err = st.client.wire.injectAfter(rstStreamFrame(st.h2ID, code), false, st.h2ID, st.written.Load())
	}
	if err != nil {
		st.abort.Store(true)
		st.setClientClass(errclass.H2RSTStream(uint32(http2.ErrCodeInternal)))
		a.fireStream(st, ActionRSTStream, fmt.Sprintf("RST_STREAM %s could not be sent (%v): stream %s reset with INTERNAL_ERROR instead, %s", name, err, st.path, why))
	} else {
		st.setClientClass(errclass.H2RSTStream(uint32(code)))
		a.fireStream(st, ActionRSTStream, fmt.Sprintf("RST_STREAM %s on stream %d (%s) %s", name, st.h2ID, st.path, why))
	}
	st.cancel(errStreamCut)
}
