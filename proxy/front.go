package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// The proxy's front: what every request meets first, on HTTP/1.1 (h1.go)
// and HTTP/2 (net/http) alike. It refuses what is not allowed, answers
// http-status faults, rewrites reverse-mode requests and hands them to
// goproxy for routing (forward mode, CONNECT).

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
		p.serveConnect(w, r)
		return nil
	}
	now := time.Now()
	forward := r.URL.IsAbs()
	if forward && !p.allowed(r.URL.Host) {
		p.refuse(w, http.StatusForbidden, fmt.Sprintf("%s is not an --allow-host of this proxy (it is never an open proxy)", r.URL.Host))
		return nil
	}
	if !forward && p.upstream.Load() == nil {
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

// rewrite points a reverse-mode request at the upstream.
func (p *Proxy) rewrite(r *http.Request) {
	u := p.upstream.Load()
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
