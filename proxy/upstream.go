package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// The upstream hop's HTTP/1.1 client. Every request goes upstream on a
// socket of its own (the upstream hop is one request), so the proxy needs
// no connection pool: roundTrip dials, writes the request, reads the
// response head under one deadline, and hands the socket to the stream
// as a bodyReader. Unlike net/http's Transport it starts no goroutine per
// connection (a request with a body writes it from one goroutine while the
// head is awaited, as the Transport does), and the body is read straight
// from the socket into the stream's own buffer.

// maxUpstreamHeader bounds the response head the proxy reads from an
// upstream, as the load clients bound theirs (1 MiB): past it the stream
// ends with HEADER_TOO_LONG instead of growing memory.
const maxUpstreamHeader = 1 << 20

// headBufSize is the buffer a response head is read with (pooled; given
// back once the head is parsed).
const headBufSize = 4 << 10

var headReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headBufSize) }}

// headerTimeoutError is the upstream's failure to send response headers
// within the header timeout.
type headerTimeoutError struct{ d time.Duration }

func (e *headerTimeoutError) Error() string {
	return fmt.Sprintf("no response headers from the upstream within %s (--upstream-header-timeout)", e.d)
}
func (e *headerTimeoutError) ErrClass() string { return errclass.ETIMEDOUT }
func (e *headerTimeoutError) Timeout() bool    { return true }

// headerTooLongError ends a response whose head passed maxUpstreamHeader.
type headerTooLongError struct{}

func (headerTooLongError) Error() string {
	return fmt.Sprintf("the upstream's response headers passed %d bytes", maxUpstreamHeader)
}
func (headerTooLongError) ErrClass() string { return errclass.HeaderTooLong }

// badResponseError is an upstream answer that is not HTTP/1.1 as the proxy
// reads it: a malformed status line, header or chunk framing.
type badResponseError struct{ err error }

func (e *badResponseError) Error() string    { return "bad response from the upstream: " + e.err.Error() }
func (e *badResponseError) Unwrap() error    { return e.err }
func (e *badResponseError) ErrClass() string { return errclass.BadResponse }

// roundTrip sends req upstream on a new socket of st's and reads the
// response head, waiting at most the header timeout, counted from now (the
// request's body is sent within it too: an upstream that never reads
// times out the same way). An http-status fault with a timeout drawn for
// the stream replaces the header timeout: its code is answered when no
// headers come within it. The response's Body is a *bodyReader on the
// socket.
func (p *Proxy) roundTrip(req *http.Request, st *stream) (*http.Response, error) {
	limit := p.headerTimeout
	if st.statusFault != nil {
		limit = st.statusTimeout
	}
	var deadline time.Time
	if limit > 0 {
		deadline = time.Now().Add(limit)
	}
	ctx := st.ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		if req.URL.Scheme == "https" {
			addr = net.JoinHostPort(req.URL.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(req.URL.Hostname(), "80")
		}
	}
	conn, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil && st.ctx.Err() == nil {
			return p.noHead(req, st, limit)
		}
		return nil, err
	}
	up := st.upstream.Load()
	if st.ctx.Err() != nil {
		up.closeWith(ActionFIN, "proxy")
		return nil, st.ctx.Err()
	}
	var c net.Conn = conn
	if req.URL.Scheme == "https" {
		cfg := &tls.Config{}
		if p.upstreamTLS != nil {
			cfg = p.upstreamTLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = req.URL.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			up.closeWith(ActionFIN, "proxy")
			if ctx.Err() != nil && st.ctx.Err() == nil {
				return p.noHead(req, st, limit)
			}
			if up != nil {
				up.setClass(errclass.Classify(err))
			}
			return nil, fmt.Errorf("TLS handshake with the upstream %s: %w", addr, err)
		}
		c = tc
	}
	// Deadlines end the wait: the whole head phase is bounded, and a
	// stream the client left (st.ctx) closes the socket at once.
	if !deadline.IsZero() {
		c.SetDeadline(deadline)
	}
	stopWatch := context.AfterFunc(st.ctx, func() { up.closeWith(ActionFIN, "proxy") })
	resp, upload, err := p.exchange(c, req)
	stopWatch()
	st.upload = upload
	if err != nil {
		if st.ctx.Err() != nil {
			return nil, st.ctx.Err()
		}
		// The deadline, or a fault of the proxy closing the socket as the
		// deadline came (an idle timeout of the same length): no head in
		// time either way.
		if errors.Is(err, errHeadTimeout) || (!deadline.IsZero() && time.Until(deadline) < headSlack) {
			return p.noHead(req, st, limit)
		}
		up.setClass(errclass.Classify(err))
		up.closeWith(ActionFIN, "proxy")
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return resp, nil
}

// headSlack is how close to the head deadline a failure counts as the
// deadline's: timers that fire together run in any order.
const headSlack = 5 * time.Millisecond

// errHeadTimeout is the deadline of the head phase passing.
var errHeadTimeout = errors.New("upstream head deadline")

// exchange writes req on c and reads the response head; the body is left
// on the socket for a bodyReader.
// While a request body is still being sent, upload is the channel its
// writer's result comes on (nil otherwise).
func (p *Proxy) exchange(c net.Conn, req *http.Request) (resp *http.Response, upload <-chan error, err error) {
	out := &http.Request{
		Method: req.Method, URL: req.URL, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: req.Header, Body: req.Body, ContentLength: req.ContentLength,
		TransferEncoding: req.TransferEncoding, Host: req.Host, Close: true, Trailer: req.Trailer,
	}
	if out.Body == http.NoBody {
		out.Body = nil
	}
	bw := bufio.NewWriterSize(c, 1<<10)
	writeDone := make(chan error, 1)
	write := func() {
		err := out.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		writeDone <- err
	}
	if out.Body != nil {
		go write() // the upstream may answer before it has read the body
	} else {
		write()
		if err := <-writeDone; err != nil {
			return nil, nil, timeoutOr(err)
		}
		writeDone = nil
	}
	br := headReaders.Get().(*bufio.Reader)
	head := &limitedConn{c: c, left: maxUpstreamHeader}
	br.Reset(head)
	defer func() {
		br.Reset(nil)
		headReaders.Put(br)
	}()
	for {
		resp, err = http.ReadResponse(br, req)
		if err != nil {
			break
		}
		// Interim responses (100 Continue, 103 Early Hints) are read over.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		break
	}
	if err != nil {
		if writeDone != nil {
			c.Close()
			<-writeDone
		}
		var lim *limitReached
		switch {
		case errors.As(err, &lim), head.left <= 0:
			// The bound was reached: however the parser put the cut line
			// (a malformed header, an unexpected end), the head was too
			// long.
			return nil, nil, headerTooLongError{}
		case isTimeout(err):
			return nil, nil, errHeadTimeout
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, nil, err
		}
		var ne net.Error
		if errors.As(err, &ne) {
			return nil, nil, err
		}
		return nil, nil, &badResponseError{err}
	}
	body := &bodyReader{conn: c}
	if n := br.Buffered(); n > 0 {
		body.pending, _ = br.Peek(n)
		body.pending = append([]byte(nil), body.pending...)
	}
	switch {
	case req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified:
		body.mode, body.done = bodyNone, true
	case len(resp.TransferEncoding) > 0 && strings.EqualFold(resp.TransferEncoding[0], "chunked"):
		body.mode = bodyChunked
	case resp.ContentLength >= 0:
		body.mode, body.left = bodyLength, resp.ContentLength
		body.done = resp.ContentLength == 0
	default:
		body.mode = bodyUntilClose
	}
	// net/http's reader over br is dropped unread (closing it would read
	// the endless body to its end).
	resp.Body = body
	// The head came: the body's upload goes on (or ends with the socket)
	// while the response streams.
	return resp, writeDone, nil
}

func timeoutOr(err error) error {
	if isTimeout(err) {
		return errHeadTimeout
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// noHead answers a head that did not come within limit: the
// http-status fault drawn for the stream, or 504 with the upstream hop
// marked ETIMEDOUT.
func (p *Proxy) noHead(req *http.Request, st *stream, limit time.Duration) (*http.Response, error) {
	up := st.upstream.Load()
	if f := st.statusFault; f != nil {
		if up != nil {
			up.closeWith(ActionFIN, "proxy")
		}
		st.client.fire(f, "", session.ActionStatus, fmt.Sprintf("no response headers within %s: answered %d", st.statusTimeout, st.statusCode))
		return statusResponse(req, st.statusCode, f), nil
	}
	if up != nil {
		up.setClass(errclass.ETIMEDOUT) // before the close
		up.closeWith(ActionFIN, "proxy")
	} else {
		p.countError(session.HopUpstream, errclass.ETIMEDOUT)
	}
	return nil, &headerTimeoutError{limit}
}

// limitedConn reads from c at most left bytes, then fails with
// limitReached: the bound of a response head.
type limitedConn struct {
	c    net.Conn
	left int64
}

type limitReached struct{}

func (limitReached) Error() string { return "response head too long" }

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, &limitReached{}
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.c.Read(p)
	l.left -= int64(n)
	return n, err
}

// Body framings of an upstream response.
const (
	bodyNone       = iota // HEAD, 204, 304
	bodyChunked           // Transfer-Encoding: chunked, decoded
	bodyLength            // Content-Length
	bodyUntilClose        // no length: the body ends with the connection
)

// bodyReader is an upstream response body read from the socket itself:
// chunked framing is decoded in place, in the caller's buffer, so the
// payload reaches the client with no copy of the proxy's own. It never
// closes the socket (the stream's end does).
type bodyReader struct {
	conn    net.Conn
	pending []byte // bytes read with the head, served first
	mode    int
	left    int64 // bodyLength: bytes still to come
	done    bool  // the body ended cleanly
	err     error
	chunk   chunkDecoder
}

// Close does nothing: the socket is the stream's, closed when it ends.
func (b *bodyReader) Close() error { return nil }

// Read returns payload bytes.
func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := b.readRaw(p)
		switch b.mode {
		case bodyLength:
			if int64(n) >= b.left {
				n, b.done = int(b.left), true
			}
			b.left -= int64(n)
			if b.done {
				return n, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
		case bodyChunked:
			var derr error
			n, derr = b.chunk.decode(p[:n])
			if derr != nil {
				b.err = &badResponseError{derr}
				if n > 0 {
					return n, nil
				}
				return 0, b.err
			}
			if b.chunk.finished() {
				b.done = true
				return n, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if n == 0 && err == nil {
				continue // only framing in this read
			}
		}
		if err != nil {
			b.err = err
			if n > 0 {
				return n, nil
			}
		}
		return n, err
	}
}

func (b *bodyReader) readRaw(p []byte) (int, error) {
	if len(b.pending) > 0 {
		n := copy(p, b.pending)
		b.pending = b.pending[n:]
		if len(b.pending) == 0 {
			b.pending = nil
		}
		return n, nil
	}
	return b.conn.Read(p)
}

// chunkDecoder decodes HTTP/1.1 chunked framing in place with constant
// state: the size line, the payload, the CRLF after it, the trailers.
type chunkDecoder struct {
	state   int
	size    int64 // payload bytes of the current chunk still to come
	lineLen int   // bytes of the current size or trailer line
	digits  int   // hex digits of the size seen
	inExt   bool  // past the size, in a chunk extension
	crlf    int   // bytes of the CRLF after the payload seen
}

const (
	chunkSize = iota
	chunkData
	chunkDataEnd
	chunkTrailer
	chunkDone
)

// maxChunkLine bounds a size or trailer line.
const maxChunkLine = 4 << 10

func (d *chunkDecoder) finished() bool { return d.state == chunkDone }

// decode turns the raw bytes in b into payload, moved to the front of b;
// it returns the payload's length.
func (d *chunkDecoder) decode(b []byte) (int, error) {
	out := 0
	i := 0
	for i < len(b) && d.state != chunkDone {
		switch d.state {
		case chunkData:
			n := int(min(d.size, int64(len(b)-i)))
			if out != i {
				copy(b[out:], b[i:i+n])
			}
			out += n
			i += n
			d.size -= int64(n)
			if d.size == 0 {
				d.state, d.crlf = chunkDataEnd, 0
			}
		case chunkDataEnd:
			c := b[i]
			i++
			want := byte('\r')
			if d.crlf == 1 {
				want = '\n'
			}
			if c != want {
				return out, errors.New("malformed chunked encoding: no CRLF after a chunk")
			}
			if d.crlf++; d.crlf == 2 {
				d.state = chunkSize
			}
		case chunkSize:
			c := b[i]
			i++
			d.lineLen++
			if d.lineLen > maxChunkLine {
				return out, errors.New("malformed chunked encoding: size line too long")
			}
			switch {
			case c == '\n':
				if d.digits == 0 {
					return out, errors.New("malformed chunked encoding: no chunk size")
				}
				d.lineLen, d.digits, d.inExt = 0, 0, false
				if d.size == 0 {
					d.state = chunkTrailer
				} else {
					d.state = chunkData
				}
			case d.inExt || c == '\r':
			case c == ';' || c == ' ' || c == '\t':
				d.inExt = true
			default:
				v, ok := hexVal(c)
				if !ok {
					return out, fmt.Errorf("malformed chunked encoding: bad size byte %q", c)
				}
				if d.size > (1<<62)>>4 {
					return out, errors.New("malformed chunked encoding: chunk size too large")
				}
				d.size = d.size<<4 | int64(v)
				d.digits++
			}
		case chunkTrailer:
			c := b[i]
			i++
			if c == '\n' {
				if d.lineLen == 0 {
					d.state = chunkDone
				}
				d.lineLen = 0
				continue
			}
			if c != '\r' {
				d.lineLen++
				if d.lineLen > maxChunkLine {
					return out, errors.New("malformed chunked encoding: trailer line too long")
				}
			}
		}
	}
	return out, nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// statusResponse is a made-up response of an http-status fault.
func statusResponse(req *http.Request, code int, f *Fault) *http.Response {
	body := fmt.Sprintf("%d %s (ssestress fault %s)\n", code, http.StatusText(code), f.Spec.Name)
	return &http.Response{
		StatusCode: code, Status: strconv.Itoa(code) + " " + http.StatusText(code),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}, FaultHeader: {f.Spec.Name}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
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
