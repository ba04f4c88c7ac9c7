//go:build linux

package proxytest

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
// then the attribution stored into the file, read back by the report.
func (r *run) finish() []session.Reset {
	r.t.Helper()
	r.client.Wait(r.t)
	r.px.Close()
	if _, err := r.cap.Stop(); err != nil {
		r.t.Fatal(err)
	}
	if err := r.w.Close(); err != nil {
		r.t.Fatal(err)
	}
	if _, err := capture.AttributeFile(context.Background(), r.path, capture.AnalyzeOptions{}); err != nil {
		r.t.Fatal(err)
	}
	rd, err := session.Open(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rd.Close()
	rs, err := session.All[session.Reset](rd, session.BucketResets)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []session.Reset
	for _, x := range rs {
		r.t.Logf("reset %s %s→%s hop=%s reason=%s injected=%v forged=%v chain=%q", x.SenderRole, x.SenderAddr, x.ReceiverAddr, x.Hop, x.Reason, x.Injected, x.Forged, x.Chain)
		if x.Reason != session.ReasonReply {
			out = append(out, x)
		}
	}
	return out
}

// TestServerResetThroughProxy: the server aborts; the proxy (default
// --on-upstream-error reset) resets the client hop; the chain of the issue.
func TestServerResetThroughProxy(t *testing.T) {
	r := start(t)
	time.Sleep(idle)
	looptest.Abort(t, r.stream)
	rs := r.finish()
	if r.client.Class() != "ECONNRESET" {
		t.Fatalf("client saw %s (%v)", r.client.Class(), r.client.Err())
	}
	if len(rs) != 2 {
		t.Fatalf("%d resets, want 2", len(rs))
	}
	up, ch := rs[0], rs[1]
	if up.SenderRole != session.RoleServer || up.Hop != session.HopUpstream || up.Proxy != "p1" || up.Injected || up.Forged || !up.Root {
		t.Errorf("upstream reset %+v", up)
	}
	if ch.SenderRole != session.RoleProxy || ch.SenderName != "p1" || ch.Hop != session.HopClient || ch.Injected || ch.CausedBy != up.ID {
		t.Errorf("client-hop reset %+v", ch)
	}
	looptest.IdleAbout(t, "idle", up.Idle.D(), idle)
	want := "server " + r.srv.Addr() + " sent RST to proxy on hop upstream after "
	if !strings.HasPrefix(up.Chain, want) || !strings.HasSuffix(up.Chain, " idle → proxy reset the client hop → client saw ECONNRESET") {
		t.Errorf("chain %q", up.Chain)
	}
}

// TestFaultResetsClientHop: the proxy's reset fault on the client hop.
func TestFaultResetsClientHop(t *testing.T) {
	r := start(t, "reset:hop=client,after=300ms")
	rs := r.finish()
	if r.client.Class() != "ECONNRESET" {
		t.Fatalf("client saw %s (%v)", r.client.Class(), r.client.Err())
	}
	if len(rs) != 1 {
		t.Fatalf("%d resets, want 1", len(rs))
	}
	x := rs[0]
	if x.SenderRole != session.RoleProxy || x.Hop != session.HopClient || !x.Injected || x.FaultKind != "reset" ||
		!strings.HasPrefix(x.FaultName, "reset:hop=client") || x.Error == nil || !x.Root {
		t.Errorf("reset %+v", x)
	}
	if !strings.HasPrefix(x.Chain, `fault "`+x.FaultName+`" (reset) of proxy p1 sent RST from `+r.px.Addr()+" to client on hop client") {
		t.Errorf("chain %q", x.Chain)
	}
}

// TestFaultResetsUpstreamHop: the proxy's reset fault on the upstream hop;
// the proxy then resets the client hop, and the client's ECONNRESET is
// traced to the injected upstream reset.
func TestFaultResetsUpstreamHop(t *testing.T) {
	r := start(t, "reset:hop=upstream,after=300ms")
	looptest.WaitReset(t, r.stream)
	rs := r.finish()
	if r.client.Class() != "ECONNRESET" {
		t.Fatalf("client saw %s (%v)", r.client.Class(), r.client.Err())
	}
	if len(rs) != 2 {
		t.Fatalf("%d resets, want 2", len(rs))
	}
	// The two RSTs leave the proxy within microseconds of each other, in
	// either order: tell them apart by hop, not by position.
	up, ch := rs[0], rs[1]
	if up.Hop != session.HopUpstream {
		up, ch = ch, up
	}
	if up.SenderRole != session.RoleProxy || up.ReceiverRole != session.RoleServer || up.Hop != session.HopUpstream ||
		!up.Injected || !up.Root || up.Error == nil {
		t.Errorf("upstream reset %+v", up)
	}
	if ch.SenderRole != session.RoleProxy || ch.Hop != session.HopClient || ch.Injected || ch.CausedBy != up.ID {
		t.Errorf("client-hop reset %+v", ch)
	}
	if !strings.HasPrefix(up.Chain, `fault "`+up.FaultName+`" (reset) of proxy p1 sent RST from `) {
		t.Errorf("chain %q", up.Chain)
	}
	if !strings.Contains(up.Chain, "to server on hop upstream") || !strings.HasSuffix(up.Chain, "→ proxy reset the client hop → client saw ECONNRESET") {
		t.Errorf("chain %q", up.Chain)
	}
}
