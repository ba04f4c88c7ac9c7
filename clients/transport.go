package clients

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Transport opens one event stream: it sends req and returns the response
// with its headers read. Closing the response Body must end the stream at
// once (never drain it: an event stream does not end): HTTP1 closes the
// connection, HTTP2 resets the stream. Cancelling ctx must unblock a Read
// of the Body.
//
// Transport is the seam between the EventSource logic and the wire. HTTP1
// (plain TCP, or TLS for https URLs) is the default; HTTP2 multiplexes the
// streams on shared connections; one that dials through a fault proxy
// implements the same method.
type Transport interface {
	Open(ctx context.Context, req *http.Request, info *ConnInfo) (*http.Response, error)
}

// ConnInfo is what a Transport tells about the socket a stream travels on.
// It is filled as soon as it is known, so a failure after the TCP connect
// still carries the 4-tuple.
type ConnInfo struct {
	LocalAddr  string    // client side of the TCP 4-tuple, "127.0.0.1:53122"
	RemoteAddr string    // server (or proxy) side
	Connected  time.Time // TCP connect completed
}

// HTTP1 is an HTTP/1.1 streaming transport on its own sockets: one TCP
// connection per stream, the request written by hand and the response read
// with http.ReadResponse over a small bufio.Reader, so each stream costs a
// socket, one goroutine and a few KiB (net/http's Transport keeps two
// goroutines and larger buffers per connection).
type HTTP1 struct {
	// Dialer dials TCP; its zero value is fine (TCP keepalive every
	// DefaultKeepalive).
	Dialer net.Dialer
	// Source, when set, gives each connection the next of its local
	// addresses (Dialer.LocalAddr is then ignored).
	Source *SourceAddrs
	// TLSConfig is used for https URLs (nil: defaults, ServerName from the URL).
	TLSConfig *tls.Config
	// ConnectTimeout bounds the TCP connect and TLS handshake (default 10 s).
	ConnectTimeout time.Duration
	// HeaderTimeout bounds the time from the request being written to the
	// response headers (default 30 s).
	HeaderTimeout time.Duration
	// ReadBufferSize is the size of the bufio.Reader on the socket (default 4096).
	ReadBufferSize int
	// MaxHeaderBytes bounds the response's status line and headers
	// (default DefaultMaxHeaderBytes); past it the attempt fails with
	// HEADER_TOO_LONG.
	MaxHeaderBytes int
}

// Defaults of HTTP1.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultHeaderTimeout  = 30 * time.Second
	DefaultReadBufferSize = 4096
)

// errConnClosed is returned by a Read after the client closed the stream.
var errConnClosed = errors.New("stream closed by the client")

// Open dials, writes req and reads the response headers.
func (t *HTTP1) Open(ctx context.Context, req *http.Request, info *ConnInfo) (*http.Response, error) {
	connectTimeout := orDefault(t.ConnectTimeout, DefaultConnectTimeout)
	headerTimeout := orDefault(t.HeaderTimeout, DefaultHeaderTimeout)
	bufSize := t.ReadBufferSize
	if bufSize <= 0 {
		bufSize = DefaultReadBufferSize
	}
	u := req.URL
	https := u.Scheme == "https"
	addr := hostPort(u.Host, https)

	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	raw, err := t.Source.dialer(&t.Dialer).DialContext(dctx, "tcp", addr)
	if err != nil {
		info.RemoteAddr = dialedAddr(err)
		return nil, err
	}
	info.LocalAddr = raw.LocalAddr().String()
	info.RemoteAddr = raw.RemoteAddr().String()
	info.Connected = time.Now()
	conn := raw
	if https {
		cfg := t.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			cfg.ServerName = host
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			raw.Close()
			return nil, err
		}
		conn = tc
	}

	// From here a cancelled ctx ends the connection: at once while the
	// request is on its way, in order once the stream flows (shutdown).
	closer := &connCloser{conn: conn}
	closer.stop = context.AfterFunc(ctx, closer.shutdown)
	conn.SetDeadline(time.Now().Add(headerTimeout))
	if err := req.Write(conn); err != nil {
		closer.Close()
		return nil, err
	}
	limit := newHeaderLimit(conn, t.MaxHeaderBytes, bufSize)
	resp, err := http.ReadResponse(bufio.NewReaderSize(limit, bufSize), req)
	if err != nil {
		closer.Close()
		return nil, badResponse(err)
	}
	limit.off()
	conn.SetDeadline(time.Time{})
	closer.flowing.Store(true)
	if ctx.Err() != nil {
		// ctx ended while the headers were read: shutdown closed it then.
		closer.shutdown()
	}
	resp.Body = &streamBody{body: resp.Body, closer: closer}
	return resp, nil
}

// connCloser closes a connection once, whether the client or ctx asks first.
type connCloser struct {
	conn     net.Conn
	stop     func() bool
	once     sync.Once
	shutOnce sync.Once
	flowing  atomic.Bool // the response headers were read: the stream flows
}

func (c *connCloser) close() { c.once.Do(func() { c.conn.Close() }) }

// shutdownDrain bounds how long a client that ended its stream reads (and
// discards) what is still on its way before it closes the socket.
const shutdownDrain = 500 * time.Millisecond

// shutdown ends the connection when the client ends its stream (the run
// is over, churn closes it). Once the stream flows the close is orderly: a
// FIN first (CloseWrite; close_notify on TLS), then the stream's reader
// goes on reading, and discarding, until the peer closes too or
// shutdownDrain passes, and its Close closes the socket. Closing a socket
// with unread bytes in its receive queue makes the kernel send a RST
// instead of a FIN: every stream ended by the run would then show up in
// the server's and the proxies' records (and in captures) as a client
// reset that no failure caused.
func (c *connCloser) shutdown() {
	c.shutOnce.Do(func() {
		cw, ok := c.conn.(interface{ CloseWrite() error })
		if !c.flowing.Load() || !ok || cw.CloseWrite() != nil {
			c.close()
			return
		}
		c.conn.SetReadDeadline(time.Now().Add(shutdownDrain))
		// The reader closes the socket when its read ends; this is in case
		// no reader is left.
		time.AfterFunc(shutdownDrain+100*time.Millisecond, c.close)
	})
}

// Close stops watching ctx and closes the connection.
func (c *connCloser) Close() error {
	c.stop()
	c.close()
	return nil
}

// streamBody is a response body whose Close closes the connection instead
// of draining the body as net/http's would.
type streamBody struct {
	body   io.ReadCloser
	closer *connCloser
}

// Read passes on the body's bytes; a broken chunk framing is BAD_RESPONSE.
func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	return n, badResponse(err)
}

func (b *streamBody) Close() error { return b.closer.Close() }

// HostPort is the host:port a URL connects to (with the scheme's default
// port when it names none).
func HostPort(u *url.URL) string { return hostPort(u.Host, u.Scheme == "https") }

// hostPort adds the scheme's default port when the URL has none.
func hostPort(host string, https bool) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if https {
		port = "443"
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return net.JoinHostPort(host, port)
}

// Probe checks that the target of rawURL accepts a connection (TCP, and TLS
// for https) within timeout, and closes it at once. It is the pre-flight
// check of a run: an unreachable target fails fast with one line instead of
// filling a session file with connection errors.
func Probe(ctx context.Context, u string, timeout time.Duration) error {
	return ProbeWith(ctx, u, timeout, ProbeOptions{})
}

// ProbeOptions make the pre-flight check use the run's TLS settings.
type ProbeOptions struct {
	// TLSConfig is the clients' (nil: defaults).
	TLSConfig *tls.Config
	// HTTP2 requires an https server to choose h2 with ALPN.
	HTTP2 bool
}

// ProbeWith is Probe with the clients' TLS configuration: a certificate the
// clients would refuse, or a server without h2 when HTTP2 is asked for,
// fails here with its class (TLS).
func ProbeWith(ctx context.Context, u string, timeout time.Duration, o ProbeOptions) error {
	target, err := StreamURL(u, "", []string{"X"})
	if err != nil {
		return err
	}
	https := target.Scheme == "https"
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostPort(target.Host, https))
	if err != nil {
		return err
	}
	defer conn.Close()
	if https {
		cfg := o.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(hostPort(target.Host, true))
		}
		cfg.NextProtos = []string{"http/1.1"}
		if o.HTTP2 {
			cfg.NextProtos = []string{"h2", "http/1.1"} // see HTTP2.dial
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; o.HTTP2 && p != "h2" {
			return &noHTTP2Error{proto: p}
		}
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// dialedAddr is the address a failed connect was made to ("" when err is
// not a failed connect): a refused connection's socket had a peer too,
// and the records say which (the kernel's answer joins by it).
func dialedAddr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" && oe.Addr != nil {
		return oe.Addr.String()
	}
	return ""
}
