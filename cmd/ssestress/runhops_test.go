package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssestress/ssestress/internal/session"
)

// TestRunViaProxyResetHalf is issue 3's end-to-end check, time-compressed:
// a flood of 20 connections through the in-process proxy with a reset
// fault on the upstream hop at toxicity 0.5 resets about half of the
// connections, and the summary and the session file show it.
func TestRunViaProxyResetHalf(t *testing.T) {
	out := filepath.Join(t.TempDir(), "via.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=20", "--rate=100",
		"--duration=3s", "--event-rate=1200", "--json", "--out="+out,
		"--fault", "reset:hop=upstream,after=1s,toxicity=0.5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sum session.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, stdout)
	}
	if sum.Errors["ECONNRESET"] == 0 {
		t.Fatalf("summary shows no ECONNRESET: %+v", sum)
	}
	if !strings.Contains(stderr, "--fault starts the in-process proxy") || !strings.Contains(stderr, "via in-process proxy http://127.0.0.1:") {
		t.Errorf("stderr does not say the proxy started:\n%s", stderr)
	}

	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	conns, _ := session.All[session.ConnRecord](r, session.BucketConns)
	first, reset := 0, 0
	for _, c := range conns {
		if c.Attempt != 0 {
			continue
		}
		first++
		if c.EndClass == "ECONNRESET" {
			reset++
		}
	}
	// Binomial(20, 0.5): outside 3..17 has probability below 0.03 %.
	if first != 20 || reset < 3 || reset > 17 {
		t.Fatalf("%d of %d first attempts reset, want about half", reset, first)
	}
	faults, _ := session.All[session.FaultEvent](r, session.BucketFaults)
	hopConns, _ := session.All[session.HopConn](r, session.BucketHopConns)
	upstreamFired := 0
	for _, f := range faults {
		if f.Hop == session.HopUpstream && f.FaultKind == "reset" && f.Proxy == "run-proxy" {
			upstreamFired++
		}
	}
	if upstreamFired < reset || len(hopConns) == 0 {
		t.Fatalf("%d upstream reset firings for %d resets; %d hop records", upstreamFired, reset, len(hopConns))
	}
	// The end-of-run line is the verdict's first sentence, counting client
	// errors as client errors.
	errs := sum.Errors["ECONNRESET"]
	want := fmt.Sprintf("ssestress run: Proxy run-proxy injected the resets, on its upstream hop (fault reset:hop=upstream,direction=down,toxicity=0.5,after=1s); "+
		"proxy run-proxy relayed them to the clients (--on-upstream-error=reset): %d of %d client errors (ECONNRESET %d), high confidence. (ssestress report %s)", errs, errs, errs, out)
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks the end line\n%s\nin:\n%s", want, stderr)
	}
}

// TestRunCapture: --capture writes a pcap that tcpdump reads, and the
// resets are attributed with packet evidence.
func TestRunCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("packet capture needs root (or CAP_NET_RAW); CI runs as root")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "cap.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	_, stderr, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=4", "--rate=100",
		"--duration=2s", "--event-rate=1200", "--out="+out, "--capture",
		"--fault", "reset:hop=client,after=500ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	pcap := filepath.Join(dir, "cap.pcap")
	if _, err := os.Stat(pcap); err != nil {
		t.Fatalf("no pcap: %v\n%s", err, stderr)
	}
	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	captures, _ := r.Captures()
	var info session.CaptureInfo
	if len(captures) == 1 {
		info = captures[0]
	}
	if len(captures) != 1 || info.Disabled != "" || info.Packets == 0 {
		t.Fatalf("capture info %+v", info)
	}
	resets, _ := session.All[session.Reset](r, session.BucketResets)
	r.Close()
	// The cache of the end-of-run attribution: one record per RST segment.
	high := 0
	for _, x := range resets {
		if x.Confidence == session.ConfidenceHigh && x.Injected && x.Hop == session.HopClient && x.SenderRole == session.RoleProxy {
			high++
		}
	}
	if !strings.Contains(stderr, "ssestress run: Proxy run-proxy injected the resets, on its client hop (fault reset:hop=client") {
		t.Errorf("stderr lacks the end line:\n%s", stderr)
	}
	if high < 4 {
		t.Fatalf("%d injected client-hop resets attributed from packets, want at least 4 (one per connection): %+v", high, resets)
	}
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		b, err := exec.Command(tcpdump, "-nr", pcap, "tcp[tcpflags] & tcp-rst != 0").CombinedOutput()
		if err != nil {
			t.Fatalf("tcpdump -r: %v\n%s", err, b)
		}
		if n := strings.Count(string(b), "[R"); n < high {
			t.Fatalf("tcpdump sees %d RSTs, attribution counted %d", n, high)
		}
	}
}

func TestRunHopFlagsBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fault", "explode"}, "run: --fault"},
		{[]string{"--via-proxy", "--on-upstream-error=ignore"}, `run: --on-upstream-error must be reset, eof or abort, not "ignore"`},
		{[]string{"--via-proxy", "--time-scale=0"}, "run: --time-scale must be positive"},
		{[]string{"--iface=lo"}, "run: --iface and --pcap need --capture"},
		{[]string{"--via-proxy", "--http2"}, "run: --http2 with --via-proxy"},
		{[]string{"--max-file-size=lots"}, `invalid size "lots"`},
	} {
		args := append([]string{"run", "--duration=1s", "--out=" + filepath.Join(t.TempDir(), "x.db")}, tc.args...)
		_, stderr, code := runCLI(t, ctx, args...)
		if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want one line containing %q", tc.args, code, stderr, tc.want)
		}
	}
}
