package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/internal/session"
)

// Tracepoints the collector enables, as "system/event".
const (
	eventSendReset    = "tcp/tcp_send_reset"
	eventReceiveReset = "tcp/tcp_receive_reset"
	eventSetState     = "sock/inet_sock_set_state"
)

// Collector reads the kernel's TCP reset evidence from its own tracefs
// instance until Close (or until the context given to Start ends).
type Collector struct {
	opts     Options
	filter   *compiledFilter
	self     int
	fsDir    string
	name     string // instance name
	dir      string // instance directory
	events   []string
	bufferKB int
	started  time.Time

	pipeFD int // trace_pipe, non-blocking
	wakeFD int // eventfd: Close wakes the reader's poll

	procs  *procCache
	owners *ownerTable // nil when owner lookup is off
	clock  atomic.Pointer[clockOffset]

	read, kept, lostReported, overrun, unparsed atomic.Uint64

	sampleReq chan struct{}
	stop      chan struct{}
	readDone  chan struct{}
	sampDone  chan struct{}
	done      chan struct{}

	closeOnce sync.Once
	mu        sync.Mutex // guards the fields below
	closeErr  error
	readErr   error
	stopped   time.Time
}

// Start creates the instance, enables the tracepoints and starts reading.
// When ctx ends, the collector closes itself (removing its instance), so a
// context cancelled by Ctrl-C leaves nothing behind. Errors that mean "no
// kernel evidence on this host" are *UnavailableError.
func Start(ctx context.Context, opts Options) (*Collector, error) {
	if opts.OwnerInterval == 0 {
		opts.OwnerInterval = time.Second
	}
	fsDir, _, err := findTracefs(opts.Tracefs)
	if err != nil {
		return nil, err
	}
	formats, err := readFormats(fsDir, !opts.NoStateEvents)
	if err != nil {
		return nil, err
	}
	// The sweep is best effort: an instance it cannot remove is left, and
	// creating ours below says what is wrong if anything is.
	if _, err := sweepStale(fsDir); errors.Is(err, os.ErrPermission) {
		return nil, &UnavailableError{Err: ErrNotPermitted, Detail: "tracefs instances need root: " + err.Error()}
	}
	name, dir, err := createInstance(fsDir)
	if err != nil {
		return nil, err
	}
	c := &Collector{
		opts: opts, filter: compileFilter(opts.Filter), self: os.Getpid(),
		fsDir: fsDir, name: name, dir: dir, procs: newProcCache(),
		pipeFD: -1, wakeFD: -1,
		sampleReq: make(chan struct{}, 1), stop: make(chan struct{}),
		readDone: make(chan struct{}), sampDone: make(chan struct{}), done: make(chan struct{}),
	}
	if err := c.setup(formats); err != nil {
		c.release()
		removeInstance(dir)
		forgetInstance(name)
		return nil, err
	}
	off := measureClockOffset()
	c.clock.Store(&off)
	c.started = time.Now()
	if opts.OwnerInterval > 0 {
		c.owners = newOwnerTable(opts.OwnerInterval, func(t tuple) bool { return c.filter.byAddress(t.local, t.remote) }, c.procs)
		if c.filter.all || c.filter.match != nil {
			c.owners.want = nil // every socket may matter
		}
		go c.sampleLoop()
	} else {
		close(c.sampDone)
	}
	go c.readLoop()
	go func() {
		select {
		case <-ctx.Done():
			c.Close()
		case <-c.stop:
		}
	}()
	return c, nil
}

// readFormats checks the tracepoints this kernel has.
func readFormats(fsDir string, wantState bool) (map[string]eventFormat, error) {
	formats := map[string]eventFormat{}
	for _, ev := range []string{eventSendReset, eventReceiveReset, eventSetState} {
		if ev == eventSetState && !wantState {
			continue
		}
		b, err := os.ReadFile(filepath.Join(fsDir, "events", ev, "format"))
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return nil, &UnavailableError{Err: ErrNotPermitted, Detail: "reading " + fsDir + " needs root"}
			}
			if ev == eventSetState {
				continue // optional: resets alone still say why
			}
			return nil, &UnavailableError{Err: ErrNoTracepoint, Detail: fmt.Sprintf("this kernel (%s) has no %s tracepoint", kernelRelease(), strings.Replace(ev, "/", ":", 1))}
		}
		f, err := parseFormat(string(b))
		if err != nil {
			return nil, &UnavailableError{Err: ErrNoTracepoint, Detail: fmt.Sprintf("%s: %v", filepath.Join(fsDir, "events", ev, "format"), err)}
		}
		formats[ev] = f
	}
	if !formats[eventSendReset].Fields["reason"] {
		return nil, &UnavailableError{Err: ErrNoReason, Detail: fmt.Sprintf("this kernel (%s) does not say why it resets; Linux 6.10 or later does", kernelRelease())}
	}
	return formats, nil
}

// KernelReasons lists the reset reasons this kernel's tcp_send_reset
// prints, read from its format file (tracefs must be mounted and
// readable; nothing is mounted or created).
func KernelReasons() ([]string, error) {
	for _, d := range []string{tracefsDir, tracefsDebugDir} {
		if !isTracefs(d) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "events", eventSendReset, "format"))
		if err != nil {
			return nil, err
		}
		f, err := parseFormat(string(b))
		if err != nil {
			return nil, err
		}
		if len(f.Symbols["reason"]) == 0 {
			return nil, &UnavailableError{Err: ErrNoReason, Detail: "this kernel (" + kernelRelease() + ")"}
		}
		return f.Symbols["reason"], nil
	}
	return nil, &UnavailableError{Err: ErrNoTracefs, Detail: "tracefs is not mounted"}
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

// setup configures the instance and opens its trace_pipe.
func (c *Collector) setup(formats map[string]eventFormat) error {
	// Changing the clock or the buffer size empties the buffer, so both
	// come before the events.
	if err := writeFile(c.dir, "trace_clock", traceClock); err != nil {
		return err
	}
	kb := c.opts.BufferSizeKB
	if kb <= 0 {
		kb = DefaultBufferSizeKB(runtime.NumCPU())
	}
	for ; ; kb /= 2 {
		err := writeFile(c.dir, "buffer_size_kb", strconv.Itoa(kb))
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOMEM) || kb <= 64 {
			return err
		}
	}
	c.bufferKB = kb
	// record-tgid puts the process id beside each thread id, as the kernel
	// knew it when the event fired (the thread may be gone when we read).
	writeFile(c.dir, "options/record-tgid", "1")
	writeFile(c.dir, "options/irq-info", "1") // the flags column: softirq or not
	portFilter := c.filter.kernelPortFilter()
	for _, ev := range []string{eventSendReset, eventReceiveReset, eventSetState} {
		if _, ok := formats[ev]; !ok {
			continue
		}
		var filter string
		switch ev {
		case eventReceiveReset:
			filter = portFilter
		case eventSetState:
			// TCP only (the tracepoint serves SCTP and MPTCP too).
			filter = "protocol == 6"
			if portFilter != "" {
				filter += " && (" + portFilter + ")"
			}
		}
		if filter != "" {
			if err := writeFile(c.dir, "events/"+ev+"/filter", filter); err != nil {
				return err
			}
		}
		if err := writeFile(c.dir, "events/"+ev+"/enable", "1"); err != nil {
			return err
		}
		c.events = append(c.events, ev)
	}
	fd, err := unix.Open(filepath.Join(c.dir, "trace_pipe"), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Join(c.dir, "trace_pipe"), err)
	}
	c.pipeFD = fd
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	c.wakeFD = wfd
	return nil
}

// release closes the descriptors.
func (c *Collector) release() {
	if c.pipeFD >= 0 {
		unix.Close(c.pipeFD)
		c.pipeFD = -1
	}
	if c.wakeFD >= 0 {
		unix.Close(c.wakeFD)
		c.wakeFD = -1
	}
}

// pollInterval is the longest the reader sleeps in poll: it refreshes the
// clock offset and the overrun counters between polls.
const pollInterval = 500 * time.Millisecond

// readBufferBytes is one read of trace_pipe (the kernel returns at most a
// page of text per read).
const readBufferBytes = 64 << 10

func (c *Collector) readLoop() {
	defer close(c.readDone)
	buf := make([]byte, readBufferBytes)
	start := 0
	fds := []unix.PollFd{{Fd: int32(c.pipeFD), Events: unix.POLLIN}, {Fd: int32(c.wakeFD), Events: unix.POLLIN}}
	lastClock, lastStats := time.Now(), time.Now()
	stopping := false
	for {
		for {
			n, err := unix.Read(c.pipeFD, buf[start:])
			if n > 0 {
				data := buf[:start+n]
				now := time.Now()
				for {
					nl := bytes.IndexByte(data, '\n')
					if nl < 0 {
						break
					}
					c.handleLine(data[:nl], now)
					data = data[nl+1:]
				}
				start = copy(buf, data)
				if start == len(buf) {
					start = 0 // a line longer than the buffer: not ours
					c.unparsed.Add(1)
				}
				continue
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil && err != unix.EAGAIN {
				c.mu.Lock()
				c.readErr = fmt.Errorf("read %s/trace_pipe: %w", c.dir, err)
				c.mu.Unlock()
				return
			}
			break
		}
		if stopping {
			return
		}
		now := time.Now()
		if now.Sub(lastClock) >= clockRefresh {
			off := measureClockOffset()
			c.clock.Store(&off)
			lastClock = now
		}
		if now.Sub(lastStats) >= pollInterval {
			c.readOverrun()
			lastStats = now
		}
		fds[0].Revents, fds[1].Revents = 0, 0
		_, err := unix.Poll(fds, int(pollInterval/time.Millisecond))
		if err != nil && err != unix.EINTR {
			c.mu.Lock()
			c.readErr = fmt.Errorf("poll %s/trace_pipe: %w", c.dir, err)
			c.mu.Unlock()
			return
		}
		if fds[1].Revents != 0 {
			stopping = true // drain once more, then stop
		}
	}
}

// handleLine turns one trace line into an event, asks for an owner sample
// when it names a socket not yet known, and hands kept events to Sink.
func (c *Collector) handleLine(line []byte, now time.Time) {
	l, lost, ok := parseLine(line)
	if lost > 0 {
		c.lostReported.Add(lost)
		return
	}
	if !ok {
		if len(bytes.TrimSpace(line)) > 0 {
			c.unparsed.Add(1)
		}
		return
	}
	f, ok := parseFields(l.name, l.body)
	if !ok {
		switch string(l.name) {
		case tpSendReset, tpReceiveReset, tpSetState:
			c.unparsed.Add(1)
		}
		return // markers and other events of the instance
	}
	if f.notTCP {
		return
	}
	c.read.Add(1)
	e := c.event(&l, &f, now)
	if c.filter.keep(&e, c.self, c.ownedBySelf) {
		c.kept.Add(1)
		if c.opts.Sink != nil {
			c.opts.Sink(e.KernelEvent)
		}
	}
}

func (c *Collector) ownedBySelf(local, remote netip.AddrPort) bool {
	return c.owners != nil && c.owners.ownedBySelf(local, remote)
}

// event builds the record: wall time, process, owner.
func (c *Collector) event(l *traceLine, f *tcpFields, now time.Time) Event {
	clock := c.clock.Load()
	pid, comm := c.procs.process(l.tid, l.tgid, l.comm, now)
	e := Event{Local: f.local, Remote: f.remote}
	e.KernelEvent = session.KernelEvent{
		Time:       clock.wall(l.micros),
		KernelTime: float64(l.micros) / 1e6,
		Event:      f.event,
		LocalAddr:  f.local.String(),
		RemoteAddr: f.remote.String(),
		State:      f.state,
		Reason:     f.reason,
		OldState:   f.oldState,
		NewState:   f.newState,
		SockCookie: f.cookie,
		TID:        l.tid,
		PID:        pid,
		Comm:       comm,
		Softirq:    l.softirq,
	}
	if c.owners == nil {
		return e
	}
	s, known := c.owners.lookup(f.local, f.remote, f.cookie)
	if known {
		e.OwnerPID, e.OwnerComm = s.pid, s.comm
		if e.SockCookie == 0 {
			e.SockCookie = s.cookie
		}
	}
	switch {
	case f.event == session.KernelState && f.newState == "TCP_ESTABLISHED":
		// A new connection: its 4-tuple may have served an older socket.
		if known && c.owners.forget(f.local, f.remote, e.Time) {
			e.OwnerPID, e.OwnerComm, e.SockCookie = 0, "", f.cookie
		}
		if c.filter.all || c.filter.own || c.filter.match != nil || c.filter.byAddress(f.local, f.remote) {
			c.requestSample()
		}
	case f.event != session.KernelState && !known && f.local.Port() != 0:
		if c.filter.all || c.filter.own || c.filter.match != nil || c.filter.byAddress(f.local, f.remote) {
			c.requestSample()
		}
	}
	return e
}

func (c *Collector) requestSample() {
	select {
	case c.sampleReq <- struct{}{}:
	default:
	}
}

func (c *Collector) sampleLoop() {
	defer close(c.sampDone)
	tick := time.NewTicker(c.opts.OwnerInterval)
	defer tick.Stop()
	c.owners.sample(time.Now())
	last := time.Now()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		case <-c.sampleReq:
			if wait := OwnerMinGap - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-c.stop:
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
		last = time.Now()
		c.owners.sample(last)
	}
}

// readOverrun sums the per-CPU buffers' loss counters.
func (c *Collector) readOverrun() {
	cpus, err := os.ReadDir(filepath.Join(c.dir, "per_cpu"))
	if err != nil {
		return
	}
	var total uint64
	for _, cpu := range cpus {
		b, err := os.ReadFile(filepath.Join(c.dir, "per_cpu", cpu.Name(), "stats"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			key, val, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch key {
			case "overrun", "commit overrun", "dropped events":
				n, _ := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
				total += n
			}
		}
	}
	c.overrun.Store(total)
}

// Close stops reading (events already in the kernel buffer are read
// first), disables the events and removes the instance. It is safe to call
// twice and from several goroutines (a signal handler and the main path):
// every call returns when the instance is gone. It waits for a Sink call
// in progress, so Sink must not call it. tracefs stays mounted if Start
// mounted it (a sibling may be using that mount; under `ip netns exec`
// it lives in the process's own mount namespace and goes with it).
func (c *Collector) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		var one [8]byte
		one[0] = 1
		unix.Write(c.wakeFD, one[:])
		<-c.readDone
		<-c.sampDone
		c.readOverrun()
		c.release()
		err := removeInstance(c.dir)
		forgetInstance(c.name)
		c.mu.Lock()
		c.closeErr = err
		c.stopped = time.Now()
		c.mu.Unlock()
		close(c.done)
	})
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// Done is closed once the collector has stopped and removed its instance
// (after Close, or after the context given to Start ended).
func (c *Collector) Done() <-chan struct{} { return c.done }

// Err is the error that stopped reading early (the instance was removed
// from outside, say); nil while reading works.
func (c *Collector) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// Instance is the instance's directory.
func (c *Collector) Instance() string { return c.dir }

// Owner returns the process that holds (or last held) the socket
// local→remote, as the socket table knows it.
func (c *Collector) Owner(local, remote netip.AddrPort) (Owner, bool) {
	if c.owners == nil {
		return Owner{}, false
	}
	s, ok := c.owners.lookup(netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()), 0)
	if !ok || s.pid == 0 {
		return Owner{}, false
	}
	return Owner{PID: s.pid, Comm: s.comm, Cookie: s.cookie, Inode: s.inode}, true
}

// Stats returns the counters so far.
func (c *Collector) Stats() Stats {
	s := Stats{
		Read: c.read.Load(), Kept: c.kept.Load(),
		LostReported: c.lostReported.Load(), Overrun: c.overrun.Load(),
		Unparsed: c.unparsed.Load(),
	}
	s.Lost = max(s.LostReported, s.Overrun)
	if c.owners != nil {
		s.OwnerSamples, s.OwnerScans, s.Sockets = c.owners.samples.Load(), c.owners.scans.Load(), c.owners.size()
	}
	return s
}

// Info is the collector's meta record for the session file.
func (c *Collector) Info() session.KernelInfo {
	st := c.Stats()
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	return session.KernelInfo{
		Instance:          c.dir,
		Events:            append([]string(nil), c.events...),
		Clock:             traceClock,
		ClockOffsetErrorS: float64(c.clock.Load().errNs) / 1e9,
		BufferBytes:       int64(c.bufferKB) * 1024,
		Started:           c.started,
		Stopped:           stopped,
		EventsRead:        st.Read,
		EventsKept:        st.Kept,
		EventsLost:        st.Lost,
		OwnerSamples:      st.OwnerSamples,
	}
}
