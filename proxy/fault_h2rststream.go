package proxy

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/net/http2"

	"github.com/ssestress/ssestress/internal/session"
)

// h2RSTStreamKind is the fault kind h2-rst-stream.
var h2RSTStreamKind = &kind{
	summary: "reset an HTTP/2 stream (RST_STREAM) after a time or a number of SSE events (HTTP/2 clients only)",
	hops:    []string{session.HopClient},
	keys: []keyDoc{{"code", "the error code, a name (CANCEL, INTERNAL_ERROR, REFUSED_STREAM, ...) or a number (default INTERNAL_ERROR)"},
		{"events", "reset once this many SSE events were forwarded on the stream (without it: after the key after, from the stream's start)"}},
	build: buildH2RSTStream,
}

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
