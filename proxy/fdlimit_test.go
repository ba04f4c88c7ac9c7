//go:build linux

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The child process of TestAcceptBacksOffAtFDLimit: a proxy whose file
// descriptor limit is a few above what the process has open at start. It
// prints "ADDR host:port", then "STATS accept=N dial=N conns=N" every 50
// ms, and exits when its stdin closes (or after a minute).
const fdChildEnv = "SSESTRESS_FDLIMIT_CHILD"

func TestFDLimitChild(t *testing.T) {
	upstream := os.Getenv(fdChildEnv)
	if upstream == "" {
		t.Skip("the child process of TestAcceptBacksOffAtFDLimit")
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Room for the listener, the session-less proxy's few descriptors and
	// about ten client connections.
	lim.Cur = uint64(len(open) + 14)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	p, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", Upstream: upstream,
		Logf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADDR %s\n", p.Addr())
	stdinClosed := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for end := time.After(time.Minute); ; {
		select {
		case <-stdinClosed:
			p.Close()
			return
		case <-end:
			t.Fatal("the parent never closed stdin")
		case <-tick.C:
			st := p.Stats()
			fmt.Printf("STATS accept=%d dial=%d conns=%d\n", st.AcceptErrors, st.DialErrors, st.Conns)
		}
	}
}

// childStats is the last STATS line of the child.
type childStats struct {
	mu                  sync.Mutex
	accept, dial, conns int64
	lines               int
	addr                string
	addrCh              chan string
	addrOnce            sync.Once
}

func (c *childStats) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if a, ok := strings.CutPrefix(line, "ADDR "); ok {
			c.addrOnce.Do(func() { c.addrCh <- a })
			continue
		}
		var a, d, n int64
		if _, err := fmt.Sscanf(line, "STATS accept=%d dial=%d conns=%d", &a, &d, &n); err == nil {
			c.mu.Lock()
			c.accept, c.dial, c.conns, c.lines = a, d, n, c.lines+1
			c.mu.Unlock()
		}
	}
}

func (c *childStats) get() (accept, dial, conns int64, lines int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accept, c.dial, c.conns, c.lines
}

// childCPU is the CPU time a process has used (utime + stime of
// /proc/PID/stat, in clock ticks of 10 ms).
func childCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// TestAcceptBacksOffAtFDLimit: a proxy out of file descriptors counts its
// failed accepts and dials, backs off instead of spinning a CPU, stays up,
// and serves again once descriptors are free. The proxy runs in a child
// process (this test binary again) whose limit is lowered, so this
// process keeps its own.
func TestAcceptBacksOffAtFDLimit(t *testing.T) {
	srv := script(t, ticker(100, 20*time.Millisecond, time.Second))
	cmd := exec.Command(os.Args[0], "-test.run=^TestFDLimitChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fdChildEnv+"="+srv.URL)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr proxyTestLog
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	stats := &childStats{addrCh: make(chan string, 1)}
	go func() {
		stats.read(stdout)
		exited <- cmd.Wait()
	}()
	defer func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	}()
	var addr string
	select {
	case addr = <-stats.addrCh:
	case err := <-exited:
		t.Fatalf("child ended: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("child gave no address\n%s", stderr.String())
	}

	// One connection accepted while descriptors remain, to ask for an
	// upstream dial later.
	first, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	waitFor(t, 10*time.Second, "the first connection accepted", func() bool { _, _, n, _ := stats.get(); return n >= 1 })

	// Connections until accept fails: the kernel completes them into the
	// backlog, the child cannot take them.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for len(held) < 200 {
		if a, _, _, _ := stats.get(); a > 0 {
			break
		}
		for i := 0; i < 5; i++ {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("dial %d: %v", len(held), err)
			}
			held = append(held, c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "a failed accept", func() bool { a, _, _, _ := stats.get(); return a > 0 })

	// No spinning: the child's CPU over two seconds stays small (a spin
	// would take the whole two seconds of one core).
	const window = 2 * time.Second
	before := childCPU(t, cmd.Process.Pid)
	time.Sleep(window)
	used := childCPU(t, cmd.Process.Pid) - before
	if used > window/5 {
		t.Fatalf("the child used %v of CPU in %v at the descriptor limit", used, window)
	}
	a, _, _, lines := stats.get()
	t.Logf("%d connections held, %d failed accepts, %v CPU in %v", len(held)+1, a, used, window)

	// The upstream dial fails too, and is counted; the client gets 502.
	first.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(first, "GET /ticks HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	status, err := bufio.NewReader(first).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 502") {
		t.Fatalf("request at the limit: %q %v", status, err)
	}
	waitFor(t, 5*time.Second, "a counted dial failure", func() bool { _, d, _, _ := stats.get(); return d > 0 })

	// Alive: still reporting.
	waitFor(t, 5*time.Second, "the child to report again", func() bool { _, _, _, l := stats.get(); return l > lines })
	select {
	case err := <-exited:
		t.Fatalf("the child died: %v\n%s", err, stderr.String())
	default:
	}

	// Descriptors free again: it serves.
	first.Close()
	for _, c := range held {
		c.Close()
	}
	held = nil
	g := readStream(t, "http://"+addr+"/ticks", 3, 15*time.Second)
	if len(g.events) != 3 {
		t.Fatalf("after the descriptors were freed: %d events, %v\n%s", len(g.events), g.err, stderr.String())
	}
	log := stderr.String()
	if !strings.Contains(log, "too many open files") || !strings.Contains(log, "accept works again") {
		t.Errorf("child log lacks the backoff and the recovery:\n%s", log)
	}
}

// proxyTestLog is a locked buffer for a child's stderr.
type proxyTestLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *proxyTestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *proxyTestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
