package main

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServeHeartbeatsOnly: serve --message-rate 0 (issue 17) serves a
// stream of heartbeats and no events: the stream to test idle timeouts
// with.
func TestServeHeartbeatsOnly(t *testing.T) {
	url := startServeCLI(t, "--listen", "127.0.0.1:0", "--message-rate", "0", "--heartbeat", "50ms")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/stream?symbols=AAPL", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	heartbeats := 0
	deadline := time.Now().Add(10 * time.Second)
	for heartbeats < 3 && sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data:") || strings.HasPrefix(line, "event:") {
			t.Fatalf("an event from serve --message-rate 0: %q", line)
		}
		if line == ": heartbeat" {
			heartbeats++
		}
		if time.Now().After(deadline) {
			t.Fatal("no heartbeats")
		}
	}
	if heartbeats < 3 {
		t.Fatalf("stream ended after %d heartbeats: %v", heartbeats, sc.Err())
	}
}
