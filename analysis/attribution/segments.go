package attribution

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// observation is one sighting of a RST segment by a capture: a captured
// packet. The kernel's trace of a segment (kernel.go) is attached to the
// segment the packets make, or makes one when no capture saw it:
// segment.kernel and segment.received.
type observation struct {
	t      time.Time // aligned to the reference clock
	end    int       // the end whose address it came from
	seq    uint32
	source string // "packet"
	flow   *flowRec
	rp     *session.RSTPacket
}

// Reasons a segment was sent, as the packets show it.
const (
	ReasonAbort      = session.ReasonAbort      // closed with RST (SO_LINGER 0, unread data, a fault)
	ReasonAfterClose = session.ReasonAfterClose // the sender had closed with FIN and got data it could not deliver
	ReasonReply      = session.ReasonReply      // the sender's socket was reset already: its stack answered a late segment
	ReasonRefused    = session.ReasonRefused    // the answer to a SYN
	// ReasonAnswer: the answer, at once, to the first segment after a
	// silence, from a sender that had sent neither FIN nor RST: it no
	// longer knew the connection.
	ReasonAnswer = "answer"
)

// segment is one RST segment of a connection, seen by one or more
// captures.
type segment struct {
	t    time.Time // first sighting (aligned)
	end  int       // the end it claims to come from
	obs  []observation
	conn *conn

	reason string
	// forged: a middlebox sent it in the end's name.
	forged    bool
	forgedWhy []string
	// quiet is the silence before the segment it answered (reason answer).
	quiet time.Duration
	noAck bool
	// age and idle at the segment (idle -1: unknown).
	age, idle time.Duration
	// kernel is the sender's kernel's trace of the segment (send_reset),
	// received the receiver's (receive_reset); nil when not traced.
	kernel, received *kernelRec
}

// kernelReset is the sender's kernel's trace, for words and JSON.
func (e *Engine) segKernel(s *segment) *KernelReset {
	if s == nil || s.kernel == nil {
		return nil
	}
	return e.kernelReset(s.kernel)
}

// captures lists the IDs of the captures that saw it.
func (s *segment) captures() []string {
	var ids []string
	for _, o := range s.obs {
		if o.flow != nil && !slices.Contains(ids, o.flow.capture.info.ID) {
			ids = append(ids, o.flow.capture.info.ID)
		}
	}
	return ids
}

// flowEnd is the end of the connection a flow direction belongs to.
func flowEnd(fr *flowRec, from string) int {
	if from == session.FromDialer {
		return endDialer
	}
	return endListener
}

// analyze finds a connection's RST segments (each once, whatever saw it),
// its FINs, and what the packets say of each segment.
func (e *Engine) analyze(c *conn) {
	if c.analyzed {
		return
	}
	c.analyzed = true
	var obs []observation
	for _, fr := range c.flows {
		off := fr.capture.offset
		if t := fr.f.First.Add(-off); c.firstPkt.IsZero() || t.Before(c.firstPkt) {
			c.firstPkt = t
		}
		for i := range fr.f.RSTs {
			rp := &fr.f.RSTs[i]
			obs = append(obs, observation{t: rp.Time.Add(-off), end: flowEnd(fr, rp.From), seq: rp.Seq, source: "packet", flow: fr, rp: rp})
		}
		for end, d := range [2]*session.FlowDirection{&fr.f.FromDialer, &fr.f.FromListener} {
			if !d.FIN.IsZero() {
				t := d.FIN.Add(-off)
				if c.fins[end].IsZero() || t.Before(c.fins[end]) {
					c.fins[end] = t
				}
			}
		}
	}
	slices.SortStableFunc(obs, func(a, b observation) int { return a.t.Compare(b.t) })
	for _, o := range obs {
		var s *segment
		for _, x := range c.segs {
			if x.end == o.end && x.obs[0].seq == o.seq && absDur(o.t.Sub(x.t)) <= twinWindow &&
				!slices.ContainsFunc(x.obs, func(y observation) bool { return y.flow == o.flow }) {
				s = x
				break
			}
		}
		if s == nil {
			s = &segment{t: o.t, end: o.end, conn: c, idle: -1}
			c.segs = append(c.segs, s)
		}
		s.obs = append(s.obs, o)
	}
	e.attachKernel(c)
	for _, s := range c.segs {
		e.classify(s)
	}
}

// start is the connection's start as the packets or records know it.
func (c *conn) startTime() time.Time {
	if !c.firstPkt.IsZero() && (c.start.IsZero() || c.firstPkt.Before(c.start)) {
		return c.firstPkt
	}
	return c.start
}

// classify says why a segment was sent and whether its claimed sender's
// stack sent it.
func (e *Engine) classify(s *segment) {
	c := s.conn
	s.age = s.t.Sub(c.startTime())
	if len(s.obs) == 0 {
		// Only the sender's kernel saw it: its reason says why, and the
		// sender's own stack sent it.
		s.reason = e.kernelReason(s)
		return
	}
	first := s.obs[0]
	for _, o := range s.obs {
		rp := o.rp
		if rp == nil {
			continue
		}
		last := rp.SenderLastData
		if rp.ReceiverLastData.After(last) {
			last = rp.ReceiverLastData
		}
		if !last.IsZero() {
			s.idle = rp.Time.Sub(last)
		} else if s.idle < 0 {
			s.idle = s.age
		}
		if !rp.HasAck {
			s.noAck = true
		}
	}
	fr := first.flow
	switch {
	case s.end == endListener && fr != nil && !fr.f.SYN.IsZero() && fr.f.SYNACK.IsZero():
		s.reason = ReasonRefused
	case slices.ContainsFunc(s.obs, func(o observation) bool { return o.rp != nil && o.rp.PeerRSTBefore }):
		s.reason = ReasonReply
	case slices.ContainsFunc(s.obs, func(o observation) bool { return o.rp != nil && o.rp.SenderFINBefore }):
		s.reason = ReasonAfterClose
	default:
		s.reason = ReasonAbort
		for _, o := range s.obs {
			rp := o.rp
			if rp == nil || rp.ReceiverLastPacket.IsZero() {
				continue
			}
			quiet := rp.QuietBefore.D()
			answered := rp.Time.Sub(rp.ReceiverLastPacket)
			if quiet >= lostStateQuiet && answered >= 0 && answered <= min(answerDelay, quiet/2) {
				s.reason, s.quiet = ReasonAnswer, quiet
				break
			}
		}
	}
	if s.reason == ReasonReply || s.reason == ReasonRefused {
		return
	}
	if s.kernel != nil {
		// The sender's own kernel traced it: whatever the packets look
		// like, its stack sent it.
		if s.reason == ReasonAbort {
			if r := e.kernelReason(s); r == ReasonAfterClose || r == ReasonRefused {
				s.reason = r
			}
		}
		return
	}
	s.forgedWhy = e.forgery(s)
	s.forged = len(s.forgedWhy) > 0
}

// forgery lists the reasons to think the claimed sender's stack did not
// send the segment.
func (e *Engine) forgery(s *segment) []string {
	c := s.conn
	sender := e.party(c, s.end)
	var why []string
	for _, o := range s.obs {
		rp := o.rp
		if rp == nil {
			continue
		}
		if !rp.SenderSentAfter.IsZero() {
			why = append(why, fmt.Sprintf("%s kept sending on the connection %s after the RST: its socket was not reset",
				sender.Words(), words(rp.SenderSentAfter.Sub(rp.Time))))
		}
		side := &o.flow.f.FromDialer
		if rp.From == session.FromListener {
			side = &o.flow.f.FromListener
		}
		if side.TTLMax > 0 && (rp.TTL < side.TTLMin || rp.TTL > side.TTLMax) {
			span := fmt.Sprint(side.TTLMin)
			if side.TTLMax != side.TTLMin {
				span += "–" + fmt.Sprint(side.TTLMax)
			}
			why = append(why, fmt.Sprintf("the RST had TTL %d where %s's other packets had %s (capture %s): it came from another hop",
				rp.TTL, sender.Words(), span, o.flow.capture.info.ID))
		}
	}
	// The sender's own record: a proxy socket that was reset by its peer
	// sent no RST of its own.
	if h := c.hops[s.end]; h != nil && h.h.ClosedBy == session.ClosedByPeer && h.h.Ending == session.EndingRST {
		why = append(why, fmt.Sprintf("proxy %s recorded its %s hop as reset by its peer, not by itself", e.proxyName(h), h.h.Hop))
	}
	if s.end == endDialer && c.hops[s.end] == nil {
		for _, a := range c.addrs[endDialer] {
			for _, er := range e.errorsByLocal[a] {
				if IsReset(er.Class) && absDur(er.Time.Sub(s.t)) <= sameDeed {
					why = append(why, fmt.Sprintf("client %s saw %s on this connection: it was reset, it did not reset", er.ClientID, er.Class))
				}
			}
		}
	}
	// A twin missing on a capture nearer to the sender: the segment was
	// sent between the two.
	seen := map[*captureRec]bool{}
	for _, o := range s.obs {
		if o.flow != nil {
			seen[o.flow.capture] = true
		}
	}
	for _, fr := range c.flows {
		y := fr.capture
		if seen[y] || !y.running(s.t) {
			continue
		}
		if fr.f.First.Add(-y.offset).After(s.t.Add(twinWindow)) {
			continue
		}
		for _, o := range s.obs {
			x := o.flow
			if x == nil {
				continue
			}
			tx, ty := senderTTL(x, s.end), senderTTL(fr, s.end)
			if tx > 0 && ty > tx {
				why = append(why, fmt.Sprintf("capture %s, nearer to %s (its packets arrive there with TTL %d, at %s with %d), saw no such RST: it was sent between the two captures",
					y.info.ID, sender.Words(), ty, x.capture.info.ID, tx))
				break
			}
		}
	}
	return why
}

// senderTTL is the highest TTL of an end's packets in a flow: the nearer a
// capture is to the end, the higher.
func senderTTL(fr *flowRec, end int) uint8 {
	if end == endDialer {
		return fr.f.FromDialer.TTLMax
	}
	return fr.f.FromListener.TTLMax
}

// alignCaptures finds each capture's clock offset from the reference
// capture by the handshakes they both saw (the same initial sequence
// numbers), so captures from different hosts line up by their packets,
// not their clocks. Captures of one host share its clock.
func (e *Engine) alignCaptures() {
	if len(e.caps) < 2 {
		return
	}
	type seen struct {
		capt *captureRec
		syn  time.Time
	}
	byISN := map[[2]uint32][]seen{}
	for _, fr := range e.flows {
		isn := [2]uint32{fr.f.FromDialer.ISN, fr.f.FromListener.ISN}
		if isn[0] == 0 || isn[1] == 0 || fr.f.SYN.IsZero() {
			continue
		}
		byISN[isn] = append(byISN[isn], seen{fr.capture, fr.f.SYN})
	}
	deltas := map[[2]*captureRec][]time.Duration{}
	for _, ss := range byISN {
		for i := range ss {
			for j := range ss {
				if i != j && ss[i].capt != ss[j].capt {
					k := [2]*captureRec{ss[i].capt, ss[j].capt}
					deltas[k] = append(deltas[k], ss[j].syn.Sub(ss[i].syn))
				}
			}
		}
	}
	ids := make([]string, 0, len(e.caps))
	for id := range e.caps {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if d := len(e.caps[b].flows) - len(e.caps[a].flows); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	done := map[*captureRec]bool{}
	for _, id := range ids {
		root := e.caps[id]
		if done[root] {
			continue
		}
		done[root] = true
		queue := []*captureRec{root}
		for len(queue) > 0 {
			x := queue[0]
			queue = queue[1:]
			for _, yid := range ids {
				y := e.caps[yid]
				ds := deltas[[2]*captureRec{x, y}]
				if done[y] || len(ds) == 0 {
					continue
				}
				done[y] = true
				y.offset = x.offset
				if x.info.Host == "" || y.info.Host == "" || x.info.Host != y.info.Host {
					slices.Sort(ds)
					y.offset += ds[len(ds)/2]
				}
				queue = append(queue, y)
			}
		}
	}
}
