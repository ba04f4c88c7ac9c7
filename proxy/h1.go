package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The client hop's HTTP/1.1 server. Each accepted connection gets one
// goroutine (serveConn) that reads requests, hands each to the proxy's
// front (ServeHTTP, hence goproxy for routing, forward mode and CONNECT)
// with an h1Writer as its ResponseWriter, and, once goproxy has routed the
// request and returned, copies a streamed response itself, at the top of
// its own stack, straight from the upstream socket to the client socket.
// While a request is in progress a second goroutine (the watcher) waits on
// the client socket, as a relay's other direction does, so that a client
// that leaves is seen at once: the stream is cut and its upstream closed.
// So an idle stream holds two goroutines and two small buffers. HTTP/2
// connections (h2 over TLS, h2c with prior knowledge) are handed to
// net/http's server, which serves them through the same front.

// headerWait bounds the wait for a request head on a client connection: a
// client that connects and sends nothing is closed after it. Long, so
// that the proxy never closes a connection a test counts on (an idle
// keep-alive connection has no other timeout).
const headerWait = 10 * time.Minute

// requestBufSize is the buffer a request head is read with.
const requestBufSize = 2 << 10

var requestReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, requestBufSize) }}

// h1Conn is one client connection served over HTTP/1.1.
type h1Conn struct {
	p    *Proxy
	wire *clientWire
	br   *bufio.Reader // nil between requests when nothing is buffered

	// The watcher: running while a request is served.
	watching  bool
	watchDone chan struct{}
	peeked    [1]byte
	hasPeeked bool // a byte of the next request was read ahead
	// headLeft bounds the bytes read for a request head (-1: no bound).
	headLeft int64
	hijacked bool // handed over by Hijack
}

// maxRequestHeader bounds a request head, as net/http's server does.
const maxRequestHeader = 1<<20 + 4<<10

var errRequestHeadTooLong = errors.New("request head too long")

// Read is what the request reader reads: a byte read ahead first, then
// the connection.
func (c *h1Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.hasPeeked {
		p[0], c.hasPeeked = c.peeked[0], false
		return 1, nil
	}
	if c.headLeft >= 0 {
		if c.headLeft == 0 {
			return 0, errRequestHeadTooLong
		}
		if int64(len(p)) > c.headLeft {
			p = p[:c.headLeft]
		}
		n, err := c.wire.Read(p)
		c.headLeft -= int64(n)
		return n, err
	}
	return c.wire.Read(p)
}

// serve accepts client connections until the listener closes.
func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serveConn(c.(*clientWire))
	}
}

// serveConn serves one client connection.
func (p *Proxy) serveConn(w *clientWire) {
	c := &h1Conn{p: p, wire: w, headLeft: -1}
	c.getReader()
	w.SetReadDeadline(time.Now().Add(headerWait))
	if _, err := c.br.Peek(1); err != nil {
		c.putReader()
		w.hop.Close()
		return
	}
	if w.isH2() {
		// net/http's server takes the connection, with what was read.
		br := c.br
		c.br = nil
		if err := p.h2ln.push(&h2Conn{clientWire: w, br: br}); err != nil {
			w.hop.Close()
		}
		return
	}
	w.SetReadDeadline(time.Time{})
	c.loop()
}

func (c *h1Conn) getReader() {
	if c.br == nil {
		c.br = requestReaders.Get().(*bufio.Reader)
		c.br.Reset(c)
	}
}

// putReader gives the request reader back when it holds nothing.
func (c *h1Conn) putReader() {
	if c.br != nil && c.br.Buffered() == 0 {
		c.br.Reset(nil)
		requestReaders.Put(c.br)
		c.br = nil
	}
}

// loop serves requests until the connection closes.
func (c *h1Conn) loop() {
	w := c.wire
	defer func() {
		if c.hijacked {
			return // goproxy's now (a CONNECT tunnel)
		}
		c.stopWatch()
		c.putReader()
		w.hop.Close()
	}()
	for {
		if c.br == nil {
			// Between requests the connection holds no buffer until the
			// next request's first byte.
			w.SetReadDeadline(time.Now().Add(headerWait))
			if !c.hasPeeked {
				n, err := w.Read(c.peeked[:])
				if n == 0 {
					if err == nil {
						continue
					}
					return
				}
				c.hasPeeked = true
			}
			c.getReader()
		}
		w.SetReadDeadline(time.Now().Add(headerWait))
		c.headLeft = maxRequestHeader
		req, err := http.ReadRequest(c.br)
		c.headLeft = -1
		if err != nil {
			if !errors.Is(err, io.EOF) && !isTimeout(err) && !errors.Is(err, net.ErrClosed) {
				status := "400 Bad Request"
				if errors.Is(err, errRequestHeadTooLong) {
					status = "431 Request Header Fields Too Large"
				}
				io.WriteString(w, "HTTP/1.1 "+status+"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"+status+"\n")
			}
			return
		}
		w.SetReadDeadline(time.Time{})
		if !c.serveRequest(req) {
			return
		}
		// The body the handler did not read would be taken for the next
		// request: read it over (a little) or close.
		if req.Body != nil && req.Body != http.NoBody {
			if n, _ := io.CopyN(io.Discard, req.Body, 256<<10); n == 256<<10 {
				return
			}
		}
		c.putReader()
	}
}

// serveRequest serves one request; it reports whether the connection may
// serve another.
func (c *h1Conn) serveRequest(req *http.Request) bool {
	p, w := c.p, c.wire
	req.RemoteAddr = w.hop.remote
	ctx, cancel := context.WithCancelCause(context.WithValue(p.baseCtx, clientConnKey{}, w.hop))
	defer cancel(nil)
	req = req.WithContext(ctx)
	rw := &h1Writer{c: c, req: req, header: http.Header{}}
	if req.Body != nil && req.Body != http.NoBody && hasToken(req.Header, "Expect", "100-continue") {
		// The body is forwarded as it comes: the client may send it now.
		req.Header.Del("Expect")
		if _, err := io.WriteString(w, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return false
		}
	}
	// The request's body is the client's next bytes: the watcher starts
	// once nothing more is to be read, and never under a tunnel or an
	// upgrade, which goproxy takes over.
	if req.Method != http.MethodConnect && req.Header.Get("Upgrade") == "" &&
		(req.Body == nil || req.Body == http.NoBody) && (c.br == nil || c.br.Buffered() == 0) {
		c.putReader()
		c.startWatch(cancel)
	}
	st := p.handle(rw, req)
	if rw.hijacked {
		return false
	}
	if st != nil {
		st.runH1(rw)
		st.end()
		p.handlers.Done()
	} else {
		rw.finish()
	}
	c.stopWatch()
	return !rw.closeAfter && !req.Close && req.ProtoAtLeast(1, 1)
}

// startWatch waits on the client socket while a request is served: its
// end (FIN or RST, recorded by the hop) cuts the request; a byte of the
// next request is kept for it.
func (c *h1Conn) startWatch(cancel context.CancelCauseFunc) {
	c.watching = true
	c.watchDone = make(chan struct{})
	go func() {
		defer close(c.watchDone)
		n, err := c.wire.Read(c.peeked[:])
		if n > 0 {
			c.hasPeeked = true
			return
		}
		if err != nil && !isTimeout(err) {
			cancel(errClientGone)
		}
	}()
}

// stopWatch ends the watcher and waits for it.
func (c *h1Conn) stopWatch() {
	if !c.watching {
		return
	}
	c.watching = false
	c.wire.SetReadDeadline(aLongTimeAgo)
	<-c.watchDone
	c.wire.SetReadDeadline(time.Time{})
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// errClientGone is the cause of a request's context when its client left.
var errClientGone = errors.New("the client closed its connection")

// h1Writer is the http.ResponseWriter of a request served over HTTP/1.1:
// it frames the body (Content-Length when the handler's whole output is
// known before the head goes out, chunked otherwise, or until the close
// for an HTTP/1.0 client) and can hand the connection over (Hijack, for
// CONNECT). A streamed response (streamBody) is not copied through it: the
// stream defers itself and the connection's goroutine runs it afterwards.
type h1Writer struct {
	c      *h1Conn
	req    *http.Request
	header http.Header

	status      int
	wroteHeader bool
	headSent    bool
	bodyless    bool  // HEAD, 1xx, 204, 304
	chunked     bool  // Transfer-Encoding: chunked
	length      int64 // Content-Length, -1: none
	written     int64
	closeAfter  bool   // the connection closes after this response
	buf         []byte // body written before the head was sent
	hijacked    bool
	err         error // the first write error

	deferred *streamBody // a stream to copy once the handler returns
	scratch  []byte      // chunk framing for writes of the unit path
}

func (rw *h1Writer) Header() http.Header { return rw.header }

func (rw *h1Writer) WriteHeader(code int) {
	if rw.wroteHeader || rw.hijacked || code < 200 {
		return
	}
	rw.wroteHeader, rw.status = true, code
}

// Write buffers up to a few KiB before the head goes out, so that a short
// answer gets a Content-Length; then it writes through.
func (rw *h1Writer) Write(p []byte) (int, error) {
	if rw.hijacked {
		return 0, http.ErrHijacked
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if !rw.headSent {
		if len(rw.buf)+len(p) <= 4<<10 {
			rw.buf = append(rw.buf, p...)
			return len(p), nil
		}
		if err := rw.sendHead(false); err != nil {
			return 0, err
		}
	}
	return rw.writeBody(p)
}

// Flush sends the head and what is buffered.
func (rw *h1Writer) Flush() {
	if rw.hijacked {
		return
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if !rw.headSent {
		rw.sendHead(false)
	}
}

// Hijack hands the connection to the caller (goproxy's CONNECT).
func (rw *h1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if rw.headSent {
		return nil, nil, errors.New("ssestress proxy: hijack after the response head")
	}
	c := rw.c
	c.stopWatch()
	rw.hijacked, c.hijacked = true, true
	c.getReader()
	br := c.br
	c.br = nil
	return c.wire, bufio.NewReadWriter(br, bufio.NewWriter(c.wire)), nil
}

// sendHead writes the status line and headers, choosing the body's
// framing; final means the handler is done (what is buffered is the whole
// body), and what is buffered follows the head in the same write.
func (rw *h1Writer) sendHead(final bool) error {
	rw.headSent = true
	req, h := rw.req, rw.header
	rw.bodyless = req.Method == http.MethodHead || rw.status == http.StatusNoContent || rw.status == http.StatusNotModified
	rw.length = -1
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			rw.length = n
		} else {
			h.Del("Content-Length")
		}
	}
	h.Del("Transfer-Encoding")
	switch {
	case rw.bodyless:
	case rw.length >= 0:
	case final:
		rw.length = int64(len(rw.buf))
		h.Set("Content-Length", strconv.Itoa(len(rw.buf)))
	case req.ProtoAtLeast(1, 1):
		rw.chunked = true
		h.Set("Transfer-Encoding", "chunked")
	default:
		rw.closeAfter = true
	}
	if req.Close || !req.ProtoAtLeast(1, 1) || rw.closeAfter || hasToken(h, "Connection", "close") {
		rw.closeAfter = true
		h.Set("Connection", "close")
	}
	if _, ok := h["Date"]; !ok {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	var head strings.Builder
	head.Grow(256)
	code := rw.status
	fmt.Fprintf(&head, "HTTP/1.1 %03d %s\r\n", code, http.StatusText(code))
	h.Write(&head)
	head.WriteString("\r\n")
	out := append([]byte(head.String()), nil...)
	body := rw.buf
	rw.buf = nil
	if !rw.bodyless && len(body) > 0 {
		if rw.chunked {
			out = appendChunk(out, body)
		} else {
			out = append(out, body...)
		}
		rw.written += int64(len(body))
	}
	_, err := rw.c.wire.Write(out)
	if err != nil {
		rw.fail(err)
	}
	return err
}

func (rw *h1Writer) fail(err error) {
	if rw.err == nil {
		rw.err = err
	}
	rw.closeAfter = true
}

func (rw *h1Writer) writeBody(p []byte) (int, error) {
	if rw.err != nil {
		return 0, rw.err
	}
	if rw.bodyless || len(p) == 0 {
		return len(p), nil
	}
	var err error
	switch {
	case rw.chunked:
		rw.scratch = appendChunk(rw.scratch[:0], p)
		_, err = rw.c.wire.Write(rw.scratch)
		if cap(rw.scratch) > 64<<10 {
			rw.scratch = nil
		}
	case rw.length >= 0 && rw.written+int64(len(p)) > rw.length:
		p = p[:rw.length-rw.written]
		_, err = rw.c.wire.Write(p)
		if err == nil {
			err = errors.New("ssestress proxy: response body longer than its Content-Length")
		}
	default:
		_, err = rw.c.wire.Write(p)
	}
	if err != nil {
		rw.fail(err)
		return 0, err
	}
	rw.written += int64(len(p))
	return len(p), nil
}

// finish completes a response the handler returned from.
func (rw *h1Writer) finish() {
	if rw.hijacked {
		return
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if !rw.headSent {
		rw.sendHead(true)
	}
	rw.end()
}

// end writes the chunked body's last chunk, or notes a short body.
func (rw *h1Writer) end() {
	if rw.err != nil {
		return
	}
	switch {
	case rw.bodyless:
	case rw.chunked:
		if _, err := io.WriteString(rw.c.wire, "0\r\n\r\n"); err != nil {
			rw.fail(err)
		}
	case rw.length >= 0 && rw.written < rw.length:
		rw.closeAfter = true
	}
}

// chunkRoom is the space kept before data for its chunk-size line.
const chunkRoom = 10

// appendChunk appends p framed as one chunk.
func appendChunk(dst, p []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(p)), 16)
	dst = append(dst, '\r', '\n')
	dst = append(dst, p...)
	return append(dst, '\r', '\n')
}

// frameInPlace frames buf[chunkRoom:chunkRoom+n] as one chunk, using the
// room before it and two bytes after it, and returns the framed bytes.
func frameInPlace(buf []byte, n int) []byte {
	var hex [8]byte
	h := strconv.AppendInt(hex[:0], int64(n), 16)
	start := chunkRoom - len(h) - 2
	copy(buf[start:], h)
	buf[chunkRoom-2], buf[chunkRoom-1] = '\r', '\n'
	buf[chunkRoom+n], buf[chunkRoom+n+1] = '\r', '\n'
	return buf[start : chunkRoom+n+2]
}

// chunkWriter frames every Write as one chunk of rw's body (the unit
// path's writes).
type chunkWriter struct{ rw *h1Writer }

func (cw chunkWriter) Write(p []byte) (int, error) { return cw.rw.writeBody(p) }

// hasToken reports whether the header's comma-separated values hold tok.
func hasToken(h http.Header, name, tok string) bool {
	for _, v := range h.Values(name) {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), tok) {
				return true
			}
		}
	}
	return false
}

// h2Conn is a client connection handed to net/http's server for HTTP/2,
// with the bytes already read from it.
type h2Conn struct {
	*clientWire
	br *bufio.Reader
}

func (c *h2Conn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br.Reset(nil)
		requestReaders.Put(c.br)
		c.br = nil
	}
	return c.clientWire.Read(p)
}

// connQueue is the listener net/http's server takes HTTP/2 connections
// from.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) error {
	select {
	case q.ch <- c:
		return nil
	case <-q.closed:
		return net.ErrClosed
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
