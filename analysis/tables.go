package analysis

import (
	"fmt"
	"strconv"
	"strings"
)

// Table is one table of a report, in text: the form every text renderer
// (table, markdown, csv, html) draws. Tables are built from a Report by
// Tables and carry nothing a renderer has to compute.
type Table struct {
	ID      string   `json:"id"` // stable, for csv and anchors: error_patterns
	Title   string   `json:"title"`
	Intro   []string `json:"intro,omitempty"` // sentences before the rows
	Columns []string `json:"columns"`
	// Numeric marks the columns to align right.
	Numeric []bool     `json:"numeric"`
	Rows    [][]string `json:"rows"`
	// Empty is said when there are no rows.
	Empty string `json:"empty,omitempty"`
}

// maxClassColumns is how many classes get their own column in tables that
// break counts down by class; the rest are summed into "other".
const maxClassColumns = 4

// Tables lays a Report out as tables, in reading order.
func Tables(rep *Report) []Table {
	return append([]Table{
		verdictTable(rep),
		summaryTable(rep),
		patternsTable(rep),
		fingerprintsTable(rep),
		bucketTable("errors_by_age", "Errors by connection age", rep, rep.AgeBuckets),
		bucketTable("errors_by_idle", "Errors by idle time before the error", rep, rep.IdleBuckets),
		timelineTable(rep),
		groupsTable(rep),
		messagesTable(rep),
		resetChainsTable(rep),
		hopsTable(rep),
		connectionsTable(rep),
		lifetimesTable(rep),
		endingsTable(rep),
		heartbeatTable(rep),
		resourcesTable(rep),
		resourceSeriesTable(rep),
		overheadTable(rep),
		filesTable(rep),
	}, recordedTables(rep)...)
}

// newTable makes a table whose columns ending in '#' are numeric (the '#'
// is dropped).
func newTable(id, title string, columns ...string) Table {
	t := Table{ID: id, Title: title}
	for _, c := range columns {
		name, numeric := strings.CutSuffix(c, "#")
		t.Columns = append(t.Columns, name)
		t.Numeric = append(t.Numeric, numeric)
	}
	return t
}

func (t *Table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

func count(n int64) string { return strconv.FormatInt(n, 10) }

func share(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" }

func rate(f float64) string {
	switch {
	case f == 0:
		return "0"
	case f < 10:
		return strconv.FormatFloat(f, 'f', 2, 64)
	default:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
}

func secondsCell(s float64) string { return fmtSeconds(s) }

func mib(b uint64) string {
	if b == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB"
}

func intCell(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// classColumns splits the classes into those with their own column and the
// rest.
func classColumns(rep *Report) (shown, rest []string) {
	if len(rep.Classes) <= maxClassColumns+1 {
		return rep.Classes, nil
	}
	return rep.Classes[:maxClassColumns], rep.Classes[maxClassColumns:]
}

// classCells gives the per-class cells of a breakdown.
func classCells(counts map[string]int64, shown, rest []string) []string {
	var cells []string
	for _, c := range shown {
		cells = append(cells, count(counts[c]))
	}
	if len(rest) > 0 {
		var n int64
		for _, c := range rest {
			n += counts[c]
		}
		cells = append(cells, count(n))
	}
	return cells
}

func classHeaders(shown, rest []string) []string {
	var h []string
	for _, c := range shown {
		h = append(h, c+"#")
	}
	if len(rest) > 0 {
		h = append(h, "other#")
	}
	return h
}

// classList writes counts by class, largest first: "ECONNRESET 12, EOF 3".
func classList(counts map[string]int64, order []string) string {
	var parts []string
	for _, c := range order {
		if n := counts[c]; n > 0 {
			parts = append(parts, c+" "+count(n))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func verdictTable(rep *Report) Table {
	v := rep.Verdict
	t := newTable("verdict", "Verdict", "item", "detail")
	t.add("statement", v.Statement)
	if x := v.Cause; x != nil {
		t.add("cause", x.Kind)
		t.add("sender", x.Sender.Words())
		if x.InNameOf != nil {
			t.add("in the name of", x.InNameOf.Words())
		}
		t.add("where", hopWords(x.Where()))
		if x.FaultName != "" {
			t.add("fault", x.FaultName)
		}
		if len(x.Relays) > 0 {
			t.add("passed on by", originOf(x).Via)
		}
		t.add("chain", x.ChainText())
	}
	t.add("confidence", v.Confidence)
	t.add("client errors", count(v.ClientErrors))
	if v.ProxyConnections > 0 {
		t.add("failed proxy client connections", count(v.ProxyConnections))
	}
	t.add("resets (RST) felt", count(v.Resets))
	t.add("cuts (FIN inside the stream) felt", count(v.Cuts))
	t.add("RST segments captured", count(v.RSTSegments))
	for _, e := range v.Evidence {
		t.add("evidence", e)
	}
	for _, e := range v.Conflicts {
		t.add("conflict", e)
	}
	for _, e := range v.Enable {
		t.add("enable", e)
	}
	return t
}

func summaryTable(rep *Report) Table {
	t := newTable("summary", "Run summary per scenario", "scenario", "files#", "duration#", "attempts#", "active#",
		"max active#", "events#", "events/s#", "reconnects#", "first event p50#", "first event p99#", "errors#", "errors by class")
	t.Empty = "no client connections or errors recorded"
	for _, s := range rep.Scenarios {
		t.add(s.Scenario, strconv.Itoa(s.Files), secondsCell(s.DurationS), count(s.Attempts), count(s.Active),
			count(s.ActiveMax), count(s.Events), rate(s.EventsPerS), count(s.Reconnects),
			distCell(s.FirstEventS, s.FirstEventS.P50), distCell(s.FirstEventS, s.FirstEventS.P99),
			count(s.Errors), classList(s.ErrorsBy, rep.Classes))
	}
	return t
}

func distCell(d Dist, v float64) string {
	if d.N == 0 {
		return "-"
	}
	return fmtSeconds(v)
}

func patternsTable(rep *Report) Table {
	t := newTable("error_patterns", "Errors by class × hop × origin", "class", "hop", "origin", "cause", "via", "confidence", "fault", "evidence", "count#", "share#")
	t.Empty = "no errors recorded"
	for _, p := range rep.Patterns {
		t.add(p.Class, p.Hop, p.Origin, p.Cause, dashIfEmpty(p.Via), p.Confidence, dashIfEmpty(p.Fault), p.Evidence, count(p.Count), share(p.Share))
	}
	return t
}

func fingerprintsTable(rep *Report) Table {
	t := newTable("fingerprints", "Fingerprints: clusters of errors at one idle time or age", "class", "dimension",
		"centre#", "range", "count#", "share of class#", "fingerprint")
	t.Empty = "no cluster: the errors are spread out in age and idle time"
	if len(rep.Patterns) == 0 {
		t.Empty = "no errors recorded"
	}
	if rep.TimeScale != 1 {
		t.Intro = append(t.Intro, fmt.Sprintf("Time scale %s: known middlebox timeouts are also matched divided by %s (60 s acts in %s).", fmtScale(rep.TimeScale), fmtScale(rep.TimeScale), fmtSeconds(60/rep.TimeScale)))
	}
	for _, c := range rep.Fingerprints {
		t.add(c.Class, c.Dimension, fmtPrecise(c.CenterS), fmtPrecise(c.LoS)+" – "+fmtPrecise(c.HiS),
			count(c.Count), share(c.Share), c.Match)
	}
	return t
}

func bucketTable(id, title string, rep *Report, buckets []DurationBucket) Table {
	shown, rest := classColumns(rep)
	cols := append([]string{"bucket", "errors#"}, classHeaders(shown, rest)...)
	cols = append(cols, "fingerprint")
	t := newTable(id, title, cols...)
	t.Empty = "no errors recorded"
	for _, b := range buckets {
		row := append([]string{b.Label, count(b.Count)}, classCells(b.ByClass, shown, rest)...)
		fp := b.Fingerprint
		if fp == "" {
			fp = "-"
		}
		t.add(append(row, fp)...)
	}
	return t
}

func timelineTable(rep *Report) Table {
	shown, rest := classColumns(rep)
	cols := append([]string{"since start", "errors#"}, classHeaders(shown, rest)...)
	t := newTable("errors_over_time", "Errors over time since start", cols...)
	t.Empty = "no errors recorded"
	if rep.Timeline.BinS > 0 {
		t.Intro = append(t.Intro, "Bins of "+fmtSeconds(rep.Timeline.BinS)+", from the start of each file.")
	}
	for _, b := range rep.Timeline.Bins {
		t.add("+"+fmtSeconds(b.StartS), count(b.Count))
		t.Rows[len(t.Rows)-1] = append(t.Rows[len(t.Rows)-1], classCells(b.ByClass, shown, rest)...)
	}
	return t
}

func groupsTable(rep *Report) Table {
	t := newTable("groups", "Per symbol group", "group", "attempts#", "events#", "errors#", "errors/attempt#", "errors by class")
	t.Empty = "no symbol groups recorded"
	for _, g := range rep.Groups {
		t.add(g.Group, count(g.Attempts), count(g.Events), count(g.Errors), rate(g.ErrorsPerAttempt), classList(g.ByClass, rep.Classes))
	}
	return t
}

func messagesTable(rep *Report) Table {
	t := newTable("messages", "Distinct error messages", "count#", "class", "message", "first#", "last#")
	t.Empty = "no errors recorded"
	for _, m := range rep.Messages {
		t.add(count(m.Count), m.Class, m.Message, "+"+fmtSeconds(m.FirstS), "+"+fmtSeconds(m.LastS))
	}
	if rep.MessagesOmitted > 0 {
		t.Intro = append(t.Intro, fmt.Sprintf("Ports are shown as '*'. %d more distinct messages are not listed.", rep.MessagesOmitted))
	} else if len(rep.Messages) > 0 {
		t.Intro = append(t.Intro, "Ports are shown as '*'.")
	}
	return t
}

func resetChainsTable(rep *Report) Table {
	t := newTable("reset_chains", "Reset and cut chains, grouped by cause", "chain", "sender", "hop", "cause", "felt", "idle", "confidence", "count#")
	t.Empty = "no error and no failed proxy client connection to explain"
	if rep.Evidence.CaptureDisabled != "" {
		t.Intro = append(t.Intro, "The capture did not run: "+rep.Evidence.CaptureDisabled+".")
	}
	if rep.Evidence.Capture && rep.Evidence.CapturePackets > 0 {
		t.Intro = append(t.Intro, fmt.Sprintf("%d packets captured, %d dropped by the kernel; %d RST segments (each once).",
			rep.Evidence.CapturePackets, rep.Evidence.CaptureDrops, rep.Verdict.RSTSegments))
	}
	for _, c := range rep.ResetChains {
		cause := c.Cause
		if c.Injected && c.Fault != "" {
			cause += " (" + c.Fault + ")"
		}
		felt := c.Seen
		if c.Source == "proxy" {
			felt += " (proxy client connection)"
		}
		t.add(dashIfEmpty(c.Chain), c.Sender, c.Hop, cause, felt, c.Idle, c.Confidence, count(c.Count))
	}
	return t
}

func hopsTable(rep *Report) Table {
	t := newTable("proxy_hops", "Proxy hops: how connections ended", "proxy", "hop", "connections#", "open#", "ended (closed by, how)", "faults fired")
	t.Empty = "no proxy in these files (run with --via-proxy to record each hop)"
	for _, h := range rep.Hops {
		t.add(h.Proxy, h.Hop, count(h.Connections), count(h.Open), mapList(h.Ended), mapList(h.Faults))
	}
	return t
}

// mapList writes counts by key, largest first, then by key.
func mapList(m map[string]int64) string {
	keys := sortedKeys(m)
	sortByCount(keys, m)
	return classList(m, keys)
}

func sortByCount(keys []string, m map[string]int64) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && m[keys[j]] > m[keys[j-1]]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
}

func connectionsTable(rep *Report) Table {
	c := rep.Connections
	t := newTable("connections", "Connection statistics", "measure", "n#", "min#", "p50#", "p90#", "p99#", "max#", "mean#")
	t.Empty = "no client connections recorded"
	if c.Attempts > 0 {
		t.Intro = append(t.Intro, fmt.Sprintf("%d connection attempts, %d of them reconnects; %.2f connection-hours in all.",
			c.Attempts, c.Reconnects, c.ConnHours))
	}
	secs := func(name string, d Dist) {
		if d.N > 0 {
			t.add(name, strconv.Itoa(d.N), fmtSeconds(d.Min), fmtSeconds(d.P50), fmtSeconds(d.P90), fmtSeconds(d.P99), fmtSeconds(d.Max), fmtSeconds(d.Mean))
		}
	}
	nums := func(name string, d Dist) {
		if d.N > 0 {
			f := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
			t.add(name, strconv.Itoa(d.N), f(d.Min), f(d.P50), f(d.P90), f(d.P99), f(d.Max), strconv.FormatFloat(d.Mean, 'f', 1, 64))
		}
	}
	secs("lifetime (closed attempts)", c.LifetimeS)
	nums("events per connection", c.Events)
	secs("max gap between events", c.MaxGapS)
	for _, s := range rep.Scenarios {
		secs("time to first event ("+s.Scenario+")", s.FirstEventS)
	}
	return t
}

func lifetimesTable(rep *Report) Table {
	t := newTable("lifetimes", "Connection lifetime distribution (closed attempts)", "lifetime", "attempts#", "share#")
	t.Empty = "no closed connection attempts recorded"
	total := int64(rep.Connections.LifetimeS.N)
	for _, b := range rep.Connections.Lifetimes {
		t.add(b.Label, count(b.Count), share(float64(b.Count)/float64(max(total, 1))))
	}
	return t
}

func endingsTable(rep *Report) Table {
	t := newTable("connection_endings", "How connection attempts ended", "ended by", "attempts#", "share#")
	t.Empty = "no client connections recorded"
	keys := sortedKeys(rep.Connections.EndedBy)
	sortByCount(keys, rep.Connections.EndedBy)
	for _, k := range keys {
		n := rep.Connections.EndedBy[k]
		t.add(k, count(n), share(float64(n)/float64(max(rep.Connections.Attempts, 1))))
	}
	return t
}

func heartbeatTable(rep *Report) Table {
	hb := rep.Heartbeat
	t := newTable("heartbeat", "Heartbeats versus the hops' idle timeouts", "item", "value", "source")
	if hb.IntervalS > 0 {
		t.add("heartbeat interval seen", fmtSeconds(hb.IntervalS), fmt.Sprintf("median over %d connections with heartbeats", hb.Connections))
	} else {
		t.add("heartbeat interval seen", "none", "no connection received two heartbeats")
	}
	if hb.MaxGapP99S > 0 {
		t.add("max gap between events (p99)", fmtSeconds(hb.MaxGapP99S), "connection records")
	}
	for _, to := range hb.Timeouts {
		t.add("idle timeout of "+to.Where, fmtSeconds(to.TimeoutS), to.Source)
	}
	for _, w := range hb.Warnings {
		t.add("WARNING", w, "")
	}
	if len(hb.Timeouts) == 0 {
		t.add("idle timeouts of the hops", "unknown", "no idle-timeout fault and no idle cluster of resets")
	}
	return t
}

func resourcesTable(rep *Report) Table {
	t := newTable("resources", "Resource usage (first → peak → last)", "process", "samples#", "RSS", "heap peak#",
		"goroutines peak#", "threads peak#", "fds", "TCP sockets peak")
	t.Empty = "no monitor samples recorded"
	for _, r := range rep.Resources {
		t.add(r.Process, strconv.Itoa(r.Samples),
			mib(r.First.RSS)+" → "+mib(r.Peak.RSS)+" → "+mib(r.Last.RSS),
			mib(r.Peak.Heap), intCell(r.Peak.Goroutines), intCell(r.Peak.Threads),
			intCell(r.First.FDs)+" → "+intCell(r.Peak.FDs)+" → "+intCell(r.Last.FDs),
			mapList(r.Peak.TCP))
	}
	for i, r := range rep.Resources {
		if r.Role != "server" || i == 0 || len(r.Rows) < 2 {
			continue
		}
		client := rep.Resources[i-1]
		if len(client.Rows) < 2 {
			continue
		}
		first, last := r.Rows[0], r.Rows[len(r.Rows)-1]
		t.Intro = append(t.Intro, fmt.Sprintf("%s: RSS %s → %s and fds %d → %d while the clients held %d → %d connections; fds or memory that grow while connections do not point at a leak (CLOSE_WAIT sockets, buffers).",
			r.Process, mib(first.RSS), mib(last.RSS), first.FDs, last.FDs, client.Rows[0].Active, client.Rows[len(client.Rows)-1].Active))
	}
	if !rep.Evidence.ServerSamples && len(rep.Resources) > 0 {
		t.Intro = append(t.Intro, "The server was not sampled: run with --server-pid PID to add its memory, fds, threads and TCP states.")
	}
	return t
}

func resourceSeriesTable(rep *Report) Table {
	t := newTable("resource_series", "Resource usage over time", "process", "at#", "active#", "events/s#", "RSS#", "heap#",
		"goroutines#", "fds#", "timer lag#")
	t.Empty = "no monitor samples recorded"
	for _, r := range rep.Resources {
		for _, row := range r.Rows {
			if r.Role == "server" {
				// The active and message columns are the clients': not repeated.
				t.add(r.Process, "+"+fmtSeconds(row.AtS), "-", "-", mib(row.RSS), mib(row.Heap), intCell(row.Goroutines), intCell(row.FDs), "-")
				continue
			}
			t.add(r.Process, "+"+fmtSeconds(row.AtS), count(row.Active), rate(row.EventsPerS), mib(row.RSS), mib(row.Heap),
				intCell(row.Goroutines), intCell(row.FDs), fmtSeconds(row.TimerLagS))
		}
	}
	return t
}

func overheadTable(rep *Report) Table {
	t := newTable("overhead", "Tool overhead: was ssestress itself the bottleneck?", "process", "samples#", "CPU#",
		"timer lag p50#", "timer lag p99#", "timer lag max#", "note")
	t.Empty = "no monitor samples recorded: the tool's own CPU and timer lag are unknown"
	for _, o := range rep.Overhead {
		cpu := "not recorded"
		if o.CPUPercent >= 0 {
			cpu = strconv.FormatFloat(o.CPUPercent, 'f', 0, 64) + "%"
		}
		if o.Samples == 0 {
			t.add(o.Process, "0", cpu, "-", "-", "-", o.Note)
			continue
		}
		t.add(o.Process, strconv.Itoa(o.Samples), cpu, fmtSeconds(o.TimerLagS.P50), fmtSeconds(o.TimerLagS.P99), fmtSeconds(o.TimerLagS.Max), o.Note)
	}
	return t
}

func filesTable(rep *Report) Table {
	t := newTable("files", "Session files", "file", "command", "scenario", "shard", "started", "duration#", "records", "dropped#")
	for _, f := range rep.Files {
		started := "-"
		if !f.StartedAt.IsZero() {
			started = f.StartedAt.UTC().Format("2006-01-02 15:04:05Z")
		}
		dropped := strconv.FormatUint(f.Dropped, 10)
		if f.Interrupted {
			dropped += " (interrupted)"
		}
		if len(f.Unreadable) > 0 {
			dropped += "; unreadable, skipped: " + mapList(f.Unreadable)
		}
		t.add(f.Name, dashIfEmpty(f.Command), dashIfEmpty(f.Scenario), dashIfEmpty(f.Shard), started,
			fmtSeconds(f.DurationS), mapList(f.Records), dropped)
	}
	return t
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
