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

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

const recordingsSynopsis = "recordings ls|show|export|import FILE [flags]"

const recordingsExamples = `  ssestress recordings ls session.db
  ssestress recordings show session.db --conn edge-7
  ssestress recordings export session.db --format jsonl > session.jsonl
  ssestress recordings import session.jsonl --out copy.db

Record with: ssestress proxy --upstream URL --record session.db
Replay with: ssestress replay serve --recording session.db
             ssestress replay run --recording session.db --target URL --scale 20`

// recordingsCommands are the subcommands of ssestress recordings.
var recordingsCommands = map[string]func(args []string, stdout io.Writer) error{
	"ls":     recordingsLs,
	"show":   recordingsShow,
	"export": recordingsExport,
	"import": recordingsImport,
}

// runRecordings is ssestress recordings: list, show, export and import the
// streams a proxy recorded (--record) in a session file.
func runRecordings(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stdout, "Usage: ssestress %s\n\n", recordingsSynopsis)
		fmt.Fprintln(stdout, "  ls FILE                          one line per recorded stream")
		fmt.Fprintln(stdout, "  show FILE [--conn ID] [--frames N]  request, response, ending and frames of the streams")
		fmt.Fprintln(stdout, "  export FILE --format jsonl [--out F]  streams then frames, one JSON object per line")
		fmt.Fprintln(stdout, "  import FILE.jsonl --out FILE.db  read an export back into a new session file")
		fmt.Fprintf(stdout, "\nExamples:\n%s\n", recordingsExamples)
		if len(args) == 0 {
			return usageErrorf("recordings: give ls, show, export or import")
		}
		return errHelp
	}
	sub, ok := recordingsCommands[args[0]]
	if !ok {
		return usageErrorf("recordings: unknown subcommand %q (use ls, show, export or import)", args[0])
	}
	return sub(args[1:], stdout)
}

// oneFile checks that exactly one file was given.
func oneFile(name string, positional []string, synopsis string) (string, error) {
	if len(positional) != 1 {
		return "", usageErrorf("%s: give one file (usage: ssestress %s)", name, synopsis)
	}
	return positional[0], nil
}

func recordingsLs(args []string, stdout io.Writer) error {
	const syn = "recordings ls FILE"
	fs := newFlags("recordings ls")
	pos, err := parseInterspersed(fs, args, stdout, syn, recordingsExamples)
	if err != nil {
		return err
	}
	path, err := oneFile("recordings ls", pos, syn)
	if err != nil {
		return err
	}
	rec, err := loadRecording(path)
	if err != nil {
		return err
	}
	t := tablewriter.NewTable(stdout, tablewriter.WithHeaderAutoFormat(tw.Off))
	t.Header("stream", "start", "request", "group", "status", "frames", "held", "ending")
	for _, s := range rec.Streams {
		t.Append(s.Name(), s.Start.Format("15:04:05.000"), requestURI(s), s.Group, status(s),
			frameCount(s), held(s).Round(time.Millisecond).String(), ending(s))
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

// held is how long the stream lasted as far as the recording knows.
func held(s *recording.Stored) time.Duration {
	if s.Ended {
		return s.End.D()
	}
	if n := len(s.Events); n > 0 {
		return s.Events[n-1].Offset.D()
	}
	return s.RespAt.D()
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
	return e
}

func recordingsShow(args []string, stdout io.Writer) error {
	const syn = "recordings show FILE [--conn ID] [--frames N]"
	fs := newFlags("recordings show")
	conn := fs.String("conn", "", "only this stream: its conn id, or <proxy>/<conn id>")
	frames := fs.Int("frames", -1, "frames to print per stream (default: all with --conn, 5 without; 0: none)")
	pos, err := parseInterspersed(fs, args, stdout, syn, recordingsExamples)
	if err != nil {
		return err
	}
	path, err := oneFile("recordings show", pos, syn)
	if err != nil {
		return err
	}
	rec, err := loadRecording(path)
	if err != nil {
		return err
	}
	streams := rec.Streams
	limit := *frames
	if *conn != "" {
		s := rec.Find(*conn)
		if s == nil {
			return fmt.Errorf("%s: no recorded stream %q (ssestress recordings ls %s lists them)", path, *conn, path)
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
	fmt.Fprintf(w, "  ending   %s after %v; %d frames, %d bytes\n", ending(s), held(s).Round(time.Microsecond), len(s.Events), s.Bytes)
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

func recordingsExport(args []string, stdout io.Writer) error {
	const syn = "recordings export FILE --format jsonl [--out FILE]"
	fs := newFlags("recordings export")
	format := fs.String("format", "jsonl", "output format: jsonl (one JSON object per line: streams, then frames)")
	out := fs.String("out", "", "write to this file instead of stdout (never overwritten)")
	pos, err := parseInterspersed(fs, args, stdout, syn, recordingsExamples)
	if err != nil {
		return err
	}
	path, err := oneFile("recordings export", pos, syn)
	if err != nil {
		return err
	}
	if *format != "jsonl" {
		return usageErrorf("recordings export: --format %q: only jsonl is supported", *format)
	}
	rec, err := loadRecording(path)
	if err != nil {
		return err
	}
	if *out == "" {
		return recording.Export(stdout, rec)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("recordings export: %w", err)
	}
	if err := recording.Export(f, rec); err != nil {
		f.Close()
		return fmt.Errorf("recordings export: %s: %w", *out, err)
	}
	return f.Close()
}

func recordingsImport(args []string, stdout io.Writer) error {
	const syn = "recordings import FILE.jsonl --out FILE.db"
	fs := newFlags("recordings import")
	out := fs.String("out", "", "session file to create (required; never overwritten)")
	pos, err := parseInterspersed(fs, args, stdout, syn, recordingsExamples)
	if err != nil {
		return err
	}
	path, err := oneFile("recordings import", pos, syn)
	if err != nil {
		return err
	}
	if *out == "" {
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
	var werr error
	// Everything is queued before the first commit: let the queue hold it.
	w, err := session.Create(*out, session.Options{
		MaxPending: len(rec.Streams) + rec.Frames() + 16,
		OnError:    func(err error) { werr = err },
	})
	if err != nil {
		return sessionExists(err, "--out")
	}
	host, _ := os.Hostname()
	now := time.Now()
	w.PutMeta(session.MetaRun, session.RunInfo{
		Tool: "ssestress " + version, Command: "recordings import", Args: args,
		Host: host, PID: os.Getpid(), StartedAt: now, EndedAt: now,
	})
	rec.Store(w)
	if err := w.Close(); err != nil {
		return fmt.Errorf("recordings import: %s: %w", *out, err)
	}
	if werr != nil {
		return fmt.Errorf("recordings import: %s: %w", *out, werr)
	}
	if d := w.Dropped(); d > 0 {
		return fmt.Errorf("recordings import: %s: %d records could not be stored", *out, d)
	}
	fmt.Fprintf(stdout, "imported %d streams, %d frames into %s\n", len(rec.Streams), rec.Frames(), *out)
	return nil
}
