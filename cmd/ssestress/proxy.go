package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/ssestress/ssestress/capture"
	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/limits"
	"github.com/ssestress/ssestress/internal/procstat"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/redact"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/tlsutil"
	"github.com/ssestress/ssestress/proxy"
)

// proxyOptions are the flags of ssestress proxy. Each maps onto a
// proxy.Config field and config-file key of the same name.
type proxyOptions struct {
	flags           *flagSet // the parsed command line (its secrets are warned about)
	keepalive       dur.Duration
	config          string
	listen          string
	upstream        string
	name            string
	allowHosts      stringList
	faults          stringList
	onUpstreamError string
	timeScale       float64
	api             string
	apiToken        secretSource // --api-token and its twins (secrets.go)
	out             string
	record          string
	redact          stringList
	noRedact        bool
	quiet           bool
	httpAddr        string // --http: live view address; empty: none

	tlsCert, tlsKey, tlsCertOut string
	tlsSelfSigned               bool
	force                       bool // --force: replace --tls-cert-out
	upstreamCA                  string
	upstreamInsecure            bool
	upstreamHeaderTimeout       time.Duration
	maxEventSize                int64
	maxFileSize                 int64
	mem                         memoryFlags // --max-memory
	mitm                        mitmFlags   // --mitm, --mitm-ca, --mitm-ca-out (proxy_mitm.go)
	monitorInterval             time.Duration
	capture                     struct {
		on, payload bool
		iface, pcap string
	}
	kernel kernelFlag // --kernel (kernel.go)
	args   []string
}

const proxySynopsis = "proxy --upstream URL [--listen ADDR] [--name NAME] [--fault KIND[:key=value,...]]... [--tls-self-signed | --tls-cert FILE --tls-key FILE] [--api ADDR] [--out FILE | --record FILE]"

const proxyExamples = `  ssestress proxy --listen 127.0.0.1:8080 --upstream http://127.0.0.1:8090
  ssestress proxy --upstream http://127.0.0.1:8090 --fault reset:hop=upstream,after=5s,toxicity=0.5
  ssestress proxy --upstream http://127.0.0.1:8090 --fault idle-timeout:idle=60s --fault latency:delay=50ms,jitter=10ms
  ssestress proxy --upstream http://127.0.0.1:8090 --fault preset:aws-alb --time-scale 60
  ssestress proxy --upstream http://127.0.0.1:8090 --api 127.0.0.1:8474 --record staging.db
  ssestress proxy --upstream http://127.0.0.1:8090 --fault preset:nginx --http 127.0.0.1:9091   (live page at /, /metrics)
  ssestress proxy --listen 127.0.0.1:3128 --allow-host api.staging.example:443 --fault preset:aws-nat
  curl -s 127.0.0.1:8474/conns; curl -s -X POST 127.0.0.1:8474/faults -d '"reset:after=1s"'
  toxiproxy-cli -h http://127.0.0.1:8474 toxic add -t reset_peer -a timeout=5000 -n rp proxy   (Toxiproxy's API)
  ssestress proxy --upstream http://127.0.0.1:8090 --fault reset_peer:timeout=5000   (Toxiproxy's names and units)
  ssestress proxy --upstream https://api.example --tls-self-signed --tls-cert-out proxy.pem --fault h2-rst-stream:code=CANCEL,after=30s
  ssestress tail --http2 --ca proxy.pem https://127.0.0.1:8080/stream
  ssestress proxy --upstream https://127.0.0.1:8443 --upstream-ca server.pem --fault h2-goaway:code=NO_ERROR,after=60s

Fault kinds (--fault KIND[:key=value,...]; common keys: hop=client|upstream,
direction=down|up|both, toxicity=0..1, match=/path-prefix, after=DURATION, name=NAME):
`

var proxyCmd = &command{
	name:     "proxy",
	summary:  "run the fault-injecting proxy in front of an SSE service: per-hop TCP and SSE faults, control API",
	synopsis: proxySynopsis,
	examples: proxyExamples + proxy.KindHelp() + proxy.ToxiproxyHelp(),
	setup: func(fs *flagSet) action {
		o := newProxyOptions(fs)
		return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
			o.args, o.flags = fs.argv, fs
			return o.run(ctx, flagsSet(fs.FlagSet), stdout, stderr)
		}
	},
}

// newProxyOptions registers the proxy's flags on fs.
func newProxyOptions(fs *flagSet) *proxyOptions {
	o := &proxyOptions{}
	fs.StringVar(&o.config, "config", "", "JSON config `FILE`: keys named like these flags (flags given override it)")
	fs.StringVar(&o.listen, "listen", proxy.DefaultListen, "`ADDR` to listen on; a bare port (:8080) binds loopback, name a host to bind another interface (0.0.0.0:8080)")
	fs.StringVar(&o.upstream, "upstream", "", "server of reverse mode (http:// or https:// `URL`)")
	fs.StringVar(&o.name, "name", proxy.DefaultName, "the proxy's `NAME` in records (give chained proxies distinct names)")
	fs.Var(&o.allowHosts, "allow-host", "`HOST` or host:port that forward mode (HTTP_PROXY clients) may reach (repeatable)")
	fs.Var(&o.faults, "fault", "fault to inject: `KIND[:key=value,...]` or preset:NAME (repeatable)")
	fs.StringVar(&o.onUpstreamError, "on-upstream-error", proxy.UpstreamReset, "`ACTION` the client gets when the upstream fails mid-stream: reset (ECONNRESET), eof (clean end) or abort (cut body); on HTTP/2 reset and abort reset the stream (RST_STREAM INTERNAL_ERROR)")
	fs.Float64Var(&o.timeScale, "time-scale", 1, "shrink every fault duration by this factor (60: a 60s preset acts in 1s)")
	fs.StringVar(&o.api, "api", "", "control API `ADDR`, e.g. 127.0.0.1:8474 (off by default; a bare port binds loopback)")
	fs.StringVar(&o.httpAddr, "http", "", "serve a live view on `ADDR` (loopback when no host is given): a live page at /, /metrics (Prometheus), /report")
	o.apiToken = secretSource{name: "api-token"}
	o.apiToken.register(fs, "`TOKEN` the control API requires (Authorization: Bearer TOKEN); needed off loopback")
	fs.StringVar(&o.out, "out", "", "session `FILE` to write (default ssestress-proxy-<timestamp>.db; never overwritten)")
	fs.StringVar(&o.record, "record", "", "record every stream into this session `FILE` (same as --out, with recording on)")
	fs.Var(&o.redact, "redact", "`NAME` of a header or query parameter whose value records replace by a marker, besides the credentials known (Authorization, Cookie, X-Api-Key, token=, api_key=, sig=, ...; repeatable)")
	fs.BoolVar(&o.noRedact, "no-redact", false, "record every header and query as they were, credentials included")
	fs.BoolVar(&o.quiet, "quiet", false, "do not print fault firings and upstream failures")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate `FILE` the listener presents (TLS; h2 and http/1.1 offered with ALPN)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `FILE` of --tls-cert")
	fs.BoolVar(&o.tlsSelfSigned, "tls-self-signed", false, "listen with TLS, with a certificate generated at start for loopback and the listen host")
	fs.StringVar(&o.tlsCertOut, "tls-cert-out", "", "write the --tls-self-signed certificate to `FILE`, for clients' --ca (an existing file only with --force)")
	fs.BoolVar(&o.force, "force", false, fmt.Sprintf(forceUsage, "--tls-cert-out; the MITM CA and its key never are"))
	fs.StringVar(&o.upstreamCA, "upstream-ca", "", "PEM certificates `FILE` trusted for an https upstream, besides the system roots")
	fs.BoolVar(&o.upstreamInsecure, "upstream-insecure", false, "do not verify an https upstream's certificate")
	o.keepalive = dur.Duration(proxy.DefaultKeepalive)
	fs.Var(&o.keepalive, "keepalive", "TCP keepalive idle period `D` (and probe interval) of both hops' sockets; 0 turns keepalive off. Recorded in the session file, so a reset answering the proxy's own probe is never taken for a middlebox's timeout")
	fs.DurationVar(&o.upstreamHeaderTimeout, "upstream-header-timeout", proxy.DefaultUpstreamHeaderTimeout, "wait at most this long for the upstream's response headers, then answer 504 (0: no limit)")
	fs.SizeVar(&o.maxEventSize, "max-event-size", 0, "end a stream whose SSE event (or line) grows past `SIZE`, e.g. 16MB or 16MiB: LINE_TOO_LONG on the upstream hop (default: no limit, streamed)")
	fs.SizeVar(&o.maxFileSize, "max-file-size", 0, "stop recording (the proxy goes on) once the session file would pass `SIZE` (e.g. 500MB, 2GiB)")
	o.mem.register(fs)
	fs.DurationVar(&o.monitorInterval, "monitor-interval", clients.DefaultMonitorInterval, "interval of the proxy's own resource samples (memory, fds, CPU, timer lag) in the session file")
	o.mitm.register(fs)
	fs.BoolVar(&o.capture.on, "capture", false, "capture both hops' packets and attribute every TCP reset at the end (needs root or CAP_NET_RAW)")
	fs.StringVar(&o.capture.iface, "iface", "", "with --capture: `INTERFACES`, comma-separated, one capture each (default: every interface the listener's and the upstream's traffic goes through)")
	fs.StringVar(&o.capture.pcap, "pcap", "", "with --capture: pcap `FILE` to write (default: the session file's name with .pcap)")
	o.kernel.register(fs, kernelUsage)
	registerCapturePayload(fs, &o.capture.payload)
	fs.values(files(), "config", "out", "record", "tls-cert", "tls-key", "tls-cert-out", "upstream-ca", "pcap")
	fs.values(valueSpec{kind: valFault}, "fault")
	fs.values(words(proxy.UpstreamReset, proxy.UpstreamEOF, proxy.UpstreamAbort), "on-upstream-error")
	fs.values(wordsOf(interfaceNames), "iface")
	return o
}

// run is ssestress proxy once its flags are parsed; set says which were
// given (they override the config file).
func (o *proxyOptions) run(ctx context.Context, set map[string]bool, stdout, stderr io.Writer) error {
	capt := o.capture
	monitorInterval := o.monitorInterval
	cfg, err := o.proxyConfig(set)
	if err != nil {
		return err
	}
	if cfg.Upstream == "" && len(cfg.AllowHosts) == 0 {
		return usageErrorf("proxy: give --upstream URL (reverse mode) or --allow-host HOST (forward mode)")
	}
	if monitorInterval <= 0 {
		return usageErrorf("proxy: --monitor-interval must be positive")
	}
	if !capt.on && (capt.iface != "" || capt.pcap != "") {
		return usageErrorf("proxy: --iface and --pcap need --capture")
	}
	if o.httpAddr != "" {
		if _, err := liveListenAddr(o.httpAddr); err != nil {
			return usageErrorf("proxy: %v", err)
		}
	}
	if !capt.on && capt.payload {
		return usageErrorf("proxy: --capture-payload needs --capture")
	}
	if capt.pcap != "" {
		if err := checkNew("proxy", "--pcap", capt.pcap); err != nil {
			return err
		}
	}
	if capt.on && cfg.Upstream == "" {
		return usageErrorf("proxy: --capture needs --upstream (forward mode has no fixed server port to filter on)")
	}

	path := o.out
	if o.record != "" {
		if o.out != "" && o.out != o.record {
			return usageErrorf("proxy: --out %s and --record %s name two files: recordings go into the session file, give one", o.out, o.record)
		}
		path = o.record
	}
	if path == "" {
		path = defaultSessionPath("proxy", time.Now())
	}
	o.mitm.apply(&cfg, set, path)
	cfg.TLSCertOutForce = o.force
	if cfg.TLSSelfSigned {
		if err := checkOutput("proxy", "--tls-cert-out", cfg.TLSCertOut, o.force); err != nil {
			return err
		}
	}
	memory, err := o.mem.start("proxy")
	if err != nil {
		return err
	}
	cfg.Budget = memory.buffers
	if o.flags != nil {
		warnSecrets(o.flags, stderr)
	}
	logOut := &lockedWriter{w: stderr, stamp: true}
	logLine := func(format string, args ...any) { fmt.Fprintf(logOut, format+"\n", args...) }
	// Every proxied stream holds two descriptors: raise the soft limit to
	// the hard one, as run does.
	if _, err := limits.RaiseNoFile(); err != nil {
		logLine("ssestress: %v", err)
	}
	ss, err := openSession(sessionSpec{
		command: "proxy", path: path, flagName: "--out", maxSize: o.maxFileSize, maxPending: memory.writer, errOut: logOut,
		info: session.RunInfo{Args: redactArgs(o.args, []string{cfg.APIToken}), Target: redactURL(cfg.Upstream),
			Config: redactedConfig(cfg), TimeScale: cfg.TimeScale},
	})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	defer ss.close() // before the proxy starts listening, the file goes
	cfg.Session = ss.w
	redact.Also(o.redact...) // the proxy's records and log too, not only recordings
	if o.record != "" {
		cfg.Recorder = recording.New(ss.w, cfg.Name, recording.Options{Redact: o.redact, NoRedact: o.noRedact})
	}
	if !o.quiet {
		cfg.Logf = logLine
	}
	p, err := proxy.Start(ctx, cfg)
	if err != nil {
		if tlsErr := proxyTLSFlags.explain(err); tlsErr != err {
			return usageErrorf("proxy: %v", tlsErr)
		}
		if errors.Is(err, proxy.ErrAPINotLoopback) || errors.Is(err, proxy.ErrBadConfig) || errors.Is(err, proxy.ErrBadFault) {
			return usageErrorf("proxy: %v", err)
		}
		return badValue("proxy", err)
	}
	if err := ss.serveLive(o.httpAddr, monitorInterval, newProxyLive(p)); err != nil {
		p.Close()
		return fmt.Errorf("proxy: %w", err)
	}
	// The kernel's evidence from the first connection on: before the
	// proxy says it listens.
	kr := o.startKernel(ctx, p, cfg, capt.on, ss.w, stdout)
	defer kr.stop()
	printProxyStart(stdout, p, cfg, path)
	printMITM(stdout, cfg)
	var c *capture.Multi
	if capt.on {
		c = startProxyCapture(ctx, p, cfg.Upstream, capt.iface, capt.pcap, capt.payload, path, ss.w, stdout, logLine)
	}
	// The proxy's own memory, fds, goroutines, CPU and timer lag go into
	// the samples, so a report can show when the proxy itself was the
	// bottleneck; so do its client connections open and the events it
	// forwarded, which its graphs draw.
	ss.monitor(&clients.Monitor{Interval: monitorInterval, Gauges: func() (int64, int64) {
		st := p.Stats()
		return st.Active, st.EventsDown
	}})
	<-ctx.Done()
	p.Close()
	ss.stopMonitor()
	if c != nil {
		c.Stop()
	}
	kr.stop()
	st := p.Stats()
	sum := p.Summary()
	if self, err := procstat.Self(); err == nil {
		sum.MemoryPeakBytes = self.RSSPeak
	}
	if err := ss.end(&sum); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	dropped := ss.w.Dropped()
	// A proxy's file explains its own hops, with or without packets.
	ss.attribute(ctx, stdout)
	fmt.Fprintf(stdout, "stopped: %d client connections, %d requests, %d faults fired; session file %s\n",
		st.Conns, st.Streams, st.FaultsFired, path)
	if st.AcceptErrors > 0 || st.DialErrors > 0 {
		fmt.Fprintf(stdout, "  %d accepts and %d upstream dials failed (see errors)\n", st.AcceptErrors, st.DialErrors)
	}
	pinfo := p.Info()
	if err := printProxySummary(stdout, sum, pinfo); err != nil {
		return err
	}
	for _, a := range p.AddedProxies() {
		fmt.Fprintf(stdout, "proxy %s (added through the API, %s → %s): %d client connections, %d requests, %d events, %d faults fired\n",
			a.Name, a.Listen, a.Upstream, a.Connections, a.Requests, a.Events, a.FaultsFired)
	}
	if dropped > 0 {
		fmt.Fprintf(stdout, "warning: %d records were not stored (queue or file full)\n", dropped)
	}
	return nil
}

// proxyTLSFlags name the proxy's TLS flags: the upstream's trust and the
// listener's certificate.
var proxyTLSFlags = tlsFlags{tlsutil.OptCAFile: "--upstream-ca", tlsutil.OptInsecure: "--upstream-insecure"}.with(serverTLSFlags)

// keepaliveConfig turns the --keepalive flag (0: off) into
// proxy.Config.Keepalive (0: the default, negative: off).
func keepaliveConfig(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// proxyConfig builds the Config: the config file, then the flags given.
func (o *proxyOptions) proxyConfig(set map[string]bool) (proxy.Config, error) {
	var cfg proxy.Config
	if o.config != "" {
		c, err := proxy.LoadConfig(o.config)
		if err != nil {
			return cfg, usageErrorf("proxy: --config %v", err)
		}
		cfg = c
	}
	str := func(flag string, dst *string, v string) {
		if set[flag] || *dst == "" {
			*dst = v
		}
	}
	str("listen", &cfg.Listen, o.listen)
	str("upstream", &cfg.Upstream, o.upstream)
	str("name", &cfg.Name, o.name)
	str("on-upstream-error", &cfg.OnUpstreamError, o.onUpstreamError)
	str("api", &cfg.API, o.api)
	if o.apiToken.given() {
		tok, err := o.apiToken.resolve()
		if err != nil {
			return cfg, err
		}
		cfg.APIToken = tok
	} else if cfg.APIToken != "" {
		if err := checkToken(strings.TrimSpace(cfg.APIToken)); err != nil {
			return cfg, usageErrorf("proxy: --config: api-token: %v", err)
		}
		cfg.APIToken = strings.TrimSpace(cfg.APIToken)
	}
	cfg.Version = version
	if set["time-scale"] || cfg.TimeScale == 0 {
		cfg.TimeScale = o.timeScale
	}
	if set["keepalive"] || cfg.Keepalive == 0 {
		cfg.Keepalive = keepaliveConfig(time.Duration(o.keepalive))
	}
	if !validTimeScale(cfg.TimeScale) {
		return cfg, usageErrorf("proxy: --time-scale %v must be positive", cfg.TimeScale)
	}
	cfg.AllowHosts = append(cfg.AllowHosts, o.allowHosts...)
	for _, text := range o.faults {
		spec, err := proxy.ParseFault(text)
		if err != nil {
			return cfg, usageErrorf("proxy: --fault %v", err)
		}
		cfg.Faults = append(cfg.Faults, spec)
	}
	if cfg.Upstream != "" {
		if _, err := proxy.ParseUpstream(cfg.Upstream); err != nil {
			return cfg, usageErrorf("proxy: --upstream: %v", err)
		}
	}
	str("tls-cert", &cfg.TLSCert, o.tlsCert)
	str("tls-key", &cfg.TLSKey, o.tlsKey)
	str("tls-cert-out", &cfg.TLSCertOut, o.tlsCertOut)
	str("upstream-ca", &cfg.UpstreamCA, o.upstreamCA)
	cfg.TLSSelfSigned = cfg.TLSSelfSigned || o.tlsSelfSigned
	cfg.UpstreamInsecure = cfg.UpstreamInsecure || o.upstreamInsecure
	if set["upstream-header-timeout"] || cfg.UpstreamHeaderTimeout == 0 {
		switch {
		case o.upstreamHeaderTimeout < 0:
			return cfg, usageErrorf("proxy: --upstream-header-timeout %v must not be negative", o.upstreamHeaderTimeout)
		case o.upstreamHeaderTimeout == 0:
			cfg.UpstreamHeaderTimeout = -1 // no limit
		default:
			cfg.UpstreamHeaderTimeout = o.upstreamHeaderTimeout
		}
	}
	if set["max-event-size"] {
		cfg.MaxEventSize = o.maxEventSize
	}
	if cfg.UpstreamCA != "" && cfg.UpstreamInsecure {
		return cfg, usageErrorf("proxy: --upstream-ca trusts a certificate, --upstream-insecure trusts any: give one or the other")
	}
	return cfg, nil
}

// redactedConfig is the config as recorded in the session file, without
// the API token.
func redactedConfig(cfg proxy.Config) json.RawMessage {
	if cfg.APIToken != "" {
		cfg.APIToken = redactedValue
	}
	cfg.Upstream = redactURL(cfg.Upstream)
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil
	}
	return b
}

func printProxyStart(w io.Writer, p *proxy.Proxy, cfg proxy.Config, path string) {
	mode := "forward mode only (HTTP_PROXY clients)"
	if cfg.Upstream != "" {
		mode = "→ " + redactURL(cfg.Upstream)
	}
	fmt.Fprintf(w, "proxy %s listening on %s %s\n", p.Name(), p.URL(), mode)
	if strings.HasPrefix(p.URL(), "https:") {
		fmt.Fprintf(w, "  TLS: h2 and http/1.1 (ALPN); h2c is not served on a TLS listener\n")
		if cfg.TLSCertOut != "" {
			fmt.Fprintf(w, "  certificate written to %s (clients: --ca %s)\n", cfg.TLSCertOut, cfg.TLSCertOut)
		}
	} else {
		fmt.Fprintf(w, "  HTTP/1.1, and h2c (HTTP/2 with prior knowledge)\n")
	}
	if len(cfg.AllowHosts) > 0 {
		fmt.Fprintf(w, "  forward mode to: %s\n", strings.Join(cfg.AllowHosts, ", "))
	}
	for _, f := range p.Faults() {
		fmt.Fprintf(w, "  fault %s\n", f.Spec)
	}
	if cfg.TimeScale != 1 {
		fmt.Fprintf(w, "  fault durations shrunk %vx (--time-scale)\n", cfg.TimeScale)
	}
	fmt.Fprintf(w, "  on upstream error: %s the client\n", orDefault(cfg.OnUpstreamError, proxy.UpstreamReset))
	if a := p.APIAddr(); a != "" {
		auth := ""
		if cfg.APIToken != "" {
			auth = " (token required)"
		}
		fmt.Fprintf(w, "  control API on http://%s%s: /faults /conns /events /stats, and Toxiproxy's /proxies /reset /populate (toxiproxy-cli -h http://%s)\n", a, auth, a)
	}
	rec := ""
	if cfg.Recorder != nil {
		rec = ", recording streams"
	}
	fmt.Fprintf(w, "  session file %s%s; Ctrl-C stops\n", path, rec)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// startProxyCapture captures the proxy's listen port and the upstream's
// port. Without permission it says so and the proxy goes on: resets are
// then attributed from the proxy's own socket evidence.
func startProxyCapture(ctx context.Context, p *proxy.Proxy, upstream, iface, pcap string, payload bool, sessionPath string, w *session.Writer, stdout io.Writer, logLine func(string, ...any)) *capture.Multi {
	upstreamAddr := ""
	if u, err := url.Parse(upstream); err == nil {
		upstreamAddr = clients.HostPort(u)
	}
	c, ports, out, err := startCapture(ctx, upstream, []string{p.Addr(), upstreamAddr}, iface, pcap, payload, sessionPath, w)
	if err != nil {
		logLine("ssestress: note: %v; going on without capture: resets are attributed from the proxy's socket evidence only", err)
		return nil
	}
	fmt.Fprintf(stdout, "capturing TCP ports %v on %s into %s\n", ports, c.Iface(), out)
	return c
}
