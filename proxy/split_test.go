package proxy

import (
	"bytes"
	"testing"
	"time"
)

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
