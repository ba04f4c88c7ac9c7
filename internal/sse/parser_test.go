package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// got is a Frame flattened for comparison.
type got struct {
	kind          Kind
	id, typ, data string
	comment       string
	retry         time.Duration
}

func (g got) String() string {
	switch g.kind {
	case KindEvent:
		return fmt.Sprintf("event(id=%q type=%q data=%q)", g.id, g.typ, g.data)
	case KindComment:
		return fmt.Sprintf("comment(%q)", g.comment)
	case KindRetry:
		return fmt.Sprintf("retry(%s)", g.retry)
	}
	return "?"
}

func ev(id, typ, data string) got { return got{kind: KindEvent, id: id, typ: typ, data: data} }
func comment(c string) got        { return got{kind: KindComment, comment: c} }
func retry(d time.Duration) got   { return got{kind: KindRetry, retry: d} }

// parseAll feeds the input in pieces of size chunk (0 = all at once).
func parseAll(t *testing.T, in string, chunk int, p *Parser) ([]got, error) {
	t.Helper()
	var out []got
	emit := func(f *Frame) error {
		out = append(out, got{f.Kind, f.ID, f.Type, string(f.Data), string(f.Comment), f.Retry})
		return nil
	}
	b := []byte(in)
	if chunk <= 0 {
		chunk = len(b) + 1
	}
	for len(b) > 0 {
		n := min(chunk, len(b))
		if err := p.Feed(b[:n], emit); err != nil {
			return out, err
		}
		b = b[n:]
	}
	return out, nil
}

func TestParserRules(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []got
	}{
		{"simple event", "data: hello\n\n", []got{ev("", "message", "hello")}},
		{"leading BOM skipped", "\uFEFFdata: x\n\n", []got{ev("", "message", "x")}},
		{"only the first BOM is skipped", "\uFEFF\uFEFFdata: x\n\n", nil},
		{"CRLF line ends", "data: a\r\ndata: b\r\n\r\n", []got{ev("", "message", "a\nb")}},
		{"CR line ends", "data: a\rdata: b\r\r", []got{ev("", "message", "a\nb")}},
		{"mixed line ends", "data: a\rdata: b\r\ndata: c\n\r\n", []got{ev("", "message", "a\nb\nc")}},
		{"data lines joined with LF", "data: 1\ndata: 2\ndata: 3\n\n", []got{ev("", "message", "1\n2\n3")}},
		{"only one leading space stripped", "data:  two\n\n", []got{ev("", "message", " two")}},
		{"no space after colon", "data:x\n\n", []got{ev("", "message", "x")}},
		{"field without colon has empty value", "data\n\n", []got{ev("", "message", "")}},
		{"empty data lines", "data\ndata\n\n", []got{ev("", "message", "\n")}},
		{"event type", "event: quote\ndata: x\n\n", []got{ev("", "quote", "x")}},
		{"event type resets after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n", []got{ev("", "a", "1"), ev("", "message", "2")}},
		{"empty event type means message", "event:\ndata: x\n\n", []got{ev("", "message", "x")}},
		{"id", "id: 7\ndata: x\n\n", []got{ev("7", "message", "x")}},
		{"id persists across events", "id: 7\ndata: x\n\ndata: y\n\n", []got{ev("7", "message", "x"), ev("7", "message", "y")}},
		{"empty id resets", "id: 7\ndata: x\n\nid\ndata: y\n\n", []got{ev("7", "message", "x"), ev("", "message", "y")}},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []got{ev("1", "message", "a"), ev("1", "message", "b")}},
		{"retry digits", "retry: 5000\n", []got{retry(5 * time.Second)}},
		{"retry zero", "retry: 0\n", []got{retry(0)}},
		{"retry with sign ignored", "retry: -1\n", nil},
		{"retry with space inside ignored", "retry: 1 0\n", nil},
		{"retry with trailing text ignored", "retry: 10ms\n", nil},
		{"retry empty ignored", "retry:\n", nil},
		{"retry overflow ignored", "retry: 99999999999999999999999\n", nil},
		{"comment", ": heartbeat\n\n", []got{comment("heartbeat")}},
		{"comment without space", ":x\n", []got{comment("x")}},
		{"empty comment", ":\n", []got{comment("")}},
		{"unknown field ignored", "foo: bar\ndata: x\n\n", []got{ev("", "message", "x")}},
		{"field names are case sensitive", "Data: x\n\n", nil},
		{"dispatch only on blank line", "data: x\n", nil},
		{"unterminated final block discarded", "data: a\n\ndata: b", []got{ev("", "message", "a")}},
		{"blank line without data dispatches nothing", "\n\n\nevent: a\n\n", nil},
		{"event type without data not dispatched and reset", "event: a\n\ndata: x\n\n", []got{ev("", "message", "x")}},
		{"colon in value kept", "data: a:b: c\n\n", []got{ev("", "message", "a:b: c")}},
		{"BOM in the middle kept", "data: \uFEFFx\n\n", []got{ev("", "message", "\uFEFFx")}},
		{"id set without data still becomes last id", "id: 9\n\ndata: x\n\n", []got{ev("9", "message", "x")}},
	}
	for _, tt := range tests {
		// Every case must hold whatever the read boundaries: all at once,
		// byte by byte, and in pieces of 2 and 3.
		for _, chunk := range []int{0, 1, 2, 3} {
			t.Run(fmt.Sprintf("%s/chunk=%d", tt.name, chunk), func(t *testing.T) {
				var p Parser
				out, err := parseAll(t, tt.in, chunk, &p)
				if err != nil {
					t.Fatalf("Feed: %v", err)
				}
				if fmt.Sprint(out) != fmt.Sprint(tt.want) {
					t.Fatalf("got  %v\nwant %v", out, tt.want)
				}
			})
		}
	}
}

func TestParserCRLFSplitAcrossReads(t *testing.T) {
	// "data: a\r" | "\ndata: b\r\n\r\n": the LF after a piece-ending CR must
	// not count as a second (blank) line.
	var p Parser
	var out []got
	emit := func(f *Frame) error {
		out = append(out, got{kind: f.Kind, data: string(f.Data), typ: f.Type})
		return nil
	}
	for _, piece := range []string{"data: a\r", "\ndata: b\r", "\n\r", "\n"} {
		if err := p.Feed([]byte(piece), emit); err != nil {
			t.Fatal(err)
		}
	}
	if want := []got{{kind: KindEvent, typ: "message", data: "a\nb"}}; fmt.Sprint(out) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", out, want)
	}
}

func TestParserLastEventID(t *testing.T) {
	var p Parser
	p.SetLastEventID("41")
	out, err := parseAll(t, "data: x\n\nid: 42\ndata: y\n\n", 0, &p)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].id != "41" || out[1].id != "42" || p.LastEventID() != "42" {
		t.Fatalf("ids %q %q last %q", out[0].id, out[1].id, p.LastEventID())
	}
	p.Reset()
	if p.LastEventID() != "42" {
		t.Fatalf("Reset lost the last event id")
	}
}

func TestParserResetDropsPartialEvent(t *testing.T) {
	var p Parser
	if _, err := parseAll(t, "event: a\ndata: half", 0, &p); err != nil {
		t.Fatal(err)
	}
	p.Reset() // a reconnect starts a fresh stream
	out, err := parseAll(t, "data: new\n\n", 0, &p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []got{ev("", "message", "new")}; fmt.Sprint(out) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", out, want)
	}
}

func TestParserLineTooLong(t *testing.T) {
	for _, chunk := range []int{0, 7} {
		p := Parser{MaxLine: 16}
		_, err := parseAll(t, "data: "+strings.Repeat("x", 11)+"\n\n", chunk, &p) // 17 bytes
		if !errors.Is(err, ErrLineTooLong) {
			t.Fatalf("chunk=%d: err = %v, want ErrLineTooLong", chunk, err)
		}
		var le *LineTooLongError
		if !errors.As(err, &le) || le.ErrClass() != "LINE_TOO_LONG" || le.Max != 16 {
			t.Fatalf("chunk=%d: err = %#v", chunk, err)
		}
		// The parser refuses anything after it.
		if err := p.Feed([]byte("data: ok\n\n"), func(*Frame) error { return nil }); !errors.Is(err, ErrLineTooLong) {
			t.Fatalf("after the error: %v", err)
		}
	}
	// Exactly at the bound is fine.
	p := Parser{MaxLine: 16}
	out, err := parseAll(t, "data: "+strings.Repeat("x", 10)+"\n\n", 3, &p)
	if err != nil || len(out) != 1 {
		t.Fatalf("at the bound: %v %v", out, err)
	}
}

func TestParserEndlessLineBoundedMemory(t *testing.T) {
	p := Parser{MaxLine: 1 << 10}
	piece := bytes.Repeat([]byte("y"), 256)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = p.Feed(piece, func(*Frame) error { return nil })
	}
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err = %v", err)
	}
	if cap(p.partial) > 2<<10 {
		t.Fatalf("partial line grew to %d bytes with a 1 KiB bound", cap(p.partial))
	}
}

func TestParserEmitErrorStops(t *testing.T) {
	var p Parser
	stop := errors.New("stop")
	n := 0
	err := p.Feed([]byte("data: 1\n\ndata: 2\n\n"), func(*Frame) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("err=%v n=%d", err, n)
	}
}

func TestDecoderEndOfStream(t *testing.T) {
	in := "retry: 1500\n\n: hb\n\nid: 3\nevent: quote\ndata: {\"a\":1}\n\ndata: incomplete"
	d := NewDecoder(iotest.OneByteReader(strings.NewReader(in)), 0)
	var kinds []Kind
	for {
		f, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, f.Kind)
		if f.Kind == KindEvent && (f.ID != "3" || f.Type != "quote" || string(f.Data) != `{"a":1}`) {
			t.Fatalf("event %+v", f)
		}
	}
	if fmt.Sprint(kinds) != fmt.Sprint([]Kind{KindRetry, KindComment, KindEvent}) {
		t.Fatalf("kinds %v", kinds)
	}
	if d.BytesRead() != int64(len(in)) {
		t.Fatalf("BytesRead %d, want %d", d.BytesRead(), len(in))
	}
}

func TestDecoderUnexpectedEOF(t *testing.T) {
	d := NewDecoder(io.MultiReader(strings.NewReader("data: a\n\n"), iotest.ErrReader(io.ErrUnexpectedEOF)), 0)
	if f, err := d.Next(); err != nil || string(f.Data) != "a" {
		t.Fatalf("first: %v %v", f, err)
	}
	if _, err := d.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v", err)
	}
}

// TestWriteRoundTrip checks that what the writers produce parses back
// unchanged, newlines in data included.
func TestWriteRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	WriteRetry(&buf, 2500*time.Millisecond)
	WriteComment(&buf, "heart\nbeat")
	WriteEvent(&buf, "1", "quote", "line1\nline2\r\nline3\rline4")
	WriteEvent(&buf, "", "", "")
	WriteEvent(&buf, "x\ny", "a\rb", " leading space")
	var p Parser
	out, err := parseAll(t, buf.String(), 5, &p)
	if err != nil {
		t.Fatal(err)
	}
	want := []got{
		retry(2500 * time.Millisecond),
		comment("heart beat"),
		ev("1", "quote", "line1\nline2\nline3\nline4"),
		ev("1", "message", ""),
		ev("x y", "a b", " leading space"),
	}
	if fmt.Sprint(out) != fmt.Sprint(want) {
		t.Fatalf("got  %v\nwant %v", out, want)
	}
}

// FuzzParser checks, for any input, that the parser never panics, that the
// result does not depend on how the input is split, and that dispatched
// data never holds a line end (CR, or an LF that is not a join).
func FuzzParser(f *testing.F) {
	for _, s := range []string{
		"data: hello\n\n", "\uFEFFdata: x\r\n\r\n", "id: 1\nevent: e\ndata: a\ndata: b\n\n",
		"retry: 100\n: c\n\n", "data: a\rdata: b\r\r", "id: a\x00b\ndata\n\n", "data: x",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		collect := func(chunk int) (string, error) {
			p := Parser{MaxLine: 4096}
			var out []got
			emit := func(fr *Frame) error {
				if bytes.IndexByte(fr.Data, '\r') >= 0 {
					t.Fatalf("CR in dispatched data %q", fr.Data)
				}
				out = append(out, got{fr.Kind, fr.ID, fr.Type, string(fr.Data), string(fr.Comment), fr.Retry})
				return nil
			}
			b := in
			if chunk <= 0 {
				chunk = len(b) + 1
			}
			for len(b) > 0 {
				n := min(chunk, len(b))
				if err := p.Feed(b[:n], emit); err != nil {
					return fmt.Sprint(out), err
				}
				b = b[n:]
			}
			return fmt.Sprint(out), nil
		}
		whole, err1 := collect(0)
		pieces, err2 := collect(int(split%16) + 1)
		if (err1 == nil) != (err2 == nil) || whole != pieces {
			t.Fatalf("split changes the result:\nwhole  %s (%v)\npieces %s (%v)", whole, err1, pieces, err2)
		}
	})
}

func BenchmarkParserFeed(b *testing.B) {
	var buf bytes.Buffer
	for i := 0; i < 100; i++ {
		WriteEvent(&buf, fmt.Sprint(i), "quote", `{"symbol":"AAPL","price":123.4567,"ts":1700000000000}`)
	}
	in := buf.Bytes()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var p Parser
	n := 0
	emit := func(f *Frame) error { n++; return nil }
	for i := 0; i < b.N; i++ {
		if err := p.Feed(in, emit); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
