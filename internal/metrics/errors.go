package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxClasses bounds the distinct values of the class label of each family
// of errors: the taxonomy is finite (fixed names, HTTP_<status> for the
// statuses a server answered, the HTTP/2 codes of RFC 9113), but a server
// answering every status it can would multiply the series. The first
// MaxClasses classes seen keep their name; later ones are counted under
// OtherClass, for good (a class never moves from one to the other, so
// every counter only grows).
const MaxClasses = 32

// OtherClass is the class label of the errors beyond MaxClasses (and the
// taxonomy's own catch-all).
const OtherClass = "OTHER"

// classGuard admits the first MaxClasses classes of a family.
type classGuard struct {
	mu   sync.Mutex
	seen map[string]bool
}

func newClassGuard() *classGuard { return &classGuard{seen: map[string]bool{}} }

// label is the label value of class: itself once admitted, OtherClass
// once MaxClasses are.
func (g *classGuard) label(class string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen[class] {
		return class
	}
	if len(g.seen) < MaxClasses {
		g.seen[class] = true
		return class
	}
	return OtherClass
}

// fold returns counts by label: classes not admitted summed under
// OtherClass. Classes are admitted in name order, so the same counts give
// the same series in every process.
func (g *classGuard) fold(counts map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(counts))
	for _, class := range sortedKeys(counts) {
		out[g.label(class)] += counts[class]
	}
	return out
}

// Buckets of age and idle time at an error, in seconds: the edges of the
// report's age and idle tables (analysis), so a dashboard's heatmap and
// the report cut the same way.
var Buckets = []float64{0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 6 * 3600, 24 * 3600}

// ErrorHistograms are the histograms of connection age and of idle time
// (no byte received) at each error, by class and hop.
type ErrorHistograms struct {
	age, idle *prometheus.HistogramVec
	classes   *classGuard
}

func newErrorHistograms(prefix, what string, classes *classGuard) *ErrorHistograms {
	return &ErrorHistograms{
		age: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: prefix + "_age_seconds", Help: "Age of the connection at " + what + ", by error class and hop.", Buckets: Buckets,
		}, []string{"class", "hop"}),
		idle: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: prefix + "_idle_seconds", Help: "Time with no byte received before " + what + ", by error class and hop.", Buckets: Buckets,
		}, []string{"class", "hop"}),
		classes: classes,
	}
}

// Observe records one error: its class, the hop or link of its socket, the
// connection's age and its idle time.
func (e *ErrorHistograms) Observe(class, hop string, age, idle time.Duration) {
	class = e.classes.label(class)
	e.age.WithLabelValues(class, hop).Observe(max(age, 0).Seconds())
	e.idle.WithLabelValues(class, hop).Observe(max(idle, 0).Seconds())
}
