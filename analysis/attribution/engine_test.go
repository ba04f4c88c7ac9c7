package attribution

import (
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// The unit tests build Inputs by hand (records as the producers write
// them); the namespace tests in nstest run the real processes.

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

const ms = time.Millisecond

// hop is a HopConn of proxy on hop between local and remote.
func hop(proxy, id, which, local, remote string, opened, closed time.Duration, closedBy, ending string) session.HopConn {
	return session.HopConn{Proxy: proxy, ConnID: id, Hop: which, LocalAddr: local, RemoteAddr: remote,
		Opened: at(opened), Closed: at(closed), ClosedBy: closedBy, Ending: ending}
}

// chainInput is clients → proxy A → proxy B → server, each in a file of
// its own, B's fault resetting its upstream hop: three connections, one
// client error.
func chainInput(withB bool) *Input {
	in := &Input{}
	run := in.AddFile("run.db", session.RunInfo{Command: "run", Keepalive: session.Seconds(15 * time.Second)})
	a := in.AddFile("A.db", session.RunInfo{Command: "proxy"})
	in.Topology = append(in.Topology, Rec[session.Endpoint]{run, session.Endpoint{Role: session.RoleTarget, Addr: "127.0.0.1:9001"}})
	in.Proxies = append(in.Proxies, Rec[session.ProxyInfo]{a, session.ProxyInfo{Name: "A", Listen: "127.0.0.1:9001", Upstream: "127.0.0.1:9002",
		Keepalive: session.Seconds(15 * time.Second), OnUpstreamError: "reset"}})
	ca := hop("A", "A-1", session.HopClient, "127.0.0.1:9001", "127.0.0.1:40001", 0, 2*time.Second+2*ms, session.ClosedBySelf, session.EndingRST)
	ca.OnUpstreamError = "reset"
	ua := hop("A", "A-1", session.HopUpstream, "127.0.0.1:50001", "127.0.0.1:9002", ms, 2*time.Second+ms, session.ClosedByPeer, session.EndingRST)
	ua.Request = 1
	in.HopConns = append(in.HopConns, Rec[session.HopConn]{a, ca}, Rec[session.HopConn]{a, ua})
	in.Errors = append(in.Errors, Rec[session.ErrorRecord]{run, session.ErrorRecord{Time: at(2*time.Second + 3*ms), Source: session.SourceClient,
		ClientID: "c0001", Class: "ECONNRESET", LocalAddr: "127.0.0.1:40001", RemoteAddr: "127.0.0.1:9001",
		Age: session.Seconds(2 * time.Second), Idle: session.Seconds(50 * ms)}})
	if withB {
		b := in.AddFile("B.db", session.RunInfo{Command: "proxy"})
		in.Proxies = append(in.Proxies, Rec[session.ProxyInfo]{b, session.ProxyInfo{Name: "B", Listen: "127.0.0.1:9002", Upstream: "127.0.0.1:8090",
			Keepalive: session.Seconds(15 * time.Second), OnUpstreamError: "reset", Faults: []string{"reset:hop=upstream,after=2s"}}})
		cb := hop("B", "B-1", session.HopClient, "127.0.0.1:9002", "127.0.0.1:50001", ms, 2*time.Second+ms, session.ClosedBySelf, session.EndingRST)
		cb.OnUpstreamError = "reset"
		ub := hop("B", "B-1", session.HopUpstream, "127.0.0.1:50002", "127.0.0.1:8090", 2*ms, 2*time.Second, session.ClosedBySelf, session.EndingRST)
		ub.Request = 1
		in.HopConns = append(in.HopConns, Rec[session.HopConn]{b, cb}, Rec[session.HopConn]{b, ub})
		in.Faults = append(in.Faults, Rec[session.FaultEvent]{b, session.FaultEvent{Time: at(2 * time.Second), Proxy: "B", ConnID: "B-1", Request: 1,
			Hop: session.HopUpstream, FaultName: "reset:hop=upstream,after=2s", FaultKind: "reset", Action: session.ActionRST, Ending: session.EndingRST,
			LocalAddr: "127.0.0.1:50002", RemoteAddr: "127.0.0.1:8090"}})
	}
	return in
}

// TestChainAcrossFiles: A's upstream socket is B's client socket, so the
// client's error is followed through both proxies' files to B's fault;
// A's file alone names B's listener only as A's upstream.
func TestChainAcrossFiles(t *testing.T) {
	res := Analyze(chainInput(true), Options{})
	x := res.Verdict.Cause
	if x == nil || x.Kind != KindInjected || x.Sender.Name != "B" || x.Where() != "B/upstream" || x.FaultKind != "reset" {
		t.Fatalf("cause %+v\n%s", x, res.Verdict.Statement)
	}
	if len(x.Relays) != 2 || x.Relays[0].Proxy != "B" || x.Relays[1].Proxy != "A" || x.Relays[1].Received != session.EndingRST {
		t.Errorf("relays %+v", x.Relays)
	}
	want := "Proxy B injected the reset, on its upstream hop (fault reset:hop=upstream,after=2s); proxies B and A relayed them to the clients (--on-upstream-error=reset): 1 of 1 client errors (ECONNRESET 1), high confidence."
	if got := FirstSentence(res.Verdict.Statement); got != want {
		t.Errorf("statement\n got %s\nwant %s", got, want)
	}
	if chain := x.ChainText(); !strings.HasPrefix(chain, `proxy B's fault "reset:hop=upstream,after=2s" sent a reset (RST) to the server 127.0.0.1:8090 (known only as proxy B's upstream) on its upstream hop → proxy B reset its client hop`) ||
		!strings.HasSuffix(chain, "→ proxy A reset its client hop (--on-upstream-error=reset) → client c0001 saw ECONNRESET") {
		t.Errorf("chain %q", chain)
	}
	if res.Verdict.ProxyConnections != 0 {
		t.Errorf("%d proxy connections counted beside the client error that went through them", res.Verdict.ProxyConnections)
	}

	alone := Analyze(chainInput(false), Options{})
	y := alone.Verdict.Cause
	if y == nil || y.Kind != KindNatural || y.Sender.Role != session.RoleServer || !y.Sender.Assumed || y.Where() != "A/upstream" ||
		!strings.Contains(alone.Verdict.Statement, "The server 127.0.0.1:9002 (known only as proxy A's upstream) (or a middlebox in its name: without packets the two look the same) sent the reset") ||
		alone.Verdict.Confidence != ConfidenceMedium {
		t.Errorf("A alone: %+v: %s", y, alone.Verdict.Statement)
	}
}

// TestAssumedTargetIsNotBlamedOnTheClientsWord: a run's file alone, whose
// target no file describes: the client's ECONNRESET does not make the
// target "the server"; the verdict says what is missing.
func TestAssumedTargetIsNotBlamedOnTheClientsWord(t *testing.T) {
	in := chainInput(false)
	in.Proxies, in.HopConns = nil, nil
	res := Analyze(in, Options{})
	v := res.Verdict
	if v.Cause == nil || v.Cause.Kind != KindUnknown || v.Confidence != ConfidenceNone ||
		FirstSentence(v.Statement) != "Not enough evidence to name who sent the resets: 1 of 1 client errors (ECONNRESET 1), seen on the link client→127.0.0.1:9001." {
		t.Fatalf("verdict %+v", v)
	}
	if len(v.Enable) == 0 || !strings.Contains(strings.Join(v.Enable, "; "), "127.0.0.1:9001 is only known as an address sent to") {
		t.Errorf("enable %q", v.Enable)
	}
}

// proxyUpstreamInput is one proxy P in front of a server: its upstream hop
// reset by its peer after idle, the client hop reset by policy; keepalive
// is P's --keepalive.
func proxyUpstreamInput(idle, keepalive time.Duration) *Input {
	in := &Input{}
	p := in.AddFile("P.db", session.RunInfo{Command: "proxy"})
	in.Proxies = append(in.Proxies, Rec[session.ProxyInfo]{p, session.ProxyInfo{Name: "P", Listen: "127.0.0.1:9001", Upstream: "10.2.0.2:8090",
		Keepalive: session.Seconds(keepalive), OnUpstreamError: "reset"}})
	end := 3*time.Second + idle
	c := hop("P", "P-1", session.HopClient, "127.0.0.1:9001", "127.0.0.1:40001", 0, end+ms, session.ClosedBySelf, session.EndingRST)
	c.OnUpstreamError = "reset"
	u := hop("P", "P-1", session.HopUpstream, "10.1.0.2:50001", "10.2.0.2:8090", ms, end, session.ClosedByPeer, session.EndingRST)
	u.Request, u.Idle = 1, session.Seconds(idle)
	in.HopConns = append(in.HopConns, Rec[session.HopConn]{p, c}, Rec[session.HopConn]{p, u})
	return in
}

// TestLostStateByRecords: without packets, a RST from the upstream after a
// silence exactly the proxy's keepalive period answered the proxy's own
// probe: lost state, named with the idle and the probe, at medium
// confidence; after another silence it is the server's reset, medium.
func TestLostStateByRecords(t *testing.T) {
	res := Analyze(proxyUpstreamInput(1020*ms, time.Second), Options{})
	x := res.Verdict.Cause
	if x == nil || x.Kind != KindLostState || x.Sender.Role != session.RoleServer || x.Where() != "P/upstream" || x.Idle.D() != 1020*ms ||
		!strings.Contains(x.RevealedBy, "proxy P's keepalive probe (--keepalive 1s)") || res.Verdict.Confidence != ConfidenceMedium {
		t.Fatalf("cause %+v: %s", x, res.Verdict.Statement)
	}
	if !strings.HasPrefix(res.Verdict.Statement, "State was lost between proxy P and the server 10.2.0.2:8090 (known only as proxy P's upstream), on proxy P's upstream hop") ||
		!strings.Contains(res.Verdict.Statement, "after 1.0 s idle, proxy P's keepalive probe (--keepalive 1s) was answered with a reset") {
		t.Errorf("statement %s", res.Verdict.Statement)
	}
	other := Analyze(proxyUpstreamInput(7*time.Second, time.Second), Options{}).Verdict
	if y := other.Cause; y == nil || y.Kind != KindNatural || y.Sender.Role != session.RoleServer || other.Confidence != ConfidenceMedium {
		t.Errorf("after a silence unlike the keepalive: %+v: %s", y, other.Statement)
	}
}

// flow is a capture's summary of one connection.
func flow(capture, dialer, listener string, first, last time.Duration, isnD, isnL uint32, ttlD, ttlL uint8, rsts ...session.RSTPacket) session.Flow {
	return session.Flow{Capture: capture, Dialer: dialer, Listener: listener, First: at(first), Last: at(last), SYN: at(first), SYNACK: at(first + ms/10),
		FromDialer:   session.FlowDirection{Packets: 10, ISN: isnD, TTLMin: ttlD, TTLMax: ttlD, LastData: at(first + ms)},
		FromListener: session.FlowDirection{Packets: 20, ISN: isnL, TTLMin: ttlL, TTLMax: ttlL, LastData: at(first + 2*ms)},
		RSTs:         rsts}
}

// TestCapturesOfTwoHostsAcrossANAT: the same connection captured on the
// client's host and, behind a SNAT router, on the server's host whose
// clock is 7 s ahead. The flows join by their initial sequence numbers,
// the clocks align by the handshake, a RST both saw counts once, and a RST
// only the client's side saw, in the server's name with the router's TTL,
// is a middlebox's: the server's side, nearer to the server, has no twin.
func TestCapturesOfTwoHostsAcrossANAT(t *testing.T) {
	skew := 7 * time.Second
	in := &Input{}
	x := session.CaptureInfo{ID: "client-host/eth0", Host: "client-host", Started: at(0), Stopped: at(time.Minute)}
	y := session.CaptureInfo{ID: "server-host/eth0", Host: "server-host", Started: at(skew), Stopped: at(time.Minute + skew)}
	// Connection 1: a forged RST toward the client, seen on the client's
	// side only (TTL 64 where the server's packets arrive with 63).
	forged := session.RSTPacket{Time: at(5 * time.Second), From: session.FromListener, Seq: 777, TTL: 64, HasAck: true,
		SenderLastData: at(2 * ms), ReceiverLastData: at(ms)}
	in.AddCapture(x, []session.Flow{
		flow("", "10.1.0.2:40000", "10.2.0.2:80", 0, 5*time.Second, 1000, 9000, 64, 63, forged),
		// Connection 2: the server's own reset, seen on both sides.
		flow("", "10.1.0.2:40001", "10.2.0.2:80", time.Second, 6*time.Second, 2000, 8000, 64, 63,
			session.RSTPacket{Time: at(6 * time.Second), From: session.FromListener, Seq: 555, TTL: 63, HasAck: true}),
	})
	in.AddCapture(y, []session.Flow{
		flow("", "10.2.0.1:61000", "10.2.0.2:80", skew, 6*time.Second+skew, 1000, 9000, 63, 64),
		flow("", "10.2.0.1:61001", "10.2.0.2:80", time.Second+skew, 6*time.Second+skew, 2000, 8000, 63, 64,
			session.RSTPacket{Time: at(6*time.Second + skew + 30*time.Microsecond), From: session.FromListener, Seq: 555, TTL: 64, HasAck: true}),
	})
	e := New(in, Options{})
	var off time.Duration
	for _, c := range e.caps {
		if c.info.ID == y.ID {
			off = c.offset
		}
	}
	if off < skew-ms || off > skew+ms {
		t.Fatalf("server host's capture offset %s, want %s", off, skew)
	}
	segs := e.Segments(nil)
	if len(segs) != 2 {
		t.Fatalf("%d segments, want 2 (the shared RST once): %+v", len(segs), segs)
	}
	var fs, gs Segment
	for _, s := range segs {
		if s.Kind == KindForged {
			fs = s
		} else {
			gs = s
		}
	}
	if fs.Sender.Role != session.RoleMiddlebox || fs.InNameOf == nil || fs.InNameOf.Addr != "10.2.0.2:80" ||
		!strings.Contains(strings.Join(fs.Evidence, "; "), "capture server-host/eth0, nearer to the server 10.2.0.2:80") ||
		!strings.Contains(strings.Join(fs.Evidence, "; "), "TTL 64") {
		t.Errorf("forged segment %+v", fs)
	}
	if gs.Kind != KindNatural || gs.Sender.Role != session.RoleServer || len(gs.Captures) != 2 {
		t.Errorf("the server's own RST %+v, want natural, seen by both captures", gs)
	}
}

// TestCaptureNeverOverridesTheProxysRecord: a RST in proxy P's name on its
// client hop, while P recorded its client hop reset by its peer: P did not
// send it; forged. A segment P's record says it sent is P's, injected by
// the fault it recorded.
func TestCaptureNeverOverridesTheProxysRecord(t *testing.T) {
	in := &Input{}
	p := in.AddFile("P.db", session.RunInfo{Command: "proxy"})
	in.Proxies = append(in.Proxies, Rec[session.ProxyInfo]{p, session.ProxyInfo{Name: "P", Listen: "127.0.0.1:9001", Upstream: "127.0.0.1:8090", OnUpstreamError: "reset"}})
	c1 := hop("P", "P-1", session.HopClient, "127.0.0.1:9001", "127.0.0.1:40001", 0, 2*time.Second, session.ClosedByPeer, session.EndingRST)
	c2 := hop("P", "P-2", session.HopClient, "127.0.0.1:9001", "127.0.0.1:40002", 0, 3*time.Second, session.ClosedBySelf, session.EndingRST)
	c2.Faults = []session.FaultFiring{{FaultName: "reset:after=3s", FaultKind: "reset", Action: session.ActionRST, Ending: session.EndingRST, Time: at(3 * time.Second)}}
	in.HopConns = append(in.HopConns, Rec[session.HopConn]{p, c1}, Rec[session.HopConn]{p, c2})
	rst := func(d time.Duration) session.RSTPacket {
		return session.RSTPacket{Time: at(d), From: session.FromListener, Seq: 1, TTL: 64, HasAck: true}
	}
	in.Captures = append(in.Captures, Rec[session.CaptureInfo]{p, session.CaptureInfo{ID: "lo"}})
	in.Flows = append(in.Flows,
		Rec[session.Flow]{p, flow("lo", "127.0.0.1:40001", "127.0.0.1:9001", 0, 2*time.Second, 1, 2, 64, 64, rst(2*time.Second-ms))},
		Rec[session.Flow]{p, flow("lo", "127.0.0.1:40002", "127.0.0.1:9001", 0, 3*time.Second, 3, 4, 64, 64, rst(3*time.Second+ms))})
	segs := New(in, Options{}).Segments(nil)
	if len(segs) != 2 {
		t.Fatalf("segments %+v", segs)
	}
	if s := segs[0]; s.Kind != KindForged || !strings.Contains(strings.Join(s.Evidence, "; "), "proxy P recorded its client hop as reset by its peer") {
		t.Errorf("RST in P's name that P did not send: %+v", s)
	}
	if s := segs[1]; s.Kind != KindInjected || s.FaultName != "reset:after=3s" {
		t.Errorf("RST P's fault sent: %+v", s)
	}
}

// TestNumbersOursFirst: a value that is one of our own numbers (our
// keepalive, a fault's duration) is named as ours, never as the middlebox
// default it shares: the demo's 5 s reset is the injected fault, not the
// Node.js keep-alive timeout.
func TestNumbersOursFirst(t *testing.T) {
	in := &Input{}
	f := in.AddFile("run.db", session.RunInfo{Command: "run", Keepalive: session.Seconds(15 * time.Second)})
	in.Proxies = append(in.Proxies, Rec[session.ProxyInfo]{f, session.ProxyInfo{Name: "run-proxy", Keepalive: session.Seconds(15 * time.Second),
		Faults: []string{"reset:hop=upstream,after=5s,toxicity=0.5"}}})
	nums := New(in, Options{}).Numbers()
	for _, c := range []struct {
		s    float64
		kind string
		has  string
	}{
		{5.1, NumberFault, "injected fault reset:hop=upstream,after=5s,toxicity=0.5 of proxy run-proxy (after=5s)"},
		{15, NumberKeepalive, "proxy run-proxy's own keepalive probe (--keepalive 15s)"},
		{350, NumberMiddlebox, "NAT gateway idle timeout (350 s)"},
	} {
		n, ok := NameNumber(nums, c.s)
		if !ok || n.Kind != c.kind || !strings.Contains(n.Words, c.has) {
			t.Errorf("%v s named %+v, want %s %q", c.s, n, c.kind, c.has)
		}
	}
	if _, ok := NameNumber(nums, 42); ok {
		t.Error("42 s named")
	}
}

// TestCleanInputBlamesNobody: nothing to explain.
func TestCleanInputBlamesNobody(t *testing.T) {
	in := &Input{}
	p := in.AddFile("P.db", session.RunInfo{Command: "proxy"})
	in.HopConns = append(in.HopConns,
		Rec[session.HopConn]{p, hop("P", "P-1", session.HopClient, "127.0.0.1:9001", "127.0.0.1:40001", 0, time.Second, session.ClosedByPeer, session.EndingFIN)},
		Rec[session.HopConn]{p, hop("P", "P-1", session.HopUpstream, "127.0.0.1:50001", "127.0.0.1:8090", 0, time.Second, session.ClosedBySelf, session.EndingFIN)})
	v := Analyze(in, Options{}).Verdict
	if v.Cause != nil || v.ClientErrors != 0 || v.ProxyConnections != 0 || !strings.HasPrefix(v.Statement, "No client error") {
		t.Errorf("verdict %+v", v)
	}
}

// TestConflictIsSaid: proxy P recorded closing its upstream hop itself,
// with no fault, while the packets show the server's RST 2.5 seconds
// before: the packets decide who sent the first segment, and the verdict
// says the two disagree instead of picking one silently.
func TestConflictIsSaid(t *testing.T) {
	in := proxyUpstreamInput(0, 15*time.Second)
	for i := range in.HopConns {
		if h := &in.HopConns[i].R; h.Hop == session.HopUpstream {
			h.ClosedBy = session.ClosedBySelf
		}
	}
	in.Captures = append(in.Captures, Rec[session.CaptureInfo]{0, session.CaptureInfo{ID: "eth0"}})
	in.Flows = append(in.Flows, Rec[session.Flow]{0, flow("eth0", "10.1.0.2:50001", "10.2.0.2:8090", ms, 3*time.Second, 1, 2, 64, 63,
		session.RSTPacket{Time: at(500 * ms), From: session.FromListener, Seq: 9, TTL: 63, HasAck: true})})
	v := Analyze(in, Options{}).Verdict
	if x := v.Cause; x == nil || x.Kind != KindNatural || x.Sender.Role != session.RoleServer || x.Evidence != EvidencePacket {
		t.Fatalf("cause %+v", v.Cause)
	}
	if len(v.Conflicts) != 1 || !strings.Contains(v.Conflicts[0], "proxy P recorded ending its upstream hop itself (rst), but the packets show the server") {
		t.Errorf("conflicts %q", v.Conflicts)
	}
}
