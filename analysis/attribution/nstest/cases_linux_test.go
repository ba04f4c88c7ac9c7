//go:build linux

package nstest

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/session"
)

// Each case below builds its own network, runs real processes per hop and
// checks the first sentence of `report` and its JSON verdict. They run in
// parallel; each takes 5–10 s (processes start, a few seconds of load,
// two reports).

// TestTwoProxiesInjectUpstream: clients → proxy A → proxy B (a reset fault
// on its upstream hop) → server, three processes, each with --capture on
// the same loopback: B injected, A relayed; not the server.
func TestTwoProxiesInjectUpstream(t *testing.T) {
	t.Parallel()
	l := newLab(t, false)
	srv, srvURL := l.serve(l.client, "127.0.0.1:0", "--message-rate", "3000")
	pb, bURL := l.proxy(l.client, "B", srvURL, "--fault", "reset:hop=upstream,after=800ms", "--capture")
	pa, aURL := l.proxy(l.client, "A", bURL, "--capture")
	l.run(l.client, aURL, "--connections", "3", "--duration", "3s", "--capture")
	pa.stop(t)
	pb.stop(t)
	srv.stop(t)
	w := want{kind: attribution.KindInjected, senderRole: session.RoleProxy, senderName: "B", proxy: "B", hop: session.HopUpstream,
		relays: []string{"B", "A"}, ending: session.EndingRST,
		say:   []string{"Proxy B injected the resets, on its upstream hop", "A", "client errors (ECONNRESET"},
		never: []string{"The server"}, confidence: attribution.ConfidenceHigh, source: session.SourceClient}
	a := l.report("run.db", "A.db", "B.db")
	check(t, "run.db A.db B.db", a.verdict, a.sentence, w)
	if a.verdict.RSTSegments == 0 {
		t.Errorf("no RST segment counted from three captures of the same loopback")
	}
	check(t, "without packets", l.withoutPackets("run.db", "A.db", "B.db"), "", w)

	// B's file alone explains its own hops, with no client file.
	alone := w
	alone.relays = []string{"B"}
	alone.say = []string{"Proxy B injected the resets, on its upstream hop", "failed client connections of proxy B"}
	alone.source = session.SourceProxy
	b := l.report("B.db")
	check(t, "B.db alone", b.verdict, b.sentence, alone)
	check(t, "B.db alone without packets", l.withoutPackets("B.db"), "", alone)

	// A's file alone knows its upstream only as an address: it names the
	// sender by that, and says so.
	aa := l.report("A.db")
	if !strings.Contains(aa.sentence, "known only as proxy A's upstream") || aa.verdict.Cause == nil || aa.verdict.Cause.Kind != attribution.KindNatural {
		t.Errorf("A.db alone: %s", aa.sentence)
	}
}

// TestServerResetsThroughProxy: a server that really resets (SO_LINGER 0)
// behind one proxy: the server sent the RST on the upstream hop, the
// proxy relayed it.
func TestServerResetsThroughProxy(t *testing.T) {
	t.Parallel()
	l := newLab(t, false)
	srv := l.startChild(l.client, "reset server", map[string]string{childEnv: "server", "NSTEST_LISTEN": "127.0.0.1:0", "NSTEST_RESET_AFTER": "700ms"})
	srvURL := srv.waitFor(t, listeningRe, 10*time.Second)[1]
	p, pURL := l.proxy(l.client, "P", srvURL, "--capture")
	l.run(l.client, pURL, "--connections", "3", "--duration", "3s", "--capture")
	p.stop(t)
	srv.kill()
	w := want{kind: attribution.KindNatural, senderRole: session.RoleServer, proxy: "P", hop: session.HopUpstream,
		relays: []string{"P"}, ending: session.EndingRST,
		say:   []string{"The server " + strings.TrimPrefix(srvURL, "http://"), "sent the resets, on proxy P's upstream hop", "proxy P relayed them"},
		never: []string{"injected", "middlebox"}, confidence: attribution.ConfidenceHigh, source: session.SourceClient}
	a := l.report("run.db", "P.db")
	check(t, "run.db P.db", a.verdict, a.sentence, w)
	noPackets := w
	noPackets.confidence = attribution.ConfidenceMedium // the proxy's record of what reached it
	noPackets.never = []string{"injected"}
	noPackets.say = append(noPackets.say, "(or a middlebox in its name: without packets the two look the same)")
	check(t, "without packets", l.withoutPackets("run.db", "P.db"), "", noPackets)

	alone := w
	alone.say = []string{"sent the resets, on proxy P's upstream hop", "failed client connections of proxy P"}
	alone.source = session.SourceProxy
	b := l.report("P.db")
	check(t, "P.db alone", b.verdict, b.sentence, alone)
}

// TestServerKilledBehindProxy: the server killed with SIGKILL (its kernel
// closes the streams with FIN): the server closed them, the proxy turned
// them into resets by its policy.
func TestServerKilledBehindProxy(t *testing.T) {
	t.Parallel()
	l := newLab(t, false)
	srv, srvURL := l.serve(l.client, "127.0.0.1:0", "--message-rate", "3000")
	p, pURL := l.proxy(l.client, "P", srvURL, "--capture")
	go func() {
		// Once the three streams flow, the server dies.
		l.waitEstablished(l.client, srvURL[strings.LastIndexByte(srvURL, ':')+1:], 3, 20*time.Second)
		time.Sleep(500 * time.Millisecond)
		srv.kill()
	}()
	l.run(l.client, pURL, "--connections", "3", "--duration", "3s", "--capture")
	p.stop(t)
	w := want{kind: attribution.KindNatural, senderRole: session.RoleServer, proxy: "P", hop: session.HopUpstream,
		relays: []string{"P"}, ending: session.EndingFIN,
		say: []string{"The server " + strings.TrimPrefix(srvURL, "http://"), "closed the streams (FIN), on proxy P's upstream hop",
			"proxy P turned them into resets for the clients (--on-upstream-error=reset)"},
		never: []string{"injected", "Proxy P itself"}, confidence: attribution.ConfidenceHigh, source: session.SourceClient}
	a := l.report("run.db", "P.db")
	check(t, "run.db P.db", a.verdict, a.sentence, w)
	if x := a.verdict.Cause; x != nil && len(x.Relays) == 1 && (x.Relays[0].Received != session.EndingFIN || x.Relays[0].Sent != session.EndingRST) {
		t.Errorf("relay %+v, want fin received, rst sent", x.Relays[0])
	}
	noPackets := w
	noPackets.confidence = attribution.ConfidenceMedium
	check(t, "without packets", l.withoutPackets("run.db", "P.db"), "", noPackets)
}

// TestResetInjectedOnClientHop: the proxy, client hop, injected.
func TestResetInjectedOnClientHop(t *testing.T) {
	t.Parallel()
	l := newLab(t, false)
	srv, srvURL := l.serve(l.client, "127.0.0.1:0", "--message-rate", "3000")
	p, pURL := l.proxy(l.client, "P", srvURL, "--fault", "reset:hop=client,after=700ms", "--capture")
	l.run(l.client, pURL, "--connections", "3", "--duration", "3s")
	p.stop(t)
	srv.stop(t)
	w := want{kind: attribution.KindInjected, senderRole: session.RoleProxy, senderName: "P", proxy: "P", hop: session.HopClient,
		ending: session.EndingRST, say: []string{"Proxy P injected the resets, on its client hop (fault reset:hop=client"},
		never: []string{"server"}, confidence: attribution.ConfidenceHigh}
	a := l.report("run.db", "P.db")
	check(t, "run.db P.db", a.verdict, a.sentence, w)
	check(t, "without packets", l.withoutPackets("run.db", "P.db"), "", w)
	alone := l.report("P.db")
	check(t, "P.db alone", alone.verdict, alone.sentence, w)
}

// TestClientAbortsWithLinger0: a client that aborts its socket with
// SO_LINGER 0: the client, on the client hop (the proxy's file alone).
func TestClientAbortsWithLinger0(t *testing.T) {
	t.Parallel()
	l := newLab(t, false)
	srv, srvURL := l.serve(l.client, "127.0.0.1:0", "--message-rate", "3000")
	p, pURL := l.proxy(l.client, "P", srvURL, "--capture")
	c := l.startChild(l.client, "aborting client", map[string]string{childEnv: "client-abort", "NSTEST_TARGET": pURL, "NSTEST_COUNT": "3"})
	c.wait(t, 30*time.Second)
	time.Sleep(300 * time.Millisecond) // the proxy records the hop's end
	p.stop(t)
	srv.stop(t)
	w := want{kind: attribution.KindNatural, senderRole: session.RoleClient, proxy: "P", hop: session.HopClient,
		ending: session.EndingRST, say: []string{"The clients reset their connections, on proxy P's client hop"},
		never: []string{"server", "injected"}, confidence: attribution.ConfidenceHigh, source: session.SourceProxy}
	a := l.report("P.db")
	check(t, "P.db", a.verdict, a.sentence, w)
	noPackets := w
	noPackets.confidence = attribution.ConfidenceMedium
	check(t, "without packets", l.withoutPackets("P.db"), "", noPackets)
}

// routerCase runs clients → proxy P (client namespace) → router → server
// (server namespace, with a capture of its own link), the router given
// rules. It returns the lab after the run.
func routerCase(t *testing.T, rules func(l *lab, port string), serveArgs []string, keepalive string, during func(l *lab, port string)) *lab {
	l := newLab(t, true)
	srv, srvURL := l.serve(l.server, l.serverIP+":0", serveArgs...)
	port := srvURL[strings.LastIndexByte(srvURL, ':')+1:]
	rules(l, port)
	capS := l.start(l.server, "server-side capture", "capture", "--iface", l.serverIf(), "--port", port,
		"--pcap", l.path("s.pcap"), "--out", l.path("s.db"))
	capS.waitFor(t, regexp.MustCompile(`capturing`), 10*time.Second)
	p, pURL := l.proxy(l.client, "P", srvURL, "--capture", "--keepalive", keepalive)
	if during != nil {
		go during(l, port)
	}
	l.run(l.client, pURL, "--connections", "2", "--duration", "4s")
	p.stop(t)
	capS.stop(t)
	srv.stop(t)
	return l
}

// TestRouterForgesResetTowardClientSide: a router rejects the proxy's
// segments with tcp-reset once the connection passed 3000 bytes: a
// middlebox forged the resets on P's upstream hop, in the server's name;
// not the server, not the proxy.
func TestRouterForgesResetTowardClientSide(t *testing.T) {
	t.Parallel()
	l := routerCase(t, func(l *lab, port string) {
		l.in(l.router, "iptables", "-A", "FORWARD", "-p", "tcp", "-s", l.clientIP, "--dport", port, "!", "--tcp-flags", "RST", "RST",
			"-m", "connbytes", "--connbytes", "3000:", "--connbytes-dir", "both", "--connbytes-mode", "bytes",
			"-j", "REJECT", "--reject-with", "tcp-reset")
	}, []string{"--message-rate", "3000"}, "15s", nil)
	w := want{kind: attribution.KindForged, senderRole: session.RoleMiddlebox, proxy: "P", hop: session.HopUpstream,
		relays: []string{"P"}, ending: session.EndingRST,
		say:   []string{"A middlebox forged the resets, on proxy P's upstream hop: sent to proxy P in the name of the server"},
		never: []string{"The server", "Proxy P injected", "itself"}, confidence: attribution.ConfidenceHigh, source: session.SourceClient}
	a := l.report("run.db", "P.db", "s.db")
	check(t, "run.db P.db s.db", a.verdict, a.sentence, w)
	// The client side's capture alone tells it too (TTL, the server kept
	// sending).
	b := l.report("run.db", "P.db")
	check(t, "run.db P.db (client-side capture only)", b.verdict, b.sentence, w)
	// Without packets the proxy's record cannot tell a forged reset from
	// the server's: it says so, at lower confidence.
	v := l.withoutPackets("run.db", "P.db")
	if v.Confidence == attribution.ConfidenceHigh || len(v.Enable) == 0 ||
		!strings.Contains(attribution.FirstSentence(v.Statement), "(or a middlebox in its name: without packets the two look the same)") {
		t.Errorf("without packets: confidence %s, enable %v: a forged reset must not be told apart without packets, and must be said so: %s",
			v.Confidence, v.Enable, v.Statement)
	}
}

// TestRouterForgesResetTowardServerSide: the router rejects the server's
// segments with tcp-reset: the server's socket is reset in P's name; P's
// keepalive later finds the server's host no longer knows the connection.
// With the server link's capture: a middlebox forged it, on P's upstream
// hop; with the client side alone: state was lost between the hops.
func TestRouterForgesResetTowardServerSide(t *testing.T) {
	t.Parallel()
	l := routerCase(t, func(l *lab, port string) {
		l.in(l.router, "iptables", "-A", "FORWARD", "-p", "tcp", "-s", l.serverIP, "--sport", port, "!", "--tcp-flags", "RST", "RST",
			"-m", "connbytes", "--connbytes", "3000:", "--connbytes-dir", "both", "--connbytes-mode", "bytes",
			"-j", "REJECT", "--reject-with", "tcp-reset")
	}, []string{"--message-rate", "3000"}, "1s", nil)
	w := want{kind: attribution.KindForged, senderRole: session.RoleMiddlebox, proxy: "P", hop: session.HopUpstream,
		relays: []string{"P"}, ending: session.EndingRST,
		say:   []string{"A middlebox forged the resets, on proxy P's upstream hop: sent to the server", "in the name of proxy P"},
		never: []string{"The server", "Proxy P injected", "itself"}, confidence: attribution.ConfidenceHigh, source: session.SourceClient}
	a := l.report("run.db", "P.db", "s.db")
	check(t, "run.db P.db s.db", a.verdict, a.sentence, w)
	lost := want{kind: attribution.KindLostState, senderRole: session.RoleServer, proxy: "P", hop: session.HopUpstream,
		relays: []string{"P"}, say: []string{"State was lost between proxy P and the server", "proxy P's keepalive probe (--keepalive 1s)"},
		never: []string{"The server"}, confidence: attribution.ConfidenceHigh}
	b := l.report("run.db", "P.db")
	check(t, "run.db P.db (client-side capture only)", b.verdict, b.sentence, lost)
}

// TestNATLosesState: a NAT router (SNAT, nf_conntrack_tcp_loose=0, INVALID
// segments rejected with tcp-reset) whose conntrack entries are deleted
// while the streams are quiet: state was lost between the hops, after the
// idle time before P's keepalive probe; not the server.
func TestNATLosesState(t *testing.T) {
	t.Parallel()
	l := routerCase(t, func(l *lab, port string) {
		l.in(l.router, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0")
		l.in(l.router, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", l.prefix+"r1", "-j", "MASQUERADE")
		l.in(l.router, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-p", "tcp", "!", "--tcp-flags", "RST", "RST",
			"-j", "REJECT", "--reject-with", "tcp-reset")
	}, []string{"--message-rate", "1", "--heartbeat", "0"}, "1s", func(l *lab, port string) {
		// Once both streams are open (and quiet: one event a minute),
		// the NAT forgets them.
		l.waitEstablished(l.server, port, 2, 20*time.Second)
		time.Sleep(300 * time.Millisecond)
		// (Not l.in: this runs beside the test, which must not FailNow.)
		if out, err := exec.Command("ip", "netns", "exec", l.router, "conntrack", "-D", "-p", "tcp").CombinedOutput(); err != nil {
			t.Errorf("conntrack -D: %v\n%s", err, out)
		}
	})
	w := want{kind: attribution.KindLostState, proxy: "P", hop: session.HopUpstream, relays: []string{"P"}, ending: session.EndingRST,
		senderRole: session.RoleMiddlebox,
		say: []string{"State was lost between proxy P and the server", "a NAT, conntrack or firewall timeout",
			"after 1.0 s idle, proxy P's keepalive probe (--keepalive 1s)"},
		never: []string{"The server"}, confidence: attribution.ConfidenceHigh, source: session.SourceClient}
	a := l.report("run.db", "P.db", "s.db")
	check(t, "run.db P.db s.db", a.verdict, a.sentence, w)
	if x := a.verdict.Cause; x != nil && (x.Idle.D() < 900*time.Millisecond || x.Idle.D() > 1500*time.Millisecond) {
		t.Errorf("idle before the loss %s, want about the keepalive period 1 s", x.Idle)
	}
	noPackets := w
	noPackets.senderRole, noPackets.confidence = session.RoleServer, attribution.ConfidenceMedium
	noPackets.say = []string{"State was lost between proxy P and the server"}
	check(t, "without packets", l.withoutPackets("run.db", "P.db"), "", noPackets)
}

// TestCleanRunBlamesNobody: no reset, nothing blamed.
func TestCleanRunBlamesNobody(t *testing.T) {
	t.Parallel()
	l := newLab(t, false)
	srv, srvURL := l.serve(l.client, "127.0.0.1:0", "--message-rate", "3000")
	p, pURL := l.proxy(l.client, "P", srvURL, "--capture")
	l.run(l.client, pURL, "--connections", "3", "--duration", "2s", "--capture")
	p.stop(t)
	srv.stop(t)
	for _, files := range [][]string{{"run.db", "P.db"}, {"P.db"}, {"run.db"}} {
		a := l.report(files...)
		if a.verdict.Cause != nil || a.verdict.ClientErrors != 0 || a.verdict.ProxyConnections != 0 || !strings.HasPrefix(a.sentence, "No client error") {
			t.Errorf("%v: a clean run blamed someone: %s", files, a.verdict.Statement)
		}
	}
}
