// Package metrics writes the Prometheus text exposition format (version
// 0.0.4), so that a long run, proxy or replay can be watched and graphed by
// existing dashboards through its live view (--http ADDR/metrics).
//
// There is no registry: a producer builds its Families from the counters
// it already keeps, at scrape time (Handler calls its collect function),
// and Write renders them. Values therefore never drift from the counters
// the session file's summary is made of.
package metrics

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Kind is a metric family's type.
type Kind string

// The kinds ssestress exposes.
const (
	Counter Kind = "counter" // only grows (names end in _total)
	Gauge   Kind = "gauge"   // goes up and down
)

// Label is one name="value" pair.
type Label struct{ Name, Value string }

// Sample is one value of a family with its labels.
type Sample struct {
	Labels []Label
	Value  float64
}

// Family is one metric: its name, help text, kind and samples. Its samples
// must have distinct label sets.
type Family struct {
	Name    string
	Help    string
	Kind    Kind
	Samples []Sample
}

// L builds labels from name, value pairs: L("class", "EOF", "hop", "client").
func L(pairs ...string) []Label {
	labels := make([]Label, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		labels = append(labels, Label{pairs[i], pairs[i+1]})
	}
	return labels
}

// One is a family with a single unlabelled sample.
func One(name, help string, kind Kind, v float64) Family {
	return Family{Name: name, Help: help, Kind: kind, Samples: []Sample{{Value: v}}}
}

// ErrInvalid is returned by Write for a name the format does not allow.
var ErrInvalid = errors.New("invalid metric")

// Write renders fams in the text format, in the order given, samples in
// the order given. It refuses invalid or repeated metric names and invalid
// label names, so a scrape never returns something Prometheus rejects.
func Write(w io.Writer, fams []Family) error {
	bw := bufio.NewWriter(w)
	seen := make(map[string]bool, len(fams))
	for _, f := range fams {
		if !validName(f.Name, true) {
			return fmt.Errorf("%w name %q", ErrInvalid, f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("%w: family %q given twice", ErrInvalid, f.Name)
		}
		seen[f.Name] = true
		kind := f.Kind
		if kind == "" {
			kind = "untyped"
		}
		if f.Help != "" {
			fmt.Fprintf(bw, "# HELP %s %s\n", f.Name, escapeHelp(f.Help))
		}
		fmt.Fprintf(bw, "# TYPE %s %s\n", f.Name, kind)
		for _, s := range f.Samples {
			bw.WriteString(f.Name)
			if len(s.Labels) > 0 {
				bw.WriteByte('{')
				for i, l := range s.Labels {
					if !validName(l.Name, false) || strings.HasPrefix(l.Name, "__") {
						return fmt.Errorf("%w label name %q in %s", ErrInvalid, l.Name, f.Name)
					}
					if i > 0 {
						bw.WriteByte(',')
					}
					bw.WriteString(l.Name)
					bw.WriteString(`="`)
					bw.WriteString(escapeLabel(l.Value))
					bw.WriteByte('"')
				}
				bw.WriteByte('}')
			}
			bw.WriteByte(' ')
			bw.WriteString(FormatValue(s.Value))
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

// FormatValue writes a value as the format wants it: integers without an
// exponent up to 2^53, NaN and ±Inf by name.
func FormatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// validName checks [a-zA-Z_:][a-zA-Z0-9_:]* (no colon in label names).
func validName(s string, metric bool) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') ||
			(metric && r == ':') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// Handler serves the families collect returns, freshly built on every
// scrape (GET or HEAD).
func Handler(collect func() []Family) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		var b strings.Builder
		if err := Write(&b, collect()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, b.String())
	})
}

// CountsByLabel turns a map of counts into samples labelled name=key (and
// the fixed labels extra), sorted by key so scrapes are stable.
func CountsByLabel(counts map[string]int64, name string, extra ...Label) []Sample {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]Sample, len(keys))
	for i, k := range keys {
		labels := append([]Label{{name, k}}, extra...)
		out[i] = Sample{Labels: labels, Value: float64(counts[k])}
	}
	return out
}
