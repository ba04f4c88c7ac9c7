package attribution

import (
	"slices"
	"time"

	"github.com/ssestress/ssestress/capture/kernel"
	"github.com/ssestress/ssestress/internal/session"
)

// Evidence kinds, from what proves most to what proves least.
const (
	// EvidenceKernel: the sender's own kernel traced the segment: who
	// sent it (its stack, in which process) and why (the reason).
	EvidenceKernel    = "kernel"
	EvidencePacket    = "packets"       // captured segments
	EvidenceFault     = "fault firing"  // a proxy's record that its fault ended the socket
	EvidenceOwnRecord = "own record"    // a proxy's record of its own socket's end
	EvidencePeer      = "peer's record" // the other end's record of what reached it
	EvidenceClient    = "client error"  // only the client's error class
	EvidenceNone      = "none"
)

// Confidence levels.
const (
	ConfidenceHigh   = "high"   // the sender's kernel, packets, or the sender's own record (a fault firing, a proxy's socket)
	ConfidenceMedium = "medium" // the receiving proxy's record of what reached its socket
	ConfidenceLow    = "low"    // only a client's error class
	ConfidenceNone   = "none"
)

var confidenceRank = map[string]int{ConfidenceNone: 0, ConfidenceLow: 1, ConfidenceMedium: 2, ConfidenceHigh: 3}

// Act kinds beyond session.EndingRST, EndingFIN, EndingRefused and
// EndingStream.
const endingTimeout = "timeout"

// act is one deed that ended (or could have ended) a connection, with
// every piece of evidence that states it.
type act struct {
	t      time.Time
	by     int // the end that sent it; endNone for a middlebox
	toward int // the end it reached
	kind   string
	seg    *segment
	pkt    bool // a captured FIN
	// hops are proxy records stating it: own (the sender's socket) or
	// peer (the receiver's).
	own, peer *hopRec
	fault     *fault
	client    *session.ErrorRecord // a client error stating what reached it
	clientKA  time.Duration        // that client's keepalive period
}

func (a *act) reply() bool { return a.seg != nil && a.seg.reason == ReasonReply }

func (a *act) forged() bool { return a.seg != nil && a.seg.forged }

// claimed is the end an act's segment claimed to come from.
func (a *act) claimed() int {
	if a.seg != nil {
		return a.seg.end
	}
	return a.by
}

// evidence is the strongest kind of evidence behind the act.
func (a *act) evidence() string {
	switch {
	case a.seg != nil && a.seg.kernel != nil:
		return EvidenceKernel
	case a.seg != nil, a.pkt:
		return EvidencePacket
	case a.fault != nil:
		return EvidenceFault
	case a.own != nil:
		return EvidenceOwnRecord
	case a.peer != nil:
		return EvidencePeer
	case a.client != nil:
		return EvidenceClient
	}
	return EvidenceNone
}

func (a *act) confidence() string {
	switch a.evidence() {
	case EvidenceKernel, EvidencePacket, EvidenceFault, EvidenceOwnRecord:
		return ConfidenceHigh
	case EvidencePeer:
		return ConfidenceMedium
	case EvidenceClient:
		return ConfidenceLow
	}
	return ConfidenceNone
}

// kindOfClass is the act a client's error class states.
func kindOfClass(class string) string {
	switch Seen(class) {
	case SeenReset:
		return session.EndingRST
	case SeenCut, SeenClose:
		return session.EndingFIN
	case SeenRefused:
		return session.EndingRefused
	case SeenStreamReset, SeenGoAway:
		return session.EndingStream
	case SeenTimeout:
		return endingTimeout
	}
	return ""
}

// acts lists what ended c, each deed once with all its evidence, in time
// order. client, when set, is the error of the client at end clientEnd.
func (e *Engine) acts(c *conn, client *session.ErrorRecord, clientEnd int, clientKA time.Duration, clientAt time.Time) []*act {
	e.analyze(c)
	var out []*act
	for _, s := range c.segs {
		a := &act{t: s.t, by: s.end, toward: other(s.end), kind: session.EndingRST, seg: s}
		switch {
		case s.forged:
			a.by = endNone
		case s.reason == ReasonRefused:
			a.kind = session.EndingRefused
		case s.kernel != nil && kernelKind(s.kernel.ev.Reason) == kernel.KindTimeout:
			// The end's kernel gave up on a peer that stopped answering
			// (its keepalive probes went unanswered): the deed is the
			// peer's silence, the RST only the end's farewell.
			a.by, a.toward, a.kind = other(s.end), s.end, endingTimeout
		}
		out = append(out, a)
	}
	for end, t := range c.fins {
		if !t.IsZero() {
			out = append(out, &act{t: t, by: end, toward: other(end), kind: session.EndingFIN, pkt: true})
		}
	}
	// match finds the act a record states: the same deed within sameDeed.
	match := func(kind string, t time.Time, sender int, viaPeer bool) *act {
		var best *act
		for _, a := range out {
			if a.kind != kind || absDur(a.t.Sub(t)) > sameDeed {
				continue
			}
			if a.by != sender && !(viaPeer && a.forged() && a.claimed() == sender) {
				continue
			}
			if best == nil || absDur(a.t.Sub(t)) < absDur(best.t.Sub(t)) {
				best = a
			}
		}
		return best
	}
	for end, h := range c.hops {
		if h == nil {
			continue
		}
		for i := range h.faults {
			f := &h.faults[i]
			if f.ending == "" {
				continue
			}
			if a := match(f.ending, f.t.Add(faultLead/2), end, false); a != nil && !a.t.Before(f.t.Add(-sameDeed)) {
				if a.fault == nil {
					a.fault, a.own = f, h
				}
				continue
			}
			out = append(out, &act{t: f.t, by: end, toward: other(end), kind: f.ending, fault: f, own: h})
		}
		if h.closed.IsZero() || h.h.Ending == "" {
			continue
		}
		switch h.h.ClosedBy {
		case session.ClosedBySelf:
			if a := match(h.h.Ending, h.closed, end, false); a != nil {
				if a.own == nil {
					a.own = h
				}
				continue
			}
			out = append(out, &act{t: h.closed, by: end, toward: other(end), kind: h.h.Ending, own: h})
		case session.ClosedByPeer:
			if a := match(h.h.Ending, h.closed, other(end), true); a != nil {
				a.peer = h
				continue
			}
			out = append(out, &act{t: h.closed, by: other(end), toward: end, kind: h.h.Ending, peer: h})
		}
	}
	if client != nil {
		if kind := kindOfClass(client.Class); kind != "" {
			if a := match(kind, clientAt, other(clientEnd), true); a != nil {
				a.client, a.clientKA = client, clientKA
			} else if kind == session.EndingRST || kind == session.EndingFIN {
				// What reached the client, without a packet or a record of
				// the sender's: the peer is all the error can name.
				var before *act
				for _, a := range out {
					if a.toward == clientEnd && !a.t.After(clientAt.Add(sameDeed)) && (before == nil || a.t.Before(before.t)) {
						before = a
					}
				}
				if before == nil {
					out = append(out, &act{t: clientAt, by: other(clientEnd), toward: clientEnd, kind: kind, client: client, clientKA: clientKA})
				}
			} else {
				out = append(out, &act{t: clientAt, by: other(clientEnd), toward: clientEnd, kind: kind, client: client, clientKA: clientKA})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *act) int { return a.t.Compare(b.t) })
	return out
}

// pick finds, among a connection's acts, the root (the first that is not
// a reply to an earlier reset) and what reached end (the first act that
// reached it or that it did itself). Either may be nil.
func pick(acts []*act, end int) (root, reach *act) {
	for _, a := range acts {
		if root == nil && !a.reply() {
			root = a
		}
		if reach == nil && (a.toward == end || a.by == end) {
			reach = a
		}
	}
	if reach != nil && root != nil && root.t.After(reach.t) {
		root = reach
	}
	return root, reach
}

// lostByRecord reports whether a RST a socket's owner recorded from its
// peer answered that owner's own keepalive probe: its silence before the
// RST equals the keepalive period (within the probe's timing). Without
// packets that is what lost state looks like from the socket.
func lostByRecord(idle, keepalive time.Duration) bool {
	return keepalive > 0 && idle >= keepalive*9/10 && idle <= keepalive*3/2
}
