package proxy

import (
	"fmt"
	"sync/atomic"
	"time"
)

// natDropKind is the fault kind nat-drop.
var natDropKind = &kind{
	summary: "forget the flow after idle; the next packet either way is answered with a reset",
	keys:    []keyDoc{{"idle", "silence after which the flow is forgotten (required)"}},
	build:   buildNATDrop,
}

type natDrop struct{ idle time.Duration }

func buildNATDrop(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "idle", 0)
	if err != nil {
		return nil, err
	}
	if _, ok := fs.Params["idle"]; !ok || d <= 0 {
		return nil, fmt.Errorf("nat-drop needs idle=DURATION (e.g. idle=350s)")
	}
	return natDrop{scaled(d, scale)}, nil
}

func (n natDrop) attach(a *attachment) any { return &natDropEffect{a: a, idle: n.idle} }

type natDropEffect struct {
	a    *attachment
	idle time.Duration
	done atomic.Bool
}

// forgotten is checked with the time a byte last passed before this one:
// after idle of silence the flow is gone and this packet meets a reset.
func (e *natDropEffect) forgotten(now, idleSince time.Time) bool {
	if e.done.Load() {
		return true
	}
	if !e.a.active(now) {
		return false
	}
	if idleSince.Before(e.a.start) {
		idleSince = e.a.start
	}
	silence := now.Sub(idleSince)
	if silence < e.idle || !e.done.CompareAndSwap(false, true) {
		return e.done.Load()
	}
	e.a.fire(ActionRST, fmt.Sprintf("flow forgotten after %s idle (bound %s); next packet answered with a reset",
		silence.Round(time.Microsecond), e.idle))
	e.a.h.reset()
	return true
}
