package capture

import (
	"net/netip"
	"slices"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Defaults of the tracker.
const (
	// defaultLinger is how long an ended flow (RST, or FIN both ways) stays
	// in the table for late packets (the last ACK, a reply RST) before its
	// summary is written.
	defaultLinger = 5 * time.Second
	// defaultMaxFlows bounds the table; flows beyond it are not tracked
	// (their packets still go to the pcap file) and are counted.
	defaultMaxFlows = 1_000_000
	// evictEvery is how often ended flows are swept.
	evictEvery = time.Second
	// answerWindow is how long an ended flow, once written, stays known by
	// its addresses: a segment of the same 4-tuple without SYN within it
	// (a late RST, the answer to a retransmission or a keepalive probe)
	// belongs to that connection and rewrites its summary, instead of
	// opening a "midstream" flow of its own. Two minutes is TCP's
	// TIME_WAIT twice over.
	answerWindow = 2 * time.Minute
	// maxEnded bounds the ended flows kept for answerWindow.
	maxEnded = 200_000
)

// flowKey is a flow's two addresses, the smaller first, so both directions
// find the same entry.
type flowKey struct{ a, b netip.AddrPort }

func keyOf(x, y netip.AddrPort) flowKey {
	if x.Compare(y) <= 0 {
		return flowKey{x, y}
	}
	return flowKey{y, x}
}

// sideState is what the tracker needs of a direction beyond its summary.
type sideState struct {
	seqValid bool
	ttlValid bool
	rst      bool
	// lastPacket is the side's last packet other than a RST, and gapBefore
	// the silence of the flow (no packet either way) before it.
	lastPacket time.Time
	gapBefore  time.Duration
}

// flowState is one flow in the tracker's table.
type flowState struct {
	rec               session.Flow
	client, server    netip.AddrPort
	fromClient        sideState
	fromServer        sideState
	synSeen           bool
	ended             bool
	awaitingSentAfter int // RSTs whose SenderSentAfter is still open
	// lastAny is the flow's last packet either way.
	lastAny time.Time
}

// tracker keeps one summary per TCP flow. It is fed packets in capture
// order by one goroutine, and hands each summary to sink once the flow has
// ended and lingered, or at close. Time is the packets' own: the tracker
// never reads the clock, so a live capture and a read-back of its pcap file
// produce the same summaries.
type tracker struct {
	flows map[flowKey]*flowState
	// ended are flows written out that their 4-tuple may still answer
	// (answerWindow).
	ended    map[flowKey]*flowState
	ports    map[uint16]bool // server ports of the topology, to orient midstream flows
	sink     func(session.Flow)
	linger   time.Duration
	maxFlows int

	lastSweep time.Time
	// Counters.
	packets   uint64
	resets    uint64
	flowsDone uint64
	untracked uint64 // packets of flows beyond maxFlows
}

func newTracker(ports []int, sink func(session.Flow)) *tracker {
	t := &tracker{
		flows:    map[flowKey]*flowState{},
		ended:    map[flowKey]*flowState{},
		ports:    map[uint16]bool{},
		sink:     sink,
		linger:   defaultLinger,
		maxFlows: defaultMaxFlows,
	}
	for _, p := range ports {
		t.ports[uint16(p)] = true
	}
	return t
}

// seqAfter reports a > b in sequence space.
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// add processes one packet.
func (t *tracker) add(p *packet) {
	t.packets++
	k := keyOf(p.src, p.dst)
	fs := t.flows[k]
	newSYN := p.has(flagSYN) && !p.has(flagACK)
	if fs != nil && newSYN && p.src == fs.client &&
		(fs.ended || (fs.synSeen && fs.rec.FromDialer.ISN != p.seq)) {
		// The 4-tuple is reused by a new connection.
		t.finish(k, fs)
		fs = nil
	}
	if fs == nil {
		if old := t.ended[k]; old != nil {
			delete(t.ended, k)
			if !newSYN && p.ts.Sub(old.rec.Last) <= answerWindow {
				// A late segment of a connection already written: it
				// belongs to it, and its summary is written again.
				fs = old
				t.flows[k] = fs
				t.flowsDone-- // written again when it ends again
			}
		}
	}
	if fs == nil {
		if len(t.flows) >= t.maxFlows {
			t.untracked++
			return
		}
		fs = t.newFlow(p)
		t.flows[k] = fs
	}
	t.update(fs, p)
	if p.ts.Sub(t.lastSweep) >= evictEvery {
		t.sweep(p.ts)
	}
}

// newFlow starts a flow at its first packet. The SYN's sender is the
// client; without a SYN the side on a topology port (or the lower port) is
// taken for the server.
func (t *tracker) newFlow(p *packet) *flowState {
	fs := &flowState{}
	switch {
	case p.has(flagSYN) && !p.has(flagACK):
		fs.client, fs.server = p.src, p.dst
	case p.has(flagSYN):
		fs.client, fs.server = p.dst, p.src
	default:
		fs.rec.Midstream = true
		srcServer := t.ports[p.src.Port()]
		dstServer := t.ports[p.dst.Port()]
		switch {
		case dstServer && !srcServer:
			fs.client, fs.server = p.src, p.dst
		case srcServer && !dstServer:
			fs.client, fs.server = p.dst, p.src
		case p.dst.Port() <= p.src.Port():
			fs.client, fs.server = p.src, p.dst
		default:
			fs.client, fs.server = p.dst, p.src
		}
	}
	fs.rec.Dialer = fs.client.String()
	fs.rec.Listener = fs.server.String()
	fs.rec.First = p.ts
	return fs
}

func (t *tracker) update(fs *flowState, p *packet) {
	fromClient := p.src == fs.client
	side, other := &fs.rec.FromDialer, &fs.rec.FromListener
	st, otherSt := &fs.fromClient, &fs.fromServer
	from := session.FromDialer
	if !fromClient {
		side, other = other, side
		st, otherSt = otherSt, st
		from = session.FromListener
	}
	fs.rec.Last = p.ts
	side.Packets++
	side.LastPacket = p.ts
	gap := time.Duration(0)
	if !fs.lastAny.IsZero() {
		gap = p.ts.Sub(fs.lastAny)
	}
	fs.lastAny = p.ts

	if p.has(flagRST) {
		t.resets++
		r := session.RSTPacket{
			Time: p.ts, From: from, Seq: p.seq, Ack: p.ack, HasAck: p.has(flagACK),
			TTL: p.ttl, IPID: p.ipID, Window: p.window,
			SeqKnown:       st.seqValid,
			InSequence:     st.seqValid && p.seq == side.NextSeq,
			SenderLastData: side.LastData, ReceiverLastData: other.LastData,
			SenderFINBefore:    !side.FIN.IsZero(),
			PeerRSTBefore:      otherSt.rst,
			ReceiverLastPacket: otherSt.lastPacket,
		}
		if !otherSt.lastPacket.IsZero() {
			r.QuietBefore = session.Seconds(otherSt.gapBefore)
		}
		if len(fs.rec.RSTs) < session.MaxFlowRSTs {
			fs.rec.RSTs = append(fs.rec.RSTs, r)
			fs.awaitingSentAfter++
		} else {
			fs.rec.RSTsOmitted++
		}
		st.rst = true
		fs.ended = true
		return
	}

	st.lastPacket, st.gapBefore = p.ts, gap
	// A non-RST packet: if this side "sent" an RST earlier, its socket was
	// alive after all.
	if fs.awaitingSentAfter > 0 {
		for i := range fs.rec.RSTs {
			r := &fs.rec.RSTs[i]
			if r.From == from && r.SenderSentAfter.IsZero() {
				r.SenderSentAfter = p.ts
				fs.awaitingSentAfter--
			}
		}
	}
	if !st.ttlValid || p.ttl < side.TTLMin {
		side.TTLMin = p.ttl
	}
	if !st.ttlValid || p.ttl > side.TTLMax {
		side.TTLMax = p.ttl
	}
	st.ttlValid = true

	if p.has(flagSYN) {
		fs.synSeen = true
		if fromClient && !p.has(flagACK) {
			if fs.rec.SYN.IsZero() {
				fs.rec.SYN = p.ts
			}
			side.ISN = p.seq
		} else if !fromClient && p.has(flagACK) {
			if fs.rec.SYNACK.IsZero() {
				fs.rec.SYNACK = p.ts
			}
			side.ISN = p.seq
		}
	}
	if p.payload > 0 {
		side.Bytes += int64(p.payload)
		side.LastData = p.ts
	}
	end := p.seq + uint32(p.payload)
	if p.has(flagSYN) {
		end++
	}
	if p.has(flagFIN) {
		end++
		if side.FIN.IsZero() {
			side.FIN = p.ts
			side.FINSeq = p.seq + uint32(p.payload)
		}
	}
	if !st.seqValid || seqAfter(end, side.NextSeq) {
		side.NextSeq = end
		st.seqValid = true
	}
	if p.has(flagACK) {
		side.LastAck = p.ack
	}
	if !fs.rec.FromDialer.FIN.IsZero() && !fs.rec.FromListener.FIN.IsZero() {
		fs.ended = true
	}
}

// sweep writes out flows that ended more than linger before now, keeping
// them answerable for answerWindow, and forgets those older than that.
func (t *tracker) sweep(now time.Time) {
	t.lastSweep = now
	var done []flowKey
	for k, fs := range t.flows {
		if fs.ended && now.Sub(fs.rec.Last) > t.linger {
			done = append(done, k)
		}
	}
	// Write in time order, so a session file reads chronologically.
	slices.SortFunc(done, func(x, y flowKey) int { return t.flows[x].rec.First.Compare(t.flows[y].rec.First) })
	for _, k := range done {
		fs := t.flows[k]
		t.finish(k, fs)
		if len(t.ended) < maxEnded {
			t.ended[k] = fs
		}
	}
	for k, fs := range t.ended {
		if now.Sub(fs.rec.Last) > answerWindow {
			delete(t.ended, k)
		}
	}
}

// finish writes a flow's summary and takes it out of the table. A flow
// revived by a late segment is written again with the same key: its later
// summary replaces the earlier one.
func (t *tracker) finish(k flowKey, fs *flowState) {
	delete(t.flows, k)
	t.flowsDone++
	if t.sink != nil {
		t.sink(fs.rec)
	}
}

// close writes out every flow still in the table, in time order.
func (t *tracker) close() {
	keys := make([]flowKey, 0, len(t.flows))
	for k := range t.flows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y flowKey) int { return t.flows[x].rec.First.Compare(t.flows[y].rec.First) })
	for _, k := range keys {
		t.finish(k, t.flows[k])
	}
}
