package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
)

// TestProxyCommandCapture: proxy --capture writes a pcap and attributes the
// reset its own fault sent on the client hop from the captured packet.
func TestProxyCommandCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("packet capture needs root (or CAP_NET_RAW); CI runs as root")
	}
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	dir := t.TempDir()
	out := filepath.Join(dir, "p.db")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr proxyTestBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", srv.URL, "--name", "p1",
			"--fault", "reset:hop=client,events=3", "--capture", "--out", out}, &stdout, &stderr)
	}()
	re := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
	capturing := regexp.MustCompile(`capturing TCP ports`)
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" || !capturing.MatchString(stdout.String()); {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not start capturing: %q %q", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}).Get(url + "/stream?symbols=AAPL")
	if err != nil {
		t.Fatal(err)
	}
	_, readErr := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if readErr == nil {
		t.Fatal("stream ended cleanly, want a reset")
	}
	time.Sleep(200 * time.Millisecond) // let the capture see the RST
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("proxy: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "p.pcap")); err != nil {
		t.Fatalf("no pcap: %v", err)
	}
	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	resets, _ := session.All[session.Reset](r, session.BucketResets)
	for _, x := range resets {
		if x.Confidence == session.ConfidenceHigh && x.Injected && x.Hop == session.HopClient && x.SenderRole == session.RoleProxy {
			return
		}
	}
	t.Fatalf("no injected client-hop reset attributed from packets among %+v\nstdout %s", resets, stdout.String())
}
