package clients

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// testTimeout bounds every wait in these tests; generous because the
// machine is shared.
const testTimeout = 20 * time.Second

// accepted is one connection of rawServer with the request it carried.
type accepted struct {
	conn net.Conn
	req  *http.Request
	at   time.Time
}

// rawServer is a TCP server that reads one HTTP request per connection and
// hands the connection to the test, which writes whatever bytes it wants.
type rawServer struct {
	ln    net.Listener
	conns chan accepted
}

func newRawServer(t *testing.T) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, conns: make(chan accepted, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			at := time.Now()
			go func() {
				c.SetReadDeadline(time.Now().Add(testTimeout))
				req, err := http.ReadRequest(bufio.NewReader(c))
				c.SetReadDeadline(time.Time{})
				if err != nil {
					c.Close()
					return
				}
				s.conns <- accepted{c, req, at}
			}()
		}
	}()
	return s
}

func (s *rawServer) URL() string { return "http://" + s.ln.Addr().String() + "/stream" }

func (s *rawServer) next(t *testing.T) accepted {
	t.Helper()
	select {
	case a := <-s.conns:
		t.Cleanup(func() { a.conn.Close() })
		return a
	case <-time.After(testTimeout):
		t.Fatal("no connection from the client")
	}
	panic("unreachable")
}

const sseHeaders = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"

func writeChunk(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(s), s); err != nil {
		t.Error(err) // may run in a server goroutine: no Fatal
	}
}

// newRecorder creates a real session file in t.TempDir.
func newRecorder(t *testing.T) (*session.Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	w, err := session.Create(path, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

// readBack closes w and returns the conns and errors of the file.
func readBack(t *testing.T, w *session.Writer, path string) ([]session.ConnRecord, []session.ErrorRecord) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	conns, err := session.All[session.ConnRecord](r, session.BucketConns)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := session.All[session.ErrorRecord](r, session.BucketErrors)
	if err != nil {
		t.Fatal(err)
	}
	return conns, errs
}

// TestFailureClasses drives one client against servers that end the stream
// in each way the taxonomy distinguishes and checks the records in a real
// session file: the class, the 4-tuple as the server saw it, and whether
// the client retried.
func TestFailureClasses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		serve     func(t *testing.T, c net.Conn, gotEvent <-chan struct{})
		class     string
		permanent bool // the stream must fail for good, no reconnect
		events    int64
	}{
		{"reset mid-stream", func(t *testing.T, c net.Conn, gotEvent <-chan struct{}) {
			io.WriteString(c, sseHeaders)
			writeChunk(t, c, "retry: 60000\n\nid: 1\ndata: hello\n\n")
			<-gotEvent
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}, errclass.ECONNRESET, false, 1},
		{"clean end of chunked body", func(t *testing.T, c net.Conn, gotEvent <-chan struct{}) {
			io.WriteString(c, sseHeaders)
			writeChunk(t, c, "retry: 60000\n\nid: 1\ndata: hello\n\n")
			<-gotEvent
			io.WriteString(c, "0\r\n\r\n")
			c.Close()
		}, errclass.EOF, false, 1},
		{"cut inside a chunk", func(t *testing.T, c net.Conn, gotEvent <-chan struct{}) {
			io.WriteString(c, sseHeaders)
			writeChunk(t, c, "retry: 60000\n\nid: 1\ndata: hello\n\n")
			<-gotEvent
			io.WriteString(c, "100\r\nid: 2\ndata: partial")
			c.Close()
		}, errclass.UnexpectedEOF, false, 1},
		{"502", func(t *testing.T, c net.Conn, _ <-chan struct{}) {
			io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nbad")
		}, "HTTP_502", true, 0},
		{"wrong content type", func(t *testing.T, c net.Conn, _ <-chan struct{}) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello")
		}, errclass.BadContentType, true, 0},
		{"line too long", func(t *testing.T, c net.Conn, _ <-chan struct{}) {
			io.WriteString(c, sseHeaders)
			writeChunk(t, c, "retry: 60000\n\ndata: "+string(make([]byte, 300)))
		}, errclass.LineTooLong, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t)
			w, path := newRecorder(t)
			gotEvent := make(chan struct{})
			failed := make(chan struct{})
			var once, onceFail sync.Once
			opts := &Options{
				Recorder: w, Counters: &Counters{}, MaxLine: 200, Retry: time.Minute,
				OnFrame: func(s *Stream, f *sse.Frame, at time.Time) {
					if f.Kind == sse.KindEvent {
						once.Do(func() { close(gotEvent) })
					}
				},
				OnError: func(*Stream, *session.ErrorRecord) { onceFail.Do(func() { close(failed) }) },
			}
			u, _ := ParseTarget(srv.URL())
			s := NewStream("c0000", "AAPL", u, opts)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			runErr := make(chan error, 1)
			go func() { runErr <- s.Run(ctx) }()

			a := srv.next(t)
			if got := a.req.Header.Get("Accept"); got != "text/event-stream" {
				t.Errorf("Accept %q", got)
			}
			if got := a.req.Header.Get("Last-Event-ID"); got != "" {
				t.Errorf("first request carries Last-Event-ID %q", got)
			}
			serverLocal, serverRemote := a.conn.LocalAddr().String(), a.conn.RemoteAddr().String()
			go tc.serve(t, a.conn, gotEvent)

			select {
			case <-failed:
			case <-ctx.Done():
				t.Fatal("the client recorded no failure")
			}
			if tc.permanent {
				select {
				case err := <-runErr:
					if errclass.Classify(err) != tc.class {
						t.Errorf("Run returned %v, class %s", err, errclass.Classify(err))
					}
				case <-ctx.Done():
					t.Fatal("Run did not give up after a permanent failure")
				}
			} else {
				cancel() // a client close: must not be recorded as an error
				if err := <-runErr; err != nil {
					t.Errorf("Run after cancel: %v", err)
				}
			}

			conns, errs := readBack(t, w, path)
			if len(errs) != 1 {
				t.Fatalf("%d error records, want 1: %+v", len(errs), errs)
			}
			e := errs[0]
			if e.Class != tc.class {
				t.Errorf("class %s (%s), want %s", e.Class, e.Message, tc.class)
			}
			if e.LocalAddr != serverRemote || e.RemoteAddr != serverLocal {
				t.Errorf("4-tuple %s → %s, server saw %s → %s", e.LocalAddr, e.RemoteAddr, serverRemote, serverLocal)
			}
			if e.ClientID != "c0000" || e.Attempt != 0 || e.Events != tc.events || e.Source != "client" {
				t.Errorf("error record %+v", e)
			}
			if e.Age <= 0 || e.Idle < 0 || e.Idle > e.Age {
				t.Errorf("age %v, since last byte %v", e.Age, e.Idle)
			}
			if tc.events > 0 && e.LastEventID != "1" {
				t.Errorf("last event id %q, want 1", e.LastEventID)
			}
			if len(conns) < 1 {
				t.Fatal("no conn record")
			}
			c := conns[0]
			if c.EndClass != tc.class || c.End.IsZero() || c.Events != tc.events || c.LocalAddr != serverRemote {
				t.Errorf("conn record %+v", c)
			}
			if tc.permanent && len(conns) != 1 {
				t.Errorf("%d attempts after a permanent failure, want 1", len(conns))
			}
		})
	}
}

// TestDialRefused: nothing listens, the client records ECONNREFUSED and
// keeps retrying (a network error is not permanent for an EventSource).
func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w, path := newRecorder(t)
	var mu sync.Mutex
	n := 0
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	opts := &Options{Recorder: w, Retry: 10 * time.Millisecond, OnError: func(*Stream, *session.ErrorRecord) {
		mu.Lock()
		n++
		if n == 3 {
			cancel()
		}
		mu.Unlock()
	}}
	u, _ := ParseTarget("http://" + addr + "/stream")
	if err := NewStream("c0001", "", u, opts).Run(ctx); err != nil {
		t.Fatal(err)
	}
	conns, errs := readBack(t, w, path)
	if len(errs) < 3 || len(conns) < 3 {
		t.Fatalf("%d errors, %d attempts; want at least 3 each", len(errs), len(conns))
	}
	for _, e := range errs[:3] {
		if e.Class != errclass.ECONNREFUSED {
			t.Fatalf("class %s (%s)", e.Class, e.Message)
		}
	}
}

// TestReconnectSendsLastEventIDAndHonoursRetry: the server advertises
// retry: 300 and ends the stream; the client must come back after about
// 300 ms with the last id it saw.
func TestReconnectSendsLastEventIDAndHonoursRetry(t *testing.T) {
	srv := newRawServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var reconnects []time.Duration
	seen := make(chan string, 16)
	opts := &Options{
		OnReconnect: func(_ *Stream, _ int, d time.Duration) { reconnects = append(reconnects, d) },
		OnFrame: func(_ *Stream, f *sse.Frame, _ time.Time) {
			if f.Kind == sse.KindEvent {
				seen <- f.ID
			}
		},
	}
	u, _ := ParseTarget(srv.URL())
	s := NewStream("c0000", "", u, opts)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	first := srv.next(t)
	io.WriteString(first.conn, sseHeaders)
	writeChunk(t, first.conn, "retry: 300\n\nid: 7\nevent: quote\ndata: a\n\n")
	// Make sure the client has it before ending: a second event whose id
	// the client must also remember, then the end of the body.
	writeChunk(t, first.conn, "id: 8\ndata: b\n\n")
	closedAt := time.Now() // before the end is written: the client cannot see it earlier
	io.WriteString(first.conn, "0\r\n\r\n")
	first.conn.Close()

	second := srv.next(t)
	delay := second.at.Sub(closedAt)
	if got := second.req.Header.Get("Last-Event-ID"); got != "8" {
		t.Errorf("reconnect sent Last-Event-ID %q, want 8", got)
	}
	// Tolerance: never early (5 ms for clock granularity), at most 2 s late
	// on a loaded machine.
	if delay < 295*time.Millisecond || delay > 2300*time.Millisecond {
		t.Errorf("reconnected after %v, want about 300ms", delay)
	}
	// The second attempt sets another id, then resets: the third request
	// must carry that one, and a retry it did not repeat still applies.
	io.WriteString(second.conn, sseHeaders)
	writeChunk(t, second.conn, "id: 9\ndata: c\n\n")
	for id := ""; id != "9"; {
		select {
		case id = <-seen: // wait until the client has id 9 before the RST can discard it
		case <-ctx.Done():
			t.Fatal("the client never received id 9")
		}
	}
	second.conn.(*net.TCPConn).SetLinger(0)
	second.conn.Close()
	third := srv.next(t)
	if got := third.req.Header.Get("Last-Event-ID"); got != "9" {
		t.Errorf("second reconnect sent Last-Event-ID %q, want 9", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(reconnects) != 2 || reconnects[0] != 300*time.Millisecond || reconnects[1] != 300*time.Millisecond {
		t.Errorf("reconnect delays %v, want [300ms 300ms]", reconnects)
	}
}

// cutter is a TCP relay between a client and the embedded feed that can
// reset the client side on demand.
type cutter struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	current net.Conn
	ready   chan struct{}
}

func newCutter(t *testing.T, target string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, ready: make(chan struct{}, 8)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			c.mu.Lock()
			c.current = down
			c.mu.Unlock()
			c.ready <- struct{}{}
			go func() { io.Copy(up, down); up.Close() }()
			go func() { io.Copy(down, up); down.Close() }()
		}
	}()
	return c
}

// cut resets the current client connection.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil {
		c.current.(*net.TCPConn).SetLinger(0)
		c.current.Close()
		c.current = nil
	}
}

// TestResumeWithoutLossAgainstFeed cuts a client's connection to the
// embedded feed twice; every event id from the first to the last must
// arrive exactly once.
func TestResumeWithoutLossAgainstFeed(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}, Retry: 100 * time.Millisecond, Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	relay := newCutter(t, srv.Addr)
	w, path := newRecorder(t)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var mu sync.Mutex
	var ids []uint64
	reached := make(chan struct{}, 16)
	opts := &Options{Recorder: w, OnFrame: func(_ *Stream, f *sse.Frame, _ time.Time) {
		if f.Kind != sse.KindEvent {
			return
		}
		id, err := strconv.ParseUint(f.ID, 10, 64)
		if err != nil {
			t.Errorf("event id %q", f.ID)
			return
		}
		mu.Lock()
		ids = append(ids, id)
		if len(ids)%40 == 0 {
			select {
			case reached <- struct{}{}:
			default:
			}
		}
		mu.Unlock()
	}}
	u, _ := StreamURL("http://"+relay.ln.Addr().String(), "", []string{"AAPL", "MSFT"})
	done := make(chan error, 1)
	go func() { done <- NewStream("c0000", "AAPL,MSFT", u, opts).Run(ctx) }()

	wait := func(what string) {
		select {
		case <-reached:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	<-relay.ready
	wait("the first 40 events")
	relay.cut()
	wait("40 more events")
	relay.cut()
	wait("40 more events")
	wait("40 more events")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Fatalf("event %d has id %d after %d: lost or duplicated (ids %v...)", i, ids[i], ids[i-1], ids[max(0, i-3):min(len(ids), i+3)])
		}
	}
	conns, errs := readBack(t, w, path)
	resets := 0
	for _, e := range errs {
		if e.Class == errclass.ECONNRESET {
			resets++
		}
	}
	if resets != 2 || len(conns) != 3 {
		t.Fatalf("%d resets and %d attempts recorded, want 2 and 3; errors %+v", resets, len(conns), errs)
	}
	if conns[1].Events == 0 || conns[2].Events == 0 {
		t.Fatalf("a reconnect received nothing: %+v", conns)
	}
}

// TestTLSStream: an https URL goes through TLS on the same engine; the
// 4-tuple is the TCP one; an untrusted certificate is classified TLS.
func TestTLSStream(t *testing.T) {
	srv := httptest.NewUnstartedServer(feed.New(feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}}))
	srv.StartTLS()
	defer srv.Close()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	got := make(chan struct{})
	var once sync.Once
	opts := &Options{
		Transport: &HTTP1{TLSConfig: &tls.Config{RootCAs: pool}},
		OnFrame: func(_ *Stream, f *sse.Frame, _ time.Time) {
			if f.Kind == sse.KindEvent {
				once.Do(func() { close(got) })
			}
		},
		OnOpen: func(_ *Stream, rec *session.ConnRecord) {
			if rec.RemoteAddr != srv.Listener.Addr().String() || rec.LocalAddr == "" {
				t.Errorf("4-tuple %s → %s, server %s", rec.LocalAddr, rec.RemoteAddr, srv.Listener.Addr())
			}
		},
	}
	u, _ := StreamURL(srv.URL, "", []string{"AAPL"})
	done := make(chan error, 1)
	go func() { done <- NewStream("c0000", "AAPL", u, opts).Run(ctx) }()
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("no event over TLS")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Without the server's CA the handshake fails: class TLS.
	w, path := newRecorder(t)
	ctx2, cancel2 := context.WithTimeout(context.Background(), testTimeout)
	defer cancel2()
	bad := &Options{Recorder: w, Retry: time.Hour, OnError: func(*Stream, *session.ErrorRecord) { cancel2() }}
	NewStream("c0001", "AAPL", u, bad).Run(ctx2)
	_, errs := readBack(t, w, path)
	if len(errs) != 1 || errs[0].Class != errclass.TLS {
		t.Fatalf("errors %+v, want one TLS", errs)
	}
}

// TestClientEndsWithFIN: a stream the client ends (end of run, churn) is
// closed in order, with a FIN, even while the server is still writing:
// the server sees EOF, not ECONNRESET. (A socket closed with unread data
// makes the kernel send a RST, which every proxy and capture would record
// as a client reset.)
func TestClientEndsWithFIN(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverSaw := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverSaw <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		c.Read(buf) // the request
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
		readErr := make(chan error, 1)
		go func() {
			_, err := c.Read(buf)
			readErr <- err
		}()
		event := []byte(strings.Repeat("data: "+strings.Repeat("x", 1000)+"\n\n", 8))
		deadline := time.After(10 * time.Second)
		for {
			select {
			case err := <-readErr:
				serverSaw <- err
				return
			case <-deadline:
				serverSaw <- errors.New("the client never closed")
				return
			default:
			}
			if _, err := c.Write(event); err != nil {
				serverSaw <- err
				return
			}
		}
	}()
	u, _ := url.Parse("http://" + ln.Addr().String() + "/stream")
	ctx, cancel := context.WithCancel(context.Background())
	var events atomic.Int64
	s := NewStream("c0000", "", u, &Options{OnFrame: func(*Stream, *sse.Frame, time.Time) {
		if events.Add(1) == 50 {
			cancel()
		}
	}, NoReconnect: true})
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end")
	}
	if err := <-serverSaw; !errors.Is(err, io.EOF) {
		t.Fatalf("the server saw %v, want EOF (a FIN)", err)
	}
}
