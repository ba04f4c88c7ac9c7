package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/capture"
	"github.com/ssestress/ssestress/capture/kernel"
	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/membudget"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/proxy"
)

// hopFlags are the run flags that put something between the clients and
// the target: an in-process fault proxy (--via-proxy, --fault) and a packet
// capture (--capture). The same flags serve replay run.
type hopFlags struct {
	viaProxy        bool
	faults          stringList
	onUpstreamError string
	timeScale       float64
	capture         bool
	capturePayload  bool // --capture-payload: the pcap keeps the streams' bytes
	iface           string
	pcap            string
	kernel          kernelFlag      // --kernel (kernel.go)
	clientKeepalive clientKeepalive // --client-keepalive (kernel.go)

	api         string       // --api: the in-process proxy's control API (and Toxiproxy's)
	apiTokenSrc secretSource // --api-token and its twins
	apiToken    string       // the token they give

	specs     []proxy.FaultSpec // parsed --fault
	keepalive dur.Duration
	cmd       string            // the subcommand, for messages: run, replay run
	budget    *membudget.Budget // the process's memory budget, shared with the in-process proxy
}

func (h *hopFlags) register(fs *flagSet) {
	fs.BoolVar(&h.viaProxy, "via-proxy", false, "start the fault proxy in-process between the clients and the target (implied by --fault)")
	fs.Var(&h.faults, "fault", "fault the in-process proxy injects: `KIND[:key=value,...]` or preset:NAME (repeatable; see ssestress proxy --help)")
	fs.StringVar(&h.onUpstreamError, "on-upstream-error", proxy.UpstreamReset, "with --via-proxy: what the client gets when the upstream fails mid-stream: `ACTION` reset, eof or abort")
	fs.Float64Var(&h.timeScale, "time-scale", 1, "with --via-proxy: shrink every fault duration by this factor (60: a 60s preset acts in 1s)")
	h.keepalive = dur.Duration(proxy.DefaultKeepalive)
	fs.Var(&h.keepalive, "keepalive", "with --via-proxy: TCP keepalive idle period of the proxy's sockets (0: off); recorded in the session file")
	fs.StringVar(&h.api, "api", "", "serve the in-process proxy's control API, Toxiproxy's API included, on `ADDR` (implies --via-proxy; a bare port binds loopback)")
	h.apiTokenSrc = secretSource{name: "api-token"}
	h.apiTokenSrc.register(fs, "with --api: `TOKEN` the API requires (Authorization: Bearer TOKEN); needed off loopback; never recorded")
	fs.BoolVar(&h.capture, "capture", false, "capture the run's packets and attribute every TCP reset to its sender and hop (needs root or CAP_NET_RAW)")
	fs.StringVar(&h.iface, "iface", "", "with --capture: `INTERFACES`, comma-separated, one capture each (default: every interface the target's and the proxy's traffic goes through)")
	fs.StringVar(&h.pcap, "pcap", "", "with --capture: pcap `FILE` to write (default: the session file's name with .pcap)")
	h.kernel.register(fs, kernelUsage)
	h.clientKeepalive = clientKeepalive(clients.DefaultKeepalive)
	fs.Var(&h.clientKeepalive, "client-keepalive", "TCP keepalive of the clients' sockets: probes every `D` after D of silence; 9 unanswered and the kernel gives up (ETIMEDOUT); 0: off; recorded in the session file")
	registerCapturePayload(fs, &h.capturePayload)
	fs.values(valueSpec{kind: valFault}, "fault")
	fs.values(words(proxy.UpstreamReset, proxy.UpstreamEOF, proxy.UpstreamAbort), "on-upstream-error")
	fs.values(wordsOf(interfaceNames), "iface")
	fs.values(files(), "pcap")
}

// interfaceNames are the host's network interfaces (for completing
// --iface).
func interfaceNames() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	names := make([]string, len(ifs))
	for i, f := range ifs {
		names[i] = f.Name
	}
	return names
}

// check parses the faults and checks the combinations; it returns notes
// for the user.
func (h *hopFlags) check(cmd string, http2 bool) ([]string, error) {
	h.cmd = cmd
	var notes []string
	for _, f := range h.faults {
		spec, err := proxy.ParseFault(f)
		if err != nil {
			return nil, usageErrorf("%s: --fault %v", cmd, err)
		}
		h.specs = append(h.specs, spec)
	}
	if len(h.specs) > 0 && !h.viaProxy {
		h.viaProxy = true
		notes = append(notes, "--fault starts the in-process proxy (--via-proxy)")
	}
	if h.apiTokenSrc.given() {
		tok, err := h.apiTokenSrc.resolve()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		h.apiToken = tok
	}
	if h.apiToken != "" && h.api == "" {
		return nil, usageErrorf("%s: --api-token goes with --api ADDR", cmd)
	}
	if h.api != "" && !h.viaProxy {
		h.viaProxy = true
		notes = append(notes, "--api starts the in-process proxy (--via-proxy)")
	}
	switch h.onUpstreamError {
	case proxy.UpstreamReset, proxy.UpstreamEOF, proxy.UpstreamAbort:
	default:
		return nil, usageErrorf("%s: --on-upstream-error must be reset, eof or abort, not %q", cmd, h.onUpstreamError)
	}
	if !validTimeScale(h.timeScale) {
		return nil, usageErrorf("%s: --time-scale must be positive (a finite number), got %v", cmd, h.timeScale)
	}
	if h.viaProxy && http2 {
		return nil, usageErrorf("%s: --http2 with --via-proxy: the in-process proxy's listener speaks HTTP/1.1; run ssestress proxy with TLS and point --target at it", cmd)
	}
	if !h.capture && (h.iface != "" || h.pcap != "") {
		return nil, usageErrorf("%s: --iface and --pcap need --capture", cmd)
	}
	if !h.capture && h.capturePayload {
		return nil, usageErrorf("%s: --capture-payload needs --capture", cmd)
	}
	if h.pcap != "" {
		if err := checkNew(cmd, "--pcap", h.pcap); err != nil {
			return nil, err
		}
	}
	return notes, nil
}

// validTimeScale reports whether a --time-scale is a finite positive
// number (NaN and Inf parse as floats).
func validTimeScale(f float64) bool { return f > 0 && !math.IsInf(f, 1) }

// secrets are the values of these flags that must never be printed or
// recorded (RunInfo.Args).
func (h *hopFlags) secrets() []string {
	if h.apiToken == "" {
		return nil
	}
	return []string{h.apiToken}
}

// runTimeScale is the time scale the run's faults act at (1 without the
// in-process proxy).
func (h *hopFlags) runTimeScale() float64 {
	if !h.viaProxy || h.timeScale <= 0 {
		return 1
	}
	return h.timeScale
}

// command is the subcommand for messages (run when check was not called).
func (h *hopFlags) command() string {
	if h.cmd == "" {
		return "run"
	}
	return h.cmd
}

// hops is what runs between the clients and the target.
type hops struct {
	proxy   *proxy.Proxy
	capture *capture.Multi
	kernel  *kernelRun
}

// start starts the proxy and the capture, records them in the session
// file, and returns the URL the clients use instead of target.
func (h *hopFlags) start(ctx context.Context, target string, targetTLS *tls.Config, targetAddrs []string, w *session.Writer, sessionPath string, errOut io.Writer) (string, *hops, error) {
	hp := &hops{}
	clientURL := target
	if h.viaProxy {
		origin, rest, err := splitOrigin(target)
		if err != nil {
			return "", nil, err
		}
		p, err := proxy.Start(ctx, proxy.Config{
			Listen: "127.0.0.1:0", Upstream: origin, Name: "run-proxy", Faults: h.specs,
			OnUpstreamError: h.onUpstreamError, TimeScale: h.timeScale, Keepalive: keepaliveConfig(time.Duration(h.keepalive)),
			TLSClientConfig: targetTLS, Session: w, Budget: h.budget,
			API: h.api, APIToken: h.apiToken, Version: version,
			// No log line per firing: a run may fire thousands; the
			// session file and the report hold every one.
		})
		if errors.Is(err, proxy.ErrAPIListen) || errors.Is(err, proxy.ErrAPINotLoopback) {
			return "", nil, badValue(h.command()+": --api", err)
		}
		if err != nil {
			return "", nil, fmt.Errorf("in-process proxy: %w", err)
		}
		hp.proxy = p
		clientURL = p.URL() + rest
		fault := "no fault"
		if len(h.faults) > 0 {
			fault = strings.Join(h.faults, " ")
		}
		fmt.Fprintf(errOut, "ssestress %s: via in-process proxy %s → %s (%s)\n", h.command(), p.URL(), origin, fault)
		if a := p.APIAddr(); a != "" {
			fmt.Fprintf(errOut, "ssestress %s: control API on http://%s: /faults /conns /events, and Toxiproxy's /proxies (this proxy is %s)\n", h.command(), a, p.Name())
		}
	}
	if h.capture {
		addrs := targetAddrs
		if hp.proxy != nil {
			addrs = append(addrs[:len(addrs):len(addrs)], hp.proxy.Addr())
		}
		c, ports, out, err := startCapture(ctx, target, addrs, h.iface, h.pcap, h.capturePayload, sessionPath, w)
		switch {
		case errors.Is(err, capture.ErrNotPermitted), errors.Is(err, capture.ErrUnsupported):
			fmt.Fprintf(errOut, "ssestress: note: %v; going on without capture: resets are attributed from socket evidence only (lower confidence)\n", err)
		case err != nil:
			hp.stop()
			return "", nil, err
		default:
			hp.capture = c
			fmt.Fprintf(errOut, "ssestress %s: capturing TCP ports %v on %s into %s\n", h.command(), ports, c.Iface(), out)
		}
	}
	if h.kernel.wanted(h.capture) {
		// The clients' sockets all have the target (or the in-process
		// proxy) at their other end, and so do the proxy's.
		addrs := targetAddrs
		if hp.proxy != nil {
			addrs = append(addrs[:len(addrs):len(addrs)], hp.proxy.Addr())
		}
		hp.kernel = startKernel(ctx, h.command(), w, kernel.Filter{Endpoints: kernelEndpoints(ctx, addrs...)}, 0, errOut)
	}
	return clientURL, hp, nil
}

// stop closes the proxy (its records are queued when Close returns) and
// then the capture (which needs the last packets). Safe to call twice.
func (hp *hops) stop() {
	if hp == nil {
		return
	}
	if hp.proxy != nil {
		hp.proxy.Close()
		hp.proxy = nil
	}
	if hp.capture != nil {
		hp.capture.Stop()
		hp.capture = nil
	}
	hp.kernel.stop() // last: the resets of the proxy's and the clients' ends are in
}

// splitOrigin splits a target URL (which may hold a {symbols} template)
// into its origin, "http://host:port", and the rest, "/path?query".
func splitOrigin(target string) (origin, rest string, err error) {
	scheme, after, ok := strings.Cut(target, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return "", "", fmt.Errorf("target %s is not an http:// or https:// URL", redactURL(target))
	}
	end := strings.IndexAny(after, "/?#")
	if end < 0 {
		end = len(after)
	}
	return scheme + "://" + after[:end], after[end:], nil
}

// startCapture captures the TCP ports of addrs (host:port) into pcap, by
// default the session file's name with .pcap, and returns the ports and the
// file. iface lists interfaces, comma-separated; without it every
// interface the traffic to target and addrs goes through gets a capture of
// its own. Used by run, replay run and proxy.
func startCapture(ctx context.Context, target string, addrs []string, iface, pcap string, payload bool, sessionPath string, w *session.Writer) (*capture.Multi, []int, string, error) {
	var ports []int
	for _, a := range addrs {
		if _, p, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				ports = append(ports, n)
			}
		}
	}
	if pcap == "" {
		pcap = strings.TrimSuffix(sessionPath, ".db") + ".pcap"
	}
	var ifaces []string
	for _, i := range strings.Split(iface, ",") {
		if i = strings.TrimSpace(i); i != "" {
			ifaces = append(ifaces, i)
		}
	}
	if len(ifaces) == 0 {
		ifaces, _ = capture.Ifaces(ctx, append([]string{target}, addrs...))
	}
	c, err := capture.StartEach(ctx, capture.Config{Target: target, Ports: ports, Out: pcap, Session: w, Payload: payload}, ifaces)
	return c, ports, pcap, err
}

// explains says whether the run ends with the attribution line: when it
// collected evidence beyond its clients' errors (a proxy's records,
// packets, the kernel's word).
func (h *hopFlags) explains() bool {
	return h.viaProxy || h.capture || h.kernel.wanted(h.capture)
}
