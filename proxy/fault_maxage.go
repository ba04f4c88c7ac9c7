package proxy

import (
	"fmt"
	"time"
)

// maxAgeKind is the fault kind max-age.
var maxAgeKind = &kind{
	summary: "close a connection once it is that old",
	keys:    []keyDoc{{"age", "connection lifetime (required)"}, {"action", "rst or fin (default fin)"}},
	build:   buildMaxAge,
}

type maxAge struct {
	age    time.Duration
	action string
}

func buildMaxAge(fs FaultSpec, scale float64) (behaviour, error) {
	d, err := paramDuration(fs, "age", 0)
	if err != nil {
		return nil, err
	}
	if _, ok := fs.Params["age"]; !ok || d <= 0 {
		return nil, fmt.Errorf("max-age needs age=DURATION (e.g. age=10m)")
	}
	action, err := paramAction(fs, ActionFIN, ActionFIN, ActionRST)
	if err != nil {
		return nil, err
	}
	return maxAge{scaled(d, scale), action}, nil
}

func (m maxAge) attach(a *attachment) any {
	at := a.h.open.Add(m.age)
	if at.Before(a.start) {
		at = a.start
	}
	a.at(at, func() {
		a.fire(m.action, "age "+time.Since(a.h.open).Round(time.Microsecond).String()+" (max "+m.age.String()+")")
		a.h.closeWith(m.action, "proxy")
	})
	return struct{}{}
}
