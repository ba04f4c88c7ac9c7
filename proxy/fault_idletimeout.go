package proxy

import (
	"fmt"
	"sync"
	"time"
)

// idleTimeoutKind is the fault kind idle-timeout.
var idleTimeoutKind = &kind{
	summary: "close when no byte passed for idle, like a load balancer", directional: true, defaultDir: DirBoth,
	keys: []keyDoc{{"idle", "silence that closes (required)"}, {"action", "rst or fin (default fin)"},
		{"scope", "always (default) or between-requests (a keep-alive timeout: only while no request is in flight)"}},
	build: buildIdleTimeout,
}

type idleTimeout struct {
	idle        time.Duration
	action      string
	betweenReqs bool
}

func buildIdleTimeout(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "idle", 0)
	if err != nil {
		return nil, err
	}
	if _, ok := fs.Params["idle"]; !ok || d <= 0 {
		return nil, fmt.Errorf("idle-timeout needs idle=DURATION (e.g. idle=60s)")
	}
	action, err := paramAction(fs, ActionFIN, ActionFIN, ActionRST)
	if err != nil {
		return nil, err
	}
	scope := fs.Params["scope"]
	if scope != "" && scope != "always" && scope != "between-requests" {
		return nil, fmt.Errorf("scope %q must be always or between-requests", scope)
	}
	return idleTimeout{scaled(d, scale), action, scope == "between-requests"}, nil
}

func (t idleTimeout) attach(a *attachment) any {
	e := &idleEffect{a: a, t: t}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.timer = a.at(a.start.Add(t.idle), e.check)
	return e
}

type idleEffect struct {
	a     *attachment
	t     idleTimeout
	mu    sync.Mutex
	timer *time.Timer
}

// rearm runs check again at t.
func (e *idleEffect) rearm(t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.timer != nil {
		e.timer.Reset(time.Until(t))
	}
}

// check runs when the connection may have been idle for long enough; it
// fires or re-arms for the time still missing.
func (e *idleEffect) check() {
	now := time.Now()
	if e.t.betweenReqs && e.a.h.inflight.Load() > 0 {
		e.rearm(now.Add(e.t.idle))
		return
	}
	last := e.a.h.lastActivity(e.a.dirs)
	if last.Before(e.a.start) {
		last = e.a.start
	}
	if e.t.betweenReqs {
		// The response's last bytes may still sit in the server's buffer:
		// the idle time between requests starts when the request ends.
		if end := time.Unix(0, e.a.h.requestEnd.Load()); end.After(last) {
			last = end
		}
	}
	idle := now.Sub(last)
	if idle < e.t.idle {
		e.rearm(last.Add(e.t.idle))
		return
	}
	e.a.fire(e.t.action, fmt.Sprintf("idle %s (idle bound %s)", idle.Round(time.Microsecond), e.t.idle))
	e.a.h.closeWith(e.t.action, "proxy")
}
