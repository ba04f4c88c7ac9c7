package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/sse"
)

// Upstream error actions (--on-upstream-error): what the proxy does to the
// client when the upstream hop fails mid-response.
const (
	UpstreamReset = "reset" // reset the client connection: the client sees ECONNRESET
	UpstreamEOF   = "eof"   // end the response cleanly, as many proxies do: EOF
	UpstreamAbort = "abort" // cut the chunked body: UNEXPECTED_EOF
)

// Copy buffers of a stream. An idle stream waits holding only the small
// one (SSE events are small, and a proxy holds thousands of idle streams);
// when a read fills it, more is probably waiting, and a pooled large one
// drains the burst.
const (
	bodyBufSize  = 4 << 10
	smallBufSize = 512
)

var bodyBufs = sync.Pool{New: func() any { b := make([]byte, bodyBufSize); return &b }}

// maxUnit bounds the bytes held for one SSE unit while unit faults act;
// a longer unit is forwarded in pieces as it arrives.
const maxUnit = 64 << 10

// streamBody replaces the upstream response body in OnResponse. goproxy
// copies it to the client with io.Copy, which calls WriteTo: the copy loop
// is ours. It counts SSE events each way, applies the SSE-aware faults
// (drop, delay, stall, reset after events) at event boundaries, feeds the
// recorder, and on an upstream failure applies --on-upstream-error instead
// of letting the stream end as if the server had ended it.
type streamBody struct {
	st    *stream
	body  io.ReadCloser
	isSSE bool
	split sse.Splitter // events read from the upstream
	// shared: split also counts the recording's frames (WriteSplit), so
	// a recorded byte is scanned once; until unit faults act, when the
	// recording takes the splitter's state back (writeUnits).
	shared bool
}

func (b *streamBody) Close() error { return b.body.Close() }

// Read serves callers other than io.Copy: bytes pass unchanged, counted,
// with the upstream error policy.
func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if n > 0 {
		b.counted(p[:n], time.Now())
	}
	if err != nil {
		return n, b.ended(err)
	}
	return n, nil
}

// counted notes forwarded bytes: events and the recording.
func (b *streamBody) counted(p []byte, now time.Time) {
	if b.shared {
		b.addEvents(b.st.rec.WriteSplit(p, now, &b.split))
		return
	}
	if b.isSSE {
		b.addEvents(b.split.CountEvents(p))
	}
	b.st.rec.Write(p, now)
}

// addEvents counts ev events forwarded to the client.
func (b *streamBody) addEvents(ev int64) {
	if ev > 0 {
		if up := b.st.upstream.Load(); up != nil {
			up.eventsDown.Add(ev)
		}
		b.st.addEvents(ev)
	}
}

// errEventTooLong ends a stream whose event grew past Config.MaxEventSize.
type errEventTooLong struct{ limit int64 }

func (e *errEventTooLong) Error() string {
	return fmt.Sprintf("an SSE event from the upstream grew past %d bytes (--max-event-size)", e.limit)
}
func (e *errEventTooLong) ErrClass() string { return errclass.LineTooLong }

// tooLong reports an event (or line) past the size limit, once the bytes
// scanned so far are counted.
func (b *streamBody) tooLong() error {
	if limit := b.st.p.maxEventSize; limit > 0 && b.isSSE && b.split.UnitLen() > limit {
		return &errEventTooLong{limit}
	}
	return nil
}

// WriteTo is the stream's copy loop on HTTP/2. On HTTP/1.1 it only
// defers the copy to the connection's goroutine (runH1), which runs it
// once goproxy has returned.
func (b *streamBody) WriteTo(w io.Writer) (int64, error) {
	if hw := b.st.h1; hw != nil {
		hw.deferred = b
		return 0, nil
	}
	flusher, _ := w.(http.Flusher) // goproxy's SSE writer flushes on its own
	// Send the response head now: an SSE server may say nothing for a
	// long time after it, and the client must not wait for its headers.
	if flusher != nil {
		flusher.Flush()
	} else {
		w.Write(nil) // goproxy's flushWriter flushes after every write
	}
	small := make([]byte, smallBufSize)
	var big *[]byte
	defer func() {
		if big != nil {
			bodyBufs.Put(big)
		}
	}()
	buf := small
	var total int64
	for {
		if b.isSSE && b.st.unitFaults() {
			n, err := b.writeUnits(w, flusher)
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return total + n, err
		}
		n, err := b.body.Read(buf)
		if n > 0 {
			wn, werr := w.Write(buf[:n])
			total += int64(wn)
			b.st.written.Add(int64(wn))
			if flusher != nil {
				flusher.Flush()
			}
			b.counted(buf[:wn], time.Now())
			if werr != nil {
				return total, werr
			}
			if err := b.tooLong(); err != nil {
				return total, b.ended(err)
			}
		}
		if err != nil {
			if err = b.ended(err); errors.Is(err, io.EOF) {
				err = nil
			}
			return total, err
		}
		switch {
		case n == len(buf) && big == nil:
			big = bodyBufs.Get().(*[]byte)
			buf = *big
		case n < len(buf) && big != nil:
			bodyBufs.Put(big)
			big, buf = nil, small
		}
	}
}

// errAbortStream asks an HTTP/1.1 stream to end without its last chunk:
// the client sees the body cut (UNEXPECTED_EOF).
var errAbortStream = errors.New("stream aborted: body cut")

// runH1 copies the stream's response to an HTTP/1.1 client: the head at
// once (an SSE server may say nothing for a long time after it), then the
// body, each upstream read written as one chunk framed in the read buffer
// itself, and the last chunk when the upstream ended cleanly.
func (st *stream) runH1(rw *h1Writer) {
	b := rw.deferred
	if err := rw.sendHead(false); err != nil {
		return
	}
	if rw.bodyless {
		rw.end()
		return
	}
	if err := b.copyH1(rw); err == nil || errors.Is(err, io.EOF) {
		rw.end()
	} else {
		rw.closeAfter = true
	}
}

// copyH1 is the HTTP/1.1 copy loop. An idle stream waits holding only the
// small buffer; a read that fills it takes a pooled large one, kept while
// reads bring keepLargeAt or more.
func (b *streamBody) copyH1(rw *h1Writer) error {
	small := make([]byte, chunkRoom+smallBufSize+2)
	var big *[]byte
	defer func() {
		if big != nil {
			framedBufs.Put(big)
		}
	}()
	buf := small
	for {
		if b.isSSE && b.st.unitFaults() {
			_, err := b.writeUnits(chunkWriter{rw}, nil)
			return err
		}
		n, err := b.body.Read(buf[chunkRoom : len(buf)-2])
		if n > 0 {
			now := time.Now()
			payload := buf[chunkRoom : chunkRoom+n]
			out := payload
			if rw.chunked {
				out = frameInPlace(buf, n)
			}
			_, werr := rw.c.wire.Write(out)
			rw.written += int64(n)
			b.st.written.Add(int64(n))
			b.counted(payload, now)
			if werr != nil {
				rw.fail(werr)
				return werr
			}
			if err := b.tooLong(); err != nil {
				return b.ended(err)
			}
		}
		if err != nil {
			return b.ended(err)
		}
		switch room := len(buf) - chunkRoom - 2; {
		case n == room && big == nil:
			big = framedBufs.Get().(*[]byte)
			buf = *big
		case n < keepLargeAt && big != nil:
			framedBufs.Put(big)
			big, buf = nil, small
		}
	}
}

// framedBufs are the large buffers of copyH1, with room for the framing.
var framedBufs = sync.Pool{New: func() any { b := make([]byte, chunkRoom+framedBufSize+2); return &b }}

// framedBufSize is the payload a large copy buffer holds.
const framedBufSize = 32 << 10

// keepLargeAt is the read that keeps copyH1's large buffer: a stream
// whose reads bring this much is carrying a flood (giving the buffer back
// would split each of the server's writes in two reads and two chunks),
// while one whose events are a few hundred bytes waits on the small one.
const keepLargeAt = 4 << 10

// chunk is what the unit pump read from the upstream, stamped.
type chunk struct {
	data []byte
	at   time.Time
	err  error
}

// writeUnits is the copy loop while SSE-aware faults act: a pump reads the
// upstream (so arrival times are true even while events are held back),
// and each unit is decided by the faults, then forwarded.
func (b *streamBody) writeUnits(w io.Writer, flusher http.Flusher) (int64, error) {
	if b.shared {
		// From here the recording sees what is forwarded (units may be
		// dropped or held back), the splitter what is read.
		b.st.rec.AdoptSplitter(b.split)
		b.shared = false
	}
	ctx, cancel := context.WithCancel(b.st.ctx)
	defer cancel()
	chunks := make(chan chunk, 64)
	go func() {
		buf := make([]byte, bodyBufSize)
		for {
			n, err := b.body.Read(buf)
			c := chunk{at: time.Now(), err: err}
			if n > 0 {
				c.data = append([]byte(nil), buf[:n]...)
			}
			select {
			case chunks <- c:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var total int64
	var pending []byte // the unit begun in earlier chunks
	for {
		var c chunk
		select {
		case c = <-chunks:
		case <-ctx.Done():
			return total, ctx.Err()
		}
		data := c.data
		for len(data) > 0 {
			end, ev := b.split.Next(data)
			if end < 0 {
				if err := b.tooLong(); err != nil {
					return total, b.ended(err)
				}
				pending = append(pending, data...)
				if len(pending) > maxUnit {
					// Too long to hold: forward as it comes.
					n, err := b.forward(ctx, w, flusher, &unit{data: pending, arrival: c.at, at: c.at, st: b.st})
					total += n
					pending = pending[:0]
					if err != nil {
						return total, err
					}
				}
				break
			}
			u := &unit{event: ev, arrival: c.at, at: c.at, st: b.st}
			if len(pending) > 0 {
				u.data = append(pending, data[:end]...)
				pending = nil
			} else {
				u.data = data[:end]
			}
			data = data[end:]
			if ev {
				if up := b.st.upstream.Load(); up != nil {
					up.eventsDown.Add(1)
				}
			}
			n, err := b.forward(ctx, w, flusher, u)
			total += n
			if err != nil {
				return total, err
			}
		}
		if c.err != nil {
			if len(pending) > 0 {
				n, err := b.forward(ctx, w, flusher, &unit{data: pending, arrival: c.at, at: c.at, st: b.st})
				total += n
				if err != nil {
					return total, err
				}
			}
			return total, b.ended(c.err)
		}
	}
}

// forward passes one unit through the faults and to the client.
func (b *streamBody) forward(ctx context.Context, w io.Writer, flusher http.Flusher, u *unit) (int64, error) {
	atts := b.st.unitAttachments()
	for _, a := range atts {
		if uf, ok := a.effect.(unitFault); ok {
			uf.unit(u)
		}
	}
	if u.drop {
		return 0, nil
	}
	if !b.st.waitUntil(ctx, u.at) {
		return 0, ctx.Err()
	}
	var total int64
	data := u.data
	if u.stall {
		half := max(len(data)/2, 1)
		n, err := b.write(w, flusher, data[:half], false)
		total += n
		if err != nil {
			return total, err
		}
		data = data[half:]
		if !b.st.waitStall(ctx, atts) {
			return total, ctx.Err()
		}
	}
	n, err := b.write(w, flusher, data, u.event)
	total += n
	if err != nil {
		return total, err
	}
	for _, a := range b.st.unitAttachments() {
		if uo, ok := a.effect.(unitObserver); ok {
			uo.forwarded(u)
		}
	}
	return total, nil
}

func (b *streamBody) write(w io.Writer, flusher http.Flusher, p []byte, event bool) (int64, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := w.Write(p)
	if flusher != nil {
		flusher.Flush()
	}
	b.st.written.Add(int64(n))
	if n > 0 {
		b.st.rec.Write(p[:n], time.Now())
	}
	if event && err == nil {
		b.st.addEvents(1)
	}
	return int64(n), err
}

// ended decides what the end of the upstream body means for the client.
// A clean end is passed on; a failure of the upstream hop is passed on as
// --on-upstream-error says, and the action is recorded. When the client has
// gone, nothing is passed on.
//
// On HTTP/2 the client connection carries other streams: reset and abort
// both reset the one stream (RST_STREAM INTERNAL_ERROR, net/http's
// handler abort), never the shared connection.
func (b *streamBody) ended(err error) error {
	st := b.st
	st.abortIfAsked()
	if errors.Is(err, io.EOF) {
		if up := st.upstream.Load(); up != nil {
			up.observe(io.EOF) // the server ended the stream
		}
		return io.EOF
	}
	if st.ctx.Err() != nil {
		return err // the client went away, or a fault cut the stream; the upstream was closed for it
	}
	if up := st.upstream.Load(); up != nil && !errors.Is(err, net.ErrClosed) {
		// A cut body (UNEXPECTED_EOF) says more than the FIN the socket
		// saw; a reset is known already; the proxy's own close (a fault)
		// is no failure of the upstream.
		up.setClass(errclass.Classify(err))
		var tooLong *errEventTooLong
		if errors.As(err, &tooLong) {
			up.closeWith(ActionFIN, "proxy")
		}
	}
	action := st.p.onUpstreamError
	st.client.setUpstreamErrorAction(action)
	why := errclass.Classify(err)
	if errors.Is(err, net.ErrClosed) {
		why = "closed by the proxy"
	}
	target := "the client"
	if st.h2 && action != UpstreamEOF {
		target = "the client's HTTP/2 stream"
	}
	st.p.logf("%s: upstream hop failed (%s: %v): %s %s", st.client.connID, why, err, action, target)
	// clientClass is what the client sees, for the recording.
	switch {
	case action == UpstreamEOF:
		return io.EOF
	case st.h2:
		st.setClientClass(errclass.H2RSTStream(uint32(http2.ErrCodeInternal)))
		panic(http.ErrAbortHandler)
	case action == UpstreamAbort:
		st.setClientClass(errclass.UnexpectedEOF)
		if st.h1 != nil {
			return errAbortStream
		}
		panic(http.ErrAbortHandler)
	default:
		st.setClientClass(errclass.ECONNRESET)
		st.client.reset()
		return err
	}
}
