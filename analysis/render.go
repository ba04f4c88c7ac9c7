package analysis

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/ssestress/ssestress/analysis/attribution"
)

// ErrUnknownFormat is returned by Render for a format it does not know.
var ErrUnknownFormat = errors.New("unknown report format")

// Document is what a renderer writes: the plain structs of a report, a
// comparison or a reproduction, laid out once. Every format draws the same
// Document; only JSON writes Value (the struct itself) instead.
type Document struct {
	Title string
	// Lead is the answer in a sentence, and LeadItems its evidence; Advice
	// says what to enable for better evidence.
	Lead      string
	LeadItems []string
	Advice    []string
	// Conclusive marks a Lead that names an answer (styled as such in HTML).
	Conclusive bool
	Files      []string
	Tables     []Table
	Graphs     []Graph
	// GraphsAfter is the table after which HTML shows the graphs (""
	// before every table): the summary numbers come before them.
	GraphsAfter string
	// Width is the table format's line width in columns: 0 means
	// DefaultWidth, NoWidthLimit none. The other formats are not laid out.
	Width int
	Value any
}

// width is the table format's line width, 0 for no limit.
func (d *Document) width() int {
	switch {
	case d.Width == 0:
		return DefaultWidth
	case d.Width < 0:
		return 0
	}
	return max(d.Width, MinWidth)
}

// Renderer writes a Document in one format.
type Renderer func(w io.Writer, doc *Document) error

// Renderers is the explicit table of report formats.
var Renderers = map[string]Renderer{
	"table":    RenderTable,
	"markdown": RenderMarkdown,
	"csv":      RenderCSV,
	"json":     RenderJSON,
	"html":     RenderHTML,
}

// Formats lists the format names, sorted.
func Formats() []string { return sortedKeys(Renderers) }

// Doc lays a Report out as a Document.
func (rep *Report) Doc() *Document {
	d := &Document{
		Title: "ssestress report", Lead: rep.Verdict.Statement, LeadItems: rep.Verdict.Evidence, Advice: rep.Verdict.Enable,
		Conclusive: rep.Verdict.Cause != nil && rep.Verdict.Cause.Kind != attribution.KindUnknown, Tables: Tables(rep), Graphs: rep.Graphs, Value: rep,
		GraphsAfter: "summary",
	}
	for _, f := range rep.Files {
		d.Files = append(d.Files, f.Name)
	}
	return d
}

// Render writes rep in format.
func Render(w io.Writer, rep *Report, format string) error { return RenderDoc(w, rep.Doc(), format) }

// RenderDoc writes doc in format.
func RenderDoc(w io.Writer, doc *Document, format string) error {
	r, ok := Renderers[format]
	if !ok {
		return fmt.Errorf("%w %q (use %s)", ErrUnknownFormat, format, strings.Join(Formats(), ", "))
	}
	return r(w, doc)
}

// RenderTable writes the document for a terminal of doc.Width columns:
// the lead (the verdict) first as wrapped text, with its evidence and
// advice, then each table fitted to the width (see textlayout.go).
func RenderTable(w io.Writer, doc *Document) error {
	width := doc.width()
	bw := bufio.NewWriter(w)
	if doc.Lead != "" {
		writeParagraph(bw, doc.Lead, "", "", width)
		writeItems(bw, "Evidence:", doc.LeadItems, width)
		writeItems(bw, "To get better evidence, enable:", doc.Advice, width)
		bw.WriteString("\n")
	}
	for i, t := range doc.Tables {
		if i > 0 {
			bw.WriteString("\n")
		}
		writeParagraph(bw, "== "+t.Title+" ==", "", "   ", width)
		for _, s := range t.Intro {
			writeParagraph(bw, s, "", "", width)
		}
		if len(t.Rows) == 0 && t.Empty != "" {
			writeParagraph(bw, "("+t.Empty+")", "", " ", width)
			continue
		}
		writeLaidTable(bw, layoutTable(t, width), width)
	}
	return bw.Flush()
}

// writeItems writes a titled list, one wrapped item per "- ".
func writeItems(w *bufio.Writer, title string, items []string, width int) {
	if len(items) == 0 {
		return
	}
	w.WriteString("\n" + title + "\n")
	for _, it := range items {
		writeParagraph(w, it, "- ", "  ", width)
	}
}

// drawTable draws t with a tablewriter renderer; escape, when set, is
// applied to every cell.
func drawTable(w io.Writer, t Table, r tw.Renderer, escape func(string) string) error {
	aligns := make([]tw.Align, len(t.Columns))
	headerAligns := make([]tw.Align, len(t.Columns))
	for i, numeric := range t.Numeric {
		aligns[i], headerAligns[i] = tw.AlignLeft, tw.AlignLeft
		if numeric {
			aligns[i], headerAligns[i] = tw.AlignRight, tw.AlignRight
		}
	}
	tb := tablewriter.NewTable(w,
		tablewriter.WithRenderer(r),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAlignmentConfig(tw.CellAlignment{PerColumn: headerAligns}),
		tablewriter.WithRowAlignmentConfig(tw.CellAlignment{PerColumn: aligns}),
	)
	esc := func(cells []string) []string {
		if escape == nil {
			return cells
		}
		out := make([]string, len(cells))
		for i, c := range cells {
			out[i] = escape(c)
		}
		return out
	}
	tb.Header(toAny(esc(t.Columns))...)
	for i, row := range t.Rows {
		if t.isLead(i) {
			continue // the lead says it
		}
		if err := tb.Append(esc(row)); err != nil {
			return fmt.Errorf("table %s: %w", t.ID, err)
		}
	}
	if err := tb.Render(); err != nil {
		return fmt.Errorf("table %s: %w", t.ID, err)
	}
	return nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// RenderMarkdown writes the document as GitHub-flavoured markdown, for
// pasting into tickets: the lead, then every table at full width.
func RenderMarkdown(w io.Writer, doc *Document) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# %s\n", doc.Title)
	if doc.Lead != "" {
		fmt.Fprintf(bw, "\n**%s**\n", escapeMarkdown(doc.Lead))
		for _, l := range []struct {
			title string
			items []string
		}{{"Evidence", doc.LeadItems}, {"To get better evidence, enable", doc.Advice}} {
			if len(l.items) == 0 {
				continue
			}
			fmt.Fprintf(bw, "\n%s:\n\n", l.title)
			for _, it := range l.items {
				fmt.Fprintf(bw, "- %s\n", escapeMarkdown(it))
			}
		}
	}
	for _, t := range doc.Tables {
		fmt.Fprintf(bw, "\n## %s\n\n", t.Title)
		for _, s := range t.Intro {
			bw.WriteString(escapeMarkdown(s) + "\n\n")
		}
		if len(t.Rows) == 0 && t.Empty != "" {
			fmt.Fprintf(bw, "_%s_\n", escapeMarkdown(t.Empty))
			continue
		}
		if err := drawTable(bw, t, renderer.NewMarkdown(), escapeMarkdown); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// escapeMarkdown keeps cell text from breaking a markdown table or
// turning into markup.
var escapeMarkdown = strings.NewReplacer(`|`, `\|`, `*`, `\*`, "`", "\\`", "\n", " ").Replace

// ErrUnknownSection is returned for a CSV section the document does not have.
var ErrUnknownSection = errors.New("unknown report section")

// Sections lists the document's tables by id, in reading order: the
// sections of the CSV format.
func (d *Document) Sections() []string {
	out := make([]string, len(d.Tables))
	for i, t := range d.Tables {
		out[i] = t.ID
	}
	return out
}

// ReportSections lists the sections of a plain report (Report.Doc); a
// report holds the recording and replay ones only when its files do.
func ReportSections() []string {
	return append((&Document{Tables: Tables(&Report{})}).Sections(), "files_being_written", "replay_endings", "unrecorded_tunnels")
}

// RenderCSVSection writes one table as a rectangular CSV file: a header of
// field names (units in the names: age_s, rss_bytes), then one line per
// row with numbers as plain decimals and nothing where there is no value.
func RenderCSVSection(w io.Writer, doc *Document, section string) error {
	for _, t := range doc.Tables {
		if t.ID == section {
			return writeCSVTable(w, t)
		}
	}
	return fmt.Errorf("%w %q (sections: %s)", ErrUnknownSection, section, strings.Join(doc.Sections(), ", "))
}

func writeCSVTable(w io.Writer, t Table) error {
	cw := csv.NewWriter(w)
	header := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		header[i] = f.Name
	}
	cw.Write(header)
	for _, row := range t.Data {
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}

// WriteCSVDir writes every table as DIR/<section>.csv (RenderCSVSection),
// making DIR if needed, and returns the paths written.
func WriteCSVDir(dir string, doc *Document) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, t := range doc.Tables {
		var buf bytes.Buffer
		if err := writeCSVTable(&buf, t); err != nil {
			return paths, err
		}
		p := filepath.Join(dir, t.ID+".csv")
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// RenderCSV writes every table one after another, each a CSV table of its
// own (RenderCSVSection) after a line "# section ID" and before a blank
// line: one stream to read or split. A tool that loads CSV wants one
// section (report --section) or a directory of them (report -o DIR).
func RenderCSV(w io.Writer, doc *Document) error {
	bw := bufio.NewWriter(w)
	for i, t := range doc.Tables {
		if i > 0 {
			bw.WriteString("\n")
		}
		fmt.Fprintf(bw, "# section %s\n", t.ID)
		if err := writeCSVTable(bw, t); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// RenderJSON writes the Document's value (the Report, Comparison, ...)
// itself, indented.
func RenderJSON(w io.Writer, doc *Document) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc.Value)
}
