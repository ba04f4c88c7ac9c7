package analysis

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
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
	// Key is how many leading columns name a row: a table too wide for
	// the terminal is drawn in parts that each repeat them. 0 means 1.
	Key int `json:"key,omitempty"`
	// Lead marks the rows the document's lead already says (the
	// verdict's statement, evidence and advice): renderers that print the
	// lead leave them out of the table. Nil: none.
	Lead []bool `json:"lead,omitempty"`
	// Fields are the table's columns as data (csv): one name per value,
	// its unit in the name (age_s, rss_bytes); a display column such as a
	// range may hold several. Data holds the rows in them: numbers as
	// plain decimals, "" where there is no value.
	Fields []Field    `json:"fields"`
	Data   [][]string `json:"data"`
	// width is the number of fields of each column.
	width []int
}

// Field is one column of a table as data.
type Field struct {
	Name string `json:"name"`
	// Numeric fields hold a number or nothing in every row.
	Numeric bool `json:"numeric"`
}

// cell is one display cell with its values as data: Text for people,
// Data one value per field of its column.
type cell struct {
	Text string
	Data []string
}

// newTable makes a table from column specs: "name" is a text column,
// "name#" a numeric one (aligned right); "=field,field#" after it names the
// column's fields (a '#' marks a numeric field), which default to the name
// in snake case, numeric when the column is.
func newTable(id, title string, columns ...string) Table {
	t := Table{ID: id, Title: title}
	for _, c := range columns {
		display, fields, named := strings.Cut(c, "=")
		name, numeric := strings.CutSuffix(display, "#")
		t.Columns = append(t.Columns, name)
		t.Numeric = append(t.Numeric, numeric)
		if !named {
			t.Fields = append(t.Fields, Field{Name: snake(name), Numeric: numeric})
			t.width = append(t.width, 1)
			continue
		}
		n := 0
		for _, f := range strings.Split(fields, ",") {
			fname, fnum := strings.CutSuffix(f, "#")
			t.Fields = append(t.Fields, Field{Name: fname, Numeric: fnum})
			n++
		}
		t.width = append(t.width, n)
	}
	return t
}

// snake writes a column name as a field name: "max active" → max_active,
// "events/s" → events_per_s.
func snake(name string) string {
	name = strings.ReplaceAll(strings.ToLower(name), "/", " per ")
	var b strings.Builder
	sep := false
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			sep = false
			continue
		}
		sep = true
	}
	return b.String()
}

// add appends a row of plain text cells: each is its own value.
func (t *Table) add(cells ...string) {
	row := make([]any, len(cells))
	for i, c := range cells {
		row[i] = c
	}
	t.addRow(row...)
}

// addRow appends a row whose cells are strings (text that is its own
// value) or cells (text and values). A row that does not match the
// columns is a bug in the table's builder: it panics, and the golden
// tests run every builder.
func (t *Table) addRow(cells ...any) {
	if len(cells) != len(t.Columns) {
		panic(fmt.Sprintf("table %s: row of %d cells for %d columns", t.ID, len(cells), len(t.Columns)))
	}
	text := make([]string, len(cells))
	var data []string
	for i, c := range cells {
		var v cell
		switch c := c.(type) {
		case string:
			v = cell{Text: c, Data: []string{c}}
		case cell:
			v = c
		default:
			panic(fmt.Sprintf("table %s: cell %T", t.ID, c))
		}
		want := 1
		if i < len(t.width) {
			want = t.width[i]
		}
		if len(v.Data) != want {
			panic(fmt.Sprintf("table %s, column %q: %d values for %d fields", t.ID, t.Columns[i], len(v.Data), want))
		}
		text[i] = v.Text
		data = append(data, v.Data...)
	}
	t.Rows = append(t.Rows, text)
	t.Data = append(t.Data, data)
	if t.Lead != nil {
		t.Lead = append(t.Lead, false)
	}
}

// addLead appends a row of text the document's lead already says.
func (t *Table) addLead(cells ...string) {
	if t.Lead == nil {
		t.Lead = make([]bool, len(t.Rows))
	}
	t.add(cells...)
	t.Lead[len(t.Lead)-1] = true
}

// isLead reports whether row i is said by the lead.
func (t *Table) isLead(i int) bool { return i < len(t.Lead) && t.Lead[i] }

// Cells: text for people, values for data.

// num writes a value for data: the shortest decimal that reads back the same.
func numData(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return ""
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// none is a cell with no value: "-", "not recorded".
func none(text string, fields int) cell { return cell{Text: text, Data: make([]string, fields)} }

// textCell is a text cell, "-" when empty (then without a value).
func textCell(s string) cell {
	if s == "" {
		return none("-", 1)
	}
	return cell{Text: s, Data: []string{s}}
}

func countCell(n int64) cell { return cell{Text: count(n), Data: []string{count(n)}} }

func shareCell(f float64) cell { return cell{Text: share(f), Data: []string{numData(f)}} }

func rateCell(f float64) cell { return cell{Text: rate(f), Data: []string{numData(f)}} }

func secondsCell(s float64) cell { return cell{Text: fmtSeconds(s), Data: []string{numData(s)}} }

func preciseCell(s float64) cell { return cell{Text: fmtPrecise(s), Data: []string{numData(s)}} }

// sinceCell is a time since the start: "+2.0 s".
func sinceCell(s float64) cell { return cell{Text: "+" + fmtSeconds(s), Data: []string{numData(s)}} }

// bytesCell is a size in MiB for people and in bytes as data; 0 is "-".
func bytesCell(b uint64) cell {
	if b == 0 {
		return none("-", 1)
	}
	return cell{Text: mib(b), Data: []string{strconv.FormatUint(b, 10)}}
}

// intCell is a count where 0 means not sampled ("-").
func intCell(n int) cell {
	if n == 0 {
		return none("-", 1)
	}
	return cell{Text: strconv.Itoa(n), Data: []string{strconv.Itoa(n)}}
}

// joined joins cells into one display cell, their values side by side.
func joined(sep string, cells ...cell) cell {
	var out cell
	for i, c := range cells {
		if i > 0 {
			out.Text += sep
		}
		out.Text += c.Text
		out.Data = append(out.Data, c.Data...)
	}
	return out
}

// rangeCell is a range of seconds "lo – hi" as two values.
func rangeCell(lo, hi float64) cell {
	return cell{Text: fmtPrecise(lo) + " – " + fmtPrecise(hi), Data: []string{numData(lo), numData(hi)}}
}

// bucketCell is a bucket's label with its bounds as values (an open last
// bucket has no upper bound).
func bucketCell(b DurationBucket) cell {
	hi := ""
	if b.HiS > 0 {
		hi = numData(b.HiS)
	}
	return cell{Text: b.Label, Data: []string{numData(b.LoS), hi}}
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

func mib(b uint64) string {
	if b == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB"
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
func classCells(counts map[string]int64, shown, rest []string) []any {
	var cells []any
	for _, c := range shown {
		cells = append(cells, countCell(counts[c]))
	}
	if len(rest) > 0 {
		var n int64
		for _, c := range rest {
			n += counts[c]
		}
		cells = append(cells, countCell(n))
	}
	return cells
}

// classHeaders are the columns of a breakdown by class: each class's
// name is its field's name too.
func classHeaders(shown, rest []string) []string {
	var h []string
	for _, c := range shown {
		h = append(h, c+"#="+c+"#")
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

// listCell is a classList or mapList as a cell: "-" has no value.
func listCell(s string) cell {
	if s == "-" {
		return none(s, 1)
	}
	return textCell(s)
}

func verdictTable(rep *Report) Table {
	v := rep.Verdict
	t := newTable("verdict", "Verdict", "item", "detail")
	t.addLead("statement", v.Statement)
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
		t.addLead("evidence", e)
	}
	for _, e := range v.Conflicts {
		t.add("conflict", e)
	}
	for _, e := range v.Enable {
		t.addLead("enable", e)
	}
	return t
}

func summaryTable(rep *Report) Table {
	t := newTable("summary", "Run summary per scenario", "scenario", "files#", "duration#=duration_s#", "attempts#", "active#",
		"max active#=active_max#", "events#", "events/s#=events_per_s#", "reconnects#", "first event p50#=first_event_p50_s#",
		"first event p99#=first_event_p99_s#", "errors#", "errors by class")
	t.Empty = "no client connections or errors recorded"
	for _, s := range rep.Scenarios {
		t.addRow(s.Scenario, strconv.Itoa(s.Files), secondsCell(s.DurationS), count(s.Attempts), count(s.Active),
			count(s.ActiveMax), count(s.Events), rateCell(s.EventsPerS), count(s.Reconnects),
			distCell(s.FirstEventS, s.FirstEventS.P50), distCell(s.FirstEventS, s.FirstEventS.P99),
			count(s.Errors), listCell(classList(s.ErrorsBy, rep.Classes)))
	}
	return t
}

func distCell(d Dist, v float64) cell {
	if d.N == 0 {
		return none("-", 1)
	}
	return secondsCell(v)
}

func patternsTable(rep *Report) Table {
	t := newTable("error_patterns", "Errors by class × hop × origin", "class", "hop", "origin", "cause", "via", "confidence", "fault", "evidence", "count#", "share#")
	t.Empty = "no errors recorded"
	for _, p := range rep.Patterns {
		t.addRow(p.Class, p.Hop, p.Origin, p.Cause, textCell(p.Via), p.Confidence, textCell(p.Fault), p.Evidence, count(p.Count), shareCell(p.Share))
	}
	return t
}

func fingerprintsTable(rep *Report) Table {
	t := newTable("fingerprints", "Fingerprints: clusters of errors at one idle time or age", "class", "dimension",
		"centre#=centre_s#", "range=lo_s#,hi_s#", "count#", "share of class#", "fingerprint")
	t.Empty = "no cluster: the errors are spread out in age and idle time"
	if len(rep.Patterns) == 0 {
		t.Empty = "no errors recorded"
	}
	if rep.TimeScale != 1 {
		t.Intro = append(t.Intro, fmt.Sprintf("Time scale %s: known middlebox timeouts are also matched divided by %s (60 s acts in %s).", fmtScale(rep.TimeScale), fmtScale(rep.TimeScale), fmtSeconds(60/rep.TimeScale)))
	}
	for _, c := range rep.Fingerprints {
		t.addRow(c.Class, c.Dimension, preciseCell(c.CenterS), rangeCell(c.LoS, c.HiS),
			count(c.Count), shareCell(c.Share), c.Match)
	}
	return t
}

func bucketTable(id, title string, rep *Report, buckets []DurationBucket) Table {
	shown, rest := classColumns(rep)
	cols := append([]string{"bucket=lo_s#,hi_s#", "errors#"}, classHeaders(shown, rest)...)
	cols = append(cols, "fingerprint")
	t := newTable(id, title, cols...)
	t.Empty = "no errors recorded"
	for _, b := range buckets {
		row := append([]any{bucketCell(b), count(b.Count)}, classCells(b.ByClass, shown, rest)...)
		t.addRow(append(row, textCell(b.Fingerprint))...)
	}
	return t
}

func timelineTable(rep *Report) Table {
	shown, rest := classColumns(rep)
	cols := append([]string{"since start=since_start_s#", "errors#"}, classHeaders(shown, rest)...)
	t := newTable("errors_over_time", "Errors over time since start", cols...)
	t.Empty = "no errors recorded"
	if rep.Timeline.BinS > 0 {
		t.Intro = append(t.Intro, "Bins of "+fmtSeconds(rep.Timeline.BinS)+", from the start of each file.")
	}
	for _, b := range rep.Timeline.Bins {
		row := append([]any{sinceCell(b.StartS), count(b.Count)}, classCells(b.ByClass, shown, rest)...)
		t.addRow(row...)
	}
	return t
}

func groupsTable(rep *Report) Table {
	t := newTable("groups", "Per symbol group", "group", "attempts#", "events#", "errors#", "errors/attempt#", "errors by class")
	t.Empty = "no symbol groups recorded"
	for _, g := range rep.Groups {
		t.addRow(g.Group, count(g.Attempts), count(g.Events), count(g.Errors), rateCell(g.ErrorsPerAttempt), listCell(classList(g.ByClass, rep.Classes)))
	}
	return t
}

func messagesTable(rep *Report) Table {
	t := newTable("messages", "Distinct error messages", "count#", "class", "message", "first#=first_s#", "last#=last_s#")
	t.Key = 2
	t.Empty = "no errors recorded"
	for _, m := range rep.Messages {
		t.addRow(count(m.Count), m.Class, m.Message, sinceCell(m.FirstS), sinceCell(m.LastS))
	}
	if rep.MessagesOmitted > 0 {
		t.Intro = append(t.Intro, fmt.Sprintf("Ports are shown as '*'. %d more distinct messages are not listed.", rep.MessagesOmitted))
	} else if len(rep.Messages) > 0 {
		t.Intro = append(t.Intro, "Ports are shown as '*'.")
	}
	return t
}

func resetChainsTable(rep *Report) Table {
	t := newTable("reset_chains", "Reset and cut chains, grouped by cause", "chain", "sender", "hop", "cause", "felt",
		"idle=idle,idle_min_s#,idle_max_s#", "confidence", "count#")
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
		idle := cell{Text: c.Idle, Data: []string{c.Idle, numData(c.IdleMinS), numData(c.IdleMaxS)}}
		t.addRow(textCell(c.Chain), c.Sender, c.Hop, cause, felt, idle, c.Confidence, count(c.Count))
	}
	return t
}

func hopsTable(rep *Report) Table {
	t := newTable("proxy_hops", "Proxy hops: how connections ended", "proxy", "hop", "connections#", "open#", "ended (closed by, how)=ended", "faults fired")
	t.Key = 2
	t.Empty = "no proxy in these files (run with --via-proxy to record each hop)"
	for _, h := range rep.Hops {
		t.addRow(h.Proxy, h.Hop, count(h.Connections), count(h.Open), listCell(mapList(h.Ended)), listCell(mapList(h.Faults)))
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
	// The measures have different units: the unit is a field of its own.
	t := newTable("connections", "Connection statistics", "measure=measure,unit", "n#", "min#", "p50#", "p90#", "p99#", "max#", "mean#")
	t.Empty = "no client connections recorded"
	if c.Attempts > 0 {
		t.Intro = append(t.Intro, fmt.Sprintf("%d connection attempts, %d of them reconnects; %.2f connection-hours in all.",
			c.Attempts, c.Reconnects, c.ConnHours))
	}
	secs := func(name string, d Dist) {
		if d.N > 0 {
			t.addRow(cell{Text: name, Data: []string{name, "s"}}, strconv.Itoa(d.N), secondsCell(d.Min), secondsCell(d.P50), secondsCell(d.P90),
				secondsCell(d.P99), secondsCell(d.Max), secondsCell(d.Mean))
		}
	}
	nums := func(name, unit string, d Dist) {
		if d.N > 0 {
			f := func(v float64) cell {
				return cell{Text: strconv.FormatFloat(v, 'f', 0, 64), Data: []string{numData(v)}}
			}
			mean := cell{Text: strconv.FormatFloat(d.Mean, 'f', 1, 64), Data: []string{numData(d.Mean)}}
			t.addRow(cell{Text: name, Data: []string{name, unit}}, strconv.Itoa(d.N), f(d.Min), f(d.P50), f(d.P90), f(d.P99), f(d.Max), mean)
		}
	}
	secs("lifetime (closed attempts)", c.LifetimeS)
	nums("events per connection", "events", c.Events)
	secs("max gap between events", c.MaxGapS)
	for _, s := range rep.Scenarios {
		secs("time to first event ("+s.Scenario+")", s.FirstEventS)
	}
	return t
}

func lifetimesTable(rep *Report) Table {
	t := newTable("lifetimes", "Connection lifetime distribution (closed attempts)", "lifetime=lo_s#,hi_s#", "attempts#", "share#")
	t.Empty = "no closed connection attempts recorded"
	total := int64(rep.Connections.LifetimeS.N)
	for _, b := range rep.Connections.Lifetimes {
		t.addRow(bucketCell(b), count(b.Count), shareCell(float64(b.Count)/float64(max(total, 1))))
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
		t.addRow(k, count(n), shareCell(float64(n)/float64(max(rep.Connections.Attempts, 1))))
	}
	return t
}

func heartbeatTable(rep *Report) Table {
	hb := rep.Heartbeat
	// value is a duration (value_s) or words (note).
	t := newTable("heartbeat", "Heartbeats versus the hops' idle timeouts", "item", "value=value_s#,note", "source")
	words := func(s string) cell { return cell{Text: s, Data: []string{"", s}} }
	secs := func(s float64) cell { return cell{Text: fmtSeconds(s), Data: []string{numData(s), ""}} }
	if hb.IntervalS > 0 {
		t.addRow("heartbeat interval seen", secs(hb.IntervalS), fmt.Sprintf("median over %d connections with heartbeats", hb.Connections))
	} else {
		t.addRow("heartbeat interval seen", words("none"), "no connection received two heartbeats")
	}
	if hb.MaxGapP99S > 0 {
		t.addRow("max gap between events (p99)", secs(hb.MaxGapP99S), "connection records")
	}
	for _, to := range hb.Timeouts {
		t.addRow("idle timeout of "+to.Where, secs(to.TimeoutS), to.Source)
	}
	for _, w := range hb.Warnings {
		t.addRow("WARNING", words(w), none("", 1))
	}
	if len(hb.Timeouts) == 0 {
		t.addRow("idle timeouts of the hops", words("unknown"), "no idle-timeout fault and no idle cluster of resets")
	}
	return t
}

func resourcesTable(rep *Report) Table {
	t := newTable("resources", "Resource usage (first → peak → last)", "process", "samples#",
		"RSS=rss_first_bytes#,rss_peak_bytes#,rss_last_bytes#", "heap peak#=heap_peak_bytes#",
		"goroutines peak#", "threads peak#", "fds=fds_first#,fds_peak#,fds_last#", "TCP sockets peak")
	t.Empty = "no monitor samples recorded"
	for _, r := range rep.Resources {
		t.addRow(r.Process, strconv.Itoa(r.Samples),
			joined(" → ", bytesCell(r.First.RSS), bytesCell(r.Peak.RSS), bytesCell(r.Last.RSS)),
			bytesCell(r.Peak.Heap), intCell(r.Peak.Goroutines), intCell(r.Peak.Threads),
			joined(" → ", intCell(r.First.FDs), intCell(r.Peak.FDs), intCell(r.Last.FDs)),
			listCell(mapList(r.Peak.TCP)))
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
	t := newTable("resource_series", "Resource usage over time", "process", "at#=at_s#", "active#", "events/s#=events_per_s#",
		"RSS#=rss_bytes#", "heap#=heap_bytes#", "goroutines#", "fds#", "timer lag#=timer_lag_s#")
	t.Key = 2
	t.Empty = "no monitor samples recorded"
	for _, r := range rep.Resources {
		for _, row := range r.Rows {
			if r.Role == "server" {
				// The active and event columns are the clients': not repeated.
				t.addRow(r.Process, sinceCell(row.AtS), none("-", 1), none("-", 1), bytesCell(row.RSS), bytesCell(row.Heap),
					intCell(row.Goroutines), intCell(row.FDs), none("-", 1))
				continue
			}
			t.addRow(r.Process, sinceCell(row.AtS), count(row.Active), rateCell(row.EventsPerS), bytesCell(row.RSS), bytesCell(row.Heap),
				intCell(row.Goroutines), intCell(row.FDs), secondsCell(row.TimerLagS))
		}
	}
	return t
}

func overheadTable(rep *Report) Table {
	t := newTable("overhead", "Tool overhead: was ssestress itself the bottleneck?", "process", "samples#", "CPU#=cpu_percent#",
		"timer lag p50#=timer_lag_p50_s#", "timer lag p99#=timer_lag_p99_s#", "timer lag max#=timer_lag_max_s#", "note")
	t.Empty = "no monitor samples recorded: the tool's own CPU and timer lag are unknown"
	for _, o := range rep.Overhead {
		cpu := none("not recorded", 1)
		if o.CPUPercent >= 0 {
			cpu = cell{Text: strconv.FormatFloat(o.CPUPercent, 'f', 0, 64) + "%", Data: []string{numData(o.CPUPercent)}}
		}
		if o.Samples == 0 {
			t.addRow(o.Process, "0", cpu, none("-", 1), none("-", 1), none("-", 1), o.Note)
			continue
		}
		t.addRow(o.Process, strconv.Itoa(o.Samples), cpu, secondsCell(o.TimerLagS.P50), secondsCell(o.TimerLagS.P99), secondsCell(o.TimerLagS.Max), o.Note)
	}
	return t
}

func filesTable(rep *Report) Table {
	t := newTable("files", "Session files", "file", "command", "scenario", "shard", "started", "duration#=duration_s#", "records",
		"dropped#=records_dropped#,interrupted,records_unreadable")
	for _, f := range rep.Files {
		started := none("-", 1)
		if !f.StartedAt.IsZero() {
			started = cell{Text: f.StartedAt.UTC().Format("2006-01-02 15:04:05Z"), Data: []string{f.StartedAt.UTC().Format(time.RFC3339Nano)}}
		}
		dropped := cell{Text: strconv.FormatUint(f.Dropped, 10), Data: []string{strconv.FormatUint(f.Dropped, 10), "", ""}}
		if f.Interrupted {
			dropped.Text += " (interrupted)"
			dropped.Data[1] = "true"
		}
		if len(f.Unreadable) > 0 {
			dropped.Text += "; unreadable, skipped: " + mapList(f.Unreadable)
			dropped.Data[2] = mapList(f.Unreadable)
		}
		t.addRow(f.Name, textCell(f.Command), textCell(f.Scenario), textCell(f.Shard), started,
			secondsCell(f.DurationS), listCell(mapList(f.Records)), dropped)
	}
	return t
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
