package clients

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// manyHeaders adds 40,000 small headers (about 30 bytes each: 1.2 MB).
func manyHeaders(h http.Header) {
	for i := range 40000 {
		h.Add(fmt.Sprintf("X-Many-%05d", i), "small value")
	}
}

// TestSmallHeadersPastTheBound: more than 1 MiB of small response headers,
// then a body, is HEADER_TOO_LONG over HTTP/1.1 and HTTP/2 alike (and in
// the proxy): one bound, 1 MiB, not a malformed response or a protocol
// error.
func TestSmallHeadersPastTheBound(t *testing.T) {
	srv, clientTLS := h2TestServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		manyHeaders(w.Header())
		writeEvents(w, 1, 1)
	})
	var block strings.Builder
	many := http.Header{}
	manyHeaders(many)
	many.Write(&block)
	h1 := startHostile(t, func(s *hostileServer, c net.Conn) {
		if readRequest(c) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"+block.String()+"\r\ndata: x\n\n")
			<-s.closed
		}
	})
	for _, tc := range []struct {
		name string
		tr   Transport
		url  string
	}{
		{"HTTP/2", &HTTP2{TLSConfig: clientTLS}, srv.URL},
		{"HTTP/1.1", &HTTP1{}, h1.URL()},
	} {
		w, _ := newRecorder(t)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		var got *session.ErrorRecord
		opts := &Options{Transport: tc.tr, Recorder: w, NoReconnect: true,
			OnError: func(_ *Stream, rec *session.ErrorRecord) { got = rec; cancel() }}
		u, _ := ParseTarget(tc.url)
		NewStream("c0000", "", u, opts).Run(ctx)
		cancel()
		if got == nil || got.Class != errclass.HeaderTooLong {
			t.Errorf("%s: %+v, want %s", tc.name, got, errclass.HeaderTooLong)
		}
		if got != nil && !strings.Contains(got.Message, "1048576") {
			t.Errorf("%s: class %s, message %q", tc.name, got.Class, got.Message)
		}
	}
}
