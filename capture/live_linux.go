//go:build linux

package capture

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/internal/session"
)

// pollTimeout bounds how long the reader waits for a packet before it looks
// at the stop flag, the context and the clock (sweeps, flushes, kernel
// counters).
const pollTimeout = 100 * time.Millisecond

// drainLimit bounds how long Stop keeps reading packets the kernel had
// already queued.
const drainLimit = 2 * time.Second

// keptResetFlows bounds the flows with RSTs a Capture keeps in memory for
// ResetFlows.
const keptResetFlows = 100_000

// Capture is a running live capture. One goroutine reads the socket,
// decodes, tracks flows and writes the pcap file; Stop ends it.
//
// pcapgo.EthernetHandle has no read timeout, and its Close neither wakes a
// blocked read nor takes a lock. So the socket is switched to non-blocking
// mode and the reader waits in poll(2) with a timeout: it never blocks in a
// read, sees the stop flag within pollTimeout, and is the only goroutine
// that touches the handle, including its Close.
type Capture struct {
	cfg     Config
	iface   string
	handle  *pcapgo.EthernetHandle
	fd      int
	ctx     context.Context
	file    *os.File
	buf     *bufio.Writer
	pw      *pcapgo.Writer
	dec     *decoder
	pkt     packet
	tracker *tracker
	id      string // the capture's ID in the session file

	stopping atomic.Bool
	stopOnce sync.Once
	stopAt   atomic.Int64 // unix nanos of the Stop call
	done     chan struct{}

	mu         sync.Mutex // guards the fields below
	stats      Stats
	resetFlows []session.Flow
	resetIndex map[string]int // FlowKey → index in resetFlows
	err        error          // the first failure of the reader or of the file

	// Reader-owned.
	lastTick   time.Time
	sinceTick  int
	flushedAt  time.Time
	writeFails bool
	written    uint64
}

// Start opens a packet socket on the interface, installs the filter and
// starts the reader. Without the right to capture it returns an error
// wrapping ErrNotPermitted (and records that in the session file), so the
// caller can say so in one line and go on. ctx ending stops the capture as
// Stop does; Stop must still be called to collect the result.
func Start(ctx context.Context, cfg Config) (*Capture, error) {
	if cfg.Snaplen <= 0 {
		cfg.Snaplen = HeaderSnaplen
		if cfg.Payload {
			cfg.Snaplen = DefaultSnaplen
		}
	}
	if cfg.BufferSize <= 0 {
		cfg.BufferSize = DefaultBufferSize
	}
	c, err := start(ctx, cfg)
	if err != nil && errors.Is(err, ErrNotPermitted) && cfg.Session != nil {
		cfg.Session.Put(session.CaptureInfo{ID: LiveCaptureID(cfg.Iface), Iface: cfg.Iface, Ports: cfg.Ports, Disabled: err.Error()})
	}
	return c, err
}

func start(ctx context.Context, cfg Config) (*Capture, error) {
	iface := cfg.Iface
	if iface == "" {
		var err error
		if iface, err = PickIface(ctx, cfg.Target); err != nil {
			return nil, err
		}
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("capture: no interface %q: %w", iface, err)
	}
	if err := checkLinkType(iface); err != nil {
		return nil, err
	}
	if err := probePermission(); err != nil {
		return nil, err
	}
	filter, err := buildFilter(cfg.Ports, ifi.Flags&net.FlagLoopback != 0, cfg.Snaplen)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(filter)
	if err != nil {
		return nil, fmt.Errorf("capture filter: %w", err)
	}

	c := &Capture{cfg: cfg, iface: iface, ctx: ctx, dec: newDecoder(), done: make(chan struct{})}
	if cfg.Out != "" {
		f, err := os.OpenFile(cfg.Out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("capture: %s already exists (a pcap is never overwritten)", cfg.Out)
			}
			return nil, fmt.Errorf("capture: %w", err)
		}
		c.file = f
		c.buf = bufio.NewWriterSize(f, 1<<20)
		c.pw = pcapgo.NewWriter(c.buf)
		if err := c.pw.WriteFileHeader(uint32(cfg.Snaplen), layers.LinkTypeEthernet); err != nil {
			c.abandon()
			return nil, fmt.Errorf("capture: write %s: %w", cfg.Out, err)
		}
	}

	h, err := pcapgo.NewEthernetHandle(iface)
	if err != nil {
		c.abandon()
		return nil, fmt.Errorf("capture on %s: %v", iface, err)
	}
	c.handle = h
	fail := func(err error) (*Capture, error) {
		h.Close()
		c.abandon()
		return nil, err
	}
	if err := h.SetCaptureLength(cfg.Snaplen); err != nil {
		return fail(fmt.Errorf("capture on %s: %w", iface, err))
	}
	if err := h.SetBPF(raw); err != nil {
		return fail(fmt.Errorf("capture on %s: attach filter: %w", iface, err))
	}
	if c.fd, err = handleFD(h); err != nil {
		return fail(err)
	}
	if err := unix.SetNonblock(c.fd, true); err != nil {
		return fail(fmt.Errorf("capture on %s: %w", iface, err))
	}
	// SO_RCVBUFFORCE passes the system's rmem_max (root only); SO_RCVBUF is
	// capped by it.
	if unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.BufferSize) != nil {
		_ = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.BufferSize)
	}
	// Packets queued between bind and the filter were not filtered (on
	// loopback, both copies of each): throw them away, and the counters
	// with them.
	for {
		if _, _, err := h.ZeroCopyReadPacketData(); err != nil {
			break
		}
	}
	_, _ = h.Stats()

	c.id = LiveCaptureID(c.iface)
	c.tracker = newTracker(cfg.Ports, c.flowDone)
	now := time.Now()
	c.stats = Stats{Iface: iface, Started: now}
	c.lastTick, c.flushedAt = now, now
	go c.loop()
	return c, nil
}

// abandon removes a half-made pcap file after a failed Start.
func (c *Capture) abandon() {
	if c.file != nil {
		c.file.Close()
		os.Remove(c.cfg.Out)
		c.file = nil
	}
}

// probePermission opens and closes a packet socket to learn, with the
// errno intact, whether capture is allowed (gopacket's own error keeps only
// the text).
func probePermission() error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("%w", ErrNotPermitted)
		}
		if errors.Is(err, unix.EAFNOSUPPORT) {
			return fmt.Errorf("%w: no AF_PACKET in this kernel", ErrUnsupported)
		}
		return fmt.Errorf("capture: packet socket: %w", err)
	}
	unix.Close(fd)
	return nil
}

// handleFD returns the descriptor inside an EthernetHandle. gopacket
// v1.1.19 (pinned in go.mod) does not export it, and the capture needs it
// for non-blocking reads, poll(2) and the receive buffer size; reading an
// unexported field through reflect is allowed, and TestHandleFD fails
// loudly if an upgrade renames it.
func handleFD(h *pcapgo.EthernetHandle) (int, error) {
	v := reflect.ValueOf(h).Elem().FieldByName("fd")
	if !v.IsValid() || v.Kind() != reflect.Int {
		return -1, errors.New("capture: this gopacket's EthernetHandle has no fd field; the capture code needs updating")
	}
	return int(v.Int()), nil
}

// Iface is the interface captured on.
func (c *Capture) Iface() string { return c.iface }

// Progress returns the counters as of the reader's last tick (at most about
// a second old).
func (c *Capture) Progress() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// ResetFlows returns the flows that had at least one RST, in the order
// they ended (at most keptResetFlows). Call it after Stop.
func (c *Capture) ResetFlows() []session.Flow {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]session.Flow(nil), c.resetFlows...)
}

// Stop ends the capture: the reader drains what the kernel already queued
// (bounded by drainLimit), writes the remaining flow summaries and the
// capture's meta to the session file, flushes and closes the pcap file and
// exits. It returns the final counters and the first error met. Calling it
// again returns the same.
func (c *Capture) Stop() (Stats, error) {
	c.requestStop()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats, c.err
}

func (c *Capture) requestStop() {
	c.stopOnce.Do(func() {
		c.stopAt.Store(time.Now().UnixNano())
		c.stopping.Store(true)
	})
}

func (c *Capture) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// loop is the reader goroutine.
func (c *Capture) loop() {
	defer close(c.done)
	defer c.shutdown()
	pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
	failures := 0
	readable := false
	for {
		stopping := c.stopping.Load()
		if stopping && time.Since(time.Unix(0, c.stopAt.Load())) > drainLimit {
			return
		}
		data, ci, err := c.handle.ZeroCopyReadPacketData()
		if err == nil {
			failures, readable = 0, false
			c.process(data, ci)
			if c.sinceTick++; c.sinceTick >= 1024 {
				c.tick(time.Now())
			}
			continue
		}
		// Nothing queued (EAGAIN), or the socket failed. gopacket keeps only
		// the error's text, so poll tells the two apart: a failed socket
		// polls readable or in error, yet the read keeps failing.
		if readable {
			if failures++; failures >= 100 {
				c.fail(fmt.Errorf("capture on %s: %v", c.iface, err))
				return
			}
		}
		if stopping {
			return // drained
		}
		c.tick(time.Now())
		n, perr := unix.Poll(pfd, int(pollTimeout/time.Millisecond))
		switch {
		case perr == unix.EINTR:
			readable = false
		case perr != nil:
			c.fail(fmt.Errorf("capture on %s: poll: %w", c.iface, perr))
			return
		default:
			readable = n > 0
			if n > 0 && pfd[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 && failures >= 3 {
				c.fail(fmt.Errorf("capture on %s: %v", c.iface, err))
				return
			}
		}
	}
}

// process handles one packet: decode, track, write.
func (c *Capture) process(data []byte, ci gopacket.CaptureInfo) {
	if !c.dec.decode(linkEthernet, data, ci.Timestamp, &c.pkt) {
		return
	}
	c.tracker.add(&c.pkt)
	if c.cfg.observe != nil {
		c.cfg.observe(c.pkt)
	}
	if c.pw == nil || c.writeFails {
		return
	}
	if !c.cfg.Payload && c.pkt.headerEnd > 0 && c.pkt.headerEnd < len(data) {
		data = data[:c.pkt.headerEnd] // headers only: no byte of the streams
	}
	ci.Timestamp = c.pkt.ts
	ci.CaptureLength = len(data)
	if ci.Length < len(data) {
		ci.Length = len(data)
	}
	ci.AncillaryData = nil
	if err := c.pw.WritePacket(ci, data); err != nil {
		// A full disk stops the file, not the analysis.
		c.writeFails = true
		c.fail(fmt.Errorf("capture: write %s: %w (the capture goes on without the file)", c.cfg.Out, err))
		return
	}
	c.written++
}

// tick runs the periodic work: sweep ended flows, flush the pcap file once
// a second (so a killed run keeps most of it), read the kernel's counters
// and publish the stats.
func (c *Capture) tick(now time.Time) {
	c.sinceTick = 0
	if c.ctx.Err() != nil {
		c.requestStop()
	}
	if now.Sub(c.lastTick) < 200*time.Millisecond {
		c.publish(nil)
		return
	}
	c.lastTick = now
	// Sweep by the clock too, so ended flows are written while the
	// interface is quiet.
	if now.Sub(c.tracker.lastSweep) >= evictEvery {
		c.tracker.sweep(now.Truncate(time.Microsecond))
	}
	if c.buf != nil && !c.writeFails && now.Sub(c.flushedAt) >= time.Second {
		c.flushedAt = now
		if err := c.buf.Flush(); err != nil {
			c.writeFails = true
			c.fail(fmt.Errorf("capture: write %s: %w (the capture goes on without the file)", c.cfg.Out, err))
		}
	}
	st, err := c.handle.Stats()
	c.publish(func(s *Stats) {
		if err == nil {
			s.KernelPackets += uint64(st.Packets)
			s.KernelDrops += uint64(st.Drops)
		}
	})
}

// publish copies the tracker's counters into the shared stats.
func (c *Capture) publish(more func(*Stats)) {
	c.mu.Lock()
	c.stats.Packets = c.tracker.packets
	c.stats.Resets = c.tracker.resets
	c.stats.Flows = c.tracker.flowsDone
	c.stats.Untracked = c.tracker.untracked
	c.stats.Written = c.written
	if more != nil {
		more(&c.stats)
	}
	c.mu.Unlock()
}

// flowDone receives each finished flow summary from the tracker.
func (c *Capture) flowDone(f session.Flow) {
	f.Capture = c.id
	if c.cfg.Session != nil {
		c.cfg.Session.Put(f)
	}
	if len(f.RSTs) > 0 {
		k := string(f.Key())
		c.mu.Lock()
		if i, ok := c.resetIndex[k]; ok {
			c.resetFlows[i] = f // a revived flow, written again
		} else if len(c.resetFlows) < keptResetFlows {
			if c.resetIndex == nil {
				c.resetIndex = map[string]int{}
			}
			c.resetIndex[k] = len(c.resetFlows)
			c.resetFlows = append(c.resetFlows, f)
		}
		c.mu.Unlock()
	}
}

// shutdown runs on the reader goroutine as it exits: nobody else touches
// the handle, so closing it here cannot race a read.
func (c *Capture) shutdown() {
	st, statsErr := c.handle.Stats()
	c.handle.Close()
	c.tracker.close()
	if c.buf != nil {
		if err := c.buf.Flush(); err != nil && !c.writeFails {
			c.fail(fmt.Errorf("capture: write %s: %w", c.cfg.Out, err))
		}
		if err := c.file.Close(); err != nil {
			c.fail(fmt.Errorf("capture: close %s: %w", c.cfg.Out, err))
		}
	}
	stopped := time.Now()
	c.publish(func(s *Stats) {
		if statsErr == nil {
			s.KernelPackets += uint64(st.Packets)
			s.KernelDrops += uint64(st.Drops)
		}
		s.Stopped = stopped
	})
	if c.cfg.Session != nil {
		c.cfg.Session.Put(c.Info())
	}
}

// Info is the capture's description as the session file keeps it (final
// after Stop).
func (c *Capture) Info() session.CaptureInfo {
	s := c.Progress()
	host, _ := os.Hostname()
	return session.CaptureInfo{
		ID: c.id, Host: host, Iface: c.iface, Ports: c.cfg.Ports, Pcap: c.cfg.Out,
		Started: s.Started, Stopped: s.Stopped,
		Packets: s.Packets, KernelPackets: s.KernelPackets, KernelDrops: s.KernelDrops,
		Flows: int64(s.Flows), RSTSegments: int64(s.Resets),
	}
}
