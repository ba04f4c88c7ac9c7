package capture

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/pcapgo"

	"github.com/ssestress/ssestress/internal/inputfile"
	"github.com/ssestress/ssestress/internal/session"
)

// ErrNotPcap is returned (wrapped with the file name) for a file that is
// neither pcap nor pcapng.
var ErrNotPcap = errors.New("is not a pcap or pcapng file")

// FileResult is what ReadFile found in a capture file.
type FileResult struct {
	Format   string `json:"format"`    // "pcap" or "pcapng"
	LinkType int    `json:"link_type"` // libpcap LINKTYPE_ value
	// Packets counts TCP packets processed; Skipped the other frames
	// (ARP, UDP, fragments, ...); Duplicates the outgoing copies of
	// loopback packets in cooked (SLL) captures that kept both copies.
	Packets    uint64 `json:"packets"`
	Skipped    uint64 `json:"skipped"`
	Duplicates uint64 `json:"duplicates,omitempty"`
	Resets     uint64 `json:"resets"`
	First      time.Time
	Last       time.Time
	Flows      []session.Flow `json:"-"`
	// Truncated is set when the file ended in the middle of a packet (a
	// capture that was killed): what came before is still used.
	Truncated bool `json:"truncated,omitempty"`
}

// ReadFile reads a pcap or pcapng file (optionally gzip-compressed) written
// by this package, tcpdump, tshark or Wireshark, and summarizes its TCP
// flows exactly as a live capture does. ports orient flows whose handshake
// is not in the file. Link types: Ethernet (and Linux loopback), Linux
// cooked v1 and v2 (tcpdump -i any), raw IP, BSD loopback.
func ReadFile(path string, ports []int) (*FileResult, error) {
	// A FIFO or device would block or never end: a capture file is a file.
	if err := inputfile.CheckRegular(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := ReadPackets(f, ports)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i := range res.Flows {
		res.Flows[i].Capture = FileCaptureID(path)
	}
	return res, nil
}

// packetSource is what pcapgo's two readers have in common.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// ReadPackets is ReadFile on an open stream.
func ReadPackets(r io.Reader, ports []int) (*FileResult, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer gz.Close()
		br = bufio.NewReaderSize(gz, 1<<16)
	}
	head, err := br.Peek(24)
	if err != nil {
		return nil, fmt.Errorf("%w (too short)", ErrNotPcap)
	}
	res := &FileResult{}
	var src packetSource
	var link linkType
	switch {
	case binary.BigEndian.Uint32(head) == 0x0a0d0d0a:
		res.Format = "pcapng"
		ng := &ngReader{r: br}
		if link, err = ng.first(); err != nil {
			return nil, err
		}
		src = ng
	default:
		var order binary.ByteOrder
		switch binary.LittleEndian.Uint32(head) {
		case 0xa1b2c3d4, 0xa1b23c4d:
			order = binary.LittleEndian
		case 0xd4c3b2a1, 0x4d3cb2a1:
			order = binary.BigEndian
		default:
			return nil, ErrNotPcap
		}
		res.Format = "pcap"
		// The link type is read here: pcapgo truncates it to 8 bits.
		link = linkType(order.Uint32(head[20:24]) & 0xffff)
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("pcap: %v", err)
		}
		// pcapgo allocates the file's snaplen for its buffer: a damaged
		// header must not make it allocate gigabytes.
		if sl := pr.Snaplen(); sl == 0 || sl > maxPacket {
			pr.SetSnaplen(maxPacket)
		}
		src = pr
	}
	res.LinkType = int(link)
	if !supportedLink(link) {
		return nil, fmt.Errorf("link type %d is not supported (Ethernet, Linux cooked, raw IP and BSD loopback are)", link)
	}

	// A flow revived by a late segment is handed over again: the later
	// summary replaces the earlier one.
	written := map[string]int{}
	tr := newTracker(ports, func(f session.Flow) {
		k := session.FlowKey(f.First, f.Dialer, f.Listener, "")
		if i, ok := written[k]; ok {
			res.Flows[i] = f
			return
		}
		written[k] = len(res.Flows)
		res.Flows = append(res.Flows, f)
	})
	dec := newDecoder()
	var p packet
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				res.Truncated = true
				break
			}
			// pcapgo reports damaged records with plain errors: keep what
			// came before and say where it stopped.
			tr.close()
			res.Packets, res.Resets = tr.packets, tr.resets
			return res, fmt.Errorf("after %d packets: %v", res.Packets+res.Skipped, err)
		}
		pl := link
		if ng, ok := src.(*ngReader); ok {
			pl = ng.link
		}
		if !dec.decode(pl, data, ci.Timestamp, &p) {
			res.Skipped++
			continue
		}
		if dec.outgoing && p.src.Addr().IsLoopback() && p.dst.Addr().IsLoopback() {
			res.Duplicates++
			continue
		}
		if res.First.IsZero() {
			res.First = p.ts
		}
		res.Last = p.ts
		tr.add(&p)
	}
	tr.close()
	res.Packets, res.Resets = tr.packets, tr.resets
	return res, nil
}

// FileCaptureID is the capture ID of the flows read from a pcap file:
// "file:<base name>".
func FileCaptureID(path string) string { return "file:" + filepath.Base(path) }

// LiveCaptureID is the capture ID of a live capture on iface of this host:
// "<host name>/<iface>", and "<host name>/netns:<inode>/<iface>" inside a
// network namespace other than the host's, so two namespaces' "lo" or
// "eth0" stay two captures when their files are read together.
func LiveCaptureID(iface string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	if ns := netnsID(); ns != "" {
		host += "/netns:" + ns
	}
	return host + "/" + iface
}

// netnsID is the inode of this process's network namespace when it is not
// the one of process 1 (the host's), "" otherwise or when unknown.
func netnsID() string {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return ""
	}
	if init, err := os.Readlink("/proc/1/ns/net"); err == nil && init == self {
		return ""
	}
	return strings.TrimSuffix(strings.TrimPrefix(self, "net:["), "]")
}

// maxPacket bounds the bytes of one packet a file may claim (loopback with
// BIG TCP reaches 512 KiB); beyond it the file is taken for damaged.
const maxPacket = 1 << 20

// ngReader reads the packets of a pcapng file: section headers, interface
// descriptions (link type per interface, timestamp resolution), enhanced,
// simple and obsolete packet blocks; other blocks are skipped. It is ours
// rather than pcapgo's NgReader because that one keeps link types in 8
// bits (no LINUX_SLL2) and allocates whatever a damaged block claims.
type ngReader struct {
	r      *bufio.Reader
	order  binary.ByteOrder
	ifaces []ngIface
	body   []byte
	link   linkType // of the last packet
}

type ngIface struct {
	link    linkType
	snaplen uint32
	perSec  uint64 // timestamp units per second
}

// first reads up to the first interface description and returns its link
// type; the blocks read stay applied.
func (n *ngReader) first() (linkType, error) {
	for len(n.ifaces) == 0 {
		typ, err := n.block()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, errors.New("pcapng: no interface description")
			}
			return 0, err
		}
		if typ != ngSHB && typ != ngIDB {
			return 0, errors.New("pcapng: a packet before any interface description")
		}
	}
	return n.ifaces[0].link, nil
}

// pcapng block types.
const (
	ngSHB       = 0x0a0d0d0a
	ngIDB       = 1
	ngPacketOld = 2
	ngSimple    = 3
	ngEnhanced  = 6
)

// block reads one block into n.body and applies SHB and IDB blocks.
func (n *ngReader) block() (uint32, error) {
	head, err := n.r.Peek(12)
	if err != nil {
		if len(head) == 0 {
			return 0, io.EOF
		}
		return 0, io.ErrUnexpectedEOF
	}
	typ := binary.BigEndian.Uint32(head)
	if typ == ngSHB {
		switch binary.BigEndian.Uint32(head[8:]) {
		case 0x1a2b3c4d:
			n.order = binary.BigEndian
		case 0x4d3c2b1a:
			n.order = binary.LittleEndian
		default:
			return 0, errors.New("pcapng: bad byte-order magic")
		}
		n.ifaces = n.ifaces[:0]
	} else if n.order == nil {
		return 0, errors.New("pcapng: no section header")
	} else {
		typ = n.order.Uint32(head)
	}
	total := n.order.Uint32(head[4:])
	if total < 12 || total%4 != 0 || total > maxPacket+64 {
		return 0, fmt.Errorf("pcapng: block of %d bytes", total)
	}
	if cap(n.body) < int(total) {
		n.body = make([]byte, total)
	}
	buf := n.body[:total]
	if _, err := io.ReadFull(n.r, buf); err != nil {
		return 0, io.ErrUnexpectedEOF
	}
	n.body = buf
	body := buf[8 : total-4]
	switch typ {
	case ngIDB:
		if len(body) < 8 {
			return 0, errors.New("pcapng: short interface description")
		}
		iface := ngIface{link: linkType(n.order.Uint16(body)), snaplen: n.order.Uint32(body[4:]), perSec: 1_000_000}
		for opts := body[8:]; len(opts) >= 4; {
			code, l := n.order.Uint16(opts), int(n.order.Uint16(opts[2:]))
			if code == 0 || 4+l > len(opts) {
				break
			}
			if code == 9 && l >= 1 { // if_tsresol
				v := opts[4]
				switch {
				case v&0x80 != 0 && v&0x7f <= 63:
					iface.perSec = 1 << (v & 0x7f)
				case v&0x80 == 0 && v <= 19:
					iface.perSec = 1
					for range v {
						iface.perSec *= 10
					}
				default:
					return 0, fmt.Errorf("pcapng: timestamp resolution %#x", v)
				}
			}
			opts = opts[4+(l+3)&^3:]
		}
		n.ifaces = append(n.ifaces, iface)
	}
	return typ, nil
}

// ZeroCopyReadPacketData returns the next packet; its data is valid until
// the next call.
func (n *ngReader) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	for {
		typ, err := n.block()
		if err != nil {
			return nil, gopacket.CaptureInfo{}, err
		}
		body := n.body[8 : len(n.body)-4]
		var ifIndex int
		var high, low, capLen, origLen uint32
		var data []byte
		switch typ {
		case ngEnhanced, ngPacketOld:
			if len(body) < 20 {
				return nil, gopacket.CaptureInfo{}, errors.New("pcapng: short packet block")
			}
			if typ == ngEnhanced {
				ifIndex = int(n.order.Uint32(body))
			} else {
				ifIndex = int(n.order.Uint16(body))
			}
			high, low = n.order.Uint32(body[4:]), n.order.Uint32(body[8:])
			capLen, origLen = n.order.Uint32(body[12:]), n.order.Uint32(body[16:])
			if int(capLen) > len(body)-20 {
				return nil, gopacket.CaptureInfo{}, fmt.Errorf("pcapng: packet of %d bytes in a block of %d", capLen, len(body))
			}
			data = body[20 : 20+capLen]
		case ngSimple:
			if len(body) < 4 {
				return nil, gopacket.CaptureInfo{}, errors.New("pcapng: short packet block")
			}
			origLen = n.order.Uint32(body)
			capLen = min(origLen, uint32(len(body)-4))
			data = body[4 : 4+capLen]
		default:
			continue
		}
		if ifIndex >= len(n.ifaces) {
			return nil, gopacket.CaptureInfo{}, fmt.Errorf("pcapng: packet of interface %d, %d described", ifIndex, len(n.ifaces))
		}
		iface := n.ifaces[ifIndex]
		n.link = iface.link
		units := uint64(high)<<32 | uint64(low)
		sec, frac := units/iface.perSec, units%iface.perSec
		hi, lo := bits.Mul64(frac, 1e9)
		nanos, _ := bits.Div64(hi, lo, iface.perSec)
		if sec > math.MaxInt64/2 {
			sec = 0
		}
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(int64(sec), int64(nanos)).UTC(), CaptureLength: len(data),
			Length: int(max(origLen, capLen)), InterfaceIndex: ifIndex}
		return data, ci, nil
	}
}
