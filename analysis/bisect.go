package analysis

import (
	"fmt"
	"strings"
)

// BisectEntry is one entry point of a multi-hop path and the session file
// of the run against it. Entries go from the outermost (the load balancer)
// to the innermost (the application).
type BisectEntry struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	File string `json:"file"`
}

// BisectPoint is what the run against one entry point saw.
type BisectPoint struct {
	BisectEntry
	Attempts int64 `json:"attempts"`
	// Resets counts the client errors that were resets (a RST:
	// ECONNRESET, EPIPE), Cuts those that were cuts (a FIN inside the
	// stream, UNEXPECTED_EOF; HTTP/2 stream resets): together the broken
	// streams the bisection looks for.
	Resets int64 `json:"resets"`
	Cuts   int64 `json:"cuts"`
	Errors int64 `json:"errors"`
	// BrokenRate is resets and cuts per connection attempt.
	BrokenRate  float64      `json:"broken_rate"`
	Fingerprint *Fingerprint `json:"fingerprint,omitempty"`
	Verdict     string       `json:"verdict"`
}

// BisectResult names the hop the resets enter at.
type BisectResult struct {
	Points []BisectPoint `json:"points"`
	// From and To are the entry points around the hop at fault: the last
	// that shows resets and the first after it that does not. To is ""
	// when the innermost entry point shows resets too (the fault is there
	// or beyond it); both are "" when no entry point shows resets.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Monotone is false when an entry point without resets lies outside
	// one with resets: the resets are intermittent or the runs too short.
	Monotone  bool   `json:"monotone"`
	Statement string `json:"statement"`
}

// Bisect reads the session files of runs against each entry point and
// names the hop between the last entry point that shows resets and the
// first that does not.
func Bisect(entries []BisectEntry) (*BisectResult, error) {
	if len(entries) == 0 {
		return nil, ErrNoFiles
	}
	res := &BisectResult{Monotone: true}
	last := -1
	for i, e := range entries {
		rep, err := LoadFiles(e.File)
		if err != nil {
			return nil, err
		}
		pt := BisectPoint{BisectEntry: e, Attempts: rep.Connections.Attempts, Resets: rep.Verdict.Resets, Cuts: rep.Verdict.Cuts, Verdict: rep.Verdict.Statement}
		for _, p := range rep.Patterns {
			pt.Errors += p.Count
		}
		if pt.Attempts > 0 {
			pt.BrokenRate = float64(pt.broken()) / float64(pt.Attempts)
		}
		if pt.broken() > 0 {
			pt.Fingerprint = resetFingerprint(rep).Fingerprint
			last = i
		}
		res.Points = append(res.Points, pt)
	}
	for i := 0; i < last; i++ {
		if res.Points[i].broken() == 0 {
			res.Monotone = false
		}
	}
	counts := func(p BisectPoint) string {
		return fmt.Sprintf("%s: %d %s and %d %s in %d connection attempts", p.Name, p.Resets, plural(p.Resets, "reset"),
			p.Cuts, plural(p.Cuts, "cut"), p.Attempts)
	}
	switch {
	case last < 0:
		res.Statement = fmt.Sprintf("No resets or cuts at any of the %d entry points: nothing to bisect (run longer, or with more connections).", len(entries))
	case last == len(entries)-1:
		res.From = entries[last].Name
		res.Statement = fmt.Sprintf("Even the innermost entry point shows resets or cuts (%s): they come from %s itself or beyond it.",
			counts(res.Points[last]), entries[last].Name)
	default:
		res.From, res.To = entries[last].Name, entries[last+1].Name
		res.Statement = fmt.Sprintf("The resets and cuts enter on the hop %s → %s: %s; %s.", res.From, res.To,
			counts(res.Points[last]), counts(res.Points[last+1]))
	}
	if !res.Monotone {
		var quiet []string
		for i := 0; i < last; i++ {
			if res.Points[i].broken() == 0 {
				quiet = append(quiet, res.Points[i].Name)
			}
		}
		res.Statement += fmt.Sprintf(" Not conclusive: %s, outside it, showed none; they are intermittent or the runs too short.", strings.Join(quiet, ", "))
	}
	return res, nil
}

// broken is the point's resets and cuts.
func (p BisectPoint) broken() int64 { return p.Resets + p.Cuts }

// resetFingerprint is the fingerprint of a report's resets and cuts.
func resetFingerprint(rep *Report) RunResult {
	best := RunResult{FirstS: -1}
	seen := map[string]bool{}
	for _, p := range rep.Patterns {
		class := p.Class
		if !isBrokenClass(class) || seen[class] {
			continue
		}
		seen[class] = true
		r := reproductionRun(rep, class)
		if r.Reproduced && (best.Fingerprint == nil || r.Matching > best.Matching ||
			r.Matching == best.Matching && r.Fingerprint.Class < best.Fingerprint.Class) {
			best = r
		}
	}
	return best
}

// Doc lays the bisection out.
func (res *BisectResult) Doc() *Document {
	d := &Document{Title: "ssestress bisect", Lead: res.Statement, Value: res, Conclusive: res.To != "" && res.Monotone}
	j := newTable("bisect", "Hop at fault", "item", "detail")
	j.addLead("statement", res.Statement)
	if res.From != "" {
		j.add("last entry point with resets or cuts", res.From)
	}
	if res.To != "" {
		j.add("first entry point without", res.To)
	}
	t := newTable("entry_points", "Entry points, outermost first", "entry point", "URL", "attempts#", "resets#", "cuts#", "resets and cuts/attempt#", "errors#", "fingerprint")
	t.Key = 1
	for _, p := range res.Points {
		d.Files = append(d.Files, p.Name+": "+p.File)
		fp := none("-", 1)
		if p.Fingerprint != nil {
			fp = textCell(p.Fingerprint.String())
		}
		t.addRow(p.Name, p.URL, count(p.Attempts), count(p.Resets), count(p.Cuts), rateCell(p.BrokenRate), count(p.Errors), fp)
	}
	d.Tables = []Table{j, t}
	return d
}
