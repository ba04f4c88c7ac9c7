package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
)

// sentinel is what an existing file holds before a command is pointed at
// it: it must still hold it afterwards unless --force was given.
const sentinel = "an existing file: never to be destroyed\n"

// outputSources makes the inputs the output commands read: a short run's
// session file (with samples, so a report has graphs), a recording
// imported from jsonl, and the names of the graphs report --graphs writes.
func outputSources(t *testing.T, ctx context.Context, dir string) (sess, jsonl, recDB string, graphs []string) {
	t.Helper()
	sess = filepath.Join(dir, "src-run.db")
	if _, stderr, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=2", "--rate=20", "--duration=1s",
		"--monitor-interval=200ms", "--event-rate=600", "--out="+sess); code != 0 {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	jsonl, recDB = importedRecording(t, ctx, dir)
	gdir := filepath.Join(dir, "src-graphs")
	if _, stderr, code := runCLI(t, ctx, "report", sess, "--graphs", gdir); code != 0 {
		t.Fatalf("report --graphs: exit %d: %s", code, stderr)
	}
	entries, _ := os.ReadDir(gdir)
	for _, e := range entries {
		graphs = append(graphs, e.Name())
	}
	if len(graphs) == 0 {
		t.Fatal("report --graphs wrote no graph")
	}
	return sess, jsonl, recDB, graphs
}

// TestOutputsNeverOverwritten walks every file a command writes. Pointed
// at an existing file, each command leaves it as it was (exit 2, one line
// naming the flag); where --force is offered, it replaces the file with
// --force. Session files, pcaps and the MITM CA are never replaced, even
// with --force.
func TestOutputsNeverOverwritten(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*runTestTimeout)
	defer cancel()
	dir := t.TempDir()
	sess, jsonl, recDB, graphs := outputSources(t, ctx, dir)
	srv, err := feed.Start("127.0.0.1:0", feed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	dead := "http://" + closedPort(t)
	fresh := func(name string) string { return filepath.Join(t.TempDir(), name) }
	benchDir := t.TempDir()

	for _, tc := range []struct {
		name   string
		target string                       // the existing file
		args   func(target string) []string // the command line, without --force
		force  bool                         // --force is offered and replaces the file
		// refusedWithForce: --force is accepted but this file is still
		// never replaced.
		refusedWithForce bool
		long             bool // runs until interrupted: stopped once the file changed
		anyCode          bool // the refusal is a row's failure, not the exit code (bench)
	}{
		{name: "report -o", target: fresh("report.md"), force: true,
			args: func(p string) []string { return []string{"report", sess, "--format", "markdown", "-o", p} }},
		{name: "report --graphs", target: filepath.Join(t.TempDir(), "graphs", graphs[0]), force: true,
			args: func(p string) []string { return []string{"report", sess, "--graphs", filepath.Dir(p)} }},
		{name: "recordings export -o", target: fresh("export.jsonl"), force: true,
			args: func(p string) []string { return []string{"recordings", "export", recDB, "-o", p} }},
		{name: "export -o", target: fresh("errors.csv"), force: true,
			args: func(p string) []string { return []string{"export", sess, "errors", "-o", p} }},
		{name: "recordings import --out", target: fresh("imported.db"),
			args: func(p string) []string { return []string{"recordings", "import", jsonl, "--out", p} }},
		{name: "salvage --out", target: fresh("salvaged.db"), force: true,
			args: func(p string) []string { return []string{"salvage", sess, "--out", p} }},
		{name: "run --out", target: fresh("run.db"),
			args: func(p string) []string { return []string{"run", "--duration=1s", "--out", p} }},
		{name: "run --repeat summary", target: fresh("series-repeat.json"),
			args: func(p string) []string {
				return []string{"run", "--duration=1s", "--repeat=2", "--out", strings.TrimSuffix(p, "-repeat.json") + ".db"}
			}},
		{name: "run --capture --pcap", target: fresh("run.pcap"),
			args: func(p string) []string {
				return []string{"run", "--duration=1s", "--capture", "--pcap", p, "--out", fresh("run-capture.db")}
			}},
		{name: "replay run --out", target: fresh("replayed.db"),
			args: func(p string) []string {
				return []string{"replay", "run", "--recording", recDB, "--target", srv.URL, "--out", p}
			}},
		{name: "capture --pcap", target: fresh("capture.pcap"),
			args: func(p string) []string {
				return []string{"capture", "--iface", "lo", "--port", "1", "--duration", "1s", "--pcap", p}
			}},
		{name: "capture --out", target: fresh("capture.db"),
			args: func(p string) []string {
				return []string{"capture", "--iface", "lo", "--port", "1", "--duration", "1s", "--out", p, "--pcap", fresh("c.pcap")}
			}},
		{name: "serve --tls-cert-out", target: fresh("feed-cert.pem"), force: true, long: true,
			args: func(p string) []string {
				return []string{"serve", "--listen", "127.0.0.1:0", "--tls-self-signed", "--tls-cert-out", p}
			}},
		{name: "proxy --tls-cert-out", target: fresh("proxy-cert.pem"), force: true, long: true,
			args: func(p string) []string {
				return []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", dead, "--tls-self-signed", "--tls-cert-out", p, "--out", fresh("proxy-tls.db")}
			}},
		{name: "proxy --out", target: fresh("proxy.db"),
			args: func(p string) []string {
				return []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", dead, "--out", p}
			}},
		{name: "proxy --record", target: fresh("proxy-rec.db"),
			args: func(p string) []string {
				return []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", dead, "--record", p}
			}},
		{name: "proxy --capture --pcap", target: fresh("proxy.pcap"),
			args: func(p string) []string {
				return []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", dead, "--capture", "--pcap", p, "--out", fresh("proxy-cap.db")}
			}},
		{name: "proxy --mitm-ca-out", target: fresh("mitm-ca.pem"), refusedWithForce: true,
			args: func(p string) []string {
				return []string{"proxy", "--listen", "127.0.0.1:0", "--allow-host", "example.com:443", "--mitm", "--mitm-ca-out", p, "--out", fresh("mitm.db")}
			}},
		{name: "bisect -o", target: fresh("bisect.md"), force: true,
			args: func(p string) []string {
				return []string{"bisect", "--entry", "a=" + srv.URL, "--entry", "b=" + srv.URL, "--duration=1s", "--connections=2",
					"--monitor-interval=200ms", "--dir", filepath.Join(t.TempDir(), "bisect"), "-o", p}
			}},
		{name: "bench --temp-dir report file", target: filepath.Join(benchDir, "ssestress-bench-report-200000-v1.db"), anyCode: true,
			args: func(p string) []string {
				return []string{"bench", "--quick", "--only", "report", "--quiet", "--temp-dir", filepath.Dir(p)}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.MkdirAll(filepath.Dir(tc.target), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tc.target, []byte(sentinel), 0o644); err != nil {
				t.Fatal(err)
			}
			unchanged := func(when string) {
				t.Helper()
				if b, err := os.ReadFile(tc.target); err != nil || string(b) != sentinel {
					t.Fatalf("%s: %s was changed (%d bytes, %v)", when, tc.target, len(b), err)
				}
			}
			args := tc.args(tc.target)
			_, stderr, code := runCLI(t, ctx, args...)
			unchanged("without --force")
			if !tc.anyCode && (code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.target)) {
				t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line naming %s", args, code, stderr, tc.target)
			}
			if tc.refusedWithForce {
				_, stderr, code = runCLI(t, ctx, append(args, "--force")...)
				unchanged("with --force")
				if code != exitUsage {
					t.Errorf("with --force: exit %d, stderr %q; want exit 2", code, stderr)
				}
			}
			if !tc.force {
				return
			}
			args = append(args, "--force")
			if !tc.long {
				if _, stderr, code := runCLI(t, ctx, args...); code != 0 {
					t.Fatalf("%v: exit %d: %s", args, code, stderr)
				}
			} else {
				lctx, stop := context.WithCancel(ctx)
				done := make(chan int, 1)
				var errOut runTestBuffer
				go func() {
					var out runTestBuffer
					done <- exitCode(run(lctx, args, &out, &errOut), &errOut)
				}()
				waitFor(t, tc.target+" replaced", func() bool {
					b, _ := os.ReadFile(tc.target)
					return len(b) > 0 && string(b) != sentinel
				})
				stop()
				select {
				case c := <-done:
					if c != 0 {
						t.Fatalf("%v: exit %d: %s", args, c, errOut.String())
					}
				case <-time.After(runTestTimeout):
					t.Fatal("did not stop")
				}
			}
			if b, _ := os.ReadFile(tc.target); string(b) == sentinel || len(b) == 0 {
				t.Fatalf("--force did not replace %s", tc.target)
			}
			if entries, _ := os.ReadDir(filepath.Dir(tc.target)); len(entries) > 0 {
				for _, e := range entries {
					if strings.Contains(e.Name(), ".tmp-") {
						t.Errorf("left behind: %s", e.Name())
					}
				}
			}
		})
	}
}
