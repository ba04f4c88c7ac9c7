package analysis

import (
	"fmt"
	"slices"
	"strings"
)

// originKey groups resets for the verdict.
type originKey struct{ origin, hop, fault string }

// describeOrigin says in words who sent a reset.
func describeOrigin(k originKey) string {
	switch {
	case k.fault != "":
		return fmt.Sprintf("the injected %s fault on %s", k.fault, hopWords(k.hop))
	case k.origin == OriginServer:
		return fmt.Sprintf("the server (seen on %s)", hopWords(k.hop))
	case k.origin == OriginClient:
		return fmt.Sprintf("the client side (ssestress closed them, seen on %s)", hopWords(k.hop))
	case k.origin == OriginMiddlebox || strings.HasPrefix(k.origin, OriginMiddlebox+" "):
		if k.origin == OriginMiddlebox {
			return fmt.Sprintf("a middlebox on %s", hopWords(k.hop))
		}
		return fmt.Sprintf("%s on %s", k.origin, hopWords(k.hop))
	case strings.HasPrefix(k.origin, "proxy "):
		return fmt.Sprintf("%s itself on its %s", k.origin, strings.TrimPrefix(hopWords(k.hop), k.origin+" "))
	}
	return "an unknown sender"
}

var confidenceRank = map[string]int{ConfidenceNone: 0, ConfidenceLow: 1, ConfidenceMedium: 2, ConfidenceHigh: 3}

// verdict concludes where the resets come from, with the counts behind it.
func verdict(rep *Report) Verdict {
	var v Verdict
	var total int64
	groups := map[originKey]int64{}
	conf := map[originKey]string{}
	evid := map[originKey]map[string]int64{}
	classes := map[originKey]map[string]bool{}
	for _, p := range rep.Patterns {
		total += p.Count
		if !isResetClass(p.Class) {
			continue
		}
		v.Resets += p.Count
		k := originKey{p.Origin, p.Hop, p.Fault}
		groups[k] += p.Count
		if confidenceRank[p.Confidence] > confidenceRank[conf[k]] || conf[k] == "" {
			conf[k] = p.Confidence
		}
		if evid[k] == nil {
			evid[k], classes[k] = map[string]int64{}, map[string]bool{}
		}
		evid[k][p.Evidence] += p.Count
		classes[k][p.Class] = true
	}
	if total == 0 {
		v.Confidence = ConfidenceNone
		v.Statement = "No errors were recorded: nothing to explain."
		return v
	}
	if v.Resets == 0 {
		v.Confidence = ConfidenceNone
		top := rep.Patterns[0]
		v.Statement = fmt.Sprintf("No resets (ECONNRESET, UNEXPECTED_EOF, EPIPE) were recorded. %d errors of other classes, most often %s (%d).",
			total, top.Class, classCount(rep, top.Class))
		if top.Origin != OriginUnknown {
			v.Evidence = append(v.Evidence, fmt.Sprintf("%d %s from %s (%s, %s confidence)", top.Count, top.Class,
				describeOrigin(originKey{top.Origin, top.Hop, top.Fault}), top.Evidence, top.Confidence))
		}
		return v
	}
	keys := make([]originKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y originKey) int {
		// Known origins before unknown, then by count.
		ux, uy := x.origin == OriginUnknown, y.origin == OriginUnknown
		if ux != uy {
			if uy {
				return -1
			}
			return 1
		}
		if groups[x] != groups[y] {
			if groups[x] > groups[y] {
				return -1
			}
			return 1
		}
		return strings.Compare(x.origin+x.hop+x.fault, y.origin+y.hop+y.fault)
	})
	var unknown int64
	for _, k := range keys {
		if k.origin == OriginUnknown {
			unknown += groups[k]
		}
	}
	known := v.Resets - unknown
	for i, k := range keys {
		if i == 5 {
			break
		}
		n := groups[k]
		cls := sortedKeys(classes[k])
		if k.origin == OriginUnknown {
			line := fmt.Sprintf("%d %s (%s) with no evidence of their sender", n, plural(n, "reset"), strings.Join(cls, ", "))
			if k.hop != HopUnknown {
				line += " on " + hopWords(k.hop)
			}
			v.Evidence = append(v.Evidence, line)
			continue
		}
		var how []string
		for _, e := range sortedKeys(evid[k]) {
			how = append(how, fmt.Sprintf("%d by %s", evid[k][e], e))
		}
		v.Evidence = append(v.Evidence, fmt.Sprintf("%d of %d %s (%s) from %s: %s, %s confidence",
			n, v.Resets, plural(v.Resets, "reset"), strings.Join(cls, ", "), describeOrigin(k), strings.Join(how, ", "), conf[k]))
	}
	var resetClusters []Cluster
	for _, c := range rep.Fingerprints {
		if isResetClass(c.Class) {
			resetClusters = append(resetClusters, c)
			v.Evidence = append(v.Evidence, fmt.Sprintf("fingerprint: %d %s (%.0f%% of them) in a %s",
				c.Count, c.Class, 100*c.Share, c.Match))
		}
	}

	top := keys[0]
	switch {
	case top.origin != OriginUnknown && groups[top]*2 > known && known*2 >= v.Resets:
		v.Origin, v.Hop, v.Fault, v.Confidence = top.origin, top.hop, top.fault, conf[top]
		v.Statement = fmt.Sprintf("Most likely origin of the resets: %s — %d of %d %s (%.0f%%).",
			describeOrigin(top), groups[top], v.Resets, plural(v.Resets, "reset"), pct(groups[top], v.Resets))
		for _, c := range resetClusters {
			if c.Hop == top.hop && c.Origin == top.origin {
				v.Statement += fmt.Sprintf(" Their fingerprint is a %s.", c.Match)
				break
			}
		}
	default:
		v.Confidence = ConfidenceNone
		v.Statement = fmt.Sprintf("Not enough evidence to name the sender of %d of %d %s.",
			unknown, v.Resets, plural(v.Resets, "reset"))
		if known > 0 {
			v.Statement += fmt.Sprintf(" The other %d come from %s.", known, describeOrigin(keys[0]))
		}
		for _, c := range resetClusters {
			if c.MatchKind == "known" || c.MatchKind == "configured" {
				v.Origin, v.Confidence = OriginMiddlebox, ConfidenceLow
				v.Statement += fmt.Sprintf(" Timing alone suggests a middlebox, with low confidence: %d %s in a %s.", c.Count, c.Class, c.Match)
				break
			}
		}
	}
	if rep.Evidence.CaptureDrops > 0 {
		v.Evidence = append(v.Evidence, fmt.Sprintf("the kernel dropped %d of the captured packets: some RSTs may be missing", rep.Evidence.CaptureDrops))
	}
	if unknown > 0 {
		if rep.Evidence.CaptureDisabled != "" {
			v.Enable = append(v.Enable, "--capture was asked for but did not run ("+rep.Evidence.CaptureDisabled+"): run as root or with CAP_NET_RAW")
		} else if !rep.Evidence.Capture {
			v.Enable = append(v.Enable, "--capture: record the packets so each RST is attributed to the host that sent it")
		}
		if !rep.Evidence.ProxyRecords {
			v.Enable = append(v.Enable, "--via-proxy: put an ssestress proxy on the path so each hop records how it ended")
		}
	}
	return v
}

func classCount(rep *Report, class string) int64 {
	var n int64
	for _, p := range rep.Patterns {
		if p.Class == class {
			n += p.Count
		}
	}
	return n
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
