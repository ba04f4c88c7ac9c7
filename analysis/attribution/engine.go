package attribution

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Options tune the engine; the zero value is fine.
type Options struct {
	// Resolve turns a host name of the topology into addresses (capture
	// analyze passes a resolver bounded in time); nil resolves only
	// "localhost".
	Resolve func(host string) []netip.Addr
}

// Matching windows. Records are stamped with time.Now by their process
// and packets by the kernel, on the same clock for one host, the record a
// little later (much later on a loaded machine).
const (
	// joinSlack is how far a record may lie outside a connection's time
	// span and still belong to it (port reuse needs longer).
	joinSlack = 2 * time.Second
	// sameDeed is how far apart a packet and a record (or two records) of
	// the same segment may be stamped.
	sameDeed = 2 * time.Second
	// faultLead is how long before the segment it caused a fault may have
	// fired (a reset fault fires, then closes the socket).
	faultLead = 2 * time.Second
	// twinWindow is how far apart (after aligning clocks) two captures
	// may stamp one segment.
	twinWindow = time.Second
	// lostStateQuiet is the shortest silence before a segment whose
	// immediate answer is a RST that counts as lost state.
	lostStateQuiet = time.Second
	// answerDelay is the longest a RST may follow the segment it answers.
	answerDelay = time.Second
)

// Ends of a connection.
const (
	endDialer   = 0 // sent the SYN
	endListener = 1 // answered it
	endNone     = -1
)

func other(end int) int { return 1 - end }

// Engine is the picture built from an Input: topology, connections and
// what ended each. Explain follows an error through it; Finish explains
// what no client recorded and lists the RST segments.
type Engine struct {
	in    *Input
	opts  Options
	topo  topology
	hops  []*hopRec
	byID  map[string][]*hopRec // "<file>/<proxy>/<conn id>" → its hop records (client hop first, then upstreams by open)
	flows []*flowRec
	caps  map[string]*captureRec
	conns map[pairKey][]*conn // by unordered address pair, sorted by start
	all   []*conn
	// keepalive per file: the clients' (RunInfo.Keepalive).
	proxyInfo map[string]*session.ProxyInfo // "<file>/<proxy>"
	numbers   numbers
	// errorsByLocal indexes Input.Errors of generated clients by their
	// local address, for forgery checks (a RST "from" a client that says
	// it was reset).
	errorsByLocal map[netip.AddrPort][]*session.ErrorRecord

	// kernel are the kernel's reset events, each once, joined to their
	// connections; noSocket indexes the send_resets that had no socket by
	// their local address (a refused connect's answer); clientLocal holds
	// the local addresses of the generated clients' connections
	// (ClientConn): those connected.
	kernel      []*kernelRec
	noSocket    map[netip.AddrPort][]*kernelRec
	clientLocal map[netip.AddrPort]bool

	// proxyNames are the proxies with hop records in the files.
	proxyNames map[string]bool
	// fileOffset is each file's clock offset from the reference clock.
	fileOffset []time.Duration

	tally Tally
	// memo keeps the explanations of errors no other record saw, by what
	// they depend on.
	memo map[memoKey]*Explanation
}

// pairKey is an unordered pair of addresses.
type pairKey [2]netip.AddrPort

func keyOf(a, b netip.AddrPort) pairKey {
	if a.Compare(b) <= 0 {
		return pairKey{a, b}
	}
	return pairKey{b, a}
}

func parseAP(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// hopRec is one hop record of a proxy: its socket on one hop.
type hopRec struct {
	h             *session.HopConn
	file          int
	local, remote netip.AddrPort
	// opened and closed are the record's times on the reference clock
	// (see alignRecords).
	opened, closed time.Time
	faults         []fault // firings on this socket, by time
	conn           *conn
	end            int  // the proxy's end of conn
	covered        bool // explained within a client's error
}

// fault is one fault firing on a proxy's socket.
type fault struct {
	name, kind, action, ending, detail string
	t                                  time.Time
}

func (h *hopRec) proxyKey() string { return strconv.Itoa(h.file) + "/" + h.h.Proxy }
func (h *hopRec) idKey() string    { return h.proxyKey() + "/" + h.h.ConnID }

// flowRec is one capture's summary of a connection.
type flowRec struct {
	f                *session.Flow
	dialer, listener netip.AddrPort
	capture          *captureRec
	conn             *conn
}

// captureRec is a capture and its clock's offset from the reference
// capture (subtracted from its times).
type captureRec struct {
	info   session.CaptureInfo
	file   int
	offset time.Duration
	flows  []*flowRec
}

// running reports whether the capture ran at t (unknown bounds count as
// running).
func (c *captureRec) running(t time.Time) bool {
	t = t.Add(c.offset)
	if !c.info.Started.IsZero() && t.Before(c.info.Started.Add(-twinWindow)) {
		return false
	}
	return c.info.Stopped.IsZero() || !t.After(c.info.Stopped.Add(twinWindow))
}

// conn is one TCP connection, seen by any number of records and captures.
type conn struct {
	// addrs are the addresses each end was seen with (several across a
	// NAT): the first is the one its own socket knows, when known.
	addrs      [2][]netip.AddrPort
	start, end time.Time // end zero: not seen to end
	hops       [2]*hopRec
	flows      []*flowRec
	// isn is the pair of initial sequence numbers, when a capture saw the
	// handshake.
	isn [2]uint32
	// kernel are the kernel's reset events on the connection, by time.
	kernel []*kernelRec

	analyzed bool
	segs     []*segment
	fins     [2]time.Time
	firstPkt time.Time
}

func (c *conn) addAddr(end int, a netip.AddrPort) {
	if !slices.Contains(c.addrs[end], a) {
		c.addrs[end] = append(c.addrs[end], a)
	}
}

func (c *conn) overlaps(s, e time.Time) bool {
	if !c.end.IsZero() && s.After(c.end.Add(joinSlack)) {
		return false
	}
	return e.IsZero() || !e.Before(c.start.Add(-joinSlack))
}

// widen extends the connection's span by an observation [s, e]; e zero
// (still open when its record was written) leaves the end open.
func (c *conn) widen(s, e time.Time) {
	if !s.IsZero() && (c.start.IsZero() || s.Before(c.start)) {
		c.start = s
	}
	switch {
	case c.end.IsZero():
	case e.IsZero():
		c.end = time.Time{}
	case e.After(c.end):
		c.end = e
	}
}

// New builds the picture of in.
func New(in *Input, opts Options) *Engine {
	e := &Engine{in: in, opts: opts, byID: map[string][]*hopRec{}, caps: map[string]*captureRec{},
		conns: map[pairKey][]*conn{}, proxyInfo: map[string]*session.ProxyInfo{}, proxyNames: map[string]bool{}}
	e.buildTopology()
	e.buildHops()
	e.buildCaptures()
	e.alignCaptures()
	e.alignRecords()
	e.buildConns()
	e.buildKernel()
	e.numbers = e.buildNumbers()
	if len(in.Errors) > 0 {
		e.errorsByLocal = map[netip.AddrPort][]*session.ErrorRecord{}
		for i := range in.Errors {
			er := &in.Errors[i].R
			if er.Source == session.SourceProxy {
				continue
			}
			if l, ok := parseAP(er.LocalAddr); ok {
				e.errorsByLocal[l] = append(e.errorsByLocal[l], er)
			}
		}
	}
	return e
}

func (e *Engine) buildHops() {
	for i := range e.in.Proxies {
		p := &e.in.Proxies[i]
		e.proxyInfo[strconv.Itoa(p.File)+"/"+p.R.Name] = &p.R
	}
	for i := range e.in.HopConns {
		r := &e.in.HopConns[i]
		h := &hopRec{h: &r.R, file: r.File}
		var ok1, ok2 bool
		h.local, ok1 = parseAP(r.R.LocalAddr)
		h.remote, ok2 = parseAP(r.R.RemoteAddr)
		if !ok1 || !ok2 {
			continue
		}
		for _, f := range r.R.Faults {
			h.faults = append(h.faults, fault{name: f.FaultName, kind: f.FaultKind, action: f.Action, ending: f.Ending, t: f.Time})
		}
		e.hops = append(e.hops, h)
		e.byID[h.idKey()] = append(e.byID[h.idKey()], h)
		e.proxyNames[r.R.Proxy] = true
	}
	for _, hs := range e.byID {
		slices.SortFunc(hs, func(a, b *hopRec) int {
			if a.h.Hop != b.h.Hop {
				if a.h.Hop == session.HopClient {
					return -1
				}
				return 1
			}
			return a.h.Opened.Compare(b.h.Opened)
		})
	}
	// Fault firings recorded on their own: attach each to its hop record
	// (the upstream hop of its request), unless the record holds it.
	for i := range e.in.Faults {
		r := &e.in.Faults[i]
		fe := &r.R
		hs := e.byID[strconv.Itoa(r.File)+"/"+fe.Proxy+"/"+fe.ConnID]
		var target *hopRec
		for _, h := range hs {
			if h.h.Hop != fe.Hop {
				continue
			}
			if fe.Hop == session.HopUpstream && fe.Request > 0 && h.h.Request > 0 && max(h.h.Request, 1) != fe.Request {
				continue
			}
			if h.h.Opened.After(fe.Time.Add(joinSlack)) {
				break
			}
			target = h
		}
		if target == nil {
			continue
		}
		f := fault{name: fe.FaultName, kind: fe.FaultKind, action: fe.Action, ending: fe.Ending, detail: fe.Detail, t: fe.Time}
		if !slices.ContainsFunc(target.faults, func(g fault) bool {
			return g.name == f.name && g.action == f.action && absDur(g.t.Sub(f.t)) < time.Millisecond
		}) {
			target.faults = append(target.faults, f)
		} else {
			for j := range target.faults {
				if g := &target.faults[j]; g.name == f.name && g.action == f.action && absDur(g.t.Sub(f.t)) < time.Millisecond {
					g.detail = f.detail
				}
			}
		}
	}
	for _, h := range e.hops {
		slices.SortFunc(h.faults, func(a, b fault) int { return a.t.Compare(b.t) })
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// capKey keys a capture by its file too: two files may hold captures of
// the same ID (the same pcap stored twice, two hosts' "lo") that are two
// sightings, never one.
func capKey(file int, id string) string { return strconv.Itoa(file) + "\x00" + id }

func (e *Engine) buildCaptures() {
	for i := range e.in.Captures {
		r := &e.in.Captures[i]
		if r.R.Disabled != "" {
			continue
		}
		if k := capKey(r.File, r.R.ID); e.caps[k] == nil {
			e.caps[k] = &captureRec{info: r.R, file: r.File}
		}
	}
	for i := range e.in.Flows {
		r := &e.in.Flows[i]
		d, ok1 := parseAP(r.R.Dialer)
		l, ok2 := parseAP(r.R.Listener)
		if !ok1 || !ok2 {
			continue
		}
		c := e.caps[capKey(r.File, r.R.Capture)]
		if c == nil {
			// A flow whose capture is not described (an older file).
			c = &captureRec{info: session.CaptureInfo{ID: r.R.Capture}, file: r.File}
			e.caps[capKey(r.File, r.R.Capture)] = c
		}
		fr := &flowRec{f: &r.R, dialer: d, listener: l, capture: c}
		c.flows = append(c.flows, fr)
		e.flows = append(e.flows, fr)
	}
}

// lookup finds the connection between a and b that was open at t (or
// spans [s, end]).
func (e *Engine) lookup(a, b netip.AddrPort, s, end time.Time) *conn {
	cs := e.conns[keyOf(a, b)]
	var best *conn
	for _, c := range cs {
		if c.overlaps(s, end) {
			if best == nil || absDur(c.start.Sub(s)) < absDur(best.start.Sub(s)) {
				best = c
			}
		}
	}
	return best
}

func (e *Engine) index(c *conn, d, l netip.AddrPort) {
	k := keyOf(d, l)
	if !slices.Contains(e.conns[k], c) {
		e.conns[k] = append(e.conns[k], c)
	}
}

func (e *Engine) buildConns() {
	// Hop records first: they are the sockets' own word on which end is
	// which and when the connection lived.
	for _, h := range e.hops {
		d, l, end := h.remote, h.local, endListener
		if h.h.Hop == session.HopUpstream {
			d, l, end = h.local, h.remote, endDialer
		}
		c := e.lookup(d, l, h.opened, h.closed)
		if c != nil && c.hops[end] != nil {
			c = nil // another socket of the same addresses: a new connection
		}
		if c == nil {
			c = &conn{start: h.opened, end: h.closed}
			e.all = append(e.all, c)
			e.index(c, d, l)
		} else {
			c.widen(h.opened, h.closed)
		}
		c.hops[end] = h
		h.conn, h.end = c, end
		// The socket's own addresses first.
		c.addrs[end] = append([]netip.AddrPort{h.local}, slices.DeleteFunc(c.addrs[end], func(a netip.AddrPort) bool { return a == h.local })...)
		c.addAddr(other(end), h.remote)
	}
	// Flows: by their addresses and time, then across NATs by their
	// initial sequence numbers.
	byISN := map[[2]uint32]*conn{}
	slices.SortStableFunc(e.flows, func(a, b *flowRec) int {
		return a.f.First.Add(-a.capture.offset).Compare(b.f.First.Add(-b.capture.offset))
	})
	for _, fr := range e.flows {
		d, l := fr.dialer, fr.listener
		if fr.f.Midstream {
			d, l = e.orient(d, l)
			fr.dialer, fr.listener = d, l
		}
		isn := [2]uint32{fr.f.FromDialer.ISN, fr.f.FromListener.ISN}
		first, last := fr.f.First.Add(-fr.capture.offset), fr.f.Last.Add(-fr.capture.offset)
		c := e.lookup(d, l, first, last)
		if c != nil && len(c.flows) > 0 && c.isn != [2]uint32{} && isn[0] != 0 && c.isn[0] != isn[0] {
			c = nil // the 4-tuple reused by a new connection
		}
		if c == nil && isn[0] != 0 && isn[1] != 0 {
			if n := byISN[isn]; n != nil && n.overlaps(first, last) {
				c = n // the same connection on another link, across a NAT
			}
		}
		if c == nil {
			c = &conn{start: first, end: last}
			e.all = append(e.all, c)
		} else {
			c.widen(first, last)
		}
		e.index(c, d, l)
		c.addAddr(endDialer, d)
		c.addAddr(endListener, l)
		c.flows = append(c.flows, fr)
		fr.conn = c
		if isn[0] != 0 && isn[1] != 0 {
			if c.isn == [2]uint32{} {
				c.isn = isn
			}
			byISN[isn] = c
		}
	}
	for k, cs := range e.conns {
		slices.SortFunc(cs, func(a, b *conn) int { return a.start.Compare(b.start) })
		e.conns[k] = cs
	}
}

// orient decides which of a flow's addresses dialed when its handshake was
// not captured: a proxy's socket or the topology says; otherwise the
// capture's guess stands.
func (e *Engine) orient(d, l netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
	rd, rl := e.topo.lookup(d), e.topo.lookup(l)
	if rd.listens() && !rl.listens() {
		return l, d
	}
	return d, l
}

// proxyOf is the ProxyInfo of a hop record's proxy, if its file holds one.
func (e *Engine) proxyOf(h *hopRec) *session.ProxyInfo { return e.proxyInfo[h.proxyKey()] }

// upstreamOf is the upstream hop of the client hop h that carried the
// request in progress at t.
func (e *Engine) upstreamOf(h *hopRec, t time.Time) *hopRec {
	var up *hopRec
	for _, u := range e.byID[h.idKey()] {
		if u.h.Hop != session.HopUpstream {
			continue
		}
		if !t.IsZero() && u.h.Opened.After(t.Add(joinSlack)) {
			break
		}
		up = u
	}
	return up
}

// clientHopOf is the client hop of the upstream hop h.
func (e *Engine) clientHopOf(h *hopRec) *hopRec {
	for _, c := range e.byID[h.idKey()] {
		if c.h.Hop == session.HopClient {
			return c
		}
	}
	return nil
}

// proxyName names a proxy in words; two files with proxies of the same
// name are told apart by listener.
func (e *Engine) proxyName(h *hopRec) string {
	name := h.h.Proxy
	for k, p := range e.proxyInfo {
		if p.Name == name && k != h.proxyKey() {
			if pi := e.proxyOf(h); pi != nil {
				return name + " (" + pi.Listen + ")"
			}
		}
	}
	return name
}

// hostOf strips the port of host:port.
func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// alignRecords puts the records of files written on a host whose capture
// was aligned onto the reference clock too (fileOffset), and sets each hop
// record's times.
func (e *Engine) alignRecords() {
	e.fileOffset = make([]time.Duration, len(e.in.Files))
	for i, f := range e.in.Files {
		for _, c := range e.caps {
			if c.info.Host != "" && c.info.Host == f.Run.Host && c.offset != 0 {
				e.fileOffset[i] = c.offset
				break
			}
		}
	}
	for _, h := range e.hops {
		h.opened, h.closed = e.at(h.file, h.h.Opened), e.at(h.file, h.h.Closed)
		for i := range h.faults {
			h.faults[i].t = e.at(h.file, h.faults[i].t)
		}
	}
}

// at is a time of a record of file on the reference clock.
func (e *Engine) at(file int, t time.Time) time.Time {
	if t.IsZero() || file < 0 || file >= len(e.fileOffset) {
		return t
	}
	return t.Add(-e.fileOffset[file])
}
