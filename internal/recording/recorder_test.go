package recording_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/recording/recordtest"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// received is what a test client saw of one stream.
type received struct {
	frames []sse.Frame
	header http.Header
}

// readStream connects to url with headers and reads frames until it has
// wantEvents events, then closes the connection.
func readStream(t *testing.T, url string, h http.Header, wantEvents int) received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var got received
	got.header = resp.Header
	dec := sse.NewDecoder(resp.Body, 0)
	events := 0
	for events < wantEvents {
		f, err := dec.Next()
		if err != nil {
			t.Fatalf("after %d events: %v", events, err)
		}
		got.frames = append(got.frames, f)
		if f.Kind == sse.KindEvent {
			events++
		}
	}
	return got
}

func newFile(t *testing.T) (*session.Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec.db")
	w, err := session.Create(path, session.Options{FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

// TestRecorderThroughRelay records real streams from the embedded server
// through a relay and checks that the recording holds exactly what each
// client received, with credentials redacted by default.
func TestRecorderThroughRelay(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 3000, Max: 3000}, Heartbeat: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	w, path := newFile(t)
	rec := recording.New(w, "p1", recording.Options{Redact: []string{"x-api-key"}})
	relay, err := recordtest.Start(srv.URL, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()

	h := http.Header{
		"Authorization": {"Bearer secret-token"},
		"Cookie":        {"session=secret-cookie"},
		"X-Api-Key":     {"secret-key"},
		"X-Client":      {"tester"},
		"Accept":        {"text/event-stream"},
	}
	a := readStream(t, relay.URL+"/stream?symbols=msft,aapl", h, 20)
	b := readStream(t, relay.URL+"/stream?symbols=GOOG", nil, 5)
	relay.Close()
	w.Close()

	r, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Streams) != 2 {
		t.Fatalf("streams = %d, want 2", len(r.Streams))
	}
	for i, want := range []received{a, b} {
		s := r.Streams[i]
		if !s.Ended || s.EndedBy != "client" {
			t.Errorf("stream %s: ended=%v closed_by=%q, want ended by client", s.Name(), s.Ended, s.EndedBy)
		}
		if s.Status != 200 || !strings.HasPrefix(s.RespHeader.Get("Content-Type"), "text/event-stream") {
			t.Errorf("stream %s: status %d, content type %q", s.Name(), s.Status, s.RespHeader.Get("Content-Type"))
		}
		// The relay may have forwarded more than the client read before it
		// closed: the client's frames are a prefix of the recording.
		if len(s.Events) < len(want.frames) {
			t.Fatalf("stream %s: %d frames recorded, client read %d", s.Name(), len(s.Events), len(want.frames))
		}
		var last session.Seconds
		for j, f := range want.frames {
			e := s.Events[j]
			if e.Seq != j {
				t.Errorf("frame %d: seq %d", j, e.Seq)
			}
			if e.Offset < last {
				t.Errorf("frame %d: offset %v before previous %v", j, e.Offset, last)
			}
			last = e.Offset
			switch f.Kind {
			case sse.KindEvent:
				if e.Kind != session.RecKindEvent || e.ID != f.ID || e.Type != f.Type || e.Data != string(f.Data) {
					t.Fatalf("frame %d: recorded %+v, client got %s %s %q", j, e, f.ID, f.Type, f.Data)
				}
			case sse.KindComment:
				if e.Kind != session.RecKindComment || e.Comment != string(f.Comment) {
					t.Fatalf("frame %d: recorded %+v, client got comment %q", j, e, f.Comment)
				}
			case sse.KindRetry:
				if e.Kind != session.RecKindRetry || e.Retry.D() != f.Retry {
					t.Fatalf("frame %d: recorded %+v, client got retry %v", j, e, f.Retry)
				}
			}
		}
	}
	s := r.Streams[0]
	if s.Group != "AAPL,MSFT" || s.Path != "/stream" || s.Query != "symbols=msft,aapl" {
		t.Errorf("request: path %q query %q group %q", s.Path, s.Query, s.Group)
	}
	for _, k := range []string{"Authorization", "Cookie", "X-Api-Key"} {
		if got := s.Header.Get(k); got != recording.RedactedValue {
			t.Errorf("header %s recorded as %q, want %q", k, got, recording.RedactedValue)
		}
	}
	if got := s.Header.Get("X-Client"); got != "tester" {
		t.Errorf("X-Client = %q", got)
	}
	if got := strings.Join(s.Redacted, ","); got != "Authorization,Cookie,X-Api-Key" {
		t.Errorf("redacted = %q", got)
	}
	raw := dumpFile(t, path)
	for _, secret := range []string{"secret-token", "secret-cookie", "secret-key"} {
		if strings.Contains(raw, secret) {
			t.Errorf("the session file contains %q", secret)
		}
	}
}

// dumpFile returns every value of the recording buckets as one string.
func dumpFile(t *testing.T, path string) string {
	t.Helper()
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var b strings.Builder
	for _, bucket := range []string{session.BucketRecStreams, session.BucketRecEvents} {
		r.Each(bucket, func(k, v []byte) error { b.Write(v); return nil })
	}
	return b.String()
}

// TestRecorderNoRedact keeps credentials when asked to.
func TestRecorderNoRedact(t *testing.T) {
	w, path := newFile(t)
	rec := recording.New(w, "p", recording.Options{NoRedact: true, Redact: []string{"X-Api-Key"}})
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/stream?symbols=A", nil)
	req.Header.Set("Authorization", "Bearer kept")
	req.Header.Set("X-Api-Key", "kept-too")
	s := rec.Begin("c1", req, time.Now())
	s.End(session.EndedByClient, session.EndingFIN, "", time.Now())
	w.Close()
	r, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Streams[0]
	if got.Header.Get("Authorization") != "Bearer kept" || got.Header.Get("X-Api-Key") != "kept-too" || len(got.Redacted) != 0 {
		t.Errorf("NoRedact recorded %v (redacted %v)", got.Header, got.Redacted)
	}
}

// TestStreamWritePieces feeds a stream in awkward pieces (split lines, CRLF
// split across writes) and checks every frame and its offset.
func TestStreamWritePieces(t *testing.T) {
	w, path := newFile(t)
	rec := recording.New(w, "p", recording.Options{})
	start := time.Now()
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/s", nil)
	s := rec.Begin("c1", req, start)
	s.Response(200, http.Header{"Content-Type": {"text/event-stream"}, "Set-Cookie": {"a=b"}}, start.Add(time.Millisecond))
	pieces := []string{"retry: 1500\r", "\n\r\n: hb\n\nid: 7\nevent: q", "uote\ndata: a\ndata: b\n\n", "data: \xff\n\n", "data: tail-without-blank-line\n"}
	for i, p := range pieces {
		s.Write([]byte(p), start.Add(time.Duration(i+1)*10*time.Millisecond))
	}
	s.End(session.EndedByUpstream, session.EndingRST, "ECONNRESET", start.Add(time.Second))
	s.Write([]byte("data: after end\n\n"), start.Add(2*time.Second)) // ignored
	w.Close()
	r, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Streams[0]
	if got.RespHeader.Get("Set-Cookie") != recording.RedactedValue {
		t.Errorf("Set-Cookie not redacted: %v", got.RespHeader)
	}
	if got.End.D() != time.Second || got.Ending != session.EndingRST || got.Class != "ECONNRESET" || got.EndedBy != session.EndedByUpstream {
		t.Errorf("ending: %+v", got.RecStream)
	}
	want := []session.RecEvent{
		{Seq: 0, Offset: session.Seconds(10 * time.Millisecond), Kind: "retry", Retry: session.Seconds(1500 * time.Millisecond)},
		{Seq: 1, Offset: session.Seconds(20 * time.Millisecond), Kind: "comment", Comment: "hb"},
		{Seq: 2, Offset: session.Seconds(30 * time.Millisecond), Kind: "event", ID: "7", Type: "quote", Data: "a\nb"},
		{Seq: 3, Offset: session.Seconds(40 * time.Millisecond), Kind: "event", ID: "7", Type: "message", Data: "\uFFFD"},
	}
	if len(got.Events) != len(want) {
		t.Fatalf("frames: %+v", got.Events)
	}
	for i, e := range got.Events {
		e.Proxy, e.ConnID = "", ""
		if e != want[i] {
			t.Errorf("frame %d = %+v, want %+v", i, e, want[i])
		}
	}
	if got.Events[0].ConnID != "c1" || got.Events[0].Proxy != "p" || got.Events[0].Key() == nil {
		t.Errorf("frame names: %+v", got.Events[0])
	}
}

// TestRecorderStartStop: a stopped Recorder begins nothing, and stopping
// finishes the streams being recorded.
func TestRecorderStartStop(t *testing.T) {
	w, path := newFile(t)
	rec := recording.New(w, "p", recording.Options{})
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/s", nil)
	start := time.Now()
	live := rec.Begin("live", req, start)
	live.Write([]byte("data: 1\n\n"), start)
	rec.SetEnabled(false)
	if rec.Enabled() {
		t.Fatal("still enabled")
	}
	live.Write([]byte("data: 2\n\n"), start)                      // not recorded
	live.End(session.EndedByClient, session.EndingFIN, "", start) // not recorded either: it was stopped
	if s := rec.Begin("off", req, start); s != nil {
		t.Fatal("Begin while stopped returned a stream")
	}
	var nilStream *recording.Stream
	nilStream.Write([]byte("data: x\n\n"), start) // nil-safe
	nilStream.End(session.EndedByClient, session.EndingFIN, "", start)
	rec.SetEnabled(true)
	again := rec.Begin("again", req, start)
	again.End(session.EndedByClient, session.EndingFIN, "", start)
	w.Close()
	r, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Streams) != 2 {
		t.Fatalf("streams: %d", len(r.Streams))
	}
	l := r.Find("p/live")
	if l == nil || !l.Stopped || l.Ended || len(l.Events) != 1 {
		t.Errorf("stopped stream: %+v", l)
	}
	if a := r.Find("again"); a == nil || !a.Ended {
		t.Errorf("restarted stream: %+v", a)
	}
	if n, f := rec.Counts(); n != 2 || f != 1 {
		t.Errorf("counts = %d streams %d frames", n, f)
	}
}

// TestRecorderNotSSE counts the body of a response that is not an event
// stream without inventing frames from it.
func TestRecorderNotSSE(t *testing.T) {
	w, path := newFile(t)
	rec := recording.New(w, "p", recording.Options{})
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/healthz", nil)
	now := time.Now()
	s := rec.Begin("h", req, now)
	s.Response(200, http.Header{"Content-Type": {"text/plain"}}, now)
	s.Write([]byte("data: looks like sse\n\n"), now)
	s.End(session.EndedByUpstream, session.EndingFIN, "EOF", now)
	w.Close()
	r, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Streams[0]; len(got.Events) != 0 || got.Bytes != 22 {
		t.Errorf("text/plain body: %d frames, %d bytes", len(got.Events), got.Bytes)
	}
}

// TestReadsBothEncodings: one file holds a stream recorded in blocks (the
// recorder) and one stored frame by frame as JSON (an import, or a file
// written before blocks): both read back as the same frames.
func TestReadsBothEncodings(t *testing.T) {
	w, path := newFile(t)
	rec := recording.New(w, "p", recording.Options{})
	start := time.Now()
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/s?symbols=A", nil)
	s := rec.Begin("blocks", req, start)
	s.Response(200, http.Header{"Content-Type": {"text/event-stream"}}, start)
	stream := "id: 1\ndata: a\n\n: hb\n\nretry: 20\n\nid: 2\ndata: b\n\n"
	for i := 0; i < len(stream); i += 7 {
		s.Write([]byte(stream[i:min(i+7, len(stream))]), start.Add(time.Duration(i)*time.Millisecond))
	}
	s.End(session.EndedByUpstream, session.EndingFIN, "", start.Add(time.Second))
	w.Flush()
	r0, err := session.Open(path)
	if err == nil {
		r0.Close()
	}
	// The same frames, stored one JSON record each, under another id.
	w.Close()
	loaded, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks := loaded.Find("p/blocks")
	if blocks == nil || len(blocks.Events) != 4 || blocks.Frames != 4 {
		t.Fatalf("block stream: %+v", blocks)
	}
	path2 := filepath.Join(t.TempDir(), "json.db")
	w2, err := session.Create(path2, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	js := *blocks
	js.ConnID = "json"
	w2.Put(js.RecStream)
	for _, e := range js.Events {
		e.ConnID = "json"
		w2.Put(e)
	}
	w2.Put(blocks.RecStream)
	block := session.RecChunks{Proxy: "p", ConnID: "blocks", Frames: 4,
		Data: session.AppendRecChunk(nil, 3*time.Millisecond, false, []byte(stream))}
	w2.Put(block)
	w2.Close()
	both, err := recording.Load(path2)
	if err != nil {
		t.Fatal(err)
	}
	a, b := both.Find("p/json"), both.Find("p/blocks")
	if a == nil || b == nil || len(a.Events) != 4 || len(b.Events) != 4 {
		t.Fatalf("streams %+v %+v", a, b)
	}
	for i := range a.Events {
		ea, eb := a.Events[i], b.Events[i]
		ea.ConnID, eb.ConnID, eb.Offset = "", "", ea.Offset
		if ea != eb {
			t.Errorf("frame %d: JSON %+v, block %+v", i, ea, eb)
		}
	}
}

// TestRecorderCountsDropsPastBudget: past the writer's byte budget pieces
// are dropped and their frames counted as dropped records; what was kept
// still reads, the stream going on after the gap.
func TestRecorderCountsDropsPastBudget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.db")
	w, err := session.Create(path, session.Options{MaxPendingBytes: 16 << 10, FlushInterval: time.Hour, BatchSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	rec := recording.New(w, "p", recording.Options{BlockSize: 4 << 10, MaxWait: -1})
	start := time.Now()
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/s", nil)
	s := rec.Begin("c", req, start)
	s.Response(200, http.Header{"Content-Type": {"text/event-stream"}}, start)
	event := []byte("data: " + strings.Repeat("q", 100) + "\n\n")
	for i := 0; i < 1000; i++ {
		s.Write(event, start.Add(time.Duration(i)*time.Millisecond))
	}
	s.End(session.EndedByProxy, session.EndingFIN, "", start.Add(time.Second))
	dropped := w.Dropped()
	if dropped == 0 {
		t.Fatal("nothing dropped past a 16 KiB budget")
	}
	w.Close()
	loaded, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st := loaded.Streams[0]
	if st.Frames+int64(dropped) != 1000 || int64(len(st.Events)) != st.Frames {
		t.Fatalf("%d frames stored (%d read), %d dropped: want 1000 in all", st.Frames, len(st.Events), dropped)
	}
}
