//go:build linux

package proxytest

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/capture"
	"github.com/ssestress/ssestress/capture/internal/looptest"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/proxy"
)

// idle is how long the stream stays quiet before the reset.
const idle = 300 * time.Millisecond

// run is one scenario: the raw SSE server, the real proxy in front of it
// with the given faults, a capture started the way run --capture starts it
// (interface picked from the target), and one client through the proxy.
type run struct {
	t      *testing.T
	path   string
	w      *session.Writer
	srv    *looptest.SSEServer
	px     *proxy.Proxy
	cap    *capture.Capture
	client *looptest.SSEClient
	stream *net.TCPConn // the server's side of the stream
}

func start(t *testing.T, faults ...string) *run {
	t.Helper()
	looptest.NeedRoot(t)
	dir := t.TempDir()
	r := &run{t: t, path: filepath.Join(dir, "run.db")}
	w, err := session.Create(r.path, session.Options{FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	r.srv = looptest.NewSSEServer(t)
	w.Put(session.Endpoint{Role: session.RoleServer, Addr: r.srv.Addr()})
	var specs []proxy.FaultSpec
	for _, f := range faults {
		spec, err := proxy.ParseFault(f)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, spec)
	}
	px, err := proxy.Start(context.Background(), proxy.Config{Listen: "127.0.0.1:0", Upstream: "http://" + r.srv.Addr(),
		Name: "p1", Faults: specs, Session: w})
	if err != nil {
		t.Fatal(err)
	}
	r.px = px
	_, port, _ := net.SplitHostPort(px.Addr())
	var proxyPort int
	for _, c := range port {
		proxyPort = proxyPort*10 + int(c-'0')
	}
	c, err := capture.Start(context.Background(), capture.Config{Target: px.URL(), Ports: []int{r.srv.Port, proxyPort},
		Out: filepath.Join(dir, "trace.pcap"), Session: w})
	if err != nil {
		t.Fatal(err)
	}
	if c.Iface() != "lo" {
		t.Errorf("picked interface %q for %s, want lo", c.Iface(), px.URL())
	}
	r.cap = c
	t.Cleanup(func() {
		px.Close()
		c.Stop()
		w.Close()
	})
	r.client = looptest.StartClient(t, w, px.Addr(), "c0001")
	r.stream = r.srv.Next(t)
	r.client.WaitFirstEvent(t)
	return r
}

// finish ends the run as run --capture does: proxy, capture, session file,
// then the attribution of the file, as report computes it.
func (r *run) finish() (*attribution.Result, []attribution.Segment) {
	r.t.Helper()
	r.client.Wait(r.t)
	r.px.Close()
	if _, err := r.cap.Stop(); err != nil {
		r.t.Fatal(err)
	}
	if err := r.w.Close(); err != nil {
		r.t.Fatal(err)
	}
	rd, err := session.Open(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	in := &attribution.Input{}
	_, err = in.ReadFile(rd, true)
	rd.Close()
	if err != nil {
		r.t.Fatal(err)
	}
	res := attribution.Analyze(in, attribution.Options{})
	var out []attribution.Segment
	for _, x := range res.Segments {
		r.t.Logf("segment %s → %s on %s reason=%s kind=%s chain=%q", x.Sender.Words(), x.Receiver.Words(), x.Where(), x.Reason, x.Kind, x.Chain)
		if x.Reason != attribution.ReasonReply {
			out = append(out, x)
		}
	}
	r.t.Logf("verdict: %s", res.Verdict.Statement)
	return res, out
}

// TestServerResetThroughProxy: the server aborts; the proxy (default
// --on-upstream-error reset) resets the client hop; the chain of the issue.
func TestServerResetThroughProxy(t *testing.T) {
	r := start(t)
	time.Sleep(idle)
	looptest.Abort(t, r.stream)
	res, rs := r.finish()
	if r.client.Class() != "ECONNRESET" {
		t.Fatalf("client saw %s (%v)", r.client.Class(), r.client.Err())
	}
	if len(rs) != 2 {
		t.Fatalf("%d segments, want 2", len(rs))
	}
	up, ch := rs[0], rs[1]
	if up.Sender.Role != session.RoleServer || up.Hop != session.HopUpstream || up.Proxy != "p1" || up.Kind != attribution.KindNatural || up.Explains == nil {
		t.Errorf("upstream reset %+v", up)
	}
	if ch.Sender.Role != session.RoleProxy || ch.Sender.Name != "p1" || ch.Hop != session.HopClient || ch.Kind != attribution.KindNatural {
		t.Errorf("client-hop reset %+v", ch)
	}
	looptest.IdleAbout(t, "idle", up.Idle.D(), idle)
	x := res.Verdict.Cause
	if x == nil || x.Kind != attribution.KindNatural || x.Sender.Role != session.RoleServer || x.Hop != session.HopUpstream ||
		len(x.Relays) != 1 || x.Relays[0].Proxy != "p1" || x.Relays[0].Policy != proxy.UpstreamReset {
		t.Fatalf("verdict cause %+v", x)
	}
	want := "the server " + r.srv.Addr() + " sent a reset (RST) to proxy p1, on proxy p1's upstream hop after "
	if chain := x.ChainText(); !strings.HasPrefix(chain, want) || !strings.HasSuffix(chain, " idle → proxy p1 reset its client hop (--on-upstream-error=reset) → client c0001 saw ECONNRESET") {
		t.Errorf("chain %q", chain)
	}
}

// TestFaultResetsClientHop: the proxy's reset fault on the client hop.
func TestFaultResetsClientHop(t *testing.T) {
	r := start(t, "reset:hop=client,after=300ms")
	res, rs := r.finish()
	if r.client.Class() != "ECONNRESET" {
		t.Fatalf("client saw %s (%v)", r.client.Class(), r.client.Err())
	}
	if len(rs) != 1 {
		t.Fatalf("%d segments, want 1", len(rs))
	}
	s := rs[0]
	if s.Sender.Role != session.RoleProxy || s.Hop != session.HopClient || s.Kind != attribution.KindInjected || s.FaultKind != "reset" ||
		!strings.HasPrefix(s.FaultName, "reset:hop=client") || s.Explains == nil {
		t.Errorf("segment %+v", s)
	}
	x := res.Verdict.Cause
	if x == nil || !strings.HasPrefix(x.ChainText(), `proxy p1's fault "`+s.FaultName+`" sent a reset (RST) to the client `) {
		t.Errorf("cause %+v", x)
	}
}

// TestFaultResetsUpstreamHop: the proxy's reset fault on the upstream hop;
// the proxy then resets the client hop, and the client's ECONNRESET is
// traced to the injected upstream reset.
func TestFaultResetsUpstreamHop(t *testing.T) {
	r := start(t, "reset:hop=upstream,after=300ms")
	looptest.WaitReset(t, r.stream)
	res, rs := r.finish()
	if r.client.Class() != "ECONNRESET" {
		t.Fatalf("client saw %s (%v)", r.client.Class(), r.client.Err())
	}
	if len(rs) != 2 {
		t.Fatalf("%d segments, want 2", len(rs))
	}
	// The two RSTs leave the proxy within microseconds of each other, in
	// either order: tell them apart by hop, not by position.
	up, ch := rs[0], rs[1]
	if up.Hop != session.HopUpstream {
		up, ch = ch, up
	}
	if up.Sender.Role != session.RoleProxy || up.Receiver.Role != session.RoleServer || up.Hop != session.HopUpstream ||
		up.Kind != attribution.KindInjected || up.Explains == nil {
		t.Errorf("upstream reset %+v", up)
	}
	if ch.Sender.Role != session.RoleProxy || ch.Hop != session.HopClient || ch.Kind != attribution.KindNatural {
		t.Errorf("client-hop reset %+v", ch)
	}
	x := res.Verdict.Cause
	if x == nil || x.Kind != attribution.KindInjected || x.Hop != session.HopUpstream {
		t.Fatalf("cause %+v", x)
	}
	if chain := x.ChainText(); !strings.HasPrefix(chain, `proxy p1's fault "`+up.FaultName+`" sent a reset (RST) to the server `) ||
		!strings.HasSuffix(chain, "→ proxy p1 reset its client hop (--on-upstream-error=reset) → client c0001 saw ECONNRESET") {
		t.Errorf("chain %q", chain)
	}
}
