package attribution

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// LinkDirect is the link of a client talking to the server with no
// ssestress proxy between them.
const LinkDirect = session.LinkDirect

// party is what the files know of one end of a connection.
func (e *Engine) party(c *conn, end int) Party {
	if h := c.hops[end]; h != nil {
		return Party{Role: session.RoleProxy, Name: e.proxyName(h), Addr: h.local.String()}
	}
	var addr netip.AddrPort
	var r roleInfo
	for _, a := range c.addrs[end] {
		if ri := e.topo.lookup(a); !addr.IsValid() || ri.rank() > r.rank() {
			addr, r = a, ri
		}
	}
	p := Party{Addr: addr.String()}
	if !addr.IsValid() {
		p.Addr = ""
	}
	switch {
	case r.role != "":
		p.Role, p.Name, p.Assumed, p.KnownAs = r.role, r.name, r.assumed, r.as
	case end == endListener:
		p.Role, p.Assumed = session.RoleServer, true
	default:
		p.Role = session.RoleClient
	}
	return p
}

// place names where on the path a connection is: a proxy's hop, or a link.
func (e *Engine) place(c *conn) (proxy, hop, link string) {
	if h := c.hops[endDialer]; h != nil {
		return e.proxyName(h), h.h.Hop, ""
	}
	if h := c.hops[endListener]; h != nil {
		return e.proxyName(h), h.h.Hop, ""
	}
	d, l := e.party(c, endDialer), e.party(c, endListener)
	switch {
	case l.Role == session.RoleProxy:
		return l.Name, session.HopClient, ""
	case d.Role == session.RoleClient && l.Role == session.RoleServer:
		return "", "", LinkDirect
	}
	return "", "", d.Role + "→" + l.Role
}

// placeWords says where a connection is in a sentence.
func (e *Engine) placeWords(c *conn) string {
	proxy, hop, link := e.place(c)
	switch {
	case proxy != "":
		return fmt.Sprintf("proxy %s's %s hop", proxy, hop)
	case link == LinkDirect:
		return "the direct client–server connection"
	}
	return fmt.Sprintf("the connection %s → %s", e.party(c, endDialer).Words(), e.party(c, endListener).Words())
}

// walker builds one Explanation.
type walker struct {
	e       *Engine
	x       *Explanation
	steps   []string // from the client inward; reversed at the end
	visited map[*conn]bool
}

// Explain follows a generated client's error (file is its file's index in
// the Input) to its root cause.
func (e *Engine) Explain(file int, er *session.ErrorRecord) *Explanation {
	return e.explain(file, er, false)
}

// ExplainShared is Explain for a consumer that streams millions of errors
// and keeps only what their explanations share (Key, the cause): errors
// nothing but their own record saw get the one explanation of their peer
// and class, whose Incident and Chain are the first such error's.
func (e *Engine) ExplainShared(file int, er *session.ErrorRecord) *Explanation {
	return e.explain(file, er, true)
}

func (e *Engine) explain(file int, er *session.ErrorRecord, shared bool) *Explanation {
	at := e.at(file, er.Time)
	local, ok1 := parseAP(er.LocalAddr)
	remote, ok2 := parseAP(er.RemoteAddr)
	var c *conn
	end := endDialer
	if ok1 && ok2 {
		c = e.lookup(local, remote, at.Add(-er.Age.D()), at)
		if c != nil && slices.Contains(c.addrs[endListener], local) && !slices.Contains(c.addrs[endDialer], local) {
			end = endListener
		}
	}
	if c == nil && !ok1 && ok2 && Seen(er.Class) == SeenRefused {
		// A refused connect has no local address to join by: the kernel's
		// answer to it, from the address it was refused at, then and there.
		if k := e.refusal(remote, at); k != nil {
			c, end = k.conn, other(k.end)
		}
	}
	if c != nil {
		e.startAt(c, at.Add(-er.Age.D()))
	}
	var ka time.Duration
	if file >= 0 && file < len(e.in.Files) {
		ka = e.in.Files[file].Run.Keepalive.D()
	}
	var memo memoKey
	if c == nil {
		// Nothing else saw this connection: the error is the only witness,
		// and the explanation depends on nothing but the peer, the class
		// and the silence before it (a million such errors are explained
		// once per peer and class).
		memo = memoKey{remote: remote, localOK: ok1, class: er.Class, source: er.Source, lost: lostByRecord(er.Idle.D(), ka)}
		if tpl := e.memo[memo]; tpl != nil {
			if shared {
				e.tally.add(tpl, er.Idle.D())
				return tpl
			}
			y := *tpl
			y.Incident = incidentOf(er)
			y.Chain = append(slices.Clip(tpl.Chain[:len(tpl.Chain)-1]), fmt.Sprintf("%s saw %s", clientWords(er), er.Class))
			e.tally.add(&y, er.Idle.D())
			return &y
		}
		c = &conn{start: at.Add(-er.Age.D()), end: at, analyzed: true}
		if ok1 {
			c.addrs[endDialer] = []netip.AddrPort{local}
		}
		if ok2 {
			c.addrs[endListener] = []netip.AddrPort{remote}
		}
	}
	x := &Explanation{Seen: Seen(er.Class), Class: er.Class, Incident: incidentOf(er)}
	w := &walker{e: e, x: x, visited: map[*conn]bool{}}
	w.final(fmt.Sprintf("%s saw %s", clientWords(er), er.Class))
	w.why(c, end, er, ka, at)
	w.finish()
	e.tally.Add(x)
	if memo.class != "" || memo.remote.IsValid() {
		if e.memo == nil {
			e.memo = map[memoKey]*Explanation{}
		}
		e.memo[memo] = x
	}
	return x
}

// startAt moves the start of a connection only the kernel saw back to
// start, which a client's record of it says (its age): the kernel's
// trace is of its end.
func (e *Engine) startAt(c *conn, start time.Time) {
	if len(c.flows) > 0 || c.hops[endDialer] != nil || c.hops[endListener] != nil || start.IsZero() || !start.Before(c.start) {
		return
	}
	c.start = start
	for _, s := range c.segs {
		s.age = s.t.Sub(c.startTime())
	}
}

// incidentOf is the incident of a client's error.
func incidentOf(er *session.ErrorRecord) Incident {
	inc := Incident{Source: session.SourceClient, Time: er.Time, ClientID: er.ClientID, Attempt: er.Attempt, Class: er.Class,
		LocalAddr: er.LocalAddr, RemoteAddr: er.RemoteAddr, Age: er.Age, Idle: er.Idle}
	if er.Source == session.SourceProxy {
		inc.Source, inc.Proxy, inc.ConnID = session.SourceProxy, er.Proxy, er.ConnID
	}
	return inc
}

// memoKey is what the explanation of an error nothing else saw depends on.
type memoKey struct {
	remote        netip.AddrPort
	localOK, lost bool
	class, source string
}

func clientWords(er *session.ErrorRecord) string {
	if er.Source == session.SourceProxy {
		return fmt.Sprintf("proxy %s's %s hop", er.Proxy, er.Hop)
	}
	if er.ClientID != "" {
		return "client " + er.ClientID
	}
	return "the client " + er.LocalAddr
}

// final adds the outermost step (what the client saw).
func (w *walker) final(s string) { w.steps = append(w.steps, s) }

func (w *walker) step(s string) { w.steps = append(w.steps, s) }

func (w *walker) finish() {
	x := w.x
	slices.Reverse(w.steps)
	x.Chain = w.steps
	slices.Reverse(x.Relays)
	if x.Kind == "" {
		x.Kind = KindUnknown
	}
	if x.Confidence == "" {
		x.Confidence = ConfidenceNone
	}
	if x.Evidence == "" {
		x.Evidence = EvidenceNone
	}
}

// why explains how end's connection c ended, as end experienced it.
// client is the error of a generated client at end (nil otherwise).
func (w *walker) why(c *conn, end int, client *session.ErrorRecord, clientKA time.Duration, clientAt time.Time) {
	e, x := w.e, w.x
	if w.visited[c] {
		x.Conflicts = append(x.Conflicts, "the records make a loop through "+e.placeWords(c))
		return
	}
	w.visited[c] = true
	acts := e.acts(c, client, end, clientKA, clientAt)
	root, reach := pick(acts, end)
	if root == nil {
		w.unknown(c, end, client)
		return
	}
	w.conflicts(c, acts, root)
	x.Evidence, x.Confidence = root.evidence(), root.confidence()
	if root.evidence() == EvidenceClient && root.by != end && root.by != endNone && c.hops[root.by] == nil && e.party(c, root.by).Assumed {
		// Only the client's error, against an address no file describes
		// (a run's target, a proxy's upstream): naming it the server
		// would be a guess. Say what is missing instead.
		w.unknown(c, end, client)
		return
	}
	if reach != nil && reach != root {
		// Something happened first elsewhere on the connection (a reset
		// forged toward the far end); what reached end only revealed it.
		w.step(w.revealWords(c, reach))
	}
	switch {
	case root.by == endNone:
		w.forged(c, root)
	case root.seg != nil && root.seg.reason == ReasonAnswer:
		w.lost(c, root, root.by, root.seg.quiet, revealedByPacket(root.seg))
	case root.by != end && root.kind == session.EndingRST && root.seg == nil && w.lostByRecords(c, root):
		// lostByRecords explained it.
	default:
		w.sentBy(c, root.by, root)
	}
	if root.seg != nil && x.root == nil {
		x.root = root.seg
	}
	w.missing(c, root)
}

// unknown: nothing says how the connection ended.
func (w *walker) unknown(c *conn, end int, client *session.ErrorRecord) {
	e, x := w.e, w.x
	peer := e.party(c, other(end))
	x.Kind, x.Sender, x.Receiver = KindUnknown, Party{Role: RoleUnknown}, e.party(c, end)
	x.Proxy, x.Hop, x.Link = e.place(c)
	switch {
	case x.Proxy == "" && peer.Addr == "":
		x.Link = "" // nothing says where: "?"
	case x.Proxy == "" && peer.Assumed:
		x.Link = e.party(c, end).Role + "→" + peer.Addr
	}
	x.Confidence, x.Evidence = ConfidenceNone, EvidenceNone
	if client != nil {
		x.Ending = kindOfClass(client.Class)
		w.step(fmt.Sprintf("the connection to %s ended in a %s; no record of that end and no packet says who sent it", peer.Words(), seenNoun(Seen(client.Class), 1)))
	} else {
		w.step(fmt.Sprintf("nothing recorded how %s ended (its peer: %s)", e.placeWords(c), peer.Words()))
	}
	w.missing(c, nil)
}

// sentBy: the party at end of c sent the act; why?
func (w *walker) sentBy(c *conn, end int, a *act) {
	e, x := w.e, w.x
	h := c.hops[end]
	sender, receiver := e.party(c, end), e.party(c, other(end))
	k := e.segKernel(a.seg)
	if h == nil {
		x.Kind, x.Sender, x.Receiver, x.Ending = KindNatural, sender, receiver, a.kind
		x.Proxy, x.Hop, x.Link = e.place(c)
		switch {
		case k != nil && a.kind == endingTimeout:
			// The receiver's kernel traced its own giving up.
			w.step(kernelStep(k, receiver, a.seg.age))
			w.step(fmt.Sprintf("%s %s, on %s", sender.Words(), actVerb(a.kind, receiver), e.placeWords(c)))
		case k != nil:
			age, idle := a.seg.age, idleWords(a)
			if a.kind == session.EndingRefused {
				age, idle = 0, "" // there was no stream
			}
			w.step(fmt.Sprintf("its kernel %s, on %s%s", actVerb(a.kind, receiver), e.placeWords(c), idle))
			w.step(kernelStep(k, sender, age))
		default:
			w.step(fmt.Sprintf("%s %s, on %s%s", sender.Words(), actVerb(a.kind, receiver), e.placeWords(c), idleWords(a)))
		}
		x.Kernel = k
		return
	}
	h.covered = true
	proxy := e.proxyName(h)
	f := a.fault
	if f == nil {
		f = faultBefore(h, a.t)
	}
	switch {
	case f != nil:
		x.Kind, x.Sender, x.Receiver, x.Ending = KindInjected, sender, receiver, f.ending
		x.Proxy, x.Hop, x.FaultName, x.FaultKind = proxy, h.h.Hop, f.name, f.kind
		if x.Evidence != EvidencePacket && x.Evidence != EvidenceKernel {
			x.Evidence, x.Confidence = EvidenceFault, ConfidenceHigh
		}
		w.step(fmt.Sprintf("proxy %s's fault %q %s on its %s hop", proxy, f.name, actVerb(f.ending, receiver), h.h.Hop))
		if k != nil {
			w.step(kernelStep(k, sender, a.seg.age))
		}
		x.Kernel = k
	case h.h.Hop == session.HopClient && h.h.OnUpstreamError != "":
		up := e.upstreamOf(h, a.t)
		rel := Relay{Proxy: proxy, Sent: a.kind, Policy: h.h.OnUpstreamError}
		w.step(fmt.Sprintf("proxy %s %s its client hop (--on-upstream-error=%s)", proxy, endVerb(a.kind), h.h.OnUpstreamError))
		if up == nil || up.conn == nil {
			x.Relays = append(x.Relays, rel)
			x.Kind, x.Sender, x.Receiver, x.Ending = KindUnknown, Party{Role: RoleUnknown}, receiver, ""
			x.Proxy, x.Hop = proxy, session.HopUpstream
			w.step(fmt.Sprintf("proxy %s's upstream hop failed; its record of that hop is missing", proxy))
			return
		}
		up.covered = true
		n := len(x.Relays)
		x.Relays = append(x.Relays, rel)
		w.why(up.conn, up.end, nil, 0, time.Time{})
		x.Relays[n].Received = upstreamEnding(up, x)
	case h.h.Hop == session.HopClient && h.h.ClosedBy == session.ClosedBySelf:
		// An end passed on: the upstream of the request ended first (its
		// peer ended it, or a fault of the proxy did), and the proxy ended
		// the client hop after it.
		up := e.upstreamOf(h, a.t)
		if up != nil && up.conn != nil && !up.closed.IsZero() && !up.closed.After(h.closed.Add(sameDeed)) &&
			(up.h.ClosedBy == session.ClosedByPeer || faultBefore(up, up.closed) != nil) {
			up.covered = true
			n := len(x.Relays)
			x.Relays = append(x.Relays, Relay{Proxy: proxy, Sent: a.kind})
			w.step(fmt.Sprintf("proxy %s passed the end on to its client hop (%s)", proxy, strings.ToUpper(a.kind)))
			w.why(up.conn, up.end, nil, 0, time.Time{})
			x.Relays[n].Received = upstreamEnding(up, x)
			return
		}
		fallthrough
	default:
		x.Kind, x.Sender, x.Receiver, x.Ending = KindNatural, sender, receiver, a.kind
		x.Proxy, x.Hop, x.Class = proxy, h.h.Hop, h.h.Class
		why := ""
		if h.h.Class != "" {
			why = " (" + h.h.Class + ")"
		}
		w.step(fmt.Sprintf("proxy %s itself %s on its %s hop%s, with no fault firing", proxy, actVerb(a.kind, receiver), h.h.Hop, why))
		if k != nil {
			w.step(kernelStep(k, sender, a.seg.age))
		}
		x.Kernel = k
	}
}

// upstreamEnding is how the upstream hop up ended as the proxy saw it.
func upstreamEnding(up *hopRec, x *Explanation) string {
	if up.h.Ending != "" {
		return up.h.Ending
	}
	return x.Ending
}

// faultBefore is the last fault firing on h that ended its socket before
// t (within faultLead).
func faultBefore(h *hopRec, t time.Time) *fault {
	var best *fault
	for i := range h.faults {
		f := &h.faults[i]
		if f.ending == "" || f.t.After(t.Add(sameDeed)) || f.t.Before(t.Add(-faultLead)) {
			continue
		}
		best = f
	}
	return best
}

// forged: a middlebox sent the root segment in an end's name.
func (w *walker) forged(c *conn, a *act) {
	e, x := w.e, w.x
	s := a.seg
	claimed := e.party(c, s.end)
	if s.reason == ReasonAnswer {
		w.lost(c, a, endNone, s.quiet, revealedByPacket(s))
		return
	}
	receiver := e.party(c, other(s.end))
	x.Kind, x.Sender, x.InNameOf, x.Receiver, x.Ending = KindForged, Party{Role: session.RoleMiddlebox}, &claimed, receiver, session.EndingRST
	x.Proxy, x.Hop, x.Link = e.place(c)
	w.step(fmt.Sprintf("a middlebox on %s forged a reset to %s in the name of %s (%s)",
		e.placeWords(c), receiver.Words(), claimed.Words(), strings.Join(s.forgedWhy, "; ")))
}

// lost: the root is the answer of a stack (by; endNone: a middlebox in
// the peer's name) that no longer knew the connection.
func (w *walker) lost(c *conn, a *act, by int, quiet time.Duration, revealed string) {
	e, x := w.e, w.x
	peerEnd := a.claimed()
	peer := e.party(c, peerEnd)
	receiver := e.party(c, other(peerEnd))
	x.Kind, x.Receiver, x.Ending = KindLostState, receiver, session.EndingRST
	x.Proxy, x.Hop, x.Link = e.place(c)
	x.Idle = session.Seconds(quiet)
	x.RevealedBy = w.revealer(c, other(peerEnd), quiet, revealed)
	if by == endNone {
		x.Sender, x.InNameOf = Party{Role: session.RoleMiddlebox}, &peer
		w.step(fmt.Sprintf("state was lost between %s and %s on %s: %s%s was answered by a middlebox with a reset in %s's name (%s)",
			receiver.Words(), peer.Words(), e.placeWords(c), afterIdle(quiet), x.RevealedBy, peer.Noun(), strings.Join(a.seg.forgedWhy, "; ")))
		return
	}
	x.Sender = peer
	knew := "which no longer knew the connection"
	if a.seg != nil && a.seg.kernel != nil {
		x.Kernel = e.segKernel(a.seg)
		knew += " (its kernel: " + x.Kernel.Reason + ")"
	}
	w.step(fmt.Sprintf("state was lost between %s and %s on %s: %s%s was answered with a reset by %s's host, %s (a NAT, conntrack or firewall timeout, or a reset forged toward it)",
		receiver.Words(), peer.Words(), e.placeWords(c), afterIdle(quiet), x.RevealedBy, peer.Noun(), knew))
}

// lostByRecords applies the records' test of lost state: the receiver of
// a RST (a proxy socket, or a client) recorded a silence before it equal
// to its own keepalive period.
func (w *walker) lostByRecords(c *conn, a *act) bool {
	e := w.e
	switch {
	case a.peer != nil:
		pi := e.proxyOf(a.peer)
		if pi == nil || !lostByRecord(a.peer.h.Idle.D(), pi.Keepalive.D()) {
			return false
		}
		w.lost(c, a, a.by, a.peer.h.Idle.D(), "")
		w.x.Evidence, w.x.Confidence = EvidencePeer, ConfidenceMedium
		return true
	case a.client != nil:
		if !lostByRecord(a.client.Idle.D(), a.clientKA) {
			return false
		}
		w.lost(c, a, a.by, a.client.Idle.D(), "")
		w.x.Evidence, w.x.Confidence = EvidenceClient, ConfidenceLow
		return true
	}
	return false
}

// revealer says what segment revealed lost state: the receiver's own
// keepalive probe when the silence matches its period.
func (w *walker) revealer(c *conn, receiverEnd int, quiet time.Duration, byPacket string) string {
	e := w.e
	if h := c.hops[receiverEnd]; h != nil {
		if pi := e.proxyOf(h); pi != nil && lostByRecord(quiet, pi.Keepalive.D()) {
			return fmt.Sprintf("proxy %s's keepalive probe (--keepalive %s)", e.proxyName(h), fmtDur(pi.Keepalive.D()))
		}
	}
	if byPacket != "" {
		return byPacket
	}
	return "the next segment"
}

// revealedByPacket says what the answered segment carried.
func revealedByPacket(s *segment) string {
	for _, o := range s.obs {
		if rp := o.rp; rp != nil && !rp.ReceiverLastPacket.IsZero() {
			if !rp.ReceiverLastData.IsZero() && !rp.ReceiverLastData.Before(rp.ReceiverLastPacket) {
				return "data sent after the silence"
			}
			return "a segment without data (a keepalive probe)"
		}
	}
	return ""
}

// revealWords is the step of an act that reached the explained end after
// the root happened elsewhere on the connection.
func (w *walker) revealWords(c *conn, a *act) string {
	e := w.e
	by := e.party(c, a.claimed())
	to := e.party(c, a.toward)
	s := fmt.Sprintf("%s %s", by.Words(), actVerb(a.kind, to))
	if a.seg != nil && a.seg.reason == ReasonReply {
		s += " (its socket was already reset: its stack answered a late segment)"
		if !a.seg.noAck {
			return s
		}
	}
	return s + idleWords(a)
}

// conflicts notes where a proxy's own record and the packets disagree.
func (w *walker) conflicts(c *conn, acts []*act, root *act) {
	e, x := w.e, w.x
	for _, a := range acts {
		if a == root || a.own == nil || a.seg != nil || a.fault != nil {
			continue
		}
		if root.seg != nil && root.by != a.by && root.t.Before(a.t.Add(-sameDeed)) {
			x.Conflicts = append(x.Conflicts, fmt.Sprintf("proxy %s recorded ending its %s hop itself (%s), but the packets show %s sent %s %s earlier",
				e.proxyName(a.own), a.own.h.Hop, a.own.h.Ending, e.party(c, root.claimed()).Words(), root.kind, words(a.t.Sub(root.t))))
		}
	}
}

// missing lists the evidence that would raise the confidence.
func (w *walker) missing(c *conn, root *act) {
	e, x := w.e, w.x
	add := func(s string) {
		if !slices.Contains(x.Missing, s) {
			x.Missing = append(x.Missing, s)
		}
	}
	if len(c.flows) == 0 && (root == nil || root.seg == nil) {
		add(fmt.Sprintf("packets of %s (--capture on that link) would show who sent the segment", e.placeWords(c)))
	}
	if c.hops[endDialer] == nil && c.hops[endListener] == nil && (root == nil || root.evidence() == EvidenceClient) &&
		e.party(c, endDialer).Role != session.RoleProxy && e.party(c, endListener).Role != session.RoleProxy {
		add("an ssestress proxy on the path (run --via-proxy, or ssestress proxy) records how each hop ended")
	}
	for end := range 2 {
		if c.hops[end] != nil {
			continue
		}
		p := e.party(c, end)
		switch {
		case p.Role == session.RoleProxy && !e.proxyNames[p.Name]:
			add(fmt.Sprintf("proxy %s's session file (its record of this connection) is not among the files", p.Name))
		case p.Assumed && confidenceRank[x.Confidence] < confidenceRank[ConfidenceHigh]:
			add(fmt.Sprintf("%s is only known as an address sent to: if it is an ssestress proxy, give its session file", p.Addr))
		}
	}
}

// actVerb says what a segment did: "sent a reset to proxy A".
func actVerb(kind string, to Party) string {
	switch kind {
	case session.EndingRST:
		return "sent a reset (RST) to " + to.Words()
	case session.EndingFIN:
		return "closed the connection (FIN) to " + to.Words()
	case session.EndingRefused:
		return "refused the connection of " + to.Words()
	case session.EndingStream:
		return "ended the stream (HTTP status or RST_STREAM) to " + to.Words()
	case endingTimeout:
		return "stopped answering " + to.Words()
	}
	return "ended the connection with " + to.Words()
}

// endVerb says what a proxy did to its client hop.
func endVerb(kind string) string {
	switch kind {
	case session.EndingRST:
		return "reset"
	case session.EndingFIN:
		return "closed (FIN)"
	case session.EndingStream:
		return "ended the stream on"
	}
	return "ended"
}

func idleWords(a *act) string {
	if a.seg != nil && a.seg.idle >= 0 {
		return " after " + words(a.seg.idle) + " idle"
	}
	if a.peer != nil && a.peer.h.Idle > 0 {
		return " after " + words(a.peer.h.Idle.D()) + " idle"
	}
	if a.client != nil && a.client.Idle > 0 {
		return " after " + words(a.client.Idle.D()) + " idle"
	}
	return ""
}

// afterIdle is "after 60.0 s idle, ", or "" when the silence is unknown
// (the kernel saw the answer, no capture saw the silence).
func afterIdle(quiet time.Duration) string {
	if quiet <= 0 {
		return ""
	}
	return "after " + words(quiet) + " idle, "
}

// Words formats a duration the way chains read: "60.0 s", "250 ms".
func Words(d time.Duration) string { return words(d) }

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

// fmtDur formats a configured duration: "15s", "500ms".
func fmtDur(d time.Duration) string { return d.String() }
