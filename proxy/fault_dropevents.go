package proxy

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// dropEventsKind is the fault kind drop-events.
var dropEventsKind = &kind{
	summary: "drop every Nth SSE event",
	keys:    []keyDoc{{"every", "drop events N, 2N, ... (default 2)"}},
	build:   buildDropEvents,
}

type dropEvents struct{ every int64 }

func buildDropEvents(fs FaultSpec, scale float64) (behaviour, error) {
	n, err := paramInt(fs, "every")
	if err != nil {
		return nil, err
	}
	if n < 0 {
		n = 2
	}
	if n == 0 {
		return nil, fmt.Errorf("every must be at least 1")
	}
	return dropEvents{n}, nil
}

func (d dropEvents) attach(a *attachment) any { return &dropEffect{a: a, every: d.every} }

type dropEffect struct {
	a       *attachment
	every   int64
	seen    atomic.Int64
	dropped atomic.Int64
}

func (e *dropEffect) unit(u *unit) {
	if !u.event || u.drop || !e.a.active(time.Now()) {
		return
	}
	if e.seen.Add(1)%e.every == 0 {
		u.drop = true
		e.dropped.Add(1)
		if e.a.firstTime() {
			e.a.fire(session.ActionDrop, fmt.Sprintf("dropping every %d events", e.every))
		}
	}
}
