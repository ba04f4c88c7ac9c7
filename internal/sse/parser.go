// Package sse is the server-sent events codec shared by every part of
// ssestress: the load clients, the proxy's SSE-aware faults and counters, the
// recorder, and the replay server.
//
// Bytes enter a Parser through Feed, in whatever pieces the network delivers;
// Frames (dispatched events, comments, valid retry fields) leave through a
// callback. The parsing follows the WHATWG HTML "server-sent events"
// interpretation rules exactly; see Parser for the list. Decoder wraps a
// Parser around an io.Reader for pull-style use. The writer side (WriteEvent,
// WriteComment, WriteRetry) produces streams the parser reads back unchanged.
package sse

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// DefaultMaxLine is the longest line (without its terminator) a Parser
// accepts when Parser.MaxLine is zero.
const DefaultMaxLine = 1 << 20

// DefaultMaxEvent is the most data one event may carry (its data lines
// joined, in bytes) when Parser.MaxEvent is zero. Without a bound a server
// sending an endless event of short data lines would make the parser hold
// all of it.
const DefaultMaxEvent = 16 << 20

// ErrEventTooLong is returned (wrapped in an *EventTooLongError) when an
// event's data exceeds the parser's bound. Like a line over its bound, it
// ends the stream: the connection must be ended.
var ErrEventTooLong = errors.New("sse: event too long")

// EventTooLongError says how large the bound was. It matches
// ErrEventTooLong with errors.Is and carries the error class used in the
// session file.
type EventTooLongError struct{ Max int }

func (e *EventTooLongError) Error() string {
	return fmt.Sprintf("sse: event data longer than %d bytes", e.Max)
}

// Is makes errors.Is(err, ErrEventTooLong) true.
func (e *EventTooLongError) Is(target error) bool { return target == ErrEventTooLong }

// ErrClass names the error in the ssestress error taxonomy.
func (e *EventTooLongError) ErrClass() string { return "EVENT_TOO_LONG" }

// ErrLineTooLong is returned (wrapped in a *LineTooLongError) when a line
// exceeds the parser's bound. The stream cannot be resynchronised after it:
// the connection must be ended.
var ErrLineTooLong = errors.New("sse: line too long")

// LineTooLongError says how long the bound was. It matches ErrLineTooLong with
// errors.Is and carries the error class used in the session file.
type LineTooLongError struct{ Max int }

func (e *LineTooLongError) Error() string {
	return fmt.Sprintf("sse: line longer than %d bytes", e.Max)
}

// Is makes errors.Is(err, ErrLineTooLong) true.
func (e *LineTooLongError) Is(target error) bool { return target == ErrLineTooLong }

// ErrClass names the error in the ssestress error taxonomy.
func (e *LineTooLongError) ErrClass() string { return "LINE_TOO_LONG" }

// Kind tells what a Frame carries.
type Kind uint8

// The kinds of Frame a Parser emits.
const (
	// KindEvent is a dispatched event: ID, Type and Data are set.
	KindEvent Kind = iota + 1
	// KindComment is a line starting with a colon (heartbeats): Comment is set.
	KindComment
	// KindRetry is a retry field whose value was all ASCII digits: Retry is set.
	KindRetry
)

// Frame is one thing a Parser recognised. Data and Comment alias the parser's
// buffers and are valid only during the callback; copy them to keep them.
type Frame struct {
	Kind Kind
	// ID is the stream's last event ID at dispatch time (it persists across
	// events until the server sets another).
	ID string
	// Type is the event type; "message" when the stream named none.
	Type string
	// Data is the event's data lines joined with LF.
	Data []byte
	// Comment is the text after the colon, one leading space removed.
	Comment []byte
	// Retry is the reconnection time the server asked for.
	Retry time.Duration
}

// Parser turns SSE bytes into Frames. The zero value is ready to use.
//
// Rules implemented (WHATWG HTML, "Parsing an event stream" and
// "Interpreting an event stream"):
//   - one leading UTF-8 BOM is skipped;
//   - lines end with CRLF, LF or CR, also when the CR and LF arrive in
//     different Feed calls;
//   - a line starting with ':' is a comment;
//   - "field:value" with one leading space of the value stripped; a line with
//     no colon is a field with an empty value;
//   - data values are joined with LF; event sets the type; id sets the last
//     event ID unless the value contains NUL; retry is taken only when the
//     value is all ASCII digits; other fields are ignored;
//   - an event is dispatched on a blank line only, and only when a data field
//     was seen; the last event ID persists across events;
//   - bytes after the last blank line are discarded at the end of the stream
//     (the caller simply stops feeding).
type Parser struct {
	// MaxLine bounds the length of one line; zero means DefaultMaxLine.
	MaxLine int
	// MaxEvent bounds the data of one event (its data lines joined);
	// zero means DefaultMaxEvent.
	MaxEvent int
	// Grow, when set, is asked before the parser enlarges its line or
	// event buffer, with the new buffer's whole size (it never grows a
	// buffer past its bound); once the old buffer is copied, Shrink is
	// told the old one's size. An error refuses the new buffer: Feed
	// returns it, and the parser refuses further input, as past a bound.
	// The load clients charge a shared memory budget so: old and new are
	// both held while one is copied into the other.
	Grow   func(n int) error
	Shrink func(n int)

	started   bool   // BOM check done
	bomSeen   []byte // BOM prefix bytes held back while undecided
	skipLF    bool   // the previous piece ended with CR: a leading LF belongs to it
	partial   []byte // a line begun in an earlier Feed
	data      []byte // data buffer (each value followed by LF)
	eventType string // event type buffer
	lastType  string // the previous non-empty type, reused to avoid an allocation per event
	frame     Frame  // reused for every emit: a Frame escapes through the callback
	idBuf     string // last event ID buffer
	lastID    string // the stream's last event ID string
	err       error
}

// LastEventID is the stream's last event ID string: what a client sends as
// Last-Event-ID when it reconnects.
func (p *Parser) LastEventID() string { return p.lastID }

// SetLastEventID seeds the last event ID (a reconnecting client keeps it).
func (p *Parser) SetLastEventID(id string) { p.lastID, p.idBuf = id, id }

// Reset forgets any partial line and event, as a new connection must, but
// keeps the last event ID.
func (p *Parser) Reset() {
	*p = Parser{MaxLine: p.MaxLine, MaxEvent: p.MaxEvent, Grow: p.Grow, Shrink: p.Shrink, lastID: p.lastID, idBuf: p.lastID, lastType: p.lastType}
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// Feed parses b, calling emit for every Frame completed by it. An error from
// emit stops parsing and is returned; a line over the bound returns a
// *LineTooLongError and an event over its bound an *EventTooLongError,
// after which the parser refuses further input.
func (p *Parser) Feed(b []byte, emit func(*Frame) error) error {
	if p.err != nil {
		return p.err
	}
	if !p.started {
		// Hold back a possible BOM prefix until it is decided.
		if len(p.bomSeen) > 0 {
			b = append(append([]byte(nil), p.bomSeen...), b...)
			p.bomSeen = nil
		}
		n := min(len(b), len(bom))
		if !bytes.Equal(b[:n], bom[:n]) {
			p.started = true
		} else if n < len(bom) {
			p.bomSeen = append(p.bomSeen[:0], b...)
			return nil
		} else {
			p.started = true
			b = b[len(bom):]
		}
	}
	if p.skipLF && len(b) > 0 {
		if b[0] == '\n' {
			b = b[1:]
		}
		p.skipLF = false
	}
	max := p.MaxLine
	if max <= 0 {
		max = DefaultMaxLine
	}
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			if len(p.partial)+len(b) > max {
				p.err = &LineTooLongError{Max: max}
				return p.err
			}
			if err := p.room(&p.partial, len(b), max); err != nil {
				return err
			}
			p.partial = append(p.partial, b...)
			return nil
		}
		line := b[:i]
		if len(p.partial) > 0 {
			if len(p.partial)+len(line) > max {
				p.err = &LineTooLongError{Max: max}
				return p.err
			}
			if err := p.room(&p.partial, len(line), max); err != nil {
				return err
			}
			p.partial = append(p.partial, line...)
			line = p.partial
		} else if len(line) > max {
			p.err = &LineTooLongError{Max: max}
			return p.err
		}
		if b[i] == '\r' {
			if i+1 < len(b) {
				if b[i+1] == '\n' {
					i++
				}
			} else {
				p.skipLF = true
			}
		}
		b = b[i+1:]
		err := p.line(line, emit)
		p.partial = p.partial[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// line interprets one complete line.
func (p *Parser) line(line []byte, emit func(*Frame) error) error {
	if len(line) == 0 {
		return p.dispatch(emit)
	}
	if line[0] == ':' {
		c := line[1:]
		if len(c) > 0 && c[0] == ' ' {
			c = c[1:]
		}
		p.frame = Frame{Kind: KindComment, Comment: c}
		return emit(&p.frame)
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		if string(value) == p.lastType {
			p.eventType = p.lastType
		} else {
			p.eventType = string(value)
			p.lastType = p.eventType
		}
	case "data":
		maxEvent := p.MaxEvent
		if maxEvent <= 0 {
			maxEvent = DefaultMaxEvent
		}
		if len(p.data)+len(value) > maxEvent {
			p.err = &EventTooLongError{Max: maxEvent}
			return p.err
		}
		if err := p.room(&p.data, len(value)+1, maxEvent+1); err != nil {
			return err
		}
		p.data = append(p.data, value...)
		p.data = append(p.data, '\n')
	case "id":
		if bytes.IndexByte(value, 0) < 0 && string(value) != p.idBuf {
			p.idBuf = string(value)
		}
	case "retry":
		if len(value) == 0 || !allDigits(value) {
			return nil
		}
		ms, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil || ms > int64(1<<63-1)/int64(time.Millisecond) {
			return nil // too large to represent: ignore, as an invalid value
		}
		p.frame = Frame{Kind: KindRetry, Retry: time.Duration(ms) * time.Millisecond}
		return emit(&p.frame)
	}
	return nil
}

// room makes room for n more bytes in *buf, never past bound, asking Grow
// first (without Grow, append grows the buffer as it will).
func (p *Parser) room(buf *[]byte, n, bound int) error {
	need := len(*buf) + n
	if p.Grow == nil || need <= cap(*buf) {
		return nil
	}
	newCap := min(max(2*cap(*buf), need, 512), max(bound, need))
	if err := p.Grow(newCap); err != nil {
		p.err = err
		return err
	}
	old := cap(*buf)
	nb := make([]byte, len(*buf), newCap)
	copy(nb, *buf)
	*buf = nb
	if p.Shrink != nil {
		p.Shrink(old)
	}
	return nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// dispatch runs the spec's "dispatch the event" steps.
func (p *Parser) dispatch(emit func(*Frame) error) error {
	p.lastID = p.idBuf
	if len(p.data) == 0 {
		p.eventType = ""
		return nil
	}
	data := p.data[:len(p.data)-1]
	typ := p.eventType
	if typ == "" {
		typ = "message"
	}
	p.frame = Frame{Kind: KindEvent, ID: p.lastID, Type: typ, Data: data}
	err := emit(&p.frame)
	p.data = p.data[:0]
	p.eventType = ""
	return err
}
