package analysis

import (
	"strconv"

	"github.com/ssestress/ssestress/analysis/attribution"
)

// Middlebox is a known default timeout that cuts idle or long-lived
// connections (attribution's list is the one fingerprints are named by).
type Middlebox = attribution.Middlebox

// KnownTimeouts are the defaults the fingerprint column names.
var KnownTimeouts = attribution.KnownTimeouts

// matchTolerance is how far (relative) a value may lie from another and
// still match it.
const matchTolerance = attribution.MatchTolerance

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

// near reports whether v is within matchTolerance of target.
func near(v, target float64) bool { return attribution.Near(v, target) }

// fmtSeconds formats seconds for people: "0.25 s", "1.0 s", "60 s", "5.8 min".
func fmtSeconds(s float64) string { return attribution.FmtSeconds(s) }

// fmtScale writes a time scale: "60", "2.5".
func fmtScale(s float64) string { return attribution.FmtScale(s) }

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
