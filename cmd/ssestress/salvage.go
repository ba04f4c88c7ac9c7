package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/ssestress/ssestress/internal/session"
)

const salvageExamples = `  ssestress salvage damaged.db --out recovered.db
  ssestress salvage damaged.db --out recovered.db --force --json
  ssestress report recovered.db`

// salvageCmd is ssestress salvage BAD.db --out GOOD.db: copy every record
// of a damaged session file that can still be read into a new one, and say
// what was lost. Readers refuse a damaged file (exit 4) rather than crash
// on it; this is what to do next.
var salvageCmd = &command{
	name:     "salvage",
	summary:  "copy every record of a damaged session file that can still be read into a new one, and say what was lost",
	synopsis: "salvage BAD.db --out GOOD.db [--force] [--json]",
	examples: salvageExamples,
	args:     argSpec{name: "BAD.db", what: "damaged session file", min: 1, max: 1, values: files()},
	setup: func(fs *flagSet) action {
		out := fs.String("out", "", "the new session file to write (never replaced without --force)")
		force := fs.Bool("force", false, "replace --out if it exists")
		asJSON := fs.Bool("json", false, "print what was copied and lost as one JSON object")
		return func(ctx context.Context, files []string, stdout, stderr io.Writer) error {
			if *out == "" {
				return usageErrorf("salvage: --out FILE is required (usage: ssestress salvage BAD.db --out GOOD.db)")
			}
			rep, err := session.Salvage(files[0], *out, session.SalvageOptions{Force: *force})
			if errors.Is(err, session.ErrOutExists) {
				return usageErrorf("salvage: --out %v", err)
			}
			if err != nil {
				return fmt.Errorf("salvage: %w", err)
			}
			if *asJSON {
				return json.NewEncoder(stdout).Encode(rep)
			}
			return printSalvage(stdout, rep)
		}
	},
}

func printSalvage(w io.Writer, rep *session.SalvageReport) error {
	from := "leaf pages found by scanning (no root bucket could be read)"
	if len(rep.Trees) > 0 {
		from = strings.Join(rep.Trees, ", then ")
	}
	fmt.Fprintf(w, "salvaged %s into %s, read from %s\n", rep.Source, rep.Out, from)
	t := tablewriter.NewTable(w, tablewriter.WithHeaderAutoFormat(tw.Off))
	t.Header("bucket", "copied", "from an older commit", "from loose pages", "unreadable records", "unreadable pages")
	var copied, unreadable, pages, loose int64
	var lost []string
	for _, name := range salvageOrder(rep.Buckets) {
		b := rep.Buckets[name]
		t.Append(name, strconv.FormatInt(b.Copied, 10), strconv.FormatInt(b.FromOlderTree, 10), strconv.FormatInt(b.FromLoosePages, 10),
			strconv.FormatInt(b.Unreadable, 10), strconv.FormatInt(b.PagesLost, 10))
		copied, unreadable, pages, loose = copied+b.Copied, unreadable+b.Unreadable, pages+b.PagesLost, loose+b.FromLoosePages
		if b.Lost() {
			lost = append(lost, fmt.Sprintf("%s (first: %s)", name, b.FirstProblem))
		}
	}
	if err := t.Render(); err != nil {
		return err
	}
	if rep.SchemaAssumed {
		fmt.Fprintf(w, "the schema version was lost: the copy says version %d\n", session.SchemaVersion)
	}
	if loose > 0 {
		fmt.Fprintf(w, "%d records came from pages no tree reached (left by earlier commits: such a record may be older than the one lost)\n", loose)
	}
	if rep.LoosePagesUnknown > 0 {
		fmt.Fprintf(w, "%d pages no tree reached hold records of no known bucket: not copied\n", rep.LoosePagesUnknown)
	}
	if len(lost) == 0 {
		_, err := fmt.Fprintf(w, "copied %d records; no record found was lost\n", copied)
		return err
	}
	_, err := fmt.Fprintf(w, "copied %d records; lost %d records that could not be read and %d pages that could not be read (their records are unknown beyond those found elsewhere): %s\n",
		copied, unreadable, pages, strings.Join(lost, "; "))
	return err
}

// salvageOrder lists the buckets in the schema's order, others after.
func salvageOrder(buckets map[string]*session.SalvagedBucket) []string {
	var names []string
	for _, b := range session.Buckets {
		if _, ok := buckets[b]; ok {
			names = append(names, b)
		}
	}
	for b := range buckets {
		if inspectBucketOrder(b) == len(session.Buckets) {
			names = append(names, b)
		}
	}
	return names
}
