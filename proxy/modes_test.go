package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

// TestForwardMode: a client with the proxy as HTTP_PROXY reaches an
// allowed host; another host gets 403, and CONNECT to it is refused.
func TestForwardMode(t *testing.T) {
	allowed := startFeedT(t)
	other := startFeedT(t)
	au, _ := url.Parse(allowed)
	p := startProxy(t, Config{AllowHosts: []string{au.Host}})
	pu, _ := url.Parse(p.URL())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}, Timeout: 10 * time.Second}

	resp, err := c.Get(allowed + "/ticks")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	line, _ := br.ReadString('\n')
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(line, "event: tick") {
		t.Fatalf("allowed host: %d %q", resp.StatusCode, line)
	}

	resp, err = c.Get(other + "/ticks")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "not an --allow-host") {
		t.Fatalf("other host: %d %q", resp.StatusCode, body)
	}

	// A relative request: this proxy has no upstream.
	if g := readStream(t, p.URL()+"/ticks", 1, 5*time.Second); g.class != "HTTP_404" {
		t.Fatalf("relative request without --upstream: %s", g.class)
	}

	// CONNECT to a host not allowed.
	ou, _ := url.Parse(other)
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", ou.Host, ou.Host)
	cr, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cr.StatusCode != http.StatusForbidden {
		t.Fatalf("CONNECT to a host not allowed: %d", cr.StatusCode)
	}
}

func TestAPINeedsTokenOffLoopback(t *testing.T) {
	_, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", API: "0.0.0.0:0"})
	if !errors.Is(err, ErrAPINotLoopback) || !strings.Contains(err.Error(), "0.0.0.0:0 is not a loopback address: give --api-token") {
		t.Fatalf("err = %v", err)
	}
	// A bare port binds loopback, so it needs no token (TestListenDefaultsToLoopback).
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "10.1.2.3:0"} {
		if _, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", API: addr}); !errors.Is(err, ErrAPINotLoopback) {
			t.Errorf("API on %s without a token: %v", addr, err)
		}
	}
}

// api calls the control API and decodes the JSON answer.
func api(t *testing.T, p *Proxy, token, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+p.APIAddr()+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPI(t *testing.T) {
	srv := startFeedT(t)
	p := startProxy(t, Config{Upstream: srv, Name: "edge", API: "127.0.0.1:0", APIToken: "s3cret"})

	if code, body := api(t, p, "", "GET", "/faults", ""); code != 401 || !strings.Contains(body, `"status": 401`) {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, _ := api(t, p, "s3cre", "GET", "/faults", ""); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	if code, body := api(t, p, "s3cret", "GET", "/faults", ""); code != 200 || !strings.Contains(body, `"faults": []`) {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := api(t, p, "s3cret", "GET", "/nope", ""); code != 404 || !strings.Contains(body, `"error"`) {
		t.Fatalf("unknown endpoint: %d %s", code, body)
	}
	if code, body := api(t, p, "s3cret", "POST", "/faults", `"latency:dealy=5ms"`); code != 400 || !strings.Contains(body, `unknown key \"dealy\"`) {
		t.Fatalf("bad fault: %d %s", code, body)
	}

	// A live stream, then a reset fault added at run time acts on it.
	l := openLive(t, p.URL()+"/ticks")
	if lf, ok := l.next(3 * time.Second); !ok || lf.err != nil {
		t.Fatal("no first event")
	}
	code, body := api(t, p, "s3cret", "GET", "/conns", "")
	if code != 200 || strings.Count(body, `"conn_id": "edge-1"`) != 2 || !strings.Contains(body, `"hop": "upstream"`) || !strings.Contains(body, `"idle_s"`) {
		t.Fatalf("conns: %d %s", code, body)
	}
	if code, _ := api(t, p, "", "GET", "/events", ""); code != 401 {
		t.Fatalf("events without token: %d", code)
	}
	evReq, _ := http.NewRequest("GET", "http://"+p.APIAddr()+"/events", nil)
	evReq.Header.Set("Authorization", "Bearer s3cret")
	evResp, err := client().Do(evReq)
	if err != nil {
		t.Fatal(err)
	}
	defer evResp.Body.Close()
	if code, body := api(t, p, "s3cret", "POST", "/faults", `{"kind": "reset", "name": "kill", "hop": "upstream"}`); code != 201 || !strings.Contains(body, `"name": "kill"`) {
		t.Fatalf("add: %d %s", code, body)
	}
	_, end := l.end(t, 5*time.Second)
	if end.class != errclass.ECONNRESET {
		t.Fatalf("live stream after the reset was added: %s", end.class)
	}
	// The event stream told of the fault and the closes.
	var seen []string
	sc := bufio.NewScanner(evResp.Body)
	deadline := time.AfterFunc(5*time.Second, func() { evResp.Body.Close() })
	defer deadline.Stop()
	for sc.Scan() && len(seen) < 3 {
		if typ, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			seen = append(seen, typ)
		}
	}
	if len(seen) < 3 || seen[0] != "fault" {
		t.Fatalf("connection events %v, want fault then closes", seen)
	}

	if code, body := api(t, p, "s3cret", "POST", "/faults", `"reset:name=kill"`); code != 409 {
		t.Fatalf("duplicate: %d %s", code, body)
	}
	if code, body := api(t, p, "s3cret", "PUT", "/faults/kill", `"latency:delay=10ms"`); code != 200 || !strings.Contains(body, `"kind": "latency"`) || !strings.Contains(body, `"name": "kill"`) {
		t.Fatalf("update: %d %s", code, body)
	}
	if code, _ := api(t, p, "s3cret", "DELETE", "/faults/kill", ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := api(t, p, "s3cret", "DELETE", "/faults/kill", ""); code != 404 {
		t.Fatalf("delete again: %d", code)
	}
	if code, body := api(t, p, "s3cret", "POST", "/recording/start", ""); code != 409 || !strings.Contains(body, "--record") {
		t.Fatalf("recording without recorder: %d %s", code, body)
	}
	if code, body := api(t, p, "s3cret", "GET", "/kinds", ""); code != 200 || !strings.Contains(body, "idle-timeout") || !strings.Contains(body, "aws-alb") {
		t.Fatalf("kinds: %d %s", code, body)
	}
}

// TestPresets runs each preset's behaviour with its durations shrunk.
func TestPresets(t *testing.T) {
	t.Run("aws-alb", func(t *testing.T) {
		srv := script(t, heartbeats(0, time.Hour))
		p := startProxy(t, Config{Upstream: srv.URL, TimeScale: 600, Faults: withFaults(t, "preset:aws-alb")}) // 60 s → 100 ms
		g := readStream(t, p.URL()+"/quiet", 0, 5*time.Second)
		if g.class != errclass.UnexpectedEOF {
			t.Fatalf("client saw %s", g.class)
		}
		within(t, "idle close", g.endAt.Sub(g.start), 100*time.Millisecond, tolLoose)
	})
	t.Run("aws-nat", func(t *testing.T) {
		srv := script(t, func(w http.ResponseWriter, r *http.Request, flush func()) {
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, "data: late\n\n")
			flush()
			<-r.Context().Done()
		})
		p := startProxy(t, Config{Upstream: srv.URL, TimeScale: 3500, Faults: withFaults(t, "preset:aws-nat")}) // 350 s → 100 ms
		g := readStream(t, p.URL()+"/late", 0, 5*time.Second)
		if g.class != errclass.ECONNRESET || len(g.events) != 0 {
			t.Fatalf("client saw %d events then %s", len(g.events), g.class)
		}
	})
	t.Run("nginx", func(t *testing.T) {
		srv := script(t, heartbeats(0, time.Hour))
		p := startProxy(t, Config{Upstream: srv.URL, TimeScale: 600, Faults: withFaults(t, "preset:nginx")})
		g := readStream(t, p.URL()+"/quiet", 0, 5*time.Second)
		if g.class != errclass.ECONNRESET { // the upstream hop closed: --on-upstream-error=reset
			t.Fatalf("client saw %s", g.class)
		}
	})
	t.Run("cloudflare", func(t *testing.T) {
		slow := scriptHandler(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
			}
		})
		p := startProxy(t, Config{Upstream: slow, TimeScale: 1000, Faults: withFaults(t, "preset:cloudflare")})
		if g := readStream(t, p.URL()+"/slow", 0, 5*time.Second); g.class != "HTTP_524" {
			t.Fatalf("client saw %s", g.class)
		}
	})
	t.Run("node-keepalive", func(t *testing.T) {
		// A request that takes 400 ms (no byte flows meanwhile), then a
		// keep-alive connection left idle.
		srv := scriptHandler(t, func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(400 * time.Millisecond)
			io.WriteString(w, "ok")
		})
		w, path := newSession(t)
		p := startProxy(t, Config{Upstream: srv, Session: w, TimeScale: 25, Faults: withFaults(t, "preset:node-keepalive")}) // 5 s → 200 ms
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the keep-alive timeout cut a request in flight: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		answered := time.Now()
		if string(body) != "ok" {
			t.Fatalf("body %q", body)
		}
		if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("idle keep-alive connection: read %d, %v; want EOF", n, err)
		}
		within(t, "keep-alive close after the response", time.Since(answered), 200*time.Millisecond, tolLoose)
		_, faults := readSession(t, p, w, path)
		if len(faults) != 1 || faults[0].FaultName != "preset:node-keepalive/idle-timeout" || faults[0].Hop != session.HopClient {
			t.Fatalf("faults %+v", faults)
		}
	})
}

// TestKeepAliveRequests: two requests on one client connection give one
// client HopConn and two upstream HopConns, told apart by Request.
func TestKeepAliveRequests(t *testing.T) {
	srv := scriptHandler(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok "+r.URL.Path) })
	w, path := newSession(t)
	p := startProxy(t, Config{Upstream: srv, Session: w})
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	for _, pth := range []string{"/a", "/b"} {
		resp, err := c.Get(p.URL() + pth)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ok "+pth {
			t.Fatalf("%s: %q", pth, body)
		}
	}
	c.CloseIdleConnections()
	waitFor(t, 5*time.Second, "the proxy to see the client close", func() bool { return p.Stats().Live == 0 })
	hops, _ := readSession(t, p, w, path)
	var got []string
	for _, h := range hops {
		got = append(got, fmt.Sprintf("%s/%s/%d %s", h.ConnID, h.Hop, h.Request, h.Path))
	}
	want := "proxy-1/client/0 /b proxy-1/upstream/1 /a proxy-1/upstream/2 /b"
	if strings.Join(got, " ") != want {
		t.Fatalf("hop conns %q, want %q", strings.Join(got, " "), want)
	}
	if hops[0].ClosedBy != session.ClosedByPeer || hops[0].Ending != session.EndingFIN {
		t.Errorf("client hop closed by %q how %q, want client FIN", hops[0].ClosedBy, hops[0].Ending)
	}
}

// TestRecording: with a recorder, the proxy's streams are in the session
// file with their events.
func TestRecording(t *testing.T) {
	srv := script(t, ticker(5, 10*time.Millisecond, time.Second))
	w, path := newSession(t)
	rec := recording.New(w, "rec", recording.Options{})
	p := startProxy(t, Config{Upstream: srv.URL, Name: "rec", Session: w, Recorder: rec, Faults: withFaults(t, "reset:events=5")})
	g := readStream(t, p.URL()+"/ticks?symbols=A", 0, 5*time.Second)
	if len(g.events) != 5 || g.class != errclass.ECONNRESET {
		t.Fatalf("client: %d events, %s", len(g.events), g.class)
	}
	p.Close()
	w.Close()
	s := oneRecordedStream(t, path)
	events := 0
	for _, e := range s.Events {
		if e.Kind == session.RecKindEvent {
			events++
		}
	}
	if events != 5 || s.Status != 200 || s.ConnID != "rec-1" || s.Ending != session.EndingRST {
		t.Fatalf("recorded stream %+v with %d events", s.RecStream, events)
	}
}

// TestRecordingCountsOnceThenFaulted: a recorded stream's bytes are
// scanned once, by the proxy's splitter for its event count and the
// recording's frames together, until a fault that acts on events is added
// mid-stream; from then the recording counts what is forwarded and the
// proxy what is read. Both counts stay right across the switch: the
// recording holds exactly the events and comments the client got, and
// the proxy's events_down is the client's count.
func TestRecordingCountsOnceThenFaulted(t *testing.T) {
	const n, at = 40, 10
	// Each event is written in two pieces, the blank line that ends it
	// apart; after event 10 the test adds the fault while the proxy waits
	// for the next read, which is then the first piece of event 11: the
	// switch comes inside an event, and the recording must take the
	// splitter's state to count event 11 (a fresh splitter would see a
	// blank line alone).
	added := make(chan struct{})
	wrote := make(chan struct{})
	srv := script(t, func(w http.ResponseWriter, r *http.Request, flush func()) {
		for i := 1; i <= n; i++ {
			io.WriteString(w, ": hb\n\nid: "+strconv.Itoa(i)+"\nevent: tick\ndata: x\n")
			flush()
			time.Sleep(5 * time.Millisecond)
			io.WriteString(w, "\n")
			flush()
			if i == at {
				close(wrote)
				select {
				case <-added:
				case <-r.Context().Done():
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	w, path := newSession(t)
	rec := recording.New(w, "rec", recording.Options{})
	p := startProxy(t, Config{Upstream: srv.URL, Name: "rec", Session: w, Recorder: rec})
	var g got
	done := make(chan struct{})
	go func() {
		defer close(done)
		g = readStream(t, p.URL()+"/ticks?symbols=A", 0, 10*time.Second)
	}()
	<-wrote
	time.Sleep(20 * time.Millisecond) // the proxy has read event 10's end and waits
	if err := p.AddFault(withFaults(t, "drop-events:every=2")[0]); err != nil {
		t.Fatal(err)
	}
	close(added)
	<-done
	ids := make([]int, len(g.events))
	for i, e := range g.events {
		ids[i], _ = strconv.Atoi(e.ID)
	}
	k := 0 // events before the first drop
	for k < len(ids) && ids[k] == k+1 {
		k++
	}
	if k < at || k == len(ids) || ids[len(ids)-1] < n-1 {
		t.Fatalf("client got ids %v: want 1..k in order (k ≥ %d), then drops, to the end", ids, at)
	}
	hops, _ := readSession(t, p, w, path)
	// events_down: on the upstream hop what the server sent, on the
	// client hop what was forwarded.
	down := map[string]int64{}
	for _, h := range hops {
		down[h.Hop] += h.EventsDown
	}
	if down[session.HopUpstream] != n || down[session.HopClient] != int64(len(g.events)) {
		t.Errorf("events_down: upstream hop %d (server sent %d), client hop %d (client got %d)",
			down[session.HopUpstream], n, down[session.HopClient], len(g.events))
	}
	s := oneRecordedStream(t, path)
	events, comments := 0, 0
	for _, e := range s.Events {
		switch e.Kind {
		case session.RecKindEvent:
			events++
		case session.RecKindComment:
			comments++
		}
	}
	if events != len(g.events) || comments != len(g.comments) || s.Frames != int64(events+comments) {
		t.Errorf("recorded %d events and %d comments (frames %d); client got %d and %d", events, comments, s.Frames, len(g.events), len(g.comments))
	}
}
