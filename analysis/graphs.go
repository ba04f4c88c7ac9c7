package analysis

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// maxGraphPoints bounds the points of one series: enough for a chart a
// screen wide, small enough for a report of a 72-hour run.
const maxGraphPoints = 300

// maxGraphSeries bounds the series of one chart; the rest are summed into
// "other".
const maxGraphSeries = 6

// Graph kinds: how a series' points are read and drawn.
const (
	// GraphGauge: a reading at each X (connections open, memory), held
	// until the next: drawn as steps.
	GraphGauge = "gauge"
	// GraphRate: the mean over the interval that ends at each X (the
	// first from the series' From): drawn as steps over the intervals.
	GraphRate = "rate"
	// GraphCounts: what happened in each bin of BinS seconds that starts
	// at X (errors): drawn as stacked bars.
	GraphCounts = "counts"
)

// graphs builds the time series charts from the samples and the errors.
// Every graph's X is seconds since the earliest start of the files (the
// graph's StartedAt), so files that ran side by side line up and the
// wall-clock axis is one.
func (a *accumulator) graphs(rep *Report) []Graph {
	origin := a.graphOrigin()
	var out []Graph
	active := Graph{ID: "active-connections", Title: "Active connections", YLabel: "connections", Kind: GraphGauge, Integer: true}
	rate := Graph{ID: "events-per-second", Title: "Events per second", YLabel: "events/s", Kind: GraphRate}
	memory := Graph{ID: "memory", Title: "Memory (RSS)", YLabel: "MiB", Kind: GraphGauge}
	fds := Graph{ID: "file-descriptors", Title: "Open file descriptors", YLabel: "fds", Kind: GraphGauge, Integer: true}
	tcp := Graph{ID: "server-tcp-states", Title: "Server TCP sockets by state", YLabel: "sockets", Kind: GraphGauge, Integer: true}
	var unsampled, embedded []string
	for fi, f := range a.files {
		if len(f.samples) == 0 {
			continue
		}
		slices.SortFunc(f.samples, func(x, y sampleRow) int { return x.at.Compare(y.at) })
		name := fmt.Sprintf("%s (%s)", commandName(f), f.info.Name)
		x := make([]float64, len(f.samples))
		for i, s := range f.samples {
			x[i] = s.at.Sub(origin).Seconds()
		}
		gauge := func(v func(sampleRow) float64) Series {
			y := make([]float64, len(f.samples))
			for i, s := range f.samples {
				y[i] = v(s)
			}
			return downsample(x, y, true)
		}
		s := gauge(func(s sampleRow) float64 { return float64(s.active) })
		s.Name = name
		active.Series = append(active.Series, s)

		ry := make([]float64, len(f.samples))
		for i := range f.samples {
			ry[i] = messageRate(f.samples, i, f.start())
		}
		s = downsample(x, ry, false)
		s.Name = name
		s.From = max(0, f.start().Sub(origin).Seconds())
		rate.Series = append(rate.Series, s)

		s = gauge(func(s sampleRow) float64 { return float64(s.rss) / (1 << 20) })
		s.Name = name
		memory.Series = append(memory.Series, s)
		s = gauge(func(s sampleRow) float64 { return float64(s.fds) })
		s.Name = name
		fds.Series = append(fds.Series, s)

		// The server's readings, where it was sampled.
		var sx []float64
		var srss, sfds []float64
		states := map[string][]float64{}
		var stateX []float64
		for i, smp := range f.samples {
			if smp.server == nil {
				continue
			}
			sx = append(sx, x[i])
			srss = append(srss, float64(smp.server.RSS)/(1<<20))
			sfds = append(sfds, float64(smp.server.FDs))
			stateX = append(stateX, x[i])
			for st := range smp.server.TCP {
				if _, ok := states[st]; !ok {
					states[st] = make([]float64, len(stateX)-1)
				}
			}
			for st := range states {
				states[st] = append(states[st], float64(smp.server.TCP[st]))
			}
		}
		if len(sx) == 0 {
			if a.embeddedServer(fi) {
				embedded = append(embedded, name)
			} else if f.info.Command != "" && !strings.HasPrefix(f.info.Command, "proxy") {
				unsampled = append(unsampled, name)
			}
			continue
		}
		s = downsample(sx, srss, true)
		s.Name = "server (" + f.info.Name + ")"
		memory.Series = append(memory.Series, s)
		s = downsample(sx, sfds, true)
		s.Name = "server (" + f.info.Name + ")"
		fds.Series = append(fds.Series, s)
		for _, st := range sortedKeys(states) {
			s = downsample(stateX, states[st], true)
			s.Name = st
			tcp.Series = append(tcp.Series, s)
		}
	}
	// What the memory and fd graphs lack, and why.
	var notes []string
	if len(embedded) > 0 {
		notes = append(notes, "The embedded server ran inside "+strings.Join(embedded, ", ")+": its memory and fds are in that process's.")
	}
	if len(unsampled) > 0 {
		notes = append(notes, "The server of "+strings.Join(unsampled, ", ")+" was not sampled: run with --server-pid PID to add it.")
	}
	memory.Note, fds.Note = strings.Join(notes, " "), strings.Join(notes, " ")
	for _, g := range []Graph{active, rate, memory, fds, tcp} {
		if len(g.Series) > 0 {
			out = append(out, g)
		}
	}

	tl := a.timelineFrom(120, origin)
	if len(tl.Bins) > 0 {
		per := "per " + fmtSeconds(tl.BinS)
		byClass := Graph{ID: "errors-by-class", Title: "Errors by class (" + per + ")", YLabel: "errors " + per,
			Kind: GraphCounts, BinS: tl.BinS, Integer: true}
		x := make([]float64, len(tl.Bins))
		for i, b := range tl.Bins {
			x[i] = b.StartS
		}
		byClass.Series = binSeries(x, tl.Bins, rep.Classes, func(b TimeBin) map[string]int64 { return b.ByClass })
		out = append(out, byClass)

		hopSet := map[string]bool{}
		for _, b := range tl.Bins {
			for h := range b.BrokenByHop {
				hopSet[h] = true
			}
		}
		if len(hopSet) > 0 {
			hops := sortedKeys(hopSet)
			resets := Graph{ID: "resets-and-cuts-by-hop", Title: "Resets and cuts by hop (" + per + ")", YLabel: "resets and cuts " + per,
				Kind: GraphCounts, BinS: tl.BinS, Integer: true}
			resets.Series = binSeries(x, tl.Bins, hops, func(b TimeBin) map[string]int64 { return b.BrokenByHop })
			out = append(out, resets)
		}
	}
	for i := range out {
		out[i].StartedAt = origin.UTC()
	}
	return out
}

// graphOrigin is the graphs' time zero: the earliest start of the files.
func (a *accumulator) graphOrigin() time.Time {
	var origin time.Time
	for _, f := range a.files {
		if st := f.start(); !st.IsZero() && (origin.IsZero() || st.Before(origin)) {
			origin = st
		}
	}
	return origin
}

// embeddedServer reports whether file fi's run served its own feed
// in-process (its topology names the embedded server).
func (a *accumulator) embeddedServer(fi int) bool {
	for _, e := range a.in.Topology {
		if e.File == fi && e.R.Role == session.RoleServer && e.R.Name == "embedded" {
			return true
		}
	}
	return false
}

// binSeries makes one series per key (at most maxGraphSeries, the rest as
// "other") from counts per bin.
func binSeries(x []float64, bins []TimeBin, keys []string, counts func(TimeBin) map[string]int64) []Series {
	shown := keys
	var rest []string
	if len(keys) > maxGraphSeries {
		shown, rest = keys[:maxGraphSeries-1], keys[maxGraphSeries-1:]
	}
	var out []Series
	for _, k := range shown {
		y := make([]float64, len(bins))
		for i, b := range bins {
			y[i] = float64(counts(b)[k])
		}
		out = append(out, Series{Name: k, X: slices.Clone(x), Y: y})
	}
	if len(rest) > 0 {
		y := make([]float64, len(bins))
		for i, b := range bins {
			for _, k := range rest {
				y[i] += float64(counts(b)[k])
			}
		}
		out = append(out, Series{Name: "other (" + strings.Join(rest, ", ") + ")", X: slices.Clone(x), Y: y})
	}
	return out
}

// downsample cuts a series to at most maxGraphPoints points by chunks:
// the chunk's highest value for gauges (a peak must not vanish) at the
// chunk's first X, its mean for rates at the chunk's last X (the end of the
// interval the mean covers).
func downsample(x, y []float64, peak bool) Series {
	n := len(x)
	if n <= maxGraphPoints {
		return Series{X: slices.Clone(x), Y: slices.Clone(y)}
	}
	chunk := (n + maxGraphPoints - 1) / maxGraphPoints
	var s Series
	for lo := 0; lo < n; lo += chunk {
		hi := min(n, lo+chunk)
		v := y[lo]
		sum := 0.0
		for _, e := range y[lo:hi] {
			v = max(v, e)
			sum += e
		}
		if peak {
			s.X = append(s.X, x[lo])
		} else {
			v = sum / float64(hi-lo)
			s.X = append(s.X, x[hi-1])
		}
		s.Y = append(s.Y, v)
	}
	return s
}
