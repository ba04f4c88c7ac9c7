package sse

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// parserEvents counts the events internal/sse's Parser dispatches.
func parserEvents(t testing.TB, stream []byte) int {
	var p Parser
	p.MaxLine = len(stream) + 1
	n := 0
	if err := p.Feed(stream, func(f *Frame) error {
		if f.Kind == KindEvent {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// splitUnits feeds stream to a splitter in the given pieces and returns
// the units (their bytes) and how many were events.
func splitUnits(stream []byte, cuts []int) (units [][]byte, events int) {
	var s Splitter
	var cur []byte
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		piece := stream[prev:c]
		prev = c
		for len(piece) > 0 {
			end, ev := s.Next(piece)
			if end < 0 {
				cur = append(cur, piece...)
				break
			}
			cur = append(cur, piece[:end]...)
			units = append(units, cur)
			cur = nil
			if ev {
				events++
			}
			piece = piece[end:]
		}
	}
	if len(cur) > 0 {
		units = append(units, cur)
	}
	return units, events
}

// randomStream builds an awkward but valid-to-parse event stream.
func randomStream(rng *rand.Rand) []byte {
	lines := []string{"data: x", "data", "data:", "data:y", "id: 7", "event: e", "retry: 10", ": hb", ":", "datax: no",
		"dat", "data : not data", "id", "", "", ""}
	ends := []string{"\n", "\r\n", "\r"}
	var b bytes.Buffer
	if rng.IntN(4) == 0 {
		b.WriteString("\xEF\xBB\xBF")
	}
	for i := rng.IntN(40); i > 0; i-- {
		b.WriteString(lines[rng.IntN(len(lines))])
		b.WriteString(ends[rng.IntN(len(ends))])
	}
	return b.Bytes()
}

// TestSplitterMatchesParser: however the bytes are cut, the splitter finds
// as many events as the WHATWG parser dispatches, and its units put back
// together are the stream.
func TestSplitterMatchesParser(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		stream := randomStream(rng)
		var cuts []int
		for c := 0; c < len(stream); c++ {
			if rng.IntN(5) == 0 {
				cuts = append(cuts, c)
			}
		}
		units, events := splitUnits(stream, cuts)
		if want := parserEvents(t, stream); events != want {
			t.Fatalf("stream %q cut at %v: %d events, parser %d", stream, cuts, events, want)
		}
		if got := bytes.Join(units, nil); !bytes.Equal(got, stream) {
			t.Fatalf("units %q do not rebuild %q", units, stream)
		}
	}
}

func TestSplitterUnits(t *testing.T) {
	units, events := splitUnits([]byte(": hb\n\nid: 1\ndata: a\n: inside\ndata: b\n\nretry: 5\n\ndata: c\r\n\r\ndata: d\n"), []int{3, 20})
	want := []string{": hb\n", "\n", "id: 1\ndata: a\n: inside\ndata: b\n\n", "retry: 5\n\n", "data: c\r\n\r\n", "data: d\n"}
	if events != 2 || len(units) != len(want) {
		t.Fatalf("%d events, units %q", events, units)
	}
	for i := range want {
		if string(units[i]) != want[i] {
			t.Errorf("unit %d = %q, want %q", i, units[i], want[i])
		}
	}
}

func FuzzSplitter(f *testing.F) {
	f.Add([]byte("data: a\n\n: hb\n\n"), uint8(3))
	f.Add([]byte("\xEF\xBB\xBFdata\r\r"), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, every uint8) {
		var cuts []int
		if every > 0 {
			for c := int(every); c < len(stream); c += int(every) {
				cuts = append(cuts, c)
			}
		}
		units, events := splitUnits(stream, cuts)
		if want := parserEvents(t, stream); events != want {
			t.Fatalf("%q: %d events, parser %d", stream, events, want)
		}
		if !bytes.Equal(bytes.Join(units, nil), stream) {
			t.Fatalf("units do not rebuild the stream")
		}
	})
}

// parserFrames is what a Parser with bounds emits for stream, in frames,
// and its error.
func parserFrames(stream []byte, maxLine, maxEvent int) (int64, error) {
	p := Parser{MaxLine: maxLine, MaxEvent: maxEvent}
	var n int64
	err := p.Feed(stream, func(*Frame) error { n++; return nil })
	return n, err
}

// splitterFrames feeds stream in pieces cut every every bytes.
func splitterFrames(stream []byte, every, maxLine, maxEvent int) (int64, error) {
	s := Splitter{MaxLine: maxLine, MaxEvent: maxEvent}
	for len(stream) > 0 {
		n := min(max(every, 1), len(stream))
		s.CountEvents(stream[:n])
		stream = stream[n:]
	}
	return s.Frames(), s.Err()
}

// TestSplitterFramesMatchParser: the splitter counts the frames a Parser
// emits (events, comments, valid retries) and stops where it stops, under
// tight bounds too, however the bytes are cut.
func TestSplitterFramesMatchParser(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	extra := []string{"retry: 99999999999999", "retry:  5", "retry:5x", "retry:", "retry", "retry:0007", "data: " + string(bytes.Repeat([]byte("z"), 40))}
	for i := 0; i < 3000; i++ {
		stream := randomStream(rng)
		if rng.IntN(2) == 0 {
			stream = append(stream, extra[rng.IntN(len(extra))]...)
			stream = append(stream, "\n\n"...)
		}
		maxLine, maxEvent := 0, 0
		if rng.IntN(3) == 0 {
			maxLine, maxEvent = 1+rng.IntN(30), 1+rng.IntN(60)
		}
		want, werr := parserFrames(stream, maxLine, maxEvent)
		got, gerr := splitterFrames(stream, 1+rng.IntN(7), maxLine, maxEvent)
		if got != want || (werr == nil) != (gerr == nil) || (werr != nil && errors.Is(werr, ErrLineTooLong) != errors.Is(gerr, ErrLineTooLong)) {
			t.Fatalf("stream %q bounds %d/%d: splitter %d frames (%v), parser %d (%v)", stream, maxLine, maxEvent, got, gerr, want, werr)
		}
	}
}

// countInPieces feeds stream to s in pieces of 1 to most bytes and returns
// the events it counted.
func countInPieces(s *Splitter, stream []byte, most int, rng *rand.Rand) int64 {
	var n int64
	for rest := stream; len(rest) > 0; {
		k := min(1+rng.IntN(most), len(rest))
		n += s.CountEvents(rest[:k])
		rest = rest[k:]
	}
	return n
}

// TestEventsOnlyMatchesParser: the block-by-block count agrees with the
// parser however the stream is cut, CR or not.
func TestEventsOnlyMatchesParser(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 5000; i++ {
		stream := randomStream(rng)
		if rng.IntN(2) == 0 {
			stream = bytes.ReplaceAll(bytes.ReplaceAll(stream, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n"))
		}
		s := Splitter{EventsOnly: true}
		got := countInPieces(&s, stream, 40, rng)
		if want := parserEvents(t, stream); got != int64(want) {
			t.Fatalf("stream %q: %d events, parser %d", stream, got, want)
		}
	}
}

// BenchmarkCountEvents: CountEvents over 64-event pieces like the bench's
// load server's (id, event and data lines, about 90 bytes an event), as
// the proxy (EventsOnly) and the recorder (frames too) count them.
func BenchmarkCountEvents(b *testing.B) {
	var piece []byte
	for i := range 64 {
		piece = fmt.Appendf(piece, "id: %d\nevent: quote\ndata: %d {\"symbol\":\"AAPL\",\"price\":187.1234,\"volume\":1200}\n\n", 1000+i, 1796637600123456789+int64(i))
	}
	for _, eventsOnly := range []bool{true, false} {
		b.Run(fmt.Sprintf("EventsOnly=%v", eventsOnly), func(b *testing.B) {
			s := Splitter{EventsOnly: eventsOnly}
			b.SetBytes(int64(len(piece)))
			var n int64
			for b.Loop() {
				n += s.CountEvents(piece)
			}
			if n != 64*int64(b.N) {
				b.Fatalf("%d events, want %d", n, 64*b.N)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
		})
	}
}

// longStream builds a stream without CR of blocks like real feeds' (an id,
// an event type, data lines, comments inside and between blocks) mixed
// with the awkward lines of randomStream, some blocks with no data field,
// lines that begin like a data field and are not one, and long lines.
func longStream(rng *rand.Rand, blocks int) []byte {
	odd := []string{"dat", "datax: no", "data : not data", "d", "da", "dataa", "data", "data:", ":", ": hb", "id", "event: e",
		"retry: 10", "retry: x", "x: y", "\xEF\xBB\xBFdata: bom inside"}
	var b bytes.Buffer
	for i := 0; i < blocks; i++ {
		switch rng.IntN(6) {
		case 0: // a run of odd lines
			for k := rng.IntN(5); k >= 0; k-- {
				b.WriteString(odd[rng.IntN(len(odd))])
				b.WriteByte('\n')
			}
		case 1: // a heartbeat between blocks
			b.WriteString(": keep-alive\n")
		case 2: // a long data line
			fmt.Fprintf(&b, "data: %s\n", bytes.Repeat([]byte("q"), rng.IntN(300)))
		default:
			fmt.Fprintf(&b, "id: %d\nevent: quote\ndata: {\"p\":%d}\n", i, rng.IntN(1e6))
			if rng.IntN(4) == 0 {
				b.WriteString(": inside\ndata: second\n")
			}
		}
		for k := rng.IntN(3); k >= 0; k-- {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// TestLongPiecesMatchParser: on pieces long enough for the vectorised
// scan (countBlocksVector, on CPUs with AVX2) the splitter counts the
// events and frames a Parser emits and stops where it stops, however the
// pieces are cut, with hasData and comments carried across them.
func TestLongPiecesMatchParser(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 2000; i++ {
		stream := longStream(rng, 1+rng.IntN(60))
		maxLine, maxEvent := 0, 0
		if i%3 == 0 {
			maxLine, maxEvent = 100+rng.IntN(400), 200+rng.IntN(2000)
		}
		wantFrames, werr := parserFrames(stream, maxLine, maxEvent)
		s := Splitter{MaxLine: maxLine, MaxEvent: maxEvent}
		countInPieces(&s, stream, 2048, rng)
		if s.Frames() != wantFrames || (s.Err() == nil) != (werr == nil) {
			t.Fatalf("stream %q bounds %d/%d: %d frames (%v), parser %d (%v)", stream, maxLine, maxEvent, s.Frames(), s.Err(), wantFrames, werr)
		}
		if maxLine > 0 {
			continue
		}
		wantEvents := parserEvents(t, stream)
		for _, eventsOnly := range []bool{true, false} {
			s := Splitter{EventsOnly: eventsOnly}
			if got := countInPieces(&s, stream, 2048, rng); got != int64(wantEvents) {
				t.Fatalf("EventsOnly=%v stream %q: %d events, parser %d", eventsOnly, stream, got, wantEvents)
			}
			if !eventsOnly && s.Frames() != wantFrames {
				t.Fatalf("stream %q: %d frames, parser %d", stream, s.Frames(), wantFrames)
			}
		}
	}
}

// TestVectorScanRuns: on a CPU with AVX2 the vectorised scan takes a
// feed's piece (the test above would pass without it).
func TestVectorScanRuns(t *testing.T) {
	if !haveBlockScan {
		t.Skip("no vectorised scan on this CPU or build (needs amd64 with AVX2, not -tags purego)")
	}
	piece := []byte(strings.Repeat("id: 1\nevent: quote\ndata: {\"p\":1}\n: c\n\n", 10))
	for _, eventsOnly := range []bool{true, false} {
		s := Splitter{EventsOnly: eventsOnly}
		n, done := s.countBlocksVector(piece)
		// The last block's end needs five bytes after it to be seen.
		if n < 9 || done < len(piece)-80 {
			t.Fatalf("EventsOnly=%v: vectorised scan counted %d events up to %d of %d bytes", eventsOnly, n, done, len(piece))
		}
		if !eventsOnly && s.Frames() != 2*n {
			t.Fatalf("frames %d, want %d (an event and a comment a block)", s.Frames(), 2*n)
		}
	}
}
