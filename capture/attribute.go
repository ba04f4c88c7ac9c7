package capture

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Evidence is everything attribution looks at: the session file's records
// and the capture's flow summaries.
type Evidence struct {
	Topology []session.Endpoint
	Conns    []session.ConnRecord
	Errors   []session.ErrorRecord
	HopConns []session.HopConn
	Faults   []session.FaultEvent
	Flows    []session.Flow
	// Ports are the server-side ports, for roles when the topology says
	// nothing (a stand-alone capture).
	Ports []int
}

// Matching windows. The capture stamps packets with the kernel's clock and
// the other producers stamp records with time.Now: the same clock, read a
// little later, and much later on a loaded machine.
const (
	// errorSlack is how long after the error an RST may be stamped and
	// still be its cause (the error is recorded after the read returns, so
	// normally the RST comes first).
	errorSlack = 500 * time.Millisecond
	// faultBefore and faultAfter bound when a fault must have fired around
	// an RST of the proxy to count as having injected it.
	faultBefore = 2 * time.Second
	faultAfter  = 500 * time.Millisecond
	// flowSlack lets a record's time precede its flow's first packet.
	flowSlack = time.Second
)

// Roles beyond those of the topology.
const roleUnknown = "unknown"

// Attribute turns the evidence into one Reset per RST, sorted by time:
// every captured RST packet, plus (where no packet was captured) the RSTs
// that the clients' errors and the proxies' hop records show, with lower
// confidence. Each client error is then followed, through the proxies'
// records, to the RSTs that caused it, and those carry the error and the
// chain in words. It only reads ev.
func Attribute(ev *Evidence) []session.Reset {
	ix := newIndex(ev)
	ix.packetResets()
	ix.hopResets()
	for i := range ev.Errors {
		ix.explain(&ev.Errors[i])
	}
	out := make([]session.Reset, 0, len(ix.all))
	for _, r := range ix.all {
		out = append(out, *r)
	}
	slices.SortStableFunc(out, func(a, b session.Reset) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// tuple is a socket's two addresses (local, remote), or a flow's (client,
// server).
type tuple [2]netip.AddrPort

// flowRef is a flow with its parsed addresses and its attributed RSTs
// (parallel to Flow.Resets).
type flowRef struct {
	f              *session.Flow
	client, server netip.AddrPort
	resets         []*session.Reset
}

type index struct {
	ev        *Evidence
	topo      map[netip.AddrPort]*session.Endpoint
	topoPort  map[uint16]*session.Endpoint  // endpoints on an unspecified address
	hops      map[tuple][]*session.HopConn  // (local, remote) of the proxy's socket
	upstreams map[string][]*session.HopConn // "<proxy>/<conn id>" → its upstream hops by open (one per request)
	conns     map[netip.AddrPort][]*session.ConnRecord
	remotes   map[netip.AddrPort]bool // addresses the clients dialed
	faults    map[string][]*session.FaultEvent
	faultsBy  map[tuple][]*session.FaultEvent
	flows     map[tuple][]*flowRef // by (smaller, larger) address
	ports     map[uint16]bool
	all       []*session.Reset
	ids       map[string]bool
	hopCache  map[string]*session.Reset // socket-evidence resets by HopConn key
}

func parseAP(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

func unordered(a, b netip.AddrPort) tuple {
	if a.Compare(b) <= 0 {
		return tuple{a, b}
	}
	return tuple{b, a}
}

func newIndex(ev *Evidence) *index {
	ix := &index{
		ev: ev, topo: map[netip.AddrPort]*session.Endpoint{}, topoPort: map[uint16]*session.Endpoint{},
		hops: map[tuple][]*session.HopConn{}, upstreams: map[string][]*session.HopConn{},
		conns: map[netip.AddrPort][]*session.ConnRecord{}, remotes: map[netip.AddrPort]bool{},
		faults: map[string][]*session.FaultEvent{}, faultsBy: map[tuple][]*session.FaultEvent{},
		flows: map[tuple][]*flowRef{}, ports: map[uint16]bool{},
		ids: map[string]bool{}, hopCache: map[string]*session.Reset{},
	}
	// A proxy's endpoint with Side upstream names the server it forwards
	// to (its own upstream address is an ephemeral port): that address is a
	// server unless another endpoint says what it is (a chained proxy).
	var upstreams []session.Endpoint
	for i := range ev.Topology {
		e := &ev.Topology[i]
		ap, ok := parseAP(e.Addr)
		if !ok {
			continue
		}
		if e.Role != session.RoleClient {
			ix.ports[ap.Port()] = true
		}
		if e.Role == session.RoleTarget {
			upstreams = append(upstreams, session.Endpoint{Role: session.RoleServer, Addr: e.Addr})
			continue
		}
		if ap.Addr().IsUnspecified() {
			ix.topoPort[ap.Port()] = e
		} else {
			ix.topo[ap] = e
		}
	}
	for i := range upstreams {
		e := &upstreams[i]
		ap, _ := parseAP(e.Addr)
		if ix.topo[ap] == nil && ix.topoPort[ap.Port()] == nil {
			ix.topo[ap] = e
		}
	}
	for _, p := range ev.Ports {
		ix.ports[uint16(p)] = true
	}
	for i := range ev.HopConns {
		h := &ev.HopConns[i]
		if h.Hop == session.HopUpstream {
			ix.upstreams[h.Proxy+"/"+h.ConnID] = append(ix.upstreams[h.Proxy+"/"+h.ConnID], h)
		}
		l, ok1 := parseAP(h.LocalAddr)
		r, ok2 := parseAP(h.RemoteAddr)
		if ok1 && ok2 {
			ix.hops[tuple{l, r}] = append(ix.hops[tuple{l, r}], h)
		}
		if h.Hop == session.HopClient && ok1 {
			ix.ports[l.Port()] = true
		}
	}
	for _, hs := range ix.hops {
		slices.SortFunc(hs, func(a, b *session.HopConn) int { return a.Opened.Compare(b.Opened) })
	}
	for _, hs := range ix.upstreams {
		slices.SortFunc(hs, func(a, b *session.HopConn) int { return a.Opened.Compare(b.Opened) })
	}
	for i := range ev.Conns {
		c := &ev.Conns[i]
		if l, ok := parseAP(c.LocalAddr); ok {
			ix.conns[l] = append(ix.conns[l], c)
		}
		if r, ok := parseAP(c.RemoteAddr); ok {
			ix.remotes[r] = true
			ix.ports[r.Port()] = true
		}
	}
	for _, cs := range ix.conns {
		slices.SortFunc(cs, func(a, b *session.ConnRecord) int { return a.Start.Compare(b.Start) })
	}
	for i := range ev.Faults {
		f := &ev.Faults[i]
		ix.faults[f.Proxy+"/"+f.ConnID] = append(ix.faults[f.Proxy+"/"+f.ConnID], f)
		l, ok1 := parseAP(f.LocalAddr)
		r, ok2 := parseAP(f.RemoteAddr)
		if ok1 && ok2 {
			ix.faultsBy[tuple{l, r}] = append(ix.faultsBy[tuple{l, r}], f)
		}
	}
	for i := range ev.Flows {
		f := &ev.Flows[i]
		c, ok1 := parseAP(f.Dialer)
		s, ok2 := parseAP(f.Listener)
		if !ok1 || !ok2 {
			continue
		}
		k := unordered(c, s)
		ix.flows[k] = append(ix.flows[k], &flowRef{f: f, client: c, server: s})
	}
	for _, fs := range ix.flows {
		slices.SortFunc(fs, func(a, b *flowRef) int { return a.f.First.Compare(b.f.First) })
	}
	return ix
}

// flowAt finds the flow between a and b that was open at t: the last one
// whose first packet came before t.
func (ix *index) flowAt(a, b netip.AddrPort, t time.Time) *flowRef {
	fs := ix.flows[unordered(a, b)]
	for i := len(fs) - 1; i >= 0; i-- {
		if !fs[i].f.First.After(t.Add(flowSlack)) {
			return fs[i]
		}
	}
	return nil
}

// hopAt finds the proxy socket (local, remote) that was open at t.
func (ix *index) hopAt(local, remote netip.AddrPort, t time.Time) *session.HopConn {
	hs := ix.hops[tuple{local, remote}]
	for i := len(hs) - 1; i >= 0; i-- {
		if !hs[i].Opened.After(t.Add(flowSlack)) {
			return hs[i]
		}
	}
	if len(hs) > 0 {
		return hs[0]
	}
	return nil
}

// connAt finds the client attempt on local address a at t.
func (ix *index) connAt(a netip.AddrPort, t time.Time) *session.ConnRecord {
	cs := ix.conns[a]
	for i := len(cs) - 1; i >= 0; i-- {
		if !cs[i].Start.After(t.Add(flowSlack)) {
			return cs[i]
		}
	}
	return nil
}

// party is one end of a flow as the topology knows it.
type party struct {
	addr netip.AddrPort
	role string
	name string
	hop  *session.HopConn // set when this end is an ssestress proxy's socket
	conn *session.ConnRecord
}

func (p party) words() string {
	switch {
	case p.role == session.RoleProxy && p.name != "":
		return "proxy " + p.name + " " + p.addr.String()
	case p.name != "":
		return p.role + " " + p.name + " " + p.addr.String()
	}
	return p.role + " " + p.addr.String()
}

// roleOf names an address from the topology and the clients' records; ""
// when nothing knows it.
func (ix *index) roleOf(a netip.AddrPort, t time.Time) party {
	p := party{addr: a}
	if e := ix.topo[a]; e != nil {
		p.role, p.name = e.Role, e.Name
		return p
	}
	if e := ix.topoPort[a.Port()]; e != nil {
		p.role, p.name = e.Role, e.Name
		return p
	}
	if c := ix.connAt(a, t); c != nil {
		p.role, p.conn = session.RoleClient, c
		return p
	}
	if ix.remotes[a] {
		p.role = session.RoleServer
	}
	return p
}

// parties names both ends of a flow and its hop.
func (ix *index) parties(fr *flowRef, t time.Time) (client, server party, hop string) {
	if h := ix.hopAt(fr.server, fr.client, t); h != nil {
		// The proxy accepted this connection: the client hop.
		server = party{addr: fr.server, role: session.RoleProxy, name: h.Proxy, hop: h}
		client = ix.roleOf(fr.client, t)
		if client.role == "" || client.role == session.RoleServer {
			client.role = session.RoleClient
		}
		return client, server, h.Hop
	}
	if h := ix.hopAt(fr.client, fr.server, t); h != nil {
		// The proxy dialed this connection: the upstream hop.
		client = party{addr: fr.client, role: session.RoleProxy, name: h.Proxy, hop: h}
		server = ix.roleOf(fr.server, t)
		if server.role == "" || server.role == session.RoleClient {
			server.role = session.RoleServer
		}
		return client, server, h.Hop
	}
	client, server = ix.roleOf(fr.client, t), ix.roleOf(fr.server, t)
	if server.role == "" && ix.ports[fr.server.Port()] {
		server.role = session.RoleServer
	}
	if server.role == "" && !fr.f.Midstream {
		// Nothing names it, but it answered the SYN.
		server.role = session.RoleServer
	}
	if client.role == "" && server.role != "" {
		client.role = session.RoleClient
	}
	if client.role == "" {
		client.role = roleUnknown
	}
	if server.role == "" {
		server.role = roleUnknown
	}
	switch {
	case server.role == session.RoleMiddlebox && server.name != "":
		hop = server.name
	case client.role == session.RoleMiddlebox && client.name != "":
		hop = client.name
	case server.role == session.RoleProxy:
		hop = session.HopClient
	case client.role == session.RoleProxy:
		hop = session.HopUpstream
	default:
		hop = session.LinkDirect
	}
	return client, server, hop
}

// place puts r on a proxy's hop, or on a link (direct, a middlebox's).
func place(r *session.Reset, hop string) {
	if hop == session.HopClient || hop == session.HopUpstream {
		r.Hop = hop
		return
	}
	r.Link = hop
}

// where is the hop or link of r, as chains name it.
func where(r *session.Reset) string {
	if r.Hop != "" {
		return r.Hop
	}
	return r.Link
}

// add registers a reset under a unique ID.
func (ix *index) add(r *session.Reset) {
	for n := 0; ; n++ {
		id := session.ResetID(r.Time, r.SenderAddr, r.ReceiverAddr, n)
		if !ix.ids[id] {
			r.ID = id
			ix.ids[id] = true
			break
		}
	}
	ix.all = append(ix.all, r)
}

// packetResets attributes every captured RST packet.
func (ix *index) packetResets() {
	for _, fs := range ix.flows {
		for _, fr := range fs {
			fr.resets = make([]*session.Reset, len(fr.f.RSTs))
			for i := range fr.f.RSTs {
				fr.resets[i] = ix.packetReset(fr, &fr.f.RSTs[i])
			}
		}
	}
}

func (ix *index) packetReset(fr *flowRef, rp *session.RSTPacket) *session.Reset {
	f := fr.f
	client, server, hop := ix.parties(fr, rp.Time)
	sender, receiver := server, client
	senderSide := &f.FromListener
	if rp.From == session.FromDialer {
		sender, receiver = client, server
		senderSide = &f.FromDialer
	}
	start := f.First
	if !f.SYN.IsZero() {
		start = f.SYN
	}
	lastData := rp.SenderLastData
	if rp.ReceiverLastData.After(lastData) {
		lastData = rp.ReceiverLastData
	}
	if lastData.IsZero() {
		lastData = start
	}
	r := &session.Reset{
		Time: rp.Time, Flow: session.FlowKey(f.First, f.Dialer, f.Listener, f.Capture),
		SenderAddr: sender.addr.String(), SenderRole: sender.role, SenderName: sender.name,
		ReceiverAddr: receiver.addr.String(), ReceiverRole: receiver.role,
		Age: session.Seconds(rp.Time.Sub(start)), Idle: session.Seconds(rp.Time.Sub(lastData)),
		Confidence: session.ConfidenceHigh,
	}
	place(r, hop)
	if h := proxyHop(client, server); h != nil {
		r.Proxy, r.ConnID = h.Proxy, h.ConnID
	}
	switch {
	case rp.From == session.FromListener && !f.SYN.IsZero() && f.SYNACK.IsZero():
		r.Reason = session.ReasonRefused
	case rp.PeerRSTBefore:
		r.Reason = session.ReasonReply
	case rp.SenderFINBefore:
		r.Reason = session.ReasonAfterClose
	default:
		r.Reason = session.ReasonAbort
	}
	if rp.SeqKnown && !rp.InSequence {
		r.Evidence = append(r.Evidence, "sequence number off the sender's next one: the receiver ignores it or answers with a challenge ACK")
	}
	if sender.role == session.RoleProxy {
		if fe := ix.injectedBy(sender.hop, tuple{sender.addr, receiver.addr}, rp.Time); fe != nil {
			r.Injected, r.FaultName, r.FaultKind = true, fe.name, fe.kind
		}
	}
	if r.Reason != session.ReasonReply && r.Reason != session.ReasonRefused && !r.Injected {
		if why := ix.forgery(sender, rp, senderSide); len(why) > 0 {
			r.Forged = true
			r.Evidence = append(r.Evidence, why...)
			r.SenderRole, r.SenderName = session.RoleMiddlebox, ""
			r.Evidence = append(r.Evidence, "sent in the name of "+sender.words())
		}
	}
	ix.add(r)
	return r
}

func proxyHop(a, b party) *session.HopConn {
	if a.hop != nil {
		return a.hop
	}
	return b.hop
}

// forgery lists the reasons to think the sender's own stack did not send
// this RST.
func (ix *index) forgery(sender party, rp *session.RSTPacket, side *session.FlowDirection) []string {
	var why []string
	if !rp.SenderSentAfter.IsZero() {
		why = append(why, fmt.Sprintf("%s kept sending on this connection %s after the RST: its socket was not reset",
			sender.words(), words(rp.SenderSentAfter.Sub(rp.Time))))
	}
	if side.TTLMax > 0 && (rp.TTL < side.TTLMin || rp.TTL > side.TTLMax) {
		span := fmt.Sprint(side.TTLMin)
		if side.TTLMax != side.TTLMin {
			span += "-" + fmt.Sprint(side.TTLMax)
		}
		why = append(why, fmt.Sprintf("RST with TTL %d while the sender's other packets had %s: it came from another host", rp.TTL, span))
	}
	if h := sender.hop; h != nil && h.ClosedBy != "" && h.ClosedBy != session.ClosedBySelf {
		why = append(why, fmt.Sprintf("proxy %s recorded its %s hop as ended by the %s (%s), not by itself", h.Proxy, h.Hop, h.ClosedBy, orDash(h.Ending)))
	}
	if c := sender.conn; c != nil && c.EndClass != "" && c.ClosedBy != session.ClosedBySelf {
		why = append(why, fmt.Sprintf("client %s did not close this connection: it saw %s", c.ClientID, c.EndClass))
	}
	return why
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// firing is a fault that fired on a proxy's socket.
type firing struct {
	name, kind string
	time       time.Time
}

// injectedBy finds a terminal fault of the proxy that fired on the hop h
// just before t; without the hop's record, on the proxy's socket sock
// (local, remote) as the fault events name it.
func (ix *index) injectedBy(h *session.HopConn, sock tuple, t time.Time) *firing {
	var best *firing
	consider := func(name, kind, ending string, at time.Time) {
		if ending == "" { // the proxy recorded that this firing did not end the connection
			return
		}
		if at.Before(t.Add(-faultBefore)) || at.After(t.Add(faultAfter)) {
			return
		}
		if best == nil || at.After(best.time) {
			best = &firing{name: name, kind: kind, time: at}
		}
	}
	if h == nil {
		for _, f := range ix.faultsBy[sock] {
			consider(f.FaultName, f.FaultKind, f.Ending, f.Time)
		}
		return best
	}
	for _, f := range h.Faults {
		consider(f.FaultName, f.FaultKind, f.Ending, f.Time)
	}
	for _, f := range ix.faults[h.Proxy+"/"+h.ConnID] {
		if f.Hop == h.Hop {
			consider(f.FaultName, f.FaultKind, f.Ending, f.Time)
		}
	}
	return best
}

// hopResets adds the resets the proxies' hop records show (How "RST")
// where no packet of that hop was captured.
func (ix *index) hopResets() {
	for i := range ix.ev.HopConns {
		h := &ix.ev.HopConns[i]
		if !strings.EqualFold(h.Ending, "RST") || h.Closed.IsZero() {
			continue
		}
		l, ok1 := parseAP(h.LocalAddr)
		r, ok2 := parseAP(h.RemoteAddr)
		if !ok1 || !ok2 {
			continue
		}
		if ix.flowAt(l, r, h.Closed) != nil {
			continue // the packets tell it better
		}
		ix.hopReset(h)
	}
}

// hopReset returns the socket-evidence reset of a hop that ended with RST
// (nil when it did not), creating it once.
func (ix *index) hopReset(h *session.HopConn) *session.Reset {
	key := string(h.Key())
	if r, ok := ix.hopCache[key]; ok {
		return r
	}
	if !strings.EqualFold(h.Ending, "RST") || h.Closed.IsZero() {
		ix.hopCache[key] = nil
		return nil
	}
	l, _ := parseAP(h.LocalAddr)
	rem, _ := parseAP(h.RemoteAddr)
	proxy := party{addr: l, role: session.RoleProxy, name: h.Proxy, hop: h}
	peer := ix.roleOf(rem, h.Opened)
	if peer.role == "" || peer.role == session.RoleProxy && h.Hop == session.HopClient {
		peer.role = session.RoleClient
		if h.Hop == session.HopUpstream {
			peer.role = session.RoleServer
		}
	}
	sender, receiver := peer, proxy
	if h.ClosedBy == session.ClosedBySelf {
		sender, receiver = proxy, peer
	}
	r := &session.Reset{
		Time: h.Closed, Hop: h.Hop, Proxy: h.Proxy, ConnID: h.ConnID,
		SenderAddr: sender.addr.String(), SenderRole: sender.role, SenderName: sender.name,
		ReceiverAddr: receiver.addr.String(), ReceiverRole: receiver.role,
		Age: session.Seconds(h.Closed.Sub(h.Opened)), Idle: -1, Reason: session.ReasonAbort,
		Confidence: session.ConfidenceMedium,
		Evidence: []string{fmt.Sprintf("proxy %s saw its %s hop end with RST, closed by the %s (no packet captured)",
			h.Proxy, h.Hop, orDash(h.ClosedBy))},
	}
	if sender.role == session.RoleProxy {
		if fe := ix.injectedBy(h, tuple{}, h.Closed); fe != nil {
			r.Injected, r.FaultName, r.FaultKind = true, fe.name, fe.kind
		}
	} else {
		r.Evidence = append(r.Evidence, "without packets an RST forged by a middlebox looks the same")
	}
	ix.add(r)
	ix.hopCache[key] = r
	return r
}

// explain follows one client error to the RSTs that caused it and labels
// them with the error and the chain.
func (ix *index) explain(e *session.ErrorRecord) {
	if e.Source != "" && e.Source != session.RoleClient {
		return
	}
	local, ok1 := parseAP(e.LocalAddr)
	remote, ok2 := parseAP(e.RemoteAddr)
	if !ok1 || !ok2 {
		return
	}
	ref := &session.ErrorRef{Time: e.Time, ClientID: e.ClientID, Attempt: e.Attempt, Class: e.Class,
		LocalAddr: e.LocalAddr, RemoteAddr: e.RemoteAddr}
	var chain []*session.Reset
	var steps []string

	fr := ix.flowAt(local, remote, e.Time)
	proxyHop := ix.hopAt(remote, local, e.Time)
	var clientRST *session.Reset
	if fr != nil {
		clientRST = fr.firstCause(local, e.Time.Add(errorSlack))
	}
	switch {
	case clientRST != nil && clientRST.SenderRole == session.RoleProxy && !clientRST.Injected && proxyHop != nil:
		if up := ix.upstreamCause(proxyHop, clientRST.Time); up != nil {
			chain = append(chain, up)
			steps = append(steps, describe(up), "proxy reset the client hop")
		} else {
			steps = append(steps, describe(clientRST))
		}
		chain = append(chain, clientRST)
	case clientRST != nil:
		chain = append(chain, clientRST)
		steps = append(steps, describe(clientRST))
	case proxyHop != nil:
		// No RST reached the client (or no packets): the proxy's records
		// say how its hops ended.
		hopRST := ix.hopReset(proxyHop)
		if fr == nil && hopRST != nil && hopRST.SenderRole == session.RoleProxy && !hopRST.Injected {
			if up := ix.upstreamCause(proxyHop, hopRST.Time); up != nil {
				chain = append(chain, up)
				steps = append(steps, describe(up), "proxy reset the client hop")
				chain = append(chain, hopRST)
				break
			}
		}
		if fr == nil && hopRST != nil {
			chain = append(chain, hopRST)
			steps = append(steps, describe(hopRST))
			break
		}
		if up := ix.upstreamCause(proxyHop, e.Time.Add(errorSlack)); up != nil {
			chain = append(chain, up)
			steps = append(steps, describe(up), clientHopEnd(fr, proxyHop, e.Time))
		}
	case fr == nil && isResetClass(e.Class):
		// No packets of this connection: the client's error is the only
		// witness.
		peer := ix.roleOf(remote, e.Time)
		if peer.role == "" || peer.role == session.RoleClient {
			peer.role = session.RoleServer
		}
		r := &session.Reset{
			Time: e.Time, Link: session.LinkDirect,
			SenderAddr: remote.String(), SenderRole: peer.role, SenderName: peer.name,
			ReceiverAddr: local.String(), ReceiverRole: session.RoleClient,
			Age: e.Age, Idle: e.Idle, Reason: session.ReasonAbort,
			Confidence: session.ConfidenceLow,
			Evidence:   []string{"the client saw " + e.Class + "; without packets an RST forged by a middlebox looks the same"},
		}
		switch {
		case peer.role == session.RoleMiddlebox && peer.name != "":
			r.Link = peer.name
		case peer.role == session.RoleProxy:
			r.Link, r.Hop, r.Proxy = "", session.HopClient, peer.name
		}
		ix.add(r)
		chain = append(chain, r)
		steps = append(steps, describe(r))
	}
	if len(chain) == 0 {
		return
	}
	steps = append(steps, "client saw "+e.Class)
	text := strings.Join(steps, " → ")
	for i, r := range chain {
		if r.Error != nil {
			continue // an RST explains one error; the first claim stands
		}
		r.Error, r.Chain = ref, text
		r.Root = i == 0
		if i > 0 {
			r.CausedBy = chain[i-1].ID
		}
	}
}

// firstCause is the first RST on the flow that reached to (not a reply to
// an earlier reset) up to time until.
func (fr *flowRef) firstCause(to netip.AddrPort, until time.Time) *session.Reset {
	for i, rp := range fr.f.RSTs {
		r := fr.resets[i]
		if r == nil || rp.Time.After(until) || r.Reason == session.ReasonReply {
			continue
		}
		if r.ReceiverAddr == to.String() {
			return r
		}
	}
	return nil
}

// firstAny is the first RST of the flow, either way, up to until.
func (fr *flowRef) firstAny(until time.Time) *session.Reset {
	for i, rp := range fr.f.RSTs {
		if r := fr.resets[i]; r != nil && !rp.Time.After(until) && r.Reason != session.ReasonReply {
			return r
		}
	}
	return nil
}

// upstreamCause finds the reset on the upstream hop paired with the client
// hop h, up to until: captured if its packets were, from the proxy's record
// otherwise.
func (ix *index) upstreamCause(h *session.HopConn, until time.Time) *session.Reset {
	// A keep-alive client connection has one upstream hop per request:
	// take the last one opened by then.
	var up *session.HopConn
	for _, u := range ix.upstreams[h.Proxy+"/"+h.ConnID] {
		if u.Opened.After(until.Add(flowSlack)) {
			break
		}
		up = u
	}
	if up == nil {
		return nil
	}
	l, ok1 := parseAP(up.LocalAddr)
	r, ok2 := parseAP(up.RemoteAddr)
	if ok1 && ok2 {
		if fr := ix.flowAt(l, r, until); fr != nil {
			return fr.firstAny(until.Add(errorSlack))
		}
	}
	if rst := ix.hopReset(up); rst != nil && !rst.Time.After(until.Add(errorSlack)) {
		return rst
	}
	return nil
}

// clientHopEnd says how the proxy ended the client hop when no RST reached
// the client.
func clientHopEnd(fr *flowRef, h *session.HopConn, before time.Time) string {
	if fr != nil && !fr.f.FromListener.FIN.IsZero() && !fr.f.FromListener.FIN.After(before.Add(errorSlack)) {
		return "proxy closed the client hop with FIN"
	}
	if strings.EqualFold(h.Ending, "FIN") && h.ClosedBy == session.ClosedBySelf {
		return "proxy closed the client hop with FIN"
	}
	return "proxy ended the client hop"
}

// describe is one step of a chain in words.
func describe(r *session.Reset) string {
	var b strings.Builder
	switch {
	case r.Forged:
		fmt.Fprintf(&b, "a middlebox forged an RST as %s to %s on hop %s", claimed(r), r.ReceiverRole, where(r))
	case r.Injected:
		fmt.Fprintf(&b, "fault %q (%s) of proxy %s sent RST from %s to %s on hop %s", r.FaultName, r.FaultKind, r.Proxy, r.SenderAddr, r.ReceiverRole, where(r))
	default:
		fmt.Fprintf(&b, "%s sent RST to %s on hop %s", senderWords(r), r.ReceiverRole, where(r))
	}
	if r.Idle >= 0 {
		fmt.Fprintf(&b, " after %s idle", words(r.Idle.D()))
	}
	if r.Reason == session.ReasonAfterClose {
		b.WriteString(" (after its own FIN)")
	}
	if r.Confidence != session.ConfidenceHigh {
		b.WriteString(" [" + r.Confidence + " confidence: no packet captured]")
	}
	return b.String()
}

func senderWords(r *session.Reset) string {
	if r.SenderRole == session.RoleProxy && r.SenderName != "" {
		return "proxy " + r.SenderName + " " + r.SenderAddr
	}
	if r.SenderName != "" {
		return r.SenderRole + " " + r.SenderName + " " + r.SenderAddr
	}
	return r.SenderRole + " " + r.SenderAddr
}

// claimed is the endpoint a forged RST pretended to come from.
func claimed(r *session.Reset) string {
	for _, e := range r.Evidence {
		if s, ok := strings.CutPrefix(e, "sent in the name of "); ok {
			return s
		}
	}
	return r.SenderAddr
}

// words formats a duration the way chains read: "60.0 s", "250 ms".
func words(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d > 0:
		return "<1 ms"
	}
	return "0 s"
}

// isResetClass reports whether an error class means the connection was
// reset.
func isResetClass(class string) bool { return class == "ECONNRESET" || class == "EPIPE" }
