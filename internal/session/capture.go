package session

import (
	"strconv"
	"time"
)

// MetaCapture is the meta key of CaptureInfo.
const MetaCapture = "capture"

// CaptureInfo describes the packet capture of a run (meta/"capture"). A run
// that could not capture (no root, no CAP_NET_RAW) writes it with Disabled
// set, so a report knows its resets rest on socket evidence alone.
type CaptureInfo struct {
	Iface   string    `json:"iface,omitempty"`
	Ports   []int     `json:"ports,omitempty"`
	Out     string    `json:"out,omitempty"` // the pcap file
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
	Resets        int64  `json:"resets"` // RST packets seen
	// Disabled says why no capture ran; "" when it did.
	Disabled string `json:"disabled,omitempty"`
}

// Flow is the summary of one TCP connection seen by the capture (bucket
// flows). The capture keeps only these summaries in the session file; the
// packets themselves go to the pcap file.
type Flow struct {
	// Client is the address that sent the SYN, Server the one that answered.
	Client string `json:"client"`
	Server string `json:"server"`
	// Midstream is set when the capture began after the handshake: Client
	// and Server are then guessed from the topology's ports.
	Midstream bool      `json:"midstream,omitempty"`
	First     time.Time `json:"first"` // first packet captured
	Last      time.Time `json:"last"`  // last packet captured
	SYN       time.Time `json:"syn,omitzero"`
	SYNACK    time.Time `json:"syn_ack,omitzero"`
	// FromClient and FromServer are the two directions.
	FromClient FlowSide `json:"from_client"`
	FromServer FlowSide `json:"from_server"`
	// Resets are the RST packets of the flow in capture order (at most
	// MaxFlowResets; ResetsOmitted counts the rest).
	Resets        []RSTPacket `json:"resets,omitempty"`
	ResetsOmitted int         `json:"resets_omitted,omitempty"`
}

func (Flow) Bucket() string { return BucketFlows }

// Key is FlowKey: the first packet's time, then both addresses, so flows
// sort by time and a flow written twice (live, then from the pcap) keeps
// one entry.
func (f Flow) Key() []byte { return []byte(FlowKey(f.First, f.Client, f.Server)) }

// FlowKey is "<first packet, Unix microseconds, 17 digits> <client> <server>".
// Microseconds, because that is what a pcap file keeps.
func FlowKey(first time.Time, client, server string) string {
	b := make([]byte, 0, 17+2+len(client)+len(server))
	b = appendPadded(b, int(first.UnixMicro()), 17)
	b = append(b, ' ')
	b = append(b, client...)
	b = append(b, ' ')
	return string(append(b, server...))
}

// MaxFlowResets bounds Flow.Resets.
const MaxFlowResets = 16

// FlowSide is one direction of a flow: what its sender sent.
type FlowSide struct {
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

// Sides of a flow, as RSTPacket.From names them.
const (
	SideClient = "client"
	SideServer = "server"
)

// RSTPacket is one RST packet of a flow, with what the capture knew of the
// flow at that moment.
type RSTPacket struct {
	Time   time.Time `json:"time"`
	From   string    `json:"from"` // SideClient or SideServer
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
}

// Confidence of a Reset's attribution.
const (
	ConfidenceHigh   = "high"   // the RST packet was captured
	ConfidenceMedium = "medium" // a proxy's own socket saw it (HopConn How/ClosedBy)
	ConfidenceLow    = "low"    // only the client's error says so
)

// Reasons an endpoint sent an RST (Reset.Reason).
const (
	ReasonAbort      = "abort"       // the socket was closed with RST (SO_LINGER 0, unread data, a fault)
	ReasonAfterClose = "after-close" // the sender had closed with FIN and got data it could not deliver
	ReasonReply      = "reply"       // the sender's socket was already reset; its stack answered a late segment
	ReasonRefused    = "refused"     // the answer to a SYN: nothing listened (or a firewall rejected it)
)

// Hop names beyond HopClient and HopUpstream.
const (
	HopDirect = "direct" // a generated client talking straight to the server
)

// Reset is one attributed RST (bucket resets): who sent it, to whom, on
// which hop, and the client error it explains. Captured RSTs have
// Confidence high; without a capture, resets are inferred from the
// clients' errors and the proxies' hop records with lower confidence.
type Reset struct {
	ID   string    `json:"id"` // the key
	Time time.Time `json:"time"`
	Flow string    `json:"flow,omitempty"` // FlowKey of the captured flow
	// Hop is HopClient or HopUpstream (of Proxy), HopDirect, or the name of
	// a middlebox endpoint of the topology.
	Hop    string `json:"hop"`
	Proxy  string `json:"proxy,omitempty"`
	ConnID string `json:"conn_id,omitempty"` // the proxy's conn id, shared by both hops
	// Sender is the RST's source address; SenderRole who sent it: client,
	// proxy, server, or middlebox when the RST was forged in the name of
	// the endpoint at Sender; unknown when the address is not in the
	// topology.
	Sender       string `json:"sender"`
	SenderRole   string `json:"sender_role"`
	SenderName   string `json:"sender_name,omitempty"` // proxy or middlebox name
	Receiver     string `json:"receiver"`
	ReceiverRole string `json:"receiver_role"`
	// Age is the connection's age at the RST; Idle the time since the last
	// data packet either way (-1 when unknown: socket evidence only).
	Age    time.Duration `json:"age_ns"`
	Idle   time.Duration `json:"idle_ns"`
	Reason string        `json:"reason,omitempty"` // ReasonAbort, ReasonAfterClose, ReasonReply, ReasonRefused
	// Injected: a fault of the proxy fired on this connection just before.
	Injected  bool   `json:"injected,omitempty"`
	Fault     string `json:"fault,omitempty"`
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
	ConnID     string    `json:"conn_id"`
	Attempt    int       `json:"attempt"`
	Class      string    `json:"class"`
	LocalAddr  string    `json:"local_addr,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
}
