package analysis

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"strings"

	"github.com/olekukonko/tablewriter/renderer"
)

// htmlStyle is the report's whole stylesheet: the file must open with no
// network and no other file.
const htmlStyle = `
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #1b1b1b; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
p.files { color: #555; margin-top: 0; }
section.verdict { border-left: 6px solid #0072B2; background: #f3f8fc; padding: 0.6em 1em; margin: 1.2em 0; }
section.verdict.none { border-left-color: #D55E00; background: #fdf5f0; }
section.verdict p.statement { font-size: 1.1em; font-weight: 600; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.5em 0; display: block; max-width: 100%; overflow-x: auto; }
th, td { border: 1px solid #d4d4d4; padding: 0.25em 0.6em; vertical-align: top; }
thead th { background: #f0f0f0; }
tbody tr:nth-child(even) { background: #fafafa; }
p.empty { color: #666; font-style: italic; }
div.graphs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #e4e4e4; }
svg.chart { display: block; max-width: 100%; height: auto; }
nav ul { columns: 3; font-size: 0.9em; }
nav summary { cursor: pointer; color: #555; }
`

// RenderHTML writes one self-contained HTML file: inline CSS, the graphs as
// inline SVG, every table; no script, no external resource.
func RenderHTML(w io.Writer, doc *Document) error {
	bw := bufio.NewWriter(w)
	esc := html.EscapeString
	bw.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	bw.WriteString("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	// An empty data: icon keeps the browser from asking the network for one.
	fmt.Fprintf(bw, "<link rel=\"icon\" href=\"data:,\">\n<title>%s</title>\n<style>", esc(doc.Title))
	bw.WriteString(htmlStyle)
	fmt.Fprintf(bw, "</style>\n</head>\n<body>\n<h1>%s</h1>\n", esc(doc.Title))
	fmt.Fprintf(bw, "<p class=\"files\">%s</p>\n", esc(strings.Join(doc.Files, ", ")))

	writeHTMLNav(bw, doc)
	if doc.Lead != "" {
		class := "verdict"
		if !doc.Conclusive {
			class += " none"
		}
		fmt.Fprintf(bw, "<section class=\"%s\" id=\"lead\">\n<p class=\"statement\">%s</p>\n", class, esc(doc.Lead))
		writeList(bw, "Evidence", doc.LeadItems)
		writeList(bw, "To get better evidence, enable", doc.Advice)
		bw.WriteString("</section>\n")
	}

	// The verdict once, then the summary numbers, then the graphs, then
	// the rest.
	tables, split := doc.Tables, graphsAt(doc)
	if err := writeHTMLTables(bw, tables[:split]); err != nil {
		return err
	}
	if len(doc.Graphs) > 0 {
		bw.WriteString("<h2 id=\"graphs\">Graphs</h2>\n<div class=\"graphs\">\n")
		for _, g := range doc.Graphs {
			bw.WriteString("<figure>\n")
			svgChart(bw, g)
			bw.WriteString("</figure>\n")
		}
		bw.WriteString("</div>\n")
	}
	if err := writeHTMLTables(bw, tables[split:]); err != nil {
		return err
	}
	bw.WriteString("</body>\n</html>\n")
	return bw.Flush()
}

// graphsAt is the index of the table the graphs come before.
func graphsAt(doc *Document) int {
	for i, t := range doc.Tables {
		if doc.GraphsAfter != "" && t.ID == doc.GraphsAfter {
			return i + 1
		}
	}
	return 0
}

// writeHTMLNav writes the contents, folded to one line until opened.
func writeHTMLNav(bw *bufio.Writer, doc *Document) {
	esc := html.EscapeString
	bw.WriteString("<nav><details><summary>Contents</summary><ul>\n")
	for i, t := range doc.Tables {
		if len(doc.Graphs) > 0 && i == graphsAt(doc) {
			bw.WriteString("<li><a href=\"#graphs\">Graphs</a></li>\n")
		}
		fmt.Fprintf(bw, "<li><a href=\"#%s\">%s</a></li>\n", esc(t.ID), esc(t.Title))
	}
	bw.WriteString("</ul></details></nav>\n")
}

func writeHTMLTables(bw *bufio.Writer, tables []Table) error {
	esc := html.EscapeString
	for _, t := range tables {
		fmt.Fprintf(bw, "<h2 id=\"%s\">%s</h2>\n", esc(t.ID), esc(t.Title))
		for _, s := range t.Intro {
			fmt.Fprintf(bw, "<p>%s</p>\n", esc(s))
		}
		if len(t.Rows) == 0 && t.Empty != "" {
			fmt.Fprintf(bw, "<p class=\"empty\">%s</p>\n", esc(t.Empty))
			continue
		}
		if err := drawTable(bw, t, renderer.NewHTML(renderer.HTMLConfig{EscapeContent: true, TableClass: "t-" + t.ID}), nil); err != nil {
			return err
		}
	}
	return nil
}

func writeList(bw *bufio.Writer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(bw, "<p>%s:</p>\n<ul>\n", html.EscapeString(title))
	for _, it := range items {
		fmt.Fprintf(bw, "<li>%s</li>\n", html.EscapeString(it))
	}
	bw.WriteString("</ul>\n")
}
