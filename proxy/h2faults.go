package proxy

import (
	"fmt"
	"strconv"
	"strings"

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
