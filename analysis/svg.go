package analysis

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Chart geometry, in SVG user units.
const (
	svgWidth   = 760
	svgHeight  = 340
	svgLeft    = 64  // room for the y tick labels
	svgRight   = 190 // room for the legend
	svgTop     = 34  // room for the title
	svgBottom  = 70  // room for the two rows of x tick labels and the axis label
	svgPlotW   = svgWidth - svgLeft - svgRight
	svgPlotH   = svgHeight - svgTop - svgBottom
	legendLine = 18
)

// palette is colour-blind friendly (Okabe–Ito); each series also has its
// own dash pattern (lines) or hatching (bars), so series stay apart in grey
// and where they overlap.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"}

// dashes are the series' line patterns, after palette's colours.
var dashes = []string{"", "8 4", "2 3", "10 3 2 3", "5 5", "1 4", "12 6"}

// WriteSVG draws g as a standalone SVG line chart: title, axes with ticks,
// one polyline per series and a legend. No script, no external resource.
func WriteSVG(w io.Writer, g Graph) error {
	bw := bufio.NewWriter(w)
	svgChart(bw, g)
	return bw.Flush()
}

// WriteGraphs writes every graph of rep as DIR/<id>.svg and returns the
// paths written.
func WriteGraphs(dir string, rep *Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, g := range rep.Graphs {
		p := filepath.Join(dir, g.ID+".svg")
		f, err := os.Create(p)
		if err != nil {
			return paths, err
		}
		err = WriteSVG(f, g)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("%s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func svgChart(w *bufio.Writer, g Graph) {
	esc := html.EscapeString
	var xMax, yMax float64
	stacked := g.Kind == GraphCounts
	for _, s := range g.Series {
		for i := range s.X {
			xMax = max(xMax, s.X[i]+g.BinS*btof(stacked))
			if !stacked {
				yMax = max(yMax, s.Y[i])
			}
		}
	}
	if stacked && len(g.Series) > 0 {
		for i := range g.Series[0].X {
			var sum float64
			for _, s := range g.Series {
				sum += s.Y[i]
			}
			yMax = max(yMax, sum)
		}
	}
	yStep := niceNumber(yMax / 4)
	if yStep <= 0 || g.Integer && yStep < 1 {
		yStep = 1
	}
	yTop := math.Ceil(yMax/yStep) * yStep
	if yTop == 0 {
		yTop = yStep
	}
	xStep := niceTimeStep(xMax / 6)
	xRight := math.Max(xMax, xStep)

	px := func(x float64) float64 { return svgLeft + x/xRight*svgPlotW }
	py := func(y float64) float64 { return svgTop + svgPlotH - y/yTop*svgPlotH }

	// A note takes a line under the axis label, and more below it.
	var note []string
	if g.Note != "" {
		note = wrapText(g.Note, 120)
	}
	height := svgHeight + 12*max(0, len(note)-1)
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="graph-%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`+"\n",
		esc(g.ID), svgWidth, height, svgWidth, height, esc(g.Title))
	fmt.Fprintf(w, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, height)
	fmt.Fprintf(w, `<text x="%d" y="20" font-family="sans-serif" font-size="14" font-weight="bold">%s</text>`+"\n", svgLeft, esc(g.Title))
	if stacked {
		writeHatches(w, g)
	}
	// Grid and y ticks.
	for i := 0; float64(i)*yStep <= yTop+yStep/2; i++ {
		y := roundTick(float64(i) * yStep)
		fmt.Fprintf(w, `<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#dddddd" stroke-width="1"/>`+"\n",
			svgLeft, num(py(y)), svgLeft+svgPlotW, num(py(y)))
		fmt.Fprintf(w, `<text x="%d" y="%s" font-family="sans-serif" font-size="11" text-anchor="end">%s</text>`+"\n",
			svgLeft-6, num(py(y)+4), esc(axisNumber(y)))
	}
	// X ticks: time since start, and below it the wall clock (UTC).
	wall := wallClock(g.StartedAt, xRight, xStep)
	for i := 0; float64(i)*xStep <= xRight+xStep/2; i++ {
		x := roundTick(float64(i) * xStep)
		fmt.Fprintf(w, `<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#888888" stroke-width="1"/>`+"\n",
			num(px(x)), svgTop+svgPlotH, num(px(x)), svgTop+svgPlotH+4)
		fmt.Fprintf(w, `<text x="%s" y="%d" font-family="sans-serif" font-size="11" text-anchor="middle">%s</text>`+"\n",
			num(px(x)), svgTop+svgPlotH+17, esc(axisTime(x)))
		if wall != nil {
			fmt.Fprintf(w, `<text class="wall-clock" x="%s" y="%d" font-family="sans-serif" font-size="10" fill="#555555" text-anchor="middle">%s</text>`+"\n",
				num(px(x)), svgTop+svgPlotH+31, esc(wall(x)))
		}
	}
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444444" stroke-width="1"/>`+"\n",
		svgLeft, svgTop+svgPlotH, svgLeft+svgPlotW, svgTop+svgPlotH)
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444444" stroke-width="1"/>`+"\n",
		svgLeft, svgTop, svgLeft, svgTop+svgPlotH)
	axis := "time since start"
	if wall != nil {
		axis += "; below: UTC, start " + g.StartedAt.UTC().Format("2006-01-02 15:04:05Z")
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" font-family="sans-serif" font-size="11" text-anchor="middle">%s</text>`+"\n",
		svgLeft+svgPlotW/2, svgTop+svgPlotH+47, esc(axis))
	fmt.Fprintf(w, `<text x="14" y="%d" font-family="sans-serif" font-size="11" text-anchor="middle" transform="rotate(-90 14 %d)">%s</text>`+"\n",
		svgTop+svgPlotH/2, svgTop+svgPlotH/2, esc(g.YLabel))
	for i, line := range note {
		fmt.Fprintf(w, `<text class="note" x="8" y="%d" font-family="sans-serif" font-size="10" fill="#555555">%s</text>`+"\n",
			svgTop+svgPlotH+63+12*i, esc(line))
	}
	// Series and legend.
	if stacked {
		writeBars(w, g, px, py)
	} else {
		for i, s := range g.Series {
			writeSteps(w, g, i, s, px, py)
		}
	}
	for i, s := range g.Series {
		ly := svgTop + 6 + i*legendLine
		lx := svgLeft + svgPlotW + 14
		fmt.Fprintf(w, `<g class="legend" data-series="%s">`, esc(s.Name))
		if stacked {
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="14" height="12" fill="%s" stroke="#444444" stroke-width="0.5"/>`, lx, ly, fill(g, i))
		} else {
			fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2.5"%s/>`, lx, ly+6, lx+22, ly+6, color(i), dash(i))
		}
		fmt.Fprintf(w, `<text x="%d" y="%d" font-family="sans-serif" font-size="11">%s</text></g>`+"\n", lx+27, ly+10, esc(shorten(s.Name, 24)))
	}
	if len(g.Series) == 0 {
		fmt.Fprintf(w, `<text x="%d" y="%d" font-family="sans-serif" font-size="12" text-anchor="middle">no data</text>`+"\n",
			svgLeft+svgPlotW/2, svgTop+svgPlotH/2)
	}
	w.WriteString("</svg>\n")
}

func btof(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func color(i int) string { return palette[i%len(palette)] }

// dash is series i's stroke-dasharray attribute ("" for a solid line).
func dash(i int) string {
	if d := dashes[i%len(dashes)]; d != "" {
		return ` stroke-dasharray="` + d + `"`
	}
	return ""
}

// writeSteps draws one series of a gauge or rate graph as steps: a gauge's
// reading holds until the next one; a rate covers the interval that ends
// at its X.
func writeSteps(w *bufio.Writer, g Graph, i int, s Series, px, py func(float64) float64) {
	if len(s.X) == 0 {
		return
	}
	var d strings.Builder
	if g.Kind == GraphRate {
		d.WriteString("M" + num(px(s.From)) + " " + num(py(s.Y[0])) + " H" + num(px(s.X[0])))
		for j := 1; j < len(s.X); j++ {
			d.WriteString(" V" + num(py(s.Y[j])) + " H" + num(px(s.X[j])))
		}
	} else {
		d.WriteString("M" + num(px(s.X[0])) + " " + num(py(s.Y[0])))
		for j := 1; j < len(s.X); j++ {
			d.WriteString(" H" + num(px(s.X[j])) + " V" + num(py(s.Y[j])))
		}
	}
	if len(s.X) == 1 && g.Kind != GraphRate {
		// One reading: a dot, since a path of one point draws nothing.
		fmt.Fprintf(w, `<circle class="series" data-series="%s" cx="%s" cy="%s" r="3" fill="%s"/>`+"\n",
			html.EscapeString(s.Name), num(px(s.X[0])), num(py(s.Y[0])), color(i))
		return
	}
	fmt.Fprintf(w, `<path class="series" data-series="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"%s d="%s"/>`+"\n",
		html.EscapeString(s.Name), color(i), dash(i), d.String())
}

// hatches are the bar patterns after the first series' solid fill: lines
// at angles, over the series' colour.
var hatches = []string{"", "M0 6 L6 0", "M0 0 L6 6", "M0 3 H6", "M3 0 V6", "M0 6 L6 0 M0 0 L6 6"}

// fill is the fill of series i's bars: its colour, hatched after the first.
func fill(g Graph, i int) string {
	if hatches[i%len(hatches)] == "" {
		return color(i)
	}
	return "url(#" + hatchID(g, i) + ")"
}

func hatchID(g Graph, i int) string { return fmt.Sprintf("hatch-%s-%d", g.ID, i) }

func writeHatches(w *bufio.Writer, g Graph) {
	w.WriteString("<defs>")
	for i := range g.Series {
		h := hatches[i%len(hatches)]
		if h == "" {
			continue
		}
		fmt.Fprintf(w, `<pattern id="%s" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="%s"/><path d="%s" stroke="#ffffff" stroke-width="1.2"/></pattern>`,
			hatchID(g, i), color(i), h)
	}
	w.WriteString("</defs>\n")
}

// writeBars draws a counts graph as bars per bin, the series stacked.
func writeBars(w *bufio.Writer, g Graph, px, py func(float64) float64) {
	if len(g.Series) == 0 {
		return
	}
	base := make([]float64, len(g.Series[0].X))
	for i, s := range g.Series {
		fmt.Fprintf(w, `<g class="series" data-series="%s" fill="%s">`, html.EscapeString(s.Name), fill(g, i))
		for j := range s.X {
			if s.Y[j] <= 0 {
				continue
			}
			x0, x1 := px(s.X[j]), px(s.X[j]+g.BinS)
			bw := math.Max(1, x1-x0-1) // a gap between bins
			top, bottom := py(base[j]+s.Y[j]), py(base[j])
			fmt.Fprintf(w, `<rect x="%s" y="%s" width="%s" height="%s"/>`, num(x0), num(top), num(bw), num(bottom-top))
			base[j] += s.Y[j]
		}
		w.WriteString("</g>\n")
	}
}

// wallClock labels the x ticks with the UTC time; nil without a start.
func wallClock(start time.Time, span, step float64) func(x float64) string {
	if start.IsZero() {
		return nil
	}
	layout := "15:04:05"
	switch {
	case span > 2*86400:
		layout = "Jan 2 15:04"
	case step >= 60 && start.Second() == 0:
		layout = "15:04"
	}
	return func(x float64) string {
		return start.Add(time.Duration(x * float64(time.Second))).UTC().Format(layout)
	}
}

// roundTick removes the float noise of i·step (0.30000000000000004).
func roundTick(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// num writes a coordinate with one decimal, enough for a chart.
func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// niceNumber rounds v up to 1, 2 or 5 times a power of ten.
func niceNumber(v float64) float64 {
	if v <= 0 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// niceTimeStep rounds a step in seconds up to a readable time step.
func niceTimeStep(v float64) float64 {
	for _, s := range []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400} {
		if s >= v {
			return s
		}
	}
	return math.Ceil(v/86400) * 86400
}

func axisNumber(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

func axisTime(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 120:
		return strconv.FormatFloat(s, 'f', -1, 64) + "s"
	case s < 7200:
		return strconv.FormatFloat(s/60, 'f', -1, 64) + "m"
	default:
		return strconv.FormatFloat(s/3600, 'f', -1, 64) + "h"
	}
}
