package capture

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// seg describes one TCP segment for the tests' frame builder.
type seg struct {
	at       time.Duration // after t0
	src, dst string
	flags    string // letters: S, A, F, R, P
	seq, ack uint32
	payload  int
	ttl      uint8 // default 64
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// ipTCP serializes the IP and TCP layers of s (IPv4 or IPv6 by address).
func ipTCP(t testing.TB, s seg) (gopacket.SerializableLayer, []byte) {
	t.Helper()
	src, dst := netip.MustParseAddrPort(s.src), netip.MustParseAddrPort(s.dst)
	ttl := s.ttl
	if ttl == 0 {
		ttl = 64
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: s.seq, Ack: s.ack,
		SYN: strings.Contains(s.flags, "S"), ACK: strings.Contains(s.flags, "A"), FIN: strings.Contains(s.flags, "F"),
		RST: strings.Contains(s.flags, "R"), PSH: strings.Contains(s.flags, "P"), Window: 512}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if src.Addr().Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice(), Id: 7}
		ip, ipl = v4, v4
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ip, ipl = v6, v6
	}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ipl, tcp, gopacket.Payload(bytes.Repeat([]byte("x"), s.payload)))
	if err != nil {
		t.Fatal(err)
	}
	return ipl, buf.Bytes()
}

// frame builds one frame of the given link type.
func frame(t testing.TB, link linkType, s seg) []byte {
	t.Helper()
	_, ip := ipTCP(t, s)
	v6 := ip[0]>>4 == 6
	etherType := uint16(0x0800)
	if v6 {
		etherType = 0x86dd
	}
	switch link {
	case linkEthernet:
		h := make([]byte, 14)
		binary.BigEndian.PutUint16(h[12:], etherType)
		return append(h, ip...)
	case linkSLL:
		h := make([]byte, 16)
		binary.BigEndian.PutUint16(h[0:], 0) // to us
		binary.BigEndian.PutUint16(h[2:], 772)
		binary.BigEndian.PutUint16(h[14:], etherType)
		return append(h, ip...)
	case linkSLL2:
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], etherType)
		binary.BigEndian.PutUint32(h[4:], 1)
		binary.BigEndian.PutUint16(h[8:], 772)
		return append(h, ip...)
	case linkNull:
		h := make([]byte, 4)
		binary.LittleEndian.PutUint32(h, 2)
		if v6 {
			binary.LittleEndian.PutUint32(h, 30)
		}
		return append(h, ip...)
	case linkRaw:
		return ip
	}
	t.Fatalf("no builder for link type %d", link)
	return nil
}

// pcapFile writes segs as a pcap file of the given link type; snaplen cuts
// packets (0 keeps them whole).
func pcapFile(t testing.TB, link linkType, snaplen int, segs ...seg) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	sl := uint32(65535)
	if snaplen > 0 {
		sl = uint32(snaplen)
	}
	if err := w.WriteFileHeader(sl, layers.LinkType(link&0xff)); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	binary.LittleEndian.PutUint32(out[20:24], uint32(link)) // pcapgo's LinkType is 8 bits
	buf.Reset()
	buf.Write(out)
	for _, s := range segs {
		data := frame(t, link, s)
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(s.at), CaptureLength: len(data), Length: len(data)}
		if snaplen > 0 && len(data) > snaplen {
			data = data[:snaplen]
			ci.CaptureLength = snaplen
		}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// A server abort seen from the wire: handshake, request, one event, 60 s
// of silence, then the server's RST.
func serverAbortSegs(client, server string) []seg {
	return []seg{
		{at: 0, src: client, dst: server, flags: "S", seq: 1000},
		{at: 100 * time.Microsecond, src: server, dst: client, flags: "SA", seq: 5000, ack: 1001},
		{at: 200 * time.Microsecond, src: client, dst: server, flags: "A", seq: 1001, ack: 5001},
		{at: time.Millisecond, src: client, dst: server, flags: "PA", seq: 1001, ack: 5001, payload: 80},
		{at: 2 * time.Millisecond, src: server, dst: client, flags: "PA", seq: 5001, ack: 1081, payload: 200},
		{at: 3 * time.Millisecond, src: client, dst: server, flags: "A", seq: 1081, ack: 5201},
		{at: 60*time.Second + 2*time.Millisecond, src: server, dst: client, flags: "RA", seq: 5201, ack: 1081},
	}
}

func jsonString(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
