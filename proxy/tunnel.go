package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"
)

// tunnels is the proxy's side of forward mode's CONNECT tunnels.
//
// A CONNECT to an allowed host is answered 200 and its connection taken
// over (hijacked). What the client sends first decides: plain HTTP is
// served, request by request, by ServeHTTP like any forward-mode request,
// each pointed at the tunnel's target whatever its Host header or
// absolute URL says, so it is recorded, faulted and attributed like any
// stream and never reaches another host; TLS is terminated with a
// certificate of the MITM CA (--mitm), then served the same way and sent
// on to the target over TLS again. Without --mitm a TLS tunnel is passed
// through byte for byte, unrecorded, and counted by target
// (ProxyInfo.UnrecordedTunnels), as is a CONNECT the proxy cannot take
// over (one HTTP/2 stream).
type tunnels struct {
	mitm *mitmCA // nil without --mitm

	mu         sync.Mutex
	unrecorded map[string]int64 // by target
}

// tlsHandshakeRecord is the first byte of a TLS connection (a handshake
// record: the ClientHello).
const tlsHandshakeRecord = 0x16

// tunnelHandshakeTimeout bounds a tunnel's TLS handshake with the client.
const tunnelHandshakeTimeout = 10 * time.Second

// unrecordedCounts is a copy of the counts of tunnels not recorded, by
// target (nil when none).
func (t *tunnels) unrecordedCounts() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.unrecorded) == 0 {
		return nil
	}
	return maps.Clone(t.unrecorded)
}

func (t *tunnels) countUnrecorded(target string) {
	t.mu.Lock()
	if t.unrecorded == nil {
		t.unrecorded = map[string]int64{}
	}
	t.unrecorded[target]++
	t.mu.Unlock()
}

// serveConnect serves a CONNECT to an allowed host (ServeHTTP checked it).
func (p *Proxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	target := connectTarget(r.Host)
	client, _ := r.Context().Value(clientConnKey{}).(*hopConn)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil || client == nil {
		// An HTTP/2 CONNECT is one stream of a shared connection: tunnel it
		// as goproxy does, unrecorded.
		p.tunnels.countUnrecorded(target)
		p.logf("%s: CONNECT %s over %s passed through unrecorded (only HTTP/1.1 tunnels are recorded)", connID(client), target, r.Proto)
		p.gp.ServeHTTP(w, r)
		return
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	in := &bufferedConn{Conn: conn, r: brw.Reader}
	first, err := in.r.Peek(1)
	if err != nil {
		return // the client left without a byte
	}
	if first[0] != tlsHandshakeRecord {
		p.serveTunnel(in, client, "http", target)
		return
	}
	if p.tunnels.mitm == nil {
		p.tunnels.countUnrecorded(target)
		p.logf("%s: CONNECT %s carries TLS: passed through unrecorded (--mitm records it)", client.connID, target)
		p.passThrough(r.Context(), in, target)
		return
	}
	cfg, err := p.tunnels.mitm.serverConfig(p, target)
	if err != nil {
		p.logf("%s: CONNECT %s: no certificate for the tunnel: %v", client.connID, target, err)
		return
	}
	tlsConn := tls.Server(in, cfg)
	ctx, cancel := context.WithTimeout(r.Context(), tunnelHandshakeTimeout)
	err = tlsConn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.logf("%s: CONNECT %s: TLS handshake with the client failed (does it trust the --mitm CA?): %v", client.connID, target, err)
		return
	}
	p.serveTunnel(tlsConn, client, "https", target)
}

// serveTunnel serves the HTTP requests of one tunnel to target with
// ServeHTTP, each sent to target (scheme http or https) whatever it names,
// and returns when the connection closes.
func (p *Proxy) serveTunnel(c net.Conn, client *hopConn, scheme, target string) {
	ln := &oneConnListener{conn: c, closed: make(chan struct{})}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodConnect {
				p.refuse(w, http.StatusMethodNotAllowed, "CONNECT inside a tunnel")
				return
			}
			// The tunnel reaches its target and nothing else.
			r.URL.Scheme, r.URL.Host = scheme, target
			p.ServeHTTP(w, r)
		}),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, clientConnKey{}, client)
		},
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				ln.Close()
			}
		},
		ReadHeaderTimeout: p.srv.ReadHeaderTimeout,
		ErrorLog:          log.New(logWriter{p}, "", 0),
	}
	srv.Serve(ln)
}

// passThrough copies bytes both ways between the client and target until
// either side ends.
func (p *Proxy) passThrough(ctx context.Context, client net.Conn, target string) {
	up, err := p.dialer.DialContext(ctx, "tcp", target)
	if err != nil {
		p.dialErrors.Add(1)
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, client); closeWrite(up); done <- struct{}{} }()
	go func() { io.Copy(client, up); closeWrite(client); done <- struct{}{} }()
	<-done
	<-done
}

// closeWrite passes an EOF on (half-close) where the connection can.
func closeWrite(c net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.(closeWriter); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// connectTarget is a CONNECT's authority as host:port (443 when no port is
// given, as clients mean it).
func connectTarget(authority string) string {
	if _, _, err := net.SplitHostPort(authority); err == nil {
		return authority
	}
	return net.JoinHostPort(authority, "443")
}

func connID(h *hopConn) string {
	if h == nil {
		return "?"
	}
	return h.connID
}

// bufferedConn is a hijacked connection read through the server's reader,
// which may hold bytes the client sent right after its CONNECT.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// oneConnListener accepts one connection, then waits until it is closed.
type oneConnListener struct {
	mu     sync.Mutex
	conn   net.Conn // nil once accepted
	closed chan struct{}
	once   sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return addrOf{} }

// addrOf is the address of a oneConnListener, which has none of its own.
type addrOf struct{}

func (addrOf) Network() string { return "tunnel" }
func (addrOf) String() string  { return "tunnel" }
