package kernel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// deadline bounds every wait of a live test: generous, the machine is
// shared.
const deadline = 20 * time.Second

// childEnv makes a copy of the test binary run one of the child roles
// (runChild) instead of the tests.
const childEnv = "KERNEL_TEST_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

// needTracing skips a test that needs root and a kernel with reset
// reasons; it says which.
func needTracing(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel tracing needs root (the CI machine runs as root); skipping")
	}
	if _, _, err := findTracefs(""); err != nil {
		t.Skip(err.Error() + "; skipping")
	}
	if _, err := KernelReasons(); err != nil {
		t.Skip(err.Error() + "; skipping")
	}
}

// eventLog collects what a collector keeps.
type eventLog struct {
	mu     sync.Mutex
	events []session.KernelEvent
	added  chan struct{}
}

func newEventLog() *eventLog { return &eventLog{added: make(chan struct{}, 1)} }

func (l *eventLog) add(e session.KernelEvent) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.added <- struct{}{}:
	default:
	}
}

func (l *eventLog) all() []session.KernelEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]session.KernelEvent(nil), l.events...)
}

// waitFor returns the first event that satisfies match, waiting at most
// deadline.
func (l *eventLog) waitFor(t testing.TB, what string, match func(session.KernelEvent) bool) session.KernelEvent {
	t.Helper()
	end := time.After(deadline)
	for {
		for _, e := range l.all() {
			if match(e) {
				return e
			}
		}
		select {
		case <-l.added:
		case <-end:
			t.Fatalf("no %s among %d kernel events:\n%s", what, len(l.all()), dumpEvents(l.all()))
		}
	}
}

func dumpEvents(evs []session.KernelEvent) string {
	var b strings.Builder
	for _, e := range evs {
		j, _ := json.Marshal(e)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// startCollector starts a collector in the test process, closed at the
// end of the test.
func startCollector(t testing.TB, opts Options) (*Collector, *eventLog) {
	t.Helper()
	needTracing(t)
	log := newEventLog()
	if opts.Sink == nil {
		opts.Sink = log.add
	}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c, log
}

// waitOwner waits until the socket table names the owner of local→remote.
func waitOwner(t testing.TB, c *Collector, local, remote netip.AddrPort, pid int) Owner {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		o, ok := c.Owner(local, remote)
		if ok && o.PID == pid {
			return o
		}
		if time.Now().After(end) {
			t.Fatalf("owner of %s→%s: %+v %v, want pid %d", local, remote, o, ok, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// child is a copy of the test binary running one role of runChild, under
// its own name (a symlink), so its pid and comm differ from the test's.
type child struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan string
	events *eventLog
	pid    int
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// startChild runs role as comm (at most 15 bytes: the kernel's comm),
// with env, behind the wrapper command if any (ip netns exec NS).
func startChild(t testing.TB, role, comm string, env []string, wrapper ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), comm)
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string(nil), wrapper...), link)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), childEnv+"="+role), env...)
	cmd.Stderr = &prefixWriter{t: t, prefix: comm + ": "}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, lines: make(chan string, 1024), events: newEventLog(), pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if js, ok := strings.CutPrefix(line, "EVENT "); ok {
				var e session.KernelEvent
				if json.Unmarshal([]byte(js), &e) == nil {
					c.events.add(e)
				}
				continue
			}
			select {
			case c.lines <- line:
			default:
			}
		}
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		in.Close()
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

// expect waits for a line starting with prefix and returns the rest.
func (c *child) expect(t testing.TB, prefix string) string {
	t.Helper()
	end := time.After(deadline)
	for {
		select {
		case line := <-c.lines:
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return rest
			}
		case <-c.exited:
			// Lines may still be buffered.
			for {
				select {
				case line := <-c.lines:
					if rest, ok := strings.CutPrefix(line, prefix); ok {
						return rest
					}
				default:
					t.Fatalf("%s exited (%v) before saying %q", c.cmd.Path, c.err, prefix)
				}
			}
		case <-end:
			t.Fatalf("%s did not say %q", c.cmd.Path, prefix)
		}
	}
}

func (c *child) send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		t.Fatalf("send %q: %v", line, err)
	}
}

// wait waits for the child to exit and returns its exit code.
func (c *child) wait(t testing.TB) int {
	t.Helper()
	select {
	case <-c.exited:
	case <-time.After(deadline):
		t.Fatalf("%s did not exit", c.cmd.Path)
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	if c.err != nil {
		t.Fatalf("%s: %v", c.cmd.Path, c.err)
	}
	return 0
}

type prefixWriter struct {
	t      testing.TB
	prefix string
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s%s", w.prefix, strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// runChild is the body of a child process. Roles:
//
//	server  listen on $ADDR; "LISTEN addr"; "ACCEPTED i local remote" per
//	        connection; commands "close i" (close, unread data and all),
//	        "linger i" (SO_LINGER 0, then close)
//	dial    connect to $ADDR ($KEEPALIVE "idle,interval,count");
//	        "CONNECTED local remote" or "DIALERR msg"; commands "linger",
//	        "read" (then "READERR <errno>" when the read fails)
//	collect run a collector ($FILTER own|all|ports=p,q, $BUFKB); "INSTANCE
//	        dir" and "EVENT json" lines; commands "traffic", "nosocket",
//	        "quit"; SIGINT ends it as Ctrl-C would (exit 130)
//	start   try Start once; "STARTERR msg" or "STARTED"
//
// Every role ends when its stdin closes (the test ended).
func runChild(role string) int {
	out := &syncWriter{w: os.Stdout}
	cmds := make(chan []string, 16)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- strings.Fields(sc.Text())
		}
		close(cmds)
	}()
	switch role {
	case "server":
		return childServer(out, cmds)
	case "dial":
		return childDial(out, cmds)
	case "collect":
		return childCollect(out, cmds)
	case "start":
		_, err := Start(context.Background(), Options{})
		if err != nil {
			out.printf("STARTERR %s", err)
			return 1
		}
		out.printf("STARTED")
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) printf(format string, args ...any) {
	s.mu.Lock()
	fmt.Fprintf(s.w, format+"\n", args...)
	s.mu.Unlock()
}

func childServer(out *syncWriter, cmds chan []string) int {
	ln, err := net.Listen("tcp", os.Getenv("ADDR"))
	if err != nil {
		out.printf("LISTENERR %v", err)
		return 1
	}
	out.printf("LISTEN %s", ln.Addr())
	var mu sync.Mutex
	var conns []*net.TCPConn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c.(*net.TCPConn))
			i := len(conns) - 1
			mu.Unlock()
			out.printf("ACCEPTED %d %s %s", i, c.LocalAddr(), c.RemoteAddr())
		}
	}()
	for cmd := range cmds {
		if len(cmd) < 2 {
			continue
		}
		i, _ := strconv.Atoi(cmd[1])
		mu.Lock()
		var c *net.TCPConn
		if i >= 0 && i < len(conns) {
			c = conns[i]
		}
		mu.Unlock()
		if c == nil {
			out.printf("NOCONN %d", i)
			continue
		}
		switch cmd[0] {
		case "close":
			c.Close()
		case "linger":
			c.SetLinger(0)
			c.Close()
		}
		out.printf("DONE %s %d", cmd[0], i)
	}
	return 0
}

func childDial(out *syncWriter, cmds chan []string) int {
	d := net.Dialer{Timeout: deadline}
	if ka := os.Getenv("KEEPALIVE"); ka != "" {
		var idle, interval, count int
		fmt.Sscanf(ka, "%d,%d,%d", &idle, &interval, &count)
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: time.Duration(idle) * time.Second,
			Interval: time.Duration(interval) * time.Second, Count: count}
	}
	c, err := d.Dial("tcp", os.Getenv("ADDR"))
	if err != nil {
		out.printf("DIALERR %v", err)
		// Stay alive until told to go, so the test can read our comm.
		for range cmds {
		}
		return 0
	}
	out.printf("CONNECTED %s %s", c.LocalAddr(), c.RemoteAddr())
	for cmd := range cmds {
		switch cmd[0] {
		case "linger":
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			out.printf("DONE linger")
		case "read":
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						out.printf("READERR %s", errnoName(err))
						return
					}
				}
			}()
		}
	}
	return 0
}

func errnoName(err error) string {
	for _, e := range []struct {
		errno syscall.Errno
		name  string
	}{{syscall.ETIMEDOUT, "ETIMEDOUT"}, {syscall.ECONNRESET, "ECONNRESET"}, {syscall.ECONNREFUSED, "ECONNREFUSED"}, {syscall.EPIPE, "EPIPE"}} {
		if errors.Is(err, e.errno) {
			return e.name
		}
	}
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	return "OTHER " + err.Error()
}

func childCollect(out *syncWriter, cmds chan []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	out.printf("TRACEFS_BEFORE %v", isTracefs(tracefsDir) || isTracefs(tracefsDebugDir))
	opts := Options{Sink: func(e session.KernelEvent) {
		j, _ := json.Marshal(e)
		out.printf("EVENT %s", j)
	}}
	switch f := os.Getenv("FILTER"); {
	case f == "own":
		opts.Filter.OwnSockets = true
	case strings.HasPrefix(f, "ports="):
		for _, p := range strings.Split(strings.TrimPrefix(f, "ports="), ",") {
			n, _ := strconv.Atoi(p)
			opts.Filter.Ports = append(opts.Filter.Ports, uint16(n))
		}
	}
	if kb := os.Getenv("BUFKB"); kb != "" {
		opts.BufferSizeKB, _ = strconv.Atoi(kb)
	}
	c, err := Start(ctx, opts)
	if err != nil {
		out.printf("STARTERR %s", err)
		return 1
	}
	out.printf("INSTANCE %s", c.Instance())
	for {
		select {
		case <-c.Done():
			// The context ended (SIGINT): the collector closed itself.
			out.printf("CLOSED %v", c.Err())
			return 130
		case cmd, ok := <-cmds:
			if !ok || cmd[0] == "quit" {
				err := c.Close()
				out.printf("CLOSED %v", err)
				if err != nil {
					return 1
				}
				return 0
			}
			switch cmd[0] {
			case "traffic":
				server, client, err := abortOnClose(c)
				if err != nil {
					out.printf("TRAFFICERR %v", err)
					continue
				}
				out.printf("TRAFFIC %s %s", server, client)
			case "nosocket":
				_, err := net.Dial("tcp", "127.0.0.1:1")
				out.printf("NOSOCKET %s", errnoName(err))
			case "stats":
				j, _ := json.Marshal(c.Stats())
				out.printf("STATS %s", j)
			}
		}
	}
}

// abortOnClose makes one TCP_ABORT_ON_CLOSE in this process: a client
// sends bytes the server never reads, the server closes. It waits until
// the collector knows both sockets' owner first.
func abortOnClose(c *Collector) (server, client netip.AddrPort, err error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return server, client, err
	}
	defer ln.Close()
	cl, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return server, client, err
	}
	defer cl.Close()
	sv, err := ln.Accept()
	if err != nil {
		return server, client, err
	}
	server = sv.LocalAddr().(*net.TCPAddr).AddrPort()
	client = cl.LocalAddr().(*net.TCPAddr).AddrPort()
	cl.Write([]byte("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"))
	end := time.Now().Add(deadline)
	for {
		_, ok1 := c.Owner(server, client)
		_, ok2 := c.Owner(client, server)
		if ok1 && ok2 {
			break
		}
		if time.Now().After(end) {
			return server, client, fmt.Errorf("owners of %s and %s never sampled", server, client)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the request bytes are queued on the server side by now
	sv.Close()
	cl.SetReadDeadline(time.Now().Add(deadline))
	_, err = cl.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		return server, client, fmt.Errorf("client read: %v, want ECONNRESET", err)
	}
	return server, client, nil
}

// netns is a network namespace with a veth pair to the host.
type netns struct {
	name, hostIf, nsIf string
	hostIP, nsIP       netip.Addr
}

var netnsSeq atomic.Int32

// newNetns creates a namespace "sskNNNNN-k" with 10.231.X.1 (host side)
// and 10.231.X.2 (inside), removed at the end of the test.
func newNetns(t testing.TB) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 (ip) not installed; skipping the network namespace test")
	}
	k := int(netnsSeq.Add(1))
	x := (os.Getpid()*7 + k) % 250
	n := &netns{
		name:   fmt.Sprintf("ssk%d-%d", os.Getpid(), k),
		hostIf: fmt.Sprintf("skh%d%d", os.Getpid()%100000, k),
		nsIf:   fmt.Sprintf("skn%d%d", os.Getpid()%100000, k),
		hostIP: netip.AddrFrom4([4]byte{10, 231, byte(x), 1}),
		nsIP:   netip.AddrFrom4([4]byte{10, 231, byte(x), 2}),
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", n.name)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", n.hostIf).Run()
		exec.Command("ip", "netns", "del", n.name).Run()
	})
	run("ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf)
	run("ip", "link", "set", n.nsIf, "netns", n.name)
	run("ip", "addr", "add", n.hostIP.String()+"/24", "dev", n.hostIf)
	run("ip", "link", "set", n.hostIf, "up")
	run("ip", "netns", "exec", n.name, "ip", "addr", "add", n.nsIP.String()+"/24", "dev", n.nsIf)
	run("ip", "netns", "exec", n.name, "ip", "link", "set", n.nsIf, "up")
	run("ip", "netns", "exec", n.name, "ip", "link", "set", "lo", "up")
	return n
}

// exec is the wrapper that runs a command inside the namespace.
func (n *netns) exec() []string { return []string{"ip", "netns", "exec", n.name} }

// blackhole takes the namespace's end of the link down: the host's
// packets to it vanish, nothing answers.
func (n *netns) blackhole(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", n.name, "ip", "link", "set", n.nsIf, "down").CombinedOutput(); err != nil {
		t.Fatalf("link down: %v\n%s", err, out)
	}
}

func mustAddrPort(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(strings.TrimSpace(s))
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// twoAddrs reads "local remote".
func twoAddrs(t testing.TB, s string) (netip.AddrPort, netip.AddrPort) {
	t.Helper()
	f := strings.Fields(s)
	if len(f) < 2 {
		t.Fatalf("want two addresses in %q", s)
	}
	return mustAddrPort(t, f[len(f)-2]), mustAddrPort(t, f[len(f)-1])
}

// closedPort is a loopback port nothing listens on (it did a moment ago).
func closedPort(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return a
}
