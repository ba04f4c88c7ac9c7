//go:build linux

package nstest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"

	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/capture/kernel"
	"github.com/ssestress/ssestress/internal/session"
)

// The kernel evidence cases: real ssestress processes with --kernel, the
// servers separate processes under names of their own, and the report's
// first sentence and JSON verdict checked for the kernel's reason and
// process. They need root and a kernel whose tcp_send_reset says why
// (Linux 6.10+).

// needKernel skips a test that needs kernel reset reasons, saying why.
func needKernel(t *testing.T) {
	t.Helper()
	needRoot(t)
	c, err := kernel.Start(context.Background(), kernel.Options{OwnerInterval: -1, NoStateEvents: true})
	if err != nil {
		t.Skipf("%v; skipping the kernel evidence test", err)
	}
	c.Close()
}

// startChildAs starts this test binary as a child under the name comm (a
// symlink), so its process name is comm, as a server's would be.
func (l *lab) startChildAs(ns, comm string, env map[string]string) *proc {
	l.t.Helper()
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	link := l.path(comm)
	if err := os.Symlink(self, link); err != nil {
		l.t.Fatal(err)
	}
	var e []string
	for k, v := range env {
		e = append(e, k+"="+v)
	}
	return l.startCmd(ns, comm, e, link, "-test.run=^$")
}

// checkKernel checks the kernel evidence of a verdict's cause.
func checkKernel(t *testing.T, what string, v attribution.Verdict, reason, comm string, pid int) {
	t.Helper()
	x := v.Cause
	if x == nil || x.Kernel == nil {
		t.Errorf("%s: no kernel evidence in the cause: %s", what, v.Statement)
		return
	}
	k := x.Kernel
	if k.Reason != reason || x.Evidence != attribution.EvidenceKernel || v.Confidence != attribution.ConfidenceHigh {
		t.Errorf("%s: kernel %+v by %s (%s confidence), want %s by the kernel, high: %s", what, k, x.Evidence, v.Confidence, reason, v.Statement)
	}
	if comm != "" && ((k.Comm != comm || k.PID != pid) && (k.OwnerComm != comm || k.OwnerPID != pid)) {
		t.Errorf("%s: process %s (%d), owner %s (%d); want %s (%d)", what, k.Comm, k.PID, k.OwnerComm, k.OwnerPID, comm, pid)
	}
}

// TestKernelAbortOnClose: a server process (sse-server) that never reads
// the request and closes each stream after 700 ms: its kernel resets
// with TCP_ABORT_ON_CLOSE, in sse-server's context.
func TestKernelAbortOnClose(t *testing.T) {
	needKernel(t)
	t.Parallel()
	l := newLab(t, false)
	srv := l.startChildAs(l.client, "sse-server", map[string]string{childEnv: "abort-server", "NSTEST_LISTEN": "127.0.0.1:0", "NSTEST_CLOSE_AFTER": "700ms"})
	srvURL := srv.waitFor(t, listeningRe, 10*time.Second)[1]
	run := l.run(l.client, srvURL, "--connections", "3", "--rate", "20", "--duration", "2500ms", "--kernel")
	srv.kill()
	if !strings.Contains(run.out.String(), "kernel evidence: on") {
		t.Errorf("run did not say kernel evidence is on:\n%s", run.out.String())
	}
	a := l.report("run.db")
	check(t, "run.db", a.verdict, a.sentence, want{kind: attribution.KindNatural, senderRole: session.RoleServer, ending: session.EndingRST,
		say: []string{"The server " + strings.TrimPrefix(srvURL, "http://"), "sent the resets, on the direct client–server connections",
			fmt.Sprintf("because sse-server (pid %d) closed the sockets with unread data (TCP_ABORT_ON_CLOSE)", srv.cmd.Process.Pid), "client errors (ECONNRESET 3)"},
		confidence: attribution.ConfidenceHigh})
	checkKernel(t, "run.db", a.verdict, "TCP_ABORT_ON_CLOSE", "sse-server", srv.cmd.Process.Pid)
	if x := a.verdict.Cause; x != nil && !strings.HasPrefix(x.ChainText(), fmt.Sprintf("sse-server (pid %d) on the server", srv.cmd.Process.Pid)) {
		t.Errorf("chain %s", x.ChainText())
	}
}

// TestKernelRefused: clients connecting to a closed port: the kernel
// answers each SYN with NO_SOCKET, and the refusals are joined to it.
func TestKernelRefused(t *testing.T) {
	needKernel(t)
	t.Parallel()
	l := newLab(t, false)
	// The server takes run's pre-flight connection, then closes its port.
	srv := l.startChild(l.client, "one-shot server", map[string]string{childEnv: "one-shot", "NSTEST_LISTEN": "127.0.0.1:0"})
	srvURL := srv.waitFor(t, listeningRe, 10*time.Second)[1]
	l.run(l.client, srvURL, "--connections", "3", "--rate", "20", "--duration", "1s", "--kernel")
	srv.kill()
	a := l.report("run.db")
	check(t, "run.db", a.verdict, a.sentence, want{kind: attribution.KindNatural, senderRole: session.RoleServer, ending: session.EndingRefused,
		say: []string{"The connections to the server " + strings.TrimPrefix(srvURL, "http://"), "were refused, because its kernel had no socket for the connections (NO_SOCKET)",
			"3 of 3 client errors (ECONNREFUSED 3)"},
		confidence: attribution.ConfidenceHigh})
	checkKernel(t, "run.db", a.verdict, "NO_SOCKET", "", 0)
	if k := a.verdict.Cause.Kernel; k != nil && !k.TaskIncidental {
		t.Errorf("the answer to a SYN names task %s (%d) as if it had sent it: %+v", k.Comm, k.PID, k)
	}
}

// TestKernelLingerZero: a server process (linger-server) that resets each
// stream with SO_LINGER 0: the reason this kernel gives (TCP_STATE), in
// linger-server's context.
func TestKernelLingerZero(t *testing.T) {
	needKernel(t)
	t.Parallel()
	l := newLab(t, false)
	srv := l.startChildAs(l.client, "linger-server", map[string]string{childEnv: "server", "NSTEST_LISTEN": "127.0.0.1:0", "NSTEST_RESET_AFTER": "700ms"})
	srvURL := srv.waitFor(t, listeningRe, 10*time.Second)[1]
	l.run(l.client, srvURL, "--connections", "3", "--rate", "20", "--duration", "2500ms", "--kernel")
	srv.kill()
	a := l.report("run.db")
	check(t, "run.db", a.verdict, a.sentence, want{kind: attribution.KindNatural, senderRole: session.RoleServer, ending: session.EndingRST,
		say:        []string{"sent the resets, on the direct client–server connections", fmt.Sprintf("because linger-server (pid %d) aborted the sockets (TCP_STATE: SO_LINGER 0", srv.cmd.Process.Pid)},
		confidence: attribution.ConfidenceHigh})
	checkKernel(t, "run.db", a.verdict, "TCP_STATE", "linger-server", srv.cmd.Process.Pid)
}

// TestKernelProxyInjects: the proxy's own injected resets (a reset fault
// on its client hop): the proxy's process sent them, its kernel says, in
// the merged files and in the proxy's file alone.
func TestKernelProxyInjects(t *testing.T) {
	needKernel(t)
	t.Parallel()
	l := newLab(t, false)
	srv, srvURL := l.serve(l.client, "127.0.0.1:0", "--event-rate", "3000")
	p, pURL := l.proxy(l.client, "P", srvURL, "--fault", "reset:hop=client,after=700ms", "--kernel")
	l.run(l.client, pURL, "--connections", "3", "--rate", "20", "--duration", "2500ms", "--kernel")
	p.stop(t)
	srv.stop(t)
	pid := p.cmd.Process.Pid
	w := want{kind: attribution.KindInjected, senderRole: session.RoleProxy, senderName: "P", proxy: "P", hop: session.HopClient, ending: session.EndingRST,
		say:        []string{"Proxy P injected the resets, on its client hop", fmt.Sprintf("; ssestress (pid %d) aborted the sockets (TCP_STATE", pid)},
		confidence: attribution.ConfidenceHigh, source: session.SourceClient}
	a := l.report("run.db", "P.db")
	check(t, "run.db P.db", a.verdict, a.sentence, w)
	checkKernel(t, "run.db P.db", a.verdict, "TCP_STATE", "ssestress", pid)
	alone := w
	alone.source = session.SourceProxy
	alone.say = append(alone.say, "failed client connections of proxy P")
	b := l.report("P.db")
	check(t, "P.db alone", b.verdict, b.sentence, alone)
	checkKernel(t, "P.db alone", b.verdict, "TCP_STATE", "ssestress", pid)
}

// TestKernelKeepaliveTimeout: a stream that sends nothing, the clients'
// keepalive at 1 s, the server's namespace blackholed by the router: the
// client's kernel gives up after 9 unanswered probes (TCP_KEEPALIVE_TIMEOUT)
// and the client sees ETIMEDOUT after about 11 s (the run lasts 15 s).
func TestKernelKeepaliveTimeout(t *testing.T) {
	needKernel(t)
	t.Parallel()
	l := newLab(t, true)
	srv := l.startChild(l.server, "quiet server", map[string]string{childEnv: "quiet-server", "NSTEST_LISTEN": l.serverIP + ":0"})
	srvURL := srv.waitFor(t, listeningRe, 10*time.Second)[1]
	go func() {
		l.waitEstablished(l.server, srvURL[strings.LastIndexByte(srvURL, ':')+1:], 1, 10*time.Second)
		l.in(l.router, "iptables", "-A", "FORWARD", "-j", "DROP")
	}()
	run := l.run(l.client, srvURL, "--connections", "1", "--rate", "20", "--duration", "15s", "--client-keepalive", "1s", "--kernel")
	srv.kill()
	if !strings.Contains(run.out.String(), "ETIMEDOUT 1") {
		t.Errorf("the client did not time out:\n%s\nserver:\n%s", run.out.String(), srv.out.String())
	}
	a := l.report("run.db")
	check(t, "run.db", a.verdict, a.sentence, want{kind: attribution.KindNatural, senderRole: session.RoleServer, ending: "timeout",
		say: []string{"The server " + strings.TrimPrefix(srvURL, "http://"), "stopped answering, on the direct client–server connections",
			"gave up on the connection after unanswered keepalive probes (TCP_KEEPALIVE_TIMEOUT)", "(ETIMEDOUT 1)"},
		confidence: attribution.ConfidenceHigh})
	checkKernel(t, "run.db", a.verdict, "TCP_KEEPALIVE_TIMEOUT", "", 0)
}

// TestKernelThreeProcesses: run → proxy A → proxy B (a reset fault on its
// upstream hop) → server, each ssestress process with --kernel on the same
// host: the merged report counts each kernel event once, and each file
// holds only events of its own connections.
func TestKernelThreeProcesses(t *testing.T) {
	needKernel(t)
	t.Parallel()
	l := newLab(t, false)
	srv, srvURL := l.serve(l.client, "127.0.0.1:0", "--event-rate", "3000")
	pb, bURL := l.proxy(l.client, "B", srvURL, "--fault", "reset:hop=upstream,after=800ms", "--kernel")
	pa, aURL := l.proxy(l.client, "A", bURL, "--kernel")
	l.run(l.client, aURL, "--connections", "3", "--rate", "20", "--duration", "2500ms", "--kernel")
	pa.stop(t)
	pb.stop(t)
	srv.stop(t)
	a := l.report("run.db", "A.db", "B.db")
	check(t, "run.db A.db B.db", a.verdict, a.sentence, want{kind: attribution.KindInjected, senderRole: session.RoleProxy, senderName: "B",
		proxy: "B", hop: session.HopUpstream, relays: []string{"B", "A"}, ending: session.EndingRST,
		say:        []string{"Proxy B injected the resets, on its upstream hop", fmt.Sprintf("ssestress (pid %d) aborted the sockets (TCP_STATE", pb.cmd.Process.Pid)},
		confidence: attribution.ConfidenceHigh, source: session.SourceClient})

	var all []session.KernelEvent
	perFile := 0
	for _, f := range []string{"run.db", "A.db", "B.db"} {
		evs, tuples := kernelEventsAndTuples(t, l.path(f))
		if len(evs) == 0 {
			t.Errorf("%s: no kernel event", f)
		}
		for _, e := range evs {
			if !tuples[[2]string{e.LocalAddr, e.RemoteAddr}] && !tuples[[2]string{e.RemoteAddr, e.LocalAddr}] {
				t.Errorf("%s holds an event of a connection that is not its own: %+v", f, e)
			}
			if e.Event == session.KernelSendReset {
				perFile++
				all = append(all, e)
			}
		}
	}
	once := int64(len(session.DedupKernelEvents(all)))
	if a.verdict.KernelResets != once || once >= int64(perFile) {
		t.Errorf("merged report counts %d kernel resets; the files hold %d, %d of them distinct: each must count once", a.verdict.KernelResets, perFile, once)
	}
	t.Logf("%d send_reset events in the three files, %d distinct, %d in the merged report", perFile, once, a.verdict.KernelResets)
}

// kernelEventsAndTuples reads a file's kernel events and the 4-tuples of
// its own connections: its clients' attempts and its proxy's hop records.
func kernelEventsAndTuples(t *testing.T, path string) ([]session.KernelEvent, map[[2]string]bool) {
	t.Helper()
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	evs, err := session.All[session.KernelEvent](r, session.BucketKernelEvents)
	if err != nil {
		t.Fatal(err)
	}
	tuples := map[[2]string]bool{}
	conns, _ := session.All[session.ConnRecord](r, session.BucketConns)
	for _, c := range conns {
		tuples[[2]string{c.LocalAddr, c.RemoteAddr}] = true
	}
	hops, _ := session.All[session.HopConn](r, session.BucketHopConns)
	for _, h := range hops {
		tuples[[2]string{h.LocalAddr, h.RemoteAddr}] = true
	}
	return evs, tuples
}

// TestKernelLoad: 200 connections reset by the server at 1,000 resets
// per second: the run's file holds every reset's send_reset, or its
// KernelInfo counts the lost events and the report says so.
func TestKernelLoad(t *testing.T) {
	needKernel(t)
	t.Parallel()
	l := newLab(t, false)
	const conns = 200
	srv := l.startChildAs(l.client, "reset-server", map[string]string{childEnv: "reset-all", "NSTEST_LISTEN": "127.0.0.1:0",
		"NSTEST_COUNT": strconv.Itoa(conns), "NSTEST_INTERVAL": "1ms"})
	srvURL := srv.waitFor(t, listeningRe, 10*time.Second)[1]
	run := l.run(l.client, srvURL, "--connections", strconv.Itoa(conns), "--rate", "1000", "--duration", "3s", "--kernel")
	took := srv.waitFor(t, regexp.MustCompile(`reset (\d+) in (\S+)`), 10*time.Second)
	srv.kill()
	evs, _ := kernelEventsAndTuples(t, l.path("run.db"))
	sent := 0
	for _, e := range evs {
		if e.Event == session.KernelSendReset && e.Reason == "TCP_STATE" && e.Comm == "reset-server" {
			sent++
		}
	}
	r, err := session.Open(l.path("run.db"))
	if err != nil {
		t.Fatal(err)
	}
	var info session.KernelInfo
	r.Meta(session.MetaKernel, &info)
	r.Close()
	a := l.report("run.db")
	t.Logf("the server reset %s connections in %s; the run recorded %d of their send_reset events, %d events lost (read %d on the host)",
		took[1], took[2], sent, info.EventsLost, info.EventsRead)
	switch {
	case info.EventsLost == 0 && sent != conns:
		t.Errorf("%d of %d resets recorded and none counted as lost", sent, conns)
	case info.EventsLost > 0 && uint64(sent)+info.EventsLost < conns:
		t.Errorf("%d recorded and %d lost: fewer than the %d resets", sent, info.EventsLost, conns)
	}
	if info.EventsLost > 0 {
		if a.verdict.KernelEventsLost != info.EventsLost || !strings.Contains(strings.Join(a.verdict.Evidence, "\n"), "overflowed") {
			t.Errorf("report: %d lost, evidence %q; the file says %d", a.verdict.KernelEventsLost, a.verdict.Evidence, info.EventsLost)
		}
		if !strings.Contains(run.out.String(), "the trace buffer overflowed") {
			t.Errorf("the run's summary does not say events were lost:\n%s", run.out.String())
		}
	} else if !strings.Contains(run.out.String(), fmt.Sprintf("kernel evidence: %d reset events recorded", len(evs))) || !strings.Contains(run.out.String(), "none lost") {
		t.Errorf("the run's summary does not count the events:\n%s", run.out.String())
	}
	if a.verdict.ClientErrors != conns || a.verdict.Cause == nil || a.verdict.Cause.Kernel == nil || a.verdict.Cause.Kernel.Comm != "reset-server" {
		t.Errorf("verdict: %d client errors, %s", a.verdict.ClientErrors, a.verdict.Statement)
	}
}

// tracefsRoot is a tracefs mount this test can read: the host's, or one
// mounted for the test (tracefs has one tree, whatever the mount).
func tracefsRoot(t *testing.T) string {
	t.Helper()
	for _, d := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		var st syscall.Statfs_t
		if syscall.Statfs(d, &st) == nil && st.Type == 0x74726163 { // TRACEFS_MAGIC
			return d
		}
	}
	d := t.TempDir()
	if err := syscall.Mount("nodev", d, "tracefs", 0, ""); err != nil {
		t.Skipf("cannot mount tracefs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(d, syscall.MNT_DETACH) })
	return d
}

var instanceRe = regexp.MustCompile(`tracefs instance \S+/instances/(ssestress-\d+)\)`)

// TestKernelInstancesCleanedUp: through the commands, no tracefs instance
// is left after a run ends, after Ctrl-C, or, after a SIGKILL, once the
// next command starts; and no event of the host's own trace is enabled.
func TestKernelInstancesCleanedUp(t *testing.T) {
	needKernel(t)
	t.Parallel()
	root := tracefsRoot(t)
	enable := filepath.Join(root, "events", "tcp", "tcp_send_reset", "enable")
	before, _ := os.ReadFile(enable)
	gone := func(what, name string) {
		t.Helper()
		if _, err := os.Stat(filepath.Join(root, "instances", name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: instance %s left behind (%v)", what, name, err)
		}
	}
	l := newLab(t, false)
	srv, srvURL := l.serve(l.client, "127.0.0.1:0")

	// A run that ends.
	run := l.run(l.client, srvURL, "--connections", "1", "--duration", "500ms", "--kernel")
	gone("run --kernel, ended", instanceRe.FindStringSubmatch(run.out.String())[1])

	// A run stopped with Ctrl-C.
	os.Remove(l.path("run.db"))
	r := l.start(l.client, "run", "run", "--target", srvURL+"/stream?symbols={symbols}", "--connections", "1", "--duration", "1m",
		"--kernel", "--out", l.path("run.db"))
	name := r.waitFor(t, instanceRe, 10*time.Second)[1]
	r.stop(t)
	if r.cmd.ProcessState.ExitCode() != 130 {
		t.Errorf("run after Ctrl-C: exit %d, want 130", r.cmd.ProcessState.ExitCode())
	}
	gone("run --kernel, Ctrl-C", name)

	// A proxy stopped with Ctrl-C.
	p, _ := l.proxy(l.client, "P", srvURL, "--kernel")
	name = p.waitFor(t, instanceRe, 10*time.Second)[1]
	if _, err := os.Stat(filepath.Join(root, "instances", name)); err != nil {
		t.Errorf("proxy --kernel running: its instance %s: %v", name, err)
	}
	p.stop(t)
	if p.cmd.ProcessState.ExitCode() != 130 {
		t.Errorf("proxy after Ctrl-C: exit %d, want 130", p.cmd.ProcessState.ExitCode())
	}
	gone("proxy --kernel, Ctrl-C", name)

	// A proxy killed with SIGKILL leaves its instance; the next command
	// removes it when it starts.
	k, _ := l.proxy(l.client, "K", srvURL, "--kernel")
	killed := k.waitFor(t, instanceRe, 10*time.Second)[1]
	k.kill()
	if _, err := os.Stat(filepath.Join(root, "instances", killed)); err != nil {
		t.Fatalf("the killed proxy's instance %s is not there to be swept: %v", killed, err)
	}
	os.Remove(l.path("run.db"))
	next := l.run(l.client, srvURL, "--connections", "1", "--duration", "500ms", "--kernel")
	gone("after SIGKILL, once run --kernel started", killed)
	gone("run --kernel after the sweep, ended", instanceRe.FindStringSubmatch(next.out.String())[1])
	srv.stop(t)

	if after, _ := os.ReadFile(enable); string(after) != string(before) {
		t.Errorf("the host's own tcp_send_reset enable went from %q to %q", before, after)
	}
}

// TestKernelNotRoot: run --kernel as an unprivileged user says in one
// line what is missing, goes on, and the report says kernel evidence was
// asked for but did not run.
func TestKernelNotRoot(t *testing.T) {
	needRoot(t, "setpriv")
	t.Parallel()
	bin := ssestress(t)
	// A directory the user nobody can enter, with the binary in it.
	dir, err := os.MkdirTemp("", "ssestress-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ssestress"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", filepath.Join(dir, "ssestress"),
		"run", "--connections", "1", "--duration", "500ms", "--kernel", "--out", filepath.Join(dir, "run.db"))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run as nobody: %v\n%s", err, out)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "kernel evidence") {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "kernel evidence unavailable: kernel tracing not permitted") || !strings.Contains(lines[0], "going on with the other evidence") {
		t.Errorf("want one line saying what is missing, got %q\n%s", lines, out)
	}
	js, err := exec.Command(bin, "report", "--format", "json", filepath.Join(dir, "run.db")).Output()
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Evidence struct {
			KernelDisabled string `json:"kernel_disabled"`
		} `json:"evidence"`
		Verdict attribution.Verdict `json:"verdict"`
	}
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Evidence.KernelDisabled, "kernel evidence unavailable: kernel tracing not permitted") ||
		!strings.Contains(strings.Join(rep.Verdict.Evidence, "\n"), "kernel evidence was asked for but did not run") {
		t.Errorf("report does not say kernel evidence did not run: %q, %q", rep.Evidence.KernelDisabled, rep.Verdict.Evidence)
	}
}

// kernelChild runs the kernel cases' servers (see child):
//
//	abort-server  streams without reading the request; closes each stream
//	              after NSTEST_CLOSE_AFTER (unread bytes: TCP_ABORT_ON_CLOSE)
//	one-shot      takes one connection, then closes its port
//	quiet-server  reads the request, sends the headers, then nothing
//	reset-all     once NSTEST_COUNT streams are open, resets them all with
//	              SO_LINGER 0, one per NSTEST_INTERVAL; "reset N in D"
func kernelChild(mode string) (int, bool) {
	switch mode {
	case "abort-server", "one-shot", "quiet-server", "reset-all":
	default:
		return 0, false
	}
	ln, err := net.Listen("tcp", os.Getenv("NSTEST_LISTEN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	const headers = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
	switch mode {
	case "one-shot":
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		ln.Close()
		fmt.Println("closed")
		select {}
	case "abort-server":
		after, _ := time.ParseDuration(os.Getenv("NSTEST_CLOSE_AFTER"))
		serveEach(ln, func(c net.Conn) {
			// The request is never read: it stays in the receive queue.
			time.Sleep(50 * time.Millisecond)
			c.Write([]byte(headers))
			end := time.Now().Add(after)
			for n := 0; time.Now().Before(end); n++ {
				fmt.Fprintf(c, "id: %d\ndata: {\"n\":%d}\n\n", n, n)
				time.Sleep(20 * time.Millisecond)
			}
			c.Close()
		})
		return 1, true
	case "quiet-server":
		serveEach(ln, func(c net.Conn) {
			readRequest(c)
			c.Write([]byte(headers))
			io.Copy(io.Discard, c)
		})
		return 1, true
	}
	// reset-all
	count, _ := strconv.Atoi(os.Getenv("NSTEST_COUNT"))
	interval, _ := time.ParseDuration(os.Getenv("NSTEST_INTERVAL"))
	var mu sync.Mutex
	var open []*net.TCPConn
	full := make(chan struct{})
	go serveEach(ln, func(c net.Conn) {
		// Nothing left unread: the close's reason is the linger's. run's
		// pre-flight connection sends no request.
		if !readRequest(c) {
			c.Close()
			return
		}
		c.Write([]byte(headers + "data: hello\n\n"))
		mu.Lock()
		open = append(open, c.(*net.TCPConn))
		if len(open) == count {
			close(full)
		}
		mu.Unlock()
	})
	<-full
	time.Sleep(100 * time.Millisecond) // the last clients read their first event
	tick := time.NewTicker(interval)
	start := time.Now()
	for _, c := range open {
		<-tick.C
		c.SetLinger(0)
		c.Close()
	}
	fmt.Printf("reset %d in %s\n", len(open), time.Since(start).Round(time.Millisecond))
	select {}
}

// serveEach handles each connection ln accepts in a goroutine of its own,
// until ln fails.
func serveEach(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go handle(c)
	}
}

// readRequest reads a request's head (up to the empty line) and says
// whether there was one.
func readRequest(c net.Conn) bool {
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if line == "\r\n" {
			return true
		}
	}
}
