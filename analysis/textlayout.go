package analysis

import (
	"bufio"
	"fmt"
	"sort"
	"strings"

	"github.com/clipperhouse/displaywidth"
)

// The table format's layout: every line fits the width the reader's
// terminal has (Document.Width). Paragraphs wrap at spaces; a table that
// is too wide wraps its text columns, moves long cells of a column to
// numbered notes below it ("[1]"), turns a table of a few rows on its side,
// and as a last resort is drawn in parts that each repeat its key columns.
// Markdown and HTML are not laid out: they stay full width.

// DefaultWidth is the width of the table format when Document.Width is 0:
// what a terminal has unless it says otherwise.
const DefaultWidth = 80

// NoWidthLimit as Document.Width draws every table at its natural width.
const NoWidthLimit = -1

// MinWidth is the narrowest width the table format lays out for.
const MinWidth = 40

// Layout parameters of text columns.
const (
	// textMinWidth is the narrowest a text column is wrapped to; a word
	// up to wordMaxWidth wide is not broken.
	textMinWidth = 10
	wordMaxWidth = 16
	// comfortWidth and comfortLines: a text column narrower than this (and
	// than its text) or whose cells wrap to more lines than this reads
	// badly; noteWidth: a column whose text is wider than this may then
	// have its long cells moved to notes, when the table has other columns.
	comfortWidth = 16
	comfortLines = 4
	noteWidth    = 24
	// inlineWidth: a cell of a moved column stays in the table when it is
	// no wider than this (or the column's header).
	inlineWidth = 12
	// transposeRows: a table of at most this many rows that does not fit
	// is turned on its side (one row per column) before it is split.
	transposeRows = 2
)

// textWidth is the width a string takes on a terminal.
func textWidth(s string) int { return displaywidth.String(s) }

// lineWidth is the width of the widest line of s.
func lineWidth(s string) int {
	w := 0
	for _, l := range strings.Split(s, "\n") {
		w = max(w, textWidth(l))
	}
	return w
}

// wrapText breaks s into lines of at most width columns: at spaces, and
// inside a word longer than a line after a separator (, / = ; : -) where
// there is one. width < 1 leaves s whole.
func wrapText(s string, width int) []string {
	if width < 1 {
		return strings.Split(s, "\n")
	}
	var out []string
	for _, para := range strings.Split(s, "\n") {
		var line string
		lw := 0
		for _, word := range strings.Fields(para) {
			ww := textWidth(word)
			if lw > 0 && lw+1+ww <= width {
				line += " " + word
				lw += 1 + ww
				continue
			}
			if lw > 0 {
				out = append(out, line)
				line, lw = "", 0
			}
			for ww > width {
				head, tail := breakWord(word, width)
				out = append(out, head)
				word = tail
				ww = textWidth(word)
			}
			line, lw = word, ww
		}
		out = append(out, line)
	}
	return out
}

// breakWord splits a word wider than width into a head that fits (after
// the last separator that leaves at least half the line used, else at
// the width) and the rest.
func breakWord(word string, width int) (string, string) {
	g := displaywidth.StringGraphemes(word)
	w, cut, sepCut := 0, 0, 0
	for g.Next() {
		gw := g.Width()
		if w+gw > width {
			break
		}
		w += gw
		cut += len(g.Value())
		if strings.ContainsAny(g.Value(), ",/=;:-→") && w*2 >= width {
			sepCut = cut
		}
	}
	if cut == 0 { // a grapheme wider than the line: it goes alone
		g = displaywidth.StringGraphemes(word)
		g.Next()
		cut = len(g.Value())
	}
	if sepCut > 0 && sepCut < len(word) {
		cut = sepCut
	}
	return word[:cut], word[cut:]
}

// writeParagraph writes s wrapped to width, each line after the first
// indented by indent (the first starts with first).
func writeParagraph(w *bufio.Writer, s, first, indent string, width int) {
	inner := 0 // no limit
	if width > 0 {
		inner = max(width-max(textWidth(first), textWidth(indent)), 1)
	}
	for i, l := range wrapText(s, inner) {
		if i == 0 {
			w.WriteString(strings.TrimRight(first+l, " ") + "\n")
		} else {
			w.WriteString(strings.TrimRight(indent+l, " ") + "\n")
		}
	}
}

// textBox is a table ready to draw: headers, cells and alignment.
type textBox struct {
	headers []string
	right   []bool
	rows    [][]string
}

// boxWidth is the width of a box whose columns are ws wide: "│ a │ b │".
func boxWidth(ws []int) int {
	n := 1
	for _, w := range ws {
		n += w + 3
	}
	return n
}

// note is a cell moved below its table.
type note struct {
	ref, text string
}

// laidTable is a table laid out for a width: one box or several (each a
// part of the columns), and the notes below them.
type laidTable struct {
	boxes  []textBox
	widths [][]int
	notes  []note
}

// layoutTable lays t's rows (those the lead does not say) out to fit width.
func layoutTable(t Table, width int) laidTable {
	box := textBox{headers: t.Columns, right: t.Numeric}
	for i, r := range t.Rows {
		if !t.isLead(i) {
			box.rows = append(box.rows, r)
		}
	}
	key := max(t.Key, 1)
	if width <= 0 {
		return laidTable{boxes: []textBox{box}, widths: [][]int{naturalWidths(box)}}
	}
	if nat := naturalWidths(box); boxWidth(nat) <= width {
		return laidTable{boxes: []textBox{box}, widths: [][]int{nat}}
	}
	// Long cells of wide text columns go to notes until the rest fits
	// and reads well; then, wrapping tighter.
	// A key column as wide as half the line (a chain of events) moves too:
	// its notes' numbers then name the rows.
	movable := len(box.headers) > 2
	moved := map[int]bool{}
	nat := naturalWidths(box)
	for {
		cur := withNotes(box, moved, nil)
		if ws, ok := allocate(cur.box, key, width, true, false); ok {
			return laidTable{boxes: []textBox{cur.box}, widths: [][]int{ws}, notes: cur.notes}
		}
		next := -1
		if movable {
			for i := range box.headers {
				wide := nat[i] > noteWidth && (i >= key || nat[i]*2 > width)
				if !box.right[i] && !moved[i] && wide && (next < 0 || nat[i] > nat[next]) {
					next = i
				}
			}
		}
		if next < 0 {
			break
		}
		moved[next] = true
	}
	cur := withNotes(box, moved, nil)
	if ws, ok := allocate(cur.box, key, width, false, false); ok {
		return laidTable{boxes: []textBox{cur.box}, widths: [][]int{ws}, notes: cur.notes}
	}
	// Too many columns: a table of a row or two is turned on its side, a
	// longer one is drawn in parts.
	if len(box.rows) <= transposeRows && len(box.headers) > 3 {
		return layoutTable(transpose(t, box), width)
	}
	return split(cur, key, width)
}

// naturalWidths are the columns' widths with nothing wrapped.
func naturalWidths(b textBox) []int {
	ws := make([]int, len(b.headers))
	for i, h := range b.headers {
		ws[i] = lineWidth(h)
	}
	for _, r := range b.rows {
		for i, c := range r {
			ws[i] = max(ws[i], lineWidth(c))
		}
	}
	return ws
}

// longestWord is the width of the widest word of s.
func longestWord(s string) int {
	w := 0
	for _, f := range strings.Fields(s) {
		w = max(w, textWidth(f))
	}
	return w
}

// minWidths are the narrowest each column may be: a number and a header's
// word never wrap; text wraps down to textMinWidth (or its header's word),
// breaking no word up to wordMaxWidth.
func minWidths(b textBox) []int {
	nat := naturalWidths(b)
	ws := make([]int, len(b.headers))
	for i, h := range b.headers {
		ws[i] = longestWord(h)
		if b.right[i] {
			// A number (with its unit) never wraps; words in a numeric
			// column (a verdict beside figures) do.
			for _, r := range b.rows {
				if w := lineWidth(r[i]); w <= wordMaxWidth {
					ws[i] = max(ws[i], w)
				} else {
					ws[i] = max(ws[i], min(longestWord(r[i]), wordMaxWidth))
				}
			}
			continue
		}
		word := 0
		for _, r := range b.rows {
			word = max(word, min(longestWord(r[i]), wordMaxWidth))
		}
		ws[i] = max(ws[i], min(nat[i], max(textMinWidth, word)))
	}
	return ws
}

// allocate gives each column a width so the box fits width: numbers at
// their width, text columns sharing the rest (water-filling: a column
// that needs less than its share gets what it needs). ok is false when the
// minimum widths do not fit, or (strict) when a text column would read
// badly: narrower than comfortWidth and its text, or wrapped to more than
// comfortLines lines. wholeKeys keeps the key columns unwrapped.
func allocate(b textBox, key, width int, strict, wholeKeys bool) ([]int, bool) {
	nat, mins := naturalWidths(b), minWidths(b)
	ws := make([]int, len(b.headers))
	avail := width - boxWidth(make([]int, len(b.headers)))
	var text []int
	for i := range b.headers {
		if wholeKeys && i < key {
			ws[i] = nat[i]
			avail -= ws[i]
			continue
		}
		if b.right[i] {
			ws[i] = mins[i]
			avail -= ws[i]
			continue
		}
		text = append(text, i)
	}
	sort.SliceStable(text, func(x, y int) bool { return nat[text[x]] < nat[text[y]] })
	for k, i := range text {
		share := avail / (len(text) - k)
		ws[i] = min(nat[i], max(mins[i], share))
		avail -= ws[i]
	}
	if avail < 0 {
		return ws, false
	}
	// What is left (a column with less text than its share gave it back)
	// goes to the text columns that wrap, widest first, then to numeric
	// columns that wrap words, then to headers that wrap.
	for avail > 0 {
		grew := false
		for k := len(text) - 1; k >= 0 && avail > 0; k-- {
			if i := text[k]; ws[i] < nat[i] {
				ws[i]++
				avail--
				grew = true
			}
		}
		for i := range ws {
			if avail > 0 && b.right[i] && ws[i] < nat[i] {
				ws[i]++
				avail--
				grew = true
			}
		}
		for i := range ws {
			if avail > 0 && ws[i] < lineWidth(b.headers[i]) {
				ws[i]++
				avail--
				grew = true
			}
		}
		if !grew {
			break
		}
	}
	if strict {
		for _, i := range text {
			if i < key {
				continue
			}
			if ws[i] < min(nat[i], comfortWidth) {
				return ws, false
			}
			for _, r := range b.rows {
				if len(wrapText(r[i], ws[i])) > comfortLines {
					return ws, false
				}
			}
		}
	}
	return ws, true
}

// movedBox is a box whose moved columns hold references to notes.
type movedBox struct {
	box   textBox
	notes []note
}

// withNotes replaces the cells of the moved columns that are wider than
// the column's header by references to notes ("[1]"); the same text gets
// the same note.
func withNotes(b textBox, moved map[int]bool, notes []note) movedBox {
	if len(moved) == 0 {
		return movedBox{box: b, notes: notes}
	}
	byText := map[string]string{}
	for _, n := range notes {
		byText[n.text] = n.ref
	}
	out := textBox{headers: b.headers, right: b.right}
	for _, r := range b.rows {
		row := append([]string(nil), r...)
		for i := range row {
			if !moved[i] || lineWidth(row[i]) <= max(longestWord(b.headers[i]), inlineWidth) {
				continue
			}
			ref, ok := byText[row[i]]
			if !ok {
				ref = fmt.Sprintf("[%d]", len(notes)+1)
				notes = append(notes, note{ref: ref, text: row[i]})
				byText[row[i]] = ref
			}
			row[i] = ref
		}
		out.rows = append(out.rows, row)
	}
	return movedBox{box: out, notes: notes}
}

// transpose turns a table of few rows on its side: its columns become
// rows under the first column's name, one column per row.
func transpose(t Table, b textBox) Table {
	tt := Table{ID: t.ID, Title: t.Title, Key: 1}
	tt.Columns = []string{b.headers[0]}
	tt.Numeric = []bool{false}
	for _, r := range b.rows {
		tt.Columns = append(tt.Columns, r[0])
		tt.Numeric = append(tt.Numeric, false)
	}
	for j := 1; j < len(b.headers); j++ {
		row := []string{b.headers[j]}
		for _, r := range b.rows {
			row = append(row, r[j])
		}
		tt.Rows = append(tt.Rows, row)
	}
	return tt
}

// split draws a table in parts: the key columns, then as many of the
// others as fit, in order; a part that cannot fit even one more column is
// forced narrower.
func split(mb movedBox, key, width int) laidTable {
	b := mb.box
	key = min(key, len(b.headers)-1)
	out := laidTable{notes: mb.notes}
	part := func(cols []int) textBox {
		p := textBox{}
		for _, i := range cols {
			p.headers = append(p.headers, b.headers[i])
			p.right = append(p.right, b.right[i])
		}
		for _, r := range b.rows {
			row := make([]string, 0, len(cols))
			for _, i := range cols {
				row = append(row, r[i])
			}
			p.rows = append(p.rows, row)
		}
		return p
	}
	keys := make([]int, key)
	for i := range keys {
		keys[i] = i
	}
	cols := append([]int(nil), keys...)
	// The key columns stay whole when they take at most half the width.
	nat := naturalWidths(b)
	keyWidth := 0
	for i := range keys {
		keyWidth += nat[i] + 3
	}
	whole := keyWidth*2 <= width
	flush := func() {
		p := part(cols)
		ws, ok := allocate(p, key, width, false, whole)
		if !ok {
			ws = force(p, width)
		}
		out.boxes = append(out.boxes, p)
		out.widths = append(out.widths, ws)
		cols = append([]int(nil), keys...)
	}
	for j := key; j < len(b.headers); j++ {
		try := append(append([]int(nil), cols...), j)
		if _, ok := allocate(part(try), key, width, false, whole); ok || len(cols) == key {
			cols = try
			continue
		}
		flush()
		cols = append(cols, j)
	}
	flush()
	return out
}

// force narrows the widest columns of a box until it fits width; its cells
// then wrap inside their words.
func force(b textBox, width int) []int {
	ws := naturalWidths(b)
	for boxWidth(ws) > width {
		widest := 0
		for i := range ws {
			if ws[i] > ws[widest] {
				widest = i
			}
		}
		if ws[widest] <= 1 {
			break
		}
		ws[widest]--
	}
	return ws
}

// drawBox draws a box with columns ws wide: cells wrap to their column,
// numbers are aligned right; rows are ruled apart when any of them takes
// more than one line.
func drawBox(w *bufio.Writer, b textBox, ws []int) {
	rule := func(l, m, r string) {
		w.WriteString(l)
		for i, cw := range ws {
			if i > 0 {
				w.WriteString(m)
			}
			w.WriteString(strings.Repeat("─", cw+2))
		}
		w.WriteString(r + "\n")
	}
	wrapRow := func(cells []string) ([][]string, int) {
		lines := make([][]string, len(cells))
		h := 1
		for i, c := range cells {
			lines[i] = wrapText(c, ws[i])
			h = max(h, len(lines[i]))
		}
		return lines, h
	}
	line := func(lines [][]string, h int) {
		for k := 0; k < h; k++ {
			w.WriteString("│")
			for i, cw := range ws {
				var s string
				if k < len(lines[i]) {
					s = lines[i][k]
				}
				pad := strings.Repeat(" ", max(0, cw-textWidth(s)))
				if b.right[i] {
					w.WriteString(" " + pad + s + " │")
				} else {
					w.WriteString(" " + s + pad + " │")
				}
			}
			w.WriteString("\n")
		}
	}
	rows := make([][][]string, len(b.rows))
	heights := make([]int, len(b.rows))
	ruled := false
	for i, r := range b.rows {
		rows[i], heights[i] = wrapRow(r)
		ruled = ruled || heights[i] > 1
	}
	rule("┌", "┬", "┐")
	hl, hh := wrapRow(b.headers)
	line(hl, hh)
	rule("├", "┼", "┤")
	for i := range rows {
		if i > 0 && ruled {
			rule("├", "┼", "┤")
		}
		line(rows[i], heights[i])
	}
	rule("└", "┴", "┘")
}

// writeLaidTable draws a laid-out table and its notes.
func writeLaidTable(w *bufio.Writer, lt laidTable, width int) {
	for i, b := range lt.boxes {
		if i > 0 {
			w.WriteString("\n")
		}
		drawBox(w, b, lt.widths[i])
	}
	for _, n := range lt.notes {
		writeParagraph(w, n.text, n.ref+" ", strings.Repeat(" ", textWidth(n.ref)+1), width)
	}
}
