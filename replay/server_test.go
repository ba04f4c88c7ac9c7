package replay_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/replay"
)

// TestServeReplaysRecordedSession records a few seconds of real traffic
// (clients → recording relay → embedded server), then replays it: every
// recorded stream is sent with the same frames in the same order, with the
// recorded gaps (p99 error ≤ 2 ms) at speed 1 and a tenth of them at speed
// 10.
func TestServeReplaysRecordedSession(t *testing.T) {
	path := recordSession(t, feed.Config{Rate: feed.Rate{Min: 900, Max: 1500}, Heartbeat: 120 * time.Millisecond}, []clientSpec{
		{"symbols=AAPL,MSFT", 0, 2500 * time.Millisecond},
		{"symbols=GOOG", 200 * time.Millisecond, 2000 * time.Millisecond},
		{"symbols=MSFT,AAPL", 400 * time.Millisecond, 1800 * time.Millisecond},
		{"symbols=TSLA,NVDA,AMD", 600 * time.Millisecond, 1500 * time.Millisecond},
	})
	rec, err := recording.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Streams) != 4 {
		t.Fatalf("recorded %d streams, want 4", len(rec.Streams))
	}
	for _, s := range rec.Streams {
		if s.Header.Get("Authorization") != recording.RedactedValue {
			t.Errorf("%s: Authorization recorded as %q", s.Name(), s.Header.Get("Authorization"))
		}
		if len(s.Events) < 15 {
			t.Fatalf("stream %s: only %d frames recorded", s.Name(), len(s.Events))
		}
	}
	for _, speed := range []float64{1, 10} {
		t.Run(fmt.Sprintf("speed=%v", speed), func(t *testing.T) {
			// The frames must always be right; the 2 ms bound is a timing
			// claim, so a loaded machine gets three attempts, and when all
			// three miss while the machine's own timers were over a
			// millisecond late at p99 (measured alongside), the bound cannot
			// be judged here and the test says so instead of failing.
			var lags []time.Duration
			for attempt := 1; ; attempt++ {
				gapErr, spanErr, lag := replayOnce(t, rec, speed)
				p99 := percentile(gapErr, 99)
				worstSpan := percentile(spanErr, 100)
				t.Logf("speed %v attempt %d: gap error %s; worst stream-length error %v; machine timer lag p99 %v",
					speed, attempt, fmtDurations(gapErr), worstSpan, percentile(lag, 99))
				if p99 <= 2*time.Millisecond && worstSpan <= spanTolerance {
					return
				}
				lags = append(lags, lag...)
				if attempt == 3 {
					if l := percentile(lags, 99); l > time.Millisecond {
						t.Skipf("gap error p99 %v, stream-length error %v, but the machine is too loaded to judge: timer lag p99 %v", p99, worstSpan, l)
					}
					t.Fatalf("gap error p99 %v (want ≤ 2ms), worst stream-length error %v (want ≤ %v)", p99, worstSpan, spanTolerance)
				}
			}
		})
	}
}

// spanTolerance bounds the error of a replayed stream's length (first to
// last frame) against the recorded length divided by speed: gaps are
// scheduled against the stream's start, so their errors do not add up.
const spanTolerance = 5 * time.Millisecond

// replayOnce replays every stream of rec at speed, all at once, each
// request asking with its recorded query (the two AAPL,MSFT requests get
// the two AAPL,MSFT streams, round-robin). It checks that every stream is
// served whole and in order, and returns the gap errors, each stream's
// length error and the timer lag a probe saw meanwhile.
func replayOnce(t *testing.T, rec *recording.Recording, speed float64) (gapErr, spanErr, lag []time.Duration) {
	t.Helper()
	srv, err := replay.Start("127.0.0.1:0", rec, replay.Config{Speed: speed})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	stopProbe := make(chan struct{})
	probeDone := make(chan []time.Duration)
	go func() {
		var lags []time.Duration
		for {
			select {
			case <-stopProbe:
				probeDone <- lags
				return
			default:
			}
			want := 5 * time.Millisecond
			t0 := time.Now()
			time.Sleep(want)
			lags = append(lags, time.Since(t0)-want)
		}
	}()
	results := make([]got, len(rec.Streams))
	var wg sync.WaitGroup
	for i, s := range rec.Streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = fetchFor(t, srv.URL+s.Path+"?"+s.Query, nil, func(name string) int {
				if served := rec.Find(name); served != nil {
					return len(served.Events)
				}
				return 0
			}, 30*time.Second)
		}()
	}
	wg.Wait()
	close(stopProbe)
	lag = <-probeDone
	served := map[string]bool{}
	for _, g := range results {
		s := rec.Find(g.stream)
		if s == nil {
			t.Fatalf("served unknown stream %q", g.stream)
		}
		served[g.stream] = true
		if len(g.frames) != len(s.Events) {
			t.Fatalf("%s: received %d of %d frames (ended with %s)", s.Name(), len(g.frames), len(s.Events), g.class)
		}
		sameFrames(t, s.Name(), s.Events, g.frames)
		for i := 1; i < len(g.frames); i++ {
			want := time.Duration(float64(s.Events[i].Offset-s.Events[i-1].Offset) / speed)
			gapErr = append(gapErr, abs(g.at[i].Sub(g.at[i-1])-want))
		}
		span := g.at[len(g.at)-1].Sub(g.at[0])
		wantSpan := time.Duration(float64(s.Events[len(s.Events)-1].Offset-s.Events[0].Offset) / speed)
		spanErr = append(spanErr, abs(span-wantSpan))
		if ct := g.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("%s: content type %q", s.Name(), ct)
		}
	}
	if len(served) != len(rec.Streams) {
		t.Errorf("served %d distinct streams of %d: %v", len(served), len(rec.Streams), served)
	}
	return gapErr, spanErr, lag
}

// synthetic builds an in-memory recording of streams on /stream.
func synthetic(streams ...*recording.Stored) *recording.Recording {
	base := time.Now()
	for i, s := range streams {
		s.Proxy = "p"
		if s.ConnID == "" {
			s.ConnID = "c" + string(rune('0'+i))
		}
		if s.Path == "" {
			s.Path = "/stream"
		}
		s.Group = recording.Group(s.Query)
		s.Start = base.Add(time.Duration(i) * time.Millisecond)
		if s.Status == 0 {
			s.Status = 200
		}
		if s.RespHeader == nil {
			s.RespHeader = http.Header{"Content-Type": {"text/event-stream"}, "Set-Cookie": {recording.RedactedValue}, "X-Origin": {"recorded"}}
		}
		for j := range s.Events {
			s.Events[j].Proxy, s.Events[j].ConnID, s.Events[j].Seq = s.Proxy, s.ConnID, j
		}
	}
	return &recording.Recording{Streams: streams}
}

// events makes n events with ids first.. every gap apart, starting at gap.
func events(first, n int, gap time.Duration) []session.RecEvent {
	var out []session.RecEvent
	for i := range n {
		out = append(out, session.RecEvent{
			Kind: session.RecKindEvent, ID: itoa(first + i), Type: "quote",
			Data: "d" + itoa(first+i), Offset: session.Seconds(time.Duration(i+1) * gap),
		})
	}
	return out
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestServeEndings: the recorded endings are reproduced as the client
// sees them (reset → ECONNRESET, cut → UNEXPECTED_EOF, clean → EOF), and
// --no-endings holds every stream open instead.
func TestServeEndings(t *testing.T) {
	mk := func(q, closedBy, how, class string) *recording.Stored {
		s := &recording.Stored{Events: events(1, 3, 10*time.Millisecond)}
		s.Query = q
		s.Ended, s.End, s.EndedBy, s.Ending, s.Class = true, session.Seconds(50*time.Millisecond), closedBy, how, class
		return s
	}
	rec := synthetic(
		mk("symbols=RST", session.EndedByUpstream, session.EndingRST, "ECONNRESET"),
		mk("symbols=CUT", session.EndedByProxy, session.EndingFIN, "UNEXPECTED_EOF"),
		mk("symbols=EOF", session.EndedByUpstream, session.EndingFIN, "EOF"),
		mk("symbols=CLIENT", session.EndedByClient, session.EndingFIN, ""),
	)
	srv, err := replay.Start("127.0.0.1:0", rec, replay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	for q, want := range map[string]string{"RST": "ECONNRESET", "CUT": "UNEXPECTED_EOF", "EOF": "EOF", "CLIENT": "TEST_TIMEOUT"} {
		g := fetch(t, srv.URL+"/stream?symbols="+q, nil, -1, 1500*time.Millisecond)
		if g.class != want || len(g.frames) != 3 {
			t.Errorf("%s: ended with %q after %d frames, want %q after 3", q, g.class, len(g.frames), want)
		}
		if q == "EOF" {
			if g.header.Get("Set-Cookie") != "" || g.header.Get("X-Origin") != "recorded" {
				t.Errorf("replayed headers: %v", g.header)
			}
			if took := g.at[len(g.at)-1].Sub(g.sent); took < 30*time.Millisecond {
				t.Errorf("3 frames 10ms apart arrived within %v", took)
			}
		}
	}
	held, err := replay.Start("127.0.0.1:0", rec, replay.Config{NoEndings: true})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Shutdown()
	g := fetch(t, held.URL+"/stream?symbols=RST", nil, -1, 400*time.Millisecond)
	if g.class != "TEST_TIMEOUT" || len(g.frames) != 3 {
		t.Errorf("--no-endings: ended with %q after %d frames, want held open", g.class, len(g.frames))
	}
}

// TestServeLoopAndResume: --loop keeps ids increasing across passes, and a
// Last-Event-ID this server delivered resumes right after the event that
// carried it, in any pass; an id it did not deliver (one copied from a
// recorded request) starts the stream where the recording's started.
func TestServeLoopAndResume(t *testing.T) {
	num := &recording.Stored{Events: events(1, 5, 5*time.Millisecond)}
	num.Query = "symbols=NUM"
	word := &recording.Stored{Events: []session.RecEvent{
		{Kind: session.RecKindEvent, ID: "a", Type: "message", Data: "A", Offset: session.Seconds(5 * time.Millisecond)},
		{Kind: session.RecKindComment, Comment: "hb", Offset: session.Seconds(6 * time.Millisecond)},
		{Kind: session.RecKindEvent, ID: "b", Type: "message", Data: "B", Offset: session.Seconds(10 * time.Millisecond)},
	}}
	word.Query = "symbols=WORD"
	slow := &recording.Stored{Events: events(1, 3, 100*time.Millisecond)}
	slow.Query = "symbols=SLOW"
	rec := synthetic(num, word, slow)
	srv, err := replay.Start("127.0.0.1:0", rec, replay.Config{Loop: true, Speed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ids := func(g got) string {
		var out []string
		for _, f := range g.frames {
			if f.Kind == 1 {
				out = append(out, f.ID+"="+string(f.Data))
			}
		}
		return strings.Join(out, " ")
	}
	g := fetch(t, srv.URL+"/stream?symbols=NUM", nil, 12, 5*time.Second)
	if want := "1=d1 2=d2 3=d3 4=d4 5=d5 6=d1 7=d2 8=d3 9=d4 10=d5 11=d1 12=d2"; ids(g) != want {
		t.Errorf("loop ids: %s\nwant %s", ids(g), want)
	}
	g = fetch(t, srv.URL+"/stream?symbols=NUM", http.Header{"Last-Event-Id": {"7"}}, 4, 5*time.Second)
	if want := "8=d3 9=d4 10=d5 11=d1"; ids(g) != want {
		t.Errorf("resume after 7: %s, want %s", ids(g), want)
	}
	// An id of the recording this server has not sent yet starts SLOW
	// from its recorded start; once sent, it resumes.
	g = fetch(t, srv.URL+"/stream?symbols=SLOW", http.Header{"Last-Event-Id": {"5"}}, 5, 5*time.Second)
	if want := "1=d1 2=d2 3=d3 4=d1 5=d2"; ids(g) != want {
		t.Errorf("id 5 not delivered yet: %s, want %s", ids(g), want)
	}
	// A resume in a later pass goes on at the recorded pace: the next event
	// comes its recorded gap (100 ms at speed 2: 50 ms) after the request,
	// not a whole pass (300 ms) later.
	g = fetch(t, srv.URL+"/stream?symbols=SLOW", http.Header{"Last-Event-Id": {"5"}}, 1, 5*time.Second)
	if want := "6=d3"; ids(g) != want {
		t.Errorf("resume after 5: %s, want %s", ids(g), want)
	} else if took := g.at[0].Sub(g.sent); took < 40*time.Millisecond || took > 150*time.Millisecond {
		t.Errorf("resume after 5: next event after %v, want about 50ms", took)
	}
	fetch(t, srv.URL+"/stream?symbols=WORD", nil, 6, 5*time.Second) // delivers a#1
	g = fetch(t, srv.URL+"/stream?symbols=WORD", http.Header{"Last-Event-Id": {"a#1"}}, 5, 5*time.Second)
	if want := "b#1=B a#2=A b#2=B"; ids(g) != want || g.frames[0].Kind != 2 {
		t.Errorf("resume after a#1: %s (first frame kind %v), want comment then %s", ids(g), g.frames[0].Kind, want)
	}

	// Without --loop: an id from the recording that this server never
	// sent starts the stream at the recorded start; a reconnect after it
	// sent the id continues from there.
	once, err := replay.Start("127.0.0.1:0", rec, replay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer once.Shutdown()
	g = fetch(t, once.URL+"/stream?symbols=NUM", http.Header{"Last-Event-Id": {"3"}}, 3, 5*time.Second)
	if want := "1=d1 2=d2 3=d3"; ids(g) != want {
		t.Errorf("recorded id never sent: %s, want %s", ids(g), want)
	}
	g = fetch(t, once.URL+"/stream?symbols=NUM", http.Header{"Last-Event-Id": {"3"}}, 2, 5*time.Second)
	if want := "4=d4 5=d5"; ids(g) != want {
		t.Errorf("resume without loop: %s, want %s", ids(g), want)
	}
	// Ids count for the replay run they were delivered to: run b's
	// clients start at the recorded start until run b got the id itself.
	runA, runB := http.Header{replay.HeaderRun: {"a"}}, http.Header{replay.HeaderRun: {"b"}}
	fetch(t, once.URL+"/stream?symbols=NUM", runA, 3, 5*time.Second)
	for _, tc := range []struct {
		h    http.Header
		want string
	}{{runB, "1=d1 2=d2"}, {runA, "4=d4 5=d5"}} {
		h := tc.h.Clone()
		h.Set("Last-Event-Id", "3")
		if g := fetch(t, once.URL+"/stream?symbols=NUM", h, 2, 5*time.Second); ids(g) != tc.want {
			t.Errorf("run %s, id 3: %s, want %s", h.Get(replay.HeaderRun), ids(g), tc.want)
		}
	}
}

// TestServeMatching: the stream a request names first, then the same group
// with round-robin, then the closest group, and 404 for a path never
// recorded.
func TestServeMatching(t *testing.T) {
	a1 := &recording.Stored{}
	a1.Query, a1.ConnID = "symbols=A,B", "ab1"
	a2 := &recording.Stored{}
	a2.Query, a2.ConnID = "symbols=b,a", "ab2"
	c := &recording.Stored{}
	c.Query, c.ConnID = "symbols=C", "c"
	other := &recording.Stored{}
	other.Path, other.ConnID = "/other", "other"
	rec := synthetic(a1, a2, c, other)
	for _, s := range rec.Streams {
		s.Ended, s.EndedBy, s.Ending, s.Class = true, session.EndedByUpstream, session.EndingFIN, "EOF"
	}
	srv, err := replay.Start("127.0.0.1:0", rec, replay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	var names []string
	for _, q := range []string{"A,B", "B,A", "A,B", "C", "A,B,C,D", "A,B,C,D", "Z", "Z", "Z"} {
		g := fetch(t, srv.URL+"/stream?symbols="+q, nil, -1, 5*time.Second)
		names = append(names, strings.TrimPrefix(g.stream, "p/"))
	}
	// Z matches nothing: every stream of the path ties, round-robin.
	if got, want := strings.Join(names, " "), "ab1 ab2 ab1 c ab1 ab2 ab1 ab2 c"; got != want {
		t.Errorf("matched %s, want %s", got, want)
	}
	// A request naming a recorded stream (replay run's header) gets that
	// one, whatever its symbols; a name that is not recorded, or recorded
	// under another path, falls back to matching.
	for _, tc := range []struct{ named, q, want string }{
		{"p/c", "A,B", "c"}, {"p/ab2", "Z", "ab2"}, {"p/ab2", "C", "ab2"}, {"p/nope", "C", "c"}, {"p/other", "C", "c"},
	} {
		g := fetch(t, srv.URL+"/stream?symbols="+tc.q, http.Header{replay.HeaderStream: {tc.named}}, -1, 5*time.Second)
		if got := strings.TrimPrefix(g.stream, "p/"); got != tc.want {
			t.Errorf("%s named, symbols %s: got %s, want %s", tc.named, tc.q, got, tc.want)
		}
	}
	g := fetch(t, srv.URL+"/never", nil, -1, 5*time.Second)
	if g.status != http.StatusNotFound {
		t.Errorf("unknown path: status %d", g.status)
	}
	if _, err := replay.NewServer(&recording.Recording{}, replay.Config{}); err == nil {
		t.Error("empty recording accepted")
	}
}
