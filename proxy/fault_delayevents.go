package proxy

import (
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// delayEventsKind is the fault kind delay-events.
var delayEventsKind = &kind{
	summary: "delay every SSE event",
	keys:    []keyDoc{{"delay", "added to each event (default 100ms)"}},
	build:   buildDelayEvents,
}

type delayEvents struct{ delay time.Duration }

func buildDelayEvents(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "delay", 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	return delayEvents{scaled(d, scale)}, nil
}

func (d delayEvents) attach(a *attachment) any { return &delayEventsEffect{a: a, delay: d.delay} }

type delayEventsEffect struct {
	a     *attachment
	delay time.Duration
}

func (e *delayEventsEffect) unit(u *unit) {
	if !u.event || !e.a.active(u.arrival) {
		return
	}
	if e.a.firstTime() {
		e.a.fire(session.ActionDelay, "events delayed by "+e.delay.String())
	}
	if at := u.arrival.Add(e.delay); at.After(u.at) {
		u.at = at
	}
}
