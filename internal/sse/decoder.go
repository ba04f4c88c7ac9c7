package sse

import (
	"io"
	"strconv"
	"strings"
	"time"
)

// Decoder reads Frames from an io.Reader, one at a time.
type Decoder struct {
	r      io.Reader
	p      Parser
	buf    []byte
	queue  []Frame
	head   int
	nbytes int64
	err    error
}

// NewDecoder returns a Decoder reading r with lines bounded by maxLine
// (zero means DefaultMaxLine).
func NewDecoder(r io.Reader, maxLine int) *Decoder {
	return &Decoder{r: r, p: Parser{MaxLine: maxLine}, buf: make([]byte, 16<<10)}
}

// Parser exposes the underlying parser (to seed or read the last event ID).
func (d *Decoder) Parser() *Parser { return &d.p }

// BytesRead is the number of bytes read from the underlying reader so far.
func (d *Decoder) BytesRead() int64 { return d.nbytes }

// Next returns the next Frame. Its Data and Comment are copies the caller may
// keep. At the end of the stream it returns the reader's error (io.EOF for a
// clean end); an incomplete final event is discarded, as the spec says.
func (d *Decoder) Next() (Frame, error) {
	for {
		if d.head < len(d.queue) {
			f := d.queue[d.head]
			d.head++
			return f, nil
		}
		if d.err != nil {
			return Frame{}, d.err
		}
		d.queue, d.head = d.queue[:0], 0
		n, err := d.r.Read(d.buf)
		d.nbytes += int64(n)
		if n > 0 {
			if perr := d.p.Feed(d.buf[:n], d.keep); perr != nil {
				d.err = perr
				continue
			}
		}
		if err != nil {
			d.err = err
		}
	}
}

func (d *Decoder) keep(f *Frame) error {
	c := *f
	if c.Data != nil {
		c.Data = append([]byte(nil), c.Data...)
	}
	if c.Comment != nil {
		c.Comment = append([]byte(nil), c.Comment...)
	}
	d.queue = append(d.queue, c)
	return nil
}

// WriteEvent writes one event. Multi-line data becomes several data lines;
// an empty id or eventType is left out. CR and LF inside id and eventType
// would break the framing, so they are replaced by spaces.
func WriteEvent(w io.Writer, id, eventType, data string) error {
	var b strings.Builder
	b.Grow(len(data) + len(id) + len(eventType) + 24)
	if eventType != "" {
		b.WriteString("event: ")
		b.WriteString(clean(eventType))
		b.WriteByte('\n')
	}
	if id != "" {
		b.WriteString("id: ")
		b.WriteString(clean(id))
		b.WriteByte('\n')
	}
	for {
		i := strings.IndexAny(data, "\r\n")
		b.WriteString("data: ")
		if i < 0 {
			b.WriteString(data)
			b.WriteByte('\n')
			break
		}
		b.WriteString(data[:i])
		b.WriteByte('\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteComment writes a comment line (what servers send as a heartbeat).
func WriteComment(w io.Writer, text string) error {
	_, err := io.WriteString(w, ": "+clean(text)+"\n\n")
	return err
}

// WriteRetry advertises the reconnection time.
func WriteRetry(w io.Writer, d time.Duration) error {
	_, err := io.WriteString(w, "retry: "+strconv.FormatInt(d.Milliseconds(), 10)+"\n\n")
	return err
}

func clean(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	}
	return s
}
