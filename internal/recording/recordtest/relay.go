// Package recordtest is a minimal recording relay for tests of the
// recording and replay packages: a real HTTP server on a loopback socket
// that forwards each request to one upstream and feeds the Recorder exactly
// as an ssestress proxy does (Begin, Response, Write per forwarded piece,
// End with who closed and how). It has no faults and no session records of
// its own; it exists so recording can be tested before, and independently
// of, the proxy.
package recordtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

// Relay forwards requests to Upstream and records them with Rec.
type Relay struct {
	URL      string // http://127.0.0.1:port
	upstream string
	rec      *recording.Recorder
	srv      *http.Server
	client   *http.Client
	seq      atomic.Int64
}

// Start listens on 127.0.0.1:0 and relays to upstream (a base URL such as
// http://127.0.0.1:3000).
func Start(upstream string, rec *recording.Recorder) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{
		URL:      "http://" + ln.Addr().String(),
		upstream: upstream,
		rec:      rec,
		client: &http.Client{Transport: &http.Transport{
			Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 64,
		}},
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

// Close stops the relay and ends the streams it forwards.
func (r *Relay) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r.srv.Shutdown(ctx)
	r.srv.Close()
}

// ServeHTTP relays one request and records it.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	connID := "relay-" + strconv.FormatInt(r.seq.Add(1), 10)
	s := r.rec.Begin(connID, req, start)
	out, err := http.NewRequestWithContext(req.Context(), req.Method, r.upstream+req.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		s.End(session.EndedByProxy, session.EndingFIN, errclass.Classify(err), time.Now())
		return
	}
	out.Header = req.Header.Clone()
	resp, err := r.client.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		s.End(session.EndedByProxy, session.EndingFIN, errclass.Classify(err), time.Now())
		return
	}
	defer resp.Body.Close()
	s.Response(resp.StatusCode, resp.Header, time.Now())
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				s.End(session.EndedByClient, how(werr), errclass.Classify(werr), time.Now())
				return
			}
			rc.Flush()
			s.Write(buf[:n], time.Now())
		}
		if rerr == nil {
			continue
		}
		switch {
		case req.Context().Err() != nil:
			s.End(session.EndedByClient, session.EndingFIN, "", time.Now())
		case errors.Is(rerr, io.EOF):
			s.End(session.EndedByUpstream, session.EndingFIN, errclass.EOF, time.Now())
		default:
			s.End(session.EndedByUpstream, how(rerr), errclass.Classify(rerr), time.Now())
			// Pass a failed upstream on as a cut, not a clean end.
			panic(http.ErrAbortHandler)
		}
		return
	}
}

func how(err error) string {
	if errors.Is(err, syscall.ECONNRESET) {
		return session.EndingRST
	}
	return session.EndingFIN
}

// String names the relay.
func (r *Relay) String() string { return fmt.Sprintf("relay %s → %s", r.URL, r.upstream) }
