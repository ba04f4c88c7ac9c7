package clients

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/ssestress/ssestress/internal/errclass"
)

// HTTP2 is an HTTP/2 streaming transport: streams to the same host share
// one TCP connection, as a browser's EventSources do (a new connection is
// opened only when the server's SETTINGS_MAX_CONCURRENT_STREAMS is
// reached). https URLs negotiate h2 with ALPN; http URLs speak h2c with
// prior knowledge (RFC 9113 §3.3), which browsers never do but proxies and
// test servers do.
//
// The ConnInfo of a stream is its shared connection's: many streams report
// the same 4-tuple. Closing a stream's Body resets only that stream
// (RST_STREAM CANCEL); the connection stays for the others. A reset by the
// server is classified H2_RST_STREAM:<code>; a GOAWAY followed by the end of
// the connection H2_GOAWAY:<code>.
//
// It uses golang.org/x/net/http2's Transport, whose errors are
// StreamError and GoAwayError values (errclass reads them).
type HTTP2 struct {
	// Dialer dials TCP; its zero value is fine.
	Dialer net.Dialer
	// Source, when set, gives each shared connection the next of its local
	// addresses (Dialer.LocalAddr is then ignored).
	Source *SourceAddrs
	// TLSConfig is used for https URLs (nil: defaults, ServerName from the
	// URL); "h2" is offered with ALPN whatever its NextProtos say.
	TLSConfig *tls.Config
	// ConnectTimeout bounds the TCP connect and TLS handshake of a shared
	// connection (default 10 s).
	ConnectTimeout time.Duration
	// HeaderTimeout bounds the time from the request being sent to the
	// response headers (default 30 s).
	HeaderTimeout time.Duration

	once      sync.Once
	tlsTr     *http2.Transport // https
	plainTr   *http2.Transport // http: h2c with prior knowledge
	connsOpen atomic.Int64
}

// ErrNoHTTP2 is returned when an https server does not choose h2 with
// ALPN: it speaks HTTP/1.1 only, and --http2 cannot be honoured.
var ErrNoHTTP2 = errors.New("the server did not negotiate HTTP/2 (ALPN)")

// noHTTP2Error is ErrNoHTTP2 with what the server chose; its class is TLS
// because the refusal happens in the TLS handshake.
type noHTTP2Error struct{ proto string }

func (e *noHTTP2Error) Error() string {
	p := e.proto
	if p == "" {
		p = "none"
	}
	return fmt.Sprintf("%v: it chose %q; drop --http2 for this target", ErrNoHTTP2, p)
}
func (e *noHTTP2Error) Unwrap() error    { return ErrNoHTTP2 }
func (e *noHTTP2Error) ErrClass() string { return errclass.TLS }

// h2Conn is a shared connection with the time its TCP connect completed
// (what ConnInfo.Connected reports for every stream on it). The TLS
// variant keeps *tls.Conn's ConnectionState, which x/net/http2 reads.
type (
	h2TLSConn struct {
		*tls.Conn
		connected time.Time
		onClose   func()
		closeOnce sync.Once
	}
	h2PlainConn struct {
		net.Conn
		connected time.Time
		onClose   func()
		closeOnce sync.Once
	}
)

func (c *h2TLSConn) connectedAt() time.Time   { return c.connected }
func (c *h2PlainConn) connectedAt() time.Time { return c.connected }
func (c *h2TLSConn) Close() error {
	c.closeOnce.Do(c.onClose)
	return c.Conn.Close()
}
func (c *h2PlainConn) Close() error {
	c.closeOnce.Do(c.onClose)
	return c.Conn.Close()
}

func (t *HTTP2) init() {
	t.once.Do(func() {
		t.tlsTr = &http2.Transport{
			TLSClientConfig:    t.TLSConfig,
			DisableCompression: true, // an event stream is read as sent
			MaxHeaderListSize:  h2HeaderListCeiling,
			DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
				return t.dial(ctx, addr, cfg)
			},
		}
		t.plainTr = &http2.Transport{
			AllowHTTP:          true,
			DisableCompression: true,
			MaxHeaderListSize:  h2HeaderListCeiling,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				return t.dial(ctx, addr, nil)
			},
		}
	})
}

// dial opens a shared connection: TCP, then TLS with ALPN h2 when cfg is
// not nil. It is not bound to the context of the stream that caused it
// (other streams will share the connection), only to ConnectTimeout.
func (t *HTTP2) dial(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orDefault(t.ConnectTimeout, DefaultConnectTimeout))
	defer cancel()
	raw, err := t.Source.dialer(&t.Dialer).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	connected := time.Now()
	t.connsOpen.Add(1)
	onClose := func() { t.connsOpen.Add(-1) }
	if cfg == nil {
		return &h2PlainConn{Conn: raw, connected: connected, onClose: onClose}, nil
	}
	// Offering http/1.1 too lets an HTTP/1.1-only server answer instead of
	// refusing the handshake, so the error can say what it chose.
	cfg = cfg.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS, "http/1.1"}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		raw.Close()
		onClose()
		return nil, err
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
		tc.Close()
		onClose()
		return nil, &noHTTP2Error{proto: p}
	}
	return &h2TLSConn{Conn: tc, connected: connected, onClose: onClose}, nil
}

// Connections is the number of TCP connections the transport holds open
// now: with HTTP/2 far fewer than the streams.
func (t *HTTP2) Connections() int64 { return t.connsOpen.Load() }

// CloseIdleConnections closes the shared connections that carry no stream
// any more (call it when a run has closed its streams).
func (t *HTTP2) CloseIdleConnections() {
	t.init()
	t.tlsTr.CloseIdleConnections()
	t.plainTr.CloseIdleConnections()
}

// Open sends req as a stream on a shared connection and returns the
// response with its headers read.
func (t *HTTP2) Open(ctx context.Context, req *http.Request, info *ConnInfo) (*http.Response, error) {
	t.init()
	tr := t.tlsTr
	if req.URL.Scheme == "http" {
		tr = t.plainTr
	}
	// The stream lives in sctx: cancelled when ctx ends, when the header
	// timeout fires before the response, or when the Body is closed.
	sctx, cancel := context.WithCancel(ctx)
	trace := &httptrace.ClientTrace{GotConn: func(gi httptrace.GotConnInfo) {
		if gi.Conn == nil {
			return
		}
		info.LocalAddr = gi.Conn.LocalAddr().String()
		info.RemoteAddr = gi.Conn.RemoteAddr().String()
		if c, ok := gi.Conn.(interface{ connectedAt() time.Time }); ok {
			info.Connected = c.connectedAt()
		}
	}}
	sctx = httptrace.WithClientTrace(sctx, trace)
	var timedOut atomic.Bool
	timer := time.AfterFunc(orDefault(t.HeaderTimeout, DefaultHeaderTimeout), func() {
		timedOut.Store(true)
		cancel()
	})
	r := req.WithContext(sctx)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	resp, err := tr.RoundTrip(r)
	stopped := timer.Stop()
	if err != nil {
		cancel()
		if info.RemoteAddr == "" {
			info.RemoteAddr = dialedAddr(err)
		}
		if timedOut.Load() && ctx.Err() == nil {
			return nil, fmt.Errorf("no response headers within %v: %w", orDefault(t.HeaderTimeout, DefaultHeaderTimeout), os.ErrDeadlineExceeded)
		}
		// x/net/http2 has no typed error for a header list past
		// MaxHeaderListSize: its message is all there is to tell it by.
		if strings.Contains(err.Error(), "response header list larger than") {
			return nil, &HeaderTooLongError{Max: DefaultMaxHeaderBytes}
		}
		return nil, err
	}
	if headerListSize(resp.Header) > DefaultMaxHeaderBytes {
		resp.Body.Close()
		cancel()
		return nil, &HeaderTooLongError{Max: DefaultMaxHeaderBytes}
	}
	if !stopped {
		// The timer fired just as the headers arrived: the stream is
		// already cancelled.
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("no response headers within %v: %w", orDefault(t.HeaderTimeout, DefaultHeaderTimeout), os.ErrDeadlineExceeded)
	}
	resp.Body = &h2Body{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// h2HeaderListCeiling is the most x/net/http2 decodes of one response's
// headers. The bound a response is held to is DefaultMaxHeaderBytes, as
// over HTTP/1.1 and in the proxy (headerListSize counts it): x/net ends
// the whole connection with PROTOCOL_ERROR when a header list passes its
// own ceiling by more than one frame, so the ceiling sits above the bound
// and a list between the two is told apart as HEADER_TOO_LONG. Past the
// ceiling it is the connection's PROTOCOL_ERROR.
const h2HeaderListCeiling = 4 * DefaultMaxHeaderBytes

// headerListSize is the size of a header list as HTTP/2 counts it (RFC
// 9113 §6.5.2: name, value and 32 bytes per field).
func headerListSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 32
		}
	}
	return n
}

// h2Body releases the stream's context when the stream is closed.
type h2Body struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *h2Body) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
