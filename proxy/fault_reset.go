package proxy

import (
	"fmt"
	"sync/atomic"
	"time"
)

// resetKind is the fault kind reset.
var resetKind = &kind{
	summary: "TCP reset after a time, a number of bytes or a number of SSE events", directional: true, defaultDir: DirDown,
	keys:  []keyDoc{{"bytes", "reset once this many bytes have passed in direction"}, {"events", "reset once this many SSE events have been forwarded"}},
	build: buildReset,
}

type reset struct {
	bytes, events int64
}

func buildReset(fs FaultSpec, scale float64) (behaviour, error) {
	b, err := paramBytes(fs, "bytes")
	if err != nil {
		return nil, err
	}
	ev, err := paramInt(fs, "events")
	if err != nil {
		return nil, err
	}
	if b >= 0 && ev >= 0 {
		return nil, fmt.Errorf("give bytes or events, not both")
	}
	return reset{b, ev}, nil
}

func (r reset) attach(a *attachment) any {
	switch {
	case r.bytes >= 0:
		return &byteLimitEffect{a: a, b: byteLimit{r.bytes, ActionRST}, base: a.h.bytes(a.dirs)}
	case r.events >= 0:
		return &resetEventsEffect{a: a, n: r.events}
	}
	a.at(a.start, func() {
		a.fire(ActionRST, "after "+a.f.after.String())
		a.h.reset()
	})
	return struct{}{}
}

// resetEventsEffect resets once n events have been forwarded.
type resetEventsEffect struct {
	a    *attachment
	n    int64
	seen atomic.Int64
	done atomic.Bool
}

func (e *resetEventsEffect) forwarded(u *unit) {
	if !u.event || !e.a.active(time.Now()) || e.done.Load() {
		return
	}
	if e.seen.Add(1) >= e.n && e.done.CompareAndSwap(false, true) {
		e.a.fire(ActionRST, fmt.Sprintf("after %d events", e.n))
		e.a.h.reset()
	}
}

// unit lets a reset after 0 events act before the first event.
func (e *resetEventsEffect) unit(u *unit) {
	if e.n == 0 && e.a.active(time.Now()) && e.done.CompareAndSwap(false, true) {
		e.a.fire(ActionRST, "after 0 events")
		e.a.h.reset()
		u.drop = true
	}
}
