package proxy

import (
	"net"
	"os"
	"sync"
	"time"
)

// Delay lines carry the data of one side of a hop connection while a
// shaping fault (latency, bandwidth, slicer) acts on it. Data is stamped
// when it enters, so a delay longer than the gap between two events delays
// each by the same amount instead of adding up: on the write side, Write
// queues a copy and a writer goroutine writes each piece at its time; on
// the read side, a pump goroutine reads the socket continuously and Read
// hands pieces out at their time. A line, once started, stays for the life
// of the connection; when the shaping fault is removed, pieces still held
// pass at once.

// lineDepth bounds the pieces a line holds before the producer waits.
const lineDepth = 256

// writeLine is the write side's delay line. A piece that may pass at
// once, with nothing held before it, is written by the caller itself: no
// copy, no hand-over to the line's goroutine (a latency of 0 costs
// nothing per event). A piece that must wait is copied into a pooled
// buffer and queued; the pieces after it queue behind it, so none
// overtakes another.
type writeLine struct {
	h  *hopConn
	q  chan piece
	mu sync.Mutex
	// wmu orders the writes: the caller's direct writes and the line's
	// own; held counts the pieces queued and not yet written.
	wmu     sync.Mutex
	held    int
	scratch [1]piece
	err     error // the first write error: later writes return it
}

func (h *hopConn) startWriteLine() *writeLine {
	h.lineMu.Lock()
	defer h.lineMu.Unlock()
	if wl := h.wline.Load(); wl != nil {
		return wl
	}
	wl := &writeLine{h: h, q: make(chan piece, lineDepth)}
	h.wline.Store(wl)
	go wl.run()
	return wl
}

func (wl *writeLine) stickyErr() error {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	return wl.err
}

func (wl *writeLine) setErr(err error) {
	wl.mu.Lock()
	if wl.err == nil {
		wl.err = err
	}
	wl.mu.Unlock()
}

func (wl *writeLine) write(b []byte) (int, error) {
	if err := wl.stickyErr(); err != nil {
		return 0, err
	}
	now := time.Now()
	wl.wmu.Lock()
	wl.scratch[0] = piece{data: b, at: now}
	ps := wl.h.shape(wl.h.writeDir, now, wl.scratch[:1])
	if wl.held == 0 && allDue(ps, now) {
		defer wl.wmu.Unlock()
		for _, p := range ps {
			if _, err := wl.h.writeNow(p.data); err != nil {
				wl.setErr(err)
				return 0, err
			}
		}
		return len(b), nil
	}
	wl.held += len(ps)
	var local [4]piece
	queued := append(local[:0], ps...) // ps may be the line's scratch
	wl.wmu.Unlock()
	for _, p := range queued {
		p.buf = getPieceBuf(len(p.data))
		if err := wl.h.memGrow(int64(cap(*p.buf))); err != nil {
			putPieceBuf(p.buf)
			wl.setErr(err)
			return 0, err
		}
		p.data = append((*p.buf)[:0], p.data...)
		select {
		case wl.q <- p:
		case <-wl.h.dead:
			return 0, net.ErrClosed
		}
	}
	return len(b), nil
}

// allDue reports whether every piece may pass at now.
func allDue(ps []piece, now time.Time) bool {
	for _, p := range ps {
		if p.at.After(now) {
			return false
		}
	}
	return true
}

func (wl *writeLine) run() {
	for {
		select {
		case p := <-wl.q:
			if p.flush != nil {
				close(p.flush)
				continue
			}
			if wl.stickyErr() == nil && !wl.h.waitUntil(p.at, wl.h.writeDir) {
				return
			}
			wl.wmu.Lock()
			if wl.stickyErr() == nil {
				if _, err := wl.h.writeNow(p.data); err != nil {
					wl.setErr(err)
				}
			}
			wl.held--
			wl.wmu.Unlock()
			if p.buf != nil {
				wl.h.memShrink(int64(cap(*p.buf)))
			}
			putPieceBuf(p.buf)
		case <-wl.h.dead:
			return
		}
	}
}

// Piece buffers: what a delay line holds, pooled by size (small pieces
// are SSE events; larger ones bursts).
var (
	smallPieces = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
	largePieces = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}
)

func getPieceBuf(n int) *[]byte {
	switch {
	case n <= 512:
		return smallPieces.Get().(*[]byte)
	case n <= 32<<10:
		return largePieces.Get().(*[]byte)
	}
	b := make([]byte, 0, n)
	return &b
}

func putPieceBuf(b *[]byte) {
	if b == nil {
		return
	}
	switch cap(*b) {
	case 512:
		smallPieces.Put(b)
	case 32 << 10:
		largePieces.Put(b)
	}
}

// drain waits, at most limit, until every piece queued so far is written.
func (wl *writeLine) drain(limit time.Duration) {
	done := make(chan struct{})
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case wl.q <- piece{flush: done}:
	case <-wl.h.dead:
		return
	case <-t.C:
		return
	}
	select {
	case <-done:
	case <-wl.h.dead:
	case <-t.C:
	}
}

// waitUntil sleeps until at, or until the side's shapers are removed (held
// data then passes at once). It returns false when the connection died.
func (h *hopConn) waitUntil(at time.Time, dir string) bool {
	for {
		d := time.Until(at)
		if d <= 0 || !h.shaping(dir) {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return true
		case <-h.dead:
			t.Stop()
			return false
		case <-h.dropped(): // ended past the memory budget: nothing waits
			t.Stop()
			return true
		case <-h.changes():
			t.Stop()
		}
	}
}

// readLine is the read side's delay line.
type readLine struct {
	h      *hopConn
	q      chan piece
	cur    piece
	hasCur bool
	dlMu   sync.Mutex
	dlCh   chan struct{} // closed when the read deadline changes
}

func (h *hopConn) startReadLine() *readLine {
	h.lineMu.Lock()
	defer h.lineMu.Unlock()
	if rl := h.rline.Load(); rl != nil {
		return rl
	}
	rl := &readLine{h: h, q: make(chan piece, lineDepth), dlCh: make(chan struct{})}
	// The pump reads without a deadline; Read enforces the one asked for.
	h.Conn.SetReadDeadline(time.Time{})
	h.rline.Store(rl)
	go rl.pump()
	return rl
}

func (rl *readLine) pump() {
	buf := make([]byte, 16<<10)
	var last time.Time
	for {
		n, err := rl.h.readNow(buf)
		now := time.Now()
		if n > 0 && err == nil {
			if gerr := rl.h.memGrow(int64(n)); gerr != nil {
				n, err = 0, gerr // the hop ends: its read side fails with the budget's error
			}
		}
		if n > 0 {
			data := append([]byte(nil), buf[:n]...)
			for _, p := range rl.h.shape(rl.h.readDir, now, []piece{{data: data, at: now}}) {
				if p.at.After(last) {
					last = p.at
				}
				select {
				case rl.q <- p:
				case <-rl.h.dead:
					return
				}
			}
		}
		if err != nil {
			at := now
			if last.After(at) {
				at = last
			}
			select {
			case rl.q <- piece{err: err, at: at}:
			case <-rl.h.dead:
			}
			return
		}
	}
}

func (rl *readLine) deadlineChanged() {
	rl.dlMu.Lock()
	close(rl.dlCh)
	rl.dlCh = make(chan struct{})
	rl.dlMu.Unlock()
}

// deadline is the read deadline in force and a channel closed when it
// changes.
func (rl *readLine) deadline() (time.Time, <-chan struct{}) {
	rl.h.lineMu.Lock()
	dl := rl.h.readDline
	rl.h.lineMu.Unlock()
	rl.dlMu.Lock()
	defer rl.dlMu.Unlock()
	return dl, rl.dlCh
}

// read hands out the pump's pieces at their time, honouring the read
// deadline the proxy's HTTP code sets.
func (rl *readLine) read(b []byte) (int, error) {
	for {
		n, err, again := rl.readOnce(b)
		if !again {
			return n, err
		}
	}
}

// readOnce is one wait of read; again means the deadline or the faults
// changed and the wait starts over.
func (rl *readLine) readOnce(b []byte) (n int, err error, again bool) {
	dl, dlChanged := rl.deadline()
	var dlTimer <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return 0, os.ErrDeadlineExceeded, false
		}
		t := time.NewTimer(d)
		defer t.Stop()
		dlTimer = t.C
	}
	if !rl.hasCur {
		select {
		case p := <-rl.q:
			rl.cur, rl.hasCur = p, true
		case <-rl.h.dead:
			return 0, net.ErrClosed, false
		case <-dlTimer:
			return 0, os.ErrDeadlineExceeded, false
		case <-dlChanged:
			return 0, nil, true
		}
	}
	if wait := time.Until(rl.cur.at); wait > 0 && rl.h.shaping(rl.h.readDir) {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-rl.h.dead:
			return 0, net.ErrClosed, false
		case <-dlTimer:
			return 0, os.ErrDeadlineExceeded, false
		case <-dlChanged:
			return 0, nil, true
		case <-rl.h.dropped():
			return 0, errOverBudget, false
		case <-rl.h.changes():
			return 0, nil, true
		}
	}
	if rl.cur.err != nil {
		return 0, rl.cur.err, false
	}
	n = copy(b, rl.cur.data)
	rl.cur.data = rl.cur.data[n:]
	rl.h.memShrink(int64(n))
	if len(rl.cur.data) == 0 {
		rl.hasCur = false
	}
	return n, nil, false
}
