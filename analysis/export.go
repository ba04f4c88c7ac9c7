package analysis

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Export writes the records of session files one per line, for data
// tools: a CSV table with a header row, or JSON Lines. Every row has the
// same columns; numbers are plain numbers with their unit in the column
// name (age_s, rss_bytes), times are RFC 3339 beside a numeric *_unix_s
// column, so pandas, R or a spreadsheet read them typed. Records are
// streamed: the memory used does not grow with the file.

// ErrUnknownExport is returned for a record kind or format Export does not
// know.
var ErrUnknownExport = errors.New("unknown export")

// ExportFormats are the formats Export writes.
var ExportFormats = []string{"csv", "jsonl"}

// exporter is one record kind: its columns and how to stream its rows,
// file by file (rows), or from every file read together (together: what
// the attribution engine concludes from them all).
type exporter struct {
	about    string
	columns  []string
	rows     func(r *session.Reader, emit func([]any) error) (session.Unreadable, error)
	together func(readers []*session.Reader, emit func([]any) error) ([]ExportSkip, error)
}

// ExportSkip is the records of one bucket of one file that did not decode
// and were left out of an export: one bad record costs that record, never
// the export.
type ExportSkip struct {
	File       string
	Bucket     string
	Unreadable session.Unreadable
}

// exporters is the explicit table of record kinds.
var exporters = map[string]exporter{
	"resets": resetsExporter, // export_resets.go
	"errors": {
		about: "one row per classified failure (client errors, and failures proxies saw on a hop)",
		columns: []string{"time", "time_unix_s", "source", "client_id", "attempt", "proxy", "conn_id", "hop", "scenario", "group",
			"class", "message", "local_addr", "remote_addr", "age_s", "idle_s", "events", "last_event_id"},
		rows: func(r *session.Reader, emit func([]any) error) (session.Unreadable, error) {
			return session.DecodeEach(r, session.BucketErrors, func(e *session.ErrorRecord) error {
				return emit([]any{e.Time, unixSeconds(e.Time), e.Source, e.ClientID, e.Attempt, e.Proxy, e.ConnID, e.Hop, e.Scenario, e.Group,
					e.Class, e.Message, e.LocalAddr, e.RemoteAddr, e.Age, e.Idle, e.Events, e.LastEventID})
			})
		},
	},
	"conns": {
		about: "one row per connection attempt of a generated client",
		columns: []string{"client_id", "attempt", "scenario", "group", "url", "local_addr", "remote_addr", "start", "start_unix_s",
			"connect_s", "first_byte_s", "first_event_s", "lifetime_s", "open", "status", "events", "comments", "bytes",
			"max_gap_s", "retry_s", "end_class", "closed_by"},
		rows: func(r *session.Reader, emit func([]any) error) (session.Unreadable, error) {
			return session.DecodeEach(r, session.BucketConns, func(c *session.ConnRecord) error {
				return emit([]any{c.ClientID, c.Attempt, c.Scenario, c.Group, c.URL, c.LocalAddr, c.RemoteAddr, c.Start, unixSeconds(c.Start),
					since(c.Start, c.Connected), since(c.Start, c.FirstByte), since(c.Start, c.FirstEvent), since(c.Start, c.End), c.End.IsZero(),
					c.Status, c.Events, c.Comments, c.Bytes, c.MaxGap, c.Retry, c.EndClass, c.ClosedBy})
			})
		},
	},
	"samples": {
		about: "one row per monitor sample of the writing process (and of --server-pid)",
		columns: []string{"time", "time_unix_s", "uptime_s", "active", "attempts", "events", "comments", "reconnects", "errors",
			"heap_alloc_bytes", "rss_bytes", "goroutines", "fds", "timer_lag_s", "cpu_user_s", "cpu_system_s",
			"server_pid", "server_rss_bytes", "server_fds", "server_threads"},
		rows: func(r *session.Reader, emit func([]any) error) (session.Unreadable, error) {
			return session.DecodeEach(r, session.BucketSamples, func(s *session.Sample) error {
				var errs int64
				for _, n := range s.Errors {
					errs += n
				}
				return emit([]any{s.Time, unixSeconds(s.Time), s.Uptime, s.Active, s.Attempts, s.Events, s.Comments, s.Reconnects, errs,
					s.HeapAlloc, s.RSS, s.Goroutines, s.FDs, s.TimerLag, s.CPUUser, s.CPUSystem,
					nonZero(s.ServerPID), nonZero(s.ServerRSS), nonZero(s.ServerFDs), nonZero(s.ServerThreads)})
			})
		},
	},
	"hop_conns": {
		about: "one row per proxied connection and hop, as the proxy's sockets saw it",
		columns: []string{"proxy", "conn_id", "hop", "request", "local_addr", "remote_addr", "method", "path", "status",
			"opened", "opened_unix_s", "lifetime_s", "open", "closed_by", "ending", "class", "bytes_up", "bytes_down", "events_down",
			"on_upstream_error", "fault_firings"},
		rows: func(r *session.Reader, emit func([]any) error) (session.Unreadable, error) {
			return session.DecodeEach(r, session.BucketHopConns, func(h *session.HopConn) error {
				return emit([]any{h.Proxy, h.ConnID, h.Hop, h.Request, h.LocalAddr, h.RemoteAddr, h.Method, h.Path, nonZero(h.Status),
					h.Opened, unixSeconds(h.Opened), since(h.Opened, h.Closed), h.Closed.IsZero(), h.ClosedBy, h.Ending, h.Class,
					h.BytesUp, h.BytesDown, h.EventsDown, h.OnUpstreamError, len(h.Faults)})
			})
		},
	},
	"faults": {
		about: "one row per fault firing of an ssestress proxy, with how it ended its connection",
		columns: []string{"time", "time_unix_s", "proxy", "conn_id", "request", "hop", "fault_name", "fault_kind", "direction",
			"action", "ending", "detail", "local_addr", "remote_addr"},
		rows: func(r *session.Reader, emit func([]any) error) (session.Unreadable, error) {
			return session.DecodeEach(r, session.BucketFaults, func(f *session.FaultEvent) error {
				return emit([]any{f.Time, unixSeconds(f.Time), f.Proxy, f.ConnID, nonZero(f.Request), f.Hop, f.FaultName, f.FaultKind,
					f.Direction, f.Action, f.Ending, f.Detail, f.LocalAddr, f.RemoteAddr})
			})
		},
	},
	"kernel_events": {
		about: "one row per TCP reset sent or received, or state change, traced by the kernel (--kernel)",
		columns: []string{"time", "time_unix_s", "event", "local_addr", "remote_addr", "state", "reason", "old_state", "new_state",
			"sock_cookie", "tid", "pid", "comm", "softirq", "owner_pid", "owner_comm"},
		rows: func(r *session.Reader, emit func([]any) error) (session.Unreadable, error) {
			return session.DecodeEach(r, session.BucketKernelEvents, func(k *session.KernelEvent) error {
				return emit([]any{k.Time, unixSeconds(k.Time), k.Event, k.LocalAddr, k.RemoteAddr, k.State, k.Reason, k.OldState, k.NewState,
					nonZero(k.SockCookie), k.TID, k.PID, k.Comm, k.Softirq, nonZero(k.OwnerPID), k.OwnerComm})
			})
		},
	},
}

// ExportKinds lists the record kinds Export writes, sorted, with what a
// row is.
func ExportKinds() [][2]string {
	var out [][2]string
	for _, k := range sortedKeys(exporters) {
		out = append(out, [2]string{k, exporters[k].about})
	}
	return out
}

// Export writes the records of kind from every reader in format, one per
// line, each row beginning with the file's base name (for resets, which
// the files explain together, the base names of them all joined by "+").
// Records that do not decode are left out (ExportSkipping says which).
func Export(w io.Writer, readers []*session.Reader, kind, format string) error {
	_, err := ExportSkipping(w, readers, kind, format)
	return err
}

// ExportSkipping is Export, and says which records it left out because
// they did not decode.
func ExportSkipping(w io.Writer, readers []*session.Reader, kind, format string) ([]ExportSkip, error) {
	ex, ok := exporters[kind]
	if !ok {
		return nil, fmt.Errorf("%w: record kind %q (use %s)", ErrUnknownExport, kind, strings.Join(sortedKeys(exporters), ", "))
	}
	if !slices.Contains(ExportFormats, format) {
		return nil, fmt.Errorf("%w: format %q (use %s)", ErrUnknownExport, format, strings.Join(ExportFormats, ", "))
	}
	columns := append([]string{"file"}, ex.columns...)
	bw := bufio.NewWriterSize(w, 64<<10)
	var emit func([]any) error
	flush := bw.Flush
	switch format {
	case "csv":
		cw := csv.NewWriter(bw)
		if err := cw.Write(columns); err != nil {
			return nil, err
		}
		cells := make([]string, len(columns))
		emit = func(row []any) error {
			for i, v := range row {
				cells[i] = cellText(v)
			}
			return cw.Write(cells)
		}
		flush = func() error {
			cw.Flush()
			if err := cw.Error(); err != nil {
				return err
			}
			return bw.Flush()
		}
	case "jsonl":
		var line []byte
		emit = func(row []any) error {
			line = append(line[:0], '{')
			for i, v := range row {
				if i > 0 {
					line = append(line, ',')
				}
				line = strconv.AppendQuote(line, columns[i])
				line = append(line, ':')
				var err error
				if line, err = appendJSONValue(line, v); err != nil {
					return err
				}
			}
			line = append(line, '}', '\n')
			_, err := bw.Write(line)
			return err
		}
	}
	if ex.together != nil {
		var names []string
		for _, r := range readers {
			names = append(names, filepath.Base(r.Path()))
		}
		files := strings.Join(names, "+")
		row := make([]any, 0, len(columns))
		skipped, err := ex.together(readers, func(values []any) error {
			row = append(append(row[:0], files), values...)
			return emit(row)
		})
		if err != nil {
			return skipped, err
		}
		return skipped, flush()
	}
	var skipped []ExportSkip
	for _, r := range readers {
		file := filepath.Base(r.Path())
		row := make([]any, 0, len(columns))
		u, err := ex.rows(r, func(values []any) error {
			row = append(append(row[:0], file), values...)
			return emit(row)
		})
		if u.Records > 0 {
			skipped = append(skipped, ExportSkip{File: file, Bucket: kind, Unreadable: u})
		}
		if err != nil {
			return skipped, err
		}
	}
	return skipped, flush()
}

// unixSeconds is t as seconds since 1970 (nil for a zero time: an empty
// cell, a JSON null).
func unixSeconds(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return float64(t.UnixNano()) / 1e9
}

// since is the seconds from start to t (nil when t is zero).
func since(start, t time.Time) any {
	if t.IsZero() || start.IsZero() {
		return nil
	}
	return session.Seconds(t.Sub(start))
}

// nonZero leaves a zero number out (an empty cell, a JSON null): "not
// recorded", not 0.
func nonZero[T int | int64 | uint64](v T) any {
	if v == 0 {
		return nil
	}
	return v
}

// cellText writes one value as a CSV cell.
func cellText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		if v {
			return "true"
		}
		return "false"
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case session.Seconds:
		return string(session.AppendSeconds(nil, v.D()))
	case time.Time:
		if v.IsZero() {
			return ""
		}
		return v.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// appendJSONValue appends one value as JSON.
func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		raw, err := json.Marshal(v)
		return append(b, raw...), err
	case time.Time:
		if v.IsZero() {
			return append(b, "null"...), nil
		}
		return strconv.AppendQuote(b, v.UTC().Format(time.RFC3339Nano)), nil
	case session.Seconds:
		return session.AppendSeconds(b, v.D()), nil
	}
	return append(b, cellText(v)...), nil
}
