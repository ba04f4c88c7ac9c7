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
)

// Chart geometry, in SVG user units.
const (
	svgWidth   = 760
	svgHeight  = 300
	svgLeft    = 64  // room for the y tick labels
	svgRight   = 190 // room for the legend
	svgTop     = 34  // room for the title
	svgBottom  = 44  // room for the x tick labels and axis label
	svgPlotW   = svgWidth - svgLeft - svgRight
	svgPlotH   = svgHeight - svgTop - svgBottom
	legendLine = 18
)

// palette is colour-blind friendly (Okabe–Ito) and prints in grey.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"}

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
	for _, s := range g.Series {
		for i := range s.X {
			xMax = max(xMax, s.X[i])
			yMax = max(yMax, s.Y[i])
		}
	}
	yStep := niceNumber(yMax / 4)
	if yStep <= 0 {
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

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="graph-%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`+"\n",
		esc(g.ID), svgWidth, svgHeight, svgWidth, svgHeight, esc(g.Title))
	fmt.Fprintf(w, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, svgHeight)
	fmt.Fprintf(w, `<text x="%d" y="20" font-family="sans-serif" font-size="14" font-weight="bold">%s</text>`+"\n", svgLeft, esc(g.Title))
	// Grid and y ticks.
	for i := 0; float64(i)*yStep <= yTop+yStep/2; i++ {
		y := roundTick(float64(i) * yStep)
		fmt.Fprintf(w, `<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#dddddd" stroke-width="1"/>`+"\n",
			svgLeft, num(py(y)), svgLeft+svgPlotW, num(py(y)))
		fmt.Fprintf(w, `<text x="%d" y="%s" font-family="sans-serif" font-size="11" text-anchor="end">%s</text>`+"\n",
			svgLeft-6, num(py(y)+4), esc(axisNumber(y)))
	}
	// X ticks.
	for i := 0; float64(i)*xStep <= xRight+xStep/2; i++ {
		x := roundTick(float64(i) * xStep)
		fmt.Fprintf(w, `<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#888888" stroke-width="1"/>`+"\n",
			num(px(x)), svgTop+svgPlotH, num(px(x)), svgTop+svgPlotH+4)
		fmt.Fprintf(w, `<text x="%s" y="%d" font-family="sans-serif" font-size="11" text-anchor="middle">%s</text>`+"\n",
			num(px(x)), svgTop+svgPlotH+17, esc(axisTime(x)))
	}
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444444" stroke-width="1"/>`+"\n",
		svgLeft, svgTop+svgPlotH, svgLeft+svgPlotW, svgTop+svgPlotH)
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444444" stroke-width="1"/>`+"\n",
		svgLeft, svgTop, svgLeft, svgTop+svgPlotH)
	fmt.Fprintf(w, `<text x="%d" y="%d" font-family="sans-serif" font-size="11" text-anchor="middle">time since start</text>`+"\n",
		svgLeft+svgPlotW/2, svgHeight-6)
	fmt.Fprintf(w, `<text x="14" y="%d" font-family="sans-serif" font-size="11" text-anchor="middle" transform="rotate(-90 14 %d)">%s</text>`+"\n",
		svgTop+svgPlotH/2, svgTop+svgPlotH/2, esc(g.YLabel))
	// Series and legend.
	for i, s := range g.Series {
		color := palette[i%len(palette)]
		if len(s.X) == 1 {
			fmt.Fprintf(w, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", num(px(s.X[0])), num(py(s.Y[0])), color)
		} else if len(s.X) > 1 {
			var pts strings.Builder
			for j := range s.X {
				if j > 0 {
					pts.WriteByte(' ')
				}
				pts.WriteString(num(px(s.X[j])) + "," + num(py(s.Y[j])))
			}
			fmt.Fprintf(w, `<polyline class="series" fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`+"\n", color, pts.String())
		}
		ly := svgTop + 6 + i*legendLine
		lx := svgLeft + svgPlotW + 14
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`+"\n", lx, ly, color)
		fmt.Fprintf(w, `<text x="%d" y="%d" font-family="sans-serif" font-size="11">%s</text>`+"\n", lx+17, ly+10, esc(shorten(s.Name, 26)))
	}
	if len(g.Series) == 0 {
		fmt.Fprintf(w, `<text x="%d" y="%d" font-family="sans-serif" font-size="12" text-anchor="middle">no data</text>`+"\n",
			svgLeft+svgPlotW/2, svgTop+svgPlotH/2)
	}
	w.WriteString("</svg>\n")
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
