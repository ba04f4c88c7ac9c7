package analysis

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Middlebox is a known default timeout that cuts idle or long-lived
// connections: the fingerprints a cluster of resets is compared with.
type Middlebox struct {
	Name    string
	Timeout time.Duration
}

// KnownTimeouts are the defaults the fingerprint column names.
var KnownTimeouts = []Middlebox{
	{"Node.js keep-alive timeout", 5 * time.Second},
	{"load balancer / nginx idle timeout", 60 * time.Second},
	{"Cloudflare proxy timeout", 100 * time.Second},
	{"NAT gateway idle timeout", 350 * time.Second},
}

// matchTolerance is how far (relative) a cluster's centre may lie from a
// timeout and still match it: timers fire late and idle is measured at the
// client, so a little above the timeout is normal.
const matchTolerance = 0.10

// Cluster detection parameters.
const (
	// clusterWidth is the relative width of a cluster window: values in
	// [v, v·(1+clusterWidth)+clusterSlack].
	clusterWidth = 0.10
	clusterSlack = 0.05 // seconds, so tiny values still group
	// clusterMinShare and clusterMinCount: a cluster holds at least this
	// share of the class's errors and at least this many.
	clusterMinShare = 0.10
	clusterMinCount = 3
	// clusterMinDensity: the cluster's share of errors is at least this
	// many times its share of the range the values span, so a uniform
	// spread is not called a cluster.
	clusterMinDensity = 4.0
	maxClusters       = 3
)

// span is a half-open range [lo, hi) of indices into sorted values.
type span struct{ lo, hi int }

// findClusters finds up to maxClusters dense groups in sorted values
// (seconds), densest first. It is a pure function of the values.
func findClusters(sorted []float64) []span {
	n := len(sorted)
	if n < clusterMinCount {
		return nil
	}
	valueRange := sorted[n-1] - sorted[0]
	taken := make([]bool, n)
	var out []span
	for len(out) < maxClusters {
		best, bestCount := span{}, 0
		j, inWindow := 0, 0 // window [i, j) counting values not taken
		for i := 0; i < n; i++ {
			if j < i {
				j, inWindow = i, 0
			}
			limit := sorted[i]*(1+clusterWidth) + clusterSlack
			for j < n && sorted[j] <= limit {
				if !taken[j] {
					inWindow++
				}
				j++
			}
			if !taken[i] && inWindow > bestCount {
				best, bestCount = span{i, j}, inWindow
			}
			if !taken[i] {
				inWindow--
			}
		}
		if bestCount < clusterMinCount || float64(bestCount) < clusterMinShare*float64(n) {
			break
		}
		width := sorted[best.hi-1] - sorted[best.lo]
		if valueRange > 0 {
			windowShare := max(width, sorted[best.lo]*clusterWidth+clusterSlack) / valueRange
			if windowShare < 1 && float64(bestCount)/float64(n) < clusterMinDensity*windowShare {
				break
			}
		}
		for k := best.lo; k < best.hi; k++ {
			taken[k] = true
		}
		out = append(out, best)
	}
	return out
}

// knownMatch names the known timeout that center (seconds) matches, at its
// real value or shrunk by timeScale (the proxy's --time-scale: 60 makes a
// 60 s timeout act in 1 s); "" when none does.
func knownMatch(center, timeScale float64) string {
	for _, m := range KnownTimeouts {
		t := m.Timeout.Seconds()
		if near(center, t) {
			return fmt.Sprintf("%s (%s)", m.Name, fmtSeconds(t))
		}
	}
	if timeScale > 0 && timeScale != 1 {
		for _, m := range KnownTimeouts {
			t := m.Timeout.Seconds() / timeScale
			if near(center, t) {
				return fmt.Sprintf("%s (%s at time scale %s = %s)", m.Name, fmtSeconds(m.Timeout.Seconds()),
					fmtScale(timeScale), fmtSeconds(t))
			}
		}
	}
	return ""
}

// near reports whether v is within matchTolerance of target.
func near(v, target float64) bool {
	return target > 0 && math.Abs(v-target) <= matchTolerance*target
}

// durationIn finds the configured duration in a fault's detail: the one
// after "bound", else the first Go duration ("1s", "250ms", "1m30s"), also
// as key=value ("idle=1s"); ok is false when there is none.
func durationIn(text string) (time.Duration, bool) {
	// The proxy writes "idle 1.0003s (idle bound 1s)": the bound is the
	// configured timeout.
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

// fmtSeconds formats seconds for people: "0.25 s", "1.0 s", "60 s", "5.8 min".
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

// fmtScale writes a time scale: "60", "2.5".
func fmtScale(s float64) string { return strconv.FormatFloat(s, 'g', 4, 64) }

// fmtPrecise formats seconds with one more digit than fmtSeconds ("1.02 s",
// "60.4 s"), where a cluster's spread matters.
func fmtPrecise(s float64) string {
	switch {
	case s >= 0.01 && s < 10:
		return strconv.FormatFloat(s, 'f', 2, 64) + " s"
	case s >= 10 && s < 600:
		return strconv.FormatFloat(s, 'f', 1, 64) + " s"
	}
	return fmtSeconds(s)
}
