package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/net/bpf"

	"github.com/ssestress/ssestress/internal/session"
)

func TestFilter(t *testing.T) {
	prog, err := buildFilter([]int{8080, 3000}, false, 1500)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	udp := func() []byte {
		b := frame(t, linkEthernet, seg{src: "127.0.0.1:5000", dst: "127.0.0.1:8080", flags: "A"})
		b[14+9] = 17 // protocol UDP
		return b
	}
	fragment := func() []byte {
		b := frame(t, linkEthernet, seg{src: "127.0.0.1:5000", dst: "127.0.0.1:8080", flags: "A"})
		binary.BigEndian.PutUint16(b[14+6:], 10) // fragment offset 80
		return b
	}
	withOptions := func() []byte {
		// IPv4 header of 24 bytes (one 4-byte option): the ports move.
		b := frame(t, linkEthernet, seg{src: "127.0.0.1:5000", dst: "127.0.0.1:3000", flags: "A"})
		ip := append([]byte(nil), b[14:34]...)
		ip[0] = 0x46
		out := append(append(append([]byte(nil), b[:14]...), ip...), 1, 1, 1, 0)
		return append(out, b[34:]...)
	}
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	cases := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"to a port", frame(t, linkEthernet, seg{src: "127.0.0.1:50000", dst: "127.0.0.1:8080", flags: "S"}), true},
		{"from a port", frame(t, linkEthernet, seg{src: "127.0.0.1:3000", dst: "127.0.0.1:50000", flags: "RA"}), true},
		{"other ports", frame(t, linkEthernet, seg{src: "127.0.0.1:50000", dst: "127.0.0.1:9090", flags: "S"}), false},
		{"IPv6 to a port", frame(t, linkEthernet, seg{src: "[::1]:50000", dst: "[::1]:8080", flags: "S"}), true},
		{"IPv6 other ports", frame(t, linkEthernet, seg{src: "[::1]:50000", dst: "[::1]:8081", flags: "S"}), false},
		{"UDP", udp(), false},
		{"non-first fragment", fragment(), false},
		{"IPv4 options", withOptions(), true},
		{"ARP", arp, false},
	}
	for _, c := range cases {
		n, err := vm.Run(c.pkt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (n > 0) != c.want {
			t.Errorf("%s: accepted %d bytes, want accepted=%v", c.name, n, c.want)
		}
		if c.want && n != 1500 {
			t.Errorf("%s: cut to %d bytes, want the snaplen 1500", c.name, n)
		}
	}

	all, err := buildFilter(nil, false, 100)
	if err != nil {
		t.Fatal(err)
	}
	vm, _ = bpf.NewVM(all)
	if n, _ := vm.Run(frame(t, linkEthernet, seg{src: "127.0.0.1:1", dst: "127.0.0.1:2", flags: "A"})); n != 100 {
		t.Errorf("no ports: TCP not accepted (%d)", n)
	}
	if _, err := buildFilter(make([]int, maxFilterPorts+1), false, 100); err == nil {
		t.Error("too many ports accepted")
	}
	if _, err := buildFilter([]int{70000}, false, 100); err == nil {
		t.Error("port 70000 accepted")
	}
	// The loopback variant starts with the packet type test the VM cannot
	// run; it must still assemble.
	lo, err := buildFilter([]int{8080}, true, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bpf.Assemble(lo); err != nil {
		t.Fatal(err)
	}
	if ext, ok := lo[0].(bpf.LoadExtension); !ok || ext.Num != bpf.ExtType {
		t.Errorf("loopback filter starts with %v, want the packet type load", lo[0])
	}
}

func TestDecodeLinkTypes(t *testing.T) {
	s := seg{src: "10.0.0.1:40000", dst: "10.0.0.2:443", flags: "PA", seq: 77, ack: 99, payload: 300, ttl: 57}
	s6 := seg{src: "[2001:db8::1]:40000", dst: "[2001:db8::2]:443", flags: "RA", seq: 5, payload: 0, ttl: 12}
	d := newDecoder()
	for _, link := range []linkType{linkEthernet, linkSLL, linkSLL2, linkNull, linkRaw} {
		for _, sg := range []seg{s, s6} {
			var p packet
			if !d.decode(link, frame(t, link, sg), t0, &p) {
				t.Fatalf("link %d: %s not decoded", link, sg.src)
			}
			if p.src.String() != sg.src || p.dst.String() != sg.dst || p.seq != sg.seq || p.payload != sg.payload || p.ttl != sg.ttl {
				t.Errorf("link %d: decoded %+v from %+v", link, p, sg)
			}
			if sg.flags == "RA" && (!p.has(flagRST) || !p.has(flagACK) || p.has(flagSYN)) {
				t.Errorf("link %d: flags %b", link, p.flags)
			}
		}
	}
	// Cut short by the snaplen: the payload length comes from the IP header.
	full := frame(t, linkEthernet, s)
	var p packet
	if !d.decode(linkEthernet, full[:80], t0, &p) || p.payload != 300 {
		t.Errorf("truncated frame: decoded=%v payload %d, want 300", p.payload == 300, p.payload)
	}
	if d.decode(linkEthernet, full[:30], t0, &p) {
		t.Error("a frame cut inside the IP header decoded")
	}
	if d.decode(linkType(999), full, t0, &p) {
		t.Error("unknown link type decoded")
	}
	// Timestamps are kept to the microsecond, as a pcap file keeps them.
	if !d.decode(linkEthernet, full, t0.Add(1234567*time.Nanosecond), &p) || !p.ts.Equal(t0.Add(1234*time.Microsecond)) {
		t.Errorf("timestamp %v", p.ts)
	}
}

// track feeds segments to a tracker and returns the flows.
func track(t *testing.T, ports []int, segs ...seg) []session.Flow {
	t.Helper()
	var flows []session.Flow
	tr := newTracker(ports, func(f session.Flow) { flows = append(flows, f) })
	d := newDecoder()
	for _, s := range segs {
		var p packet
		if !d.decode(linkEthernet, frame(t, linkEthernet, s), t0.Add(s.at), &p) {
			t.Fatalf("segment %+v not decoded", s)
		}
		tr.add(&p)
	}
	tr.close()
	return flows
}

func TestTrackerFlowSummary(t *testing.T) {
	flows := track(t, nil, serverAbortSegs("127.0.0.1:50000", "127.0.0.1:8080")...)
	if len(flows) != 1 {
		t.Fatalf("%d flows", len(flows))
	}
	f := flows[0]
	if f.Dialer != "127.0.0.1:50000" || f.Listener != "127.0.0.1:8080" || f.Midstream {
		t.Errorf("orientation %s → %s midstream=%v", f.Dialer, f.Listener, f.Midstream)
	}
	if !f.SYN.Equal(t0) || !f.SYNACK.Equal(t0.Add(100*time.Microsecond)) {
		t.Errorf("SYN %v SYN-ACK %v", f.SYN, f.SYNACK)
	}
	if f.FromDialer.Bytes != 80 || f.FromListener.Bytes != 200 || f.FromDialer.ISN != 1000 || f.FromListener.ISN != 5000 {
		t.Errorf("bytes/ISN: %+v / %+v", f.FromDialer, f.FromListener)
	}
	if f.FromListener.NextSeq != 5201 || !f.FromListener.LastData.Equal(t0.Add(2*time.Millisecond)) {
		t.Errorf("server side %+v", f.FromListener)
	}
	if len(f.RSTs) != 1 {
		t.Fatalf("%d resets", len(f.RSTs))
	}
	r := f.RSTs[0]
	if r.From != session.FromListener || !r.SeqKnown || !r.InSequence || r.PeerRSTBefore || r.SenderFINBefore || !r.SenderSentAfter.IsZero() {
		t.Errorf("reset %+v", r)
	}
	if !r.SenderLastData.Equal(t0.Add(2 * time.Millisecond)) {
		t.Errorf("sender last data %v", r.SenderLastData)
	}
}

func TestTrackerReuseAndMidstream(t *testing.T) {
	c, s := "127.0.0.1:50000", "127.0.0.1:8080"
	segs := serverAbortSegs(c, s)
	// The same 4-tuple opens again after the reset: a second flow.
	for _, sg := range serverAbortSegs(c, s)[:3] {
		sg.at += 61 * time.Second
		sg.seq += 100000
		sg.ack += 100000
		segs = append(segs, sg)
	}
	flows := track(t, nil, segs...)
	if len(flows) != 2 || len(flows[0].RSTs) != 1 || len(flows[1].RSTs) != 0 || !flows[1].SYN.Equal(t0.Add(61*time.Second)) {
		t.Fatalf("want two flows, the first with the reset: %+v", flows)
	}

	// A capture that starts mid-stream orients the flow by the topology's
	// port, whichever side speaks first.
	mid := track(t, []int{8080}, seg{src: s, dst: c, flags: "PA", seq: 9, ack: 9, payload: 10})
	if mid[0].Dialer != c || mid[0].Listener != s || !mid[0].Midstream {
		t.Errorf("midstream flow %s → %s (midstream %v), want %s → %s", mid[0].Dialer, mid[0].Listener, mid[0].Midstream, c, s)
	}
	// Without ports, the lower port is taken for the server.
	mid = track(t, nil, seg{src: s, dst: c, flags: "A", seq: 9, ack: 9})
	if mid[0].Listener != s {
		t.Errorf("midstream without ports: server %s, want %s", mid[0].Listener, s)
	}
}

func TestTrackerSweepsEndedFlows(t *testing.T) {
	var flows []session.Flow
	tr := newTracker(nil, func(f session.Flow) { flows = append(flows, f) })
	d := newDecoder()
	feed := func(s seg) {
		var p packet
		d.decode(linkEthernet, frame(t, linkEthernet, s), t0.Add(s.at), &p)
		tr.add(&p)
	}
	for _, s := range serverAbortSegs("127.0.0.1:50000", "127.0.0.1:8080") {
		feed(s)
	}
	// An unrelated packet defaultLinger later sweeps the ended flow out.
	feed(seg{at: 60*time.Second + defaultLinger + 2*time.Second, src: "127.0.0.1:50001", dst: "127.0.0.1:8080", flags: "S"})
	if len(flows) != 1 || len(tr.flows) != 1 {
		t.Fatalf("after the linger: %d written, %d in the table; want 1 and 1", len(flows), len(tr.flows))
	}
}

// TestTrackerLateRSTJoinsEndedFlow: a flow that ended and was written is
// still known by its 4-tuple for answerWindow: a RST that answers a late
// segment of the same 4-tuple (after the linger) rewrites its summary with
// the same key instead of opening a midstream "abort" flow of its own.
func TestTrackerLateRSTJoinsEndedFlow(t *testing.T) {
	c, s := "127.0.0.1:50000", "127.0.0.1:8080"
	segs := []seg{
		{at: 0, src: c, dst: s, flags: "S", seq: 1000},
		{at: 100 * time.Microsecond, src: s, dst: c, flags: "SA", seq: 5000, ack: 1001},
		{at: 200 * time.Microsecond, src: c, dst: s, flags: "A", seq: 1001, ack: 5001},
		{at: time.Millisecond, src: s, dst: c, flags: "PA", seq: 5001, ack: 1001, payload: 100},
		{at: 2 * time.Millisecond, src: s, dst: c, flags: "FA", seq: 5101, ack: 1001},
		{at: 3 * time.Millisecond, src: c, dst: s, flags: "FA", seq: 1001, ack: 5102},
		// Long after the linger, an unrelated packet sweeps the flow out;
		// then the client's stack answers a late segment with a RST.
		{at: 30 * time.Second, src: "127.0.0.1:50001", dst: s, flags: "S", seq: 7},
		{at: 40 * time.Second, src: s, dst: c, flags: "A", seq: 5102, ack: 1002},
		{at: 40*time.Second + 50*time.Microsecond, src: c, dst: s, flags: "R", seq: 1002},
	}
	var flows []session.Flow
	tr := newTracker(nil, func(f session.Flow) { flows = append(flows, f) })
	d := newDecoder()
	for _, sg := range segs {
		var p packet
		d.decode(linkEthernet, frame(t, linkEthernet, sg), t0.Add(sg.at), &p)
		tr.add(&p)
	}
	tr.close()
	byKey := map[string]session.Flow{}
	for _, f := range flows {
		byKey[string(f.Key())] = f // a later write replaces an earlier one, as in the session file
	}
	var ours []session.Flow
	for _, f := range byKey {
		if f.Dialer == c {
			ours = append(ours, f)
		}
	}
	if len(ours) != 1 || ours[0].Midstream || len(ours[0].RSTs) != 1 || ours[0].RSTs[0].From != session.FromDialer || !ours[0].RSTs[0].SenderFINBefore {
		t.Fatalf("want the late RST in the ended flow, after the dialer's FIN: %+v", ours)
	}
	if tr.flowsDone != 2 {
		t.Errorf("flows done %d, want 2 (a revived flow counts once)", tr.flowsDone)
	}
	// Past the answer window, the same 4-tuple without SYN is a new,
	// midstream flow.
	late := append(segs[:7:7], seg{at: 3 * time.Minute, src: c, dst: s, flags: "R", seq: 1002})
	flows = track(t, nil, late...)
	if n := len(flows); n != 3 || !flows[2].Midstream {
		t.Errorf("after the answer window: %d flows, last %+v", n, flows[n-1])
	}
}

// TestTrackerQuietBeforeAnswer: a RST that follows the receiver's first
// segment after a silence carries that segment's time and the silence, the
// marks of a peer that no longer knew the connection.
func TestTrackerQuietBeforeAnswer(t *testing.T) {
	c, s := "127.0.0.1:50000", "127.0.0.1:8080"
	segs := serverAbortSegs(c, s)[:6]
	segs = append(segs,
		seg{at: 15 * time.Second, src: c, dst: s, flags: "A", seq: 1080, ack: 5201}, // a keepalive probe after 15 s
		seg{at: 15*time.Second + 80*time.Microsecond, src: s, dst: c, flags: "R", seq: 5201},
	)
	flows := track(t, nil, segs...)
	if len(flows) != 1 || len(flows[0].RSTs) != 1 {
		t.Fatalf("flows %+v", flows)
	}
	r := flows[0].RSTs[0]
	if !r.ReceiverLastPacket.Equal(t0.Add(15*time.Second)) || r.QuietBefore.D() != 15*time.Second-3*time.Millisecond || r.HasAck {
		t.Errorf("reset %+v: want the probe at 15 s after 14.997 s of quiet, no ACK", r)
	}
}

func TestReadFileFormats(t *testing.T) {
	segs := serverAbortSegs("127.0.0.1:50000", "127.0.0.1:8080")
	want := track(t, nil, segs...)
	dir := t.TempDir()
	check := func(name string, data []byte) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fr, err := ReadFile(path, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fr.Packets != uint64(len(segs)) || fr.Resets != 1 || len(fr.Flows) != 1 {
			t.Fatalf("%s: %d packets, %d resets, %d flows", name, fr.Packets, fr.Resets, len(fr.Flows))
		}
		w := want[0]
		w.Capture = FileCaptureID(path)
		if a, b := jsonString(t, fr.Flows[0]), jsonString(t, w); a != b {
			t.Errorf("%s: flow differs\n got  %s\n want %s", name, a, b)
		}
	}
	check("eth.pcap", pcapFile(t, linkEthernet, 0, segs...))
	check("eth-cut.pcap", pcapFile(t, linkEthernet, 60, segs...))
	check("sll.pcap", pcapFile(t, linkSLL, 0, segs...))
	check("sll2.pcap", pcapFile(t, linkSLL2, 0, segs...))
	check("null.pcap", pcapFile(t, linkNull, 0, segs...))
	check("raw.pcap", pcapFile(t, linkRaw, 0, segs...))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pcapFile(t, linkEthernet, 0, segs...))
	zw.Close()
	check("eth.pcap.gz", gz.Bytes())

	var ng bytes.Buffer
	nw, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		data := frame(t, linkEthernet, s)
		nw.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(s.at), CaptureLength: len(data), Length: len(data)}, data)
	}
	nw.Flush()
	check("eth.pcapng", ng.Bytes())

	// A killed capture: the last record is cut; what came before counts.
	full := pcapFile(t, linkEthernet, 0, segs...)
	path := filepath.Join(dir, "cut.pcap")
	os.WriteFile(path, full[:len(full)-10], 0o644)
	fr, err := ReadFile(path, nil)
	if err != nil || !fr.Truncated || fr.Packets != uint64(len(segs)-1) {
		t.Errorf("cut file: %v, %+v", err, fr)
	}

	os.WriteFile(path, []byte("this is not a capture file at all"), 0o644)
	if _, err := ReadFile(path, nil); !errors.Is(err, ErrNotPcap) {
		t.Errorf("garbage: %v, want ErrNotPcap", err)
	}
	bad := pcapFile(t, linkEthernet, 0)
	binary.LittleEndian.PutUint32(bad[20:], 147) // a user link type
	os.WriteFile(path, bad, 0o644)
	if _, err := ReadFile(path, nil); err == nil {
		t.Error("unsupported link type accepted")
	}
}

// TestReadFileDropsCookedLoopbackCopies: a cooked capture that kept both
// copies of a loopback packet counts it once.
func TestReadFileDropsCookedLoopbackCopies(t *testing.T) {
	segs := serverAbortSegs("127.0.0.1:50000", "127.0.0.1:8080")
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	w.WriteFileHeader(65535, layers.LinkTypeLinuxSLL)
	for _, s := range segs {
		in := frame(t, linkSLL, s)
		out := append([]byte(nil), in...)
		binary.BigEndian.PutUint16(out[0:], uint16(layers.LinuxSLLPacketTypeOutgoing))
		for _, data := range [][]byte{out, in} {
			w.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(s.at), CaptureLength: len(data), Length: len(data)}, data)
		}
	}
	fr, err := ReadPackets(&buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fr.Packets != uint64(len(segs)) || fr.Duplicates != uint64(len(segs)) || fr.Resets != 1 {
		t.Errorf("%d packets, %d duplicates, %d resets; want %d, %d, 1", fr.Packets, fr.Duplicates, fr.Resets, len(segs), len(segs))
	}
}
