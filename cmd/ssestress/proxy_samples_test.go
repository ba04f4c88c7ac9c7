package main

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// TestProxyCommandSamples: the proxy writes its own resource samples (CPU
// included) into its session file, so a report can state its overhead.
func TestProxyCommandSamples(t *testing.T) {
	out := filepath.Join(t.TempDir(), "p.db")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr proxyTestBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:1",
			"--monitor-interval", "50ms", "--out", out}, &stdout, &stderr)
	}()
	re := regexp.MustCompile(`listening on http://127\.0\.0\.1:\d+`)
	for deadline := time.Now().Add(10 * time.Second); !re.MatchString(stdout.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line: %q %q", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
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
}
