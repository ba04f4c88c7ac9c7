package proxy

import "time"

// slowCloseKind is the fault kind slow-close.
var slowCloseKind = &kind{
	summary: "delay the proxy's close of the socket",
	keys:    []keyDoc{{"delay", "how long the close waits (default 1s)"}},
	build:   buildSlowClose,
}

type slowClose struct{ delay time.Duration }

func buildSlowClose(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "delay", time.Second)
	if err != nil {
		return nil, err
	}
	return slowClose{scaled(d, scale)}, nil
}

func (s slowClose) attach(a *attachment) any { return &slowCloseEffect{a: a, delay: s.delay} }

type slowCloseEffect struct {
	a     *attachment
	delay time.Duration
}

func (e *slowCloseEffect) closeDelay(now time.Time) time.Duration {
	if !e.a.active(now) {
		return 0
	}
	return e.delay
}
