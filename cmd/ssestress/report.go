package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/internal/inputfile"
)

// reportOptions are the flags of ssestress report.
type reportOptions struct {
	format   string
	output   string
	graphs   string
	force    bool // --force: replace --output and --graphs files
	baseline stringList
	// production and its column mapping.
	production string
	prodCols   analysis.ProductionColumns
	prodUnit   string
	// reproduction treats the files as repeated runs (run --repeat).
	reproduction bool
	expect       string
	// width is the table format's line width: autoWidth for the
	// terminal's (80 when standard output is not one), 0 for no limit.
	width int
	// section is the one CSV section to write.
	section string
}

// autoWidth is --width's default: the terminal's width.
const autoWidth = -1

const reportSynopsis = "report SESSION.db [MORE.db ...] [--format table|markdown|json|csv|html] [-o FILE] [--graphs DIR] [--width N]\n" +
	"       ssestress report SESSION.db --format csv (--section NAME [-o FILE] | -o DIR)\n" +
	"       ssestress report --baseline BEFORE.db AFTER.db\n" +
	"       ssestress report SESSION.db --production errors.csv [--production-time COL ...]\n" +
	"       ssestress report --reproduction [--expect CLASS] run-1.db run-2.db ..."

const reportExamples = `  ssestress report run.db
  ssestress report run.db --width 120 | less
  ssestress report run.db --format csv --section error_patterns > patterns.csv
  ssestress report run.db --format csv -o tables/
  ssestress report shard-*.db --format markdown -o report.md
  ssestress report run.db proxy.db --format html -o report.html --graphs graphs/
  ssestress report --baseline before.db after.db
  ssestress report run.db --production prod-errors.csv --production-class errno --production-age conn_age_ms --production-unit ms
  ssestress report --reproduction --expect ECONNRESET runs/run-*.db`

var reportCmd = &command{
	name:     "report",
	summary:  "explain a run: error patterns, fingerprints, origin verdict, graphs; compare runs",
	synopsis: reportSynopsis,
	examples: reportExamples,
	args:     argSpec{name: "FILE", what: "session file", min: 1, max: -1, values: files()},
	setup: func(fs *flagSet) action {
		var o reportOptions
		fs.StringVar(&o.format, "format", "table", "output `FORMAT`: "+strings.Join(analysis.Formats(), ", "))
		fs.StringVar(&o.output, "output", "", "write the report to `FILE` instead of standard output")
		fs.alias("o", "output")
		fs.deprecated("out", "output", "--out names the session file a command writes")
		fs.StringVar(&o.graphs, "graphs", "", "also write each graph as `DIR`/<name>.svg")
		fs.BoolVar(&o.force, "force", false, fmt.Sprintf(forceUsage, "--output, --graphs files"))
		fs.Var(&o.baseline, "baseline", "session `FILE` of the run before a fix (repeatable for shards): the report compares it with the files given")
		fs.StringVar(&o.production, "production", "", "CSV or JSON-lines `FILE` of production errors to compare the reproduction with")
		fs.StringVar(&o.prodCols.Time, "production-time", "", "`COLUMN` of the production file holding the time (default: time, timestamp, ts, ...)")
		fs.StringVar(&o.prodCols.Class, "production-class", "", "`COLUMN` holding the error class (default: class, error_class, code, ...)")
		fs.StringVar(&o.prodCols.Message, "production-message", "", "`COLUMN` holding the error message, classified when there is no class (default: message, msg, error)")
		fs.StringVar(&o.prodCols.Age, "production-age", "", "`COLUMN` holding the connection age at the error (optional)")
		fs.StringVar(&o.prodCols.Idle, "production-idle", "", "`COLUMN` holding the idle time before the error (optional)")
		fs.StringVar(&o.prodCols.Client, "production-client", "", "`COLUMN` holding the client address (optional)")
		fs.StringVar(&o.prodCols.Server, "production-server", "", "`COLUMN` holding the server address (optional)")
		fs.StringVar(&o.prodUnit, "production-unit", "s", "`UNIT` of plain numbers in the age and idle columns: ns, us, ms, s, m, h")
		fs.BoolVar(&o.reproduction, "reproduction", false, "the files are repeated runs of one scenario: report the reproduction rate")
		fs.StringVar(&o.expect, "expect", "", "with --reproduction: the error `CLASS` that counts (default: any error)")
		o.width = autoWidth
		fs.IntVar(&o.width, "width", autoWidth, "line width of the table format in `COLUMNS` (at least 40; 0: no limit; default: the terminal's, 80 when standard output is not a terminal)")
		fs.StringVar(&o.section, "section", "", "with --format csv: write only the table `NAME` (error_patterns, summary, ...; without it -o names a directory for every table)")
		fs.values(wordsOf(analysis.Formats), "format")
		fs.values(files(), "output", "o", "baseline", "production")
		fs.values(dirs(), "graphs")
		fs.values(wordsOf(analysis.ReportSections), "section")
		fs.values(words("ns", "us", "ms", "s", "m", "h"), "production-unit")
		fs.values(wordsOf(func() []string { return errorClasses }), "expect")
		return func(ctx context.Context, files []string, stdout, stderr io.Writer) error {
			return o.run(files, stdout, stderr)
		}
	},
}

func (o *reportOptions) run(files []string, stdout, stderr io.Writer) error {
	if _, ok := analysis.Renderers[o.format]; !ok {
		return usageErrorf("report: --format %q: use %s", o.format, strings.Join(analysis.Formats(), ", "))
	}
	modes := 0
	for _, on := range []bool{len(o.baseline) > 0, o.production != "", o.reproduction} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return usageErrorf("report: --baseline, --production and --reproduction do not combine: choose one")
	}
	if o.expect != "" && !o.reproduction {
		return usageErrorf("report: --expect goes with --reproduction")
	}
	if o.prodCols != (analysis.ProductionColumns{}) && o.production == "" {
		return usageErrorf("report: the --production-* column flags go with --production FILE")
	}
	if o.width != autoWidth && o.format != "table" {
		return usageErrorf("report: --width goes with --format table (the other formats are not wrapped)")
	}
	if o.width != autoWidth && o.width != 0 && o.width < analysis.MinWidth {
		return usageErrorf("report: --width %d: give at least %d columns, or 0 for no limit", o.width, analysis.MinWidth)
	}
	if o.section != "" && o.format != "csv" {
		return usageErrorf("report: --section goes with --format csv")
	}
	if o.format == "csv" && o.section == "" && o.output == "" {
		return usageErrorf("report: --format csv writes one table per file: --section NAME for one table on standard output (or -o FILE), or -o DIR for every table as DIR/<section>.csv")
	}
	unit, err := parseUnit(o.prodUnit)
	if err != nil {
		return usageErrorf("report: --production-unit: %v", err)
	}
	o.prodCols.Unit = unit

	if err := checkOutput("report", "--output", o.output, o.force); err != nil {
		return err
	}
	doc, rep, err := buildReport(o, files)
	if err != nil {
		return err
	}
	if o.graphs != "" {
		if rep == nil {
			return usageErrorf("report: --graphs needs a plain report (not --baseline, --production or --reproduction)")
		}
		paths, err := writeGraphs("report", o.graphs, rep, o.force)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %d graphs to %s\n", len(paths), o.graphs)
	}
	doc.Width = o.tableWidth(stdout)
	if o.format == "csv" && o.section == "" {
		paths, err := analysis.WriteCSVDir(o.output, doc)
		if err != nil {
			return fmt.Errorf("report: --output %s: %w", o.output, err)
		}
		fmt.Fprintf(stderr, "wrote %d csv tables to %s\n", len(paths), o.output)
		return o.regression(doc)
	}
	var buf bytes.Buffer
	var err2 error
	if o.section != "" {
		err2 = analysis.RenderCSVSection(&buf, doc, o.section)
		if errors.Is(err2, analysis.ErrUnknownSection) {
			return usageErrorf("report: --section: %v", err2)
		}
	} else {
		err2 = analysis.RenderDoc(&buf, doc, o.format)
	}
	if err2 != nil {
		return fmt.Errorf("report: %w", err2)
	}
	if o.output == "" {
		if _, err := stdout.Write(buf.Bytes()); err != nil {
			return err
		}
	} else {
		if err := writeOutput("report", "--output", o.output, buf.Bytes(), o.force); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s report to %s\n", o.format, o.output)
	}
	return o.regression(doc)
}

// regression is exit 3 after a --baseline comparison whose resets and cuts
// became significantly more frequent.
func (o *reportOptions) regression(doc *analysis.Document) error {
	if c, ok := doc.Value.(*analysis.Comparison); ok && c.Regression {
		return &thresholdError{"report: --baseline: " + c.Judgement}
	}
	return nil
}

// tableWidth is the width the table format is laid out for: --width, else
// the terminal's when the report goes to one, else analysis.DefaultWidth.
func (o *reportOptions) tableWidth(stdout io.Writer) int {
	switch {
	case o.width == 0:
		return analysis.NoWidthLimit
	case o.width > 0:
		return o.width
	}
	if f, ok := stdout.(*os.File); ok && o.output == "" {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return max(int(ws.Col), analysis.MinWidth)
		}
	}
	return analysis.DefaultWidth
}

// buildReport loads the files and lays out the document the options ask
// for; rep is the plain report when that is what was asked for.
func buildReport(o *reportOptions, files []string) (*analysis.Document, *analysis.Report, error) {
	switch {
	case o.reproduction:
		res, err := analysis.Reproduction(files, o.expect)
		if err != nil {
			return nil, nil, fmt.Errorf("report: %w", err)
		}
		return res.Doc(), nil, nil
	case len(o.baseline) > 0:
		before, err := analysis.LoadFiles(o.baseline...)
		if err != nil {
			return nil, nil, fmt.Errorf("report: --baseline: %w", err)
		}
		after, err := analysis.LoadFiles(files...)
		if err != nil {
			return nil, nil, fmt.Errorf("report: %w", err)
		}
		return analysis.Compare(before, after).Doc(), nil, nil
	}
	rep, err := analysis.LoadFiles(files...)
	if err != nil {
		return nil, nil, fmt.Errorf("report: %w", err)
	}
	if o.production == "" {
		return rep.Doc(), rep, nil
	}
	// It may stream (<(zcat prod.csv.gz)), but not without end.
	f, err := inputfile.Open(o.production, maxProductionSize)
	if err != nil {
		return nil, nil, fmt.Errorf("report: --production: %w", err)
	}
	defer f.Close()
	prod, err := analysis.ReadProduction(f, filepath.Base(o.production), o.prodCols)
	if err != nil {
		return nil, nil, fmt.Errorf("report: %w", err)
	}
	return analysis.CompareProduction(rep, prod).Doc(rep, filepath.Base(o.production)), nil, nil
}

// maxProductionSize caps report --production: the production error log is
// read whole into memory.
const maxProductionSize = 1 << 30

// parseUnit reads a unit name: ns, us, ms, s, m, h.
func parseUnit(s string) (time.Duration, error) {
	units := map[string]time.Duration{"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond,
		"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}
	u, ok := units[s]
	if !ok {
		return 0, errors.New("unknown unit " + fmt.Sprintf("%q", s) + " (use ns, us, ms, s, m or h)")
	}
	return u, nil
}
