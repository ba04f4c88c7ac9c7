package attribution

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// Result is everything the engine concluded.
type Result struct {
	// Explanations of every incident: the client errors given (Input.Errors
	// or Explain), then the proxies' client connections no client
	// recorded.
	Explanations []*Explanation `json:"explanations"`
	// Segments are the captured RST segments, each once.
	Segments []Segment `json:"segments"`
	// Flows counts the flow summaries looked at, Captures the captures.
	Flows    int     `json:"flows"`
	Captures int     `json:"captures"`
	Verdict  Verdict `json:"verdict"`
}

// Analyze builds the picture of in and explains every error in it and
// every proxy client connection no client recorded.
func Analyze(in *Input, opts Options) *Result {
	e := New(in, opts)
	for i := range in.Conns {
		e.ClientConn(in.Conns[i].File, &in.Conns[i].R)
	}
	var xs []*Explanation
	for i := range in.Errors {
		xs = append(xs, e.Explain(in.Errors[i].File, &in.Errors[i].R))
	}
	return e.Finish(xs)
}

// abnormal reports whether a proxy's client hop ended in a way its client
// felt: a reset either way, the proxy's upstream-error policy, a fault
// that ended it, or an error class other than a clean end.
func abnormal(h *hopRec) bool {
	if h.h.Ending == session.EndingRST || h.h.OnUpstreamError != "" {
		return true
	}
	for _, f := range h.faults {
		if f.ending != "" {
			return true
		}
	}
	return h.h.Class != "" && h.h.Class != errclass.EOF
}

// ExplainProxyHops explains the proxies' client connections that ended in
// a reset or a cut and that no explained client error went through: what
// a proxy's file says when no client recorded anything (real clients
// through ssestress proxy).
func (e *Engine) ExplainProxyHops() []*Explanation {
	var out []*Explanation
	for _, h := range e.hops {
		if h.h.Hop != session.HopClient || h.covered || h.conn == nil || h.conn.hops[endDialer] != nil || !abnormal(h) {
			continue
		}
		x := &Explanation{Incident: Incident{Source: session.SourceProxy, Time: h.closed, Proxy: e.proxyName(h), ConnID: h.h.ConnID,
			LocalAddr: h.h.RemoteAddr, RemoteAddr: h.h.LocalAddr, Age: session.Seconds(h.closed.Sub(h.opened)), Idle: h.h.Idle}}
		w := &walker{e: e, x: x, visited: map[*conn]bool{}}
		x.Seen = hopSeen(h)
		w.final(fmt.Sprintf("the client %s of proxy %s felt a %s", h.h.RemoteAddr, x.Incident.Proxy, seenNoun(x.Seen, 1)))
		w.why(h.conn, endDialer, nil, 0, h.closed)
		w.finish()
		if x.Kind == KindNatural && x.Sender.Role == session.RoleClient && x.Ending == session.EndingFIN {
			// The client closed first: whatever the proxy did after, its
			// client did not feel it.
			continue
		}
		e.tally.Add(x)
		out = append(out, x)
	}
	return out
}

// hopSeen is what a proxy's client felt when its client hop ended.
func hopSeen(h *hopRec) string {
	switch {
	case h.h.Ending == session.EndingRST:
		return SeenReset
	case h.h.OnUpstreamError == "abort", h.h.Class == errclass.UnexpectedEOF:
		return SeenCut
	case h.h.Class != "":
		if s := Seen(h.h.Class); s != SeenOther {
			return s
		}
	}
	return SeenClose
}

// Finish explains what no client recorded (ExplainProxyHops), lists the
// captured RST segments and concludes. xs are the explanations Explain
// returned, kept by a caller that wants them all in the Result (nil for a
// caller that streams them).
func (e *Engine) Finish(xs []*Explanation) *Result {
	res := &Result{Explanations: xs, Flows: len(e.flows), Captures: len(e.caps)}
	res.Explanations = append(res.Explanations, e.ExplainProxyHops()...)
	res.Segments = e.Segments(res.Explanations)
	res.Verdict = e.Verdict(VerdictContext{RSTSegments: int64(len(res.Segments)), Reasons: SegmentReasons(res.Segments),
		Captures: len(e.caps), HopRecords: len(e.hops) > 0})
	return res
}

// Segments lists every captured RST segment, each once, attributed; the
// roots of xs carry the incident they explain.
func (e *Engine) Segments(xs []*Explanation) []Segment {
	roots := map[*segment]*Explanation{}
	for _, x := range xs {
		if x.root != nil && roots[x.root] == nil {
			roots[x.root] = x
		}
	}
	var out []Segment
	for _, c := range e.all {
		if len(c.flows) == 0 && len(c.kernel) == 0 {
			continue
		}
		e.analyze(c)
		for _, s := range c.segs {
			out = append(out, e.segmentOf(c, s, roots[s]))
		}
	}
	slices.SortStableFunc(out, func(a, b Segment) int {
		if d := a.Time.Compare(b.Time); d != 0 {
			return d
		}
		return strings.Compare(a.Sender.Addr, b.Sender.Addr)
	})
	return out
}

func (e *Engine) segmentOf(c *conn, s *segment, x *Explanation) Segment {
	claimed, receiver := e.party(c, s.end), e.party(c, other(s.end))
	out := Segment{Time: s.t, Sender: claimed, Receiver: receiver, Captures: s.captures(), Age: session.Seconds(s.age),
		Idle: session.Seconds(s.idle), Reason: s.reason, Kind: KindNatural, Confidence: ConfidenceHigh}
	out.Proxy, out.Hop, out.Link = e.place(c)
	if len(s.obs) > 0 && s.obs[0].flow != nil {
		fr := s.obs[0].flow
		out.Flow = session.FlowKey(fr.f.First, fr.f.Dialer, fr.f.Listener, fr.f.Capture)
	}
	if len(s.obs) == 0 {
		out.Captures = []string{}
	}
	if s.idle < 0 {
		out.Idle = -1
	}
	switch {
	case s.forged:
		out.Kind, out.Sender, out.InNameOf = KindForged, Party{Role: session.RoleMiddlebox}, &claimed
		out.Evidence = append(out.Evidence, s.forgedWhy...)
		if s.reason == ReasonAnswer {
			out.Kind = KindLostState
		}
	case s.reason == ReasonAnswer:
		out.Kind = KindLostState
		out.Evidence = append(out.Evidence, fmt.Sprintf("answered at once the first segment after %s of silence: %s no longer knew the connection", words(s.quiet), claimed.Words()))
	default:
		if h := c.hops[s.end]; h != nil {
			if f := faultBefore(h, s.t); f != nil {
				out.Kind, out.FaultName, out.FaultKind = KindInjected, f.name, f.kind
			}
		}
	}
	if s.noAck && s.reason != ReasonRefused {
		out.Evidence = append(out.Evidence, "the RST carried no ACK: the answer of a stack with no socket for the connection")
	}
	if k := e.segKernel(s); k != nil {
		out.Kernel = k
		out.Evidence = append(out.Evidence, "traced by the sender's kernel: "+kernelStep(k, claimed, 0))
	}
	out.Received = s.received != nil
	if x != nil {
		inc := x.Incident
		out.Explains, out.Chain = &inc, x.ChainText()
	}
	return out
}

// SegmentReasons counts segments by reason.
func SegmentReasons(segs []Segment) map[string]int64 {
	m := map[string]int64{}
	for _, s := range segs {
		m[s.Reason]++
	}
	return m
}

// CacheRecords turns the segments into the records of the resets bucket:
// a cache of this attribution for quick looks (inspect). Nothing reads it
// as evidence; a later analysis recomputes from the raw records.
func CacheRecords(segs []Segment) []session.Reset {
	out := make([]session.Reset, 0, len(segs))
	ids := map[string]bool{}
	for _, s := range segs {
		r := session.Reset{Time: s.Time, Flow: s.Flow, Proxy: s.Proxy, Hop: s.Hop, Link: s.Link,
			SenderAddr: s.Sender.Addr, SenderRole: s.Sender.Role, SenderName: s.Sender.Name,
			ReceiverAddr: s.Receiver.Addr, ReceiverRole: s.Receiver.Role,
			Age: s.Age, Idle: s.Idle, Reason: s.Reason, Injected: s.Kind == KindInjected,
			FaultName: s.FaultName, FaultKind: s.FaultKind, Forged: s.InNameOf != nil,
			Evidence: s.Evidence, Confidence: s.Confidence, Chain: s.Chain}
		if s.InNameOf != nil {
			r.SenderAddr = s.InNameOf.Addr
		}
		if s.Explains != nil {
			r.Root = true
			r.Error = &session.ErrorRef{Time: s.Explains.Time, ClientID: s.Explains.ClientID, Attempt: s.Explains.Attempt, Class: s.Explains.Class,
				LocalAddr: s.Explains.LocalAddr, RemoteAddr: s.Explains.RemoteAddr}
		}
		for n := 0; ; n++ {
			if id := session.ResetID(r.Time, r.SenderAddr, r.ReceiverAddr, n); !ids[id] {
				r.ID, ids[id] = id, true
				break
			}
		}
		out = append(out, r)
	}
	return out
}

// FirstSentence is the first sentence of a statement: the answer.
func FirstSentence(s string) string {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '.' && s[i+1] == ' ' && s[i+2] >= 'A' && s[i+2] <= 'Z' {
			return s[:i+1]
		}
	}
	return s
}

// ClientConn notes a generated client's connection attempt: a proxy's
// client hop it went through is that client's to explain (by its error,
// if it had one), never a failed connection of an unknown client.
func (e *Engine) ClientConn(file int, c *session.ConnRecord) {
	if len(e.hops) == 0 && len(e.kernel) == 0 {
		return
	}
	local, ok1 := parseAP(c.LocalAddr)
	remote, ok2 := parseAP(c.RemoteAddr)
	if !ok1 || !ok2 {
		return
	}
	if len(e.kernel) > 0 {
		// It connected: the kernel's answers on it are not refusals.
		if e.clientLocal == nil {
			e.clientLocal = map[netip.AddrPort]bool{}
		}
		e.clientLocal[local] = true
	}
	if cn := e.lookup(local, remote, e.at(file, c.Start), e.at(file, c.End)); cn != nil {
		if h := cn.hops[endListener]; h != nil {
			h.covered = true
		}
	}
}
