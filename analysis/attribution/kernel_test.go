package attribution

import (
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// kernelEvent is a send_reset or receive_reset as the collector writes
// it, at offset d, with kernel time base+d.
func kernelEvent(event, local, remote, reason string, d time.Duration) session.KernelEvent {
	return session.KernelEvent{Time: at(d), KernelTime: 1000 + d.Seconds(), Event: event, LocalAddr: local, RemoteAddr: remote, Reason: reason}
}

// directInput is a run against a server at 127.0.0.1:8090 (an embedded
// server of another process, described by the topology) whose client
// c0001 saw err after 3 s.
func directInput(class, local string) *Input {
	in := &Input{}
	run := in.AddFile("run.db", session.RunInfo{Command: "run", Host: "h1", Keepalive: session.Seconds(15 * time.Second)})
	in.Topology = append(in.Topology, Rec[session.Endpoint]{run, session.Endpoint{Role: session.RoleServer, Addr: "127.0.0.1:8090"}})
	in.Errors = append(in.Errors, Rec[session.ErrorRecord]{run, session.ErrorRecord{Time: at(3*time.Second + 2*ms), Source: session.SourceClient,
		ClientID: "c0001", Class: class, LocalAddr: local, RemoteAddr: "127.0.0.1:8090",
		Age: session.Seconds(3 * time.Second), Idle: session.Seconds(20 * ms)}})
	return in
}

// TestKernelAbortOnClose: the server's kernel traced its TCP_ABORT_ON_CLOSE
// in the server process's context: the verdict names the process and the
// reason, from the kernel, with high confidence; the chain reads from the
// process's deed to the client's error.
func TestKernelAbortOnClose(t *testing.T) {
	in := directInput("ECONNRESET", "127.0.0.1:40001")
	send := kernelEvent(session.KernelSendReset, "127.0.0.1:8090", "127.0.0.1:40001", "TCP_ABORT_ON_CLOSE", 3*time.Second)
	send.State, send.PID, send.TID, send.Comm = "TCP_CLOSE", 4242, 4243, "node"
	recv := kernelEvent(session.KernelReceiveReset, "127.0.0.1:40001", "127.0.0.1:8090", "", 3*time.Second+10*time.Microsecond)
	recv.PID, recv.Comm, recv.Softirq = 4242, "node", true
	in.Kernel = append(in.Kernel, Rec[session.KernelEvent]{0, send}, Rec[session.KernelEvent]{0, recv})
	res := Analyze(in, Options{})
	v := res.Verdict
	x := v.Cause
	if x == nil || x.Kind != KindNatural || x.Sender.Role != session.RoleServer || x.Evidence != EvidenceKernel || v.Confidence != ConfidenceHigh {
		t.Fatalf("cause %+v\n%s", x, v.Statement)
	}
	want := "The server 127.0.0.1:8090 sent the reset, on the direct client–server connections, because node (pid 4242) closed the socket with unread data (TCP_ABORT_ON_CLOSE): 1 of 1 client errors (ECONNRESET 1), high confidence."
	if got := FirstSentence(v.Statement); got != want {
		t.Errorf("statement\n got %s\nwant %s", got, want)
	}
	if k := x.Kernel; k == nil || k.Reason != "TCP_ABORT_ON_CLOSE" || k.PID != 4242 || k.Comm != "node" || k.TaskIncidental || k.Meaning == "" || k.Host != "h1" {
		t.Errorf("kernel %+v", x.Kernel)
	}
	wantChain := "node (pid 4242) on the server 127.0.0.1:8090 closed the socket with unread data (TCP_ABORT_ON_CLOSE) 3.0 s into the stream → its kernel sent a reset (RST) to the client 127.0.0.1:40001, on the direct client–server connection after 20 ms idle → client c0001 saw ECONNRESET"
	if got := x.ChainText(); got != wantChain {
		t.Errorf("chain\n got %s\nwant %s", got, wantChain)
	}
	if len(res.Segments) != 1 || res.Segments[0].Kernel == nil || !res.Segments[0].Received || res.Segments[0].Explains == nil || len(res.Segments[0].Captures) != 0 {
		t.Errorf("segments %+v", res.Segments)
	}
	if v.KernelResets != 1 || !strings.Contains(strings.Join(v.Evidence, "\n"), "the kernel traced 1 reset") {
		t.Errorf("kernel resets %d; evidence %q", v.KernelResets, v.Evidence)
	}
}

// TestKernelEventOnceAcrossFiles: the same reset traced by two processes
// of one host (a run and a proxy, kernel times 3 µs apart, only one with
// the socket's owner) counts once; on two hosts it would be two.
func TestKernelEventOnceAcrossFiles(t *testing.T) {
	in := directInput("ECONNRESET", "127.0.0.1:40001")
	p := in.AddFile("P.db", session.RunInfo{Command: "proxy", Host: "h1"})
	send := kernelEvent(session.KernelSendReset, "127.0.0.1:8090", "127.0.0.1:40001", "TCP_STATE", 3*time.Second)
	send.State, send.PID, send.Comm = "TCP_ESTABLISHED", 77, "sse-server"
	copyP := send
	copyP.KernelTime += 3e-6
	copyP.OwnerPID, copyP.OwnerComm = 77, "sse-server"
	in.Kernel = append(in.Kernel, Rec[session.KernelEvent]{0, send}, Rec[session.KernelEvent]{p, copyP})
	res := Analyze(in, Options{})
	if res.Verdict.KernelResets != 1 || len(res.Segments) != 1 || res.Verdict.RSTSegments != 1 {
		t.Fatalf("%d kernel resets, %d segments, want 1 each", res.Verdict.KernelResets, len(res.Segments))
	}
	if k := res.Verdict.Cause.Kernel; k == nil || k.OwnerPID != 77 {
		t.Errorf("kernel %+v: the owner of the second copy is kept", k)
	}
	if got := FirstSentence(res.Verdict.Statement); !strings.Contains(got, "because sse-server (pid 77) aborted the socket (TCP_STATE: SO_LINGER 0, a disconnect, or a socket destroyed)") {
		t.Errorf("statement %s", got)
	}
	// Another host's file: the same addresses, another kernel.
	in.Files[p].Run.Host = "h2"
	if res := Analyze(in, Options{}); res.Verdict.KernelResets != 2 {
		t.Errorf("two hosts: %d kernel resets, want 2", res.Verdict.KernelResets)
	}
}

// TestKernelRefused: a refused connect has no local address; the kernel's
// NO_SOCKET answer from the target at that moment joins it.
func TestKernelRefused(t *testing.T) {
	in := directInput("ECONNREFUSED", "")
	in.Errors[0].R.Age, in.Errors[0].R.Idle = session.Seconds(ms), session.Seconds(ms)
	send := kernelEvent(session.KernelSendReset, "127.0.0.1:8090", "127.0.0.1:40007", "NO_SOCKET", 3*time.Second+ms)
	send.PID, send.Comm, send.Softirq = 99, "ssestress", true
	in.Kernel = append(in.Kernel, Rec[session.KernelEvent]{0, send})
	res := Analyze(in, Options{})
	x := res.Verdict.Cause
	if x == nil || x.Ending != session.EndingRefused || x.Evidence != EvidenceKernel || x.Kernel == nil || !x.Kernel.TaskIncidental {
		t.Fatalf("cause %+v\n%s", x, res.Verdict.Statement)
	}
	want := "The connections to the server 127.0.0.1:8090 were refused, because its kernel had no socket for the connection (NO_SOCKET): 1 of 1 client errors (ECONNREFUSED 1), high confidence."
	if got := FirstSentence(res.Verdict.Statement); got != want {
		t.Errorf("statement\n got %s\nwant %s", got, want)
	}
	if chain := x.ChainText(); !strings.HasPrefix(chain, "the kernel of the server 127.0.0.1:8090 had no socket for the connection (NO_SOCKET) → its kernel refused the connection of the client 127.0.0.1:40007, on the direct client–server connection → client c0001 saw ECONNREFUSED") {
		t.Errorf("chain %s", chain)
	}
}

// TestKernelKeepaliveTimeout: the client's own kernel gave up after
// unanswered keepalive probes (its RST went nowhere, the client saw
// ETIMEDOUT): the server stopped answering, and the first sentence says
// so, before it says these were no resets.
func TestKernelKeepaliveTimeout(t *testing.T) {
	in := directInput("ETIMEDOUT", "127.0.0.1:40001")
	in.Errors[0].R.Idle = session.Seconds(3 * time.Second)
	send := kernelEvent(session.KernelSendReset, "127.0.0.1:40001", "127.0.0.1:8090", "TCP_KEEPALIVE_TIMEOUT", 3*time.Second+ms)
	send.State, send.PID, send.Softirq, send.OwnerPID, send.OwnerComm = "TCP_ESTABLISHED", 0, true, 500, "ssestress"
	in.Kernel = append(in.Kernel, Rec[session.KernelEvent]{0, send})
	res := Analyze(in, Options{})
	x := res.Verdict.Cause
	if x == nil || x.Ending != endingTimeout || x.Sender.Role != session.RoleServer || x.Evidence != EvidenceKernel || res.Verdict.Confidence != ConfidenceHigh {
		t.Fatalf("cause %+v\n%s", x, res.Verdict.Statement)
	}
	want := "The server 127.0.0.1:8090 stopped answering, on the direct client–server connections, so the kernel of the client 127.0.0.1:40001 gave up on the connection after unanswered keepalive probes (TCP_KEEPALIVE_TIMEOUT): 1 of 1 client errors (ETIMEDOUT 1), high confidence."
	if got := FirstSentence(res.Verdict.Statement); got != want {
		t.Errorf("statement\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(res.Verdict.Statement, "No reset and no cut: 1 client errors of other kinds.") {
		t.Errorf("statement %s", res.Verdict.Statement)
	}
	if chain := x.ChainText(); !strings.Contains(chain, "the kernel of the client 127.0.0.1:40001, whose socket ssestress (pid 500) held, gave up on the connection after unanswered keepalive probes (TCP_KEEPALIVE_TIMEOUT)") {
		t.Errorf("chain %s", chain)
	}
}

// TestKernelInjected: a proxy's fault reset its upstream socket; its own
// kernel traced the reset in the proxy's process.
func TestKernelInjected(t *testing.T) {
	in := chainInput(true)
	for i := range in.Files {
		in.Files[i].Run.Host = "h1"
	}
	send := kernelEvent(session.KernelSendReset, "127.0.0.1:50002", "127.0.0.1:8090", "TCP_STATE", 2*time.Second)
	send.State, send.PID, send.Comm = "TCP_ESTABLISHED", 31, "ssestress"
	in.Kernel = append(in.Kernel, Rec[session.KernelEvent]{2, send})
	res := Analyze(in, Options{})
	x := res.Verdict.Cause
	if x == nil || x.Kind != KindInjected || x.Evidence != EvidenceKernel || x.Kernel == nil || x.Kernel.PID != 31 {
		t.Fatalf("cause %+v\n%s", x, res.Verdict.Statement)
	}
	want := "Proxy B injected the reset, on its upstream hop (fault reset:hop=upstream,after=2s); ssestress (pid 31) aborted the socket (TCP_STATE: SO_LINGER 0, a disconnect, or a socket destroyed); proxies B and A relayed them to the clients (--on-upstream-error=reset): 1 of 1 client errors (ECONNRESET 1), high confidence."
	if got := FirstSentence(res.Verdict.Statement); got != want {
		t.Errorf("statement\n got %s\nwant %s", got, want)
	}
	if chain := x.ChainText(); !strings.HasPrefix(chain, "ssestress (pid 31) on proxy B aborted the socket") {
		t.Errorf("chain %s", chain)
	}
}

// TestKernelOverridesForgeryHeuristics: a captured RST whose TTL differs
// from its sender's other packets looks forged, but the sender's own
// kernel traced sending it: it was not.
func TestKernelOverridesForgeryHeuristics(t *testing.T) {
	in := directInput("ECONNRESET", "127.0.0.1:40001")
	in.Captures = append(in.Captures, Rec[session.CaptureInfo]{0, session.CaptureInfo{ID: "h1/lo", Host: "h1"}})
	in.Flows = append(in.Flows, Rec[session.Flow]{0, session.Flow{Capture: "h1/lo", Dialer: "127.0.0.1:40001", Listener: "127.0.0.1:8090",
		First: at(0), Last: at(3 * time.Second), SYN: at(0), SYNACK: at(ms),
		FromDialer:   session.FlowDirection{ISN: 1, TTLMin: 64, TTLMax: 64},
		FromListener: session.FlowDirection{ISN: 2, TTLMin: 64, TTLMax: 64},
		RSTs:         []session.RSTPacket{{Time: at(3 * time.Second), From: session.FromListener, Seq: 5, TTL: 50, HasAck: true}}}})
	if res := Analyze(in, Options{}); res.Verdict.Cause == nil || res.Verdict.Cause.Kind != KindForged {
		t.Fatalf("without the kernel: %s", res.Verdict.Statement)
	}
	send := kernelEvent(session.KernelSendReset, "127.0.0.1:8090", "127.0.0.1:40001", "TCP_ABORT_ON_CLOSE", 3*time.Second+20*time.Microsecond)
	send.PID, send.Comm = 4242, "node"
	in.Kernel = append(in.Kernel, Rec[session.KernelEvent]{0, send})
	res := Analyze(in, Options{})
	if x := res.Verdict.Cause; x == nil || x.Kind != KindNatural || x.Evidence != EvidenceKernel || len(res.Segments) != 1 {
		t.Fatalf("with the kernel: %+v %d segments\n%s", x, len(res.Segments), res.Verdict.Statement)
	}
}

// TestKernelLostAndDisabled: lost events and a collector that did not
// run are said in the verdict's evidence.
func TestKernelLostAndDisabled(t *testing.T) {
	in := directInput("ECONNRESET", "127.0.0.1:40001")
	in.KernelInfo = append(in.KernelInfo, Rec[session.KernelInfo]{0, session.KernelInfo{EventsLost: 12}})
	v := Analyze(in, Options{}).Verdict
	if v.KernelEventsLost != 12 || !strings.Contains(strings.Join(v.Evidence, "\n"), "trace buffer overflowed: 12 events lost") {
		t.Errorf("lost: %d %q", v.KernelEventsLost, v.Evidence)
	}
	in.KernelInfo = []Rec[session.KernelInfo]{{0, session.KernelInfo{Disabled: "kernel evidence unavailable: kernel tracing not permitted"}}}
	v = Analyze(in, Options{}).Verdict
	if !strings.Contains(strings.Join(v.Evidence, "\n"), "kernel evidence was asked for but did not run (kernel evidence unavailable: kernel tracing not permitted)") {
		t.Errorf("disabled: %q", v.Evidence)
	}
}
