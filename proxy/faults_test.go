package proxy

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// Timing tolerances of these tests, on a shared 2-core machine with -race:
// a fault's own timer fires within a millisecond or two; what a client sees
// adds the loopback and scheduling delays of three processes' worth of
// goroutines.
const (
	tolTight = 50 * time.Millisecond // the bound (idle-timeout)
	tolLoose = 80 * time.Millisecond
)

// hopRecord finds the HopConn of a hop (first request).
func hopRecord(t *testing.T, hops []session.HopConn, hop string) session.HopConn {
	t.Helper()
	for _, h := range hops {
		if h.Hop == hop && h.Request <= 1 {
			return h
		}
	}
	t.Fatalf("no %s HopConn in %+v", hop, hops)
	return session.HopConn{}
}

func TestEventsArriveOneByOne(t *testing.T) {
	srv := script(t, ticker(8, 100*time.Millisecond, time.Second))
	p := startProxy(t, Config{Upstream: srv.URL})
	l := openLive(t, p.URL()+"/ticks")
	var prev time.Time
	for i := 1; i <= 8; i++ {
		lf, ok := l.next(3 * time.Second)
		if !ok || lf.err != nil {
			t.Fatalf("event %d: %v", i, lf.err)
		}
		if lat := lf.at.Sub(sentAt(lf.f)); lat > 30*time.Millisecond {
			t.Errorf("event %d took %v through the proxy (buffered?)", i, lat)
		}
		if i > 1 {
			within(t, "gap before event "+strconv.Itoa(i), lf.at.Sub(prev), 100*time.Millisecond, tolLoose)
		}
		prev = lf.at
	}
}

// TestReset: the same fault on each hop gives the client ECONNRESET, and
// the session file tells the hops apart.
func TestReset(t *testing.T) {
	for _, hop := range []string{session.HopClient, session.HopUpstream} {
		t.Run(hop, func(t *testing.T) {
			srv := script(t, ticker(100, 50*time.Millisecond, time.Second))
			w, path := newSession(t)
			p := startProxy(t, Config{Upstream: srv.URL, Name: "p1", Session: w,
				Faults: withFaults(t, "reset:hop="+hop+",after=300ms")})
			l := openLive(t, p.URL()+"/ticks")
			evs, end := l.end(t, 5*time.Second)
			if end.class != errclass.ECONNRESET {
				t.Fatalf("client saw %s (%v), want ECONNRESET", end.class, end.err)
			}
			within(t, "reset time", end.at.Sub(l.start), 300*time.Millisecond, tolLoose)
			if len(evs) < 3 {
				t.Errorf("only %d events before the reset", len(evs))
			}
			hops, faults := readSession(t, p, w, path)
			if len(faults) != 1 || faults[0].Hop != hop || faults[0].FaultKind != "reset" || faults[0].Action != "rst" {
				t.Fatalf("fault events %+v, want one reset on hop %s", faults, hop)
			}
			hc := hopRecord(t, hops, hop)
			if hc.ClosedBy != session.ClosedBySelf || hc.Ending != session.EndingRST || len(hc.Faults) != 1 || hc.Faults[0].FaultKind != "reset" {
				t.Errorf("%s HopConn: closed by %q how %q faults %+v", hop, hc.ClosedBy, hc.Ending, hc.Faults)
			}
			client, upstream := hopRecord(t, hops, session.HopClient), hopRecord(t, hops, session.HopUpstream)
			if client.ConnID != upstream.ConnID || client.ConnID != "p1-1" {
				t.Errorf("conn ids %q and %q, want both p1-1", client.ConnID, upstream.ConnID)
			}
			if hop == session.HopUpstream {
				if client.OnUpstreamError != UpstreamReset || len(client.Faults) != 0 {
					t.Errorf("client HopConn: upstream error action %q, faults %+v", client.OnUpstreamError, client.Faults)
				}
			} else if upstream.OnUpstreamError != "" || len(upstream.Faults) != 0 {
				t.Errorf("upstream HopConn has %+v", upstream)
			}
			if client.EventsDown < 3 || upstream.EventsDown < client.EventsDown || client.BytesDown == 0 || upstream.BytesUp == 0 {
				t.Errorf("counters: client %+v upstream %+v", client, upstream)
			}
		})
	}
}

func TestResetAfterBytes(t *testing.T) {
	srv := script(t, ticker(100, 20*time.Millisecond, time.Second))
	w, path := newSession(t)
	p := startProxy(t, Config{Upstream: srv.URL, Session: w, Faults: withFaults(t, "reset:bytes=700")})
	l := openLive(t, p.URL()+"/ticks")
	_, end := l.end(t, 5*time.Second)
	if end.class != errclass.ECONNRESET {
		t.Fatalf("client saw %s, want ECONNRESET", end.class)
	}
	hops, _ := readSession(t, p, w, path)
	if c := hopRecord(t, hops, session.HopClient); c.BytesDown != 700 {
		t.Errorf("client hop passed %d bytes down, want exactly 700", c.BytesDown)
	}
}

func TestResetAfterEvents(t *testing.T) {
	for _, hop := range []string{session.HopClient, session.HopUpstream} {
		t.Run(hop, func(t *testing.T) {
			srv := script(t, ticker(100, 20*time.Millisecond, time.Second))
			p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "reset:hop="+hop+",events=3")})
			l := openLive(t, p.URL()+"/ticks")
			evs, end := l.end(t, 5*time.Second)
			if end.class != errclass.ECONNRESET || len(evs) != 3 {
				t.Fatalf("client saw %d events then %s, want 3 then ECONNRESET", len(evs), end.class)
			}
		})
	}
}

// heartbeats sends n comments every gap, then stays silent until the
// client leaves.
func heartbeats(n int, gap time.Duration) func(w http.ResponseWriter, r *http.Request, flush func()) {
	return func(w http.ResponseWriter, r *http.Request, flush func()) {
		t := time.NewTicker(gap)
		defer t.Stop()
		for i := 0; i < n; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
			sse.WriteComment(w, "heartbeat")
			flush()
		}
		<-r.Context().Done()
	}
}

// TestIdleTimeout: heartbeats every 100 ms keep a 300 ms idle timeout from
// firing; once they stop it fires within 50 ms of the bound.
func TestIdleTimeout(t *testing.T) {
	for _, c := range []struct{ action, class string }{{"rst", errclass.ECONNRESET}, {"fin", errclass.UnexpectedEOF}} {
		t.Run(c.action, func(t *testing.T) {
			srv := script(t, heartbeats(10, 100*time.Millisecond))
			w, path := newSession(t)
			p := startProxy(t, Config{Upstream: srv.URL, Session: w,
				Faults: withFaults(t, "idle-timeout:idle=300ms,action="+c.action)})
			g := readStream(t, p.URL()+"/hb", 0, 10*time.Second)
			if g.class != c.class {
				t.Fatalf("client saw %s (%v), want %s", g.class, g.err, c.class)
			}
			if len(g.comments) < 9 {
				t.Fatalf("only %d heartbeats arrived before the close: the timeout fired while they flowed", len(g.comments))
			}
			_, faults := readSession(t, p, w, path)
			if len(faults) != 1 || faults[0].FaultKind != "idle-timeout" || faults[0].Action != c.action {
				t.Fatalf("fault events %+v", faults)
			}
			// The proxy fired within 50 ms of the bound (it measures the
			// silence on its own socket); the client saw the close within
			// that plus the path's scheduling delays.
			var idle time.Duration
			if f := strings.Fields(faults[0].Detail); len(f) > 1 && f[0] == "idle" {
				idle, _ = time.ParseDuration(f[1])
			}
			within(t, "silence the proxy measured when it fired", idle, 300*time.Millisecond, tolTight)
			last := g.comments[len(g.comments)-1]
			within(t, "silence the client saw before the close", g.endAt.Sub(last), 300*time.Millisecond, tolLoose)
			t.Logf("proxy: %s; client: closed %v after the last heartbeat", faults[0].Detail, g.endAt.Sub(last))
		})
	}
}

func TestMaxAge(t *testing.T) {
	srv := script(t, ticker(100, 50*time.Millisecond, time.Second))
	p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "max-age:age=400ms")})
	l := openLive(t, p.URL()+"/ticks")
	evs, end := l.end(t, 5*time.Second)
	if end.class != errclass.UnexpectedEOF {
		t.Fatalf("client saw %s, want UNEXPECTED_EOF (a FIN in the middle of the chunked body)", end.class)
	}
	within(t, "age at close", end.at.Sub(l.start), 400*time.Millisecond, tolLoose)
	if len(evs) < 4 {
		t.Errorf("only %d events", len(evs))
	}
}

// TestNATDrop: traffic every 100 ms keeps the flow; after 400 ms of
// silence the next event meets a reset.
func TestNATDrop(t *testing.T) {
	srv := script(t, func(w http.ResponseWriter, r *http.Request, flush func()) {
		for i := 1; i <= 6; i++ {
			time.Sleep(100 * time.Millisecond)
			sse.WriteEvent(w, strconv.Itoa(i), "", "x")
			flush()
		}
		time.Sleep(400 * time.Millisecond)
		sse.WriteEvent(w, "7", "", strconv.FormatInt(time.Now().UnixNano(), 10))
		flush()
		<-r.Context().Done()
	})
	w, path := newSession(t)
	p := startProxy(t, Config{Upstream: srv.URL, Session: w, Faults: withFaults(t, "nat-drop:idle=250ms")})
	l := openLive(t, p.URL()+"/nat")
	evs, end := l.end(t, 5*time.Second)
	if len(evs) != 6 || end.class != errclass.ECONNRESET {
		t.Fatalf("client saw %d events then %s, want 6 then ECONNRESET", len(evs), end.class)
	}
	within(t, "reset after the last event", end.at.Sub(evs[5].at), 400*time.Millisecond, tolLoose)
	_, faults := readSession(t, p, w, path)
	if len(faults) != 1 || faults[0].FaultKind != "nat-drop" || !strings.Contains(faults[0].Detail, "forgotten") {
		t.Fatalf("fault events %+v", faults)
	}
}

// TestLatency: a delay longer than the gap between events delays each by
// the same amount, on either hop.
func TestLatency(t *testing.T) {
	for _, hop := range []string{session.HopClient, session.HopUpstream} {
		t.Run(hop, func(t *testing.T) {
			srv := script(t, ticker(6, 100*time.Millisecond, time.Second))
			p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "latency:delay=250ms,hop="+hop)})
			checkDelays(t, openLive(t, p.URL()+"/ticks"), 6, 250*time.Millisecond)
		})
	}
}

// TestBandwidth reads a raw socket: net/http's client hands out a chunk
// only once all of it has arrived, which would hide the pacing.
func TestBandwidth(t *testing.T) {
	payload := strings.Repeat("x", 190)
	srv := script(t, func(w http.ResponseWriter, r *http.Request, flush func()) {
		for i := 0; i < 20; i++ {
			sse.WriteEvent(w, "", "", payload)
			flush()
		}
	})
	p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "bandwidth:rate=8KiB")})
	start := time.Now()
	r := rawGet(t, p.Addr(), "/bulk", 5*time.Second)
	if r.err != nil || len(r.data) < 20*200 {
		t.Fatalf("read %d bytes then %v", len(r.data), r.err)
	}
	// The first 50 ms worth (409 bytes) goes at once.
	want := time.Duration(int64(len(r.data)-409) * int64(time.Second) / (8 << 10))
	within(t, "time to read "+strconv.Itoa(len(r.data))+" bytes at 8 KiB/s", r.lastData.Sub(start), want, tolLoose)
}

func TestSlicer(t *testing.T) {
	srv := script(t, ticker(3, 50*time.Millisecond, time.Second))
	p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "slicer:size=8,delay=10ms")})
	l := openLive(t, p.URL()+"/ticks")
	lf, ok := l.next(5 * time.Second)
	if !ok || lf.err != nil {
		t.Fatal(lf.err)
	}
	// "id: 1\nevent: tick\ndata: <19 digits>\n\n" plus chunk framing ≈ 50
	// bytes: 6 or more slices, 10 ms apart.
	if d := lf.at.Sub(sentAt(lf.f)); d < 50*time.Millisecond {
		t.Errorf("first event took %v: not sliced", d)
	}
}

func TestSlowClose(t *testing.T) {
	srv := script(t, func(w http.ResponseWriter, r *http.Request, flush func()) {
		sse.WriteEvent(w, "1", "", "bye")
	})
	for _, c := range []struct {
		fault string
		want  time.Duration
	}{{"", 0}, {"slow-close:delay=300ms", 300 * time.Millisecond}} {
		t.Run(c.fault, func(t *testing.T) {
			var faults []FaultSpec
			if c.fault != "" {
				faults = withFaults(t, c.fault)
			}
			p := startProxy(t, Config{Upstream: srv.URL, Faults: faults})
			r := rawGet(t, p.Addr(), "/once", 5*time.Second)
			if r.err != nil || !bytes.Contains(r.data, []byte("data: bye")) {
				t.Fatalf("read %q then %v", r.data, r.err)
			}
			within(t, "FIN after the last byte", r.end.Sub(r.lastData), c.want, tolLoose)
		})
	}
}

func TestLimitData(t *testing.T) {
	srv := script(t, ticker(100, 10*time.Millisecond, time.Second))
	p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "limit-data:bytes=500")})
	r := rawGet(t, p.Addr(), "/ticks", 5*time.Second)
	if r.err != nil || len(r.data) != 500 {
		t.Fatalf("client read %d bytes then %v, want exactly 500 then EOF", len(r.data), r.err)
	}
	g := readStream(t, p.URL()+"/ticks", 0, 5*time.Second)
	if g.class != errclass.UnexpectedEOF {
		t.Errorf("net/http client saw %s, want UNEXPECTED_EOF", g.class)
	}
}

// TestDown: on the client hop a raw socket sees the reset, the FIN or the
// refusal; on the upstream hop the client gets a 502.
func TestDown(t *testing.T) {
	srv := startFeedT(t)
	cases := []struct {
		fault string
		want  string // the raw socket's class, "" = EOF; HTTP_* through net/http
	}{
		{"down", errclass.ECONNRESET},
		{"down:action=fin", ""},
		{"down:action=refuse", errclass.ECONNREFUSED},
		{"down:hop=upstream", "HTTP_502"},
		{"down:hop=upstream,action=rst", "HTTP_502"},
	}
	for _, c := range cases {
		t.Run(c.fault, func(t *testing.T) {
			w, path := newSession(t)
			p := startProxy(t, Config{Upstream: srv, Session: w, Faults: withFaults(t, c.fault)})
			if strings.HasPrefix(c.want, "HTTP_") {
				if g := readStream(t, p.URL()+"/stream", 1, 5*time.Second); g.class != c.want {
					t.Fatalf("client saw %q (%v), want %s", g.class, g.err, c.want)
				}
			} else if r := rawGet(t, p.Addr(), "/stream", 5*time.Second); r.class != c.want || len(r.data) != 0 {
				t.Fatalf("raw client read %d bytes then %q (%v), want nothing then %q", len(r.data), r.class, r.err, c.want)
			}
			if c.fault == "down:action=refuse" {
				// Removing the fault opens the listener again.
				if err := p.RemoveFault(p.Faults()[0].Name); err != nil {
					t.Fatal(err)
				}
				if g := readStream(t, p.URL()+"/stream", 1, 5*time.Second); len(g.events) != 1 {
					t.Fatalf("after removing the fault: %v", g.err)
				}
			}
			_, faults := readSession(t, p, w, path)
			if len(faults) < 1 || faults[0].FaultKind != "down" {
				t.Fatalf("fault events %+v", faults)
			}
		})
	}
}

// startFeedT starts a ticking SSE server and returns its URL.
func startFeedT(t *testing.T) string {
	return script(t, ticker(1000, 20*time.Millisecond, time.Second)).URL
}

func TestTimeout(t *testing.T) {
	t.Run("close", func(t *testing.T) {
		srv := script(t, ticker(100, 25*time.Millisecond, time.Second))
		p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "timeout:after=200ms,timeout=300ms")})
		l := openLive(t, p.URL()+"/ticks")
		evs, end := l.end(t, 5*time.Second)
		if end.class != errclass.UnexpectedEOF {
			t.Fatalf("client saw %s, want UNEXPECTED_EOF", end.class)
		}
		within(t, "last event", evs[len(evs)-1].at.Sub(l.start), 200*time.Millisecond, tolLoose)
		within(t, "close", end.at.Sub(l.start), 500*time.Millisecond, tolLoose)
	})
	t.Run("black hole", func(t *testing.T) {
		srv := script(t, ticker(100, 25*time.Millisecond, time.Second))
		p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "timeout:after=200ms")})
		g := readStream(t, p.URL()+"/ticks", 0, 900*time.Millisecond)
		if g.err != nil {
			t.Fatalf("the black hole closed the stream: %v", g.err)
		}
		within(t, "last event", g.arrivals[len(g.arrivals)-1].Sub(g.start), 200*time.Millisecond, tolLoose)
	})
}

func TestDropEvents(t *testing.T) {
	srv := script(t, ticker(8, 10*time.Millisecond, time.Second))
	p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "drop-events:every=2")})
	g := readStream(t, p.URL()+"/ticks", 4, 5*time.Second)
	var ids []string
	for _, e := range g.events {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, ",") != "1,3,5,7" {
		t.Fatalf("ids %v, want 1,3,5,7", ids)
	}
}

func TestDelayEvents(t *testing.T) {
	srv := script(t, ticker(5, 100*time.Millisecond, time.Second))
	p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "delay-events:delay=150ms")})
	checkDelays(t, openLive(t, p.URL()+"/ticks"), 5, 150*time.Millisecond)
}

// checkDelays reads n ticker events and checks the time each took from the
// server to the client: the median within 20 ms above want (the loopback
// path itself takes a millisecond or two), every one within tolLoose.
func checkDelays(t *testing.T, l *live, n int, want time.Duration) {
	t.Helper()
	var delays []time.Duration
	for i := 1; i <= n; i++ {
		lf, ok := l.next(3 * time.Second)
		if !ok || lf.err != nil {
			t.Fatalf("event %d: %v", i, lf.err)
		}
		d := lf.at.Sub(sentAt(lf.f))
		delays = append(delays, d)
		within(t, "delay of event "+strconv.Itoa(i), d, want, tolLoose)
	}
	sorted := append([]time.Duration(nil), delays...)
	slices.Sort(sorted)
	if med := sorted[len(sorted)/2]; med < want || med > want+20*time.Millisecond {
		t.Errorf("median delay %v, want %v to %v (all: %v)", med, want, want+20*time.Millisecond, delays)
	}
}

// TestStall: after two events the stream stops in the middle of the
// third; removing the fault forwards what was held.
func TestStall(t *testing.T) {
	srv := script(t, ticker(100, 20*time.Millisecond, time.Second))
	p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "stall:events=2")})
	l := openLive(t, p.URL()+"/ticks")
	for i := 1; i <= 2; i++ {
		if lf, ok := l.next(3 * time.Second); !ok || lf.err != nil || lf.f.ID != strconv.Itoa(i) {
			t.Fatalf("event %d: %+v", i, lf)
		}
	}
	if lf, ok := l.next(500 * time.Millisecond); ok {
		t.Fatalf("an event passed the stall: %+v", lf)
	}
	conns := p.Conns()
	if len(conns) != 2 || conns[0].Hop != session.HopClient || conns[0].BytesDown == 0 {
		t.Fatalf("conns %+v", conns)
	}
	if err := p.RemoveFault(p.Faults()[0].Name); err != nil {
		t.Fatal(err)
	}
	for i := 3; i <= 5; i++ {
		if lf, ok := l.next(3 * time.Second); !ok || lf.err != nil || lf.f.ID != strconv.Itoa(i) {
			t.Fatalf("after the stall, event %d: %+v", i, lf)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	t.Run("at once", func(t *testing.T) {
		srv := startFeedT(t)
		w, path := newSession(t)
		p := startProxy(t, Config{Upstream: srv, Session: w, Faults: withFaults(t, "http-status:code=502")})
		g := readStream(t, p.URL()+"/stream", 1, 5*time.Second)
		if g.class != "HTTP_502" {
			t.Fatalf("client saw %q, want HTTP_502", g.class)
		}
		hops, faults := readSession(t, p, w, path)
		if len(faults) != 1 || faults[0].Action != "status" {
			t.Fatalf("faults %+v", faults)
		}
		if c := hopRecord(t, hops, session.HopClient); c.Status != 502 {
			t.Errorf("client hop status %d", c.Status)
		}
	})
	t.Run("gateway timeout", func(t *testing.T) {
		// A server that sends no headers for a second.
		slowSrv := scriptHandler(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
			}
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
		})
		p := startProxy(t, Config{Upstream: slowSrv, Faults: withFaults(t, "http-status:code=524,timeout=200ms")})
		start := time.Now()
		g := readStream(t, p.URL()+"/slow", 1, 5*time.Second)
		if g.class != "HTTP_524" {
			t.Fatalf("client saw %q, want HTTP_524", g.class)
		}
		within(t, "524 after", g.endAt.Sub(start), 200*time.Millisecond, tolLoose)
		fast := startFeedT(t)
		p2 := startProxy(t, Config{Upstream: fast, Faults: withFaults(t, "http-status:code=524,timeout=200ms")})
		if g := readStream(t, p2.URL()+"/stream", 2, 5*time.Second); len(g.events) != 2 {
			t.Fatalf("a fast upstream got %v", g.err)
		}
	})
}

// TestOnUpstreamError: an upstream that resets mid-stream reaches the
// client as the chosen error, and the session file says which.
func TestOnUpstreamError(t *testing.T) {
	for _, c := range []struct{ action, class string }{
		{"", errclass.ECONNRESET}, {UpstreamReset, errclass.ECONNRESET},
		{UpstreamEOF, errclass.EOF}, {UpstreamAbort, errclass.UnexpectedEOF},
	} {
		t.Run(c.action, func(t *testing.T) {
			up := resetter(t, 3)
			w, path := newSession(t)
			p := startProxy(t, Config{Upstream: up, Session: w, OnUpstreamError: c.action})
			l := openLive(t, p.URL()+"/x")
			evs, end := l.end(t, 5*time.Second)
			if len(evs) != 3 || end.class != c.class {
				t.Fatalf("client saw %d events then %s (%v), want 3 then %s", len(evs), end.class, end.err, c.class)
			}
			hops, _ := readSession(t, p, w, path)
			want := c.action
			if want == "" {
				want = UpstreamReset
			}
			client, upstream := hopRecord(t, hops, session.HopClient), hopRecord(t, hops, session.HopUpstream)
			if client.OnUpstreamError != want {
				t.Errorf("client HopConn upstream_error_action %q, want %q: %+v", client.OnUpstreamError, want, hops)
			}
			if upstream.ClosedBy != session.ClosedByPeer || upstream.Ending != session.EndingRST || upstream.Class != errclass.ECONNRESET {
				t.Errorf("upstream HopConn closed by %q how %q class %q", upstream.ClosedBy, upstream.Ending, upstream.Class)
			}
		})
	}
}

// TestToxicity: a fault with toxicity 0.5 acts on about half the
// connections (drawn once per connection).
func TestToxicity(t *testing.T) {
	srv := script(t, ticker(100, 20*time.Millisecond, time.Second))
	p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "reset:hop=upstream,after=200ms,toxicity=0.5")})
	const n = 40
	classes := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() { classes <- readStream(t, p.URL()+"/ticks", 0, 2*time.Second).class }()
	}
	resets := 0
	for i := 0; i < n; i++ {
		switch c := <-classes; c {
		case errclass.ECONNRESET:
			resets++
		case "":
		default:
			t.Errorf("a stream ended with %s", c)
		}
	}
	// Binomial(40, 0.5): outside 8..32 has probability below 1e-4.
	if resets < 8 || resets > 32 {
		t.Fatalf("%d of %d streams reset, want about half", resets, n)
	}
	t.Logf("%d of %d streams reset", resets, n)
}

// TestLatencyUp delays the request on its way to the server, on either
// hop (on the client hop the proxy's HTTP server reads through the delay
// line, deadlines and all).
func TestLatencyUp(t *testing.T) {
	for _, hop := range []string{session.HopClient, session.HopUpstream} {
		t.Run(hop, func(t *testing.T) {
			srv := script(t, ticker(3, 10*time.Millisecond, time.Second))
			p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "latency:direction=up,delay=200ms,hop="+hop)})
			for i := 0; i < 2; i++ { // twice: the second request reuses nothing but must not hang
				g := readStream(t, p.URL()+"/ticks", 3, 5*time.Second)
				if len(g.events) != 3 {
					t.Fatalf("request %d: %d events, %v", i, len(g.events), g.err)
				}
				within(t, "first event after", g.arrivals[0].Sub(g.start), 210*time.Millisecond, tolLoose)
			}
		})
	}
}
