package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/ssestress/ssestress/internal/session"
)

// Toxiproxy 2.5's HTTP API on the control API's listener, so that its
// clients (a dozen languages) and toxiproxy-cli drive ssestress proxies:
//
//	GET    /version                       the tool's version, text/plain
//	GET    /proxies                       {name: proxy} with each proxy's toxics
//	POST   /proxies                       {name, listen, upstream, enabled}: 201, another proxy in this process
//	GET    /proxies/{proxy}               the proxy with its toxics
//	POST   /proxies/{proxy}               change listen, upstream, enabled (partial): 200
//	DELETE /proxies/{proxy}               204 (not the process's first proxy: 409)
//	GET    /proxies/{proxy}/toxics        [toxic...]
//	POST   /proxies/{proxy}/toxics        {name, type, stream, toxicity, attributes}: 200 and the toxic
//	GET    /proxies/{proxy}/toxics/{t}    the toxic
//	POST   /proxies/{proxy}/toxics/{t}    {attributes, toxicity}: merged into the toxic: 200
//	DELETE /proxies/{proxy}/toxics/{t}    204
//	POST   /reset                         every proxy enabled, its toxics back to how it started: 204
//	POST   /populate                      [proxy...]: created, or replaced when listen or upstream differ: 201 {"proxies": [...]}
//
// A toxic is a fault (toxiproxy.go maps types, attributes and units). The
// process's first proxy is the one its flags describe; POST /proxies starts
// another in the same process, on its own listener, towards its upstream
// (host:port spoken to as HTTP, or an http:// or https:// URL), with the
// first proxy's settings (upstream-error policy, time scale, keepalive,
// upstream TLS, timeouts) and session file: each writes its records under
// its own name. enabled: false closes a proxy's listener (connections are
// refused) and its connections, as Toxiproxy does; true listens again.

// toxiProxy is a proxy as Toxiproxy's API shows it.
type toxiProxy struct {
	Name     string  `json:"name"`
	Listen   string  `json:"listen"`
	Upstream string  `json:"upstream"`
	Enabled  bool    `json:"enabled"`
	Toxics   []Toxic `json:"toxics"`
}

// registry is the proxies of one process: the first, whose flags describe
// it and which owns the API, and those added through it.
type registry struct {
	first *Proxy
	base  Config // what added proxies take from the first (addedConfig)

	mu      sync.Mutex // serialises changes of the set and of members
	members map[string]*member
	onAdd   func(*Proxy) // OnProxyAdded's
}

// member is one proxy of the registry.
type member struct {
	p        *Proxy
	listen   string      // as last given (populate compares it)
	upstream string      // as shown: host:port, or the URL given
	initial  []FaultSpec // its faults at start; /reset restores them
	enabled  bool
}

func newRegistry(first *Proxy, cfg Config) *registry {
	r := &registry{first: first, members: map[string]*member{}}
	r.base = Config{
		OnUpstreamError: cfg.OnUpstreamError, TimeScale: cfg.TimeScale, Keepalive: cfg.Keepalive,
		UpstreamHeaderTimeout: cfg.UpstreamHeaderTimeout, MaxEventSize: cfg.MaxEventSize, DialTimeout: cfg.DialTimeout,
		TLSClientConfig: first.upstreamTLS, Session: cfg.Session, Logf: cfg.Logf, Version: cfg.Version, Budget: cfg.Budget,
	}
	upstream := ""
	if u := first.upstream.Load(); u != nil {
		upstream = toxiUpstream(u)
	}
	r.members[first.name] = &member{p: first, listen: cfg.Listen, upstream: upstream, initial: cfg.Faults, enabled: true}
	return r
}

// toxiUpstream shows an upstream URL as Toxiproxy's host:port when it is
// plain HTTP without a path, else as the URL.
func toxiUpstream(u *url.URL) string {
	if u.Scheme == "http" && (u.Path == "" || u.Path == "/") {
		return hostPort(u)
	}
	return u.String()
}

// parseToxiUpstream reads an upstream: host:port (spoken to as HTTP), or
// an http:// or https:// URL.
func parseToxiUpstream(s string) (*url.URL, error) {
	if strings.Contains(s, "://") {
		return ParseUpstream(s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return nil, fmt.Errorf("%w: upstream %q must be host:port (spoken to as HTTP) or an http:// or https:// URL", ErrBadConfig, s)
	}
	return ParseUpstream("http://" + net.JoinHostPort(host, port))
}

// closeAdded stops the proxies added through the API (the first is the
// caller's to close).
func (r *registry) closeAdded() {
	r.mu.Lock()
	var added []*Proxy
	for _, m := range r.members {
		if m.p != r.first {
			added = append(added, m.p)
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range added {
		wg.Add(1)
		go func() { defer wg.Done(); p.Close() }()
	}
	wg.Wait()
}

func (r *registry) view(m *member) toxiProxy {
	toxics := []Toxic{}
	for _, f := range m.p.Faults() {
		toxics = append(toxics, ToxicOf(f))
	}
	return toxiProxy{Name: m.p.name, Listen: m.p.Addr(), Upstream: m.upstream, Enabled: m.enabled, Toxics: toxics}
}

func (r *registry) get(name string) (*member, error) {
	m, ok := r.members[name]
	if !ok {
		return nil, &APIError{Message: fmt.Sprintf("proxy not found: no proxy named %q", name), Status: http.StatusNotFound}
	}
	return m, nil
}

// create starts another proxy in the process. r.mu is held.
func (r *registry) create(name, listen, upstream string, enabled bool) (*member, error) {
	if name == "" {
		return nil, &APIError{Message: "missing required field: name", Status: http.StatusBadRequest}
	}
	if upstream == "" {
		return nil, &APIError{Message: "missing required field: upstream", Status: http.StatusBadRequest}
	}
	if _, exists := r.members[name]; exists {
		return nil, &APIError{Message: fmt.Sprintf("proxy already exists: %q", name), Status: http.StatusConflict}
	}
	u, err := parseToxiUpstream(upstream)
	if err != nil {
		return nil, &APIError{Message: err.Error(), Status: http.StatusBadRequest}
	}
	cfg := r.base
	cfg.Name, cfg.Listen, cfg.Upstream = name, LoopbackDefault(listen, "127.0.0.1:0"), u.String()
	p, err := Start(context.Background(), cfg)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrBadConfig) {
			status = http.StatusBadRequest
		}
		return nil, &APIError{Message: err.Error(), Status: status}
	}
	m := &member{p: p, listen: listen, upstream: upstream, enabled: true}
	r.members[name] = m
	if r.onAdd != nil {
		r.onAdd(p)
	}
	r.first.logf("proxy %s: proxy %s added: %s → %s", r.first.name, name, p.Addr(), u)
	if !enabled {
		if err := r.setEnabled(m, false); err != nil {
			return m, err
		}
	}
	return m, nil
}

// setEnabled disables a proxy (its listener closes: connections are
// refused; its connections are closed) or enables it again. r.mu is held.
func (r *registry) setEnabled(m *member, on bool) error {
	if m.enabled == on {
		return nil
	}
	if err := m.p.ln.setDisabled(!on); err != nil {
		return &APIError{Message: fmt.Sprintf("proxy %s: listen on %s: %v", m.p.name, m.p.Addr(), err), Status: http.StatusInternalServerError}
	}
	m.enabled = on
	if !on {
		m.p.closeLiveNow()
	}
	what := map[bool]string{true: "enabled: listening on " + m.p.Addr(), false: "disabled: listener and connections closed"}[on]
	m.p.logf("proxy %s: %s", m.p.name, what)
	return nil
}

// change gives a proxy another listener or upstream: its connections
// close, as Toxiproxy's restart closes them. r.mu is held.
func (r *registry) change(m *member, listen, upstream string) error {
	listenChanged := listen != m.listen && LoopbackDefault(listen, "127.0.0.1:0") != m.p.Addr()
	upstreamChanged := upstream != m.upstream
	if !listenChanged && !upstreamChanged {
		return nil
	}
	var u *url.URL
	if upstreamChanged {
		var err error
		if u, err = parseToxiUpstream(upstream); err != nil {
			return &APIError{Message: err.Error(), Status: http.StatusBadRequest}
		}
	}
	m.p.closeLiveNow()
	if listenChanged {
		if err := m.p.ln.rebind(LoopbackDefault(listen, "127.0.0.1:0")); err != nil {
			return &APIError{Message: fmt.Sprintf("proxy %s: listen on %s: %v", m.p.name, listen, err), Status: http.StatusInternalServerError}
		}
		m.listen = listen
	}
	if u != nil {
		m.p.upstream.Store(u)
		m.upstream = upstream
	}
	m.p.logf("proxy %s: now %s → %s", m.p.name, m.p.Addr(), m.upstream)
	m.p.putTopology()
	return nil
}

// reset enables a proxy and puts back the faults it started with.
func (r *registry) reset(m *member) error {
	if err := r.setEnabled(m, true); err != nil {
		return err
	}
	return m.p.setFaults(m.initial)
}

// remove stops an added proxy. r.mu is held.
func (r *registry) remove(name string) error {
	m, err := r.get(name)
	if err != nil {
		return err
	}
	if m.p == r.first {
		return &APIError{Message: fmt.Sprintf("proxy %s is the one this process was started for (its flags describe it): disable it with {\"enabled\": false}, or stop the process", name),
			Status: http.StatusConflict}
	}
	delete(r.members, name)
	m.p.Close()
	r.first.logf("proxy %s: proxy %s deleted", r.first.name, name)
	return nil
}

// setDisabled closes the listener while the proxy is disabled and listens
// again when it is enabled.
func (l *listener) setDisabled(disabled bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.disabled == disabled {
		return nil
	}
	l.disabled = disabled
	return l.reconcile()
}

// rebind moves the listener to addr: at once while it listens (the old
// one closes once the new one listens), else at the next listen.
func (l *listener) rebind(addr string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return net.ErrClosed
	}
	if l.ln == nil {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			return err
		}
		l.addr = a
		return nil
	}
	ln, err := l.p.listenTCP(addr)
	if err != nil {
		return err
	}
	old := l.ln
	l.ln, l.addr = ln, ln.Addr()
	old.Close() // Accept sees the swap and goes on with the new one
	return nil
}

// closeLiveNow closes every live connection at once (FIN), as Toxiproxy's
// stop does, without waiting for delay lines to drain.
func (p *Proxy) closeLiveNow() {
	var wg sync.WaitGroup
	for _, h := range p.liveConns() {
		wg.Add(1)
		go func() { defer wg.Done(); h.closeNow(ActionFIN) }()
	}
	wg.Wait()
}

// setFaults replaces every fault by specs.
func (p *Proxy) setFaults(specs []FaultSpec) error {
	for _, f := range p.Faults() {
		if err := p.RemoveFault(f.Name); err != nil && !errors.Is(err, ErrNoFault) {
			return err
		}
	}
	for _, spec := range specs {
		if err := p.AddFault(spec); err != nil {
			return err
		}
	}
	return nil
}

// putTopology records the proxy's listener and upstream again after a
// change, and its ProxyInfo.
func (p *Proxy) putTopology() {
	if p.session == nil {
		return
	}
	p.session.Put(session.Endpoint{Role: session.RoleProxy, Name: p.name, Hop: session.HopClient, Addr: p.Addr(), URL: p.URL()})
	if u := p.upstream.Load(); u != nil {
		p.session.Put(session.Endpoint{Role: session.RoleTarget, Addr: hostPort(u), URL: u.String()})
	}
	p.session.Put(p.Info())
}

// The handlers.

func (a *apiServer) toxiproxyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /version", a.version)
	mux.HandleFunc("GET /proxies", handle(a.proxyIndex))
	mux.HandleFunc("POST /proxies", handle(a.proxyCreate))
	mux.HandleFunc("GET /proxies/{proxy}", handle(a.proxyShow))
	mux.HandleFunc("POST /proxies/{proxy}", handle(a.proxyUpdate))
	mux.HandleFunc("DELETE /proxies/{proxy}", handle(a.proxyDelete))
	mux.HandleFunc("GET /proxies/{proxy}/toxics", handle(a.toxicIndex))
	mux.HandleFunc("POST /proxies/{proxy}/toxics", handle(a.toxicCreate))
	mux.HandleFunc("GET /proxies/{proxy}/toxics/{toxic...}", handle(a.toxicShow))
	mux.HandleFunc("POST /proxies/{proxy}/toxics/{toxic...}", handle(a.toxicUpdate))
	mux.HandleFunc("DELETE /proxies/{proxy}/toxics/{toxic...}", handle(a.toxicDelete))
	mux.HandleFunc("POST /reset", handle(a.resetState))
	mux.HandleFunc("POST /populate", a.populate)
}

// handle serves a handler that returns its status and JSON body (nil: no
// body), or an error.
func handle(fn func(r *http.Request) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		code, body, err := fn(r)
		switch {
		case err != nil:
			apiFail(w, err)
		case body == nil:
			w.WriteHeader(code)
		default:
			writeJSON(w, code, body)
		}
	}
}

// apiFail writes err: an *APIError as it says, a fault error by
// errorStatus.
func apiFail(w http.ResponseWriter, err error) {
	var ae *APIError
	if errors.As(err, &ae) {
		writeError(w, ae.Status, ae.Message)
		return
	}
	writeError(w, errorStatus(err), err.Error())
}

// decodeBody decodes a JSON body strictly into v (an unknown key is an
// error naming it).
func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return &APIError{Message: "bad request body: " + err.Error(), Status: http.StatusBadRequest}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &APIError{Message: "bad request body: " + err.Error(), Status: http.StatusBadRequest}
	}
	return nil
}

func (a *apiServer) version(w http.ResponseWriter, r *http.Request) {
	v := a.p.version
	if v == "" {
		v = "(devel)"
	}
	w.Header().Set("Content-Type", "text/plain;charset=utf-8")
	io.WriteString(w, v)
}

func (a *apiServer) proxyIndex(r *http.Request) (int, any, error) {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	out := make(map[string]toxiProxy, len(a.reg.members))
	for name, m := range a.reg.members {
		out[name] = a.reg.view(m)
	}
	return http.StatusOK, out, nil
}

// proxyInput is a proxy as POST /proxies, POST /proxies/{name} and
// /populate take it; toxics (sent back by clients that save a proxy they
// read) are ignored, as Toxiproxy does.
type proxyInput struct {
	Name     *string         `json:"name"`
	Listen   *string         `json:"listen"`
	Upstream *string         `json:"upstream"`
	Enabled  *bool           `json:"enabled"`
	Toxics   json.RawMessage `json:"toxics"`
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func (a *apiServer) proxyCreate(r *http.Request) (int, any, error) {
	var in proxyInput
	if err := decodeBody(r, &in); err != nil {
		return 0, nil, err
	}
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	m, err := a.reg.create(deref(in.Name, ""), deref(in.Listen, ""), deref(in.Upstream, ""), deref(in.Enabled, true))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, a.reg.view(m), nil
}

func (a *apiServer) proxyShow(r *http.Request) (int, any, error) {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	m, err := a.reg.get(r.PathValue("proxy"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, a.reg.view(m), nil
}

func (a *apiServer) proxyUpdate(r *http.Request) (int, any, error) {
	var in proxyInput
	if err := decodeBody(r, &in); err != nil {
		return 0, nil, err
	}
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	m, err := a.reg.get(r.PathValue("proxy"))
	if err != nil {
		return 0, nil, err
	}
	if in.Name != nil && *in.Name != m.p.name {
		return 0, nil, &APIError{Message: fmt.Sprintf("a proxy cannot be renamed (%s to %s): create another", m.p.name, *in.Name), Status: http.StatusBadRequest}
	}
	if err := a.reg.change(m, deref(in.Listen, m.listen), deref(in.Upstream, m.upstream)); err != nil {
		return 0, nil, err
	}
	if err := a.reg.setEnabled(m, deref(in.Enabled, m.enabled)); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, a.reg.view(m), nil
}

func (a *apiServer) proxyDelete(r *http.Request) (int, any, error) {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	return http.StatusNoContent, nil, a.reg.remove(r.PathValue("proxy"))
}

func (a *apiServer) resetState(r *http.Request) (int, any, error) {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	names := make([]string, 0, len(a.reg.members))
	for n := range a.reg.members {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := a.reg.reset(a.reg.members[n]); err != nil {
			return 0, nil, err
		}
	}
	return http.StatusNoContent, nil, nil
}

// populate creates the proxies listed, or replaces those whose listen or
// upstream differ (their connections close and their toxics go), leaving
// alone those that match: Toxiproxy's /populate. Every entry is checked
// before any proxy changes. An error's body lists the proxies done before
// it, as Toxiproxy's.
func (a *apiServer) populate(w http.ResponseWriter, r *http.Request) {
	var in []proxyInput
	if err := decodeBody(r, &in); err != nil {
		apiFail(w, err)
		return
	}
	for i, p := range in {
		if deref(p.Name, "") == "" {
			apiFail(w, &APIError{Message: fmt.Sprintf("missing required field: name at proxy %d", i+1), Status: http.StatusBadRequest})
			return
		}
		if deref(p.Upstream, "") == "" {
			apiFail(w, &APIError{Message: fmt.Sprintf("missing required field: upstream at proxy %d", i+1), Status: http.StatusBadRequest})
			return
		}
	}
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	done := []toxiProxy{}
	for _, p := range in {
		name, listen, upstream, enabled := *p.Name, deref(p.Listen, ""), *p.Upstream, deref(p.Enabled, true)
		m, exists := a.reg.members[name]
		var err error
		switch {
		case !exists:
			m, err = a.reg.create(name, listen, upstream, enabled)
		case (listen == m.listen || LoopbackDefault(listen, "127.0.0.1:0") == m.p.Addr()) && upstream == m.upstream:
			// The same proxy: left as it is.
		default:
			if err = a.reg.change(m, listen, upstream); err == nil {
				if err = m.p.setFaults(nil); err == nil {
					err = a.reg.setEnabled(m, enabled)
				}
			}
		}
		if err != nil {
			var ae *APIError
			if !errors.As(err, &ae) {
				ae = &APIError{Message: err.Error(), Status: errorStatus(err)}
			}
			writeJSON(w, ae.Status, struct {
				*APIError
				Proxies []toxiProxy `json:"proxies"`
			}{ae, done})
			return
		}
		done = append(done, a.reg.view(m))
	}
	writeJSON(w, http.StatusCreated, map[string]any{"proxies": done})
}

// proxyOf is the proxy a toxic request names.
func (a *apiServer) proxyOf(r *http.Request) (*Proxy, error) {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	m, err := a.reg.get(r.PathValue("proxy"))
	if err != nil {
		return nil, err
	}
	return m.p, nil
}

// toxicOf is the proxy a toxic request names and the toxic's fault.
func (a *apiServer) toxicOf(r *http.Request) (*Proxy, FaultSpec, error) {
	p, err := a.proxyOf(r)
	if err != nil {
		return nil, FaultSpec{}, err
	}
	name := r.PathValue("toxic")
	for _, f := range p.Faults() {
		if f.Name == name {
			return p, f, nil
		}
	}
	return p, FaultSpec{}, toxicNotFound(p, name)
}

func toxicNotFound(p *Proxy, name string) error {
	return &APIError{Message: fmt.Sprintf("toxic not found: proxy %s has no toxic named %q", p.name, name), Status: http.StatusNotFound}
}

func (a *apiServer) toxicIndex(r *http.Request) (int, any, error) {
	p, err := a.proxyOf(r)
	if err != nil {
		return 0, nil, err
	}
	out := []Toxic{}
	for _, f := range p.Faults() {
		out = append(out, ToxicOf(f))
	}
	return http.StatusOK, out, nil
}

// toxicInput is a toxic as POST .../toxics takes it (toxicity absent: 1).
type toxicInput struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   *float64       `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// toxicCreate adds a toxic: 200, as Toxiproxy answers.
func (a *apiServer) toxicCreate(r *http.Request) (int, any, error) {
	p, err := a.proxyOf(r)
	if err != nil {
		return 0, nil, err
	}
	var in toxicInput
	if err := decodeBody(r, &in); err != nil {
		return 0, nil, err
	}
	spec, err := SpecOfToxic(Toxic{Name: in.Name, Type: in.Type, Stream: in.Stream, Toxicity: deref(in.Toxicity, 1), Attributes: in.Attributes})
	if err != nil {
		return 0, nil, err
	}
	if err := p.AddFault(spec); err != nil {
		if errors.Is(err, ErrFaultExists) {
			err = &APIError{Message: fmt.Sprintf("toxic already exists: %q on proxy %s", spec.Name, p.name), Status: http.StatusConflict}
		}
		return 0, nil, err
	}
	return http.StatusOK, ToxicOf(spec), nil
}

func (a *apiServer) toxicShow(r *http.Request) (int, any, error) {
	_, f, err := a.toxicOf(r)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ToxicOf(f), nil
}

// toxicUpdate merges the attributes given into the toxic and sets its
// toxicity when given, as Toxiproxy does; its name, type and stream stay.
func (a *apiServer) toxicUpdate(r *http.Request) (int, any, error) {
	var in toxicInput
	if err := decodeBody(r, &in); err != nil {
		return 0, nil, err
	}
	p, f, err := a.toxicOf(r)
	if err != nil {
		return 0, nil, err
	}
	t := ToxicOf(f)
	if (in.Type != "" && in.Type != t.Type) || (in.Stream != "" && !strings.EqualFold(in.Stream, t.Stream)) || (in.Name != "" && in.Name != t.Name) {
		return 0, nil, &APIError{Message: fmt.Sprintf("toxic %s: its name, type and stream cannot change (%s, %s): remove it and add another", f.Name, t.Type, t.Stream),
			Status: http.StatusBadRequest}
	}
	for k, v := range in.Attributes {
		t.Attributes[k] = v
	}
	if in.Toxicity != nil {
		t.Toxicity = *in.Toxicity
	}
	spec, err := SpecOfToxic(t)
	if err == nil {
		err = p.UpdateFault(f.Name, spec)
	}
	if err != nil {
		return 0, nil, err
	}
	if _, f, err = a.toxicOf(r); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ToxicOf(f), nil
}

func (a *apiServer) toxicDelete(r *http.Request) (int, any, error) {
	p, f, err := a.toxicOf(r)
	if err == nil {
		err = p.RemoveFault(f.Name)
	}
	if errors.Is(err, ErrNoFault) {
		err = toxicNotFound(p, f.Name)
	}
	return http.StatusNoContent, nil, err
}

// OnProxyAdded has fn told of every proxy added through this proxy's
// API (at once for those added already), from the request that adds it:
// the process's live view counts them too. Without an API it does
// nothing.
func (p *Proxy) OnProxyAdded(fn func(*Proxy)) {
	if p.api == nil {
		return
	}
	r := p.api.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onAdd = fn
	for _, m := range r.members {
		if m.p != p {
			fn(m.p)
		}
	}
}

// AddedProxies lists the proxies added through the API that still run,
// by name: what the process's summary adds to the first proxy's.
func (p *Proxy) AddedProxies() []session.ProxyInfo {
	if p.api == nil {
		return nil
	}
	r := p.api.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []session.ProxyInfo
	for _, m := range r.members {
		if m.p != p {
			out = append(out, m.p.Info())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
