package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/internal/outfile"
	"github.com/ssestress/ssestress/internal/session"
)

// export writes the records of session files one per line, for data tools
// (pandas, R, a spreadsheet): analysis.Export, as CSV with a header or
// JSON Lines, every row beginning with its file's base name, numbers as
// numbers with their unit in the column's name.

const exportSynopsis = "export SESSION.db... KIND [--format csv|jsonl] [-o FILE [--force]]"

const exportExamples = `  ssestress export run.db errors > errors.csv
  ssestress export shard-*.db conns --format jsonl -o conns.jsonl
  ssestress export run.db proxy.db resets -o resets.csv
  python3 -c 'import pandas as pd; print(pd.read_csv("errors.csv").groupby("class").idle_s.describe())'`

var exportCmd = &command{
	name:     "export",
	summary:  "write a session file's records one per line (CSV or JSON Lines) for data tools",
	synopsis: exportSynopsis,
	about:    exportAbout(),
	examples: exportExamples,
	args:     argSpec{name: "FILE", what: "session file, then the record kind", min: 2, max: -1, values: files()},
	setup: func(fs *flagSet) action {
		o := &exportOptions{}
		fs.StringVar(&o.format, "format", "csv", "`FORMAT`: "+strings.Join(analysis.ExportFormats, " or ")+" (JSON Lines)")
		fs.StringVar(&o.output, "output", "", "write to `FILE` instead of standard output (never over an existing file without --force)")
		fs.alias("o", "output")
		fs.BoolVar(&o.force, "force", false, "with -o: replace an existing FILE (once the export is complete)")
		fs.values(words(analysis.ExportFormats...), "format")
		fs.values(files(), "output", "o")
		return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return o.run(args, stdout, stderr)
		}
	},
}

// exportAbout lists the record kinds.
func exportAbout() string {
	var b strings.Builder
	b.WriteString("KIND is one of:\n")
	for _, k := range analysis.ExportKinds() {
		fmt.Fprintf(&b, "  %-14s %s\n", k[0], k[1])
	}
	b.WriteString("Every row starts with the file's base name (resets: the files read together, joined by +,\n" +
		"which the attribution engine explains as one picture). Durations are seconds in columns\n" +
		"ending _s, sizes bytes in columns ending _bytes, times RFC 3339 beside a *_unix_s column;\n" +
		"a value not recorded is an empty cell (JSON null), never 0.")
	return b.String()
}

// exportOptions are export's flags.
type exportOptions struct {
	format string
	output string
	force  bool
}

// run exports: the record kind is the last argument (or the first), the
// session files the others.
func (o *exportOptions) run(args []string, stdout, stderr io.Writer) error {
	var kinds []string
	for _, k := range analysis.ExportKinds() {
		kinds = append(kinds, k[0])
	}
	var kind string
	var paths []string
	switch {
	case slices.Contains(kinds, args[len(args)-1]):
		kind, paths = args[len(args)-1], args[:len(args)-1]
	case slices.Contains(kinds, args[0]):
		kind, paths = args[0], args[1:]
	default:
		return usageErrorf("export: give the record kind after the session files: %s", strings.Join(kinds, ", "))
	}
	if !slices.Contains(analysis.ExportFormats, o.format) {
		return usageErrorf("export: --format %q: use %s", o.format, strings.Join(analysis.ExportFormats, " or "))
	}
	for _, p := range paths {
		if slices.Contains(kinds, p) {
			return usageErrorf("export: one record kind at a time (%s and %s given)", kind, p)
		}
	}
	if o.force && o.output == "" {
		return usageErrorf("export: --force replaces the file of -o FILE: give -o")
	}
	var out *outfile.File
	if o.output != "" {
		var err error
		if out, err = outfile.Create(o.output, 0o644, o.force); err != nil {
			return outputError("export", "-o", err)
		}
		defer out.Abort() // a failed export leaves nothing, and replaces nothing
	}
	var readers []*session.Reader
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	for _, p := range paths {
		r, err := session.OpenCommitted(p)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if !r.SnapshotAt().IsZero() {
			fmt.Fprintf(stderr, "ssestress export: %s is being written by another process: exporting what it has committed so far\n", p)
		}
		readers = append(readers, r)
	}
	w := stdout
	if out != nil {
		w = out
	}
	skipped, err := analysis.ExportSkipping(w, readers, kind, o.format)
	for _, sk := range skipped {
		fmt.Fprintf(stderr, "ssestress: warning: %s: %d %s records could not be read and were skipped (first: %s)\n",
			sk.File, sk.Unreadable.Records, sk.Bucket, sk.Unreadable.First)
	}
	if err != nil {
		if errors.Is(err, analysis.ErrUnknownExport) {
			return usageErrorf("export: %v", err)
		}
		return fmt.Errorf("export: %w", err)
	}
	if out != nil {
		if err := out.Commit(); err != nil {
			return outputError("export", "-o", err)
		}
		fmt.Fprintf(stderr, "wrote %s %s to %s\n", kind, o.format, o.output)
	}
	return nil
}
