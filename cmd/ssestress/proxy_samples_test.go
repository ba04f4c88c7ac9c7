package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
)

// TestProxyCommandSamples: the proxy writes its own resource samples (CPU
// included) into its session file, so a report can state its overhead, and
// its client connections open and the events it forwarded, which the
// report's graphs draw: one stream held open reads 1, its events grow.
func TestProxyCommandSamples(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	out := filepath.Join(t.TempDir(), "p.db")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr proxyTestBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", srv.URL,
			"--monitor-interval", "50ms", "--out", out}, &stdout, &stderr)
	}()
	re := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(10 * time.Second); !re.MatchString(stdout.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line: %q %q", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// One stream through the proxy, held for several samples.
	reqCtx, cancelReq := context.WithTimeout(ctx, 10*time.Second)
	defer cancelReq()
	req, _ := http.NewRequestWithContext(reqCtx, "GET", re.FindStringSubmatch(stdout.String())[1]+"/stream?symbols=AAPL", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	resp.Body.Close()
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("proxy: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not stop")
	}
	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	samples, _ := session.All[session.Sample](r, session.BucketSamples)
	if len(samples) < 2 {
		t.Fatalf("%d samples in 300 ms at 50 ms", len(samples))
	}
	last := samples[len(samples)-1]
	if last.CPUUser+last.CPUSystem <= 0 || last.RSS == 0 || last.Goroutines == 0 {
		t.Fatalf("sample without the proxy's own figures: %+v", last)
	}
	held, events := 0, int64(0)
	for _, s := range samples {
		if s.Active == 1 {
			held++
		}
		if s.Events < events {
			t.Errorf("events forwarded went down: %d after %d", s.Events, events)
		}
		events = s.Events
	}
	if held < 2 || events == 0 {
		t.Errorf("%d of %d samples saw the one stream open, %d events forwarded: %+v", held, len(samples), events, samples)
	}
}
