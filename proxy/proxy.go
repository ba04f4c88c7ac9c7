// Package proxy is the ssestress fault-injecting proxy: it stands in for one
// hop of a production SSE path (a load balancer, a reverse proxy, a NAT)
// and misbehaves on purpose, one hop at a time, to reproduce a reset and to
// prove which hop causes it.
//
// It is built on github.com/elazarl/goproxy, which routes every request
// (reverse and forward mode, CONNECT). Data enters on the client hop
// (client ↔ proxy), whose sockets are wrapped at Accept, and leaves on the
// upstream hop (proxy ↔ server), whose sockets are wrapped at dial (one
// upstream socket per request); both wrappers (hopConn) count bytes and
// activity, see FIN and RST, and apply the TCP-level faults of their hop.
// HTTP/1.1 clients are served by the proxy's own connection loop (h1.go):
// one goroutine per connection and one watching the client socket while a
// request is served; once goproxy has routed a request and the proxy's own
// upstream client (upstream.go) has its response head, the stream is
// copied by the connection's goroutine straight from the upstream socket
// to the client's. HTTP/2 clients are served by net/http through the same
// front. The response body is a streamBody whose copy loop applies the
// SSE-aware faults at event boundaries and the --on-upstream-error
// policy. Records leave through the session Writer
// given in Config (HopConn per hop at open and close, FaultEvent per
// firing, the topology), and events through the control API.
//
// Reverse mode: relative requests go to Config.Upstream. Forward mode:
// absolute-form requests (clients with HTTP_PROXY) go only to the hosts of
// Config.AllowHosts; others get 403 and CONNECT to them is refused.
//
// The listener may terminate TLS (Config.TLSCert/TLSKey, TLSSelfSigned);
// it then offers h2 and http/1.1 with ALPN, and a plain listener accepts
// h2c (HTTP/2 with prior knowledge). TLS sits above the client hopConn, so
// TCP faults still act on the real socket; between TLS and the HTTP server
// a clientWire follows the HTTP/2 framing so that the h2-rst-stream and
// h2-goaway faults can send their frames. The upstream hop speaks HTTP/1.1,
// in TLS to an https upstream.
//
// Files: proxy.go (Config, Start, Close), h1.go (the HTTP/1.1 server of
// the client hop), front.go (every request's first steps), routing.go
// (goproxy's hooks), upstream.go (the upstream hop's HTTP/1.1 client),
// body.go (the stream's copy loops), stream.go, conn.go (hopConn), wire.go
// (TLS and HTTP/2 framing of the client hop), lines.go (delay lines),
// live.go, listener.go, stats.go, api.go (the control API), events.go;
// faults: faults.go (the framework: Fault, attachment, the abilities an
// effect may have), kinds.go (the registry), presets.go, and one file per
// kind, fault_<kind>.go, each a kind value and its behaviour.
//
// Listen addresses without a host bind loopback only (":8080" is
// 127.0.0.1:8080); another interface must be named (0.0.0.0:8080). At
// the file descriptor limit, accept and dial failures (EMFILE, ENFILE)
// are counted (Stats, Summary) and accept backs off, 5 ms doubling to 1 s,
// rather than spin.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/ssestress/ssestress/internal/listenaddr"
	"github.com/ssestress/ssestress/internal/membudget"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/redact"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// DefaultListen is where the proxy listens when no address is given.
const DefaultListen = "127.0.0.1:8080"

// DefaultName names a proxy when Config.Name is empty.
const DefaultName = "proxy"

// DefaultUpstreamHeaderTimeout is how long the proxy waits for an
// upstream's response headers when Config.UpstreamHeaderTimeout is zero.
const DefaultUpstreamHeaderTimeout = 30 * time.Second

// DefaultKeepalive is the proxy's TCP keepalive idle period when
// Config.Keepalive is zero: Go's own default for dialed and accepted
// sockets.
const DefaultKeepalive = 15 * time.Second

// Errors of Start.
var (
	// ErrAPINotLoopback: the control API would listen on a non-loopback
	// address without a token.
	ErrAPINotLoopback = errors.New("is not a loopback address: give --api-token (the API then requires it, compared in constant time) or bind the API to 127.0.0.1")
	// ErrBadConfig wraps every other invalid setting.
	ErrBadConfig = errors.New("bad proxy config")
)

// Config configures a proxy. Zero values mean the defaults; each field has
// the flag and config-file key of the same name (--allow-host, "allow-host").
type Config struct {
	// Listen is the proxy's address (default DefaultListen, loopback;
	// "127.0.0.1:0" picks a free port). Without a host (":8080", "8080")
	// it binds loopback; another interface must be named.
	Listen string `json:"listen,omitempty"`
	// Upstream is the server of reverse mode, an http or https URL (a path
	// is prefixed to every request's). Empty: forward mode only.
	Upstream string `json:"upstream,omitempty"`
	// Name names the proxy in every record (default DefaultName); chained
	// proxies need distinct names.
	Name string `json:"name,omitempty"`
	// AllowHosts are the hosts forward mode serves: "host" (any port) or
	// "host:port". Others get 403; CONNECT is refused to them.
	AllowHosts []string `json:"allow-host,omitempty"`
	// Faults are installed at start.
	Faults []FaultSpec `json:"fault,omitempty"`
	// OnUpstreamError is UpstreamReset (default), UpstreamEOF or
	// UpstreamAbort. On an HTTP/2 client, reset and abort reset the one
	// stream (RST_STREAM INTERNAL_ERROR), not the connection its other
	// streams share.
	OnUpstreamError string `json:"on-upstream-error,omitempty"`
	// TimeScale shrinks every fault duration by this factor (default 1):
	// 60 makes a 60 s preset act in 1 s.
	TimeScale float64 `json:"time-scale,omitempty"`
	// API is the control API's address; empty: no API.
	API string `json:"api,omitempty"`
	// Budget is the process's memory budget (--max-memory): the delay
	// lines of shaping faults are charged to it (memory.go). nil: none.
	Budget *membudget.Budget `json:"-"`
	// APIToken, when set, is required as "Authorization: Bearer TOKEN" on
	// every API request. An API on a non-loopback address requires one.
	APIToken string `json:"api-token,omitempty"`
	// TLSCert and TLSKey are the PEM files of the listener's certificate;
	// TLSSelfSigned generates one at start instead, valid for loopback and
	// the listen host, and TLSCertOut writes it for clients (--ca). With
	// any of them the listener speaks TLS and offers h2 and http/1.1.
	TLSCert       string `json:"tls-cert,omitempty"`
	TLSKey        string `json:"tls-key,omitempty"`
	TLSSelfSigned bool   `json:"tls-self-signed,omitempty"`
	TLSCertOut    string `json:"tls-cert-out,omitempty"`
	// TLSCertOutForce replaces an existing TLSCertOut file (--force);
	// without it an existing file is refused.
	TLSCertOutForce bool `json:"-"`
	// TLS, when set, is the listener's TLS configuration as is (for
	// in-process callers); it replaces the four fields above.
	TLS *tls.Config `json:"-"`
	// UpstreamCA adds PEM certificates to the system roots for an https
	// upstream; UpstreamInsecure skips verification. Both are ignored when
	// TLSClientConfig is set.
	UpstreamCA       string `json:"upstream-ca,omitempty"`
	UpstreamInsecure bool   `json:"upstream-insecure,omitempty"`
	// UpstreamHeaderTimeout bounds the wait for the upstream's response
	// headers, counted from the start of the request (so it also ends a
	// request an upstream never reads): the client gets 504 and the
	// upstream hop records ETIMEDOUT. Zero: DefaultUpstreamHeaderTimeout;
	// negative: no limit. An http-status fault with a timeout replaces it
	// for the requests it applies to.
	UpstreamHeaderTimeout time.Duration `json:"-"`
	// MaxEventSize, when positive, ends a stream whose SSE event (or one
	// line without its end) grows past it: the upstream hop records
	// LINE_TOO_LONG and the client gets --on-upstream-error. Zero: no
	// limit, as a real middlebox; events of any size are streamed, never
	// held.
	MaxEventSize int64 `json:"max-event-size,omitempty"`
	// DialTimeout bounds the upstream dial (default 10 s).
	DialTimeout time.Duration `json:"-"`
	// Keepalive is the TCP keepalive idle period (and probe interval) the
	// proxy sets on both hops' sockets: zero means DefaultKeepalive,
	// negative turns keepalive off. It is recorded in the session file
	// (ProxyInfo) so that a peer's RST answering the proxy's own probe
	// after a silence is never taken for a middlebox's idle timeout.
	Keepalive time.Duration `json:"-"`
	// TLSClientConfig is used toward an https upstream (e.g. RootCAs with
	// a test server's certificate); nil: UpstreamCA/UpstreamInsecure, or
	// the system roots. The upstream hop speaks HTTP/1.1.
	TLSClientConfig *tls.Config `json:"-"`
	// Session receives the records; nil records nothing.
	Session *session.Writer `json:"-"`
	// Recorder records the streams (--record); nil records none.
	Recorder *recording.Recorder `json:"-"`
	// Logf receives one line per notable event; nil discards them.
	Logf func(format string, args ...any) `json:"-"`
	// Version is what the control API's /version answers (Toxiproxy's
	// endpoint): the tool's version; empty: "(devel)".
	Version string `json:"-"`
	// MITMConfig records the TLS inside CONNECT tunnels (mitm.go).
	MITMConfig
}

// Proxy is a running proxy. Create it with Start.
type Proxy struct {
	name            string
	upstream        atomic.Pointer[url.URL] // nil: forward mode only; the Toxiproxy API may change it
	allow           []string
	scale           float64
	keepalive       time.Duration // 0: off
	faultSpecs      []string
	onUpstreamError string
	budget          *membudget.Budget // nil: no memory budget
	session         *session.Writer
	recorder        *recording.Recorder
	logfn           func(string, ...any)
	token           string
	version         string // the tool's, for /version

	tunnels       tunnels     // forward mode's CONNECT tunnels (tunnel.go)
	tlsConfig     *tls.Config // the listener's; nil: plain
	certPEM       []byte      // the generated certificate
	headerTimeout time.Duration
	maxEventSize  int64
	started       time.Time

	gp          *goproxy.ProxyHttpServer
	upstreamTLS *tls.Config
	h2ln        *connQueue
	baseCtx     context.Context
	dialer      *net.Dialer
	srv         *http.Server
	ln          *listener
	api         *apiServer
	events      *broadcaster

	fmu    sync.RWMutex
	faults []*Fault // replaced, never modified in place

	lmu  sync.Mutex
	live map[*hopConn]struct{}

	hmu      sync.Mutex
	closed   bool
	handlers sync.WaitGroup

	nextConn    atomic.Int64
	streams     atomic.Int64
	faultsFired atomic.Int64
	eventsDown  atomic.Int64 // SSE events forwarded to clients
	activeConns atomic.Int64 // client connections open now
	activeMax   atomic.Int64
	// acceptErrors and dialErrors count failed accepts (EMFILE, ENFILE:
	// backed off) and failed upstream dials (any cause).
	acceptErrors atomic.Int64
	dialErrors   atomic.Int64
	errMu        sync.Mutex
	errs         map[string]int64 // "<hop>:<class>" → count
	counts       hopCounts        // by hop, for a live view (livecounts.go)
	closing      atomic.Bool
	closeOnce    sync.Once
	stopAfter    func() bool
}

type (
	clientConnKey struct{}
	streamKey     struct{}
)

// Start validates cfg, listens, and serves until Close or until ctx ends.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	p := &Proxy{
		name: cfg.Name, scale: cfg.TimeScale, onUpstreamError: cfg.OnUpstreamError,
		session: cfg.Session, recorder: cfg.Recorder, logfn: cfg.Logf, token: cfg.APIToken, budget: cfg.Budget, version: cfg.Version,
		live: map[*hopConn]struct{}{}, events: newBroadcaster(), errs: map[string]int64{},
		maxEventSize: max(cfg.MaxEventSize, 0), started: time.Now(), baseCtx: context.Background(),
	}
	if p.name == "" {
		p.name = DefaultName
	}
	if strings.ContainsAny(p.name, "/ ") {
		return nil, fmt.Errorf("%w: name %q must not contain / or spaces", ErrBadConfig, p.name)
	}
	if p.scale == 0 {
		p.scale = 1
	}
	switch {
	case cfg.Keepalive == 0:
		p.keepalive = DefaultKeepalive
	case cfg.Keepalive > 0:
		p.keepalive = cfg.Keepalive
	}
	if p.scale < 0 || p.scale != p.scale {
		return nil, fmt.Errorf("%w: time scale %v must be positive", ErrBadConfig, cfg.TimeScale)
	}
	switch p.onUpstreamError {
	case "":
		p.onUpstreamError = UpstreamReset
	case UpstreamReset, UpstreamEOF, UpstreamAbort:
	default:
		return nil, fmt.Errorf("%w: on-upstream-error %q must be reset, eof or abort", ErrBadConfig, cfg.OnUpstreamError)
	}
	if cfg.Upstream != "" {
		u, err := ParseUpstream(cfg.Upstream)
		if err != nil {
			return nil, err
		}
		p.upstream.Store(u)
	}
	for _, h := range cfg.AllowHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" || strings.ContainsAny(h, "/*") {
			return nil, fmt.Errorf("%w: allow-host %q must be a host or host:port", ErrBadConfig, h)
		}
		p.allow = append(p.allow, h)
	}
	if err := p.setupMITM(cfg.MITMConfig); err != nil {
		return nil, err
	}
	listen := LoopbackDefault(cfg.Listen, DefaultListen)
	apiAddr := LoopbackDefault(cfg.API, "")
	if apiAddr != "" && cfg.APIToken == "" && !isLoopback(apiAddr) {
		return nil, fmt.Errorf("control API address %s %w", cfg.API, ErrAPINotLoopback)
	}
	switch {
	case cfg.UpstreamHeaderTimeout == 0:
		p.headerTimeout = DefaultUpstreamHeaderTimeout
	case cfg.UpstreamHeaderTimeout > 0:
		p.headerTimeout = cfg.UpstreamHeaderTimeout
	}
	if err := p.setupTLS(cfg, listen); err != nil {
		return nil, err
	}
	upstreamTLS := cfg.TLSClientConfig
	if upstreamTLS == nil {
		c, err := tlsutil.ClientConfig(tlsutil.ClientOptions{CAFile: cfg.UpstreamCA, Insecure: cfg.UpstreamInsecure})
		if err != nil {
			// A typed tlsutil error: the command names its flag.
			return nil, fmt.Errorf("%w: upstream TLS: %w", ErrBadConfig, err)
		}
		upstreamTLS = c
	}
	names := map[string]bool{}
	for _, spec := range cfg.Faults {
		if names[spec.Name] {
			return nil, fmt.Errorf("%w %q: given twice (add name=... to tell them apart)", ErrBadFault, spec.Name)
		}
		names[spec.Name] = true
		f, err := newFault(spec, p.scale)
		if err != nil {
			return nil, err
		}
		p.faults = append(p.faults, f)
		p.faultSpecs = append(p.faultSpecs, spec.Spec)
	}
	dialTimeout := cfg.DialTimeout
	if dialTimeout <= 0 {
		dialTimeout = 10 * time.Second
	}
	p.dialer = &net.Dialer{Timeout: dialTimeout, KeepAlive: keepaliveSetting(p.keepalive)}
	p.upstreamTLS = upstreamTLS

	ln, err := p.listenTCP(listen)
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p.ln = newListener(p, ln)

	gp := goproxy.NewProxyHttpServer()
	// Every request goes upstream through roundTrip (onRequest); the
	// Transport is goproxy's fallback, never used.
	gp.Tr = &http.Transport{Proxy: nil, DialContext: p.dial, DisableKeepAlives: true, TLSClientConfig: upstreamTLS,
		MaxResponseHeaderBytes: maxUpstreamHeader}
	gp.Logger = proxyLogger{p}
	gp.ConnectDial = func(network, addr string) (net.Conn, error) { return p.dialer.Dial(network, addr) }
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "ssestress proxy: no upstream for this request", http.StatusNotFound)
	})
	gp.OnRequest().DoFunc(p.onRequest)
	gp.OnResponse().DoFunc(p.onResponse)
	p.gp = gp

	// HTTP/1.1 connections are served by the proxy itself (h1.go);
	// connections that start with the HTTP/2 preface (h2 chosen with ALPN
	// on the TLS listener: the clientWire ends TLS, so net/http sees
	// plaintext; or h2c with prior knowledge) go to net/http's server.
	p.h2ln = newConnQueue(ln.Addr())
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: headerWait,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if w, ok := c.(*h2Conn); ok {
				return context.WithValue(ctx, clientConnKey{}, w.hop)
			}
			return ctx
		},
		ErrorLog: log.New(logWriter{p}, "", 0),
	}
	p.srv.Protocols = new(http.Protocols)
	p.srv.Protocols.SetUnencryptedHTTP2(true)
	if apiAddr != "" {
		api, err := startAPI(p, cfg, apiAddr)
		if err != nil {
			ln.Close()
			return nil, err
		}
		p.api = api
	}
	p.updateRefuse()
	go p.srv.Serve(p.h2ln)
	go p.serve()

	if p.session != nil {
		p.session.Put(session.Endpoint{Role: session.RoleProxy, Name: p.name, Hop: session.HopClient, Addr: p.Addr(), URL: p.URL()})
		if u := p.upstream.Load(); u != nil {
			p.session.Put(session.Endpoint{Role: session.RoleTarget, Addr: hostPort(u), URL: redact.URL(u.String())})
		}
		p.session.Put(p.Info())
	}
	// ctx may end (a signal) before the assignment: hmu orders the two.
	stop := context.AfterFunc(ctx, func() { p.Close() })
	p.hmu.Lock()
	p.stopAfter = stop
	p.hmu.Unlock()
	return p, nil
}

// listenTCP listens on addr with the proxy's keepalive for the accepted
// sockets.
func (p *Proxy) listenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: keepaliveSetting(p.keepalive)}
	return lc.Listen(context.Background(), "tcp", addr)
}

// ParseUpstream checks an upstream URL: http or https with a host.
func ParseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: upstream %q must be an http:// or https:// URL with a host", ErrBadConfig, s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: upstream %q must not have a query or fragment", ErrBadConfig, s)
	}
	return u, nil
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// LoopbackDefault completes a listen address: empty is def, a bare port
// ("8080" or ":8080") binds 127.0.0.1, an address with a host is kept as
// given (listenaddr.Loopback: every listener of ssestress binds loopback
// unless told otherwise).
func LoopbackDefault(addr, def string) string { return listenaddr.Loopback(addr, def) }

// setupTLS builds the listener's TLS configuration from cfg.
func (p *Proxy) setupTLS(cfg Config, listen string) error {
	if cfg.TLS != nil {
		p.tlsConfig = cfg.TLS.Clone()
	} else {
		opts := tlsutil.ServerOptions{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, SelfSigned: cfg.TLSSelfSigned, CertOut: cfg.TLSCertOut, CertOutForce: cfg.TLSCertOutForce}
		if !opts.Enabled() {
			if cfg.TLSCertOut != "" {
				return fmt.Errorf("%w: --tls-cert-out writes the certificate of --tls-self-signed: give that too", ErrBadConfig)
			}
			return nil
		}
		if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
			if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
				opts.Hosts = append(append([]string(nil), tlsutil.DefaultHosts...), host)
			}
		}
		c, certPEM, err := tlsutil.ServerConfig(opts)
		if err != nil {
			if errors.Is(err, tlsutil.ErrConflict) || errors.Is(err, tlsutil.ErrNoServerCert) {
				return fmt.Errorf("%w: %w", ErrBadConfig, err)
			}
			return fmt.Errorf("proxy TLS: %w", err)
		}
		p.tlsConfig, p.certPEM = c, certPEM
	}
	// h2 first: the clientWire serves whichever the client chose.
	p.tlsConfig.NextProtos = []string{"h2", "http/1.1"}
	return nil
}

// CertPEM is the certificate generated with TLSSelfSigned (nil otherwise):
// what clients trust.
func (p *Proxy) CertPEM() []byte { return p.certPEM }

// isLoopback reports whether a listen address binds to loopback only.
func isLoopback(addr string) bool { return listenaddr.IsLoopback(addr) }

// Addr is the proxy's listen address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy's base URL: clients of reverse mode use it in place of
// the upstream's, clients of forward mode as their HTTP_PROXY.
func (p *Proxy) URL() string {
	if p.tlsConfig != nil {
		return "https://" + p.Addr()
	}
	return "http://" + p.Addr()
}

// Name is the proxy's name.
func (p *Proxy) Name() string { return p.name }

// APIAddr is the control API's address, "" without an API.
func (p *Proxy) APIAddr() string {
	if p.api == nil {
		return ""
	}
	return p.api.ln.Addr().String()
}

// Close stops the proxy: the listener and the API close, every proxied
// connection is closed (FIN) and recorded, and handlers are given a few
// seconds to return. Closing twice is harmless.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.hmu.Lock()
		stop := p.stopAfter
		p.hmu.Unlock()
		if stop != nil {
			stop()
		}
		p.closing.Store(true)
		p.hmu.Lock()
		p.closed = true
		p.hmu.Unlock()
		if p.api != nil {
			p.api.close()
		}
		p.ln.Close()
		p.closeLive()
		p.srv.Close()
		done := make(chan struct{})
		go func() { p.handlers.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.logf("proxy %s: handlers still running after 5s; closing anyway", p.name)
		}
		p.closeLive() // upstream sockets dialed during the shutdown
		p.events.close()
		if p.session != nil {
			info := p.Info()
			info.Stopped = time.Now()
			p.session.Put(info)
		}
	})
	return nil
}

// keepaliveSetting is a keepalive period as net.Dialer and net.ListenConfig
// take it: negative for off.
func keepaliveSetting(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// logf passes a log line to Logf, with credentials in the URLs it quotes
// replaced (redact.Text).
func (p *Proxy) logf(format string, args ...any) {
	if p.logfn != nil {
		p.logfn("%s", redact.Text(fmt.Sprintf(format, args...)))
	}
}

// proxyLogger sends goproxy's log lines to Logf.
type proxyLogger struct{ p *Proxy }

func (l proxyLogger) Printf(format string, v ...any) { l.p.logf(strings.TrimSpace(format), v...) }

// logWriter sends net/http's log lines to Logf.
type logWriter struct{ p *Proxy }

func (l logWriter) Write(b []byte) (int, error) {
	l.p.logf("%s", strings.TrimSpace(string(b)))
	return len(b), nil
}
