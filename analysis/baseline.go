package analysis

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/ssestress/ssestress/analysis/attribution"
)

// Comparison is a report before a fix and after it, side by side, with the
// change in error rate by class and by origin (report --baseline).
type Comparison struct {
	Before *Report `json:"before"`
	After  *Report `json:"after"`
	// RateUnit is what rates are per: "connection-hour" when both sides
	// recorded client connections, else "hour" of run time.
	RateUnit string         `json:"rate_unit"`
	Metrics  []MetricChange `json:"metrics"`
	ByClass  []RateChange   `json:"by_class"`
	ByOrigin []RateChange   `json:"by_origin"`
	// Judgement says in one sentence whether broken streams (resets and
	// cuts) became rarer.
	Judgement string `json:"judgement"`
	// ResetsPValue is the two-sided p-value of the rates of resets and cuts
	// being equal (rateTest); Regression is set when they became
	// significantly more frequent (report --baseline then exits 3, as a
	// failed threshold).
	ResetsPValue float64 `json:"resets_p_value"`
	Regression   bool    `json:"regression"`
}

// MetricChange is one line of the side-by-side summary.
type MetricChange struct {
	Metric string `json:"metric"`
	Before string `json:"before"`
	After  string `json:"after"`
	Change string `json:"change"`
	// Unit, BeforeValue and AfterValue are the two values as numbers (the
	// verdict has none): "s", "events", "per connection-hour", ...
	Unit        string  `json:"unit,omitempty"`
	BeforeValue float64 `json:"before_value"`
	AfterValue  float64 `json:"after_value"`
}

// RateChange is the change of one error class's (or origin's) rate.
type RateChange struct {
	Key         string  `json:"key"` // class, or "origin on hop"
	BeforeCount int64   `json:"before_count"`
	BeforeRate  float64 `json:"before_rate"`
	AfterCount  int64   `json:"after_count"`
	AfterRate   float64 `json:"after_rate"`
	// ChangePct is the relative change of the rate in percent (NaN when
	// there was none before).
	ChangePct float64 `json:"change_pct"`
	// PValue is the two-sided p-value of an exact test that the two rates
	// are equal (rateTest); Significant is PValue < 5 %.
	PValue      float64 `json:"p_value"`
	Significant bool    `json:"significant"`
}

// exposure is what an error rate is divided by.
func exposure(rep *Report, unit string) float64 {
	if unit == "connection-hour" {
		return rep.Connections.ConnHours
	}
	var s float64
	for _, sc := range rep.Scenarios {
		s += sc.DurationS
	}
	if s == 0 {
		for _, f := range rep.Files {
			s = max(s, f.DurationS)
		}
	}
	return s / 3600
}

// Compare sets two reports side by side.
func Compare(before, after *Report) *Comparison {
	c := &Comparison{Before: before, After: after, RateUnit: "connection-hour"}
	if before.Connections.ConnHours <= 0 || after.Connections.ConnHours <= 0 {
		c.RateUnit = "hour"
	}
	eb, ea := exposure(before, c.RateUnit), exposure(after, c.RateUnit)

	classes := map[string][2]int64{}
	origins := map[string][2]int64{}
	// broken counts resets (RST) and cuts (FIN inside the stream, HTTP/2
	// stream resets): what a fix is meant to make rarer; resetsOnly and
	// cuts are its two parts, named apart.
	var resets, resetsOnly, cuts [2]int64
	for side, rep := range []*Report{before, after} {
		for _, p := range rep.Patterns {
			v := classes[p.Class]
			v[side] += p.Count
			classes[p.Class] = v
			if !isBrokenClass(p.Class) {
				continue
			}
			resets[side] += p.Count
			if attribution.IsReset(p.Class) {
				resetsOnly[side] += p.Count
			} else {
				cuts[side] += p.Count
			}
			key := originLabel(p)
			v = origins[key]
			v[side] += p.Count
			origins[key] = v
		}
	}
	c.ByClass = rateChanges(classes, eb, ea)
	c.ByOrigin = rateChanges(origins, eb, ea)

	sum := func(rep *Report, f func(ScenarioSummary) float64) float64 {
		var s float64
		for _, sc := range rep.Scenarios {
			s += f(sc)
		}
		return s
	}
	var errsB, errsA int64
	for _, n := range classes {
		errsB += n[0]
		errsA += n[1]
	}
	addMetric := func(name, unit string, b, a float64, format func(float64) string) {
		c.Metrics = append(c.Metrics, MetricChange{Metric: name, Before: format(b), After: format(a), Change: changeText(b, a),
			Unit: unit, BeforeValue: b, AfterValue: a})
	}
	integer := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	addMetric("duration", "s", sum(before, func(s ScenarioSummary) float64 { return s.DurationS }),
		sum(after, func(s ScenarioSummary) float64 { return s.DurationS }), fmtSeconds)
	addMetric("connection attempts", "attempts", float64(before.Connections.Attempts), float64(after.Connections.Attempts), integer)
	addMetric("connection-hours", "h", before.Connections.ConnHours, after.Connections.ConnHours, func(v float64) string { return fmt.Sprintf("%.2f", v) })
	addMetric("events", "events", sum(before, func(s ScenarioSummary) float64 { return float64(s.Events) }),
		sum(after, func(s ScenarioSummary) float64 { return float64(s.Events) }), integer)
	addMetric("events/s", "events/s", sum(before, func(s ScenarioSummary) float64 { return s.EventsPerS }),
		sum(after, func(s ScenarioSummary) float64 { return s.EventsPerS }), rate)
	addMetric("errors", "errors", float64(errsB), float64(errsA), integer)
	addMetric("errors per "+c.RateUnit, "per "+c.RateUnit, perUnit(errsB, eb), perUnit(errsA, ea), rate)
	addMetric("resets (RST)", "resets", float64(resetsOnly[0]), float64(resetsOnly[1]), integer)
	addMetric("cuts (FIN inside the stream)", "cuts", float64(cuts[0]), float64(cuts[1]), integer)
	addMetric("resets and cuts per "+c.RateUnit, "per "+c.RateUnit, perUnit(resets[0], eb), perUnit(resets[1], ea), rate)
	addMetric("median connection lifetime", "s", before.Connections.LifetimeS.P50, after.Connections.LifetimeS.P50, fmtSeconds)
	c.Metrics = append(c.Metrics, MetricChange{Metric: "verdict", Before: verdictShort(before.Verdict), After: verdictShort(after.Verdict)})

	rb, ra := perUnit(resets[0], eb), perUnit(resets[1], ea)
	c.ResetsPValue = rateTest(resets[0], resets[1], eb, ea)
	sig := c.ResetsPValue < significance
	switch {
	case resets[0] == 0 && resets[1] == 0:
		c.Judgement = "No resets or cuts before or after: nothing to compare."
	case !sig:
		c.Judgement = fmt.Sprintf("No significant change in the rate of resets and cuts: %s → %s per %s (%s, p = %s): %d and %d over these exposures could come from one rate.",
			rate(rb), rate(ra), c.RateUnit, changeText(rb, ra), fmtP(c.ResetsPValue), resets[0], resets[1])
	case resets[0] == 0:
		c.Regression = true
		c.Judgement = fmt.Sprintf("Resets or cuts appeared: none before, %d after (%s per %s; p = %s).", resets[1], rate(ra), c.RateUnit, fmtP(c.ResetsPValue))
	case ra < rb:
		c.Judgement = fmt.Sprintf("Fewer resets and cuts: the rate fell from %s to %s per %s (%s, significant: p = %s).", rate(rb), rate(ra), c.RateUnit, changeText(rb, ra), fmtP(c.ResetsPValue))
	default:
		c.Regression = true
		c.Judgement = fmt.Sprintf("More resets and cuts: the rate rose from %s to %s per %s (%s, significant: p = %s).", rate(rb), rate(ra), c.RateUnit, changeText(rb, ra), fmtP(c.ResetsPValue))
	}
	return c
}

// significance is the p-value below which a change counts as significant.
const significance = 0.05

// fmtP writes a p-value: "0.031", "2.6e-06", "< 1e-300".
func fmtP(p float64) string {
	switch {
	case p <= 0:
		return "< 1e-300"
	case p >= 0.001:
		return strconv.FormatFloat(p, 'g', 2, 64)
	}
	return strconv.FormatFloat(p, 'e', 1, 64)
}

// originLabel names an origin on its hop: "proxy p1 (idle-timeout) on p1/client".
func originLabel(p ErrorPattern) string {
	o := p.Origin
	if p.Fault != "" {
		o += " (" + p.Fault + ")"
	}
	return o + " on " + p.Hop
}

func verdictShort(v Verdict) string {
	if v.Cause == nil {
		return "nothing to explain"
	}
	if v.Cause.Kind == attribution.KindUnknown {
		return "not enough evidence"
	}
	o := originOf(v.Cause)
	s := o.Origin
	if o.Fault != "" {
		s += " (" + o.Fault + ")"
	}
	return s + " on " + o.Hop + ", " + v.Confidence
}

func perUnit(n int64, exposure float64) float64 {
	if exposure <= 0 {
		return 0
	}
	return float64(n) / exposure
}

func rateChanges(counts map[string][2]int64, eb, ea float64) []RateChange {
	var out []RateChange
	for _, k := range sortedKeys(counts) {
		n := counts[k]
		rc := RateChange{Key: k, BeforeCount: n[0], AfterCount: n[1], BeforeRate: perUnit(n[0], eb), AfterRate: perUnit(n[1], ea),
			ChangePct: math.NaN(), PValue: rateTest(n[0], n[1], eb, ea)}
		rc.Significant = rc.PValue < significance
		if rc.BeforeRate > 0 {
			rc.ChangePct = 100 * (rc.AfterRate - rc.BeforeRate) / rc.BeforeRate
		}
		out = append(out, rc)
	}
	slices.SortStableFunc(out, func(x, y RateChange) int {
		nx, ny := x.BeforeCount+x.AfterCount, y.BeforeCount+y.AfterCount
		switch {
		case nx > ny:
			return -1
		case nx < ny:
			return 1
		}
		return 0
	})
	return out
}

// rateTest is the two-sided p-value of counts b (before, over exposure eb)
// and a (after, over exposure ea) coming from one Poisson rate. It is the
// exact conditional test (the C-test of Przyborowski and Wilenski): given
// n = a+b events in all, a is binomial(n, ea/(ea+eb)) when the rate did not
// change, and the p-value sums the probabilities of every split of n at
// most as likely as the one seen. It is exact for any count, small ones
// included (8 resets in 0.03 connection-hours, then 0 in 0.12: p = 0.2^8 =
// 2.6e-6); past exactLimit events it uses the normal approximation with a
// continuity correction, which is then as good. 1 when there is nothing
// to compare.
func rateTest(b, a int64, eb, ea float64) float64 {
	n := a + b
	if n == 0 || eb <= 0 || ea <= 0 {
		return 1
	}
	p := ea / (ea + eb)
	if n > exactLimit {
		nf := float64(n)
		d := math.Abs(float64(a)-nf*p) - 0.5
		if d <= 0 {
			return 1
		}
		z := d / math.Sqrt(nf*p*(1-p))
		return math.Erfc(z / math.Sqrt2)
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	lnf, _ := math.Lgamma(float64(n + 1))
	logPMF := func(k int64) float64 {
		lk, _ := math.Lgamma(float64(k + 1))
		lnk, _ := math.Lgamma(float64(n - k + 1))
		return lnf - lk - lnk + float64(k)*lp + float64(n-k)*lq
	}
	seen := logPMF(a)
	var sum float64
	for k := int64(0); k <= n; k++ {
		if l := logPMF(k); l <= seen+1e-7 { // as likely or less, up to rounding
			sum += math.Exp(l)
		}
	}
	return min(1, sum)
}

// exactLimit is the number of events up to which rateTest sums the
// binomial exactly.
const exactLimit = 100_000

// changeText writes a relative change: "−95%", "+12%", "new", "gone", "=".
func changeText(before, after float64) string {
	switch {
	case before == after:
		return "="
	case before == 0:
		return "new"
	case after == 0:
		return "gone (−100%)"
	}
	c := 100 * (after - before) / before
	if c < 0 {
		return fmt.Sprintf("−%.0f%%", -c)
	}
	return fmt.Sprintf("+%.0f%%", c)
}

// Doc lays the comparison out: the judgement first, then the summary side
// by side, the rate changes, and both reports' fingerprints and verdicts.
func (c *Comparison) Doc() *Document {
	d := &Document{Title: "ssestress report: before and after", Lead: c.Judgement, Value: c}
	for _, f := range c.Before.Files {
		d.Files = append(d.Files, "before: "+f.Name)
	}
	for _, f := range c.After.Files {
		d.Files = append(d.Files, "after: "+f.Name)
	}
	d.Conclusive = strings.HasPrefix(c.Judgement, "Fewer") || strings.HasPrefix(c.Judgement, "More") || strings.HasPrefix(c.Judgement, "Resets or cuts appeared")

	j := newTable("judgement", "Judgement", "item", "detail")
	j.addLead("judgement", c.Judgement)
	j.add("rates per", c.RateUnit)
	d.Tables = append(d.Tables, j)
	m := newTable("comparison", "Before and after", "measure=measure,unit", "before#=before#", "after#=after#", "change#=change_pct#")
	for _, x := range c.Metrics {
		measure := cell{Text: x.Metric, Data: []string{x.Metric, x.Unit}}
		if x.Unit == "" {
			// The verdicts: words, not values.
			m.addRow(measure, none(x.Before, 1), none(x.After, 1), none(dashIfEmpty(x.Change), 1))
			continue
		}
		change := numData(math.NaN())
		if x.BeforeValue != 0 {
			change = numData(100 * (x.AfterValue - x.BeforeValue) / x.BeforeValue)
		}
		m.addRow(measure, cell{Text: x.Before, Data: []string{numData(x.BeforeValue)}}, cell{Text: x.After, Data: []string{numData(x.AfterValue)}},
			cell{Text: dashIfEmpty(x.Change), Data: []string{change}})
	}
	d.Tables = append(d.Tables, m,
		rateTable("rate_by_class", "Error rate by class (per "+c.RateUnit+")", "class", c.ByClass),
		rateTable("rate_by_origin", "Rate of resets and cuts by origin (per "+c.RateUnit+")", "origin on hop", c.ByOrigin))

	fp := newTable("fingerprints_compared", "Fingerprints before and after", "side", "class", "dimension", "centre#=centre_s#", "count#", "fingerprint")
	fp.Empty = "no cluster on either side"
	for _, side := range []struct {
		name string
		rep  *Report
	}{{"before", c.Before}, {"after", c.After}} {
		for _, cl := range side.rep.Fingerprints {
			fp.addRow(side.name, cl.Class, cl.Dimension, preciseCell(cl.CenterS), count(cl.Count), cl.Match)
		}
	}
	vt := newTable("verdicts", "Verdicts", "side", "verdict")
	vt.add("before", c.Before.Verdict.Statement)
	vt.add("after", c.After.Verdict.Statement)
	d.Tables = append(d.Tables, fp, vt)
	return d
}

func rateTable(id, title, keyName string, rows []RateChange) Table {
	t := newTable(id, title, keyName, "before#=before_count#", "before rate#", "after#=after_count#", "after rate#", "change#=change_pct#",
		"significant=significant,p_value#")
	t.Empty = "none on either side"
	for _, r := range rows {
		sig := "no"
		if r.Significant {
			sig = "yes"
		}
		t.addRow(r.Key, count(r.BeforeCount), rateCell(r.BeforeRate), count(r.AfterCount), rateCell(r.AfterRate),
			cell{Text: changeText(r.BeforeRate, r.AfterRate), Data: []string{numData(r.ChangePct)}},
			cell{Text: sig, Data: []string{sig, numData(r.PValue)}})
	}
	return t
}
