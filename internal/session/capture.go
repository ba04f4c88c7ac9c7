package session

import (
	"strconv"
	"time"
)

// CaptureInfo describes one packet capture (bucket captures, key its ID). A
// session file may hold several: one per interface of a run, and pcaps from
// other hosts stored with capture analyze --store. A producer that could
// not capture (no root, no CAP_NET_RAW) writes it with Disabled set, so a
// report knows its resets rest on socket evidence alone.
type CaptureInfo struct {
	// ID names the capture within the file: "<host>/<iface>" for a live
	// capture, "file:<base name of the pcap>" for an imported one.
	ID      string    `json:"id"`
	Host    string    `json:"host,omitempty"` // the host it ran on
	Iface   string    `json:"iface,omitempty"`
	Ports   []int     `json:"ports,omitempty"`
	Pcap    string    `json:"pcap,omitempty"` // the pcap file written or read
	Started time.Time `json:"started,omitzero"`
	Stopped time.Time `json:"stopped,omitzero"`
	// Packets counts the TCP packets processed (each once: the outgoing
	// copies of loopback are dropped in the kernel's filter).
	Packets uint64 `json:"packets"`
	// KernelPackets and KernelDrops are the kernel's own counters for the
	// capture socket (PACKET_STATISTICS): packets that passed the filter,
	// and those of them dropped because the socket's buffer was full.
	KernelPackets uint64 `json:"kernel_packets"`
	KernelDrops   uint64 `json:"kernel_drops"`
	Flows         int64  `json:"flows"`
	RSTSegments   int64  `json:"rst_segments"` // RST packets seen
	// Disabled says why no capture ran; "" when it did.
	Disabled string `json:"disabled,omitempty"`
}

func (CaptureInfo) Bucket() string { return BucketCaptures }

// Key is the ID.
func (c CaptureInfo) Key() []byte { return []byte(c.ID) }

// Flow is the summary of one TCP connection seen by one capture (bucket
// flows). The capture keeps only these summaries in the session file; the
// packets themselves go to the pcap file. The same connection seen by two
// captures (two links, two hosts) is two Flows with the same sequence
// numbers; attribution joins them.
type Flow struct {
	Capture string `json:"capture"` // CaptureInfo.ID
	// Dialer is the address that sent the SYN, Listener the one that
	// answered it.
	Dialer   string `json:"dialer"`
	Listener string `json:"listener"`
	// Midstream is set when the capture began after the handshake: Dialer
	// and Listener are then guessed from the topology's ports.
	Midstream bool      `json:"midstream,omitempty"`
	First     time.Time `json:"first"` // first packet captured
	Last      time.Time `json:"last"`  // last packet captured
	SYN       time.Time `json:"syn,omitzero"`
	SYNACK    time.Time `json:"syn_ack,omitzero"`
	// FromDialer and FromListener are the two directions.
	FromDialer   FlowDirection `json:"from_dialer"`
	FromListener FlowDirection `json:"from_listener"`
	// RSTs are the RST packets of the flow in capture order (at most
	// MaxFlowRSTs; RSTsOmitted counts the rest).
	RSTs        []RSTPacket `json:"rsts,omitempty"`
	RSTsOmitted int         `json:"rsts_omitted,omitempty"`
}

func (Flow) Bucket() string { return BucketFlows }

// Key is FlowKey: the first packet's time, both addresses and the capture,
// so flows sort by time, a flow written twice (live, then from the pcap)
// keeps one entry, and two captures of one flow keep one each.
func (f Flow) Key() []byte { return []byte(FlowKey(f.First, f.Dialer, f.Listener, f.Capture)) }

// FlowKey is "<first packet, Unix microseconds, 17 digits> <dialer>
// <listener> <capture>". Microseconds, because that is what a pcap file
// keeps.
func FlowKey(first time.Time, dialer, listener, capture string) string {
	b := make([]byte, 0, 17+3+len(dialer)+len(listener)+len(capture))
	b = appendPadded(b, int(first.UnixMicro()), 17)
	b = append(b, ' ')
	b = append(b, dialer...)
	b = append(b, ' ')
	b = append(b, listener...)
	b = append(b, ' ')
	return string(append(b, capture...))
}

// MaxFlowRSTs bounds Flow.RSTs.
const MaxFlowRSTs = 16

// FlowDirection is one direction of a flow: what its sender sent.
type FlowDirection struct {
	Packets int64 `json:"packets"`
	Bytes   int64 `json:"bytes"` // TCP payload bytes
	// ISN is the initial sequence number (when the SYN was captured).
	ISN uint32 `json:"isn,omitempty"`
	// NextSeq is the sequence number after the last byte (or SYN/FIN) sent;
	// LastAck the last acknowledgement number sent.
	NextSeq    uint32    `json:"next_seq"`
	LastAck    uint32    `json:"last_ack"`
	LastData   time.Time `json:"last_data,omitzero"` // last packet with payload
	LastPacket time.Time `json:"last_packet,omitzero"`
	FIN        time.Time `json:"fin,omitzero"`
	FINSeq     uint32    `json:"fin_seq,omitempty"`
	// TTLMin and TTLMax span the TTL (IPv6: hop limit) of the side's
	// packets other than RSTs: an RST outside it came from elsewhere.
	TTLMin uint8 `json:"ttl_min,omitempty"`
	TTLMax uint8 `json:"ttl_max,omitempty"`
}

// Ends of a flow, as RSTPacket.From names them.
const (
	FromDialer   = "dialer"
	FromListener = "listener"
)

// RSTPacket is one RST packet of a flow, with what the capture knew of the
// flow at that moment.
type RSTPacket struct {
	Time   time.Time `json:"time"`
	From   string    `json:"from"` // FromDialer or FromListener
	Seq    uint32    `json:"seq"`
	Ack    uint32    `json:"ack,omitempty"`
	HasAck bool      `json:"has_ack,omitempty"`
	TTL    uint8     `json:"ttl"`
	IPID   uint16    `json:"ip_id,omitempty"`
	Window uint16    `json:"window,omitempty"`
	// SeqKnown says the sender's next sequence number was known (its
	// packets were captured); InSequence that the RST carried exactly it,
	// which is what a receiving stack requires to accept an RST (RFC 5961).
	SeqKnown   bool `json:"seq_known,omitempty"`
	InSequence bool `json:"in_sequence,omitempty"`
	// SenderLastData and ReceiverLastData are the last data packets of
	// each side before this RST.
	SenderLastData   time.Time `json:"sender_last_data,omitzero"`
	ReceiverLastData time.Time `json:"receiver_last_data,omitzero"`
	// SenderFINBefore: the sender had sent a FIN. PeerRSTBefore: the
	// receiver had sent an RST (this one answers a segment that arrived
	// after the sender's socket was reset).
	SenderFINBefore bool `json:"sender_fin_before,omitempty"`
	PeerRSTBefore   bool `json:"peer_rst_before,omitempty"`
	// SenderSentAfter is the first non-RST packet the same sender sent
	// after this RST: a socket that reset sends nothing more, so this is
	// the mark of an RST forged in its name.
	SenderSentAfter time.Time `json:"sender_sent_after,omitzero"`
	// ReceiverLastPacket is the receiver's last packet other than a RST
	// before this one, and QuietBefore the silence of the flow (no packet
	// either way) that ended with that packet. A RST that follows at once
	// a segment sent after a long silence, from a sender that had sent
	// neither FIN nor RST, is the answer of a stack (or a middlebox) that
	// no longer knew the connection.
	ReceiverLastPacket time.Time `json:"receiver_last_packet,omitzero"`
	QuietBefore        Seconds   `json:"quiet_before_s,omitempty"`
}

// Confidence of a Reset's attribution.
const (
	ConfidenceHigh   = "high"   // the RST packet was captured
	ConfidenceMedium = "medium" // a proxy's own socket saw it (HopConn How/ClosedBy)
	ConfidenceLow    = "low"    // only the client's error says so
)

// Reasons an endpoint sent a RST, as the packets show it (Reset.Reason).
const (
	ReasonAbort      = "abort"       // the socket was closed with RST (SO_LINGER 0, unread data, a fault)
	ReasonAfterClose = "after-close" // the sender had closed with FIN and got data it could not deliver
	ReasonReply      = "reply"       // the sender's socket was already reset; its stack answered a late segment
	ReasonRefused    = "refused"     // the answer to a SYN: nothing listened (or a firewall rejected it)
)

// LinkDirect is the link of a client talking straight to the server, with
// no ssestress proxy between them.
const LinkDirect = "direct"

// Reset is one attributed RST (bucket resets): who sent it, to whom, on
// which hop, and the client error it explains. The bucket is a cache of the
// producer's end-of-run attribution (for inspect and quick looks): a report
// recomputes attribution from the raw records (flows, hop connections,
// fault firings, errors) and never reads it as evidence.
type Reset struct {
	ID   string    `json:"id"` // the key
	Time time.Time `json:"time"`
	Flow string    `json:"flow,omitempty"` // FlowKey of the captured flow
	// Proxy and Hop place it on an ssestress proxy's hop; Link names the
	// stretch of path otherwise ("client → server", a middlebox's).
	Proxy  string `json:"proxy,omitempty"`
	Hop    string `json:"hop,omitempty"`
	Link   string `json:"link,omitempty"`
	ConnID string `json:"conn_id,omitempty"` // the proxy's conn id, shared by both hops
	// SenderAddr is the RST's source address; SenderRole who sent it:
	// client, proxy, server, or middlebox when the RST was forged in the
	// name of the endpoint at SenderAddr; unknown when the address is not
	// in the topology.
	SenderAddr   string `json:"sender_addr"`
	SenderRole   string `json:"sender_role"`
	SenderName   string `json:"sender_name,omitempty"` // proxy or middlebox name
	ReceiverAddr string `json:"receiver_addr"`
	ReceiverRole string `json:"receiver_role"`
	// Age is the connection's age at the RST; Idle the time since the last
	// data packet either way (-1 ns when unknown: socket evidence only).
	Age    Seconds `json:"age_s"`
	Idle   Seconds `json:"idle_s"`
	Reason string  `json:"reason,omitempty"` // ReasonAbort, ReasonAfterClose, ReasonReply, ReasonRefused
	// Injected: a fault of the proxy fired on this connection just before.
	Injected  bool   `json:"injected,omitempty"`
	FaultName string `json:"fault_name,omitempty"`
	FaultKind string `json:"fault_kind,omitempty"`
	// Forged: no endpoint of the topology sent it; Evidence says why.
	Forged     bool     `json:"forged,omitempty"`
	Evidence   []string `json:"evidence,omitempty"`
	Confidence string   `json:"confidence"`
	// Error is the client error this RST explains, directly or through a
	// proxy. Every RST of one chain carries the same Error and Chain; Root
	// marks the first, so errors are counted by origin over Root records.
	Error    *ErrorRef `json:"error,omitempty"`
	Root     bool      `json:"root,omitempty"`
	CausedBy string    `json:"caused_by,omitempty"` // ID of the RST this one followed from
	Chain    string    `json:"chain,omitempty"`
}

func (Reset) Bucket() string { return BucketResets }

// Key is the ID: "<time, Unix microseconds, 17 digits> <sender>><receiver>",
// so a second analysis of the same traffic replaces the first.
func (r Reset) Key() []byte { return []byte(r.ID) }

// ResetID builds a Reset's ID; n tells apart RSTs of one direction in the
// same microsecond.
func ResetID(t time.Time, sender, receiver string, n int) string {
	b := make([]byte, 0, 17+3+len(sender)+len(receiver)+4)
	b = appendPadded(b, int(t.UnixMicro()), 17)
	b = append(b, ' ')
	b = append(b, sender...)
	b = append(b, '>')
	b = append(b, receiver...)
	if n > 0 {
		b = append(b, '#')
		b = strconv.AppendInt(b, int64(n), 10)
	}
	return string(b)
}

// ErrorRef names the client error a Reset explains.
type ErrorRef struct {
	Time       time.Time `json:"time"`
	ClientID   string    `json:"client_id"`
	Attempt    int       `json:"attempt"`
	Class      string    `json:"class"`
	LocalAddr  string    `json:"local_addr,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
}
