package proxy

import "bytes"

// splitter finds where SSE dispatch units end in a byte stream, in whatever
// pieces it arrives, with constant memory: it keeps the state of the
// current line (its length and first bytes) and of the pending block, never
// the data. A unit is an event (a block with a data field, ended by a
// blank line), or a comment outside a block (a heartbeat), or any other
// block ended by a blank line. It follows the line rules of the WHATWG
// event-stream parser (CRLF, LF or CR; a BOM at the start), and agrees
// with internal/sse's Parser on which units are events (see the tests);
// unlike the Parser, it gives byte offsets, which dropping, delaying and
// stalling need, and it does not hold event data, so a hostile upstream
// cannot make it grow.
type splitter struct {
	started bool    // the BOM check is over
	bomN    int     // BOM bytes matched so far
	afterCR bool    // the last line ended with CR: a leading LF belongs to it
	lineLen int     // bytes of the current line so far
	prefix  [5]byte // its first bytes
	inBlock bool    // a field line was seen since the last unit end
	hasData bool    // the block has a data field
	// unitLen is the length of the unit not yet ended: how far a hostile
	// upstream has gone without ending its event (or line).
	unitLen int64
}

var utf8BOM = [3]byte{0xEF, 0xBB, 0xBF}

// next scans b for the end of the current unit. It returns the offset just
// past it and whether the unit is an event, or end -1 when b ends inside a
// unit.
func (s *splitter) next(b []byte) (end int, event bool) {
	end, event = s.scan(b)
	if end < 0 {
		s.unitLen += int64(len(b))
	} else {
		s.unitLen = 0
	}
	return end, event
}

func (s *splitter) scan(b []byte) (end int, event bool) {
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
		i := bytes.IndexAny(b[pos:], "\r\n")
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

func (s *splitter) addToLine(p []byte) {
	if s.lineLen < len(s.prefix) {
		copy(s.prefix[s.lineLen:], p)
	}
	s.lineLen += len(p)
}

// endLine classifies the finished line; it reports whether a unit ended.
func (s *splitter) endLine() (ended, event bool) {
	n, pre := s.lineLen, s.prefix
	s.lineLen = 0
	switch {
	case n == 0: // blank line: dispatch
		event = s.hasData
		s.inBlock, s.hasData = false, false
		return true, event
	case pre[0] == ':': // comment
		return !s.inBlock, false
	}
	s.inBlock = true
	if (n == 4 && string(pre[:4]) == "data") || (n >= 5 && string(pre[:5]) == "data:") {
		s.hasData = true
	}
	return false, false
}

// countEvents scans b and returns the number of events that end in it.
func (s *splitter) countEvents(b []byte) int64 {
	var n int64
	for len(b) > 0 {
		end, ev := s.next(b)
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
