//go:build linux

package capture

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/capture/internal/looptest"
	"github.com/ssestress/ssestress/internal/session"
)

// loopbackLoad streams small writes over conns TCP connections on
// loopback, one goroutine each, at writesPerSecond in total (0: as fast as
// they can) until n writes are done. With TCP_NODELAY each paced write is
// one data segment; the receiver's delayed ACKs add fewer again.
func loopbackLoad(b *testing.B, ln net.Listener, n int, writesPerSecond float64, conns int) (stop func()) {
	b.Helper()
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	cs := make([]net.Conn, conns)
	for i := range cs {
		var err error
		if cs[i], err = net.Dial("tcp4", ln.Addr().String()); err != nil {
			b.Fatal(err)
		}
	}
	msg := []byte("data: {\"symbol\":\"AAPL\",\"price\":187.25}\n\n")
	var writers sync.WaitGroup
	for i, c := range cs {
		share := n / conns
		if i < n%conns {
			share++
		}
		writers.Add(1)
		go func() {
			defer writers.Done()
			start := time.Now()
			for done := 0; done < share; {
				due := share
				if writesPerSecond > 0 {
					due = min(share, int(time.Since(start).Seconds()*writesPerSecond/float64(conns)))
				}
				for ; done < due; done++ {
					if _, err := c.Write(msg); err != nil {
						return
					}
				}
				if writesPerSecond > 0 {
					time.Sleep(200 * time.Microsecond)
				}
			}
		}()
	}
	writers.Wait()
	return func() {
		for _, c := range cs {
			c.Close()
		}
		ln.Close()
		wg.Wait()
	}
}

// benchCapture captures b.N writes of loopbackLoad and reports what the
// capture processed per second of the load and what the kernel dropped.
// Run with a fixed count, e.g.:
//
//	go test -run '^$' -bench Loopback -benchtime 100000x ./capture/
func benchCapture(b *testing.B, writesPerSecond float64) {
	looptest.NeedRoot(b)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c, err := Start(context.Background(), Config{Iface: "lo", Ports: []int{ln.Addr().(*net.TCPAddr).Port},
		Out: filepath.Join(b.TempDir(), "bench.pcap")})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	stop := loopbackLoad(b, ln, b.N, writesPerSecond, 4)
	elapsed := time.Since(start)
	// Let the reader catch up with what the kernel queued, then stop.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := c.Progress()
		time.Sleep(300 * time.Millisecond)
		if q := c.Progress(); q.Packets == p.Packets || time.Now().After(deadline) {
			break
		}
	}
	b.StopTimer()
	stop()
	st, err := c.Stop()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.KernelPackets)/elapsed.Seconds(), "offered-pkts/s")
	b.ReportMetric(float64(st.Packets)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(st.KernelDrops), "kernel-drops")
	b.ReportMetric(float64(st.KernelPackets), "kernel-pkts")
	b.ReportMetric(float64(st.Packets)/float64(b.N), "pkts/write")
}

// BenchmarkLoopbackStream: SSE-like writes over 4 TCP connections as fast
// as they go: real TCP traffic (the stack coalesces the writes into fewer,
// larger segments, so pkts/write is well below 1).
func BenchmarkLoopbackStream(b *testing.B) { benchCapture(b, 0) }

// BenchmarkLoopback50k: exactly 50,000 packets/s offered on loopback.
// Each packet is a 60-byte TCP data segment sent from a raw socket with a
// deliberately wrong checksum: the capture sees it like any other (the
// packet socket runs before TCP), and TCP then drops it without an answer,
// so every sendto is one packet and nothing else is sent. b.N packets.
func BenchmarkLoopback50k(b *testing.B) { benchInject(b, 50_000) }

// BenchmarkLoopbackMax: the same packets as fast as one goroutine sends
// them: the capture's ceiling, and where the kernel starts dropping.
func BenchmarkLoopbackMax(b *testing.B) { benchInject(b, 0) }

// benchInject offers b.N packets at rate per second (0: unpaced); see
// BenchmarkLoopback50k.
func benchInject(b *testing.B, rate float64) {
	looptest.NeedRoot(b)
	const port = 9 // discard: nothing listens, nothing answers a bad checksum
	c, err := Start(context.Background(), Config{Iface: "lo", Ports: []int{port}, Out: filepath.Join(b.TempDir(), "bench.pcap")})
	if err != nil {
		b.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	_, pkt := ipTCP(b, seg{src: "127.0.0.1:40000", dst: "127.0.0.1:" + strconv.Itoa(port), flags: "PA", seq: 1, ack: 1, payload: 20})
	pkt[len(pkt)-20-4] ^= 0xff // corrupt the TCP checksum (offset 16 of the 20-byte header)
	to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; {
		due := b.N
		if rate > 0 {
			due = min(b.N, int(time.Since(start).Seconds()*rate))
		}
		for ; sent < due; sent++ {
			if err := unix.Sendto(fd, pkt, 0, to); err != nil {
				b.Fatal(err)
			}
		}
		if rate > 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	elapsed := time.Since(start)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p := c.Progress()
		if p.Packets+p.KernelDrops >= uint64(b.N) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	st, err := c.Stop()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "offered-pkts/s")
	b.ReportMetric(float64(st.Packets)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(st.KernelDrops), "kernel-drops")
	b.ReportMetric(float64(uint64(b.N)-min(uint64(b.N), st.Packets)), "missed")
}

// BenchmarkProcess is the capture's own cost per packet, without the
// kernel: decode, flow tracking and the pcap write of one 100-byte data
// segment on one of 1,000 flows.
func BenchmarkProcess(b *testing.B) {
	frames := make([][]byte, 1000)
	for i := range frames {
		frames[i] = frame(b, linkEthernet, seg{src: "127.0.0.1:" + strconv.Itoa(20000+i), dst: "127.0.0.1:8080", flags: "PA",
			seq: 1, ack: 1, payload: 100})
	}
	tr := newTracker([]int{8080}, func(session.Flow) {})
	d := newDecoder()
	w := pcapgo.NewWriter(io.Discard)
	w.WriteFileHeader(DefaultSnaplen, layers.LinkTypeEthernet)
	var p packet
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		data := frames[i%len(frames)]
		if !d.decode(linkEthernet, data, now, &p) {
			b.Fatal("not decoded")
		}
		tr.add(&p)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(data), Length: len(data)}, data); err != nil {
			b.Fatal(err)
		}
	}
}
