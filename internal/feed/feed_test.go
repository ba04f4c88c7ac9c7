package feed

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/sse"
)

func startFeed(t *testing.T, cfg Config) *Running {
	t.Helper()
	srv, err := Start("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// open connects to the feed and returns a decoder over the stream.
func open(t *testing.T, ctx context.Context, url, lastID string) (*sse.Decoder, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return sse.NewDecoder(resp.Body, 0), resp
}

func nextEvent(t *testing.T, d *sse.Decoder) sse.Frame {
	t.Helper()
	for {
		f, err := d.Next()
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		if f.Kind == sse.KindEvent {
			return f
		}
	}
}

func TestResumeWithoutLossOrDuplicates(t *testing.T) {
	srv := startFeed(t, Config{Rate: Rate{6000, 6000}, Heartbeat: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := srv.URL + "/stream?symbols=msft,aapl"

	ctx1, cut := context.WithCancel(ctx)
	d, _ := open(t, ctx1, url, "")
	var last uint64
	for i := 0; i < 20; i++ {
		f := nextEvent(t, d)
		id, err := strconv.ParseUint(f.ID, 10, 64)
		if err != nil || f.Type != "quote" {
			t.Fatalf("event %+v", f)
		}
		if last != 0 && id != last+1 {
			t.Fatalf("ids jump %d → %d", last, id)
		}
		last = id
	}
	cut() // the client goes away; its group's generator pauses
	time.Sleep(100 * time.Millisecond)

	d2, _ := open(t, ctx, srv.URL+"/stream?symbols=AAPL,MSFT", strconv.FormatUint(last, 10))
	for i := 0; i < 30; i++ {
		f := nextEvent(t, d2)
		id, _ := strconv.ParseUint(f.ID, 10, 64)
		if id != last+1 {
			t.Fatalf("after resume from %d got %d: loss or duplicate", last, id)
		}
		last = id
	}
}

func TestRetryHeartbeatAndRate(t *testing.T) {
	srv := startFeed(t, Config{Rate: Rate{1200, 1200}, Heartbeat: 50 * time.Millisecond, Retry: 1500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, _ := open(t, ctx, srv.URL+"/stream", "")
	f, err := d.Next()
	if err != nil || f.Kind != sse.KindRetry || f.Retry != 1500*time.Millisecond {
		t.Fatalf("first frame %+v %v, want retry 1.5s", f, err)
	}
	start := time.Now()
	events, comments := 0, 0
	for time.Since(start) < time.Second {
		f, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch f.Kind {
		case sse.KindEvent:
			events++
		case sse.KindComment:
			comments++
		}
	}
	// 1200/min = 20/s; heartbeats every 50 ms. Generous bounds for a loaded machine.
	if events < 10 || events > 30 {
		t.Errorf("events in 1 s = %d, want about 20", events)
	}
	if comments < 5 {
		t.Errorf("heartbeats in 1 s = %d, want about 20", comments)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	srv, err := Start("127.0.0.1:0", Config{Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp := open(t, ctx, srv.URL+"/stream", "")
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); done <- err }()
	srv.Shutdown()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("stream not ended by Shutdown")
	}
	if st := srv.Stats(); st.Active != 0 || st.Opened != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"600": {600, 600}, "100-1000": {100, 1000}, " 5 ": {5, 5}, "0": NoMessages, " 0.0 ": NoMessages} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v", in, got, err)
		}
	}
	if s := NoMessages.String(); s != "0" {
		t.Errorf("NoMessages prints as %q", s)
	}
	for _, bad := range []string{"", "-5", "10-5", "x", "5-x", "0-5", "NaN", "Inf", "5-Inf", "5-NaN"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}

func TestGroupKey(t *testing.T) {
	for in, want := range map[string]string{"": "AAPL,GOOG,MSFT", "msft, aapl": "AAPL,MSFT", ",,": "AAPL,GOOG,MSFT"} {
		if got := groupKey(in); got != want {
			t.Errorf("groupKey(%q) = %q, want %q", in, got, want)
		}
	}
}
