package attribution

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Number is a duration someone on the path is known to act at: our own
// keepalive probes, a fault we injected, or a middlebox's default
// timeout. A fingerprint (a cluster of errors, or a threshold below which
// none happened) that matches one is named as that.
type Number struct {
	Seconds float64 `json:"s"`
	// Kind: NumberKeepalive and NumberFault are ours; NumberMiddlebox is a
	// known default of a box we do not run.
	Kind  string `json:"kind"`
	Words string `json:"words"`
	// Where is the hop it acts on, when known ("p1/client").
	Where string `json:"where,omitempty"`
	// Idle: an idle timeout (a stream silent this long is cut), which a
	// heartbeat interval must stay below.
	Idle bool `json:"idle,omitempty"`
}

// Kinds of Number, in the order a match is looked for: ours first, so a
// number that belongs to our keepalive or to a fault we injected is never
// named as a middlebox that shares it.
const (
	NumberKeepalive = "keepalive"
	NumberFault     = "fault"
	NumberMiddlebox = "middlebox"
)

// Middlebox is a known default timeout that cuts idle or long-lived
// connections.
type Middlebox struct {
	Name    string
	Timeout time.Duration
}

// KnownTimeouts are the defaults fingerprints are compared with.
var KnownTimeouts = []Middlebox{
	{"Node.js keep-alive timeout", 5 * time.Second},
	{"load balancer / nginx idle timeout", 60 * time.Second},
	{"Cloudflare proxy timeout", 100 * time.Second},
	{"NAT gateway idle timeout", 350 * time.Second},
}

// MatchTolerance is how far (relative) a measured value may lie from a
// number and still match it: timers fire late and idle is measured at the
// client, so a little above is normal.
const MatchTolerance = 0.10

// Near reports whether v is within MatchTolerance of target.
func Near(v, target float64) bool {
	return target > 0 && math.Abs(v-target) <= MatchTolerance*target
}

// numbers is the engine's list, ours first.
type numbers []Number

// Numbers lists the durations of this picture: the proxies' and the
// clients' keepalive periods, the durations of the faults the proxies
// were given (divided by their time scale), then the known middlebox
// defaults, plain and divided by the files' time scale.
func (e *Engine) Numbers() []Number { return e.numbers }

func (e *Engine) buildNumbers() numbers {
	var out numbers
	add := func(n Number) {
		if n.Seconds > 0 && !slices.ContainsFunc(out, func(m Number) bool { return m.Kind == n.Kind && m.Words == n.Words }) {
			out = append(out, n)
		}
	}
	for _, r := range e.in.Proxies {
		p := r.R
		if p.Keepalive > 0 {
			add(Number{Seconds: p.Keepalive.Seconds(), Kind: NumberKeepalive, Words: fmt.Sprintf("proxy %s's own keepalive probe (--keepalive %s)", p.Name, fmtDur(p.Keepalive.D()))})
		}
	}
	for _, f := range e.in.Files {
		if ka := f.Run.Keepalive; ka > 0 {
			add(Number{Seconds: ka.Seconds(), Kind: NumberKeepalive, Words: fmt.Sprintf("the clients' own keepalive probe (%s, %s)", fmtDur(ka.D()), f.Name)})
		}
	}
	for _, r := range e.in.Proxies {
		p := r.R
		scale := p.TimeScale
		if scale <= 0 {
			scale = 1
		}
		for _, spec := range p.Faults {
			for _, kv := range strings.Split(specParams(spec), ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					continue
				}
				d, err := time.ParseDuration(v)
				if err != nil || d <= 0 {
					continue
				}
				words := fmt.Sprintf("injected fault %s of proxy %s (%s=%s", spec, p.Name, k, v)
				if scale != 1 {
					words += fmt.Sprintf(" at time scale %s = %s", fmtScale(scale), fmtSeconds(d.Seconds()/scale))
				}
				add(Number{Seconds: d.Seconds() / scale, Kind: NumberFault, Words: words + ")", Where: p.Name + "/" + hopOfSpec(spec), Idle: k == "idle"})
			}
		}
	}
	// Fault firings state the bound they acted at ("idle 1.0003s (idle
	// bound 1s)"): presets name no duration in their spec.
	for _, h := range e.hops {
		for _, f := range h.faults {
			if !strings.Contains(f.detail, "bound ") {
				continue
			}
			if d, ok := durationIn(f.detail); ok {
				add(Number{Seconds: d.Seconds(), Kind: NumberFault, Words: fmt.Sprintf("the %s bound (%s) of fault %s of proxy %s", f.kind, fmtSeconds(d.Seconds()), f.name, e.proxyName(h)),
					Where: e.proxyName(h) + "/" + h.h.Hop, Idle: true})
			}
		}
	}
	scale := 1.0
	for _, f := range e.in.Files {
		if f.Run.TimeScale > 0 && f.Run.TimeScale != 1 {
			scale = f.Run.TimeScale
		}
	}
	for _, r := range e.in.Proxies {
		if r.R.TimeScale > 0 && r.R.TimeScale != 1 {
			scale = r.R.TimeScale
		}
	}
	for _, m := range KnownTimeouts {
		add(Number{Seconds: m.Timeout.Seconds(), Kind: NumberMiddlebox, Words: fmt.Sprintf("%s (%s)", m.Name, fmtSeconds(m.Timeout.Seconds()))})
	}
	if scale != 1 {
		for _, m := range KnownTimeouts {
			t := m.Timeout.Seconds() / scale
			add(Number{Seconds: t, Kind: NumberMiddlebox, Words: fmt.Sprintf("%s (%s at time scale %s = %s)", m.Name,
				fmtSeconds(m.Timeout.Seconds()), fmtScale(scale), fmtSeconds(t))})
		}
	}
	return out
}

// NameNumber finds the number s (seconds) matches, ours first.
func NameNumber(nums []Number, s float64) (Number, bool) {
	for _, kind := range []string{NumberKeepalive, NumberFault, NumberMiddlebox} {
		for _, n := range nums {
			if n.Kind == kind && Near(s, n.Seconds) {
				return n, true
			}
		}
	}
	return Number{}, false
}

// specParams is the key=value part of a fault spec ("reset:after=5s" →
// "after=5s").
func specParams(spec string) string {
	_, params, _ := strings.Cut(spec, ":")
	return params
}

// hopOfSpec is the hop a fault spec names (the proxy's default is the
// client hop).
func hopOfSpec(spec string) string {
	for _, kv := range strings.Split(specParams(spec), ",") {
		if v, ok := strings.CutPrefix(kv, "hop="); ok {
			return v
		}
	}
	return "client"
}

// durationIn finds the configured duration in a fault's detail: the one
// after "bound", else the first Go duration ("1s", "250ms", "1m30s"), also
// as key=value ("idle=1s"); ok is false when there is none.
func durationIn(text string) (time.Duration, bool) {
	if _, after, ok := strings.Cut(text, "bound "); ok {
		if d, ok := firstDuration(after); ok {
			return d, true
		}
	}
	return firstDuration(text)
}

func firstDuration(text string) (time.Duration, bool) {
	fields := strings.FieldsFunc(text, func(r rune) bool {
		return r == ' ' || r == '=' || r == ',' || r == ';' || r == ':' || r == '(' || r == ')' || r == '\t'
	})
	for _, f := range fields {
		if f == "" || (f[0] < '0' || f[0] > '9') && f[0] != '.' {
			continue
		}
		if d, err := time.ParseDuration(f); err == nil && d > 0 {
			return d, true
		}
	}
	return 0, false
}

// FmtSeconds formats seconds for people: "0.25 s", "1.0 s", "60 s", "5.8
// min" (the reports' one format).
func FmtSeconds(s float64) string { return fmtSeconds(s) }

// FmtScale writes a time scale: "60", "2.5".
func FmtScale(s float64) string { return fmtScale(s) }

func fmtSeconds(s float64) string {
	switch {
	case s == 0:
		return "0 s"
	case s < 0.01:
		return strconv.FormatFloat(s*1000, 'f', 2, 64) + " ms"
	case s < 1:
		return strconv.FormatFloat(s*1000, 'f', 0, 64) + " ms"
	case s < 10:
		return strconv.FormatFloat(s, 'f', 1, 64) + " s"
	case s < 600:
		return strconv.FormatFloat(s, 'f', 0, 64) + " s"
	case s < 3*3600:
		return strconv.FormatFloat(s/60, 'f', 1, 64) + " min"
	default:
		return strconv.FormatFloat(s/3600, 'f', 1, 64) + " h"
	}
}

func fmtScale(s float64) string { return strconv.FormatFloat(s, 'g', 4, 64) }
