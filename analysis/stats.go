package analysis

import (
	"math"
	"slices"
	"time"
)

// Dist summarises a distribution. Durations are in seconds, counts as they
// are.
type Dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min"`
	P10  float64 `json:"p10"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// distOf summarises values; it sorts them in place.
func distOf(values []float64) Dist {
	if len(values) == 0 {
		return Dist{}
	}
	slices.Sort(values)
	sum := 0.0
	for _, v := range values {
		sum += v
	}
	return Dist{
		N:    len(values),
		Min:  values[0],
		P10:  QuantileSorted(values, 0.10),
		P50:  QuantileSorted(values, 0.50),
		P90:  QuantileSorted(values, 0.90),
		P99:  QuantileSorted(values, 0.99),
		Max:  values[len(values)-1],
		Mean: sum / float64(len(values)),
	}
}

// QuantileSorted is the nearest-rank quantile of sorted values: the value
// below which a fraction q of them lie. Nearest rank keeps results equal to
// a value that was seen, which reads better in a report than interpolation.
func QuantileSorted(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// seconds converts a duration to float seconds.
func seconds(d time.Duration) float64 { return d.Seconds() }

// ksDistance is the two-sample Kolmogorov–Smirnov statistic: the largest
// vertical distance between the empirical distribution functions of a and
// b. Both are sorted in place. It is 0 for identical samples and 1 for
// samples that do not overlap.
func ksDistance(a, b []float64) float64 {
	if len(a) == 0 || len(b) == 0 {
		return math.NaN()
	}
	slices.Sort(a)
	slices.Sort(b)
	var i, j int
	d := 0.0
	for i < len(a) && j < len(b) {
		// Step past every value equal to the smaller head in both samples,
		// so ties do not count as a distance.
		x := min(a[i], b[j])
		for i < len(a) && a[i] == x {
			i++
		}
		for j < len(b) && b[j] == x {
			j++
		}
		fa := float64(i) / float64(len(a))
		fb := float64(j) / float64(len(b))
		d = max(d, math.Abs(fa-fb))
	}
	return d
}

// ksCritical is the distance above which two samples of sizes n and m differ
// at the 5 % level (the asymptotic two-sample critical value,
// c(α) = 1.358 for α = 0.05).
func ksCritical(n, m int) float64 {
	if n == 0 || m == 0 {
		return math.NaN()
	}
	return 1.358 * math.Sqrt(float64(n+m)/float64(n*m))
}

// niceStep picks a bin width from 1-2-5 steps of seconds, minutes and hours
// so that span is cut into at most maxBins bins.
func niceStep(span time.Duration, maxBins int) time.Duration {
	steps := []time.Duration{
		100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
	}
	for _, s := range steps {
		if span/s < time.Duration(maxBins) {
			return s
		}
	}
	return (span/time.Duration(maxBins)/(24*time.Hour) + 1) * 24 * time.Hour
}
