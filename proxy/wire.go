package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/ssestress/ssestress/internal/errclass"
)

// clientWire is a client connection as the proxy's HTTP server sees it:
// the plaintext above TLS when the listener terminates TLS, else the
// hopConn itself. It sits above the TLS layer, so the hopConn under it
// still counts, faults and records the real socket (a reset fault resets
// the TCP connection, and a capture sees it). On HTTP/1.1 it passes bytes
// through. On a connection that starts with the HTTP/2 preface (h2 chosen
// with ALPN, or h2c with prior knowledge) it follows the framing just
// enough to let faults act on one stream:
//
//   - Read side: the header block that opens each stream gets one more
//     field, x-ssestress-h2-stream: ID, in a CONTINUATION frame of its
//     own as an HPACK literal without indexing (the HPACK state of the
//     client and the server is untouched; only the END_HEADERS flag of the
//     block's last frame moves to the added frame). ServeHTTP reads and
//     removes it, so each request knows its stream id, with any HTTP/2
//     server implementation.
//   - Write side: it follows the frame boundaries of what the server
//     writes, so a frame of the proxy's own (RST_STREAM or GOAWAY with the
//     code a fault asks for, which net/http's server cannot be made to
//     send) goes out between two frames, never inside one; and it can
//     stop the server's output at a boundary before the connection closes.
//
// Request.TLS is nil on the proxy's requests: net/http serves HTTP/2 on
// this connection through its unencrypted HTTP/2 path, which it takes
// only for connections that are not TLS to its eyes.
type clientWire struct {
	net.Conn // the plaintext: a *tls.Conn over hop, or hop
	p        *Proxy
	hop      *hopConn
	tlsConn  *tls.Conn // nil on a plain listener

	proto      atomic.Int32  // wireUnknown, wireHTTP1 or wireHTTP2
	detected   chan struct{} // closed when proto is known
	detectOnce sync.Once

	// Read side: touched by the server's reading goroutine only.
	handshook bool
	preN      int    // bytes of the HTTP/2 preface seen so far
	rbuf      []byte // what the last socket read returned (HTTP/2)
	out       []byte // bytes ready for the server
	obuf      []byte // out's backing array, reused
	rerr      error  // an error to return once out is drained
	hdr       [frameHeaderLen]byte
	hdrN      int
	left      int    // payload bytes of the current frame still to pass
	trailer   []byte // a frame to pass once the current one has passed
	openBlock uint32 // the stream whose opening header block has not ended
	maxStream atomic.Uint32

	// Write side, guarded by wlock: a one-slot channel rather than a
	// mutex, so that a fault can give up waiting while the server's write
	// is stuck on a client that does not read.
	wlock    chan struct{}
	whdr     [frameHeaderLen]byte
	whdrN    int
	wleft    int
	pending  []injection
	wstopped bool // the server's output is discarded from here on

	// dataSent counts the DATA payload bytes written on each stream the
	// proxy is serving (trackStream), so a stream's RST_STREAM can wait
	// for what its handler already wrote: net/http's HTTP/2 server writes
	// frames from its own goroutine, after the handler's Flush returned.
	dmu      sync.Mutex
	dataSent map[uint32]int64
}

// Protocols of a client connection, as the first bytes tell.
const (
	wireUnknown int32 = iota
	wireHTTP1
	wireHTTP2
)

const (
	frameHeaderLen    = 9
	frameData         = 0x0
	frameHeaders      = 0x1
	frameContinuation = 0x9
	flagEndStream     = 0x1
	flagEndHeaders    = 0x4
)

// h2StreamHeader carries a request's HTTP/2 stream id from the wire to
// ServeHTTP (added by the wire, removed before anything else sees it).
const h2StreamHeader = "X-Ssestress-H2-Stream"

var h2Preface = []byte(http2.ClientPreface)

// injection is a frame of the proxy's own waiting for a frame boundary.
type injection struct {
	frame []byte
	last  bool // stop the server's output after it
	// sid and data: wait until that much DATA went out on stream sid.
	sid  uint32
	data int64
	done chan error
}

// errNoBoundary: the server's output stayed inside a frame too long for an
// injected frame to go out.
var errNoBoundary = errors.New("no HTTP/2 frame boundary in the server's output")

func newClientWire(p *Proxy, h *hopConn) *clientWire {
	w := &clientWire{Conn: h, p: p, hop: h, detected: make(chan struct{}), wlock: make(chan struct{}, 1)}
	if p.tlsConfig != nil {
		w.tlsConn = tls.Server(h, p.tlsConfig)
		w.Conn = w.tlsConn
	}
	return w
}

func (w *clientWire) setProto(proto int32) {
	w.proto.Store(proto)
	w.detectOnce.Do(func() { close(w.detected) })
}

// isH2 reports whether the client speaks HTTP/2 on this connection.
func (w *clientWire) isH2() bool { return w.proto.Load() == wireHTTP2 }

// Read returns what the client sent, with the stream ids added on HTTP/2.
// While the protocol is not known and on HTTP/1.1 it reads straight into
// b (an idle HTTP/1.1 connection holds no buffer of the wire's); only
// HTTP/2 goes through the wire's own buffers. Errors are passed on as they
// come (a deadline the server set to wake a read is not the end of the
// connection).
func (w *clientWire) Read(b []byte) (int, error) {
	if len(w.out) == 0 {
		if err := w.rerr; err != nil {
			w.rerr = nil
			return 0, err
		}
		switch w.proto.Load() {
		case wireHTTP1:
			return w.Conn.Read(b)
		case wireUnknown:
			if w.tlsConn != nil && !w.handshook {
				if err := w.handshake(); err != nil {
					return 0, err
				}
			}
			n, err := w.Conn.Read(b)
			return w.detect(b, n, err)
		}
	}
	for len(w.out) == 0 {
		if w.rbuf == nil {
			w.rbuf = make([]byte, 4<<10)
		}
		n, err := w.Conn.Read(w.rbuf)
		if n > 0 {
			w.consume(w.rbuf[:n])
		}
		if err != nil {
			if len(w.out) > 0 {
				w.rerr = err
				break
			}
			return 0, err
		}
	}
	n := copy(b, w.out)
	w.out = w.out[n:]
	if len(w.out) == 0 {
		w.out = w.obuf[:0]
	}
	return n, nil
}

// detect follows the first bytes read into b against the HTTP/2 preface.
// They pass unchanged; once the whole preface has passed, what follows it
// in b is taken back and goes through the frame parser.
func (w *clientWire) detect(b []byte, n int, err error) (int, error) {
	for i := 0; i < n; i++ {
		if b[i] != h2Preface[w.preN] {
			w.setProto(wireHTTP1)
			return n, err
		}
		w.preN++
		if w.preN == len(h2Preface) {
			w.setProto(wireHTTP2)
			if rest := b[i+1 : n]; len(rest) > 0 {
				w.consume(append([]byte(nil), rest...))
			}
			if err != nil {
				w.rerr = err
			}
			return i + 1, nil
		}
	}
	return n, err
}

// handshake runs the TLS handshake under the deadline the server set for
// the first request. A plain HTTP request gets the answer net/http gives
// on its own TLS listeners; every failure is logged and recorded (class
// TLS) on the client hop.
func (w *clientWire) handshake() error {
	w.handshook = true
	err := w.tlsConn.Handshake()
	if err == nil {
		return nil
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader) {
		io.WriteString(rh.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
	}
	if errclass.Classify(err) == errclass.TLS || errors.As(err, &rh) {
		w.hop.setClass(errclass.TLS)
		w.p.logf("%s client: TLS handshake failed: %v", w.hop.connID, err)
	}
	return err
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "CONNE", "DELET", "PATCH":
		return true
	}
	return false
}

// consume takes bytes read from an HTTP/2 client into out.
func (w *clientWire) consume(data []byte) {
	w.out = append(w.obuf[:0], w.out...)
	w.frames(data)
	w.obuf = w.out[:0]
}

// frames passes HTTP/2 frames from the client, adding the stream id field
// at the end of each stream's opening header block. Payloads stream
// through; only frame headers are held.
func (w *clientWire) frames(data []byte) {
	for len(data) > 0 {
		if w.left > 0 {
			n := min(w.left, len(data))
			w.out = append(w.out, data[:n]...)
			w.left -= n
			data = data[n:]
			if w.left == 0 {
				w.passTrailer()
			}
			continue
		}
		n := copy(w.hdr[w.hdrN:], data)
		w.hdrN += n
		data = data[n:]
		if w.hdrN < frameHeaderLen {
			return
		}
		w.hdrN = 0
		length := int(w.hdr[0])<<16 | int(w.hdr[1])<<8 | int(w.hdr[2])
		typ, flags := w.hdr[3], w.hdr[4]
		sid := binary.BigEndian.Uint32(w.hdr[5:9]) & 0x7fffffff
		if typ == frameHeaders && sid%2 == 1 && sid > w.maxStream.Load() {
			w.maxStream.Store(sid)
			w.openBlock = sid
		}
		if (typ == frameHeaders || typ == frameContinuation) && sid != 0 && sid == w.openBlock && flags&flagEndHeaders != 0 {
			w.hdr[4] = flags &^ flagEndHeaders
			w.trailer = streamIDFrame(sid)
			w.openBlock = 0
		}
		w.out = append(w.out, w.hdr[:]...)
		w.left = length
		if length == 0 {
			w.passTrailer()
		}
	}
}

func (w *clientWire) passTrailer() {
	if w.trailer != nil {
		w.out = append(w.out, w.trailer...)
		w.trailer = nil
	}
}

// streamIDFrame is a CONTINUATION frame ending the header block of stream
// sid with the field x-ssestress-h2-stream: sid, an HPACK "literal header
// field without indexing, new name" (RFC 7541 §6.2.2), which leaves the
// dynamic table alone.
func streamIDFrame(sid uint32) []byte {
	name := "x-ssestress-h2-stream"
	value := strconv.FormatUint(uint64(sid), 10)
	block := make([]byte, 0, 3+len(name)+len(value))
	block = append(block, 0x00, byte(len(name)))
	block = append(block, name...)
	block = append(block, byte(len(value)))
	block = append(block, value...)
	f := make([]byte, frameHeaderLen, frameHeaderLen+len(block))
	f[2] = byte(len(block))
	f[3] = frameContinuation
	f[4] = flagEndHeaders
	binary.BigEndian.PutUint32(f[5:], sid)
	return append(f, block...)
}

// Write sends the server's output, with injected frames put between
// frames.
func (w *clientWire) Write(b []byte) (int, error) {
	if w.proto.Load() != wireHTTP2 {
		return w.Conn.Write(b)
	}
	w.wlock <- struct{}{}
	defer func() { <-w.wlock }()
	total := 0
	for {
		if len(w.pending) > 0 && w.atBoundary() {
			w.flushPending(false)
		}
		if w.wstopped {
			return total + len(b), nil
		}
		if len(b) == 0 {
			return total, nil
		}
		k := len(b)
		if len(w.pending) > 0 {
			k = w.scan(b, true)
		} else {
			w.scan(b, false)
		}
		n, err := w.Conn.Write(b[:k])
		total += n
		if err != nil {
			return total, err
		}
		b = b[k:]
	}
}

// atBoundary reports whether the server's output so far ends with a whole
// frame (wlock held).
func (w *clientWire) atBoundary() bool { return w.whdrN == 0 && w.wleft == 0 }

// scan follows the frames in b; with stop it returns at the first frame
// end, otherwise it takes all of b. It returns the bytes taken.
func (w *clientWire) scan(b []byte, stop bool) int {
	i := 0
	for i < len(b) {
		if w.wleft > 0 {
			n := min(w.wleft, len(b)-i)
			w.wleft -= n
			i += n
			if w.wleft == 0 && stop {
				return i
			}
			continue
		}
		n := copy(w.whdr[w.whdrN:], b[i:])
		w.whdrN += n
		i += n
		if w.whdrN == frameHeaderLen {
			w.whdrN = 0
			w.wleft = int(w.whdr[0])<<16 | int(w.whdr[1])<<8 | int(w.whdr[2])
			if w.whdr[3] == frameData && w.wleft > 0 {
				w.countData(binary.BigEndian.Uint32(w.whdr[5:9])&0x7fffffff, w.wleft)
			}
			if w.wleft == 0 && stop {
				return i
			}
		}
	}
	return i
}

// flushPending writes the injected frames whose stream's data has gone
// out, in order (wlock held, at a boundary); force writes them all.
func (w *clientWire) flushPending(force bool) {
	kept := w.pending[:0]
	for i, inj := range w.pending {
		if !force && inj.data > 0 && w.sent(inj.sid) < inj.data {
			kept = append(kept, w.pending[i:]...)
			break // in order: what follows waits too
		}
		var err error
		if w.wstopped {
			err = net.ErrClosed
		} else if inj.frame != nil {
			_, err = w.Conn.Write(inj.frame)
		}
		if inj.last {
			w.wstopped = true
		}
		inj.done <- err
	}
	w.pending = kept
}

// inject sends a frame of the proxy's own to the client between two of the
// server's frames, and returns once it is written. With last, the server's
// output stops after it (what the server writes later is discarded), so
// the connection can be closed at a frame boundary; a nil frame with last
// only stops the output.
func (w *clientWire) inject(frame []byte, last bool) error {
	return w.injectAfter(frame, last, 0, 0)
}

// injectAfter is inject once data bytes of DATA have gone out on stream
// sid: what the stream's handler wrote before the fault fired reaches the
// client first. If they do not within a second (the client stopped
// reading), the frame goes out anyway.
func (w *clientWire) injectAfter(frame []byte, last bool, sid uint32, data int64) error {
	inj := injection{frame: frame, last: last, sid: sid, data: data, done: make(chan error, 1)}
	wait := time.NewTimer(time.Second)
	defer wait.Stop()
	select {
	case w.wlock <- struct{}{}:
	case <-w.hop.dead:
		return net.ErrClosed
	case <-wait.C:
		return errors.New("the server's write to the client has been blocked for 1s (the client does not read)")
	}
	w.pending = append(w.pending, inj)
	if w.atBoundary() {
		w.flushPending(false)
	}
	<-w.wlock
	wait.Reset(time.Second)
	for forced := false; ; {
		select {
		case err := <-inj.done:
			return err
		case <-w.hop.dead:
			return net.ErrClosed
		case <-wait.C:
			if forced {
				return fmt.Errorf("%w within 2s", errNoBoundary)
			}
			forced = true
			wait.Reset(time.Second)
			select {
			case w.wlock <- struct{}{}:
			case <-w.hop.dead:
				return net.ErrClosed
			case <-wait.C:
				return errors.New("the server's write to the client has been blocked for 1s (the client does not read)")
			}
			if w.atBoundary() {
				w.flushPending(true)
			} else {
				for i := range w.pending {
					w.pending[i].data = 0
				}
			}
			<-w.wlock
		}
	}
}

// trackStream starts counting the DATA written on stream sid; untrack
// stops (the proxy's handler for it has returned).
func (w *clientWire) trackStream(sid uint32) {
	w.dmu.Lock()
	if w.dataSent == nil {
		w.dataSent = map[uint32]int64{}
	}
	w.dataSent[sid] = 0
	w.dmu.Unlock()
}

func (w *clientWire) untrackStream(sid uint32) {
	w.dmu.Lock()
	delete(w.dataSent, sid)
	w.dmu.Unlock()
}

func (w *clientWire) countData(sid uint32, n int) {
	w.dmu.Lock()
	if sent, ok := w.dataSent[sid]; ok {
		w.dataSent[sid] = sent + int64(n)
	}
	w.dmu.Unlock()
}

func (w *clientWire) sent(sid uint32) int64 {
	w.dmu.Lock()
	defer w.dmu.Unlock()
	return w.dataSent[sid]
}

// CloseWrite ends the client's side of the conversation: a TLS
// close_notify, then the TCP FIN (through the hop, so slow-close faults
// still act).
func (w *clientWire) CloseWrite() error {
	if w.tlsConn != nil {
		w.tlsConn.CloseWrite()
	}
	return w.hop.CloseWrite()
}

// rstStreamFrame is an RST_STREAM frame.
func rstStreamFrame(sid uint32, code http2.ErrCode) []byte {
	var buf bytes.Buffer
	http2.NewFramer(&buf, nil).WriteRSTStream(sid, code)
	return buf.Bytes()
}

// goAwayFrame is a GOAWAY frame.
func goAwayFrame(last uint32, code http2.ErrCode, debug string) []byte {
	var buf bytes.Buffer
	http2.NewFramer(&buf, nil).WriteGoAway(last, code, []byte(debug))
	return buf.Bytes()
}
