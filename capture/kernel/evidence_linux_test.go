package kernel

import (
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// TestKernelReasonsLive: every reason this kernel prints is explained.
func TestKernelReasonsLive(t *testing.T) {
	needTracing(t)
	names, err := KernelReasons()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, "TCP_ABORT_ON_CLOSE") {
		t.Errorf("reasons %q", names)
	}
	for _, n := range names {
		if _, ok := ExplainReason(n); !ok {
			t.Errorf("this kernel prints %s, which Reasons does not explain", n)
		}
	}
}

// TestNoSocket: a process connects to a closed port; the kernel answers
// with NO_SOCKET, in the context of the connecting process (loopback runs
// the receive in the sender's system call, in softirq).
func TestNoSocket(t *testing.T) {
	closed := closedPort(t)
	_, log := startCollector(t, Options{Filter: Filter{Ports: []uint16{closed.Port()}}})
	var e session.KernelEvent
	var dialer *child
	// A machine under load may hand the softirq to ksoftirqd: then the
	// task is ksoftirqd's and the test connects again (three times at most).
	for attempt := 1; ; attempt++ {
		dialer = startChild(t, "dial", "ssk-connect", []string{"ADDR=" + closed.String()})
		if msg := dialer.expect(t, "DIALERR "); !strings.Contains(msg, "refused") {
			t.Fatalf("dial: %s", msg)
		}
		pid := dialer.pid
		e = log.waitFor(t, "send_reset from the closed port", func(e session.KernelEvent) bool {
			return e.Event == session.KernelSendReset && e.LocalAddr == closed.String() && (e.PID == pid || strings.HasPrefix(e.Comm, "ksoftirqd"))
		})
		if e.PID == pid || attempt == 3 {
			break
		}
		t.Logf("attempt %d: the reset ran in %s; connecting again", attempt, e.Comm)
	}
	if e.Reason != "NO_SOCKET" || e.State != "" || e.OwnerPID != 0 {
		t.Errorf("reset %+v, want NO_SOCKET without a socket", e)
	}
	if e.PID != dialer.pid || e.Comm != "ssk-connect" || !e.Softirq {
		t.Errorf("reset ran in pid %d (%s, softirq %v), want the connecting process %d (ssk-connect) in softirq", e.PID, e.Comm, e.Softirq, dialer.pid)
	}
	r := log.waitFor(t, "receive_reset on the connecting socket", func(r session.KernelEvent) bool {
		return r.Event == session.KernelReceiveReset && r.LocalAddr == e.RemoteAddr && r.RemoteAddr == e.LocalAddr
	})
	if r.PID != dialer.pid || r.SockCookie == 0 {
		t.Errorf("receive_reset %+v, want the connecting process and a cookie", r)
	}
}

// TestAbortOnClose: a server (its own process) closes a stream whose
// request bytes it never read. The kernel says TCP_ABORT_ON_CLOSE, in the
// server's close, on the server's socket (owner from the socket table);
// the client's receive_reset joins it by 4-tuple.
func TestAbortOnClose(t *testing.T) {
	server := startChild(t, "server", "ssk-server", []string{"ADDR=127.0.0.1:0"})
	addr := mustAddrPort(t, server.expect(t, "LISTEN "))
	c, log := startCollector(t, Options{Filter: Filter{Endpoints: []netip.AddrPort{addr}}})
	conn, err := net.Dial("tcp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	if _, err := conn.Write([]byte("GET /stream HTTP/1.1\r\nHost: feed\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	server.expect(t, "ACCEPTED 0 ")
	owner := waitOwner(t, c, addr, client, server.pid)
	waitOwner(t, c, client, addr, os.Getpid())
	server.send(t, "close 0")
	server.expect(t, "DONE close 0")
	conn.SetReadDeadline(time.Now().Add(deadline))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read: %v, want ECONNRESET", err)
	}

	e := log.waitFor(t, "the server's send_reset", func(e session.KernelEvent) bool {
		return e.Event == session.KernelSendReset && e.LocalAddr == addr.String() && e.RemoteAddr == client.String()
	})
	if e.Reason != "TCP_ABORT_ON_CLOSE" || e.State != "TCP_CLOSE" {
		t.Errorf("reset %+v, want TCP_ABORT_ON_CLOSE in TCP_CLOSE", e)
	}
	if e.PID != server.pid || e.Comm != "ssk-server" || e.Softirq || e.TID == 0 {
		t.Errorf("reset ran in tid %d pid %d (%s, softirq %v), want the server %d (ssk-server) in its close", e.TID, e.PID, e.Comm, e.Softirq, server.pid)
	}
	if e.OwnerPID != server.pid || e.OwnerComm != "ssk-server" || e.SockCookie != owner.Cookie || e.SockCookie == 0 {
		t.Errorf("owner %d %q cookie %d, want %d ssk-server cookie %d", e.OwnerPID, e.OwnerComm, e.SockCookie, server.pid, owner.Cookie)
	}
	r := log.waitFor(t, "the client's receive_reset", func(r session.KernelEvent) bool {
		return r.Event == session.KernelReceiveReset && r.LocalAddr == e.RemoteAddr && r.RemoteAddr == e.LocalAddr
	})
	if r.OwnerPID != os.Getpid() || r.SockCookie == 0 {
		t.Errorf("receive_reset %+v, want this test process as owner and the cookie", r)
	}
	// Loopback: the receive runs inside the sender's close; both within a
	// millisecond, in either order.
	if d := math.Abs(r.KernelTime - e.KernelTime); d > 1e-3 {
		t.Errorf("send %.6f and receive %.6f are %.6f s apart", e.KernelTime, r.KernelTime, d)
	}
	if d := r.Time.Sub(e.Time); d > time.Millisecond || d < -time.Millisecond {
		t.Errorf("wall times %v apart", d)
	}
}

// TestLingerZero: a client process closes with SO_LINGER 0. This kernel
// (6.18) names it TCP_STATE: tcp_close → tcp_disconnect.
func TestLingerZero(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, log := startCollector(t, Options{Filter: Filter{Endpoints: []netip.AddrPort{addr}}})
	dialer := startChild(t, "dial", "ssk-linger", []string{"ADDR=" + addr.String()})
	local, _ := twoAddrs(t, dialer.expect(t, "CONNECTED "))
	var sc net.Conn
	select {
	case sc = <-accepted:
		defer sc.Close()
	case <-time.After(deadline):
		t.Fatal("no connection accepted")
	}
	waitOwner(t, c, local, addr, dialer.pid)
	dialer.send(t, "linger")
	dialer.expect(t, "DONE linger")
	sc.SetReadDeadline(time.Now().Add(deadline))
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server read: %v, want ECONNRESET", err)
	}
	e := log.waitFor(t, "the client's send_reset", func(e session.KernelEvent) bool {
		return e.Event == session.KernelSendReset && e.LocalAddr == local.String()
	})
	t.Logf("SO_LINGER 0 close: reason %s, state %s", e.Reason, e.State)
	if e.Reason != "TCP_STATE" {
		t.Errorf("reason %s, want TCP_STATE (what 6.10–6.18 send for SO_LINGER 0)", e.Reason)
	}
	if e.PID != dialer.pid || e.Comm != "ssk-linger" || e.Softirq || e.OwnerPID != dialer.pid || e.OwnerComm != "ssk-linger" {
		t.Errorf("reset %+v, want the lingering process %d as task and owner", e, dialer.pid)
	}
}

// TestKeepaliveTimeout: a stream that sends nothing, with short keepalive
// settings, to a server whose link goes down: the client gets ETIMEDOUT
// and the kernel resets with TCP_KEEPALIVE_TIMEOUT from its timer
// (softirq: the task is incidental, the owner is the client).
func TestKeepaliveTimeout(t *testing.T) {
	needTracing(t)
	ns := newNetns(t)
	server := startChild(t, "server", "ssk-silent", []string{"ADDR=" + ns.nsIP.String() + ":0"}, ns.exec()...)
	addr := mustAddrPort(t, server.expect(t, "LISTEN "))
	c, log := startCollector(t, Options{Filter: Filter{Endpoints: []netip.AddrPort{addr}}})
	client := startChild(t, "dial", "ssk-keepalive", []string{"ADDR=" + addr.String(), "KEEPALIVE=1,1,2"})
	local, _ := twoAddrs(t, client.expect(t, "CONNECTED "))
	client.send(t, "read")
	waitOwner(t, c, local, addr, client.pid)
	start := time.Now()
	ns.blackhole(t)
	if got := client.expect(t, "READERR "); got != "ETIMEDOUT" {
		t.Errorf("client error %s, want ETIMEDOUT", got)
	}
	took := time.Since(start)
	e := log.waitFor(t, "the keepalive reset", func(e session.KernelEvent) bool {
		return e.Event == session.KernelSendReset && e.LocalAddr == local.String()
	})
	if e.Reason != "TCP_KEEPALIVE_TIMEOUT" || e.RemoteAddr != addr.String() {
		t.Errorf("reset %+v, want TCP_KEEPALIVE_TIMEOUT to %s", e, addr)
	}
	if !e.Softirq || e.OwnerPID != client.pid || e.OwnerComm != "ssk-keepalive" {
		t.Errorf("reset softirq %v owner %d %q, want a timer (softirq) and owner %d ssk-keepalive", e.Softirq, e.OwnerPID, e.OwnerComm, client.pid)
	}
	// Idle 1 s + 2 probes 1 s apart: about 3 s after the last answered
	// probe; the link went down up to 1 s after one.
	if took > 8*time.Second {
		t.Errorf("ETIMEDOUT after %v, want about 3 s", took)
	}
}

// TestNetnsMountsTracefs: under `ip netns exec`, /sys is a fresh sysfs
// with no tracefs: the collector mounts it (in the child's own mount
// namespace) and reads the namespace's resets; the instance is the host's
// too (tracefs is one), and it is gone when the child quits.
func TestNetnsMountsTracefs(t *testing.T) {
	needTracing(t)
	ns := newNetns(t)
	col := startChild(t, "collect", "ssk-nscollect", []string{"FILTER=ports=1"}, ns.exec()...)
	if before := col.expect(t, "TRACEFS_BEFORE "); before != "false" {
		t.Errorf("tracefs was already mounted inside the namespace: the mount path is not exercised")
	}
	dir := col.expect(t, "INSTANCE ")
	hostDir := strings.Replace(dir, tracefsDebugDir, tracefsDir, 1)
	if _, err := os.Stat(hostDir); err != nil {
		t.Errorf("the child's instance is not visible on the host: %v", err)
	}
	col.send(t, "nosocket")
	if got := col.expect(t, "NOSOCKET "); got != "ECONNREFUSED" {
		t.Errorf("connect in the namespace: %s", got)
	}
	e := col.events.waitFor(t, "NO_SOCKET inside the namespace", func(e session.KernelEvent) bool {
		return e.Event == session.KernelSendReset && e.LocalAddr == "127.0.0.1:1"
	})
	// In softirq context the task is whatever ran: the child's own connect
	// usually, another process's on a loaded machine.
	if e.Reason != "NO_SOCKET" || (e.PID != col.pid && !e.Softirq) {
		t.Errorf("reset %+v, want NO_SOCKET in the child %d (or in softirq)", e, col.pid)
	}
	col.send(t, "quit")
	if got := col.expect(t, "CLOSED "); got != "<nil>" {
		t.Errorf("close: %s", got)
	}
	if code := col.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if _, err := os.Stat(hostDir); !os.IsNotExist(err) {
		t.Errorf("instance %s left behind (%v)", hostDir, err)
	}
}

// TestFilterOwnSockets: two collectors in two processes on one host each
// keep only their own sockets' events, although the tracepoints show both
// (and this test process's resets) to each.
func TestFilterOwnSockets(t *testing.T) {
	needTracing(t)
	a := startChild(t, "collect", "ssk-col-a", []string{"FILTER=own"})
	b := startChild(t, "collect", "ssk-col-b", []string{"FILTER=own"})
	a.expect(t, "INSTANCE ")
	b.expect(t, "INSTANCE ")
	// A reset among this test's own sockets, which neither may keep.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Read(make([]byte, 1))
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	mine, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	mine.Write([]byte("x"))
	mine.SetReadDeadline(time.Now().Add(deadline))
	io.Copy(io.Discard, mine)
	mine.Close()
	testAddrs := map[string]bool{ln.Addr().String(): true, mine.LocalAddr().String(): true}

	addrs := map[*child]map[string]bool{}
	for _, c := range []*child{a, b} {
		c.send(t, "traffic")
		server, client := twoAddrs(t, c.expect(t, "TRAFFIC "))
		addrs[c] = map[string]bool{server.String(): true, client.String(): true}
	}
	for _, c := range []*child{a, b} {
		c.send(t, "quit")
		c.expect(t, "CLOSED ")
		c.wait(t)
	}
	for _, c := range []*child{a, b} {
		other := b
		if c == b {
			other = a
		}
		evs := c.events.all()
		var sends, receives int
		for _, e := range evs {
			if !addrs[c][e.LocalAddr] && !addrs[c][e.RemoteAddr] {
				t.Errorf("%s kept an event of another's socket: %+v", c.cmd.Path, e)
			}
			if addrs[other][e.LocalAddr] || addrs[other][e.RemoteAddr] || testAddrs[e.LocalAddr] || testAddrs[e.RemoteAddr] {
				t.Errorf("%s kept a foreign event: %+v", c.cmd.Path, e)
			}
			switch {
			case e.Event == session.KernelSendReset && e.Reason == "TCP_ABORT_ON_CLOSE":
				sends++
			case e.Event == session.KernelReceiveReset:
				receives++
			}
		}
		if sends != 1 || receives != 1 {
			t.Errorf("%s kept %d sends and %d receives of its own reset, want 1 each:\n%s", c.cmd.Path, sends, receives, dumpEvents(evs))
		}
	}
}

// TestClockMapsToWallTime: the wall time given to an event lies between
// clock readings taken before and after the system call that caused it.
func TestClockMapsToWallTime(t *testing.T) {
	closed := closedPort(t)
	c, log := startCollector(t, Options{Filter: Filter{Ports: []uint16{closed.Port()}}, OwnerInterval: -1})
	var worst time.Duration
	for i := 0; i < 5; i++ {
		before := time.Now()
		_, err := net.Dial("tcp4", closed.String())
		after := time.Now()
		if err == nil {
			t.Fatal("the closed port accepted")
		}
		n := i
		e := log.waitFor(t, "NO_SOCKET", func(e session.KernelEvent) bool {
			return e.Event == session.KernelSendReset && !e.Time.Before(before.Add(-time.Millisecond)) && n >= 0
		})
		// The trace prints microseconds (truncated) and the offset is
		// measured within ClockOffsetErrorS: allow 2 µs plus that.
		slack := 2*time.Microsecond + time.Duration(c.Info().ClockOffsetErrorS*1e9)
		if e.Time.Before(before.Add(-slack)) || e.Time.After(after.Add(slack)) {
			t.Errorf("event at %v, outside the call [%v, %v] ± %v", e.Time, before, after, slack)
		}
		if d := e.Time.Sub(before); d > worst {
			worst = d
		}
		log.mu.Lock()
		log.events = nil
		log.mu.Unlock()
	}
	t.Logf("clock offset error %.0f ns; event at most %v after the call began", c.Info().ClockOffsetErrorS*1e9, worst)
}

// TestLiveSetWithoutStateEvents: with NoStateEvents only the two reset
// tracepoints run, and Filter.Live keeps exactly the sockets the process
// put in the set while it runs.
func TestLiveSetWithoutStateEvents(t *testing.T) {
	live := NewEndpointSet()
	c, log := startCollector(t, Options{Filter: Filter{Live: live}, NoStateEvents: true, OwnerInterval: -1})
	if ev := c.Info().Events; len(ev) != 2 || slices.Contains(ev, eventSetState) {
		t.Errorf("events enabled: %q", ev)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reset := func(track bool) netip.AddrPort {
		cl, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		local := cl.LocalAddr().(*net.TCPAddr).AddrPort()
		if track {
			live.Add(local)
		}
		sv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		sv.(*net.TCPConn).SetLinger(0)
		sv.Close()
		cl.SetReadDeadline(time.Now().Add(deadline))
		cl.Read(make([]byte, 1))
		return local
	}
	untracked := reset(false)
	tracked := reset(true)
	log.waitFor(t, "the tracked socket's receive_reset", func(e session.KernelEvent) bool {
		return e.Event == session.KernelReceiveReset && e.LocalAddr == tracked.String()
	})
	log.waitFor(t, "the reset sent to the tracked socket", func(e session.KernelEvent) bool {
		return e.Event == session.KernelSendReset && e.RemoteAddr == tracked.String() && e.Reason == "TCP_STATE"
	})
	c.Close()
	for _, e := range log.all() {
		if e.Event == session.KernelState {
			t.Errorf("a state event with NoStateEvents: %+v", e)
		}
		if e.LocalAddr == untracked.String() || e.RemoteAddr == untracked.String() {
			t.Errorf("an untracked socket's event kept: %+v", e)
		}
	}
	if live.Len() != 1 {
		t.Errorf("set holds %d", live.Len())
	}
}
