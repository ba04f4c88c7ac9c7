package analysis

import (
	"strings"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/session"
)

// OriginUnknown is the origin of an error nothing explains; HopUnknown its
// hop.
const (
	OriginUnknown = "unknown"
	HopUnknown    = "?"
)

// Confidence levels of an explanation (attribution's).
const (
	ConfidenceHigh   = attribution.ConfidenceHigh
	ConfidenceMedium = attribution.ConfidenceMedium
	ConfidenceLow    = attribution.ConfidenceLow
	ConfidenceNone   = attribution.ConfidenceNone
)

// Verdict is the report's conclusion, as the attribution engine draws it:
// its Statement's first sentence is the answer.
type Verdict = attribution.Verdict

// origin is where one error came from, as the attribution engine
// explained it: the key of ErrorPattern.
type origin struct {
	Hop        string // where the root happened: "B/upstream", "direct", "?"
	Origin     string // who sent it: "server", "proxy B", "middlebox", "client", "unknown"
	Cause      string // injected, natural, forged, lost-state, unknown
	Via        string // the proxies that passed it on, innermost first: "B, A"
	Confidence string
	Fault      string // the injected fault's kind, "" when natural
	Evidence   string
}

// originOf reduces an explanation to the few words the tables group by.
func originOf(x *attribution.Explanation) origin {
	o := origin{Hop: x.Where(), Cause: x.Kind, Confidence: x.Confidence, Evidence: x.Evidence}
	switch x.Sender.Role {
	case session.RoleProxy, session.RoleMiddlebox:
		o.Origin = x.Sender.Role
		if x.Sender.Name != "" {
			o.Origin += " " + x.Sender.Name
		}
	case "", attribution.RoleUnknown:
		o.Origin = OriginUnknown
	default:
		o.Origin = x.Sender.Role
	}
	if x.Kind == attribution.KindInjected {
		o.Fault = x.FaultKind
	}
	var via []string
	for _, r := range x.Relays {
		via = append(via, r.Proxy)
	}
	o.Via = strings.Join(via, ", ")
	return o
}

// hopName is how a proxy hop is written in tables: "p1/client".
func hopName(proxy, hop string) string { return proxy + "/" + hop }

// hopWords is how it is written in sentences: "proxy p1 client hop".
func hopWords(hop string) string {
	proxy, side, ok := strings.Cut(hop, "/")
	if !ok {
		switch hop {
		case HopUnknown:
			return "an unknown hop"
		case session.LinkDirect:
			return "the direct client–server connections"
		}
		return hop
	}
	return "proxy " + proxy + " " + side + " hop"
}

func plural(n int64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func pct(n, total int64) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}
