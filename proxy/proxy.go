// Package proxy is the ssestress fault-injecting proxy: it stands in for one
// hop of a production SSE path (a load balancer, a reverse proxy, a NAT)
// and misbehaves on purpose, one hop at a time, to reproduce a reset and to
// prove which hop causes it.
//
// It is built on github.com/elazarl/goproxy, served by the package's own
// http.Server on its own listener. Data enters on the client hop (client ↔
// proxy), whose sockets are wrapped at Accept, and leaves on the upstream
// hop (proxy ↔ server), whose sockets are wrapped at dial (one upstream
// socket per request); both wrappers (hopConn) count bytes and activity,
// see FIN and RST, and apply the TCP-level faults of their hop. The
// response body is replaced in goproxy's OnResponse by a streamBody whose
// copy loop applies the SSE-aware faults at event boundaries and the
// --on-upstream-error policy. Records leave through the session Writer
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
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
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
}

// Proxy is a running proxy. Create it with Start.
type Proxy struct {
	name            string
	upstream        *url.URL
	allow           []string
	scale           float64
	keepalive       time.Duration // 0: off
	faultSpecs      []string
	onUpstreamError string
	session         *session.Writer
	recorder        *recording.Recorder
	logfn           func(string, ...any)
	token           string

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
		session: cfg.Session, recorder: cfg.Recorder, logfn: cfg.Logf, token: cfg.APIToken,
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
		p.upstream = u
	}
	for _, h := range cfg.AllowHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" || strings.ContainsAny(h, "/*") {
			return nil, fmt.Errorf("%w: allow-host %q must be a host or host:port", ErrBadConfig, h)
		}
		p.allow = append(p.allow, h)
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
			// tlsutil names the clients' flag, --ca.
			return nil, fmt.Errorf("%w: --upstream-ca%s", ErrBadConfig, strings.TrimPrefix(err.Error(), "--ca"))
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

	lc := net.ListenConfig{KeepAlive: keepaliveSetting(p.keepalive)}
	ln, err := lc.Listen(context.Background(), "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p.ln = newListener(p, ln)

	gp := goproxy.NewProxyHttpServer()
	// Every request goes upstream through roundTrip (onRequest); the
	// Transport is goproxy's fallback, never used.
	gp.Tr = &http.Transport{Proxy: nil, DialContext: p.dial, DisableKeepAlives: true, TLSClientConfig: upstreamTLS}
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
		api, err := startAPI(p, apiAddr)
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
		if p.upstream != nil {
			p.session.Put(session.Endpoint{Role: session.RoleTarget, Addr: hostPort(p.upstream), URL: p.upstream.String()})
		}
		p.session.Put(p.Info())
	}
	p.stopAfter = context.AfterFunc(ctx, func() { p.Close() })
	return p, nil
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
// given. Every listener of ssestress binds loopback unless told otherwise.
func LoopbackDefault(addr, def string) string {
	addr = strings.TrimSpace(addr)
	switch {
	case addr == "":
		return def
	case !strings.Contains(addr, ":"):
		return net.JoinHostPort("127.0.0.1", addr)
	case strings.HasPrefix(addr, ":"):
		return "127.0.0.1" + addr
	}
	return addr
}

// setupTLS builds the listener's TLS configuration from cfg.
func (p *Proxy) setupTLS(cfg Config, listen string) error {
	if cfg.TLS != nil {
		p.tlsConfig = cfg.TLS.Clone()
	} else {
		opts := tlsutil.ServerOptions{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, SelfSigned: cfg.TLSSelfSigned, CertOut: cfg.TLSCertOut}
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
				return fmt.Errorf("%w: %v", ErrBadConfig, err)
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
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

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

// Stats are a proxy's counters.
type Stats struct {
	Conns       int64 `json:"conns"`   // client connections accepted
	Streams     int64 `json:"streams"` // requests proxied
	Live        int   `json:"live"`    // hop connections open now
	FaultsFired int64 `json:"faults_fired"`
	// ActiveMax is the most client connections open at once.
	ActiveMax int64 `json:"active_max"`
	// EventsDown counts the SSE events forwarded to clients.
	EventsDown int64 `json:"events_down"`
	// AcceptErrors counts failed accepts (EMFILE, ENFILE at the file
	// descriptor limit), each followed by a backoff; DialErrors counts
	// failed upstream dials, whatever the cause.
	AcceptErrors int64 `json:"accept_errors"`
	DialErrors   int64 `json:"dial_errors"`
	// Errors counts by "<hop>:<class>": hop connections the peer reset,
	// failures the proxy saw on a hop (ETIMEDOUT, LINE_TOO_LONG, TLS, ...),
	// failed accepts ("client:EMFILE") and dials ("upstream:EMFILE").
	// Injected faults are in FaultsFired, not here.
	Errors map[string]int64 `json:"errors"`
}

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	p.lmu.Lock()
	live := len(p.live)
	p.lmu.Unlock()
	p.errMu.Lock()
	errs := make(map[string]int64, len(p.errs))
	for k, v := range p.errs {
		errs[k] = v
	}
	p.errMu.Unlock()
	return Stats{Conns: p.nextConn.Load(), Streams: p.streams.Load(), Live: live, FaultsFired: p.faultsFired.Load(),
		ActiveMax: p.activeMax.Load(), EventsDown: p.eventsDown.Load(),
		AcceptErrors: p.acceptErrors.Load(), DialErrors: p.dialErrors.Load(), Errors: errs}
}

// Summary is the proxy's end-of-run totals in the session file's form
// (meta "summary", what inspect and report read): duration since Start,
// client connections opened and most open at once, SSE events forwarded
// to clients, and Stats.Errors. The caller adds what the process knows
// (peak memory, the file, records dropped).
func (p *Proxy) Summary() session.Summary {
	st := p.Stats()
	d := time.Since(p.started).Seconds()
	scenario := "proxy"
	if p.name != DefaultName {
		scenario += " " + p.name
	}
	sum := session.Summary{
		Scenario: scenario, DurationS: d,
		ActiveMax: st.ActiveMax, Events: st.EventsDown, Errors: map[string]int64{},
	}
	if d > 0 {
		sum.EventsPerS = float64(st.EventsDown) / d
	}
	return sum
}

// countError counts an error of a hop by class.
func (p *Proxy) countError(hop, class string) {
	if class == "" || class == errclass.EOF {
		return
	}
	p.errMu.Lock()
	p.errs[hop+":"+class]++
	p.errMu.Unlock()
}

// Close stops the proxy: the listener and the API close, every proxied
// connection is closed (FIN) and recorded, and handlers are given a few
// seconds to return. Closing twice is harmless.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		if p.stopAfter != nil {
			p.stopAfter()
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

// Info is the proxy's description and totals so far, as the session file's
// proxies bucket keeps them.
func (p *Proxy) Info() session.ProxyInfo {
	st := p.Stats()
	info := session.ProxyInfo{
		Name: p.name, Listen: p.Addr(), Mode: session.ModeForward,
		Keepalive: session.Seconds(p.keepalive), OnUpstreamError: p.onUpstreamError, TimeScale: p.scale,
		Faults: p.faultSpecs, Started: p.started,
		Connections: st.Conns, Requests: st.Streams, ActiveMax: st.ActiveMax, Events: st.EventsDown,
		FaultsFired: st.FaultsFired,
	}
	if p.upstream != nil {
		info.Mode, info.Upstream = session.ModeReverse, hostPort(p.upstream)
	}
	if len(st.Errors) > 0 {
		info.Errors = make(map[string]int64, len(st.Errors))
		for k, n := range st.Errors {
			hop, class, _ := strings.Cut(k, ":")
			info.Errors[hop+" "+class] += n
		}
	}
	return info
}

func (p *Proxy) closeLive() {
	for _, h := range p.liveConns() {
		h.closeWith(ActionFIN, "proxy")
	}
}

// drainLimit bounds how long a close waits for a delay line to empty.
func (p *Proxy) drainLimit() time.Duration {
	if p.closing.Load() {
		return 100 * time.Millisecond
	}
	return 30 * time.Second
}

func (p *Proxy) logf(format string, args ...any) {
	if p.logfn != nil {
		p.logfn(format, args...)
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

// register makes a new hop connection live and writes its open record.
func (p *Proxy) register(h *hopConn) {
	p.lmu.Lock()
	p.live[h] = struct{}{}
	p.lmu.Unlock()
	if h.hop == session.HopClient {
		n := p.activeConns.Add(1)
		for m := p.activeMax.Load(); n > m && !p.activeMax.CompareAndSwap(m, n); m = p.activeMax.Load() {
		}
	}
	h.put()
	if p.events.has() {
		p.events.publish(h.event("open"))
	}
}

func (p *Proxy) forget(h *hopConn) {
	p.lmu.Lock()
	delete(p.live, h)
	p.lmu.Unlock()
	if h.hop == session.HopClient {
		p.activeConns.Add(-1)
	}
}

func (p *Proxy) liveConns() []*hopConn {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	out := make([]*hopConn, 0, len(p.live))
	for h := range p.live {
		out = append(out, h)
	}
	return out
}

// faultFired records a fault event and counts it.
func (p *Proxy) faultFired(ev session.FaultEvent) {
	p.faultsFired.Add(1)
	if p.session != nil {
		p.session.Put(ev)
	}
	if p.events.has() {
		p.events.publish(ConnEvent{
			Time: ev.Time, Type: "fault", Proxy: ev.Proxy, ConnID: ev.ConnID, Request: ev.Request, Hop: ev.Hop,
			LocalAddr: ev.LocalAddr, RemoteAddr: ev.RemoteAddr,
			Fault: ev.FaultName, Kind: ev.FaultKind, Action: ev.Action, Detail: ev.Detail,
		})
	}
	p.logf("%s %s: fault %s: %s %s", ev.ConnID, ev.Hop, ev.FaultName, ev.Action, ev.Detail)
}

// accepted turns a new client socket into a client hopConn and the
// clientWire the HTTP server uses, unless a down fault closes it at once
// (nil).
func (p *Proxy) accepted(c net.Conn) *clientWire {
	n := p.nextConn.Add(1)
	h := newHopConn(p, c, session.HopClient, p.name+"-"+strconv.FormatInt(n, 10), 0)
	h.wire = newClientWire(p, h)
	p.register(h)
	if p.closing.Load() {
		h.closeWith(ActionFIN, "proxy")
		return nil
	}
	if f, action := p.downFor(session.HopClient, ""); f != nil {
		h.fire(f, "", action, "connection closed on accept ("+action+")")
		h.closeWith(action, "proxy")
		return nil
	}
	p.attachFaults(h, "", time.Now())
	return h.wire
}

// downFor draws the down faults of a hop that apply to a new connection.
// Listener-wide refusal is not drawn here (see updateRefuse).
func (p *Proxy) downFor(hop, path string) (*Fault, string) {
	for _, f := range p.faultList() {
		for _, leaf := range f.leaves() {
			d, ok := leaf.b.(downer)
			if !ok || leaf.Spec.Hop != hop || !leaf.Spec.matches(path) || (leaf.Spec.Match != "" && path == "") {
				continue
			}
			action := d.downAction()
			if hop == session.HopClient && action == ActionRefuse {
				continue
			}
			if draw(leaf.Spec.Toxicity) {
				return leaf, action
			}
		}
	}
	return nil, ""
}

// responderFor draws the http-status faults that apply to a request.
func (p *Proxy) responderFor(path string) (*Fault, int, time.Duration) {
	for _, f := range p.faultList() {
		for _, leaf := range f.leaves() {
			r, ok := leaf.b.(responder)
			if !ok || !leaf.Spec.matches(path) {
				continue
			}
			if draw(leaf.Spec.Toxicity) {
				code, timeout := r.respond()
				return leaf, code, timeout
			}
		}
	}
	return nil, 0, 0
}

// stream is one request through the proxy and its two hops.
type stream struct {
	p        *Proxy
	ctx      context.Context
	client   *hopConn
	upstream atomic.Pointer[hopConn]
	request  int
	id       string // the recording's stream id
	method   string
	path     string
	start    time.Time
	rec      *recording.Stream

	statusFault   *Fault // http-status with a timeout, drawn for this request
	statusCode    int
	statusTimeout time.Duration

	cancel context.CancelCauseFunc // ends ctx: the stream was cut by a fault, or its client left

	// h1 is the response writer of an HTTP/1.1 client (nil on HTTP/2):
	// the stream's body is then copied by the connection's goroutine.
	h1 *h1Writer
	// upload ends when the request body's writer (a goroutine of the
	// upstream round trip) is done with it.
	upload <-chan error

	// h2 is set when the client speaks HTTP/2, h2ID the stream's id (0
	// when the wire could not tell it).
	h2   bool
	h2ID uint32
	// events counts the SSE events forwarded to the client on this
	// stream, written the bytes of its response body.
	events  atomic.Int64
	written atomic.Int64
	// cut is set once a fault has ended the stream (RST_STREAM); abort
	// asks its handler to end with net/http's abort (RST_STREAM
	// INTERNAL_ERROR on HTTP/2) when the frame could not be written.
	cut   atomic.Bool
	abort atomic.Bool

	classMu sync.Mutex
	// clientClass is the error class the client was given (ECONNRESET,
	// UNEXPECTED_EOF, H2_RST_STREAM:..., HTTP_502; "" for a clean end),
	// for the recording: the first one set stays.
	clientClass string
}

// errStreamCut is the cause of a stream's context when a fault ended it.
var errStreamCut = errors.New("stream cut by an injected fault")

func (st *stream) setClientClass(class string) {
	st.classMu.Lock()
	if st.clientClass == "" {
		st.clientClass = class
	}
	st.classMu.Unlock()
}

func (st *stream) getClientClass() string {
	st.classMu.Lock()
	defer st.classMu.Unlock()
	return st.clientClass
}

// addEvents counts n SSE events forwarded to the client.
func (st *stream) addEvents(n int64) {
	st.events.Add(n)
	st.client.eventsDown.Add(n)
	st.p.eventsDown.Add(n)
}

// abortIfAsked ends the handler with net/http's abort when a fault asked
// for it (see resetH2).
func (st *stream) abortIfAsked() {
	if st.abort.Load() {
		panic(http.ErrAbortHandler)
	}
}

func streamFrom(ctx context.Context) *stream {
	st, _ := ctx.Value(streamKey{}).(*stream)
	return st
}

// ServeHTTP is the proxy's front for net/http's server (HTTP/2 clients):
// the request is handled and its stream, if any, copied in the handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if st := p.handle(w, r); st != nil {
		// Not reached: only an h1Writer defers a stream.
		st.end()
		p.handlers.Done()
	}
}

// handle is the proxy's front: it refuses what is not allowed, records the
// request on the client hop, answers http-status faults, rewrites
// reverse-mode requests to the upstream, and hands the request to goproxy.
// When goproxy returns with a streamed response left to copy (HTTP/1.1
// clients, see h1.go) it returns that stream, still counted as a handler:
// the caller copies it, then calls st.end and p.handlers.Done.
func (p *Proxy) handle(w http.ResponseWriter, r *http.Request) (deferred *stream) {
	p.hmu.Lock()
	if p.closed {
		p.hmu.Unlock()
		http.Error(w, "ssestress proxy is closing", http.StatusServiceUnavailable)
		return nil
	}
	p.handlers.Add(1)
	p.hmu.Unlock()
	defer func() {
		if deferred == nil {
			p.handlers.Done()
		}
	}()

	client, _ := r.Context().Value(clientConnKey{}).(*hopConn)
	if client == nil {
		http.Error(w, "ssestress proxy: connection not tracked", http.StatusInternalServerError)
		return nil
	}
	// The wire's stream id field, or a client's forgery of it: never
	// forwarded, recorded or trusted on HTTP/1.1.
	h2Field := r.Header.Values(h2StreamHeader)
	r.Header.Del(h2StreamHeader)
	if r.Method == http.MethodConnect {
		if !p.allowed(r.Host) {
			p.refuse(w, http.StatusForbidden, fmt.Sprintf("CONNECT to %s refused: not an --allow-host of this proxy", r.Host))
			return nil
		}
		p.gp.ServeHTTP(w, r)
		return nil
	}
	now := time.Now()
	forward := r.URL.IsAbs()
	if forward && !p.allowed(r.URL.Host) {
		p.refuse(w, http.StatusForbidden, fmt.Sprintf("%s is not an --allow-host of this proxy (it is never an open proxy)", r.URL.Host))
		return nil
	}
	if !forward && p.upstream == nil {
		p.refuse(w, http.StatusNotFound, "this proxy has no --upstream: send absolute-form requests (HTTP_PROXY) to an --allow-host")
		return nil
	}
	st := p.beginStream(client, r, h2Field, now)
	hw, _ := w.(*h1Writer)
	st.h1 = hw
	defer func() {
		if hw != nil && hw.deferred != nil {
			deferred = st
			return
		}
		st.end()
	}()

	if f, code, timeout := p.responderFor(st.path); f != nil {
		if timeout <= 0 {
			client.fire(f, "", session.ActionStatus, fmt.Sprintf("answered %d instead of streaming", code))
			writeStatus(w, code, f)
			client.setStatus(code)
			st.rec.Response(code, w.Header(), time.Now())
			return nil
		}
		st.statusFault, st.statusCode, st.statusTimeout = f, code, timeout
	}
	if !forward {
		p.rewrite(r)
	}
	p.gp.ServeHTTP(w, r.WithContext(st.ctx))
	return nil
}

// beginStream sets up the stream of request r on client: its context, its
// HTTP/2 stream id (from the wire's field h2Field), its faults and its
// recording. It is a function of its own, not part of ServeHTTP, because
// ServeHTTP's frame stays on the stack of every idle stream.
func (p *Proxy) beginStream(client *hopConn, r *http.Request, h2Field []string, now time.Time) *stream {
	p.streams.Add(1)
	n := int(client.requests.Add(1))
	pq := pathQuery(r.URL)
	st := &stream{p: p, client: client, request: n, id: client.connID, method: r.Method, path: pq, start: now}
	if n > 1 {
		st.id = client.connID + "#" + strconv.Itoa(n)
	}
	if r.ProtoMajor == 2 && client.wire != nil && client.wire.isH2() {
		st.h2 = true
		if len(h2Field) > 0 {
			// The wire's field comes last in the header block.
			if id, err := strconv.ParseUint(h2Field[len(h2Field)-1], 10, 31); err == nil {
				st.h2ID = uint32(id)
			}
		}
	}
	st.ctx, st.cancel = context.WithCancelCause(context.WithValue(r.Context(), streamKey{}, st))
	client.setRequest(r.Method, pq)
	client.inflight.Add(1)
	client.addStream(st)
	if st.h2ID != 0 {
		client.wire.trackStream(st.h2ID)
	}
	p.attachFaults(client, pq, now)
	for _, w := range client.streamWatchers() {
		w.streamStarted(st)
	}
	st.rec = p.recorder.Begin(st.id, r, now)
	return st
}

// end closes the stream's books once its handler is done.
func (st *stream) end() {
	st.finish()
	st.cancel(nil)
	if up := st.upstream.Load(); up != nil {
		up.closeWith(ActionFIN, "proxy") // one upstream socket per request
	}
	if st.upload != nil {
		<-st.upload // the request body's writer has let go of the client's reader
	}
	client := st.client
	if st.h2ID != 0 {
		client.wire.untrackStream(st.h2ID)
	}
	client.removeStream(st)
	client.requestEnd.Store(time.Now().UnixNano())
	client.inflight.Add(-1)
}

// rewrite points a reverse-mode request at the upstream.
func (p *Proxy) rewrite(r *http.Request) {
	u := p.upstream
	r.URL.Scheme = u.Scheme
	r.URL.Host = u.Host
	if u.Path != "" && u.Path != "/" {
		r.URL.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(r.URL.Path, "/")
		if r.URL.RawPath != "" {
			r.URL.RawPath = strings.TrimSuffix(u.EscapedPath(), "/") + "/" + strings.TrimPrefix(r.URL.RawPath, "/")
		}
	}
	r.Host = u.Host
}

// allowed reports whether forward mode may serve host ("host:port").
func (p *Proxy) allowed(host string) bool {
	host = strings.ToLower(host)
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	for _, a := range p.allow {
		if a == host || a == name || strings.Trim(a, "[]") == name {
			return true
		}
	}
	return false
}

func (p *Proxy) refuse(w http.ResponseWriter, code int, msg string) {
	p.logf("refused: %s", msg)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Connection", "close")
	w.WriteHeader(code)
	io.WriteString(w, "ssestress proxy: "+msg+"\n")
}

// FaultHeader names the fault that produced a response the proxy made up.
const FaultHeader = "X-Ssestress-Fault"

func writeStatus(w http.ResponseWriter, code int, f *Fault) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set(FaultHeader, f.Spec.Name)
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s (ssestress fault %s)\n", code, http.StatusText(code), f.Spec.Name)
}

// onRequest is goproxy's request handler: every request goes upstream
// through roundTrip, which bounds the wait for the response headers.
func (p *Proxy) onRequest(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	if st := streamFrom(r.Context()); st != nil {
		ctx.RoundTripper = goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
			return p.roundTrip(req, st)
		})
	}
	return r, nil
}

// onResponse is goproxy's response handler: it answers 502 (504 for a
// header timeout) for an upstream that failed before responding, records
// the status, and puts a streamBody in place of the body.
func (p *Proxy) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	st := streamFrom(ctx.Req.Context())
	if st == nil {
		return resp
	}
	now := time.Now()
	if resp == nil {
		st.abortIfAsked()
		err := ctx.Error
		if err == nil {
			err = errors.New("no response")
		}
		code := http.StatusBadGateway
		var hte *headerTimeoutError
		if errors.As(err, &hte) {
			code = http.StatusGatewayTimeout
		}
		class := errclass.Classify(err)
		if !st.cut.Load() && st.ctx.Err() == nil {
			st.setClientClass(errclass.HTTP(code))
			if up := st.upstream.Load(); up != nil {
				up.setClass(class)
			}
			p.logf("%s: upstream %s: %v (%s): answered %d", st.client.connID, ctx.Req.URL.Host, err, class, code)
		}
		st.client.setStatus(code)
		body := fmt.Sprintf("ssestress proxy %s: upstream failed (%s): %v\n", p.name, class, err)
		r := &http.Response{
			StatusCode: code, Status: strconv.Itoa(code) + " " + http.StatusText(code),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			Body:          io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: ctx.Req,
		}
		st.rec.Response(r.StatusCode, r.Header, now)
		return r
	}
	st.client.setStatus(resp.StatusCode)
	if up := st.upstream.Load(); up != nil {
		up.setStatus(resp.StatusCode)
	}
	st.rec.Response(resp.StatusCode, resp.Header, now)
	if resp.Header.Get(FaultHeader) != "" {
		return resp // made up by an http-status fault
	}
	isSSE := strings.HasPrefix(strings.ToLower(resp.Header.Get("Content-Type")), "text/event-stream")
	if resp.Body != nil && resp.Body != http.NoBody && (isSSE || resp.ContentLength < 0) {
		resp.Body = &streamBody{st: st, body: resp.Body, isSSE: isSSE, split: sse.Splitter{EventsOnly: true}}
	}
	return resp
}

// dial is the upstream transport's DialContext: it opens the upstream hop
// of the stream in ctx, wrapped and recorded, with its faults attached.
func (p *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	st := streamFrom(ctx)
	if st == nil {
		return p.dialer.DialContext(ctx, network, addr)
	}
	f, action := p.downFor(session.HopUpstream, st.path)
	if f != nil && action == ActionRefuse {
		st.client.fireAs(session.HopUpstream, f, ActionRefuse, "upstream connection to "+addr+" refused")
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	c, err := p.dialer.DialContext(ctx, network, addr)
	if err != nil {
		if ctx.Err() == nil {
			p.dialErrors.Add(1)
			p.countError(session.HopUpstream, errclass.Classify(err))
		}
		return nil, err
	}
	h := newHopConn(p, c, session.HopUpstream, st.client.connID, st.request)
	h.setRequest(st.method, st.path)
	st.upstream.Store(h)
	p.register(h)
	if f != nil {
		h.fire(f, "", action, "upstream connection closed on open ("+action+")")
		h.closeWith(action, "proxy")
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("closed by fault %s: %w", f.Spec.Name, syscall.ECONNRESET)}
	}
	p.attachFaults(h, st.path, time.Now())
	return h, nil
}

// unitFaults reports whether SSE-aware faults act on either hop.
func (st *stream) unitFaults() bool {
	if f := st.client.faults.Load(); f != nil && len(f.units) > 0 {
		return true
	}
	if up := st.upstream.Load(); up != nil {
		if f := up.faults.Load(); f != nil && len(f.units) > 0 {
			return true
		}
	}
	return false
}

// unitAttachments are the SSE-aware effects of both hops.
func (st *stream) unitAttachments() []*attachment {
	var out []*attachment
	if f := st.client.faults.Load(); f != nil {
		out = append(out, f.units...)
	}
	if up := st.upstream.Load(); up != nil {
		if f := up.faults.Load(); f != nil {
			out = append(out, f.units...)
		}
	}
	return out
}

// waitUntil waits until at; it returns early when the SSE faults are all
// removed (held events pass) and false when ctx ends.
func (st *stream) waitUntil(ctx context.Context, at time.Time) bool {
	for {
		d := time.Until(at)
		if d <= 0 || !st.unitFaults() {
			return true
		}
		var upChanged <-chan struct{}
		if up := st.upstream.Load(); up != nil {
			upChanged = up.changes()
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			t.Stop()
			return false
		case <-st.client.dead:
			t.Stop()
			return false
		case <-st.client.changes():
			t.Stop()
		case <-upChanged:
			t.Stop()
		}
	}
}

// staller is the stall effect's release.
type staller interface{ stalled() <-chan struct{} }

// waitStall holds the stream until the stall's fault is removed or the
// stream ends.
func (st *stream) waitStall(ctx context.Context, atts []*attachment) bool {
	var release <-chan struct{}
	for _, a := range atts {
		if s, ok := a.effect.(staller); ok {
			release = s.stalled()
			break
		}
	}
	var upDead <-chan struct{}
	if up := st.upstream.Load(); up != nil {
		upDead = up.dead
	}
	select {
	case <-release:
		return true
	case <-upDead:
		return true // nothing more can come: pass on what was held
	case <-ctx.Done():
		return false
	case <-st.client.dead:
		return false
	}
}

// finish ends the stream's recording with how it ended.
func (st *stream) finish() {
	if st.rec == nil {
		return
	}
	by, how, class := st.client.endState()
	if by == "" {
		if up := st.upstream.Load(); up != nil {
			by, how, class = up.endState()
		}
	}
	if c := st.getClientClass(); c != "" && (class == "" || st.h2) {
		class = c // on HTTP/2 the connection's end is not the stream's
	}
	endedBy := session.EndedByProxy
	switch by {
	case "":
		how = session.EndingFIN
	case "client":
		endedBy = session.EndedByClient
	case "server":
		endedBy = session.EndedByUpstream
	}
	st.rec.End(endedBy, how, class, time.Now())
}

// endState is who ended the hop so far, how, and the class seen.
func (h *hopConn) endState() (by, how, class string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closedBy, h.how, h.class
}

// fireAs records a fault of another hop on this connection's stream (an
// upstream refused before it had a socket).
func (h *hopConn) fireAs(hop string, f *Fault, action, detail string) {
	now := time.Now()
	h.mu.Lock()
	h.fired = append(h.fired, session.FaultFiring{FaultName: f.Spec.Name, FaultKind: f.Spec.Kind, Action: action,
		Ending: session.ActionEnding(action), Time: now})
	h.mu.Unlock()
	h.p.faultFired(session.FaultEvent{
		Time: now, Proxy: h.p.name, ConnID: h.connID, Request: int(h.requests.Load()), Hop: hop,
		FaultName: f.Spec.Name, FaultKind: f.Spec.Kind, Action: action, Ending: session.ActionEnding(action), Detail: detail,
	})
}
