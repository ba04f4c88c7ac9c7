package clients

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// startTLSFeed starts the embedded server with a generated certificate and
// returns it with a client TLS config that trusts it.
func startTLSFeed(t *testing.T) (*feed.Running, *tls.Config) {
	t.Helper()
	srvCfg, certPEM, err := tlsutil.ServerConfig(tlsutil.ServerOptions{SelfSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := feed.StartTLS("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}}, srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	pool, err := tlsutil.PoolOf(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return srv, &tls.Config{RootCAs: pool}
}

// TestHTTP2StreamsShareOneConnection: a flood over --http2 puts every
// stream on one TCP connection (as a browser's EventSources to one origin),
// each stream receives events, and the 4-tuple in the records is that
// connection's. Over h2c (http://) the same holds.
func TestHTTP2StreamsShareOneConnection(t *testing.T) {
	tlsSrv, clientTLS := startTLSFeed(t)
	plainSrv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}})
	if err != nil {
		t.Fatal(err)
	}
	defer plainSrv.Shutdown()

	for _, tc := range []struct {
		name   string
		target string
	}{{"h2 over TLS", tlsSrv.URL}, {"h2c", plainSrv.URL}} {
		t.Run(tc.name, func(t *testing.T) {
			const conns = 8
			tr := &HTTP2{TLSConfig: clientTLS}
			w, path := newRecorder(t)
			counters := &Counters{}
			var maxShared atomic.Int64
			opts := &Options{Transport: tr, Recorder: w, Counters: counters,
				OnFrame: func(*Stream, *sse.Frame, time.Time) {
					if n := tr.Connections(); n > maxShared.Load() {
						maxShared.Store(n)
					}
				}}
			plan := Plan{Connections: conns, Ramp: Rate{200, 200}, Seed: 1}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			res, err := Run(ctx, RunConfig{Plan: plan, Duration: 1500 * time.Millisecond, Target: tc.target, Options: opts})
			if err != nil || res.AllFailed {
				t.Fatalf("run: %+v, %v", res, err)
			}
			if e := counters.Errors(); len(e) != 0 {
				t.Fatalf("errors %v", e)
			}
			records, _ := readBack(t, w, path)
			if len(records) != conns {
				t.Fatalf("%d attempts, want %d", len(records), conns)
			}
			tuples := map[string]bool{}
			for _, r := range records {
				if r.Events == 0 || r.Status != 200 {
					t.Errorf("%s: %d events, status %d", r.ClientID, r.Events, r.Status)
				}
				if r.Connected.IsZero() || r.LocalAddr == "" {
					t.Errorf("%s: no connection info: %+v", r.ClientID, r)
				}
				tuples[r.LocalAddr+" "+r.RemoteAddr] = true
			}
			if len(tuples) != 1 {
				t.Fatalf("streams used %d connections, want 1: %v", len(tuples), tuples)
			}
			if maxShared.Load() != 1 {
				t.Errorf("transport held up to %d connections, want 1", maxShared.Load())
			}
			// The streams are closed; closing the idle connection leaves none.
			tr.CloseIdleConnections()
			for deadline := time.Now().Add(testTimeout); tr.Connections() != 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections left open", tr.Connections())
				}
			}
		})
	}
}

// h2TestServer is an https server with HTTP/2 whose stream handler is
// given per request number (0 for the first).
func h2TestServer(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *tls.Config) {
	t.Helper()
	var requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(requests.Add(1) - 1)
		w.Header().Set("Content-Type", "text/event-stream")
		handle(n, w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	return srv, &tls.Config{RootCAs: pool}
}

// writeEvents writes events ids from..to and flushes.
func writeEvents(w http.ResponseWriter, from, to int) {
	fmt.Fprint(w, "retry: 50\n\n")
	for id := from; id <= to; id++ {
		fmt.Fprintf(w, "id: %d\ndata: quote %d\n\n", id, id)
	}
	w.(http.Flusher).Flush()
}

// TestHTTP2StreamReset: the server resets the stream (RST_STREAM
// INTERNAL_ERROR, what net/http sends when a handler aborts); the client
// records H2_RST_STREAM:INTERNAL_ERROR with the shared connection's
// 4-tuple and reconnects on the same connection with Last-Event-ID.
func TestHTTP2StreamReset(t *testing.T) {
	secondID := make(chan string, 1)
	srv, clientTLS := h2TestServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			writeEvents(w, 1, 2)
			time.Sleep(20 * time.Millisecond) // the events leave before the reset
			panic(http.ErrAbortHandler)
		}
		select {
		case secondID <- r.Header.Get("Last-Event-ID"):
		default:
		}
		writeEvents(w, 3, 3)
		<-r.Context().Done()
	})
	w, path := newRecorder(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var events atomic.Int64
	opts := &Options{Transport: &HTTP2{TLSConfig: clientTLS}, Recorder: w,
		OnFrame: func(_ *Stream, f *sse.Frame, _ time.Time) {
			if f.Kind == sse.KindEvent && events.Add(1) == 3 {
				cancel()
			}
		}}
	u, _ := StreamURL(srv.URL, "", []string{"AAPL"})
	if err := NewStream("c0000", "AAPL", u, opts).Run(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-secondID:
		if id != "2" {
			t.Errorf("reconnect sent Last-Event-ID %q, want 2", id)
		}
	default:
		t.Fatal("no reconnect")
	}
	conns, errs := readBack(t, w, path)
	if len(errs) != 1 {
		t.Fatalf("errors %+v", errs)
	}
	e := errs[0]
	if e.Class != "H2_RST_STREAM:INTERNAL_ERROR" || e.Events != 2 || e.LastEventID != "2" {
		t.Fatalf("error record %+v", e)
	}
	serverAddr := srv.Listener.Addr().String()
	if e.RemoteAddr != serverAddr || e.LocalAddr == "" {
		t.Errorf("4-tuple %s → %s, server %s", e.LocalAddr, e.RemoteAddr, serverAddr)
	}
	if len(conns) != 2 || conns[0].EndClass != e.Class || conns[0].ClosedBy != session.ClosedByPeer {
		t.Fatalf("conn records %+v", conns)
	}
	// A stream reset leaves the connection up: the reconnect reuses it.
	if conns[1].LocalAddr != e.LocalAddr {
		t.Errorf("reconnect on %s, the reset stream was on %s", conns[1].LocalAddr, e.LocalAddr)
	}
}

// TestHTTP2GoAway: the server shuts down gracefully (GOAWAY NO_ERROR) and
// then drops the connection while streams are open: every stream on it
// records H2_GOAWAY:NO_ERROR.
func TestHTTP2GoAway(t *testing.T) {
	var started sync.WaitGroup
	const streams = 3
	started.Add(streams)
	srv, clientTLS := h2TestServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		writeEvents(w, 1, 1)
		if n < streams {
			started.Done()
		}
		<-r.Context().Done()
	})
	w, path := newRecorder(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var failed sync.WaitGroup
	failed.Add(streams)
	opts := &Options{Transport: &HTTP2{TLSConfig: clientTLS}, Recorder: w, Retry: time.Hour,
		OnError: func(*Stream, *session.ErrorRecord) { failed.Done() }}
	var runs sync.WaitGroup
	for i := range streams {
		u, _ := StreamURL(srv.URL, "", []string{"AAPL"})
		s := NewStream(ClientID(i), "AAPL", u, opts)
		runs.Add(1)
		go func() { defer runs.Done(); s.Run(ctx) }()
	}
	waitGroup(t, &started, "streams did not start")
	shutCtx, shutCancel := context.WithTimeout(context.Background(), time.Second)
	srv.Config.Shutdown(shutCtx) // GOAWAY; then waits for the open streams in vain
	shutCancel()
	srv.CloseClientConnections()
	waitGroup(t, &failed, "streams did not fail")
	cancel()
	runs.Wait()
	_, errs := readBack(t, w, path)
	if len(errs) != streams {
		t.Fatalf("%d errors, want %d: %+v", len(errs), streams, errs)
	}
	for _, e := range errs {
		if e.Class != "H2_GOAWAY:NO_ERROR" || e.RemoteAddr != srv.Listener.Addr().String() {
			t.Errorf("error record %+v", e)
		}
		if e.LocalAddr != errs[0].LocalAddr {
			t.Errorf("streams on different connections: %s, %s", e.LocalAddr, errs[0].LocalAddr)
		}
	}
}

// waitGroup waits for wg for testTimeout at most.
func waitGroup(t *testing.T, wg *sync.WaitGroup, msg string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal(msg)
	}
}

// TestHTTP2NeedsALPN: an HTTP/1.1-only https server cannot carry --http2;
// the probe and the stream both say so, classified TLS.
func TestHTTP2NeedsALPN(t *testing.T) {
	srv := httptest.NewUnstartedServer(feed.New(feed.Config{}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()                                   // EnableHTTP2 unset: ALPN offers http/1.1 only
	defer srv.Close()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	clientTLS := &tls.Config{RootCAs: pool}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := ProbeWith(ctx, srv.URL, testTimeout, ProbeOptions{TLSConfig: clientTLS, HTTP2: true})
	if !errors.Is(err, ErrNoHTTP2) || errclass.Classify(err) != errclass.TLS || !strings.Contains(err.Error(), `"http/1.1"`) {
		t.Fatalf("probe: %v (%s)", err, errclass.Classify(err))
	}
	if err := ProbeWith(ctx, srv.URL, testTimeout, ProbeOptions{TLSConfig: clientTLS}); err != nil {
		t.Fatalf("HTTP/1.1 probe: %v", err)
	}

	w, path := newRecorder(t)
	opts := &Options{Transport: &HTTP2{TLSConfig: clientTLS}, Recorder: w, Retry: time.Hour,
		OnError: func(*Stream, *session.ErrorRecord) { cancel() }}
	u, _ := StreamURL(srv.URL, "", []string{"AAPL"})
	NewStream("c0000", "AAPL", u, opts).Run(ctx)
	_, errs := readBack(t, w, path)
	if len(errs) != 1 || errs[0].Class != errclass.TLS || !strings.Contains(errs[0].Message, "did not negotiate HTTP/2") {
		t.Fatalf("errors %+v", errs)
	}
}

// TestRunGroupPaths: a group with its own path asks for it; the others use
// the run's path.
func TestRunGroupPaths(t *testing.T) {
	var mu sync.Mutex
	paths := map[string]bool{}
	inner := feed.New(feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}})
	defer inner.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths[r.URL.Path+"?"+r.URL.RawQuery] = true
		mu.Unlock()
		r.URL.Path = "/stream"
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := Run(ctx, RunConfig{
		Plan: Plan{Connections: 2, Ramp: Rate{100, 100}, Seed: 1}, Duration: 500 * time.Millisecond, Target: srv.URL,
		Groups: [][]string{{"AAPL"}, {"MSFT"}}, GroupPaths: []string{"/v2/quotes?s={symbols}", ""}, Options: &Options{},
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !paths["/v2/quotes?s=AAPL"] || !paths["/stream?symbols=MSFT"] || len(paths) != 2 {
		t.Fatalf("requested %v", paths)
	}
}
