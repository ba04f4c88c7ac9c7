package proxy

import (
	"fmt"
	"sync"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// bandwidthKind is the fault kind bandwidth.
var bandwidthKind = &kind{
	summary: "limit the rate of a direction", directional: true, defaultDir: DirDown,
	keys:  []keyDoc{{"rate", "bytes per second, e.g. 10KB (required)"}},
	build: buildBandwidth,
}

type bandwidth struct{ rate int64 }

func buildBandwidth(fs FaultSpec, scale float64) (behaviour, error) {
	r, err := paramBytes(fs, "rate")
	if err != nil {
		return nil, err
	}
	if r <= 0 {
		return nil, fmt.Errorf("bandwidth needs rate=BYTES per second (e.g. rate=10KB)")
	}
	return bandwidth{r}, nil
}

func (b bandwidth) attach(a *attachment) any { return &bandwidthEffect{a: a, rate: b.rate} }

type bandwidthEffect struct {
	a    *attachment
	rate int64
	mu   sync.Mutex
	next [2]time.Time // per direction: when the link is free again
}

// shape splits pieces into 50 ms worth of bytes and spaces them at rate.
func (e *bandwidthEffect) shape(dir string, now time.Time, ps []piece) []piece {
	if !e.a.active(now) {
		return ps
	}
	if e.a.firstTime() {
		e.a.fire(session.ActionThrottle, fmt.Sprintf("%d bytes/s", e.rate))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i := dirIndex(dir)
	chunk := int(max(e.rate/20, 1))
	out := make([]piece, 0, len(ps))
	for _, p := range ps {
		for len(p.data) > 0 {
			n := min(chunk, len(p.data))
			at := p.at
			if at.Before(e.next[i]) {
				at = e.next[i]
			}
			out = append(out, piece{data: p.data[:n], at: at})
			e.next[i] = at.Add(time.Duration(int64(n) * int64(time.Second) / e.rate))
			p.data = p.data[n:]
		}
	}
	return out
}
