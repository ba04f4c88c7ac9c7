package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
)

// runTestTimeout bounds each run in these tests (a loaded 2-core machine).
const runTestTimeout = 60 * time.Second

// runTestBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type runTestBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *runTestBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *runTestBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// runCLI runs the command line as main does and returns stdout, stderr and
// the exit code.
func runCLI(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut runTestBuffer
	err := run(ctx, args, &out, &errOut)
	code := exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestRunBadInput: every bad command line or config gives exactly one line
// on stderr naming the problem, a non-zero exit and no session file.
func TestRunBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	malformed := write("malformed.json", "{\n  \"connections\": 20,\n  \"duration\": \"1h\"\n")
	unknown := write("unknown.json", "{\n  \"connections\": 20,\n  \"symbols\": [\"AAPL\"]\n}")
	badValue := write("bad-value.json", `{"scenario": "flood", "connections": -3}`)
	existing := write("existing.db", "not mine")
	dead := closedPort(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	tooMany := lim.Max/2 + 1 // with the embedded server each takes two descriptors
	fdMsg, fdCode := fmt.Sprintf("%d connections need about %d file descriptors in this process but the limit is %d (the hard limit; raise it with ulimit -Hn or systemd's LimitNOFILE); or use fewer --connections, split the run with --shard, or give --target so the server runs in another process",
		tooMany, 2*tooMany+64, lim.Max), 1
	if tooMany > maxConnections { // an unlimited descriptor limit: the range check answers first
		fdMsg, fdCode = fmt.Sprintf("run: --connections: must be a positive integer up to %d, got %d", maxConnections, tooMany), 2
	}

	for _, tc := range []struct {
		name string
		args []string
		msg  string
		code int
	}{
		{"unknown flag", []string{"run", "--bogus"},
			"run: flag provided but not defined: -bogus (see ssestress run --help)", 2},
		{"bad duration", []string{"run", "--duration=forever"},
			`run: invalid value "forever" for flag -duration: invalid duration "forever" (use e.g. 30s, 1h, 72h, 3d) (see ssestress run --help)`, 2},
		{"negative duration", []string{"run", "--duration=-5s"},
			`run: invalid value "-5s" for flag -duration: invalid duration "-5s": negative (see ssestress run --help)`, 2},
		{"zero connections", []string{"run", "--connections=0"},
			"run: --connections: must be a positive integer up to 1000000, got 0", 2},
		{"connections not a number", []string{"run", "--connections=many"},
			`run: --connections: must be a positive integer, got "many"`, 2},
		{"unknown scenario", []string{"run", "--scenario=storm"},
			`run: --scenario: unknown scenario "storm" (use flood, long-running, churn, mixed)`, 2},
		{"bad rate", []string{"run", "--rate=5-1"},
			`run: --rate: invalid rate "5-1" (use connections per second, e.g. 5 or 1-5)`, 2},
		{"bad target", []string{"run", "--target=ftp://example.com/"},
			`run: --target: invalid URL "ftp://example.com/": scheme must be http or https`, 2},
		{"monitor interval too short", []string{"run", "--monitor-interval=10ms"},
			"run: --monitor-interval: must be at least 100ms, got 10ms", 2},
		{"bad header", []string{"run", "--header=NoColon"},
			"run: --header number 1 is not 'Name: value' (not shown: it may hold a credential)", 2},
		{"variable on flood", []string{"run", "--variable=5-10"},
			"run: variable applies to the mixed scenario only (scenario is flood)", 2},
		{"positional argument", []string{"run", "flood"},
			`run: unexpected argument "flood" (settings are flags, e.g. --duration=30s)`, 2},
		{"missing config", []string{"run", "--config=" + filepath.Join(dir, "none.json")},
			"run: --config: stat " + filepath.Join(dir, "none.json") + ": no such file or directory", 2},
		{"malformed config", []string{"run", "--config=" + malformed},
			"run: " + malformed + ": invalid JSON: unexpected end of file", 2},
		{"unknown field in config", []string{"run", "--config=" + unknown},
			"run: " + unknown + `:3: unknown key "symbols" (did you mean "symbol-groups"?)`, 2},
		{"bad value in config", []string{"run", "--config=" + badValue},
			"run: " + badValue + `:1: "connections": must be a positive integer up to 1000000, got -3`, 2},
		{"the config is read before the flags", []string{"run", "--config=" + badValue, "--connections=x"},
			"run: " + badValue + `:1: "connections": must be a positive integer up to 1000000, got -3`, 2},
		{"unreachable target", []string{"run", "--target=http://" + dead, "--duration=5s", "--out=" + filepath.Join(dir, "never.db")},
			"cannot reach target http://" + dead + ": dial tcp " + dead + ": connect: connection refused (ECONNREFUSED)", 1},
		{"existing session file", []string{"run", "--duration=1s", "--out=" + existing},
			existing + ": session file already exists (choose another --out, or remove it)", 2},
		{"more connections than descriptors", []string{"run", fmt.Sprintf("--connections=%d", tooMany), "--out=" + filepath.Join(dir, "never.db")},
			fdMsg, fdCode},
		{"unknown subcommand", []string{"runn"},
			`unknown subcommand "runn" (run 'ssestress help' for the list)`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
			defer cancel()
			stdout, stderr, code := runCLI(t, ctx, tc.args...)
			if want := "ssestress: " + tc.msg + "\n"; stderr != want {
				t.Errorf("stderr\n got: %q\nwant: %q", stderr, want)
			}
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
	if raw, _ := os.ReadFile(existing); string(raw) != "not mine" {
		t.Fatal("an existing file was overwritten")
	}
	if _, err := os.Stat(filepath.Join(dir, "never.db")); err == nil {
		t.Fatal("a failed run left a session file")
	}
}

// TestRunFloodEmbeddedJSON is the README command, scaled down: a flood
// against the embedded server with --json prints one summary object whose
// figures match the session file.
func TestRunFloodEmbeddedJSON(t *testing.T) {
	out := filepath.Join(t.TempDir(), "flood.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "run", "--scenario=flood", "--connections=6", "--rate=30",
		"--duration=1500ms", "--monitor-interval=200ms", "--event-rate=3000", "--json", "--out="+out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var keys map[string]any
	if err := json.Unmarshal([]byte(stdout), &keys); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	for _, k := range []string{"scenario", "duration_s", "clients", "attempts", "active_max", "events", "reconnects", "errors", "memory_peak_bytes", "session_file"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("summary lacks key %q: %s", k, stdout)
		}
	}
	var sum session.Summary
	json.Unmarshal([]byte(stdout), &sum)
	if sum.Scenario != "flood" || sum.Clients != 6 || sum.ActiveMax != 6 || sum.Events == 0 ||
		len(sum.Errors) != 0 || sum.MemoryPeakBytes == 0 || sum.SessionFile != out || sum.DurationS < 1.5 {
		t.Fatalf("summary %+v", sum)
	}
	if !strings.Contains(stderr, "ssestress run: flood, 6 connections opened at 30/s for 1.5s against http://127.0.0.1:") {
		t.Errorf("no start line on stderr:\n%s", stderr)
	}

	rep, err := inspectFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || rep.Summary == nil || rep.Summary.Events != sum.Events {
		t.Fatalf("file summary %+v, printed %+v", rep.Summary, sum)
	}
	if rep.Conns.Clients != 6 || rep.Conns.Open != 0 || rep.Conns.Events != sum.Events || rep.Counts[session.BucketSamples] < 5 {
		t.Fatalf("file holds %+v", rep)
	}
	if rep.Counts[session.BucketTopology] != 1 || rep.Run.Scenario != "flood" || !strings.HasPrefix(rep.Run.Target, "http://127.0.0.1:") {
		t.Fatalf("run info %+v, counts %v", rep.Run, rep.Counts)
	}
	var cfg runConfig
	if err := json.Unmarshal(rep.Run.Config, &cfg); err != nil || cfg.Connections != 6 || cfg.EventRate != "3000" {
		t.Fatalf("stored config %s (%v)", rep.Run.Config, err)
	}
}

// TestRunConfigFileAndFlags: a config file in the seed's format against a
// --target; flags override it; the summary table is printed.
func TestRunConfigFileAndFlags(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 3000, Max: 3000}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "custom-test.json")
	os.WriteFile(cfgPath, []byte(`{
  "scenario": "long-running",
  "target": "`+srv.URL+`",
  "connections": 50,
  "duration": "72h",
  "symbolGroups": [["AAPL", "MSFT"], ["AMZN", "META"]],
  "monitorInterval": "200ms",
  "rate": "40"
}`), 0o644)
	out := filepath.Join(dir, "lr.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "run", "--config="+cfgPath, "--connections=4", "--duration=1s", "--out="+out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"│ long-running │", "clients             │ 4", "max active          │ 4", "errors              │ 0", "session file: " + out} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	conns, _ := session.All[session.ConnRecord](r, session.BucketConns)
	groups := map[string]int{}
	for _, c := range conns {
		groups[c.Group]++
		if c.Events == 0 || !strings.HasPrefix(c.URL, srv.URL+"/stream?symbols=") {
			t.Errorf("conn %+v", c)
		}
	}
	if len(conns) != 4 || groups["AAPL,MSFT"] != 2 || groups["AMZN,META"] != 2 {
		t.Fatalf("%d conns, groups %v", len(conns), groups)
	}
	topo, _ := session.All[session.Endpoint](r, session.BucketTopology)
	// The run only sends to --target: a target, which another file may
	// show is a proxy.
	if len(topo) != 1 || topo[0].Role != session.RoleTarget || topo[0].Addr != srv.Addr {
		t.Fatalf("topology %+v", topo)
	}
}

// TestRunInterrupted: cancelling the context (what SIGINT does through
// main) ends the run gracefully: summary printed, file complete, exit 0.
func TestRunInterrupted(t *testing.T) {
	out := filepath.Join(t.TempDir(), "int.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Bounded: interrupt once the file exists and a second has passed.
		deadline := time.Now().Add(runTestTimeout)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(out); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Second)
		cancel()
	}()
	start := time.Now()
	stdout, stderr, code := runCLI(t, ctx, "run", "--scenario=churn", "--duration=1h", "--rate=20", "--json", "--out="+out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if time.Since(start) > runTestTimeout {
		t.Fatal("the interrupt did not stop the run")
	}
	var sum session.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || !sum.Interrupted || sum.Clients == 0 || len(sum.Errors) != 0 {
		t.Fatalf("summary %s (%v)", stdout, err)
	}
	rep, err := inspectFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || rep.Summary == nil || !rep.Summary.Interrupted || rep.Conns.Open != 0 {
		t.Fatalf("after interrupt the file holds %+v", rep)
	}
}

// TestKill9LeavesReadableFile builds the binary, starts a run on the
// embedded default, kills it with SIGKILL about 2 s in, and reads the file
// with inspect.
func TestKill9LeavesReadableFile(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*runTestTimeout)
	defer cancel()
	bin := buildBinary(t, ctx, dir)
	out := filepath.Join(dir, "killed.db")
	child := exec.CommandContext(ctx, bin, "run", "--monitor-interval=200ms", "--out="+out)
	child.Dir = dir
	stderr, err := child.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ssestress run:") {
				started <- sc.Text()
			}
		}
	}()
	select {
	case line := <-started:
		t.Log(line)
	case <-ctx.Done():
		child.Process.Kill()
		t.Fatal("the child never started its run")
	}
	time.Sleep(2 * time.Second)
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = child.Wait()
	if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, not by SIGKILL", err)
	}

	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(); err != nil {
		t.Fatalf("consistency check: %v", err)
	}
	r.Close()
	rep, err := inspectFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Run == nil || rep.Complete || rep.Summary != nil {
		t.Fatalf("a killed run should have run info and no end: %+v", rep)
	}
	if rep.Conns.Clients == 0 || rep.Conns.Events == 0 || rep.Counts[session.BucketSamples] == 0 || rep.Conns.Open == 0 {
		t.Fatalf("killed file holds %+v, counts %v", rep.Conns, rep.Counts)
	}
	stdout, stderrText, code := runCLI(t, context.Background(), "inspect", out)
	if code != 0 || !strings.Contains(stdout, "not recorded: the run was killed") || !strings.Contains(stdout, "summary       none") {
		t.Fatalf("inspect exit %d, stderr %q:\n%s", code, stderrText, stdout)
	}
	t.Logf("after kill -9: %d connections, %d events, %d samples", rep.Conns.Clients, rep.Conns.Events, rep.Counts[session.BucketSamples])
}

// TestInspectRejectsOtherFiles: a file that is not a session file, or
// none at all, is one line and exit 4 (1 for a missing file), and the
// file is left untouched.
func TestInspectRejectsOtherFiles(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello, this is not bbolt"), 0o644)
	big := filepath.Join(dir, "big.bin")
	os.WriteFile(big, bytes.Repeat([]byte("not a bbolt page "), 4096), 0o644)
	for _, tc := range []struct {
		args []string
		msg  string
		code int
	}{
		{[]string{"inspect", text}, text + " is not an ssestress session file (too short to be a bbolt file)", 4},
		{[]string{"inspect", big}, big + " is not an ssestress session file (not a bbolt database)", 4},
		{[]string{"inspect", filepath.Join(dir, "none.db")}, "stat " + filepath.Join(dir, "none.db") + ": no such file or directory", 1},
		{[]string{"inspect"}, "inspect: no session file given (usage: ssestress inspect FILE [--json])", 2},
		{[]string{"inspect", "a.db", "b.db"}, `inspect: one session file only, got "a.db" and "b.db"`, 2},
	} {
		stdout, stderr, code := runCLI(t, context.Background(), tc.args...)
		if want := "ssestress: " + tc.msg + "\n"; stderr != want || code != tc.code || stdout != "" {
			t.Errorf("%v: exit %d, stderr %q (want %q), stdout %q", tc.args, code, stderr, want, stdout)
		}
	}
	if raw, _ := os.ReadFile(text); string(raw) != "hello, this is not bbolt" {
		t.Fatal("inspect changed the file")
	}
}
