package analysis

import (
	"fmt"
	"slices"
	"strings"
)

// maxGraphPoints bounds the points of one series: enough for a chart a
// screen wide, small enough for a report of a 72-hour run.
const maxGraphPoints = 300

// maxGraphSeries bounds the lines of one chart; the rest are summed into
// "other".
const maxGraphSeries = 6

// graphs builds the time series charts from the samples and the errors.
func (a *accumulator) graphs(rep *Report) []Graph {
	var out []Graph
	active := Graph{ID: "active-connections", Title: "Active connections", YLabel: "connections"}
	rate := Graph{ID: "events-per-second", Title: "Events per second", YLabel: "events/s"}
	memory := Graph{ID: "memory", Title: "Memory (RSS) of client and server", YLabel: "MiB"}
	fds := Graph{ID: "file-descriptors", Title: "Open file descriptors of client and server", YLabel: "fds"}
	tcp := Graph{ID: "server-tcp-states", Title: "Server TCP sockets by state", YLabel: "sockets"}
	for _, f := range a.files {
		if len(f.samples) == 0 {
			continue
		}
		name := fmt.Sprintf("%s (%s)", commandName(f), f.info.Name)
		st := f.start()
		x := make([]float64, len(f.samples))
		for i, s := range f.samples {
			x[i] = s.at.Sub(st).Seconds()
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
			ry[i] = messageRate(f.samples, i)
		}
		s = downsample(x, ry, false)
		s.Name = name
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
		if len(sx) > 0 {
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
	}
	for _, g := range []Graph{active, rate, memory, fds, tcp} {
		if len(g.Series) > 0 {
			out = append(out, g)
		}
	}

	tl := a.timeline(120)
	if len(tl.Bins) > 0 {
		byClass := Graph{ID: "errors-by-class", Title: fmt.Sprintf("Errors by class (per %s)", fmtSeconds(tl.BinS)), YLabel: "errors"}
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
			resets := Graph{ID: "resets-and-cuts-by-hop", Title: fmt.Sprintf("Resets and cuts by hop (per %s)", fmtSeconds(tl.BinS)), YLabel: "resets and cuts"}
			resets.Series = binSeries(x, tl.Bins, hops, func(b TimeBin) map[string]int64 { return b.BrokenByHop })
			out = append(out, resets)
		}
	}
	return out
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
// the chunk's highest value for gauges (a peak must not vanish), its mean
// for rates.
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
		if !peak {
			v = sum / float64(hi-lo)
		}
		s.X = append(s.X, x[lo])
		s.Y = append(s.Y, v)
	}
	return s
}
