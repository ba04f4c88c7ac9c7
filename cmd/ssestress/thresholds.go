package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// Thresholds in the k6 manner: run and replay run take --fail-on EXPR
// (repeatable); once the run has ended, each expression is evaluated on
// what the run measured, its result is printed with the summary, kept in
// --json and in the session file (Summary.Thresholds), and when one holds
// the command exits 3 (thresholdError), after the summary is printed and
// the file closed. The grammar (thresholdHelp) is small and strict: a bad
// expression is exit 2 before anything runs.

// thresholdHelp documents the grammar in --help.
const thresholdHelp = `Thresholds (--fail-on EXPR, repeatable; the command exits 3 when an expression holds):
  EXPR     METRIC OP VALUE, OP one of > >= < <= == !=
  METRIC   a count: errors (client errors, every class), resets (client errors that are TCP
           resets: ECONNRESET, EPIPE), cuts (streams cut without a reset: UNEXPECTED_EOF,
           HTTP/2 RST_STREAM and GOAWAY), an error class (ECONNRESET, HTTP_502,
           H2_RST_STREAM:CANCEL), clients, attempts, reconnects, events
           rate(COUNT): the count per unit of time or of exposure; VALUE needs its unit:
           N/s, N/min, N/h, N/d (run time) or N/connection-hour (summed connection lifetime)
           pNN(DIST), min(DIST), max(DIST), mean(DIST): DIST is age_at_error or idle_at_error
           (connection age, or time since its last byte, at each client error; nearest-rank
           percentiles); VALUE is a duration with its unit (30s)
  e.g.     --fail-on 'ECONNRESET>0' --fail-on 'errors>10' --fail-on 'rate(errors)>1/h'
           --fail-on 'rate(ECONNRESET)>0.5/connection-hour' --fail-on 'p99(idle_at_error)<55s'
  A percentile over no errors has no value and passes; a rate over no time of a count above
  0 is unbounded and fails a > threshold. With --repeat each run is judged on its own (in its
  file and the series' runs) and the series on all runs pooled (counts and exposures summed,
  errors pooled); the series' result decides the exit code.`

// thresholdCounts are the counts a threshold may name besides error
// classes.
var thresholdCounts = []string{"errors", "resets", "cuts", "clients", "attempts", "reconnects", "events"}

// thresholdDists are the distributions a statistic may name.
var thresholdDists = []string{"age_at_error", "idle_at_error"}

// rateUnits are the units of a rate, in seconds of run time; 0 for
// connection-hours.
var rateUnits = map[string]float64{"s": 1, "min": 60, "h": 3600, "d": 86400, "connection-hour": 0}

// threshold is one parsed --fail-on expression.
type threshold struct {
	expr  string
	stat  string  // "" (a count), "rate", "min", "max", "mean" or "p" (a percentile)
	q     float64 // the percentile's fraction
	name  string  // the count or the distribution
	op    string
	bound float64 // the right side: a count, a rate per unit, or seconds
	unit  string  // a rate's unit
}

// thresholdFlags is --fail-on of run and replay run.
type thresholdFlags struct {
	exprs stringList
	set   []threshold
}

func (f *thresholdFlags) register(fs *flagSet) {
	fs.Var(&f.exprs, "fail-on", "exit 3 when `EXPR` holds once the run ended, e.g. 'ECONNRESET>0', 'rate(errors)>1/h', 'p99(idle_at_error)<55s' (repeatable; see Thresholds below)")
}

// check parses every expression: a bad one is a usage error naming it.
func (f *thresholdFlags) check(cmd string) error {
	f.set = nil
	for _, e := range f.exprs {
		th, err := parseThreshold(e)
		if err != nil {
			return usageErrorf("%s: --fail-on %q: %v", cmd, e, err)
		}
		f.set = append(f.set, th)
	}
	return nil
}

// parseThreshold reads METRIC OP VALUE.
func parseThreshold(text string) (threshold, error) {
	th := threshold{expr: strings.TrimSpace(text)}
	i := strings.IndexAny(th.expr, "<>=!")
	if i <= 0 {
		return th, fmt.Errorf("not METRIC OP VALUE (OP one of > >= < <= == !=), e.g. 'ECONNRESET>0'")
	}
	left, rest := strings.TrimSpace(th.expr[:i]), th.expr[i:]
	for _, op := range []string{">=", "<=", "==", "!=", ">", "<"} {
		if strings.HasPrefix(rest, op) {
			th.op, rest = op, strings.TrimSpace(rest[len(op):])
			break
		}
	}
	if th.op == "" || rest == "" || strings.ContainsAny(rest, "<>=!") {
		return th, fmt.Errorf("not METRIC OP VALUE (OP one of > >= < <= == !=), e.g. 'ECONNRESET>0'")
	}
	name := left
	if open := strings.IndexByte(left, '('); open >= 0 {
		if !strings.HasSuffix(left, ")") {
			return th, fmt.Errorf("%q: a function's argument ends with )", left)
		}
		fn := strings.TrimSpace(left[:open])
		name = strings.TrimSpace(left[open+1 : len(left)-1])
		switch {
		case fn == "rate":
			th.stat = "rate"
		case fn == "min", fn == "max", fn == "mean":
			th.stat = fn
		case len(fn) > 1 && fn[0] == 'p':
			q, err := strconv.ParseFloat(fn[1:], 64)
			if err != nil || q <= 0 || q > 100 {
				return th, fmt.Errorf("%q is not a percentile (p50, p90, p99, p99.9)", fn)
			}
			th.stat, th.q = "p", q/100
		default:
			return th, fmt.Errorf("unknown function %q (rate, pNN, min, max, mean)", fn)
		}
	}
	if th.stat == "" || th.stat == "rate" {
		if !slices.Contains(thresholdCounts, name) {
			class := strings.ToUpper(name)
			if slices.Contains(thresholdDists, name) {
				return th, fmt.Errorf("%s is a distribution: give a statistic, e.g. p99(%s)", name, name)
			}
			if !errorClassSyntax.MatchString(class) || !knownErrorClass(class) {
				return th, fmt.Errorf("%q is neither a count (%s) nor an error class known here (%s, HTTP_<status>, %s<code>, %s<code>)",
					name, strings.Join(thresholdCounts, ", "), strings.Join(errorClasses, ", "), errclass.H2RSTStreamPrefix, errclass.H2GoAwayPrefix)
			}
			name = class
		}
	} else if !slices.Contains(thresholdDists, name) {
		return th, fmt.Errorf("%s(%s): the statistics take %s", th.stat, name, strings.Join(thresholdDists, " or "))
	}
	th.name = name
	switch th.stat {
	case "":
		n, err := strconv.ParseFloat(rest, 64)
		if err != nil || n < 0 || math.IsInf(n, 0) {
			return th, fmt.Errorf("%q is not a count (a number, e.g. 0 or 10)", rest)
		}
		th.bound = n
	case "rate":
		num, unit, ok := strings.Cut(rest, "/")
		n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || n < 0 || math.IsInf(n, 0) {
			return th, fmt.Errorf("%q is not a rate: write N/s, N/min, N/h, N/d or N/connection-hour", rest)
		}
		unit = strings.TrimSpace(unit)
		if _, known := rateUnits[unit]; !ok || !known {
			return th, fmt.Errorf("a rate needs its unit: write %s/s, %s/min, %s/h, %s/d or %s/connection-hour", num, num, num, num, num)
		}
		th.bound, th.unit = n, unit
	default:
		d, err := dur.Parse(rest)
		if err != nil {
			return th, fmt.Errorf("%s(%s) is a duration: %v", th.stat, name, err)
		}
		th.bound = d.Seconds()
	}
	return th, nil
}

// holds compares v with the threshold's bound.
func (th threshold) holds(v float64) bool {
	switch th.op {
	case ">":
		return v > th.bound
	case ">=":
		return v >= th.bound
	case "<":
		return v < th.bound
	case "<=":
		return v <= th.bound
	case "==":
		return v == th.bound
	}
	return v != th.bound
}

// thresholdData is what thresholds are evaluated on: one run's, or a
// series' pooled.
type thresholdData struct {
	errors                                map[string]int64
	clients, attempts, reconnects, events int64
	runS                                  float64   // run time
	connHours                             float64   // summed connection lifetime (when a rate asks for it)
	age, idle                             []float64 // seconds, at each client error (when a statistic asks)
}

// add pools o into d.
func (d *thresholdData) add(o thresholdData) {
	if d.errors == nil {
		d.errors = map[string]int64{}
	}
	for k, n := range o.errors {
		d.errors[k] += n
	}
	d.clients += o.clients
	d.attempts += o.attempts
	d.reconnects += o.reconnects
	d.events += o.events
	d.runS += o.runS
	d.connHours += o.connHours
	d.age = append(d.age, o.age...)
	d.idle = append(d.idle, o.idle...)
}

// needs reports what beyond the summary the thresholds read.
func (f *thresholdFlags) needs() (connHours, dists bool) {
	for _, th := range f.set {
		connHours = connHours || (th.stat == "rate" && th.unit == "connection-hour")
		dists = dists || (th.stat != "" && th.stat != "rate")
	}
	return connHours, dists
}

// collect reads a run's data: the counts from its summary; the connection
// lifetime and the errors' ages and idle times from its records, when a
// threshold asks for them.
func (f *thresholdFlags) collect(r *session.Reader, sum session.Summary) (thresholdData, error) {
	d := thresholdData{errors: map[string]int64{}, clients: sum.Clients, attempts: sum.Attempts, reconnects: sum.Reconnects,
		events: sum.Events, runS: sum.DurationS}
	for k, n := range sum.Errors {
		d.errors[k] = n
	}
	connHours, dists := f.needs()
	if connHours {
		rep, err := analysis.Load(r)
		if err != nil {
			return d, fmt.Errorf("thresholds: %w", err)
		}
		d.connHours = rep.Connections.ConnHours
	}
	if dists {
		err := session.Decode(r, session.BucketErrors, func(e *session.ErrorRecord) error {
			if e.Source == session.SourceClient {
				d.age = append(d.age, e.Age.D().Seconds())
				d.idle = append(d.idle, e.Idle.D().Seconds())
			}
			return nil
		})
		if err != nil {
			return d, fmt.Errorf("thresholds: %w", err)
		}
	}
	return d, nil
}

// count is a count the thresholds name.
func (d thresholdData) count(name string) float64 {
	switch name {
	case "clients":
		return float64(d.clients)
	case "attempts":
		return float64(d.attempts)
	case "reconnects":
		return float64(d.reconnects)
	case "events":
		return float64(d.events)
	}
	var n int64
	for class, c := range d.errors {
		switch {
		case name == "errors",
			name == "resets" && attribution.IsReset(class),
			name == "cuts" && attribution.IsCut(class),
			name == class:
			n += c
		}
	}
	return float64(n)
}

// evaluate judges every threshold on d.
func (f *thresholdFlags) evaluate(d thresholdData) []session.Threshold {
	var out []session.Threshold
	for _, th := range f.set {
		res := session.Threshold{Expr: th.expr}
		var v float64
		switch th.stat {
		case "":
			v = d.count(th.name)
		case "rate":
			res.Unit = "/" + th.unit
			exposure := d.connHours
			if per := rateUnits[th.unit]; per > 0 {
				exposure = d.runS / per
			}
			n := d.count(th.name)
			switch {
			case n == 0:
				v = 0
			case exposure <= 0:
				v = math.Inf(1)
				res.Note = "no " + map[bool]string{true: "connection time", false: "run time"}[th.unit == "connection-hour"] + ": the rate is unbounded"
			default:
				v = n / exposure
			}
		default:
			res.Unit = "s"
			values := d.age
			if th.name == "idle_at_error" {
				values = d.idle
			}
			if len(values) == 0 {
				res.Note = "no client errors: nothing to measure"
				res.Passed = true
				out = append(out, res)
				continue
			}
			v = statistic(th, values)
		}
		res.Passed = !th.holds(v)
		if !math.IsInf(v, 0) {
			res.Value = &v
		}
		out = append(out, res)
	}
	return out
}

// statistic is min, max, mean or a nearest-rank percentile of values (as
// the report's distributions).
func statistic(th threshold, values []float64) float64 {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	switch th.stat {
	case "min":
		return sorted[0]
	case "max":
		return sorted[len(sorted)-1]
	case "mean":
		sum := 0.0
		for _, v := range sorted {
			sum += v
		}
		return sum / float64(len(sorted))
	}
	return analysis.QuantileSorted(sorted, th.q)
}

// judge evaluates the thresholds on the run whose records w holds and
// whose summary is sum, and stores the results in sum (before the summary
// is written). Nothing happens without --fail-on.
func (f *thresholdFlags) judge(w *session.Writer, sum *session.Summary) error {
	if len(f.set) == 0 {
		return nil
	}
	w.Flush()
	d, err := f.collect(w.Reader(), *sum)
	if err != nil {
		return err
	}
	sum.Thresholds = f.evaluate(d)
	return nil
}

// series judges the thresholds on the runs of a --repeat series pooled,
// reading each run's closed session file.
func (f *thresholdFlags) series(paths []string) ([]session.Threshold, error) {
	if len(f.set) == 0 || len(paths) == 0 {
		return nil, nil
	}
	var pooled thresholdData
	for _, p := range paths {
		r, err := session.Open(p)
		if err != nil {
			return nil, err
		}
		var sum session.Summary
		if _, err := r.Meta(session.MetaSummary, &sum); err != nil {
			r.Close()
			return nil, fmt.Errorf("%s: summary: %w", p, err)
		}
		d, err := f.collect(r, sum)
		r.Close()
		if err != nil {
			return nil, err
		}
		pooled.add(d)
	}
	return f.evaluate(pooled), nil
}

// thresholdsFailed is the exit-3 error for results with a failure (nil
// when every threshold passed).
func thresholdsFailed(cmd string, results []session.Threshold) error {
	var failed []string
	for _, r := range results {
		if !r.Passed {
			failed = append(failed, r.Expr+" ("+thresholdValue(r)+")")
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &thresholdError{msg: fmt.Sprintf("%s: threshold failed: %s", cmd, strings.Join(failed, "; "))}
}

// printThresholds writes one line per threshold after the summary.
func printThresholds(w io.Writer, title string, results []session.Threshold) {
	if len(results) == 0 {
		return
	}
	width := 0
	for _, r := range results {
		width = max(width, len(r.Expr))
	}
	fmt.Fprintln(w, title)
	for _, r := range results {
		verdict := "passed"
		if !r.Passed {
			verdict = "FAILED"
		}
		line := fmt.Sprintf("  %-6s  %-*s  %s", verdict, width, r.Expr, thresholdValue(r))
		if r.Note != "" {
			line += " (" + r.Note + ")"
		}
		fmt.Fprintln(w, line)
	}
}

// thresholdValue writes a result's value with its unit.
func thresholdValue(r session.Threshold) string {
	switch {
	case r.Value == nil && r.Note != "" && strings.Contains(r.Note, "unbounded"):
		return "∞" + r.Unit
	case r.Value == nil:
		return "no value"
	case r.Unit == "s":
		return dur.Format(time.Duration(*r.Value * float64(time.Second)))
	}
	return strconv.FormatFloat(*r.Value, 'g', 6, 64) + r.Unit
}

// printSeriesThresholds writes the series' thresholds and the runs that
// failed one on their own.
func printSeriesThresholds(w io.Writer, ss seriesSummary) {
	printThresholds(w, "thresholds (--fail-on) over the series' runs pooled:", ss.Thresholds)
	for _, r := range ss.Runs {
		if err := thresholdsFailed(fmt.Sprintf("run %d", r.Run), r.Summary.Thresholds); err != nil {
			fmt.Fprintf(w, "  %s\n", err)
		}
	}
}
