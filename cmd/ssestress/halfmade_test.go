package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNothingHalfMadeIsLeft: a command that fails before its work begins
// leaves no session file (or pcap) behind, and a bad value of --http,
// --api or --listen (here: an address already taken) exits 2 naming the
// flag.
func TestNothingHalfMadeIsLeft(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	dir := t.TempDir()
	rec := recordTestSession(t)
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		want  string
		files []string // must not exist afterwards
	}{
		{"run --http taken", []string{"run", "--duration=5s", "--connections=1", "--http", taken, "--out", filepath.Join(dir, "run.db")},
			2, "--http: listen tcp " + taken, []string{"run.db"}},
		{"replay run --http taken", []string{"replay", "run", "--recording", rec, "--target", "http://" + taken, "--http", taken, "--out", filepath.Join(dir, "replay.db")},
			2, "--http: listen tcp " + taken, []string{"replay.db"}},
		{"proxy --api taken", []string{"proxy", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--api", taken, "--out", filepath.Join(dir, "proxy.db")},
			2, "control API listen", []string{"proxy.db"}},
		{"proxy --listen taken", []string{"proxy", "--upstream", "http://127.0.0.1:1", "--listen", taken, "--out", filepath.Join(dir, "proxy2.db")},
			2, "proxy: ", []string{"proxy2.db"}},
		{"serve --listen taken", []string{"serve", "--listen", taken}, 2, "serve: --listen " + taken, nil},
		{"capture on no interface", []string{"capture", "--iface", "nosuchif0", "--out", filepath.Join(dir, "capture.db"), "--pcap", filepath.Join(dir, "capture.pcap")},
			1, "nosuchif0", []string{"capture.db", "capture.pcap"}},
		{"import of a bad file", []string{"recordings", "import", rec, "--out", filepath.Join(dir, "import.db")},
			4, "recordings import", []string{"import.db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
			defer cancel()
			_, stderr, code := runCLI(t, ctx, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.want)
			}
			for _, f := range tc.files {
				if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
					t.Errorf("%s left behind (%v)", f, err)
				}
			}
		})
	}
}
