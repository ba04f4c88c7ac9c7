package capture

import (
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

const (
	aClient   = "127.0.0.1:50000"
	aProxy    = "127.0.0.1:8080"
	aProxyOut = "127.0.0.1:40000"
	aServer   = "127.0.0.1:3000"
)

// proxyHops returns the two HopConns of one proxied stream.
func proxyHops(clientHow, clientBy, upHow, upBy string, closeAt time.Duration) []session.HopConn {
	return []session.HopConn{
		{Proxy: "p1", ConnID: "p1-1", Hop: session.HopClient, LocalAddr: aProxy, RemoteAddr: aClient,
			Opened: t0, Closed: t0.Add(closeAt + time.Millisecond), Ending: clientHow, ClosedBy: clientBy},
		{Proxy: "p1", ConnID: "p1-1", Hop: session.HopUpstream, LocalAddr: aProxyOut, RemoteAddr: aServer,
			Opened: t0.Add(time.Millisecond), Closed: t0.Add(closeAt), Ending: upHow, ClosedBy: upBy},
	}
}

func clientError(class string, at time.Duration) session.ErrorRecord {
	return session.ErrorRecord{Time: t0.Add(at), Source: "client", ClientID: "c0001", Class: class,
		LocalAddr: aClient, RemoteAddr: aProxy, Age: session.Seconds(at), Idle: session.Seconds(60 * time.Second)}
}

var proxyTopology = []session.Endpoint{
	{Role: session.RoleServer, Addr: aServer},
	{Role: session.RoleProxy, Name: "p1", Hop: session.HopClient, Addr: aProxy},
}

// TestAttributeTTLForgery: an RST whose TTL differs from every other packet
// of its claimed sender came from another host.
func TestAttributeTTLForgery(t *testing.T) {
	segs := serverAbortSegs(aClient, aServer)
	segs[len(segs)-1].ttl = 57
	ev := &Evidence{Topology: proxyTopology[:1], Flows: track(t, nil, segs...),
		Errors: []session.ErrorRecord{{Time: t0.Add(60*time.Second + 3*time.Millisecond), Source: "client", ClientID: "c0001",
			Class: "ECONNRESET", LocalAddr: aClient, RemoteAddr: aServer}}}
	rs := Attribute(ev)
	if len(rs) != 1 {
		t.Fatalf("%d resets", len(rs))
	}
	r := rs[0]
	if !r.Forged || r.SenderRole != session.RoleMiddlebox || !strings.Contains(strings.Join(r.Evidence, ";"), "TTL 57") {
		t.Errorf("want a forged RST (TTL 57 vs 64): %+v", r)
	}
	if want := "a middlebox forged an RST as server " + aServer + " to client on hop direct after 60.0 s idle → client saw ECONNRESET"; r.Chain != want {
		t.Errorf("chain %q\nwant  %q", r.Chain, want)
	}
	// The same RST with the sender's TTL is the server's.
	segs[len(segs)-1].ttl = 64
	ev.Flows = track(t, nil, segs...)
	if r := Attribute(ev)[0]; r.Forged || r.SenderRole != session.RoleServer || r.Idle.D() != 60*time.Second || r.Age.D() != 60*time.Second+2*time.Millisecond {
		t.Errorf("genuine RST: %+v", r)
	}
}

// TestAttributeSocketEvidenceThroughProxy: no capture; the proxy's records
// still give the chain, with medium confidence.
func TestAttributeSocketEvidenceThroughProxy(t *testing.T) {
	ev := &Evidence{Topology: proxyTopology,
		HopConns: proxyHops(session.EndingRST, session.ClosedBySelf, session.EndingRST, session.ClosedByPeer, 60*time.Second),
		Errors:   []session.ErrorRecord{clientError("ECONNRESET", 60*time.Second+2*time.Millisecond)}}
	rs := Attribute(ev)
	if len(rs) != 2 {
		t.Fatalf("%d resets: %+v", len(rs), rs)
	}
	up, ch := rs[0], rs[1]
	if up.SenderRole != session.RoleServer || up.SenderAddr != aServer || up.Hop != session.HopUpstream || up.Confidence != session.ConfidenceMedium ||
		up.Idle != -1 || !up.Root || up.Error == nil || up.Error.ClientID != "c0001" {
		t.Errorf("upstream: %+v", up)
	}
	if ch.SenderRole != session.RoleProxy || ch.SenderName != "p1" || ch.Hop != session.HopClient || ch.CausedBy != up.ID || ch.Root {
		t.Errorf("client hop: %+v", ch)
	}
	want := "server " + aServer + " sent RST to proxy on hop upstream [medium confidence: no packet captured] → proxy reset the client hop → client saw ECONNRESET"
	if up.Chain != want {
		t.Errorf("chain %q\nwant  %q", up.Chain, want)
	}
}

// TestAttributeSocketEvidenceDirect: no capture and no proxy: the client's
// error is the only witness (low confidence).
func TestAttributeSocketEvidenceDirect(t *testing.T) {
	e := clientError("ECONNRESET", 30*time.Second)
	e.RemoteAddr = aServer
	ev := &Evidence{Topology: proxyTopology[:1], Errors: []session.ErrorRecord{e,
		{Time: t0, Source: "proxy:p1", Class: "ECONNRESET", LocalAddr: aProxy, RemoteAddr: aClient}, // not a client's
		{Time: t0, Source: "client", Class: "ECONNRESET"},                                           // no 4-tuple
	}}
	rs := Attribute(ev)
	if len(rs) != 1 {
		t.Fatalf("%d resets: %+v", len(rs), rs)
	}
	r := rs[0]
	if r.SenderRole != session.RoleServer || r.Confidence != session.ConfidenceLow || r.Idle.D() != 60*time.Second || r.Age.D() != 30*time.Second || !r.Root {
		t.Errorf("reset %+v", r)
	}
	if !strings.HasSuffix(r.Chain, "[low confidence: no packet captured] → client saw ECONNRESET") {
		t.Errorf("chain %q", r.Chain)
	}
}

// proxyResetFlow is the client hop of p1 ended by the proxy's RST at 60 s.
func proxyResetFlow(t *testing.T) []session.Flow {
	return track(t, nil, serverAbortSegs(aClient, aProxy)...)
}

func TestAttributeInjectedWindow(t *testing.T) {
	rstAt := t0.Add(60*time.Second + 2*time.Millisecond)
	for _, c := range []struct {
		name     string
		before   time.Duration
		action   string
		injected bool
	}{
		{"just before", 100 * time.Millisecond, "rst", true},
		{"recorded just after the packet", -20 * time.Millisecond, "rst", true},
		{"long before", 5 * time.Second, "rst", false},
		{"slows, does not end", 100 * time.Millisecond, "latency", false},
	} {
		hops := proxyHops(session.EndingRST, session.ClosedBySelf, session.EndingFIN, session.ClosedBySelf, 60*time.Second)
		ev := &Evidence{Topology: proxyTopology, HopConns: hops, Flows: proxyResetFlow(t),
			Faults: []session.FaultEvent{{Time: rstAt.Add(-c.before), Proxy: "p1", ConnID: "p1-1", Hop: session.HopClient,
				FaultName: "reset-60s", FaultKind: "reset", Action: c.action, Ending: session.ActionEnding(c.action)}},
			Errors: []session.ErrorRecord{clientError("ECONNRESET", 60*time.Second+3*time.Millisecond)}}
		rs := Attribute(ev)
		if len(rs) != 1 {
			t.Fatalf("%s: %d resets", c.name, len(rs))
		}
		if rs[0].Injected != c.injected || rs[0].SenderRole != session.RoleProxy || rs[0].Forged {
			t.Errorf("%s: injected=%v forged=%v role %s, want injected=%v", c.name, rs[0].Injected, rs[0].Forged, rs[0].SenderRole, c.injected)
		}
		if c.injected && (rs[0].FaultName != "reset-60s" || !strings.HasPrefix(rs[0].Chain, `fault "reset-60s" (reset) of proxy p1`)) {
			t.Errorf("%s: fault %q chain %q", c.name, rs[0].FaultName, rs[0].Chain)
		}
	}
}

// TestAttributeProxyDeniesReset: the proxy's own socket recorded that the
// client ended the hop, yet an RST in the proxy's name reached the client.
func TestAttributeProxyDeniesReset(t *testing.T) {
	ev := &Evidence{Topology: proxyTopology, HopConns: proxyHops(session.EndingRST, session.ClosedByPeer, "", "", 61*time.Second), Flows: proxyResetFlow(t),
		Errors: []session.ErrorRecord{clientError("ECONNRESET", 60*time.Second+3*time.Millisecond)}}
	r := Attribute(ev)[0]
	if !r.Forged || !strings.Contains(strings.Join(r.Evidence, ";"), "proxy p1 recorded its client hop as ended by the peer") {
		t.Errorf("want forged on the proxy's word: %+v", r)
	}
}

// TestAttributeUpstreamNotCaptured: the capture saw the client hop (on lo)
// but not the upstream (another interface); the proxy's record fills in.
func TestAttributeUpstreamNotCaptured(t *testing.T) {
	ev := &Evidence{Topology: proxyTopology, HopConns: proxyHops(session.EndingRST, session.ClosedBySelf, session.EndingRST, session.ClosedByPeer, 60*time.Second+time.Millisecond),
		Flows:  proxyResetFlow(t),
		Errors: []session.ErrorRecord{clientError("ECONNRESET", 60*time.Second+3*time.Millisecond)}}
	rs := Attribute(ev)
	if len(rs) != 2 {
		t.Fatalf("%d resets", len(rs))
	}
	up, ch := rs[0], rs[1]
	if up.Confidence != session.ConfidenceMedium || up.Hop != session.HopUpstream || !up.Root ||
		ch.Confidence != session.ConfidenceHigh || ch.CausedBy != up.ID {
		t.Errorf("upstream %+v\nclient hop %+v", up, ch)
	}
	if !strings.Contains(up.Chain, "→ proxy reset the client hop → client saw ECONNRESET") {
		t.Errorf("chain %q", up.Chain)
	}
}

// TestAttributePortReuse: two connections on the same 4-tuple; the error is
// matched to the one open at its time.
func TestAttributePortReuse(t *testing.T) {
	segs := serverAbortSegs(aClient, aServer)
	for _, sg := range serverAbortSegs(aClient, aServer) {
		sg.at += 120 * time.Second
		sg.seq += 100000
		sg.ack += 100000
		segs = append(segs, sg)
	}
	e := clientError("ECONNRESET", 180*time.Second+3*time.Millisecond)
	e.RemoteAddr = aServer
	ev := &Evidence{Topology: proxyTopology[:1], Flows: track(t, nil, segs...), Errors: []session.ErrorRecord{e}}
	rs := Attribute(ev)
	if len(rs) != 2 || rs[0].Error != nil || rs[1].Error == nil || !rs[1].Time.Equal(t0.Add(180*time.Second+2*time.Millisecond)) {
		t.Errorf("the error belongs to the second connection's RST: %+v", rs)
	}
}

// TestAttributeInjectedByAddress: fault events without hop records (an
// older proxy, or a file cut short) still label the proxy's RST, matched
// by the socket's addresses.
func TestAttributeInjectedByAddress(t *testing.T) {
	ev := &Evidence{Topology: proxyTopology, Flows: proxyResetFlow(t),
		Faults: []session.FaultEvent{{Time: t0.Add(60 * time.Second), Proxy: "p1", ConnID: "p1-9", Hop: session.HopClient,
			FaultName: "reset", FaultKind: "reset", Action: "rst", Ending: session.EndingRST, LocalAddr: aProxy, RemoteAddr: aClient}}}
	r := Attribute(ev)[0]
	if !r.Injected || r.SenderRole != session.RoleProxy || r.SenderName != "p1" || r.Hop != session.HopClient {
		t.Errorf("reset %+v, want injected by p1 on hop client", r)
	}
}

// TestAttributeRefused: an RST answering a SYN is a refusal, not an abort.
func TestAttributeRefused(t *testing.T) {
	ev := &Evidence{Flows: track(t, nil,
		seg{src: aClient, dst: aServer, flags: "S", seq: 10},
		seg{at: time.Millisecond, src: aServer, dst: aClient, flags: "RA", ack: 11})}
	rs := Attribute(ev)
	if len(rs) != 1 || rs[0].Reason != session.ReasonRefused || rs[0].SenderRole != session.RoleServer || rs[0].Forged {
		t.Errorf("resets %+v, want one refusal by the server", rs)
	}
}
