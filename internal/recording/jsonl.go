package recording

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ssestress/ssestress/internal/session"
)

// The jsonl format (export and import): one JSON object per line, first
// every stream, then every frame, each object being the session record
// (session.RecStream, session.RecEvent, same JSON field names as in the
// session file) with one more field, "record": "stream" or "event", first.
// Streams come in recording order; frames grouped by stream in that order.
// A stream line also carries "upstream_error_action" when the recording
// proxy passed an upstream failure on to the client by its policy
// (Stored.UpstreamErrorAction).

// Line kinds of the jsonl format.
const (
	LineStream = "stream"
	LineEvent  = "event"
)

// ErrBadJSONL wraps every import error; the message names the line.
var ErrBadJSONL = errors.New("bad recording jsonl")

// MaxJSONLLine bounds one line of an imported file.
const MaxJSONLLine = 64 << 20

type streamLine struct {
	Record string `json:"record"`
	session.RecStream
	UpstreamErrorAction string `json:"upstream_error_action,omitempty"`
}

type eventLine struct {
	Record string `json:"record"`
	session.RecEvent
}

// Export writes rec as jsonl to w.
func Export(w io.Writer, rec *Recording) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, s := range rec.Streams {
		if err := enc.Encode(streamLine{LineStream, s.RecStream, s.UpstreamErrorAction}); err != nil {
			return err
		}
	}
	for _, s := range rec.Streams {
		for _, e := range s.Events {
			if err := enc.Encode(eventLine{LineEvent, e}); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// Import reads a jsonl recording. It is strict: an unknown field, a
// duplicate stream or frame, a frame before or without its stream, a
// frame kind other than event, comment or retry, or a negative offset is
// an error naming the line. Blank lines are skipped.
func Import(r io.Reader) (*Recording, error) {
	rec := &Recording{}
	byKey := map[string]*Stored{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxJSONLLine)
	lineNo := 0
	inEvents := false
	for sc.Scan() {
		lineNo++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrBadJSONL, lineNo, fmt.Sprintf(format, args...))
		}
		var head struct {
			Record string `json:"record"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			return nil, bad("%v", err)
		}
		if isV1Line(line) {
			bucket := session.BucketRecEvents
			if head.Record == LineStream {
				bucket = session.BucketRecStreams
			}
			up, err := session.Upgrade(1, bucket, nil, line)
			if err != nil {
				return nil, bad("%v", err)
			}
			line = up
		}
		switch head.Record {
		case LineStream:
			if inEvents {
				return nil, bad("stream after the first event (streams come first)")
			}
			var l streamLine
			if err := strictUnmarshal(line, &l); err != nil {
				return nil, bad("%v", err)
			}
			if l.ConnID == "" {
				return nil, bad("stream without conn_id")
			}
			key := string(l.RecStream.Key())
			if byKey[key] != nil {
				return nil, bad("duplicate stream %q", key)
			}
			if l.RespAt < 0 || l.End < 0 || l.Frames < 0 || l.Bytes < 0 {
				return nil, bad("stream %q: negative time or count", key)
			}
			if err := checkStatus(l.Status); err != nil {
				return nil, bad("stream %q: %v", key, err)
			}
			st := &Stored{RecStream: l.RecStream, UpstreamErrorAction: l.UpstreamErrorAction}
			byKey[key] = st
			rec.Streams = append(rec.Streams, st)
		case LineEvent:
			inEvents = true
			var l eventLine
			if err := strictUnmarshal(line, &l); err != nil {
				return nil, bad("%v", err)
			}
			e := l.RecEvent
			st := byKey[string(session.RecStreamKey(e.Proxy, e.ConnID))]
			if st == nil {
				return nil, bad("event of unknown stream %q", e.Proxy+"/"+e.ConnID)
			}
			switch e.Kind {
			case session.RecKindEvent, session.RecKindComment, session.RecKindRetry:
			default:
				return nil, bad("event kind %q (want event, comment or retry)", e.Kind)
			}
			if e.Offset < 0 || e.Seq < 0 || e.Retry < 0 {
				return nil, bad("negative offset, seq or retry")
			}
			if e.Seq >= 1e10 {
				return nil, bad("seq %d too large", e.Seq)
			}
			k := string(e.Key())
			if seen[k] {
				return nil, bad("duplicate event %q", k)
			}
			seen[k] = true
			st.Events = append(st.Events, e)
		default:
			return nil, bad("record %q (want stream or event)", head.Record)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d longer than %d bytes", ErrBadJSONL, lineNo+1, MaxJSONLLine)
		}
		return nil, err
	}
	// Frames are stored by key, so keep each stream's frames in key (seq)
	// order: that is what a round trip through a session file gives.
	for _, s := range rec.Streams {
		sortEvents(s.Events)
	}
	rec.sort()
	return rec, nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// isV1Line reports whether a jsonl line was exported by a version 1
// ssestress: durations in integer nanoseconds (keys ending in _ns), or the
// stream's ending as closed_by and how. Such lines are read through the
// session schema's migration.
func isV1Line(line []byte) bool {
	return bytes.Contains(line, []byte(`_ns"`)) || bytes.Contains(line, []byte(`"closed_by"`)) || bytes.Contains(line, []byte(`"how"`))
}
