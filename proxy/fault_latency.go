package proxy

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// latencyKind is the fault kind latency.
var latencyKind = &kind{
	summary: "delay the data of a direction", directional: true, defaultDir: DirDown,
	keys:  []keyDoc{{"delay", "added to every piece of data (default 100ms)"}, {"jitter", "± random spread added to delay"}},
	build: buildLatency,
}

type latency struct{ delay, jitter time.Duration }

func buildLatency(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "delay", 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	j, err := paramDuration(fs, "jitter", 0)
	if err != nil {
		return nil, err
	}
	return latency{scaled(d, scale), scaled(j, scale)}, nil
}

func (l latency) attach(a *attachment) any { return &latencyEffect{a: a, l: l} }

type latencyEffect struct {
	a    *attachment
	l    latency
	mu   sync.Mutex
	last [2]time.Time // per direction: pieces never overtake each other
}

func dirIndex(dir string) int {
	if dir == DirUp {
		return 1
	}
	return 0
}

func (e *latencyEffect) shape(dir string, now time.Time, ps []piece) []piece {
	if !e.a.active(now) {
		return ps
	}
	if e.a.firstTime() {
		e.a.fire(session.ActionDelay, "delay "+e.l.delay.String())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i := dirIndex(dir)
	for k := range ps {
		d := e.l.delay
		if e.l.jitter > 0 {
			d += time.Duration(rand.Int64N(2*int64(e.l.jitter)+1)) - e.l.jitter
			d = max(d, 0)
		}
		at := ps[k].at.Add(d)
		if at.Before(e.last[i]) {
			at = e.last[i]
		}
		e.last[i] = at
		ps[k].at = at
	}
	return ps
}
