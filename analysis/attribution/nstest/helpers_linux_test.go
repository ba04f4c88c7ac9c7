//go:build linux

package nstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/session"
)

// childEnv selects what the test binary does when a test starts it as a
// child process (a test server or client inside a namespace).
const childEnv = "SSESTRESS_NSTEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// ssestress builds the binary once per test run (CGO_ENABLED=0, the build
// CI does first, so it comes from the build cache) and returns its path.
func ssestress(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go tool not found: %w", err)
			return
		}
		if binDir, err = os.MkdirTemp("", "ssestress-nstest-"); err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "ssestress")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", binPath, "github.com/ssestress/ssestress/cmd/ssestress")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// needRoot skips a test that needs root and the network tools.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, iptables and packet capture")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian: iproute2, iptables, conntrack); .ci/run installs them", tool)
		}
	}
}

var labSeq atomic.Int32

// lab is one test's network: namespaces, processes and a directory.
type lab struct {
	t      *testing.T
	dir    string
	bin    string
	id     int
	prefix string
	// client, router and server are the namespaces (one, "client", when
	// the lab is not routed); clientIP and serverIP the addresses of a
	// routed lab's end namespaces.
	client, router, server string
	clientIP, serverIP     string
	mu                     sync.Mutex
	procs                  []*proc
}

// newLab makes a namespace with loopback up; routed makes three (client,
// router, server) joined by two veth pairs, the router forwarding.
func newLab(t *testing.T, routed bool) *lab {
	t.Helper()
	tools := []string{}
	if routed {
		tools = append(tools, "iptables", "conntrack")
	}
	needRoot(t, tools...)
	l := &lab{t: t, dir: t.TempDir(), bin: ssestress(t), id: int(labSeq.Add(1))}
	l.prefix = fmt.Sprintf("sa%d%d", os.Getpid()%10000, l.id)
	l.client = l.prefix + "c"
	names := []string{l.client}
	if routed {
		l.router, l.server = l.prefix+"r", l.prefix+"s"
		names = append(names, l.router, l.server)
	}
	t.Cleanup(func() {
		l.mu.Lock()
		procs := l.procs
		l.mu.Unlock()
		for _, p := range procs {
			p.kill()
		}
		for _, n := range names {
			exec.Command("ip", "netns", "del", n).Run()
		}
	})
	for _, n := range names {
		l.sh("ip", "netns", "add", n)
		l.sh("ip", "netns", "exec", n, "ip", "link", "set", "lo", "up")
	}
	if !routed {
		return l
	}
	x := (os.Getpid()*3 + l.id*2) % 250
	left, right := fmt.Sprintf("10.77.%d.", x), fmt.Sprintf("10.77.%d.", x+1)
	l.clientIP, l.serverIP = left+"2", right+"2"
	cIf, r0, r1, sIf := l.prefix+"c0", l.prefix+"r0", l.prefix+"r1", l.prefix+"s0"
	l.sh("ip", "link", "add", cIf, "type", "veth", "peer", "name", r0)
	l.sh("ip", "link", "add", r1, "type", "veth", "peer", "name", sIf)
	l.sh("ip", "link", "set", cIf, "netns", l.client)
	l.sh("ip", "link", "set", r0, "netns", l.router)
	l.sh("ip", "link", "set", r1, "netns", l.router)
	l.sh("ip", "link", "set", sIf, "netns", l.server)
	l.in(l.client, "ip", "addr", "add", left+"2/24", "dev", cIf)
	l.in(l.client, "ip", "link", "set", cIf, "up")
	l.in(l.client, "ip", "route", "add", "default", "via", left+"1")
	l.in(l.router, "ip", "addr", "add", left+"1/24", "dev", r0)
	l.in(l.router, "ip", "link", "set", r0, "up")
	l.in(l.router, "ip", "addr", "add", right+"1/24", "dev", r1)
	l.in(l.router, "ip", "link", "set", r1, "up")
	l.in(l.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.in(l.server, "ip", "addr", "add", right+"2/24", "dev", sIf)
	l.in(l.server, "ip", "link", "set", sIf, "up")
	l.in(l.server, "ip", "route", "add", "default", "via", right+"1")
	return l
}

// serverIf and routerServerIf are the routed lab's interfaces on the
// server's link.
func (l *lab) serverIf() string { return l.prefix + "s0" }

// sh runs a setup command and fails the test on error.
func (l *lab) sh(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// in runs a setup command inside a namespace.
func (l *lab) in(ns string, args ...string) string {
	l.t.Helper()
	return l.sh(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// waitEstablished waits until namespace ns holds at least n established
// TCP connections on local port port (ss, iproute2), so a test acts on
// streams that exist, however slowly the processes started.
func (l *lab) waitEstablished(ns, port string, n int, timeout time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := exec.Command("ip", "netns", "exec", ns, "ss", "-Htn", "state", "established", "sport", "= :"+port).Output()
		if strings.Count(string(out), "\n") >= n {
			return
		}
		if time.Now().After(deadline) {
			l.t.Errorf("fewer than %d connections established on port %s within %s:\n%s", n, port, timeout, out)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// path is a file of the lab's directory.
func (l *lab) path(name string) string { return filepath.Join(l.dir, name) }

// proc is a process of the lab.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start starts ssestress with args inside namespace ns.
func (l *lab) start(ns, name string, args ...string) *proc {
	l.t.Helper()
	return l.startCmd(ns, name, nil, append([]string{l.bin}, args...)...)
}

// startChild starts this test binary as a child (a test server or client)
// inside namespace ns, with env.
func (l *lab) startChild(ns, name string, env map[string]string) *proc {
	l.t.Helper()
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	var e []string
	for k, v := range env {
		e = append(e, k+"="+v)
	}
	return l.startCmd(ns, name, e, self, "-test.run=^$")
}

func (l *lab) startCmd(ns, name string, env []string, args ...string) *proc {
	l.t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.Dir = l.dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// waitFor waits until the process's output matches re and returns the
// submatches; it fails the test after timeout or if the process exits.
func (p *proc) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := re.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			t.Fatalf("%s exited (%v) before printing %s:\n%s", p.name, p.err, re, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %s within %s:\n%s", p.name, re, timeout, p.out.String())
		}
	}
}

// wait waits for the process to exit on its own and fails on error.
func (p *proc) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		t.Fatalf("%s did not end within %s:\n%s", p.name, timeout, p.out.String())
	}
	if p.err != nil {
		t.Fatalf("%s: %v\n%s", p.name, p.err, p.out.String())
	}
}

// stop asks the process to stop (SIGINT, as Ctrl-C) and waits.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.kill()
		t.Fatalf("%s did not stop within 20 s of SIGINT:\n%s", p.name, p.out.String())
	}
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

var (
	listeningRe = regexp.MustCompile(`listening on (http://[0-9.]+:[0-9]+)`)
	servingRe   = regexp.MustCompile(`serving SSE quote feed on (http://[0-9.]+:[0-9]+)/`)
)

// serve starts the embedded SSE server in ns and returns its base URL.
func (l *lab) serve(ns, listen string, args ...string) (*proc, string) {
	l.t.Helper()
	p := l.start(ns, "serve", append([]string{"serve", "--listen", listen}, args...)...)
	return p, p.waitFor(l.t, servingRe, 10*time.Second)[1]
}

// proxy starts ssestress proxy in ns in front of upstream and returns its
// base URL.
func (l *lab) proxy(ns, name, upstream string, args ...string) (*proc, string) {
	l.t.Helper()
	p := l.start(ns, "proxy "+name, append([]string{"proxy", "--name", name, "--listen", "127.0.0.1:0", "--upstream", upstream,
		"--out", l.path(name + ".db")}, args...)...)
	url := p.waitFor(l.t, listeningRe, 10*time.Second)[1]
	if slicesContain(args, "--capture") {
		p.waitFor(l.t, regexp.MustCompile(`capturing TCP ports`), 10*time.Second)
	}
	return p, url
}

func slicesContain(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// run runs ssestress run in ns against target until it ends.
func (l *lab) run(ns, target string, args ...string) *proc {
	l.t.Helper()
	p := l.start(ns, "run", append([]string{"run", "--target", target + "/stream?symbols={symbols}", "--scenario", "flood",
		"--out", l.path("run.db")}, args...)...)
	p.wait(l.t, 60*time.Second)
	return p
}

// answer is what report says.
type answer struct {
	sentence string              // the first sentence of the table report
	verdict  attribution.Verdict // report --format json
}

// report runs ssestress report on files (table and json).
func (l *lab) report(files ...string) answer {
	l.t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, l.path(f))
	}
	// The table report starts with the verdict's statement, one line
	// when nothing is wrapped.
	table, err := exec.Command(l.bin, append([]string{"report", "--width", "0"}, paths...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("report %v: %v\n%s", files, err, table)
	}
	statement, _, _ := strings.Cut(string(table), "\n")
	if statement == "" {
		l.t.Fatalf("report %v: no statement in:\n%s", files, table)
	}
	js, err := exec.Command(l.bin, append([]string{"report", "--format", "json"}, paths...)...).Output()
	if err != nil {
		l.t.Fatalf("report --format json %v: %v", files, err)
	}
	var rep struct {
		Verdict attribution.Verdict `json:"verdict"`
	}
	if err := json.Unmarshal(js, &rep); err != nil {
		l.t.Fatalf("report --format json %v: %v", files, err)
	}
	a := answer{sentence: attribution.FirstSentence(statement), verdict: rep.Verdict}
	l.t.Logf("report %s: %s", strings.Join(files, " "), a.sentence)
	return a
}

// withoutPackets analyzes the files as they would be without --capture:
// the same records, no capture, no flow and no kernel evidence.
func (l *lab) withoutPackets(files ...string) attribution.Verdict {
	l.t.Helper()
	in := &attribution.Input{}
	for _, f := range files {
		r, err := session.Open(l.path(f))
		if err != nil {
			l.t.Fatal(err)
		}
		_, err = in.ReadFile(r, true)
		r.Close()
		if err != nil {
			l.t.Fatal(err)
		}
	}
	// --capture also turns on kernel evidence: without it, neither.
	in.Captures, in.Flows, in.Kernel, in.KernelInfo = nil, nil, nil, nil
	v := attribution.Analyze(in, attribution.Options{}).Verdict
	l.t.Logf("without packets, %s: %s", strings.Join(files, " "), attribution.FirstSentence(v.Statement))
	return v
}

// want is what a verdict must say.
type want struct {
	kind       string
	senderRole string
	senderName string // "" to skip
	proxy, hop string // where; "" to skip
	relays     []string
	ending     string
	// say and never are substrings the first sentence must and must not
	// hold.
	say, never []string
	confidence string // "" to skip
	source     string // session.SourceClient or SourceProxy; "" to skip
}

func check(t *testing.T, what string, v attribution.Verdict, sentence string, w want) {
	t.Helper()
	x := v.Cause
	if x == nil {
		t.Errorf("%s: no cause; statement: %s", what, v.Statement)
		return
	}
	if x.Kind != w.kind || x.Sender.Role != w.senderRole || (w.senderName != "" && x.Sender.Name != w.senderName) {
		t.Errorf("%s: cause %s by %s %q, want %s by %s %q; statement: %s", what, x.Kind, x.Sender.Role, x.Sender.Name,
			w.kind, w.senderRole, w.senderName, v.Statement)
	}
	if w.proxy != "" && (x.Proxy != w.proxy || x.Hop != w.hop) {
		t.Errorf("%s: on %s, want %s/%s", what, x.Where(), w.proxy, w.hop)
	}
	if w.ending != "" && x.Ending != w.ending {
		t.Errorf("%s: ending %q, want %q", what, x.Ending, w.ending)
	}
	if w.relays != nil {
		var got []string
		for _, r := range x.Relays {
			got = append(got, r.Proxy)
		}
		if strings.Join(got, ",") != strings.Join(w.relays, ",") {
			t.Errorf("%s: relayed by %v, want %v", what, got, w.relays)
		}
	}
	if w.confidence != "" && v.Confidence != w.confidence {
		t.Errorf("%s: confidence %s, want %s", what, v.Confidence, w.confidence)
	}
	if w.source != "" && x.Incident.Source != w.source {
		t.Errorf("%s: explains a %s incident, want %s", what, x.Incident.Source, w.source)
	}
	if len(x.Chain) == 0 {
		t.Errorf("%s: no chain", what)
	}
	if sentence == "" {
		sentence = attribution.FirstSentence(v.Statement)
	}
	for _, s := range w.say {
		if !strings.Contains(sentence, s) {
			t.Errorf("%s: first sentence lacks %q: %s", what, s, sentence)
		}
	}
	for _, s := range w.never {
		if strings.Contains(sentence, s) {
			t.Errorf("%s: first sentence says %q: %s", what, s, sentence)
		}
	}
}

// child runs a test server or client (the test binary started inside a
// namespace). It returns the exit code.
func child(mode string) int {
	switch mode {
	case "server":
		return childServer()
	case "client-abort":
		return childClientAbort()
	}
	if code, ok := kernelChild(mode); ok {
		return code
	}
	fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
	return 2
}

// childServer serves SSE on NSTEST_LISTEN: an event every 20 ms; with
// NSTEST_RESET_AFTER set, each stream is reset after that long by closing
// its socket with SO_LINGER 0 (a server that really resets).
func childServer() int {
	ln, err := net.Listen("tcp", os.Getenv("NSTEST_LISTEN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resetAfter, _ := time.ParseDuration(os.Getenv("NSTEST_RESET_AFTER"))
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		start := time.Now()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			if resetAfter > 0 && time.Since(start) >= resetAfter {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.(*net.TCPConn).SetLinger(0)
					conn.Close()
				}
				return
			}
			if _, err := fmt.Fprintf(w, "id: %d\ndata: {\"n\":%d}\n\n", n, n); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})}
	srv.Serve(ln)
	return 0
}

// childClientAbort connects NSTEST_COUNT times to NSTEST_TARGET, reads the
// start of the stream and aborts the socket with SO_LINGER 0 (a client
// that resets), then exits.
func childClientAbort() int {
	n, _ := strconv.Atoi(os.Getenv("NSTEST_COUNT"))
	for i := 0; i < n; i++ {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(os.Getenv("NSTEST_TARGET"), "http://"), 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /stream?symbols=AAPL HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n")
		br := bufio.NewReader(conn)
		for got := 0; got < 2; {
			line, err := br.ReadString('\n')
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if strings.HasPrefix(line, "data:") {
				got++
			}
		}
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Println("aborted")
	io.WriteString(os.Stdout, "")
	return 0
}
