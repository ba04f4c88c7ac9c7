package sse

import (
	"bytes"
	"time"
)

// Splitter finds where SSE dispatch units end in a byte stream, in whatever
// pieces it arrives, with constant memory: it keeps the state of the
// current line (its length and first bytes) and of the pending block, never
// the data. It also counts the Frames a Parser would emit for the same
// bytes and tells where a Parser would stop (a line or an event over the
// bounds), so that a recorder can count frames without parsing them. A unit is an event (a block with a data field, ended by a
// blank line), or a comment outside a block (a heartbeat), or any other
// block ended by a blank line. It follows the line rules of the WHATWG
// event-stream parser (CRLF, LF or CR; a BOM at the start), and agrees
// with internal/sse's Parser on which units are events (see the tests);
// unlike the Parser, it gives byte offsets, which dropping, delaying and
// stalling need, and it does not hold event data, so a hostile upstream
// cannot make it grow. The zero value is ready to use.
type Splitter struct {
	// MaxLine and MaxEvent are the Parser's bounds (zero: its defaults),
	// for Err.
	MaxLine, MaxEvent int
	// EventsOnly lets CountEvents count events a faster way, block by
	// block, over pieces without CR; Frames and Err are not kept then.
	EventsOnly bool

	started bool    // the BOM check is over
	bomN    int     // BOM bytes matched so far
	afterCR bool    // the last line ended with CR: a leading LF belongs to it
	lineLen int     // bytes of the current line so far
	prefix  [6]byte // its first bytes
	inBlock bool    // a field line was seen since the last unit end
	hasData bool    // the block has a data field
	// unitLen is the length of the unit not yet ended: how far a hostile
	// upstream has gone without ending its event (or line).
	unitLen int64

	// Frame counting: frames completed so far, the data bytes of the
	// pending event (as the Parser holds them), and the state of a line
	// that may be a valid retry field.
	frames     int64
	dataLen    int
	retryOK    bool  // the line so far can be "retry:" followed by digits
	retryValue int64 // its value so far
	retryDigit bool  // a digit was seen
	err        error
}

var utf8BOM = [3]byte{0xEF, 0xBB, 0xBF}

// Next scans b for the end of the current unit. It returns the offset just
// past it and whether the unit is an event, or end -1 when b ends inside a
// unit.
func (s *Splitter) Next(b []byte) (end int, event bool) {
	return s.next(b, false)
}

// next is Next; noCR says b holds no CR, so lines end at LF alone.
func (s *Splitter) next(b []byte, noCR bool) (end int, event bool) {
	end, event = s.scan(b, noCR)
	if end < 0 {
		s.unitLen += int64(len(b))
	} else {
		s.unitLen = 0
	}
	return end, event
}

func (s *Splitter) scan(b []byte, noCR bool) (end int, event bool) {
	pos := 0
	if !s.started {
		for pos < len(b) && s.bomN < 3 && b[pos] == utf8BOM[s.bomN] {
			s.bomN++
			pos++
		}
		if s.bomN == 3 {
			s.started = true
		} else if pos < len(b) {
			// A partial BOM followed by something else: those bytes start
			// the first line.
			s.started = true
			for k := 0; k < s.bomN; k++ {
				s.addToLine(utf8BOM[k : k+1])
			}
		} else {
			return -1, false
		}
	}
	for pos < len(b) {
		if s.afterCR {
			s.afterCR = false
			if b[pos] == '\n' {
				pos++
				continue
			}
		}
		var i int
		if noCR {
			i = bytes.IndexByte(b[pos:], '\n')
		} else {
			i = lineEnd(b[pos:])
		}
		if i < 0 {
			s.addToLine(b[pos:])
			return -1, false
		}
		s.addToLine(b[pos : pos+i])
		term := pos + i
		pos = term + 1
		if b[term] == '\r' {
			if pos < len(b) {
				if b[pos] == '\n' {
					pos++
				}
			} else {
				s.afterCR = true
			}
		}
		if ended, ev := s.endLine(); ended {
			return pos, ev
		}
	}
	return -1, false
}

func (s *Splitter) addToLine(p []byte) {
	if s.lineLen == 0 {
		// A retry field is looked at only from its first byte on.
		s.retryOK, s.retryValue, s.retryDigit = len(p) == 0 || p[0] == 'r', 0, false
	}
	if s.lineLen < len(s.prefix) {
		copy(s.prefix[s.lineLen:], p)
	}
	if s.retryOK {
		s.scanRetry(p)
	}
	s.lineLen += len(p)
	if s.lineLen > DefaultMaxLine || (s.MaxLine > 0 && s.lineLen > s.MaxLine) {
		if max := boundOf(s.MaxLine, DefaultMaxLine); s.err == nil && s.lineLen > max {
			s.err = &LineTooLongError{Max: max}
		}
	}
}

// scanRetry follows a line that may be "retry:" with an all-digit value,
// as the Parser takes it (one leading space stripped, and at most what a
// time.Duration of milliseconds holds).
func (s *Splitter) scanRetry(p []byte) {
	const maxRetryMS = int64(1<<63-1) / int64(time.Millisecond)
	for i, c := range p {
		k := s.lineLen + i
		switch {
		case k < len("retry:"):
			if c != "retry:"[k] {
				s.retryOK = false
				return
			}
		case k == len("retry:") && c == ' ':
		case c >= '0' && c <= '9':
			s.retryDigit = true
			if s.retryValue = s.retryValue*10 + int64(c-'0'); s.retryValue > maxRetryMS {
				s.retryOK = false
				return
			}
		default:
			s.retryOK = false
			return
		}
	}
}

func boundOf(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// endLine classifies the finished line; it reports whether a unit ended.
func (s *Splitter) endLine() (ended, event bool) {
	n, pre := s.lineLen, s.prefix
	s.lineLen = 0
	switch {
	case n == 0: // blank line: dispatch
		event = s.hasData
		s.inBlock, s.hasData = false, false
		s.dataLen = 0
		if event {
			s.frame()
		}
		return true, event
	case pre[0] == ':': // comment
		s.frame()
		return !s.inBlock, false
	}
	s.inBlock = true
	if (n == 4 && string(pre[:4]) == "data") || (n >= 5 && string(pre[:5]) == "data:") {
		s.hasData = true
		value := max(n-5, 0)
		if n >= 6 && pre[5] == ' ' {
			value--
		}
		if s.err == nil && s.dataLen+value > boundOf(s.MaxEvent, DefaultMaxEvent) {
			s.err = &EventTooLongError{Max: boundOf(s.MaxEvent, DefaultMaxEvent)}
		}
		s.dataLen += value + 1
	} else if s.retryOK && s.retryDigit && n > len("retry:") {
		s.frame()
	}
	return false, false
}

// frame counts one frame, unless a Parser would have stopped already.
func (s *Splitter) frame() {
	if s.err == nil {
		s.frames++
	}
}

// UnitLen is the length of the unit not yet ended: how far a stream has
// gone without ending its event (or line).
func (s *Splitter) UnitLen() int64 { return s.unitLen }

// Frames is how many frames (events, comments, valid retry fields) the
// bytes scanned so far complete: what a Parser fed the same bytes emits,
// up to its first error (Err).
func (s *Splitter) Frames() int64 { return s.frames }

// Err is the error a Parser with the same bounds would have returned by
// now (a *LineTooLongError or an *EventTooLongError): it stops counting
// frames there.
func (s *Splitter) Err() error { return s.err }

// CountEvents scans b and returns the number of events that end in it.
func (s *Splitter) CountEvents(b []byte) int64 {
	var n int64
	noCR := bytes.IndexByte(b, '\r') < 0
	for len(b) > 0 {
		// Block by block where it can (at a line start in a piece without
		// CR); line by line to the next unit's end otherwise.
		if noCR && s.started && !s.afterCR && s.lineLen == 0 && (s.EventsOnly || (!s.inBlock && s.err == nil)) {
			var k int64
			k, b = s.countBlocks(b)
			n += k
			if len(b) == 0 {
				break
			}
		}
		end, ev := s.next(b, noCR)
		if end < 0 {
			break
		}
		if ev {
			n++
		}
		b = b[end:]
	}
	return n
}

// countBlocks counts the events of b, which holds no CR and starts at a
// line start, block by block: a blank line ends a block, an event when
// a line of it is a data field. Unless EventsOnly it counts the block's
// frames too (its comment lines, valid retry fields and the event), for
// blocks within the Parser's bounds. One vectorised search per line and a
// look at its first byte, where the line-by-line scan keeps a line's
// state. It returns the count and the bytes after the last block counted,
// for the line-by-line scan.
func (s *Splitter) countBlocks(b []byte) (int64, []byte) {
	var n int64
	if haveBlockScan {
		var done int
		n, done = s.countBlocksVector(b)
		b = b[done:]
	}
	bound := min(boundOf(s.MaxLine, DefaultMaxLine), boundOf(s.MaxEvent, DefaultMaxEvent))
	done := 0 // the bytes of the blocks counted
	hasData, frames, size := s.hasData, int64(0), 0
	for pos := 0; pos < len(b); {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			break
		}
		line := b[pos : pos+i]
		pos += i + 1
		if len(line) == 0 {
			if hasData {
				n++
				frames++
			}
			if !s.EventsOnly {
				s.frames += frames
			}
			s.inBlock, s.hasData, s.dataLen, s.unitLen = false, false, 0, 0
			hasData, frames, size, done = false, 0, 0, pos
			continue
		}
		if size += len(line) + 1; !s.EventsOnly && size > bound {
			break // the line-by-line scan finds where a Parser stops
		}
		switch line[0] {
		case ':':
			frames++
		case 'd':
			if isDataField(line) {
				hasData = true
			}
		case 'r':
			var r Splitter
			r.retryOK = true
			r.scanRetry(line)
			if r.retryOK && r.retryDigit {
				frames++
			}
		}
	}
	return n, b[done:]
}

// countBlocksVector is countBlocks' first pass on CPUs with AVX2: the
// first line here, the rest 32 bytes at a time (countEventsAVX2, or
// countFramesAVX2 unless EventsOnly). It returns the events counted and
// the offset just past the last blank line counted, from where
// countBlocks goes on line by line (what follows that line is scanned
// again). Counting frames too, it leaves to the line-by-line scan a piece
// where a block may pass a bound, or a line begins with 'r' (a retry
// field, maybe).
func (s *Splitter) countBlocksVector(b []byte) (int64, int) {
	f := bytes.IndexByte(b, '\n')
	if f < 0 || len(b)-f < 64 {
		return 0, 0
	}
	framesToo := !s.EventsOnly
	if framesToo && len(b) > min(boundOf(s.MaxLine, DefaultMaxLine), boundOf(s.MaxEvent, DefaultMaxEvent)) {
		return 0, 0
	}
	var n, frames int64
	done := 0
	hasData := s.hasData
	switch line := b[:f]; {
	case len(line) == 0:
		if hasData {
			n++
			frames++
		}
		hasData, done = false, 1
	case line[0] == ':':
		frames++
	case line[0] == 'r':
		if framesToo {
			return 0, 0
		}
	case isDataField(line):
		hasData = true
	}
	var carry uint64
	if hasData {
		carry = 1
	}
	var events, comments int64
	var end int
	var retry bool
	if framesToo {
		events, comments, end, retry = countFramesAVX2(b[f:], carry)
	} else {
		events, end = countEventsAVX2(b[f:], carry)
	}
	switch {
	case retry && framesToo:
		return 0, 0
	case end > 0:
		n += events
		frames += events + comments
		done = f + end
	case done == 0:
		return 0, 0
	}
	s.inBlock, s.hasData, s.dataLen, s.unitLen = false, false, 0, 0
	if framesToo {
		s.frames += frames
	}
	return n, done
}

// isDataField says whether a line is a data field: "data", alone or
// followed by a colon.
func isDataField(line []byte) bool {
	return len(line) >= 4 && string(line[:4]) == "data" && (len(line) == 4 || line[4] == ':')
}

// lineEnd is the index of the first CR or LF in b, -1 for none: two
// vectorised searches instead of bytes.IndexAny's byte loop (SSE servers
// end lines with LF; CR is looked for only before the first LF).
func lineEnd(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	seg := b
	if i >= 0 {
		seg = b[:i]
	}
	if j := bytes.IndexByte(seg, '\r'); j >= 0 {
		return j
	}
	return i
}
