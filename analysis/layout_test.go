package analysis

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"html"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// squeeze drops every space and line break: text wrapped at any width
// squeezes to the same string.
func squeeze(s string) string { return strings.Join(strings.Fields(s), "") }

// checkLayout renders doc in the table format at several widths: no line
// passes the width, the first paragraph is the lead (the verdict), every
// table's title and the first word of every row show up; with no limit the
// lead is one line.
func checkLayout(t *testing.T, doc *Document) {
	t.Helper()
	for _, width := range []int{MinWidth, 80, 120, NoWidthLimit} {
		d := *doc
		d.Width = width
		var buf bytes.Buffer
		if err := RenderTable(&buf, &d); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if width > 0 {
			for i, l := range lines {
				if w := textWidth(l); w > width {
					t.Errorf("width %d: line %d is %d wide: %q", width, i+1, w, l)
				}
			}
		}
		if doc.Lead != "" {
			first, _, _ := strings.Cut(out, "\n\n")
			if squeeze(first) != squeeze(doc.Lead) {
				t.Errorf("width %d: the first paragraph is not the lead:\n%s\nwant %q", width, first, doc.Lead)
			}
			if width == NoWidthLimit && first != doc.Lead {
				t.Errorf("no width limit: the lead was wrapped:\n%s", first)
			}
		}
		flat := squeeze(out)
		for _, tb := range doc.Tables {
			if !strings.Contains(flat, squeeze("== "+tb.Title+" ==")) {
				t.Errorf("width %d: table %s has no title", width, tb.ID)
			}
			for i, row := range tb.Rows {
				// Wrapped cells interleave with their neighbours: the
				// first word of each row's first cell must show.
				if f := strings.Fields(row[0]); !tb.isLead(i) && len(f) > 0 && !strings.Contains(out, f[0]) {
					t.Errorf("width %d: table %s: row %q missing", width, tb.ID, row[0])
				}
			}
		}
	}
}

// checkCSV reads every section of doc as CSV: one header of distinct
// field names, rows as long as the header, numeric fields holding numbers
// or nothing.
func checkCSV(t *testing.T, doc *Document) {
	t.Helper()
	for _, tb := range doc.Tables {
		var buf bytes.Buffer
		if err := RenderCSVSection(&buf, doc, tb.ID); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&buf).ReadAll() // refuses ragged rows
		if err != nil {
			t.Errorf("section %s: %v", tb.ID, err)
			continue
		}
		if len(rows) != len(tb.Rows)+1 {
			t.Errorf("section %s: %d rows, want %d and a header", tb.ID, len(rows)-1, len(tb.Rows))
			continue
		}
		seen := map[string]bool{}
		for _, name := range rows[0] {
			if seen[name] || name == "" {
				t.Errorf("section %s: field %q twice or empty in %v", tb.ID, name, rows[0])
			}
			seen[name] = true
		}
		for _, row := range rows[1:] {
			for i, f := range tb.Fields {
				if !f.Numeric || row[i] == "" {
					continue
				}
				if _, err := strconv.ParseFloat(row[i], 64); err != nil {
					t.Errorf("section %s: field %s = %q, not a number", tb.ID, f.Name, row[i])
				}
			}
		}
	}
	if err := RenderCSVSection(&bytes.Buffer{}, doc, "nope"); err == nil || !strings.Contains(err.Error(), "unknown report section \"nope\" (sections: ") {
		t.Errorf("unknown section: %v", err)
	}
}

// TestWriteCSVDir: one file per section, each the section's CSV.
func TestWriteCSVDir(t *testing.T) {
	doc := loadIdle(t).Doc()
	dir := filepath.Join(t.TempDir(), "csv")
	paths, err := WriteCSVDir(dir, doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(doc.Tables) {
		t.Fatalf("%d files for %d sections", len(paths), len(doc.Tables))
	}
	for i, tb := range doc.Tables {
		if filepath.Base(paths[i]) != tb.ID+".csv" {
			t.Errorf("file %s for section %s", paths[i], tb.ID)
		}
		var want bytes.Buffer
		RenderCSVSection(&want, doc, tb.ID)
		if got, _ := os.ReadFile(paths[i]); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s differs from section %s", paths[i], tb.ID)
		}
	}
}

// TestVerdictOnce: HTML and markdown say the verdict's statement once
// (the lead), and HTML shows it, then the summary numbers, then the graphs,
// then the other tables.
func TestVerdictOnce(t *testing.T) {
	rep := loadIdle(t)
	doc := rep.Doc()
	var h, md bytes.Buffer
	if err := RenderHTML(&h, doc); err != nil {
		t.Fatal(err)
	}
	if err := RenderMarkdown(&md, doc); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(h.String(), html.EscapeString(rep.Verdict.Statement)); n != 1 {
		t.Errorf("html says the verdict %d times", n)
	}
	if n := strings.Count(md.String(), escapeMarkdown(rep.Verdict.Statement)); n != 1 {
		t.Errorf("markdown says the verdict %d times", n)
	}
	page := h.String()
	order := []string{`<section class="verdict" id="lead">`, `<h2 id="verdict">`, `<h2 id="summary">`, `<h2 id="graphs">`, `<svg`, `<h2 id="error_patterns">`}
	last := -1
	for _, mark := range order {
		i := strings.Index(page, mark)
		if i <= last {
			t.Errorf("%q at %d, not after the mark before it (%d)", mark, i, last)
		}
		last = i
	}
}

// TestGraphData: the first events-per-second reading is the rate since
// the monitor started (not 0), graphs of counts are bars of whole numbers
// (no tick at 0.5 errors), every graph has a kind and the wall clock of
// its start, and the memory graph says why it has no server series.
func TestGraphData(t *testing.T) {
	dir := t.TempDir()
	run := session.RunInfo{Command: "run", Scenario: "flood", StartedAt: t0, EndedAt: at(30 * time.Second)}
	recs := []session.Record{session.Endpoint{Role: session.RoleServer, Name: "embedded", Addr: "127.0.0.1:8090"}}
	for i, events := range []int64{1117, 3217, 5221} {
		s := time.Duration(i+1) * 10 * time.Second
		recs = append(recs, session.Sample{Time: at(s), Uptime: session.Seconds(s), Active: int64(13 + 7*min(i, 1)), Events: events, RSS: 25 << 20, FDs: 65})
	}
	recs = append(recs, session.ErrorRecord{Time: at(7 * time.Second), Source: "client", ClientID: "c0001", Class: errclass.ECONNRESET,
		Message: "read: connection reset by peer", Age: session.Seconds(5 * time.Second)})
	rep, err := LoadFiles(writeSession(t, filepath.Join(dir, "demo.db"), run, nil, recs))
	if err != nil {
		t.Fatal(err)
	}
	graphs := map[string]Graph{}
	for _, g := range rep.Graphs {
		graphs[g.ID] = g
		if g.Kind == "" || !g.StartedAt.Equal(t0) {
			t.Errorf("graph %s: kind %q, start %v", g.ID, g.Kind, g.StartedAt)
		}
	}
	rate := graphs["events-per-second"]
	if rate.Kind != GraphRate || len(rate.Series) != 1 || rate.Series[0].Y[0] != 111.7 || rate.Series[0].From != 0 || rate.Series[0].Y[1] != 210 {
		t.Errorf("events per second %+v", rate)
	}
	if g := graphs["memory"]; !strings.Contains(g.Note, "The embedded server ran inside run (demo.db)") {
		t.Errorf("memory note %q", g.Note)
	}
	errs := graphs["errors-by-class"]
	if errs.Kind != GraphCounts || !errs.Integer || errs.BinS <= 0 {
		t.Fatalf("errors graph %+v", errs)
	}
	var svg bytes.Buffer
	WriteSVG(&svg, errs)
	if strings.Contains(svg.String(), ">0.5<") || !strings.Contains(svg.String(), "<rect x=") || !strings.Contains(svg.String(), `class="wall-clock"`) {
		t.Errorf("errors graph drawn with half ticks, no bars or no wall clock:\n%s", svg.String())
	}
	if !strings.Contains(svg.String(), ">03:04:05<") {
		t.Errorf("no wall-clock label of the start (03:04:05 UTC):\n%s", svg.String())
	}
}

// TestLayoutRandomTables lays out seeded random tables (short and long
// words, numbers, unbreakable tokens, wide characters, a few or many
// columns and rows) at widths from MinWidth to 160: no line passes the
// width, whatever the table (a table that fits no other way is forced
// narrower, its words broken).
func TestLayoutRandomTables(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 4))
	words := []string{"a", "reset", "ECONNRESET", "proxy", "p1/upstream", "127.0.0.1:41000", "→", "(FIN)", "idle-timeout",
		"reset:hop=upstream,direction=down,toxicity=0.5,after=5s", "数据", "ü", "0.5", "1.2 s", "x"}
	text := func(n int) string {
		var parts []string
		for range n {
			parts = append(parts, words[rng.IntN(len(words))])
		}
		return strings.Join(parts, " ")
	}
	for round := range 300 {
		cols := 1 + rng.IntN(12)
		var specs []string
		for c := range cols {
			// Column specs give "=" a meaning: header words without it.
			name := strings.ReplaceAll(fmt.Sprintf("%s %d", text(1+rng.IntN(3)), c), "=", "_")
			if rng.IntN(3) == 0 {
				name += "#"
			}
			specs = append(specs, name)
		}
		tb := newTable("random", "Random table "+strconv.Itoa(round), specs...)
		tb.Key = rng.IntN(3)
		for range rng.IntN(8) {
			var row []string
			for c := range cols {
				if tb.Numeric[c] && rng.IntN(4) > 0 {
					row = append(row, strconv.Itoa(rng.IntN(100000)))
					continue
				}
				row = append(row, text(rng.IntN(25)))
			}
			tb.add(row...)
		}
		width := MinWidth + rng.IntN(121)
		doc := &Document{Lead: text(40), Tables: []Table{tb}, Width: width}
		var buf bytes.Buffer
		if err := RenderTable(&buf, doc); err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(buf.String(), "\n") {
			if w := textWidth(l); w > width {
				t.Fatalf("round %d, width %d: line %d is %d wide: %q\n%s", round, width, i+1, w, l, buf.String())
			}
		}
	}
}
