package proxy

import (
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// timeoutKind is the fault kind timeout.
var timeoutKind = &kind{
	summary: "stop passing data, close after timeout", directional: true, defaultDir: DirBoth,
	keys:  []keyDoc{{"timeout", "close this long after the data stops; 0 = never, a black hole (default 0)"}, {"action", "fin (default) or rst"}},
	build: buildTimeout,
}

type timeout struct {
	timeout time.Duration
	action  string
}

func buildTimeout(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "timeout", 0)
	if err != nil {
		return nil, err
	}
	action, err := paramAction(fs, ActionFIN, ActionFIN, ActionRST)
	if err != nil {
		return nil, err
	}
	return timeout{scaled(d, scale), action}, nil
}

func (t timeout) attach(a *attachment) any {
	e := &timeoutEffect{a: a, t: t}
	a.at(a.start, func() {
		detail := "data stopped, never closed"
		if t.timeout > 0 {
			detail = "data stopped, close in " + t.timeout.String()
		}
		a.fire(session.ActionBlackhole, detail)
	})
	if t.timeout > 0 {
		a.at(a.start.Add(t.timeout), func() {
			a.fire(t.action, "closed "+t.timeout.String()+" after the data stopped")
			a.closeConn(t.action)
		})
	}
	return e
}

type timeoutEffect struct {
	a *attachment
	t timeout
}

func (e *timeoutEffect) blocks(now time.Time) bool { return e.a.active(now) }
