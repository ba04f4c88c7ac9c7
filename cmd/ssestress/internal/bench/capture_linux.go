//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/capture"
)

// captureRate is the capture target: packets per second on
// loopback with no kernel drop (issue 4).
const captureRate = 50000

// freePort returns a loopback TCP port nothing listens on now: the
// injected packets go there, so that no other process's traffic (another
// capture test offering packets to a fixed port, say) is counted.
func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// probePacket is a 60-byte IPv4/TCP data segment from 127.0.0.1:40000 to
// 127.0.0.1:port with a deliberately wrong TCP checksum. The packet socket
// sees it like any other (it runs before TCP), and TCP then drops it
// without an answer (the checksum is checked before the port), so each
// sendto is exactly one captured packet. The kernel fills in the IP
// checksum, id and total length (raw(7)).
func probePacket(port int) []byte {
	p := make([]byte, 60)
	p[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(p[6:], 0x4000)
	p[8], p[9] = 64, unix.IPPROTO_TCP
	copy(p[12:16], []byte{127, 0, 0, 1})
	copy(p[16:20], []byte{127, 0, 0, 1})
	t := p[20:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], uint16(port))
	binary.BigEndian.PutUint32(t[4:], 1)
	binary.BigEndian.PutUint32(t[8:], 1)
	t[12] = 5 << 4 // 20-byte header
	t[13] = 0x18   // PSH, ACK
	t[14], t[15] = 0xff, 0xff
	t[16], t[17] = 0xde, 0xad // not the checksum
	for i := 40; i < 60; i++ {
		p[i] = 'x'
	}
	return p
}

// captureRun offers packets at rate (0: as fast as one goroutine sends
// them) for d and returns what the capture processed and the kernel
// dropped.
func (s *suite) captureRun(ctx context.Context, rate float64, d time.Duration) (sent uint64, st capture.Stats, elapsed time.Duration, err error) {
	out := s.tempPath("ssestress-bench-capture-*.pcap")
	defer os.Remove(out)
	port, err := freePort()
	if err != nil {
		return 0, st, 0, err
	}
	c, err := capture.Start(ctx, capture.Config{Iface: "lo", Ports: []int{port}, Out: out})
	if err != nil {
		return 0, st, 0, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		c.Stop()
		return 0, st, 0, fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	pkt := probePacket(port)
	to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		due := uint64(1 << 62)
		if rate > 0 {
			due = uint64(time.Since(start).Seconds() * rate)
		}
		for batch := 0; sent < due && batch < 1000; batch++ {
			if err := unix.Sendto(fd, pkt, 0, to); err != nil {
				if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
					break
				}
				c.Stop()
				return sent, st, 0, fmt.Errorf("sendto: %w", err)
			}
			sent++
		}
		if rate > 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	elapsed = time.Since(start)
	// Let the reader catch up with what the kernel queued.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p := c.Progress()
		if p.Packets+p.KernelDrops >= sent {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, err = c.Stop()
	return sent, st, elapsed, err
}

// runCapture is row 3: packets/s the capture processes on loopback at the
// issue's 50,000/s and unpaced, and what the kernel dropped.
func runCapture(ctx context.Context, s *suite) error {
	if os.Geteuid() != 0 {
		s.skip(RowCapture, "capture", "needs root or CAP_NET_RAW (AF_PACKET capture and a raw socket to offer packets); run ssestress bench as root")
		return nil
	}
	d := 5 * time.Second
	if s.cfg.Quick {
		d = 2 * time.Second
	}
	s.logf("capture: %d packets/s for %v", captureRate, d)
	sent, st, el, err := s.captureRun(ctx, captureRate, d)
	if errors.Is(err, capture.ErrNotPermitted) {
		s.skip(RowCapture, "capture", oneLine(err.Error()))
		return nil
	}
	if err != nil {
		return err
	}
	offered := float64(sent) / el.Seconds()
	missed := int64(sent) - int64(st.Packets)
	f := Figure{Row: RowCapture, Name: "packets/s processed, 50,000/s offered", Value: float64(st.Packets) / el.Seconds(), Unit: "packets/s",
		Text: fmtCount(float64(st.Packets) / el.Seconds()), Versus: "offered " + fmtCount(offered), Ratio: float64(st.Packets) / float64(max(sent, 1)),
		Note: fmt.Sprintf("%s packets of 60 bytes injected on lo over %v with a raw socket, decoded, tracked and written to a pcap file", fmtCount(float64(sent)), el.Round(time.Millisecond))}
	s.add(f)
	f = Figure{Row: RowCapture, Name: "kernel drops at 50,000 packets/s", Value: float64(st.KernelDrops), Text: fmtCount(float64(st.KernelDrops)),
		Target: "0 (issue 4)"}
	f.atMost(float64(st.KernelDrops), 0, " packets")
	if missed > 0 {
		f.Note = fmt.Sprintf("%d packets sent but not processed", missed)
	}
	s.add(f)

	s.logf("capture: unpaced for %v", d/2)
	sent, st, el, err = s.captureRun(ctx, 0, d/2)
	if err != nil {
		return err
	}
	s.add(Figure{Row: RowCapture, Name: "packets/s processed, unpaced (ceiling)", Value: float64(st.Packets) / el.Seconds(), Unit: "packets/s",
		Text: fmtCount(float64(st.Packets) / el.Seconds()), Versus: "offered " + fmtCount(float64(sent)/el.Seconds()), Ratio: float64(st.Packets) / float64(max(sent, 1)),
		Note: fmt.Sprintf("one goroutine sending as fast as it can (when processed equals offered, the sender was the limit and the capture kept up); kernel drops %s of %s",
			fmtCount(float64(st.KernelDrops)), fmtCount(float64(st.KernelPackets)))})
	return nil
}
