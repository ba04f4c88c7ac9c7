package replay_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/recording/recordtest"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// TestMain runs the recording child of TestKilledRecordingReplays when the
// environment asks for it, and the tests otherwise.
func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(recordChild(path))
	}
	os.Exit(m.Run())
}

// clientSpec is one client of a recorded session.
type clientSpec struct {
	query string        // "symbols=..."
	start time.Duration // after the session starts
	hold  time.Duration // how long it stays connected
}

// recordSession records clients through a recording relay in front of a
// real embedded server, into a new session file, and returns its path.
func recordSession(t *testing.T, cfg feed.Config, clients []clientSpec) string {
	t.Helper()
	srv, err := feed.Start("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	path := filepath.Join(t.TempDir(), "recorded.db")
	w, err := session.Create(path, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := recording.New(w, "rec", recording.Options{})
	relay, err := recordtest.Start(srv.URL, rec)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(c.start)
			ctx, cancel := context.WithTimeout(context.Background(), c.hold)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", relay.URL+"/stream?"+c.query, nil)
			req.Header.Set("Accept", "text/event-stream")
			req.Header.Set("Authorization", "Bearer recorded-secret")
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			dec := sse.NewDecoder(resp.Body, 0)
			for {
				if _, err := dec.Next(); err != nil {
					return // the hold ended
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	relay.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// got is what a replay client received: frames with their arrival times,
// the recorded stream it was served, and the error that ended it.
type got struct {
	stream string
	status int
	header http.Header
	frames []sse.Frame
	at     []time.Time
	sent   time.Time
	class  string // "" when the client stopped reading itself
}

// fetch requests url and reads until it has want frames (want < 0: until
// the stream ends) or timeout passes.
func fetch(t *testing.T, url string, h http.Header, want int, timeout time.Duration) got {
	t.Helper()
	return fetchFor(t, url, h, func(string) int { return want }, timeout)
}

// fetchFor is fetch with the number of frames to read chosen from the name
// of the recorded stream the server says it replays.
func fetchFor(t *testing.T, url string, h http.Header, wantFor func(stream string) int, timeout time.Duration) got {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	var g got
	g.sent = time.Now()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	g.status, g.header, g.stream = resp.StatusCode, resp.Header, resp.Header.Get("X-Ssestress-Replay")
	dec := sse.NewDecoder(resp.Body, 0)
	want := wantFor(g.stream)
	for want < 0 || len(g.frames) < want {
		f, err := dec.Next()
		if err != nil {
			g.class = errclass.Classify(err)
			if ctx.Err() != nil {
				g.class = "TEST_TIMEOUT"
			}
			return g
		}
		g.frames = append(g.frames, f)
		g.at = append(g.at, time.Now())
	}
	return g
}

// sameFrames fails unless the client received exactly the recorded frames
// (the first n of them).
func sameFrames(t *testing.T, name string, rec []session.RecEvent, frames []sse.Frame) {
	t.Helper()
	if len(frames) > len(rec) {
		t.Fatalf("%s: %d frames received, %d recorded", name, len(frames), len(rec))
	}
	for i, f := range frames {
		e := rec[i]
		ok := false
		switch f.Kind {
		case sse.KindEvent:
			ok = e.Kind == session.RecKindEvent && f.ID == e.ID && f.Type == e.Type && string(f.Data) == e.Data
		case sse.KindComment:
			ok = e.Kind == session.RecKindComment && string(f.Comment) == e.Comment
		case sse.KindRetry:
			ok = e.Kind == session.RecKindRetry && f.Retry == e.Retry.D()
		}
		if !ok {
			t.Fatalf("%s: frame %d: received %v %q %q %q %v, recorded %+v", name, i, f.Kind, f.ID, f.Type, f.Data, f.Retry, e)
		}
	}
}

// percentile of a sorted copy of xs (p in 0..100).
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func fmtDurations(xs []time.Duration) string {
	return fmt.Sprintf("p50 %v p99 %v max %v (n=%d)", percentile(xs, 50), percentile(xs, 99), percentile(xs, 100), len(xs))
}
