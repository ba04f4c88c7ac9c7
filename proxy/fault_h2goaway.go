package proxy

import (
	"fmt"
	"time"

	"golang.org/x/net/http2"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// h2GoAwayKind is the fault kind h2-goaway.
var h2GoAwayKind = &kind{
	summary: "send GOAWAY on an HTTP/2 connection, then close it (HTTP/2 clients only)",
	hops:    []string{session.HopClient},
	keys: []keyDoc{{"code", "the error code, a name (NO_ERROR, PROTOCOL_ERROR, ENHANCE_YOUR_CALM, ...) or a number (default NO_ERROR)"},
		{"grace", "time between the GOAWAY and the close, the streams going on meanwhile (default 0)"}},
	build: buildH2GoAway,
}

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
