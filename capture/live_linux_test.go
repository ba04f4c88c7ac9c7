//go:build linux

package capture

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"

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
// the RST is attributed to the server on the direct hop and explains the
// client's ECONNRESET.
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

	rs := only(res.Resets, func(r session.Reset) bool { return r.Reason != session.ReasonReply })
	if len(rs) != 1 {
		t.Fatalf("got %d resets, want 1: %+v", len(rs), res.Resets)
	}
	r := rs[0]
	if r.SenderRole != session.RoleServer || r.SenderAddr != srv.Addr() || r.ReceiverRole != session.RoleClient ||
		r.Link != session.LinkDirect || r.Forged || r.Injected || r.Confidence != session.ConfidenceHigh {
		t.Errorf("attribution = %+v, want server → client on hop direct, high confidence", r)
	}
	if r.Error == nil || r.Error.Class != "ECONNRESET" || r.Error.ClientID != "c0001" || !r.Root {
		t.Errorf("error = %+v root=%v, want the client's ECONNRESET as root", r.Error, r.Root)
	}
	looptest.IdleAbout(t, "idle", r.Idle.D(), idleBeforeAbort)
	want := "server " + srv.Addr() + " sent RST to client on hop direct after "
	if !strings.HasPrefix(r.Chain, want) || !strings.HasSuffix(r.Chain, " idle → client saw ECONNRESET") {
		t.Errorf("chain = %q, want %q... idle → client saw ECONNRESET", r.Chain, want)
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

	if len(res.Resets) != 1 {
		t.Fatalf("got %d resets, want 1", len(res.Resets))
	}
	r := res.Resets[0]
	if r.SenderRole != session.RoleClient || r.ReceiverRole != session.RoleServer || r.ReceiverAddr != srv.Addr() ||
		r.Link != session.LinkDirect || r.Forged || r.Reason != session.ReasonAbort {
		t.Errorf("attribution = %+v, want client → server abort on hop direct", r)
	}
	if r.Error != nil {
		t.Errorf("a client's own abort explains no client error, got %+v", r.Error)
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

	forged := only(res.Resets, func(r session.Reset) bool { return r.Forged })
	if len(forged) != 1 {
		t.Fatalf("got %d forged resets, want 1", len(forged))
	}
	r := forged[0]
	if r.SenderRole != session.RoleMiddlebox || r.SenderAddr != srv.Addr() || r.ReceiverRole != session.RoleClient || r.Link != session.LinkDirect {
		t.Errorf("attribution = %+v, want a middlebox in the server's name → client on hop direct", r)
	}
	if !strings.Contains(strings.Join(r.Evidence, "; "), "kept sending") {
		t.Errorf("evidence %q does not say the server kept sending", r.Evidence)
	}
	if r.Error == nil || r.Error.Class != "ECONNRESET" || !r.Root {
		t.Errorf("error = %+v, want the client's ECONNRESET", r.Error)
	}
	if want := "a middlebox forged an RST as server " + srv.Addr() + " to client on hop direct"; !strings.HasPrefix(r.Chain, want) {
		t.Errorf("chain = %q, want prefix %q", r.Chain, want)
	}
	looptest.IdleAbout(t, "idle", r.Idle.D(), idleBeforeAbort)
	replies := only(res.Resets, func(r session.Reset) bool { return r.Reason == session.ReasonReply })
	if len(replies) != 1 || replies[0].SenderRole != session.RoleClient || replies[0].Forged {
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
func serverResetThroughProxy(t *testing.T, l *lab, srv *looptest.SSEServer, rl *relay) *Result {
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

func checkChainThroughProxy(t *testing.T, res *Result, srv *looptest.SSEServer, rl *relay) {
	t.Helper()
	rs := only(res.Resets, func(r session.Reset) bool { return r.Reason != session.ReasonReply })
	if len(rs) != 2 {
		t.Fatalf("got %d resets, want 2 (upstream, then client hop)", len(rs))
	}
	up, ch := rs[0], rs[1]
	if up.SenderRole != session.RoleServer || up.SenderAddr != srv.Addr() || up.ReceiverRole != session.RoleProxy ||
		up.Hop != session.HopUpstream || up.Proxy != "p1" || up.Injected || up.Forged {
		t.Errorf("upstream reset = %+v, want server → proxy p1 on hop upstream", up)
	}
	if ch.SenderRole != session.RoleProxy || ch.SenderName != "p1" || ch.SenderAddr != rl.addr() || ch.ReceiverRole != session.RoleClient ||
		ch.Hop != session.HopClient || ch.Injected || ch.Forged || ch.CausedBy != up.ID {
		t.Errorf("client-hop reset = %+v, want proxy p1 → client on hop client, caused by %s", ch, up.ID)
	}
	if !up.Root || ch.Root || up.Error == nil || ch.Error == nil || up.Error.Class != "ECONNRESET" || up.Error.ClientID != "c0004" {
		t.Errorf("error/root: upstream %+v root=%v, client hop %+v root=%v", up.Error, up.Root, ch.Error, ch.Root)
	}
	looptest.IdleAbout(t, "upstream idle", up.Idle.D(), idleBeforeAbort)
	want := "server " + srv.Addr() + " sent RST to proxy on hop upstream after " + words(up.Idle.D()) +
		" idle → proxy reset the client hop → client saw ECONNRESET"
	if up.Chain != want || ch.Chain != want {
		t.Errorf("chain = %q\n want %q", up.Chain, want)
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

	rs := only(res.Resets, func(r session.Reset) bool { return r.Reason != session.ReasonReply })
	if len(rs) != 1 {
		t.Fatalf("got %d resets, want 1", len(rs))
	}
	r := rs[0]
	if r.SenderRole != session.RoleProxy || r.SenderName != "p1" || r.Hop != session.HopClient || r.ReceiverRole != session.RoleClient ||
		!r.Injected || r.FaultName != "reset" || r.Forged || r.ConnID != p.id {
		t.Errorf("attribution = %+v, want an injected reset of proxy p1 on hop client", r)
	}
	if r.Error == nil || r.Error.ClientID != "c0005" || !r.Root {
		t.Errorf("error = %+v, want c0005's ECONNRESET", r.Error)
	}
	if want := `fault "reset" (reset) of proxy p1 sent RST from ` + rl.addr() + " to client on hop client after "; !strings.HasPrefix(r.Chain, want) ||
		!strings.HasSuffix(r.Chain, "→ client saw ECONNRESET") {
		t.Errorf("chain = %q, want prefix %q", r.Chain, want)
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

	if len(res.Resets) != 1 {
		t.Fatalf("got %d resets, want 1", len(res.Resets))
	}
	r := res.Resets[0]
	if r.SenderRole != session.RoleProxy || r.SenderName != "p1" || r.Hop != session.HopUpstream || r.ReceiverRole != session.RoleServer ||
		r.ReceiverAddr != srv.Addr() || !r.Injected || r.Forged {
		t.Errorf("attribution = %+v, want an injected reset of proxy p1 toward the server on hop upstream", r)
	}
	if r.Error == nil || r.Error.ClientID != "c0006" || r.Error.Class != "UNEXPECTED_EOF" || !r.Root {
		t.Errorf("error = %+v, want c0006's UNEXPECTED_EOF", r.Error)
	}
	if !strings.HasSuffix(r.Chain, "→ proxy closed the client hop with FIN → client saw UNEXPECTED_EOF") {
		t.Errorf("chain = %q", r.Chain)
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
func checkPcap(t *testing.T, l *lab, res *Result) {
	t.Helper()
	captured := len(only(res.Resets, func(r session.Reset) bool { return r.Confidence == session.ConfidenceHigh }))
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
