package recording_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

// randomRecording builds a recording with every field set to something
// awkward: unicode, control characters, empty values, several zones.
func randomRecording(rng *rand.Rand) *recording.Recording {
	texts := []string{"", "a", "line1\nline2", "ünïcødé €", "tab\there", `quote " and \ backslash`, "<html>&", "\x00nul", "\r\n"}
	txt := func() string { return texts[rng.IntN(len(texts))] }
	zones := []*time.Location{time.UTC, time.FixedZone("X", 5*3600+1800), time.FixedZone("Y", -7*3600)}
	rec := &recording.Recording{}
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	n := 1 + rng.IntN(5)
	for i := range n {
		s := &recording.Stored{}
		s.Proxy = []string{"p", "edge-1", "ünï"}[rng.IntN(3)]
		s.ConnID = "c" + string(rune('a'+i)) + txt()
		s.Method = "GET"
		s.Path = "/stream"
		s.Query = "symbols=" + txt()
		s.Group = strings.ToUpper(txt())
		s.Start = base.Add(time.Duration(rng.Int64N(int64(time.Hour)))).In(zones[rng.IntN(len(zones))])
		if rng.IntN(2) == 0 {
			s.Header = http.Header{"Accept": {"text/event-stream"}, "X-" + txt(): {txt(), txt()}}
			s.Redacted = []string{"Authorization"}
		}
		s.Status = []int{0, 200, 502}[rng.IntN(3)]
		if s.Status != 0 {
			s.RespHeader = http.Header{"Content-Type": {"text/event-stream"}}
			s.RespAt = session.Seconds(time.Duration(rng.Int64N(1e9)))
		}
		s.Ended = rng.IntN(2) == 0
		if s.Ended {
			s.End = session.Seconds(time.Duration(rng.Int64N(1e12)))
			s.EndedBy, s.Ending, s.Class = session.EndedByUpstream, session.EndingRST, "ECONNRESET"
		}
		s.Stopped = rng.IntN(5) == 0
		m := rng.IntN(8)
		for j := range m {
			e := session.RecEvent{Proxy: s.Proxy, ConnID: s.ConnID, Seq: j, Offset: session.Seconds(time.Duration(rng.Int64N(1e12)))}
			switch rng.IntN(3) {
			case 0:
				e.Kind, e.ID, e.Type, e.Data = session.RecKindEvent, txt(), "message", txt()
			case 1:
				e.Kind, e.Comment = session.RecKindComment, txt()
			default:
				e.Kind, e.Retry = session.RecKindRetry, session.Seconds(time.Duration(rng.Int64N(1e6))*time.Millisecond)
			}
			s.Events = append(s.Events, e)
		}
		s.Frames = int64(m)
		rec.Streams = append(rec.Streams, s)
	}
	return rec
}

func export(t testing.TB, rec *recording.Recording) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := recording.Export(&b, rec); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// storeAndLoad writes rec into a new session file and loads it back.
func storeAndLoad(t testing.TB, rec *recording.Recording, dir string) *recording.Recording {
	t.Helper()
	path := filepath.Join(dir, "r.db")
	w, err := session.Create(path, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec.Store(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestExportImportRoundTrip: session file → jsonl → session file → jsonl
// gives the same bytes, for many random recordings.
func TestExportImportRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		orig := randomRecording(rng)
		dir := t.TempDir()
		loaded := storeAndLoad(t, orig, dir)
		first := export(t, loaded)
		imported, err := recording.Import(bytes.NewReader(first))
		if err != nil {
			t.Fatalf("case %d: import: %v\n%s", i, err, first)
		}
		again := storeAndLoad(t, imported, t.TempDir())
		second := export(t, again)
		if !bytes.Equal(first, second) {
			t.Fatalf("case %d: round trip differs:\n%s\n---\n%s", i, first, second)
		}
		if len(again.Streams) != len(orig.Streams) || again.Frames() != orig.Frames() {
			t.Fatalf("case %d: %d streams %d frames, want %d and %d", i, len(again.Streams), again.Frames(), len(orig.Streams), orig.Frames())
		}
	}
}

// TestImportErrors: each bad input gives one error naming its line.
func TestImportErrors(t *testing.T) {
	stream := `{"record":"stream","proxy":"p","conn_id":"c1","method":"GET","path":"/s","start":"2025-01-01T00:00:00Z","frames":0,"bytes":0,"ended":false}`
	event := `{"record":"event","proxy":"p","conn_id":"c1","seq":0,"offset_s":0.000000005,"kind":"event","data":"x"}`
	cases := []struct{ name, in, want string }{
		{"not json", "{", "line 1: unexpected end of JSON input"},
		{"unknown record", `{"record":"flow"}`, `line 1: record "flow"`},
		{"unknown field", strings.Replace(stream, `"method"`, `"mthod"`, 1), `line 1: json: unknown field "mthod"`},
		{"orphan event", event, `line 1: event of unknown stream "p/c1"`},
		{"stream after events", stream + "\n" + event + "\n" + strings.Replace(stream, "c1", "c2", 1), "line 3: stream after the first event"},
		{"duplicate stream", stream + "\n" + stream, `line 2: duplicate stream "p/c1"`},
		{"duplicate event", stream + "\n" + event + "\n\n" + event, `line 4: duplicate event`},
		{"bad kind", stream + "\n" + strings.Replace(event, `"kind":"event"`, `"kind":"blob"`, 1), `line 2: event kind "blob"`},
		{"negative offset", stream + "\n" + strings.Replace(event, `"offset_s":0.000000005`, `"offset_s":-0.000000005`, 1), "line 2: negative offset"},
		{"negative offset, version 1", stream + "\n" + strings.Replace(event, `"offset_s":0.000000005`, `"offset_ns":-5`, 1), "line 2: negative offset"},
		{"no conn id", strings.Replace(stream, `"c1"`, `""`, 1), "line 1: stream without conn_id"},
	}
	for _, c := range cases {
		_, err := recording.Import(strings.NewReader(c.in))
		if err == nil || !errors.Is(err, recording.ErrBadJSONL) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	rec, err := recording.Import(strings.NewReader(stream + "\n" + event + "\n"))
	if err != nil || len(rec.Streams) != 1 || len(rec.Streams[0].Events) != 1 || rec.Streams[0].Events[0].Offset != 5 {
		t.Fatalf("good input: %v %+v", err, rec)
	}
	// A version 1 export (offsets in integer nanoseconds) imports the same.
	v1 := strings.Replace(event, `"offset_s":0.000000005`, `"offset_ns":5`, 1)
	rec, err = recording.Import(strings.NewReader(stream + "\n" + v1 + "\n"))
	if err != nil || len(rec.Streams) != 1 || len(rec.Streams[0].Events) != 1 || rec.Streams[0].Events[0].Offset != 5 {
		t.Fatalf("version 1 input: %v %+v", err, rec)
	}
}

// FuzzImport: any input either fails with ErrBadJSONL or imports into a
// recording whose export imports back to the same export.
func FuzzImport(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 4 {
		f.Add(export(f, randomRecording(rng)))
	}
	f.Add([]byte(`{"record":"stream","proxy":"p","conn_id":"c","start":"2025-01-01T00:00:00+01:00","header":{"a":[]},"redacted":[]}`))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rec, err := recording.Import(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, recording.ErrBadJSONL) {
				t.Fatalf("error without ErrBadJSONL: %v", err)
			}
			return
		}
		first := export(t, rec)
		rec2, err := recording.Import(bytes.NewReader(first))
		if err != nil {
			t.Fatalf("re-import of an export: %v\n%s", err, first)
		}
		if second := export(t, rec2); !bytes.Equal(first, second) {
			t.Fatalf("export not stable:\n%s\n---\n%s", first, second)
		}
	})
}
