//go:build linux

// Package looptest holds the loopback fixtures of the capture tests: a raw
// SSE server whose streams the test ends, a minimal generated client that
// records what ssestress's clients record, a third party that forges RSTs
// with a raw socket, and tcpdump helpers. Only tests import it.
package looptest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// Deadline bounds every wait of a live test: generous, since the machine
// is shared.
const Deadline = 20 * time.Second

// NeedRoot skips a test that opens packet or raw sockets.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("live capture needs root or CAP_NET_RAW (the CI machine runs as root); skipping")
	}
}

// SSEServer is a raw SSE server that hands each accepted stream to the
// test, so the test decides how it ends.
type SSEServer struct {
	ln    *net.TCPListener
	conns chan *net.TCPConn
	Port  int
}

// NewSSEServer listens on a free loopback port.
func NewSSEServer(t *testing.T) *SSEServer {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &SSEServer{ln: ln, conns: make(chan *net.TCPConn, 8), Port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// Addr is the server's address.
func (s *SSEServer) Addr() string { return s.ln.Addr().String() }

// serve reads a request head, answers an SSE head and one event, and hands
// the stream to Next.
func (s *SSEServer) serve(c *net.TCPConn) {
	c.SetReadDeadline(time.Now().Add(Deadline))
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.Close()
			return
		}
		if line == "\r\n" {
			break
		}
	}
	c.SetReadDeadline(time.Time{})
	_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"+
		"id: 1\ndata: {\"symbol\":\"AAPL\",\"price\":1}\n\n")
	if err != nil {
		c.Close()
		return
	}
	s.conns <- c
}

// Next waits for the next accepted stream.
func (s *SSEServer) Next(t *testing.T) *net.TCPConn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(Deadline):
		t.Fatal("no stream reached the server")
		return nil
	}
}

// Abort resets a connection: SO_LINGER 0, then close.
func Abort(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// SSEClient is a minimal generated client: it opens a stream, reads until
// the stream fails, and records what ssestress's clients record.
type SSEClient struct {
	connID     string
	conn       *net.TCPConn
	start      time.Time
	firstEvent chan struct{}
	done       chan struct{}
	err        error
	class      string
	lastByte   time.Time
	events     int64
}

// StartClient dials addr, asks for a stream and reads it in the
// background; its ConnRecord and, when the stream fails, its ErrorRecord go
// to w as the run's clients write them.
func StartClient(t *testing.T, w *session.Writer, addr, connID string) *SSEClient {
	t.Helper()
	c := &SSEClient{connID: connID, start: time.Now(), firstEvent: make(chan struct{}), done: make(chan struct{})}
	d := net.Dialer{Timeout: Deadline}
	conn, err := d.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.conn = conn.(*net.TCPConn)
	t.Cleanup(func() { c.conn.Close() })
	rec := session.ConnRecord{ClientID: connID, URL: "http://" + addr + "/stream", LocalAddr: conn.LocalAddr().String(),
		RemoteAddr: conn.RemoteAddr().String(), Start: c.start, Connected: time.Now()}
	w.Put(rec)
	if _, err := io.WriteString(conn, "GET /stream?symbols=AAPL HTTP/1.1\r\nHost: "+addr+"\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		c.conn.SetReadDeadline(time.Now().Add(Deadline))
		buf := make([]byte, 4096)
		var got strings.Builder
		first := false
		for {
			n, err := c.conn.Read(buf)
			if n > 0 {
				c.lastByte = time.Now()
				got.Write(buf[:n])
				if !first && strings.Contains(got.String(), "\n\n") && strings.Contains(got.String(), "data:") {
					first = true
					c.events++
					close(c.firstEvent)
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					// The stream has no end of its own: a close mid-stream.
					err = fmt.Errorf("read stream: %w", io.ErrUnexpectedEOF)
				}
				c.err = err
				c.class = errclass.Classify(err)
				break
			}
		}
		now := time.Now()
		rec.End, rec.Events = now, c.events
		if c.class != "" && !errors.Is(c.err, net.ErrClosed) {
			rec.EndClass, rec.EndMessage, rec.ClosedBy = c.class, c.err.Error(), session.ClosedByPeer
			w.Put(session.ErrorRecord{Time: now, Source: session.SourceClient, ClientID: connID, Class: c.class, Message: c.err.Error(),
				LocalAddr: rec.LocalAddr, RemoteAddr: rec.RemoteAddr, Age: session.Seconds(now.Sub(c.start)), Idle: session.Seconds(now.Sub(c.lastByte)),
				Events: c.events})
		} else {
			rec.ClosedBy = session.ClosedBySelf
		}
		w.Put(rec)
	}()
	return c
}

// WaitFirstEvent waits until the first event arrived.
func (c *SSEClient) WaitFirstEvent(t *testing.T) {
	t.Helper()
	select {
	case <-c.firstEvent:
	case <-c.done:
		t.Fatalf("client %s ended before its first event: %v", c.connID, c.err)
	case <-time.After(Deadline):
		t.Fatalf("client %s got no event", c.connID)
	}
}

// Wait waits until the stream ended.
func (c *SSEClient) Wait(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(Deadline + time.Second):
		t.Fatalf("client %s did not end", c.connID)
	}
}

// Conn is the client's socket.
func (c *SSEClient) Conn() *net.TCPConn { return c.conn }

// Class is the error class that ended the stream (after Wait).
func (c *SSEClient) Class() string { return c.class }

// Err is the error that ended the stream (after Wait).
func (c *SSEClient) Err() error { return c.err }

// WaitReset waits until the connection's next read reports a reset.
func WaitReset(t *testing.T, c *net.TCPConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(Deadline))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err != nil {
			if errclass.Classify(err) != errclass.ECONNRESET {
				t.Fatalf("server socket: want a reset, got %v", err)
			}
			return
		}
	}
}

// ForgeRST sends, from a raw socket, a TCP RST from src to dst with the
// given sequence numbers: the test's third party (a middlebox answering
// with tcp-reset would send the same packet).
func ForgeRST(t *testing.T, src, dst netip.AddrPort, seq, ack uint32) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer unix.Close(fd)
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice(), Id: 4242}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: seq, Ack: ack, RST: true, ACK: true}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	to := &unix.SockaddrInet4{Addr: dst.Addr().As4()}
	if err := unix.Sendto(fd, buf.Bytes(), 0, to); err != nil {
		t.Fatalf("send forged RST: %v", err)
	}
}

// IdleAbout checks an idle time measured from packets against the silence
// the test kept with a sleep: never shorter (the sleep began after the
// last data packet), and longer by at most the scheduling delays of a
// loaded machine.
func IdleAbout(t testing.TB, what string, got, slept time.Duration) {
	t.Helper()
	if got < slept-time.Millisecond || got > slept+2*time.Second {
		t.Errorf("%s = %v, want at least the %v of silence and at most 2 s more", what, got, slept)
	}
}

// TcpdumpRSTs counts the RST packets tcpdump reads from a pcap file; ok is
// false when tcpdump is not installed.
func TcpdumpRSTs(t *testing.T, path string) (int, bool) {
	t.Helper()
	bin, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Log("tcpdump not installed: pcap checked with ReadFile only (apt-get install -y tcpdump)")
		return 0, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-nn", "-r", path, "tcp[tcpflags] & tcp-rst != 0").Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v", path, err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n, true
}
