package proxy

import (
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// The proxy's counters and the records that sum them up: Stats (the
// control API's), Summary (meta "summary") and Info (bucket proxies).

// Stats are a proxy's counters.
type Stats struct {
	Conns       int64 `json:"conns"`   // client connections accepted
	Streams     int64 `json:"streams"` // requests proxied
	Live        int   `json:"live"`    // hop connections open now
	Active      int64 `json:"active"`  // client connections open now
	FaultsFired int64 `json:"faults_fired"`
	// ActiveMax is the most client connections open at once.
	ActiveMax int64 `json:"active_max"`
	// EventsDown counts the SSE events forwarded to clients.
	EventsDown int64 `json:"events_down"`
	// AcceptErrors counts failed accepts (EMFILE, ENFILE at the file
	// descriptor limit), each followed by a backoff; DialErrors counts
	// failed upstream dials, whatever the cause.
	AcceptErrors int64 `json:"accept_errors"`
	DialErrors   int64 `json:"dial_errors"`
	// Errors counts by "<hop>:<class>": hop connections the peer reset,
	// failures the proxy saw on a hop (ETIMEDOUT, LINE_TOO_LONG, TLS, ...),
	// failed accepts ("client:EMFILE") and dials ("upstream:EMFILE").
	// Injected faults are in FaultsFired, not here.
	Errors map[string]int64 `json:"errors"`
}

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	p.lmu.Lock()
	live := len(p.live)
	p.lmu.Unlock()
	p.errMu.Lock()
	errs := make(map[string]int64, len(p.errs))
	for k, v := range p.errs {
		errs[k] = v
	}
	p.errMu.Unlock()
	return Stats{Conns: p.nextConn.Load(), Streams: p.streams.Load(), Live: live, Active: p.activeConns.Load(), FaultsFired: p.faultsFired.Load(),
		ActiveMax: p.activeMax.Load(), EventsDown: p.eventsDown.Load(),
		AcceptErrors: p.acceptErrors.Load(), DialErrors: p.dialErrors.Load(), Errors: errs}
}

// Summary is the proxy's end-of-run totals in the session file's form
// (meta "summary", what inspect and report read): duration since Start,
// client connections opened and most open at once, SSE events forwarded
// to clients, and Stats.Errors. The caller adds what the process knows
// (peak memory, the file, records dropped).
func (p *Proxy) Summary() session.Summary {
	st := p.Stats()
	d := time.Since(p.started).Seconds()
	scenario := "proxy"
	if p.name != DefaultName {
		scenario += " " + p.name
	}
	sum := session.Summary{
		Scenario: scenario, DurationS: d,
		ActiveMax: st.ActiveMax, Events: st.EventsDown, Errors: map[string]int64{},
	}
	if d > 0 {
		sum.EventsPerS = float64(st.EventsDown) / d
	}
	return sum
}

// countError counts an error of a hop by class.
func (p *Proxy) countError(hop, class string) {
	if class == "" || class == errclass.EOF {
		return
	}
	p.errMu.Lock()
	p.errs[hop+":"+class]++
	p.errMu.Unlock()
}

// Info is the proxy's description and totals so far, as the session file's
// proxies bucket keeps them.
func (p *Proxy) Info() session.ProxyInfo {
	st := p.Stats()
	info := session.ProxyInfo{
		Name: p.name, Listen: p.Addr(), Mode: session.ModeForward,
		Keepalive: session.Seconds(p.keepalive), OnUpstreamError: p.onUpstreamError, TimeScale: p.scale,
		Faults: p.faultSpecs, Started: p.started,
		Connections: st.Conns, Requests: st.Streams, ActiveMax: st.ActiveMax, Events: st.EventsDown,
		FaultsFired: st.FaultsFired,
	}
	if u := p.upstream.Load(); u != nil {
		info.Mode, info.Upstream = session.ModeReverse, hostPort(u)
	}
	if len(st.Errors) > 0 {
		info.Errors = make(map[string]int64, len(st.Errors))
		for k, n := range st.Errors {
			hop, class, _ := strings.Cut(k, ":")
			info.Errors[hop+" "+class] += n
		}
	}
	info.UnrecordedTunnels = p.tunnels.unrecordedCounts()
	return info
}
