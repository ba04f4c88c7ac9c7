package proxy

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// slicerKind is the fault kind slicer.
var slicerKind = &kind{
	summary: "split the data into small writes", directional: true, defaultDir: DirDown,
	keys: []keyDoc{{"size", "average slice in bytes (default 8)"}, {"variation", "± random bytes per slice"},
		{"delay", "pause between slices"}},
	build: buildSlicer,
}

type slicer struct {
	size, variation int64
	delay           time.Duration
}

func buildSlicer(fs FaultSpec, scale float64) (behaviour, error) {
	size, err := paramBytes(fs, "size")
	if err != nil {
		return nil, err
	}
	if size < 0 {
		size = 8
	}
	if size == 0 {
		return nil, fmt.Errorf("size must be at least 1 byte")
	}
	v, err := paramBytes(fs, "variation")
	if err != nil {
		return nil, err
	}
	v = max(v, 0)
	if v >= size {
		return nil, fmt.Errorf("variation (%d) must be smaller than size (%d)", v, size)
	}
	d, err := paramDuration(fs, "delay", 0)
	if err != nil {
		return nil, err
	}
	return slicer{size, v, scaled(d, scale)}, nil
}

func (s slicer) attach(a *attachment) any { return &slicerEffect{a: a, s: s} }

type slicerEffect struct {
	a    *attachment
	s    slicer
	mu   sync.Mutex
	last [2]time.Time
}

func (e *slicerEffect) shape(dir string, now time.Time, ps []piece) []piece {
	if !e.a.active(now) {
		return ps
	}
	if e.a.firstTime() {
		e.a.fire(session.ActionSlice, fmt.Sprintf("slices of %d±%d bytes, %s apart", e.s.size, e.s.variation, e.s.delay))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i := dirIndex(dir)
	var out []piece
	for _, p := range ps {
		at := p.at
		if at.Before(e.last[i]) {
			at = e.last[i]
		}
		for first := true; len(p.data) > 0; first = false {
			n := e.s.size
			if e.s.variation > 0 {
				n += rand.Int64N(2*e.s.variation+1) - e.s.variation
			}
			n = min(max(n, 1), int64(len(p.data)))
			if !first {
				at = at.Add(e.s.delay)
			}
			out = append(out, piece{data: p.data[:n], at: at})
			p.data = p.data[n:]
		}
		e.last[i] = at
	}
	return out
}
