package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/ssestress/ssestress/internal/outfile"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

const recordingsSynopsis = "recordings ls|show|export|import FILE [flags]"

const recordingsExamples = `  ssestress recordings ls session.db
  ssestress recordings show session.db --conn edge-7
  ssestress recordings export session.db --format jsonl > session.jsonl
  ssestress recordings import session.jsonl --out copy.db

On a file a proxy is still recording into, ls, show and export read what it has committed so far.

Record with: ssestress proxy --upstream URL --record session.db
Replay with: ssestress replay serve --recording session.db
             ssestress replay run --recording session.db --target URL --scale 20`

var recordingsCmd = &command{
	name:     "recordings",
	summary:  "list, show, export (jsonl) and import the streams a proxy recorded (--record)",
	synopsis: recordingsSynopsis,
	examples: recordingsExamples,
	subs: []*command{
		{name: "ls", summary: "one line per recorded stream", synopsis: "recordings ls FILE", examples: recordingsExamples,
			args: recordingFile, setup: func(fs *flagSet) action {
				return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
					return recordingsLs(args[0], stdout, stderr)
				}
			}},
		{name: "show", summary: "request, response, ending and frames of the streams", synopsis: "recordings show FILE [--conn ID] [--frames N]",
			examples: recordingsExamples, args: recordingFile, setup: func(fs *flagSet) action {
				conn := fs.String("conn", "", "only this stream: its conn `ID`, or <proxy>/<conn id>")
				frames := fs.Int("frames", -1, "frames to print per stream (default: all with --conn, 5 without; 0: none)")
				return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
					if flagsSet(fs.FlagSet)["frames"] && *frames < 0 {
						return usageErrorf("recordings show: --frames must be 0 or more, got %d", *frames)
					}
					return recordingsShow(args[0], *conn, *frames, stdout, stderr)
				}
			}},
		{name: "export", summary: "streams then frames, one JSON object per line", synopsis: "recordings export FILE --format jsonl [-o FILE]",
			examples: recordingsExamples, args: recordingFile, setup: func(fs *flagSet) action {
				format := fs.String("format", "jsonl", "output `FORMAT`: jsonl (one JSON object per line: streams, then frames)")
				out := fs.String("output", "", "write to this `FILE` instead of stdout (an existing file only with --force)")
				fs.alias("o", "output")
				force := fs.Bool("force", false, fmt.Sprintf(forceUsage, "--output"))
				fs.deprecated("out", "output", "--out names the session file a command writes")
				fs.values(words("jsonl"), "format")
				fs.values(files(), "output", "o")
				return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
					return recordingsExport(args[0], *format, *out, *force, stdout, stderr)
				}
			}},
		{name: "import", summary: "read an export back into a new session file", synopsis: "recordings import FILE.jsonl --out FILE.db",
			examples: recordingsExamples, args: argSpec{name: "FILE", what: "file", min: 1, max: 1, values: files()},
			setup: func(fs *flagSet) action {
				out := fs.String("out", "", "session `FILE` to create (required; never overwritten)")
				fs.values(files(), "out")
				return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
					return recordingsImport(args[0], *out, fs.argv, stdout)
				}
			}},
	},
}

// recordingFile is the one session file the recordings subcommands read.
var recordingFile = argSpec{name: "FILE", what: "file", min: 1, max: 1, values: files()}

// loadRecording loads the recording at path and says on stderr how many
// records were skipped because they could not be read, and, when a proxy
// is still recording into it, that what follows is what the proxy had
// committed.
func loadRecording(path string, stderr io.Writer) (*recording.Recording, error) {
	rec, err := recording.Load(path)
	if err != nil {
		return nil, err
	}
	if s := session.UnreadableSummary(rec.Unreadable); s != "" {
		fmt.Fprintf(stderr, "ssestress: warning: %s: records that could not be read were skipped: %s (first: %s)\n", path, s, firstUnreadable(rec.Unreadable))
	}
	if !rec.SnapshotAt.IsZero() {
		fmt.Fprintf(stderr, "ssestress: note: %s is being written (a proxy is recording into it): this is what it had committed at %s; run the command again for more\n",
			path, rec.SnapshotAt.Format("15:04:05.000"))
	}
	return rec, nil
}

func recordingsLs(path string, stdout, stderr io.Writer) error {
	rec, err := loadRecording(path, stderr)
	if err != nil {
		return err
	}
	t := tablewriter.NewTable(stdout, tablewriter.WithHeaderAutoFormat(tw.Off))
	t.Header("stream", "start", "request", "group", "status", "frames", "held", "ending")
	for _, s := range rec.Streams {
		t.Append(s.Name(), s.Start.Format("15:04:05.000"), requestURI(s), s.Group, status(s),
			frameCount(s), s.Held().Round(time.Millisecond).String(), ending(s))
	}
	if err := t.Render(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d streams, %d frames\n", len(rec.Streams), rec.Frames())
	return nil
}

// frameCount is the number of frames stored, and when the stream counted
// more (the session writer dropped some: queue or file full), how many.
func frameCount(s *recording.Stored) string {
	n := strconv.Itoa(len(s.Events))
	if s.Ended && s.Frames > int64(len(s.Events)) {
		return n + " of " + strconv.FormatInt(s.Frames, 10) + " (rest not stored)"
	}
	return n
}

func requestURI(s *recording.Stored) string {
	if s.Query == "" {
		return s.Method + " " + s.Path
	}
	return s.Method + " " + s.Path + "?" + s.Query
}

func status(s *recording.Stored) string {
	if s.Status == 0 {
		return "-"
	}
	return strconv.Itoa(s.Status)
}

// ending says how the stream ended, in one word or three.
func ending(s *recording.Stored) string {
	switch {
	case s.Stopped:
		return "recording stopped"
	case !s.Ended:
		return "open (not ended when the file was last written)"
	}
	e := "by " + s.EndedBy + ", " + s.Ending
	if s.Class != "" {
		e += ", " + s.Class
	}
	if s.UpstreamErrorAction != "" {
		e += " (the proxy's " + s.UpstreamErrorAction + " to the client)"
	}
	return e
}

func recordingsShow(path, conn string, frames int, stdout, stderr io.Writer) error {
	rec, err := loadRecording(path, stderr)
	if err != nil {
		return err
	}
	streams := rec.Streams
	limit := frames
	if conn != "" {
		s := rec.Find(conn)
		if s == nil {
			return fmt.Errorf("%s: no recorded stream %q (ssestress recordings ls %s lists them)", path, conn, path)
		}
		streams = []*recording.Stored{s}
		if limit < 0 {
			limit = len(s.Events)
		}
	} else if limit < 0 {
		limit = 5
	}
	for i, s := range streams {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		showStream(stdout, s, limit)
	}
	return nil
}

func showStream(w io.Writer, s *recording.Stored, limit int) {
	fmt.Fprintf(w, "stream %s  (client %s, start %s)\n", s.Name(), orDash(s.ClientAddr), s.Start.Format(time.RFC3339Nano))
	fmt.Fprintf(w, "  request  %s  host %s  group %s\n", requestURI(s), orDash(s.Host), orDash(s.Group))
	printHeader(w, "    ", s.Header)
	if s.Status != 0 {
		fmt.Fprintf(w, "  response %d after %v\n", s.Status, s.RespAt.D().Round(time.Microsecond))
		printHeader(w, "    ", s.RespHeader)
	} else {
		fmt.Fprintln(w, "  response none recorded")
	}
	if len(s.Redacted) > 0 {
		fmt.Fprintf(w, "  redacted %s\n", strings.Join(s.Redacted, ", "))
	}
	fmt.Fprintf(w, "  ending   %s after %v; %d frames, %d bytes\n", ending(s), s.Held().Round(time.Microsecond), len(s.Events), s.Bytes)
	n := min(limit, len(s.Events))
	for _, e := range s.Events[:n] {
		fmt.Fprintf(w, "  %12s  %s\n", fmtOffset(e.Offset.D()), frameText(e))
	}
	if n < len(s.Events) {
		fmt.Fprintf(w, "  ... %d more frames (--conn %s --frames N)\n", len(s.Events)-n, s.Name())
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printHeader(w io.Writer, indent string, h map[string][]string) {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range h[k] {
			fmt.Fprintf(w, "%s%s: %s\n", indent, k, v)
		}
	}
}

func fmtOffset(d time.Duration) string {
	return "+" + strconv.FormatFloat(d.Seconds(), 'f', 6, 64) + "s"
}

// frameText is one frame on one line, data quoted and cut at 200 bytes.
func frameText(e session.RecEvent) string {
	switch e.Kind {
	case session.RecKindComment:
		return "comment " + strconv.Quote(cut(e.Comment, 200))
	case session.RecKindRetry:
		return "retry   " + e.Retry.String()
	}
	s := "event   "
	if e.ID != "" {
		s += "id=" + e.ID + " "
	}
	if e.Type != "" && e.Type != "message" {
		s += "type=" + e.Type + " "
	}
	return s + strconv.Quote(cut(e.Data, 200))
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func recordingsExport(path, format, out string, force bool, stdout, stderr io.Writer) error {
	if format != "jsonl" {
		return usageErrorf("recordings export: --format %q: only jsonl is supported", format)
	}
	if err := checkOutput("recordings export", "--output", out, force); err != nil {
		return err
	}
	rec, err := loadRecording(path, stderr)
	if err != nil {
		return err
	}
	if out == "" {
		return recording.Export(stdout, rec)
	}
	f, err := outfile.Create(out, 0o644, force)
	if err != nil {
		return outputError("recordings export", "--output", err)
	}
	if err := recording.Export(f, rec); err != nil {
		f.Abort() // half an export is no export
		return fmt.Errorf("recordings export: %s: %w", out, err)
	}
	if err := f.Commit(); err != nil {
		return outputError("recordings export", "--output", err)
	}
	return nil
}

func recordingsImport(path, out string, args []string, stdout io.Writer) error {
	if out == "" {
		return usageErrorf("recordings import: --out FILE.db is required")
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("recordings import: %w", err)
	}
	defer f.Close()
	rec, err := recording.Import(f)
	if err != nil {
		return fmt.Errorf("recordings import: %s: %w", path, err)
	}
	rec.Redact() // credentials in the file are not carried into the session file
	var werr error
	// Everything is queued before the first commit: let the queue hold it.
	w, err := session.Create(out, session.Options{
		MaxPending: 2*len(rec.Streams) + rec.Frames() + 16, // a stream may bring its client hop record
		OnError:    func(err error) { werr = err },
	})
	if err != nil {
		return sessionExists(err, "--out")
	}
	host, _ := os.Hostname()
	now := time.Now()
	w.PutMeta(session.MetaRun, session.RunInfo{
		Tool: "ssestress " + version, Command: "recordings import", Args: redactArgs(args, nil),
		Host: host, PID: os.Getpid(), StartedAt: now, EndedAt: now,
	})
	rec.Store(w)
	// A file that holds part of the import is removed: nothing half-made
	// is left.
	if err := w.Close(); err != nil {
		os.Remove(out)
		return fmt.Errorf("recordings import: %s: %w", out, err)
	}
	if werr != nil {
		os.Remove(out)
		return fmt.Errorf("recordings import: %s: %w", out, werr)
	}
	if d := w.Dropped(); d > 0 {
		os.Remove(out)
		return fmt.Errorf("recordings import: %s: %d records could not be stored", out, d)
	}
	fmt.Fprintf(stdout, "imported %d streams, %d frames into %s\n", len(rec.Streams), rec.Frames(), out)
	return nil
}
