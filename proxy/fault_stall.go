package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// stallKind is the fault kind stall.
var stallKind = &kind{
	summary: "stop forwarding in the middle of an SSE event",
	keys:    []keyDoc{{"events", "events forwarded before the stall (default 0)"}},
	build:   buildStall,
}

type stall struct{ events int64 }

func buildStall(fs FaultSpec, scale float64) (behaviour, error) {
	n, err := paramInt(fs, "events")
	if err != nil {
		return nil, err
	}
	return stall{max(n, 0)}, nil
}

func (s stall) attach(a *attachment) any {
	return &stallEffect{a: a, events: s.events, release: make(chan struct{})}
}

type stallEffect struct {
	a       *attachment
	events  int64
	seen    atomic.Int64
	fired   atomic.Bool
	release chan struct{} // closed when the fault is removed
	once    sync.Once
}

func (e *stallEffect) unit(u *unit) {
	if !u.event || u.drop || !e.a.active(time.Now()) || e.fired.Load() {
		return
	}
	if e.seen.Load() >= e.events && e.fired.CompareAndSwap(false, true) {
		u.stall = true
		e.a.fire(session.ActionStall, fmt.Sprintf("stalled in the middle of event %d", e.seen.Load()+1))
	}
}

func (e *stallEffect) forwarded(u *unit) {
	if u.event && !e.fired.Load() && e.a.active(time.Now()) {
		e.seen.Add(1)
	}
}

func (e *stallEffect) stop() { e.once.Do(func() { close(e.release) }) }

// stalled is closed when the stall ends (its fault removed).
func (e *stallEffect) stalled() <-chan struct{} { return e.release }
