package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
)

// atLeast judges v ≥ limit.
func (f *Figure) atLeast(v, limit float64, unit string) {
	if v >= limit {
		f.Status = Met
		return
	}
	f.Status = Short
	f.Shortfall = "short by " + fmtNum(limit-v) + unit
}

// atMost judges v ≤ limit.
func (f *Figure) atMost(v, limit float64, unit string) {
	if v <= limit {
		f.Status = Met
		return
	}
	f.Status = Short
	f.Shortfall = "short by " + fmtNum(v-limit) + unit
}

// below judges v < limit.
func (f *Figure) below(v, limit float64, unit string) {
	if v < limit {
		f.Status = Met
		return
	}
	f.Status = Short
	f.Shortfall = "short by " + fmtNum(v-limit) + unit
}

// statusText is the STATUS column.
func (f *Figure) statusText() string {
	switch f.Status {
	case Short:
		if f.Shortfall != "" {
			return f.Shortfall
		}
	case "":
		return ""
	}
	return f.Status
}

// fmtNum prints a number with about three significant digits.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a >= 0.01:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// fmtCount prints a count with thousands separators.
func fmtCount(v float64) string {
	n := int64(math.Round(v))
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(d time.Duration) string { return fmtNum(ms(d)) }

func fmtUS(v float64) string { return fmtNum(v) + " µs" }

func fmtKiB(bytes float64) string { return fmtNum(bytes/1024) + " KiB" }

func fmtRatio(r float64) string {
	if r == 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		return ""
	}
	return fmtNum(r) + "×"
}

// Header is the lines printed above the table: what ran where.
func (r *Result) Header() string {
	m := r.Machine
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ssestress bench (%s run, %v): %d cores %s, %s, kernel %s, %s\n", mode, r.Elapsed.Round(time.Second), m.Cores, m.CPU, m.OS, m.Kernel, m.Go)
	fmt.Fprintf(&b, "load average before %s, after %s (other processes share these cores); file descriptor limit %d\n", m.LoadBefore, m.LoadAfter, m.FDLimit)
	fmt.Fprintf(&b, "layout: %s\n", r.Layout)
	return b.String()
}

// RenderTable writes the header, one table with every figure and the
// notes the figures refer to.
func (r *Result) RenderTable(w io.Writer) error {
	if _, err := io.WriteString(w, r.Header()); err != nil {
		return err
	}
	t := tablewriter.NewTable(w, tablewriter.WithHeaderAutoFormat(tw.Off))
	t.Header("row", "figure", "measured", "compared with", "ratio", "target", "status")
	var notes []string
	noteNum := map[string]int{} // a note shared by several lines is printed once
	for _, f := range r.Figures {
		name := f.Name
		if f.Note != "" {
			k, ok := noteNum[f.Note]
			if !ok {
				notes = append(notes, f.Note)
				k = len(notes)
				noteNum[f.Note] = k
			}
			name += fmt.Sprintf(" [%d]", k)
		}
		if err := t.Append(f.Row, name, f.Text, f.Versus, fmtRatio(f.Ratio), f.Target, f.statusText()); err != nil {
			return err
		}
	}
	if err := t.Render(); err != nil {
		return err
	}
	for i, n := range notes {
		if _, err := fmt.Fprintf(w, "[%d] %s\n", i+1, n); err != nil {
			return err
		}
	}
	met, short, other := 0, 0, 0
	for _, f := range r.Figures {
		switch f.Status {
		case Met:
			met++
		case Short:
			short++
		case Untried, Skipped:
			other++
		}
	}
	_, err := fmt.Fprintf(w, "targets: %d met, %d short, %d untried or skipped\n", met, short, other)
	return err
}

// RenderJSON writes the result as one JSON object.
func (r *Result) RenderJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
