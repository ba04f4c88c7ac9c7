package capture

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// linkType is a libpcap LINKTYPE_ value. gopacket v1.1.19's LinkType is a
// uint8 and cannot hold LINKTYPE_LINUX_SLL2 (276, what tcpdump -i any
// writes since libpcap 1.10), so files are read with this type.
type linkType uint16

// The link types decode knows.
const (
	linkNull     linkType = 0   // BSD loopback: 4-byte address family in host order
	linkEthernet linkType = 1   // Ethernet, and Linux loopback
	linkRawDLT12 linkType = 12  // raw IP (DLT_RAW on some systems)
	linkRawDLT14 linkType = 14  // raw IP (DLT_RAW on others)
	linkRaw      linkType = 101 // raw IP
	linkLoop     linkType = 108 // OpenBSD loopback: 4-byte address family, big-endian
	linkSLL      linkType = 113 // Linux cooked capture v1 (tcpdump -i any, older libpcap)
	linkIPv4     linkType = 228
	linkIPv6     linkType = 229
	linkSLL2     linkType = 276 // Linux cooked capture v2 (tcpdump -i any)
)

// TCP flags as packet.flags holds them (the TCP header's own bits).
const (
	flagFIN = 1 << iota
	flagSYN
	flagRST
	flagPSH
	flagACK
)

// packet is what the capture keeps of one TCP packet: its timestamp
// (truncated to microseconds, what a pcap file keeps, so a live capture and
// a read-back of its file agree) and the header fields the flow summaries
// and the attribution need.
type packet struct {
	ts       time.Time
	src, dst netip.AddrPort
	seq, ack uint32
	flags    uint8
	payload  int // TCP payload length from the IP header, even when the capture was cut short
	// headerEnd is where the TCP payload starts in the frame decode was
	// given: the frame cut there keeps every header and no payload.
	headerEnd int
	ttl       uint8
	ipID      uint16
	window    uint16
}

func (p *packet) has(f uint8) bool { return p.flags&f != 0 }

// decoder turns link-layer frames into packets without allocating: one
// DecodingLayerParser per first layer over shared layer values.
type decoder struct {
	eth   layers.Ethernet
	sll   layers.LinuxSLL
	dot1q layers.Dot1Q
	ip4   layers.IPv4
	ip6   layers.IPv6
	tcp   layers.TCP

	ethParser, sllParser, ip4Parser, ip6Parser *gopacket.DecodingLayerParser
	decoded                                    []gopacket.LayerType

	// outgoing is set when the last frame was a cooked (SLL) frame of
	// packet type PACKET_OUTGOING.
	outgoing bool
}

func newDecoder() *decoder {
	d := &decoder{decoded: make([]gopacket.LayerType, 0, 8)}
	all := []gopacket.DecodingLayer{&d.eth, &d.sll, &d.dot1q, &d.ip4, &d.ip6, &d.tcp}
	mk := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first, all...)
		p.IgnoreUnsupported = true
		return p
	}
	d.ethParser = mk(layers.LayerTypeEthernet)
	d.sllParser = mk(layers.LayerTypeLinuxSLL)
	d.ip4Parser = mk(layers.LayerTypeIPv4)
	d.ip6Parser = mk(layers.LayerTypeIPv6)
	return d
}

// supportedLink reports whether decode knows the link type.
func supportedLink(link linkType) bool {
	switch link {
	case linkNull, linkEthernet, linkRawDLT12, linkRawDLT14, linkRaw, linkLoop,
		linkSLL, linkIPv4, linkIPv6, linkSLL2:
		return true
	}
	return false
}

// decode fills p from one frame of the given link type. It returns false
// for anything but a TCP segment over IPv4 or IPv6 (ARP, UDP, fragments,
// IPv6 extension headers, malformed frames).
func (d *decoder) decode(link linkType, data []byte, ts time.Time, p *packet) bool {
	frameLen := len(data)
	var parser *gopacket.DecodingLayerParser
	d.outgoing = false
	switch link {
	case linkEthernet:
		parser = d.ethParser
	case linkSLL:
		parser = d.sllParser
	case linkSLL2:
		// 20-byte header: protocol (2), reserved (2), ifindex (4), ARPHRD
		// type (2), packet type (1), address length (1), address (8).
		if len(data) < 20 {
			return false
		}
		proto := binary.BigEndian.Uint16(data[0:2])
		d.outgoing = data[10] == packetOutgoing
		data = data[20:]
		switch proto {
		case 0x0800:
			parser = d.ip4Parser
		case 0x86dd:
			parser = d.ip6Parser
		default:
			return false
		}
	case linkNull, linkLoop:
		// 4-byte address family, in the capturing host's byte order (Null)
		// or big-endian (Loop); AF_INET is 2 everywhere, AF_INET6 varies.
		if len(data) < 5 {
			return false
		}
		data = data[4:]
		parser = d.byVersion(data)
	case linkRaw, linkRawDLT12, linkRawDLT14, linkIPv4, linkIPv6:
		parser = d.byVersion(data)
	}
	if parser == nil {
		return false
	}
	d.decoded = d.decoded[:0]
	// Errors come from truncated or malformed layers; what decoded before
	// the error is still good, and the TCP layer is all that matters.
	_ = parser.DecodeLayers(data, &d.decoded)
	var haveTCP bool
	var netLayer gopacket.LayerType
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4, layers.LayerTypeIPv6:
			netLayer = t
		case layers.LayerTypeTCP:
			haveTCP = true
		}
	}
	if !haveTCP || netLayer == 0 {
		return false
	}
	if link == linkSLL {
		d.outgoing = d.sll.PacketType == layers.LinuxSLLPacketTypeOutgoing
	}
	tcp := &d.tcp
	hdr := int(tcp.DataOffset) * 4
	switch netLayer {
	case layers.LayerTypeIPv4:
		ip := &d.ip4
		src, ok1 := netip.AddrFromSlice(ip.SrcIP)
		dst, ok2 := netip.AddrFromSlice(ip.DstIP)
		if !ok1 || !ok2 {
			return false
		}
		p.src = netip.AddrPortFrom(src.Unmap(), uint16(tcp.SrcPort))
		p.dst = netip.AddrPortFrom(dst.Unmap(), uint16(tcp.DstPort))
		p.payload = int(ip.Length) - int(ip.IHL)*4 - hdr
		p.ttl = ip.TTL
		p.ipID = ip.Id
	case layers.LayerTypeIPv6:
		ip := &d.ip6
		src, ok1 := netip.AddrFromSlice(ip.SrcIP)
		dst, ok2 := netip.AddrFromSlice(ip.DstIP)
		if !ok1 || !ok2 {
			return false
		}
		p.src = netip.AddrPortFrom(src, uint16(tcp.SrcPort))
		p.dst = netip.AddrPortFrom(dst, uint16(tcp.DstPort))
		p.payload = int(ip.Length) - hdr
		p.ttl = ip.HopLimit
		p.ipID = 0
	}
	if p.payload < 0 {
		p.payload = 0
	}
	p.ts = ts.Truncate(time.Microsecond)
	p.headerEnd = frameLen - len(tcp.LayerPayload())
	p.seq, p.ack, p.window = tcp.Seq, tcp.Ack, tcp.Window
	p.flags = 0
	for _, f := range [...]struct {
		on  bool
		bit uint8
	}{{tcp.FIN, flagFIN}, {tcp.SYN, flagSYN}, {tcp.RST, flagRST}, {tcp.PSH, flagPSH}, {tcp.ACK, flagACK}} {
		if f.on {
			p.flags |= f.bit
		}
	}
	return true
}

// byVersion picks the parser of a raw IP packet from its version nibble.
func (d *decoder) byVersion(data []byte) *gopacket.DecodingLayerParser {
	if len(data) == 0 {
		return nil
	}
	switch data[0] >> 4 {
	case 4:
		return d.ip4Parser
	case 6:
		return d.ip6Parser
	}
	return nil
}
