package analysis

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
