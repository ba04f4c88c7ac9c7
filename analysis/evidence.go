package analysis

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Origins: the sender role of a failure.
const (
	OriginServer    = "server"
	OriginMiddlebox = "middlebox"
	OriginClient    = "client"
	OriginUnknown   = "unknown"
	// A proxy's origin is "proxy <name>".
)

// Confidence levels of an attribution.
const (
	ConfidenceHigh   = "high"
	ConfidenceMedium = "medium"
	ConfidenceLow    = "low"
	ConfidenceNone   = "none"
)

// Evidence kinds behind an attribution.
const (
	EvidenceFault   = "fault event"
	EvidenceCapture = "capture"        // a captured RST packet
	EvidenceResets  = "reset analysis" // the capture analysis without the packet
	EvidenceHop     = "proxy hop"
	EvidenceNone    = "none"
)

// HopUnknown is the hop of an error nothing places on the path.
const HopUnknown = "?"

// attribution is where one error came from: the key of ErrorPattern.
type attribution struct {
	Hop        string
	Origin     string
	Confidence string
	Fault      string // injected fault kind, "" when natural
	Evidence   string
}

var unknownAttribution = attribution{Hop: HopUnknown, Origin: OriginUnknown, Confidence: ConfidenceNone, Evidence: EvidenceNone}

// hopName is how a proxy hop is written in tables: "p1/client".
func hopName(proxy, hop string) string { return proxy + "/" + hop }

// hopWords is how it is written in sentences: "proxy p1 client hop".
func hopWords(hop string) string {
	proxy, side, ok := strings.Cut(hop, "/")
	if !ok {
		switch hop {
		case HopUnknown:
			return "an unknown hop"
		case session.LinkDirect:
			return "the direct client–server path"
		}
		return hop
	}
	return "proxy " + proxy + " " + side + " hop"
}

// hopRef is a HopConn kept for matching (only the fields matching needs).
type hopRef struct {
	proxy, connID, hop    string
	localAddr, remoteAddr string
	open, close           time.Time
	closedBy, how         string
	faults                []faultRef
}

// faultRef is a fault that fired on a connection.
type faultRef struct {
	kind, action, detail string
	ending               string // how the proxy recorded it ended the connection; "" when it did not
	hop                  string
	time                 time.Time
}

// terminal reports whether the fault can end a connection.
func (f faultRef) terminal() bool { return f.ending != "" }

// evidence indexes the proxies' and the capture's records so each client
// error can be followed along the path.
type evidence struct {
	// clientHops maps a client hop's remote address (the address of the
	// client, or of the proxy in front) to its HopConns, sorted by open.
	clientHops map[string][]*hopRef
	// clientByID maps "<proxy>/<conn id>" to the client hop;
	// upstreamByID to the upstream hops, one per request on the client
	// connection, sorted by open.
	clientByID   map[string]*hopRef
	upstreamByID map[string][]*hopRef
	// faultsByConn maps "<proxy>/<conn id>" to its fault events.
	faultsByConn map[string][]faultRef
	// faultsByRemote maps the remote address of the socket a fault acted on
	// to the faults (for files with fault events and no hop records).
	faultsByRemote map[string][]faultEventRef
	// timeouts are idle timeouts of hops, from fault details.
	timeouts map[HopTimeout]bool
	captured capturedResets
}

type faultEventRef struct {
	proxy, connID string
	faultRef
}

func newEvidence() *evidence {
	return &evidence{
		clientHops:     map[string][]*hopRef{},
		clientByID:     map[string]*hopRef{},
		upstreamByID:   map[string][]*hopRef{},
		faultsByConn:   map[string][]faultRef{},
		faultsByRemote: map[string][]faultEventRef{},
		timeouts:       map[HopTimeout]bool{},
	}
}

func (e *evidence) addHopConn(h *session.HopConn) {
	ref := &hopRef{
		proxy: h.Proxy, connID: h.ConnID, hop: h.Hop,
		localAddr: h.LocalAddr, remoteAddr: h.RemoteAddr,
		open: h.Opened, close: h.Closed, closedBy: h.ClosedBy, how: strings.ToUpper(h.Ending),
	}
	for _, f := range h.Faults {
		ref.faults = append(ref.faults, faultRef{kind: f.FaultKind, action: f.Action, ending: f.Ending, hop: h.Hop, time: f.Time})
	}
	key := h.Proxy + "/" + h.ConnID
	switch h.Hop {
	case session.HopClient:
		e.clientByID[key] = ref
		if h.RemoteAddr != "" {
			e.clientHops[h.RemoteAddr] = append(e.clientHops[h.RemoteAddr], ref)
		}
	case session.HopUpstream:
		e.upstreamByID[key] = append(e.upstreamByID[key], ref)
	}
}

func (e *evidence) addFault(f *session.FaultEvent) {
	ref := faultRef{kind: f.FaultKind, action: f.Action, ending: f.Ending, detail: f.Detail, hop: f.Hop, time: f.Time}
	key := f.Proxy + "/" + f.ConnID
	e.faultsByConn[key] = append(e.faultsByConn[key], ref)
	if f.RemoteAddr != "" {
		e.faultsByRemote[f.RemoteAddr] = append(e.faultsByRemote[f.RemoteAddr], faultEventRef{f.Proxy, f.ConnID, ref})
	}
	if strings.Contains(f.FaultKind, "idle") || f.FaultKind == "nat-drop" || strings.Contains(f.Detail, "idle") {
		if d, ok := durationIn(f.Detail); ok {
			e.timeouts[HopTimeout{Where: hopWords(hopName(f.Proxy, f.Hop)), TimeoutS: d.Seconds(), Source: "fault " + f.FaultKind}] = true
		}
	}
}

// finish sorts the indexes; call it once after the last add.
func (e *evidence) finish() {
	for _, refs := range e.clientHops {
		slices.SortFunc(refs, func(a, b *hopRef) int { return a.open.Compare(b.open) })
	}
	for _, refs := range e.upstreamByID {
		slices.SortFunc(refs, func(a, b *hopRef) int { return a.open.Compare(b.open) })
	}
	for _, fs := range e.faultsByConn {
		slices.SortFunc(fs, func(a, b faultRef) int { return a.time.Compare(b.time) })
	}
	for _, fs := range e.faultsByRemote {
		slices.SortFunc(fs, func(a, b faultEventRef) int { return a.time.Compare(b.time) })
	}
	e.captured.finish()
}

// matchSlack is how far apart clocks of the client and the proxy (the same
// host, different goroutines) may put the same moment.
const matchSlack = time.Second

// matchAfterClose is how long after the proxy closed a hop the client may
// still report the error (it notices on its next read).
const matchAfterClose = 30 * time.Second

// clientHopAt finds the client hop whose remote address is addr and that
// was open at t.
func (e *evidence) clientHopAt(addr string, t time.Time) *hopRef {
	return lastOpenAt(e.clientHops[addr], t)
}

// upstreamAt finds the upstream hop of a proxied connection that carried
// the request in progress at t.
func (e *evidence) upstreamAt(h *hopRef, t time.Time) *hopRef {
	return lastOpenAt(e.upstreamByID[h.proxy+"/"+h.connID], t)
}

// lastOpenAt takes, of refs sorted by open, the last one opened before t
// that was still open (or closed shortly before t): ports and connections
// are reused over a long run.
func lastOpenAt(refs []*hopRef, t time.Time) *hopRef {
	i, _ := slices.BinarySearchFunc(refs, t.Add(matchSlack), func(r *hopRef, t time.Time) int { return r.open.Compare(t) })
	if i == 0 {
		return nil
	}
	if r := refs[i-1]; r.close.IsZero() || !r.close.Before(t.Add(-matchAfterClose)) {
		return r
	}
	return nil
}

// faults returns the terminal faults that fired on one hop of a proxied
// connection: those inside its HopConn and the fault events.
func (e *evidence) faults(h *hopRef) []faultRef {
	var out []faultRef
	for _, f := range h.faults {
		if f.terminal() {
			out = append(out, f)
		}
	}
	from, to := h.open.Add(-matchSlack), h.close.Add(matchSlack)
	for _, f := range e.faultsByConn[h.proxy+"/"+h.connID] {
		if f.hop == h.hop && f.terminal() && !f.time.Before(from) && (h.close.IsZero() || !f.time.After(to)) {
			out = append(out, f)
		}
	}
	return out
}

// attributeClient follows a client's error along the path: a captured RST
// first (the packet says who sent it), then the proxies' records hop by
// hop and fault events by address; the capture analysis's inferred resets
// count when they are at least as confident as those.
func (e *evidence) attributeClient(er *session.ErrorRecord) attribution {
	captured, ok := e.captured.attribute(er)
	if ok && captured.Confidence == ConfidenceHigh {
		return captured
	}
	own := e.attributeBySockets(er)
	if ok && confidenceRank[captured.Confidence] >= confidenceRank[own.Confidence] {
		return captured
	}
	return own
}

// attributeBySockets follows a client's error through the proxies' hop
// records and fault events.
func (e *evidence) attributeBySockets(er *session.ErrorRecord) attribution {
	if er.LocalAddr == "" {
		return unknownAttribution
	}
	if h := e.clientHopAt(er.LocalAddr, er.Time); h != nil {
		return e.walk(h, er.Time)
	}
	if f, ok := e.faultAt(er.LocalAddr, er.Time, er.Age.D()); ok {
		return attribution{Hop: hopName(f.proxy, f.hop), Origin: "proxy " + f.proxy, Confidence: ConfidenceHigh,
			Fault: f.kind, Evidence: EvidenceFault}
	}
	return unknownAttribution
}

// faultAt finds a terminal fault that acted on the socket whose remote
// address is addr during the attempt that failed at t after age.
func (e *evidence) faultAt(addr string, t time.Time, age time.Duration) (faultEventRef, bool) {
	from := t.Add(-age - matchSlack)
	for _, f := range slices.Backward(e.faultsByRemote[addr]) {
		if f.time.After(t.Add(matchSlack)) {
			continue
		}
		if f.time.Before(from) {
			break
		}
		if f.terminal() {
			return f, true
		}
	}
	return faultEventRef{}, false
}

// walk follows a proxied connection from its client hop inward until it
// finds the hop that ended it.
func (e *evidence) walk(h *hopRef, t time.Time) attribution {
	for range 16 { // bounded: a chain longer than this is a loop in the data
		if fs := e.faults(h); len(fs) > 0 {
			return attribution{Hop: hopName(h.proxy, h.hop), Origin: "proxy " + h.proxy, Confidence: ConfidenceHigh,
				Fault: fs[0].kind, Evidence: EvidenceFault}
		}
		up := e.upstreamAt(h, t)
		if up != nil {
			if fs := e.faults(up); len(fs) > 0 {
				return attribution{Hop: hopName(up.proxy, up.hop), Origin: "proxy " + up.proxy, Confidence: ConfidenceHigh,
					Fault: fs[0].kind, Evidence: EvidenceFault}
			}
		}
		switch {
		case h.closedBy == session.ClosedByPeer && (up == nil || up.closedBy != session.ClosedByPeer):
			return attribution{Hop: hopName(h.proxy, h.hop), Origin: OriginClient, Confidence: ConfidenceMedium, Evidence: EvidenceHop}
		case up != nil && up.closedBy == session.ClosedByPeer:
			// The upstream peer ended it. If that peer is another of our
			// proxies, keep walking; otherwise it was the server.
			if next := e.clientHopAt(up.localAddr, t); next != nil && next != h {
				h = next
				continue
			}
			return attribution{Hop: hopName(up.proxy, up.hop), Origin: OriginServer, Confidence: ConfidenceMedium, Evidence: EvidenceHop}
		case h.closedBy == session.ClosedBySelf || (up != nil && up.closedBy == session.ClosedBySelf):
			return attribution{Hop: hopName(h.proxy, h.hop), Origin: "proxy " + h.proxy, Confidence: ConfidenceMedium, Evidence: EvidenceHop}
		case h.close.IsZero():
			// The proxy never saw this connection end, yet the client did:
			// something between them cut it.
			return attribution{Hop: "client→" + h.proxy, Origin: OriginMiddlebox, Confidence: ConfidenceLow, Evidence: EvidenceHop}
		}
		return attribution{Hop: hopName(h.proxy, h.hop), Origin: OriginUnknown, Confidence: ConfidenceLow, Evidence: EvidenceHop}
	}
	return unknownAttribution
}

// attributeProxy places an error a proxy recorded itself (Source
// "proxy:<name>"), on the hop it names.
func (e *evidence) attributeProxy(er *session.ErrorRecord, proxy string) attribution {
	hop := hopName(proxy, er.Hop)
	if er.Hop == "" {
		hop = hopName(proxy, "?")
	}
	for _, f := range e.faultsByConn[proxy+"/"+er.ConnID] {
		if f.terminal() && (er.Hop == "" || f.hop == er.Hop) {
			return attribution{Hop: hopName(proxy, f.hop), Origin: "proxy " + proxy, Confidence: ConfidenceHigh, Fault: f.kind, Evidence: EvidenceFault}
		}
	}
	switch er.Hop {
	case session.HopUpstream:
		return attribution{Hop: hop, Origin: OriginServer, Confidence: ConfidenceLow, Evidence: EvidenceHop}
	case session.HopClient:
		return attribution{Hop: hop, Origin: OriginClient, Confidence: ConfidenceLow, Evidence: EvidenceHop}
	}
	return attribution{Hop: hop, Origin: OriginUnknown, Confidence: ConfidenceNone, Evidence: EvidenceNone}
}

// capturedResets indexes the capture analysis's root resets (bucket
// resets) by the client error each explains.
type capturedResets struct {
	// byError maps "<conn id>/<attempt>/<error time, unix ns>" to the root
	// reset; byAttempt maps "<conn id>/<attempt>" to every root reset of
	// that attempt, for errors whose time was written differently.
	byError   map[string]*session.Reset
	byAttempt map[string][]*session.Reset
	chains    map[ResetChain]int64
}

func (c *capturedResets) add(r *session.Reset) {
	if c.byError == nil {
		c.byError, c.byAttempt, c.chains = map[string]*session.Reset{}, map[string][]*session.Reset{}, map[ResetChain]int64{}
	}
	if !r.Root {
		return
	}
	c.chains[ResetChain{
		Chain: r.Chain, Sender: resetSender(r), Hop: resetHop(r),
		Confidence: r.Confidence, Injected: r.Injected, Fault: r.FaultKind, Forged: r.Forged,
	}]++
	if r.Error == nil {
		return
	}
	attempt := r.Error.ClientID + "/" + strconv.Itoa(r.Error.Attempt)
	c.byError[attempt+"/"+strconv.FormatInt(r.Error.Time.UnixNano(), 10)] = r
	c.byAttempt[attempt] = append(c.byAttempt[attempt], r)
}

func (c *capturedResets) finish() {}

// resetHop names the hop of a reset as the tables do.
func resetHop(r *session.Reset) string {
	if r.Proxy != "" && (r.Hop == session.HopClient || r.Hop == session.HopUpstream) {
		return hopName(r.Proxy, r.Hop)
	}
	if r.Link == "" {
		return HopUnknown
	}
	return r.Link
}

// resetSender names who sent a reset: "server", "proxy p1", "middlebox lb".
func resetSender(r *session.Reset) string {
	switch r.SenderRole {
	case session.RoleProxy, session.RoleMiddlebox:
		if r.SenderName != "" {
			return r.SenderRole + " " + r.SenderName
		}
		return r.SenderRole
	case "":
		return OriginUnknown
	}
	return r.SenderRole
}

// attribute finds the root reset that explains er.
func (c *capturedResets) attribute(er *session.ErrorRecord) (attribution, bool) {
	if c.byError == nil || er.ClientID == "" {
		return attribution{}, false
	}
	attempt := er.ClientID + "/" + strconv.Itoa(er.Attempt)
	r := c.byError[attempt+"/"+strconv.FormatInt(er.Time.UnixNano(), 10)]
	if r == nil {
		// Shards reuse connection ids: only an attempt with one reset, at
		// the same address, is unambiguous.
		if rs := c.byAttempt[attempt]; len(rs) == 1 && (rs[0].Error.LocalAddr == "" || rs[0].Error.LocalAddr == er.LocalAddr) {
			r = rs[0]
		}
	}
	if r == nil {
		return attribution{}, false
	}
	at := attribution{Hop: resetHop(r), Origin: resetSender(r), Confidence: r.Confidence, Evidence: EvidenceResets}
	if r.Confidence == ConfidenceHigh {
		at.Evidence = EvidenceCapture
	}
	if at.Confidence == "" {
		at.Confidence = ConfidenceLow
	}
	if r.Injected {
		at.Fault = r.FaultKind
		if at.Fault == "" {
			at.Fault = r.FaultName
		}
	}
	return at, true
}
