package analysis

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	Value      any
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

// RenderTable writes the tables as text boxes for a terminal.
func RenderTable(w io.Writer, doc *Document) error {
	bw := bufio.NewWriter(w)
	for i, t := range doc.Tables {
		if i > 0 {
			bw.WriteString("\n")
		}
		fmt.Fprintf(bw, "== %s ==\n", t.Title)
		for _, s := range t.Intro {
			bw.WriteString(s + "\n")
		}
		if len(t.Rows) == 0 && t.Empty != "" {
			fmt.Fprintf(bw, "(%s)\n", t.Empty)
			continue
		}
		if err := drawTable(bw, t, renderer.NewBlueprint(), nil); err != nil {
			return err
		}
	}
	return bw.Flush()
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
	for _, row := range t.Rows {
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

// RenderMarkdown writes the tables as GitHub-flavoured markdown, for
// pasting into tickets.
func RenderMarkdown(w io.Writer, doc *Document) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# %s\n", doc.Title)
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

// RenderCSV writes every table as CSV rows whose first column is the
// table's id, so one file holds all tables and grep or a spreadsheet filter
// picks one out. The first row of each table is its header.
func RenderCSV(w io.Writer, doc *Document) error {
	cw := csv.NewWriter(w)
	for _, t := range doc.Tables {
		cw.Write(append([]string{t.ID}, t.Columns...))
		for _, row := range t.Rows {
			cw.Write(append([]string{t.ID}, row...))
		}
	}
	cw.Flush()
	return cw.Error()
}

// RenderJSON writes the Document's value (the Report, Comparison, ...)
// itself, indented.
func RenderJSON(w io.Writer, doc *Document) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc.Value)
}
