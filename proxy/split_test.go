package proxy

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/sse"
)

// parserEvents counts the events internal/sse's Parser dispatches.
func parserEvents(t testing.TB, stream []byte) int {
	var p sse.Parser
	p.MaxLine = len(stream) + 1
	n := 0
	if err := p.Feed(stream, func(f *sse.Frame) error {
		if f.Kind == sse.KindEvent {
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
	var s splitter
	var cur []byte
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		piece := stream[prev:c]
		prev = c
		for len(piece) > 0 {
			end, ev := s.next(piece)
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

// The shapers are pure functions of arrival times: tested without sleeping.

func TestLatencyShape(t *testing.T) {
	a := &attachment{}
	e := &latencyEffect{a: a, l: latency{delay: 250 * time.Millisecond}}
	t0 := time.Unix(1000, 0)
	for i := 0; i < 5; i++ {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		ps := e.shape(DirDown, at, []piece{{data: []byte("x"), at: at}})
		if want := at.Add(250 * time.Millisecond); !ps[0].at.Equal(want) {
			t.Fatalf("piece %d at %v, want %v: the delay adds up", i, ps[0].at.Sub(t0), want.Sub(t0))
		}
	}
	// Jitter never reorders pieces.
	j := &latencyEffect{a: a, l: latency{delay: 10 * time.Millisecond, jitter: 10 * time.Millisecond}}
	var last time.Time
	for i := 0; i < 1000; i++ {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		p := j.shape(DirDown, at, []piece{{at: at}})[0]
		if p.at.Before(last) || p.at.Before(at) || p.at.After(at.Add(20*time.Millisecond)) {
			t.Fatalf("piece %d at +%v after one at +%v", i, p.at.Sub(at), last.Sub(at))
		}
		last = p.at
	}
}

func TestBandwidthShape(t *testing.T) {
	e := &bandwidthEffect{a: &attachment{}, rate: 1000}
	t0 := time.Unix(1000, 0)
	ps := e.shape(DirDown, t0, []piece{{data: make([]byte, 500), at: t0}})
	if len(ps) != 10 {
		t.Fatalf("%d pieces, want 10 of 50 bytes", len(ps))
	}
	for i, p := range ps {
		if want := t0.Add(time.Duration(i) * 50 * time.Millisecond); len(p.data) != 50 || !p.at.Equal(want) {
			t.Fatalf("piece %d: %d bytes at +%v", i, len(p.data), p.at.Sub(t0))
		}
	}
	// Data arriving while the link is busy waits its turn.
	next := e.shape(DirDown, t0.Add(100*time.Millisecond), []piece{{data: make([]byte, 10), at: t0.Add(100 * time.Millisecond)}})
	if !next[0].at.Equal(t0.Add(500 * time.Millisecond)) {
		t.Fatalf("queued piece at +%v, want +500ms", next[0].at.Sub(t0))
	}
	// The other direction has its own link.
	if up := e.shape(DirUp, t0, []piece{{data: []byte("x"), at: t0}}); !up[0].at.Equal(t0) {
		t.Fatalf("up piece at +%v", up[0].at.Sub(t0))
	}
}

func TestSlicerShape(t *testing.T) {
	e := &slicerEffect{a: &attachment{}, s: slicer{size: 4, variation: 1, delay: 10 * time.Millisecond}}
	t0 := time.Unix(1000, 0)
	data := []byte("0123456789abcdefghij")
	ps := e.shape(DirDown, t0, []piece{{data: data, at: t0}})
	var joined []byte
	for i, p := range ps {
		if len(p.data) < 1 || len(p.data) > 5 {
			t.Errorf("slice %d has %d bytes", i, len(p.data))
		}
		if want := t0.Add(time.Duration(i) * 10 * time.Millisecond); !p.at.Equal(want) {
			t.Errorf("slice %d at +%v, want +%v", i, p.at.Sub(t0), want.Sub(t0))
		}
		joined = append(joined, p.data...)
	}
	if !bytes.Equal(joined, data) {
		t.Fatalf("slices %q", joined)
	}
}

// TestFaultBeforeStart: a shaper does nothing before its after.
func TestFaultBeforeStart(t *testing.T) {
	t0 := time.Now()
	a := &attachment{start: t0.Add(time.Hour)}
	e := &latencyEffect{a: a, l: latency{delay: time.Second}}
	if p := e.shape(DirDown, t0, []piece{{at: t0}})[0]; !p.at.Equal(t0) {
		t.Fatalf("delayed before the fault started")
	}
}
