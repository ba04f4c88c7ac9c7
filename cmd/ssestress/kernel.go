package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/capture/kernel"
	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/proxy"
)

// Kernel evidence (--kernel) on run, replay run, proxy and capture: a
// tracefs collector of the process's own (capture/kernel) records why
// each TCP reset of the process's connections was sent and by which
// process, into the process's session file, for the attribution engine.

// kernelFlag is --kernel. Not given, it follows --capture: a capture also
// asks the kernel why, when the tracepoints are there.
type kernelFlag struct{ on, set bool }

func (k *kernelFlag) String() string {
	if k == nil || !k.on {
		return "false"
	}
	return "true"
}

func (k *kernelFlag) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	k.on, k.set = b, true
	return nil
}

func (k *kernelFlag) IsBoolFlag() bool { return true }

// wanted says whether kernel evidence is asked for, given --capture.
func (k *kernelFlag) wanted(capture bool) bool {
	if k.set {
		return k.on
	}
	return capture
}

// kernelUsage is the usage of --kernel.
const kernelUsage = "record the kernel's own word on each TCP reset of this process's connections: why it was sent (the kernel's reason) and by which process (Linux 6.10+, root; default: on with --capture; --kernel=false turns it off). The reasons: ssestress help kernel"

func (k *kernelFlag) register(fs *flagSet, usage string) {
	fs.Var(k, "kernel", usage)
}

// kernelRun is a command's kernel evidence while it runs.
type kernelRun struct {
	rec     *kernel.Recorder
	command string
	out     io.Writer
	once    sync.Once
	info    session.KernelInfo
}

// startKernel starts the kernel evidence of command, kept to the events
// of filter, into w (nil: in memory, up to keep events). It says in one
// line that it is on, or what is missing, and never fails the command:
// nil when off.
func startKernel(ctx context.Context, command string, w kernel.Writer, filter kernel.Filter, keep int, out io.Writer) *kernelRun {
	// The collector outlives the command's context: the resets of its own
	// shutdown (the sockets it closes after Ctrl-C) are read too. Close
	// removes the instance; a SIGKILL leaves it to the next start's sweep.
	rec, err := kernel.StartRecorder(context.WithoutCancel(ctx), w, kernel.RecordOptions{Filter: filter, Keep: keep})
	if err != nil {
		fmt.Fprintf(out, "ssestress %s: %s; going on with the other evidence\n", command, flatLine(err.Error()))
		return nil
	}
	fmt.Fprintf(out, "ssestress %s: kernel evidence: on (why each reset was sent, and by which process; tracefs instance %s)\n", command, rec.Instance())
	return &kernelRun{rec: rec, command: command, out: out}
}

// stop stops the collector (what the kernel still holds is read first),
// removes its instance, writes its KernelInfo and says in one line what
// it collected and whether the kernel lost events. Safe on nil and twice.
func (k *kernelRun) stop() session.KernelInfo {
	if k == nil {
		return session.KernelInfo{}
	}
	k.once.Do(func() {
		info, err := k.rec.Close()
		k.info = info
		fmt.Fprintf(k.out, "ssestress %s: %s\n", k.command, kernel.Summary(info))
		if err != nil {
			fmt.Fprintf(k.out, "ssestress %s: kernel evidence: %s\n", k.command, flatLine(err.Error()))
		}
	})
	return k.info
}

// events are the events kept in memory (a capture with no session file).
func (k *kernelRun) events() []session.KernelEvent {
	if k == nil {
		return nil
	}
	return k.rec.Events()
}

func flatLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// startKernel starts the proxy's kernel evidence: the events of its
// listener's sockets (its client hops), and of its upstream's or allowed
// hosts' (its upstream hops).
func (o *proxyOptions) startKernel(ctx context.Context, p *proxy.Proxy, cfg proxy.Config, capture bool, w kernel.Writer, out io.Writer) *kernelRun {
	if !o.kernel.wanted(capture) {
		return nil
	}
	addrs := []string{p.Addr()}
	if u, err := url.Parse(cfg.Upstream); err == nil && cfg.Upstream != "" {
		addrs = append(addrs, clients.HostPort(u))
	}
	var filter kernel.Filter
	for _, h := range cfg.AllowHosts {
		if _, _, err := net.SplitHostPort(h); err == nil {
			addrs = append(addrs, h)
			continue
		}
		filter.Addrs = append(filter.Addrs, hostAddrs(ctx, h)...) // every port of the host
	}
	filter.Endpoints = kernelEndpoints(ctx, addrs...)
	return startKernel(ctx, "proxy", w, filter, 0, out)
}

// captureKernelKeep bounds the kernel events a capture without a session
// file keeps in memory for its attribution.
const captureKernelKeep = 100000

// startKernel starts a capture's kernel evidence: the resets of its
// ports and target (every reset of the host when it has neither), into
// its session file, or kept in memory without one.
func (o *captureOptions) startKernel(ctx context.Context, w *session.Writer, out io.Writer) *kernelRun {
	if !o.kernel.wanted(true) {
		return nil
	}
	var filter kernel.Filter
	for _, p := range o.ports {
		filter.Ports = append(filter.Ports, uint16(p))
	}
	if _, _, err := net.SplitHostPort(o.target); err == nil {
		filter.Endpoints = kernelEndpoints(ctx, o.target)
	}
	if w == nil {
		return startKernel(ctx, "capture", nil, filter, captureKernelKeep, out)
	}
	return startKernel(ctx, "capture", w, filter, 0, out)
}

// kernelEndpoints turns the addresses a process knows (its listeners,
// targets, upstreams; host:port) into the addresses the kernel prints: a
// host name resolved (in at most 2 s), an unspecified address (a
// listener on 0.0.0.0) made into each of this host's addresses.
func kernelEndpoints(ctx context.Context, addrs ...string) []netip.AddrPort {
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	add := func(a netip.AddrPort) {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, s := range addrs {
		host, portText, err := net.SplitHostPort(s)
		if err != nil {
			continue
		}
		port, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || port == 0 {
			continue
		}
		for _, ip := range hostAddrs(ctx, host) {
			add(netip.AddrPortFrom(ip, uint16(port)))
		}
	}
	return out
}

// hostAddrs are the IP addresses of a host as given: itself, each of this
// host's addresses for an unspecified one (or ""), a name's addresses.
func hostAddrs(ctx context.Context, host string) []netip.Addr {
	host = strings.Trim(host, "[]")
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
		return []netip.Addr{ip}
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		var out []netip.Addr
		ifaddrs, _ := net.InterfaceAddrs()
		for _, a := range ifaddrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out = append(out, p.Addr())
			}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	return ips
}

// clientKeepalive is --client-keepalive: the TCP keepalive of the
// generated clients' sockets, probes every D after D of silence; after
// clientKeepaliveProbes unanswered probes the kernel gives up (the client
// gets ETIMEDOUT, the kernel says TCP_KEEPALIVE_TIMEOUT). The default is
// Go's, clients.DefaultKeepalive; 0 turns keepalive off.
type clientKeepalive = dur.Duration

// clientKeepaliveProbes is how many unanswered probes the kernel sends
// before it gives up (Linux's and Go's default).
const clientKeepaliveProbes = 9

// applyClientKeepalive sets the keepalive on the clients' transport and
// returns the period to record (RunInfo.Keepalive: 0 when off).
func applyClientKeepalive(d time.Duration, s *requestSetup) session.Seconds {
	ka := net.KeepAliveConfig{Enable: d > 0, Idle: d, Interval: d, Count: clientKeepaliveProbes}
	off := time.Duration(0)
	if d <= 0 {
		ka, off, d = net.KeepAliveConfig{}, -1, 0
	}
	if s.transport == nil && d != clients.DefaultKeepalive {
		// The clients' default transport is shared: a run's own one.
		s.transport = &clients.HTTP1{TLSConfig: s.tlsConfig}
	}
	if h1, ok := s.transport.(*clients.HTTP1); ok {
		h1.Dialer.KeepAliveConfig, h1.Dialer.KeepAlive = ka, off
	}
	if s.h2 != nil {
		s.h2.Dialer.KeepAliveConfig, s.h2.Dialer.KeepAlive = ka, off
	}
	return session.Seconds(d)
}

// kernelHelp is ssestress help kernel: what kernel evidence is, and each
// reason the kernel gives, for an SSE service.
func kernelHelp(w io.Writer) {
	fmt.Fprint(w, `Kernel evidence (--kernel on run, replay run, proxy and capture; on by default with --capture)

Since Linux 6.10 the kernel says why it sends each TCP reset (the tcp:tcp_send_reset tracepoint's
reason) and in which task's context. With --kernel, ssestress reads that from a tracefs instance of
its own (/sys/kernel/tracing/instances/ssestress-<pid>, removed at exit; one left by a killed process
is removed by the next start), keeps the resets of its own connections and topology addresses, and
writes them into its session file. The report joins them to the flows, the proxies' hop records
and the clients' errors by 4-tuple and time, and says who reset and why, e.g.

  node (pid 4242) on the server 127.0.0.1:8090 closed the socket with unread data
  (TCP_ABORT_ON_CLOSE) 61.2 s into the stream → its kernel sent a reset (RST) to proxy P,
  on proxy P's upstream hop → proxy P reset its client hop → client c0001 saw ECONNRESET

The process is the task the kernel ran for: the one that closed or aborted the socket when the
reason follows a system call (closes, SO_LINGER 0); for resets the kernel sends on its own (a timer,
an answer to a segment) the task is incidental, and the socket's owner, found in the socket table,
is named instead. It needs root (tracefs); without it, without tracefs, or on a kernel older than
6.10, one line says what is missing and the command goes on with its other evidence.

Reasons (what each means for an SSE service, and what usually causes it):
`)
	for _, name := range kernel.ReasonNames() {
		r, _ := kernel.ExplainReason(name)
		if strings.HasPrefix(name, "MPTCP_") || name == "MAX" {
			continue
		}
		fmt.Fprintf(w, "\n  %s\n", name)
		fmt.Fprint(w, wrapText("means: "+r.Meaning, "      ", 100))
		fmt.Fprint(w, wrapText("usually: "+r.Causes, "      ", 100))
	}
	fmt.Fprintln(w, "\n  MPTCP_RST_*  resets of MPTCP subflows (not plain TCP)")
	if names, err := kernel.KernelReasons(); err == nil {
		fmt.Fprint(w, "\n"+wrapText("This kernel prints: "+strings.Join(names, ", "), "", 100))
	}
}

// wrapText breaks text into lines of at most width columns, each after
// indent.
func wrapText(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent + "  "
		}
		if len(line) > len(indent) && !strings.HasSuffix(line, " ") {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}

// kernelColumn is a RST segment's kernel evidence in a table: the reason
// and the task (marked when incidental), or "-".
func kernelColumn(k *attribution.KernelReset) string {
	if k == nil {
		return "-"
	}
	who := ""
	switch {
	case !k.TaskIncidental && k.Comm != "":
		who = fmt.Sprintf(" %s/%d", k.Comm, k.PID)
	case k.OwnerComm != "":
		who = fmt.Sprintf(" owner %s/%d", k.OwnerComm, k.OwnerPID)
	}
	return k.Reason + who
}
