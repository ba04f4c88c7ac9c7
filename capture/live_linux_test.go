//go:build linux

package capture

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/capture/internal/looptest"
	"github.com/ssestress/ssestress/internal/session"
)

// idleBeforeAbort is how long a stream stays quiet before the scenario
// ends it, so the idle time of the attribution has something to measure.
const idleBeforeAbort = 300 * time.Millisecond

func TestHandleFD(t *testing.T) {
	looptest.NeedRoot(t)
	h, err := pcapgo.NewEthernetHandle("lo")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fd, err := handleFD(h)
	if err != nil {
		t.Fatal(err)
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || domain != unix.AF_PACKET {
		t.Fatalf("fd %d from the handle is not its packet socket: domain %d, %v", fd, domain, err)
	}
}

// TestServerAborts: the server resets the stream (SO_LINGER 0 + close);
// the RST is the server's, on the direct client–server connection, and
// explains the client's ECONNRESET.
func TestServerAborts(t *testing.T) {
	l := newLab(t)
	srv := looptest.NewSSEServer(t)
	l.topology(session.RoleServer, "", "", srv.Addr())
	l.start(srv.Port)
	cl := looptest.StartClient(t, l.w, srv.Addr(), "c0001")
	sc := srv.Next(t)
	cl.WaitFirstEvent(t)
	time.Sleep(idleBeforeAbort)
	looptest.Abort(t, sc)
	cl.Wait(t)
	if cl.Class() != "ECONNRESET" {
		t.Fatalf("client saw %q (%v), want ECONNRESET", cl.Class(), cl.Err())
	}
	res := l.finish()

	rs := only(res.Segments, func(s attribution.Segment) bool { return s.Reason != attribution.ReasonReply })
	if len(rs) != 1 {
		t.Fatalf("got %d segments, want 1: %+v", len(rs), res.Segments)
	}
	r := rs[0]
	if r.Sender.Role != session.RoleServer || r.Sender.Addr != srv.Addr() || r.Receiver.Role != session.RoleClient ||
		r.Link != session.LinkDirect || r.Kind != attribution.KindNatural || r.Confidence != attribution.ConfidenceHigh {
		t.Errorf("attribution = %+v, want server → client on the direct link, natural, high confidence", r)
	}
	if r.Explains == nil || r.Explains.Class != "ECONNRESET" || r.Explains.ClientID != "c0001" {
		t.Errorf("explains %+v, want the client's ECONNRESET", r.Explains)
	}
	looptest.IdleAbout(t, "idle", r.Idle.D(), idleBeforeAbort)
	x := explanationOf(t, res, "c0001")
	want := "the server " + srv.Addr() + " sent a reset (RST) to the client "
	if chain := x.ChainText(); !strings.HasPrefix(chain, want) || !strings.HasSuffix(chain, " idle → client c0001 saw ECONNRESET") {
		t.Errorf("chain = %q, want %q... idle → client c0001 saw ECONNRESET", chain, want)
	}
	if x.Kind != attribution.KindNatural || x.Sender.Role != session.RoleServer || x.Confidence != attribution.ConfidenceHigh {
		t.Errorf("explanation %+v", x.Cause)
	}
	checkPcap(t, l, res)
}

// TestClientAborts: the client resets its own stream; the RST is the
// client's, and no client error is blamed on it.
func TestClientAborts(t *testing.T) {
	l := newLab(t)
	srv := looptest.NewSSEServer(t)
	l.topology(session.RoleServer, "", "", srv.Addr())
	l.start(srv.Port)
	cl := looptest.StartClient(t, l.w, srv.Addr(), "c0002")
	sc := srv.Next(t)
	cl.WaitFirstEvent(t)
	looptest.Abort(t, cl.Conn())
	cl.Wait(t)
	looptest.WaitReset(t, sc)
	res := l.finish()

	if len(res.Segments) != 1 {
		t.Fatalf("got %d segments, want 1", len(res.Segments))
	}
	r := res.Segments[0]
	if r.Sender.Role != session.RoleClient || r.Receiver.Role != session.RoleServer || r.Receiver.Addr != srv.Addr() ||
		r.Link != session.LinkDirect || r.Kind != attribution.KindNatural || r.Reason != attribution.ReasonAbort {
		t.Errorf("attribution = %+v, want client → server abort on the direct link", r)
	}
	if r.Explains != nil {
		t.Errorf("a client's own abort explains no client error, got %+v", r.Explains)
	}
	checkPcap(t, l, res)
}

// TestForgedReset: a third party injects an RST in the server's name with
// the right sequence number. The client sees ECONNRESET; the server's
// socket lives on and sends again, which unmasks the forgery.
func TestForgedReset(t *testing.T) {
	l := newLab(t)
	srv := looptest.NewSSEServer(t)
	l.topology(session.RoleServer, "", "", srv.Addr())
	l.start(srv.Port)
	l.watch.Store(true)
	cl := looptest.StartClient(t, l.w, srv.Addr(), "c0003")
	sc := srv.Next(t)
	cl.WaitFirstEvent(t)
	clientAP := netip.MustParseAddrPort(cl.Conn().LocalAddr().String())
	serverAP := netip.MustParseAddrPort(srv.Addr())

	// Learn the server's next sequence number and what it acknowledged, as
	// an on-path middlebox would, from the packets of the stream.
	var seq, ack uint32
	var have bool
	deadline := time.After(looptest.Deadline)
	for !have {
		select {
		case p := <-l.packets:
			if p.src == serverAP && p.dst == clientAP && p.payload > 0 {
				seq, ack, have = p.seq+uint32(p.payload), p.ack, true
			}
		case <-deadline:
			t.Fatal("the stream's data packet was not captured")
		}
	}
	l.watch.Store(false)
	time.Sleep(idleBeforeAbort)
	looptest.ForgeRST(t, serverAP, clientAP, seq, ack)
	cl.Wait(t)
	if cl.Class() != "ECONNRESET" {
		t.Fatalf("client saw %q (%v), want ECONNRESET from the forged RST", cl.Class(), cl.Err())
	}
	// The server knows nothing of it and keeps streaming; the client's
	// stack answers with a reset.
	if _, err := sc.Write([]byte("data: after\n\n")); err != nil {
		t.Fatal(err)
	}
	looptest.WaitReset(t, sc)
	res := l.finish()

	forged := only(res.Segments, func(s attribution.Segment) bool { return s.Kind == attribution.KindForged })
	if len(forged) != 1 {
		t.Fatalf("got %d forged segments, want 1", len(forged))
	}
	r := forged[0]
	if r.Sender.Role != session.RoleMiddlebox || r.InNameOf == nil || r.InNameOf.Addr != srv.Addr() || r.Receiver.Role != session.RoleClient ||
		r.Link != session.LinkDirect {
		t.Errorf("attribution = %+v, want a middlebox in the server's name → client on the direct link", r)
	}
	if !strings.Contains(strings.Join(r.Evidence, "; "), "kept sending") {
		t.Errorf("evidence %q does not say the server kept sending", r.Evidence)
	}
	if r.Explains == nil || r.Explains.Class != "ECONNRESET" {
		t.Errorf("explains %+v, want the client's ECONNRESET", r.Explains)
	}
	x := explanationOf(t, res, "c0003")
	if want := "a middlebox on the direct client–server connection forged a reset to the client"; !strings.HasPrefix(x.ChainText(), want) ||
		x.Kind != attribution.KindForged || x.InNameOf == nil || x.InNameOf.Role != session.RoleServer {
		t.Errorf("explanation %+v chain %q, want prefix %q", x.Cause, x.ChainText(), want)
	}
	looptest.IdleAbout(t, "idle", r.Idle.D(), idleBeforeAbort)
	replies := only(res.Segments, func(s attribution.Segment) bool { return s.Reason == attribution.ReasonReply })
	if len(replies) != 1 || replies[0].Sender.Role != session.RoleClient || replies[0].Kind != attribution.KindNatural {
		t.Errorf("want one reply RST from the client's stack, got %+v", replies)
	}
	checkPcap(t, l, res)
}

// TestServerResetThroughProxy is the chain of the issue: the server resets
// the upstream hop, the proxy resets the client hop, the client sees
// ECONNRESET. The proxy is the test's relay (see relay), which writes the
// HopConn records the ssestress proxy writes.
func TestServerResetThroughProxy(t *testing.T) {
	l, srv, rl := proxyLab(t)
	res := serverResetThroughProxy(t, l, srv, rl)
	checkChainThroughProxy(t, res, srv, rl)
	checkPcap(t, l, res)
}

// serverResetThroughProxy runs the traffic of TestServerResetThroughProxy.
func serverResetThroughProxy(t *testing.T, l *lab, srv *looptest.SSEServer, rl *relay) *attribution.Result {
	cl := looptest.StartClient(t, l.w, rl.addr(), "c0004")
	sc := srv.Next(t)
	p := rl.next(t)
	cl.WaitFirstEvent(t)
	time.Sleep(idleBeforeAbort)
	looptest.Abort(t, sc)
	cl.Wait(t)
	<-p.done
	if cl.Class() != "ECONNRESET" {
		t.Fatalf("client saw %q (%v), want ECONNRESET", cl.Class(), cl.Err())
	}
	return l.finish()
}

func checkChainThroughProxy(t *testing.T, res *attribution.Result, srv *looptest.SSEServer, rl *relay) {
	t.Helper()
	rs := only(res.Segments, func(s attribution.Segment) bool { return s.Reason != attribution.ReasonReply })
	if len(rs) != 2 {
		t.Fatalf("got %d segments, want 2 (upstream, then client hop)", len(rs))
	}
	up, ch := rs[0], rs[1]
	if up.Sender.Role != session.RoleServer || up.Sender.Addr != srv.Addr() || up.Receiver.Role != session.RoleProxy ||
		up.Hop != session.HopUpstream || up.Proxy != "p1" || up.Kind != attribution.KindNatural {
		t.Errorf("upstream reset = %+v, want server → proxy p1 on hop upstream", up)
	}
	if ch.Sender.Role != session.RoleProxy || ch.Sender.Name != "p1" || ch.Sender.Addr != rl.addr() || ch.Receiver.Role != session.RoleClient ||
		ch.Hop != session.HopClient || ch.Kind != attribution.KindNatural {
		t.Errorf("client-hop reset = %+v, want proxy p1 → client on hop client", ch)
	}
	if up.Explains == nil || up.Explains.Class != "ECONNRESET" || up.Explains.ClientID != "c0004" || ch.Explains != nil {
		t.Errorf("explains: upstream %+v, client hop %+v; want the upstream reset as the root of c0004's ECONNRESET", up.Explains, ch.Explains)
	}
	looptest.IdleAbout(t, "upstream idle", up.Idle.D(), idleBeforeAbort)
	x := explanationOf(t, res, "c0004")
	want := "the server " + srv.Addr() + " sent a reset (RST) to proxy p1, on proxy p1's upstream hop after " + attribution.Words(up.Idle.D()) +
		" idle → proxy p1 reset its client hop (--on-upstream-error=reset) → client c0004 saw ECONNRESET"
	if x.ChainText() != want {
		t.Errorf("chain = %q\n want %q", x.ChainText(), want)
	}
	if len(x.Relays) != 1 || x.Relays[0].Proxy != "p1" || x.Relays[0].Policy != "reset" {
		t.Errorf("relays %+v, want p1 by its reset policy", x.Relays)
	}
}

// TestProxyResetsClientHop: a reset fault of the proxy fires on the client
// hop; the RST is labelled injected.
func TestProxyResetsClientHop(t *testing.T) {
	l, srv, rl := proxyLab(t)
	cl := looptest.StartClient(t, l.w, rl.addr(), "c0005")
	srv.Next(t)
	p := rl.next(t)
	cl.WaitFirstEvent(t)
	time.Sleep(idleBeforeAbort)
	p.injectReset(session.HopClient)
	cl.Wait(t)
	if cl.Class() != "ECONNRESET" {
		t.Fatalf("client saw %q (%v), want ECONNRESET", cl.Class(), cl.Err())
	}
	res := l.finish()

	rs := only(res.Segments, func(s attribution.Segment) bool { return s.Reason != attribution.ReasonReply })
	if len(rs) != 1 {
		t.Fatalf("got %d segments, want 1", len(rs))
	}
	r := rs[0]
	if r.Sender.Role != session.RoleProxy || r.Sender.Name != "p1" || r.Hop != session.HopClient || r.Receiver.Role != session.RoleClient ||
		r.Kind != attribution.KindInjected || r.FaultName != "reset" {
		t.Errorf("attribution = %+v, want an injected reset of proxy p1 on hop client", r)
	}
	if r.Explains == nil || r.Explains.ClientID != "c0005" {
		t.Errorf("explains %+v, want c0005's ECONNRESET", r.Explains)
	}
	x := explanationOf(t, res, "c0005")
	if want := `proxy p1's fault "reset" sent a reset (RST) to the client `; !strings.HasPrefix(x.ChainText(), want) ||
		!strings.HasSuffix(x.ChainText(), "→ client c0005 saw ECONNRESET") || x.Kind != attribution.KindInjected || x.Hop != session.HopClient {
		t.Errorf("chain = %q, want prefix %q", x.ChainText(), want)
	}
	checkPcap(t, l, res)
}

// TestProxyResetsUpstreamHop: a reset fault fires on the upstream hop; the
// proxy then closes the client hop, and the client's unexpected EOF is
// traced to the injected upstream reset.
func TestProxyResetsUpstreamHop(t *testing.T) {
	l, srv, rl := proxyLab(t)
	cl := looptest.StartClient(t, l.w, rl.addr(), "c0006")
	sc := srv.Next(t)
	p := rl.next(t)
	cl.WaitFirstEvent(t)
	time.Sleep(idleBeforeAbort)
	p.injectReset(session.HopUpstream)
	cl.Wait(t)
	looptest.WaitReset(t, sc)
	if cl.Class() != "UNEXPECTED_EOF" {
		t.Fatalf("client saw %q (%v), want UNEXPECTED_EOF", cl.Class(), cl.Err())
	}
	res := l.finish()

	if len(res.Segments) != 1 {
		t.Fatalf("got %d segments, want 1", len(res.Segments))
	}
	r := res.Segments[0]
	if r.Sender.Role != session.RoleProxy || r.Sender.Name != "p1" || r.Hop != session.HopUpstream || r.Receiver.Role != session.RoleServer ||
		r.Receiver.Addr != srv.Addr() || r.Kind != attribution.KindInjected {
		t.Errorf("attribution = %+v, want an injected reset of proxy p1 toward the server on hop upstream", r)
	}
	if r.Explains == nil || r.Explains.ClientID != "c0006" || r.Explains.Class != "UNEXPECTED_EOF" {
		t.Errorf("explains %+v, want c0006's UNEXPECTED_EOF", r.Explains)
	}
	x := explanationOf(t, res, "c0006")
	if !strings.HasSuffix(x.ChainText(), "→ proxy p1 passed the end on to its client hop (FIN) → client c0006 saw UNEXPECTED_EOF") ||
		x.Kind != attribution.KindInjected || x.Hop != session.HopUpstream || x.Seen != attribution.SeenCut {
		t.Errorf("explanation %+v seen %s chain %q", x.Cause, x.Seen, x.ChainText())
	}
	checkPcap(t, l, res)
}

// proxyLab is a lab with a server and the relay in front of it as proxy
// p1, capturing both ports.
func proxyLab(t *testing.T) (*lab, *looptest.SSEServer, *relay) {
	l := newLab(t)
	srv := looptest.NewSSEServer(t)
	rl := newRelay(t, l.w, "p1", srv.Addr())
	l.topology(session.RoleServer, "", "", srv.Addr())
	l.topology(session.RoleProxy, "p1", session.HopClient, rl.addr())
	l.start(srv.Port, rl.port())
	return l, srv, rl
}

// checkPcap checks that the pcap file holds every RST the attribution
// counted, read back by ReadFile and, when installed, by tcpdump -r.
func checkPcap(t *testing.T, l *lab, res *attribution.Result) {
	t.Helper()
	captured := len(res.Segments) // one capture: every RST packet is a segment of its own
	fr, err := ReadFile(l.pcap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if int(fr.Resets) != captured {
		t.Errorf("pcap holds %d RSTs, attribution counted %d", fr.Resets, captured)
	}
	if fr.Packets != l.stats.Packets {
		t.Errorf("pcap holds %d packets, capture processed %d", fr.Packets, l.stats.Packets)
	}
	if n, ok := looptest.TcpdumpRSTs(t, l.pcap); ok && n != captured {
		t.Errorf("tcpdump -r finds %d RSTs, attribution counted %d", n, captured)
	}
}
