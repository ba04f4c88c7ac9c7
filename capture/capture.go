// Package capture sees the TCP packets of a run and summarizes each
// connection for attribution.
//
// Packets enter in two ways: live, through an AF_PACKET socket
// (gopacket's pcapgo.EthernetHandle, no cgo) with a BPF filter on the
// topology's ports (Start, or StartEach for one capture per interface),
// or from a pcap or pcapng file written by this package or by tcpdump
// (ReadFile). Either way each TCP packet is decoded once and folded into a
// per-flow summary (session.Flow: handshake, FINs, RST packets with their
// sequence numbers, TTLs and what came before and after them, last data
// and bytes each way); live, the full packets also go to a pcap file and
// the summaries, with the capture's CaptureInfo, to the session file.
//
// Who sent each RST, on which hop and why is not decided here: package
// analysis/attribution joins these summaries with every other record of
// any number of session files and captures. When no capture was possible
// (no root or CAP_NET_RAW) Start says so in the session file, and
// attribution rests on the records alone, with lower confidence.
package capture

import (
	"errors"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// ErrNotPermitted is returned by Start when the process may not open a
// packet socket (it needs root or CAP_NET_RAW). A run then goes on without
// capture and attributes resets from socket evidence.
var ErrNotPermitted = errors.New("packet capture not permitted (needs root or CAP_NET_RAW)")

// ErrUnsupported is returned by Start on systems without AF_PACKET and for
// interfaces that are neither Ethernet nor loopback.
var ErrUnsupported = errors.New("packet capture not supported")

// DefaultSnaplen is the capture length with Config.Payload: whole packets,
// as loopback with segmentation offload carries up to 64 KiB per packet.
const DefaultSnaplen = 262144

// HeaderSnaplen is the capture length without Config.Payload: room for the
// longest Ethernet, IP (IPv4 with options, or IPv6) and TCP (with options)
// headers. Each packet is then cut where its TCP payload starts, so the
// file holds no byte of any stream (no request line, no header, no token)
// while attribution keeps all it reads: addresses, ports, flags, sequence
// numbers, TTLs and payload lengths (from the IP header).
const HeaderSnaplen = 14 + 60 + 60

// DefaultBufferSize is the capture socket's receive buffer: room for about
// a quarter of a second of 50,000 small packets per second while the
// reader is descheduled.
const DefaultBufferSize = 32 << 20

// Config configures a live capture. Zero values mean the defaults.
type Config struct {
	// Iface is the interface to capture on; "" picks the one traffic to
	// Target leaves through ("lo" for 127.0.0.0/8 and the host's own
	// addresses).
	Iface string
	// Target is where the run sends its traffic: "host:port", a host, or a
	// URL. Only used to pick Iface.
	Target string
	// Ports are the TCP ports of the topology (server, proxy listeners); a
	// packet is captured when either of its ports is one of them. Empty
	// captures every TCP packet.
	Ports []int
	// Out is the pcap file to write; "" writes none. An existing file is
	// never overwritten.
	Out string
	// Snaplen cuts each packet to this many bytes (default HeaderSnaplen,
	// DefaultSnaplen with Payload).
	Snaplen int
	// Payload keeps the TCP payload in the pcap file (up to Snaplen).
	// Without it every packet is cut at the end of its TCP header: payloads
	// hold credentials (Authorization headers, cookies, tokens in URLs).
	Payload bool
	// BufferSize is the socket's receive buffer (default DefaultBufferSize).
	BufferSize int
	// Session receives the flow summaries and, at Stop, the capture's
	// meta/"capture"; nil keeps them in memory only.
	Session *session.Writer

	// observe, when set (tests only), sees each decoded packet on the
	// reader goroutine.
	observe func(p packet)
}

// Stats are the counters of a capture.
type Stats struct {
	Iface   string    `json:"iface"`
	Started time.Time `json:"started"`
	Stopped time.Time `json:"stopped,omitzero"`
	// Packets counts TCP packets processed, each once.
	Packets uint64 `json:"packets"`
	// Written counts packets written to the pcap file.
	Written uint64 `json:"written"`
	// KernelPackets and KernelDrops are the kernel's counters of the
	// socket: packets that passed the filter, and of those the ones dropped
	// because the receive buffer was full.
	KernelPackets uint64 `json:"kernel_packets"`
	KernelDrops   uint64 `json:"kernel_drops"`
	Flows         uint64 `json:"flows"`  // flow summaries written
	Resets        uint64 `json:"resets"` // RST packets seen
	// Untracked counts packets of flows beyond the table's bound.
	Untracked uint64 `json:"untracked,omitempty"`
}

// PacketsPerSecond is Packets over the capture's duration so far.
func (s Stats) PacketsPerSecond() float64 {
	end := s.Stopped
	if end.IsZero() {
		end = time.Now()
	}
	d := end.Sub(s.Started).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(s.Packets) / d
}
