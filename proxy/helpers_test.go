package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// startFeed runs the embedded server on a free loopback port.
func startFeed(t testing.TB, cfg feed.Config) *feed.Running {
	t.Helper()
	srv, err := feed.Start("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// startProxy starts a proxy on a free loopback port, closed at cleanup.
func startProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// withFaults parses specs for a Config.
func withFaults(t testing.TB, specs ...string) []FaultSpec {
	t.Helper()
	var out []FaultSpec
	for _, s := range specs {
		f, err := ParseFault(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// newSession creates a session file in a temp dir.
func newSession(t testing.TB) (*session.Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	w, err := session.Create(path, session.Options{FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

// readSession closes the proxy and the writer, then reads the file.
func readSession(t testing.TB, p *Proxy, w *session.Writer, path string) ([]session.HopConn, []session.FaultEvent) {
	t.Helper()
	p.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	hops, err := session.All[session.HopConn](r, session.BucketHopConns)
	if err != nil {
		t.Fatal(err)
	}
	faults, err := session.All[session.FaultEvent](r, session.BucketFaults)
	if err != nil {
		t.Fatal(err)
	}
	return hops, faults
}

// oneRecordedStream reads the recording of a closed session file that
// must hold exactly one stream.
func oneRecordedStream(t testing.TB, path string) *recording.Stored {
	t.Helper()
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	loaded, err := recording.Read(r)
	if err != nil || len(loaded.Streams) != 1 {
		t.Fatalf("recording: %v, %d streams", err, len(loaded.Streams))
	}
	return loaded.Streams[0]
}

// client is a plain net/http client that never uses the environment's
// proxy and opens one connection per request.
func client() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DisableCompression: true}}
}

// got is what a client saw of one stream.
type got struct {
	status   int
	events   []sse.Frame
	arrivals []time.Time
	comments []time.Time
	start    time.Time
	err      error // what ended it (nil: stopped by the test)
	class    string
	endAt    time.Time
	proto    int // the response's major HTTP version
}

// readStream GETs url and reads events until the stream ends, max events
// (0: no limit) are read, or the deadline passes.
func readStream(t testing.TB, url string, max int, deadline time.Duration) got {
	t.Helper()
	return readStreamWith(t, client(), url, max, deadline)
}

// readStreamWith is readStream with a client of the test's choice.
func readStreamWith(t testing.TB, c *http.Client, url string, max int, deadline time.Duration) got {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	g := got{start: time.Now()}
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		g.err, g.class, g.endAt = err, errclass.Classify(err), time.Now()
		return g
	}
	defer resp.Body.Close()
	g.status, g.proto = resp.StatusCode, resp.ProtoMajor
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
		g.err = &errclass.StatusError{Code: resp.StatusCode}
		g.class, g.endAt = errclass.Classify(g.err), time.Now()
		return g
	}
	dec := sse.NewDecoder(resp.Body, 0)
	for max == 0 || len(g.events) < max {
		f, err := dec.Next()
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return g // the deadline: stopped by the test
			}
			g.err, g.class, g.endAt = err, errclass.Classify(err), now
			return g
		}
		switch f.Kind {
		case sse.KindEvent:
			g.events = append(g.events, f)
			g.arrivals = append(g.arrivals, now)
		case sse.KindComment:
			g.comments = append(g.comments, now)
		}
	}
	return g
}

// script is a test SSE server whose handler the test writes.
func script(t testing.TB, h func(w http.ResponseWriter, r *http.Request, flush func())) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(200)
		f := w.(http.Flusher)
		f.Flush()
		h(w, r, f.Flush)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// ticker sends n events every gap, then holds the stream open until the
// client leaves (or hold ends). Each event's data is its send time in
// UnixNano.
func ticker(n int, gap, hold time.Duration) func(w http.ResponseWriter, r *http.Request, flush func()) {
	return func(w http.ResponseWriter, r *http.Request, flush func()) {
		t := time.NewTicker(gap)
		defer t.Stop()
		for i := 1; i <= n; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
			sse.WriteEvent(w, strconv.Itoa(i), "tick", strconv.FormatInt(time.Now().UnixNano(), 10))
			flush()
		}
		select {
		case <-r.Context().Done():
		case <-time.After(hold):
		}
	}
}

// sentAt reads the send time a ticker put in an event.
func sentAt(f sse.Frame) time.Time {
	n, _ := strconv.ParseInt(string(f.Data), 10, 64)
	return time.Unix(0, n)
}

// resetter accepts HTTP requests on a raw socket, answers an SSE head and
// n events, then resets the connection (SetLinger(0) + Close).
func resetter(t testing.TB, n int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				c.Read(buf) // the request head (small)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
				for i := 1; i <= n; i++ {
					ev := fmt.Sprintf("id: %d\ndata: %d\n\n", i, i)
					fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
					time.Sleep(20 * time.Millisecond)
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// within fails unless |got-want| <= tol.
func within(t testing.TB, what string, got, want, tol time.Duration) {
	t.Helper()
	if d := got - want; d < -tol || d > tol {
		t.Errorf("%s = %v, want %v ± %v", what, got, want, tol)
	}
}

// waitFor polls cond every 10 ms for at most d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errStopped = errors.New("stopped")

// live is a stream read in the background, frame by frame.
type live struct {
	start  time.Time
	frames chan liveFrame
	cancel context.CancelFunc
	status int
}

type liveFrame struct {
	f     sse.Frame
	at    time.Time
	err   error // set on the last one
	class string
}

// openLive GETs url and reads it in the background until it ends or the
// test ends.
func openLive(t testing.TB, url string) *live {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	l := &live{start: time.Now(), frames: make(chan liveFrame, 10000), cancel: cancel}
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	l.status = resp.StatusCode
	go func() {
		defer resp.Body.Close()
		dec := sse.NewDecoder(resp.Body, 0)
		for {
			f, err := dec.Next()
			lf := liveFrame{f: f, at: time.Now(), err: err}
			if err != nil {
				lf.class = errclass.Classify(err)
				l.frames <- lf
				close(l.frames)
				return
			}
			l.frames <- lf
		}
	}()
	return l
}

// next returns the next event (comments skipped) or the end, waiting at
// most d; ok false means nothing came in d.
func (l *live) next(d time.Duration) (liveFrame, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case lf, open := <-l.frames:
			if !open {
				return liveFrame{err: errStopped, class: "CLOSED"}, true
			}
			if lf.err == nil && lf.f.Kind != sse.KindEvent {
				continue
			}
			return lf, true
		case <-timer.C:
			return liveFrame{}, false
		}
	}
}

// end reads events until the stream ends (within d) and returns them and
// the end.
func (l *live) end(t testing.TB, d time.Duration) ([]liveFrame, liveFrame) {
	t.Helper()
	var evs []liveFrame
	deadline := time.Now().Add(d)
	for {
		lf, ok := l.next(time.Until(deadline))
		if !ok {
			t.Fatalf("stream did not end within %v (%d events)", d, len(evs))
		}
		if lf.err != nil {
			return evs, lf
		}
		evs = append(evs, lf)
	}
}

// rawGet sends a GET with Connection: close on a raw socket and reads
// until EOF or error: what a client's socket sees, byte for byte.
type rawResult struct {
	data     []byte
	lastData time.Time // when the last bytes came
	end      time.Time
	err      error // nil: EOF
	class    string
}

func rawGet(t testing.TB, addr, path string, d time.Duration) rawResult {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawResult{end: time.Now(), err: err, class: errclass.Classify(err)}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	var r rawResult
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr); err != nil {
		// A reset that came before the request is reported by the write
		// (the read after it would see a plain EOF).
		r.end, r.err, r.class = time.Now(), err, errclass.Classify(err)
		return r
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		now := time.Now()
		if n > 0 {
			r.data = append(r.data, buf[:n]...)
			r.lastData = now
		}
		if err != nil {
			r.end = now
			if err != io.EOF {
				r.err, r.class = err, errclass.Classify(err)
			}
			return r
		}
	}
}

// scriptHandler serves h on a free loopback port and returns its URL.
func scriptHandler(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
