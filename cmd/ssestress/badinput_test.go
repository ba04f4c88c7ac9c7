package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ssestress/ssestress/internal/session"
)

// damagedFiles makes, in dir, one file of each kind a session-file reader
// must refuse, and returns their paths by kind.
func damagedFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	put := func(kind string, raw []byte) {
		p := filepath.Join(dir, kind+".db")
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		paths[kind] = p
	}
	// A real session file, large enough to span many pages.
	good := filepath.Join(dir, "good.db")
	w, err := session.Create(good, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	w.PutMeta(session.MetaRun, session.RunInfo{Tool: "ssestress test", Command: "run", Scenario: "flood", StartedAt: start})
	for i := range 3000 {
		w.Put(session.ErrorRecord{Time: start, ClientID: fmt.Sprintf("c%04d", i), Class: "ECONNRESET", Message: "read: connection reset by peer"})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	put("truncated", raw[:len(raw)/2])
	put("truncated-header", raw[:100])
	put("empty", nil)
	put("text", []byte("these are notes, not a session file\n"))
	put("zeros", make([]byte, 64<<10))

	// bbolt files ssestress did not write, or a newer one did.
	boltFile := func(kind string, fill func(tx *bolt.Tx) error) {
		p := filepath.Join(dir, kind+".db")
		db, err := bolt.Open(p, 0o644, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fill); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		paths[kind] = p
	}
	sessionBuckets := func(tx *bolt.Tx, schema string) error {
		for _, b := range session.Buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(session.BucketMeta)).Put([]byte(session.MetaSchema), []byte(schema))
	}
	boltFile("newer", func(tx *bolt.Tx) error { return sessionBuckets(tx, strconv.Itoa(session.SchemaVersion+1)) })
	boltFile("foreign", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("users"))
		if err != nil {
			return err
		}
		return b.Put([]byte("alice"), []byte("admin"))
	})
	dirPath := filepath.Join(dir, "directory.db")
	if err := os.Mkdir(dirPath, 0o755); err != nil {
		t.Fatal(err)
	}
	paths["directory"] = dirPath
	return paths
}

// fileState is what a reader must leave unchanged.
type fileState struct {
	raw   []byte
	mtime time.Time
	mode  os.FileMode
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if !st.IsDir() {
		if raw, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	return fileState{raw: raw, mtime: st.ModTime(), mode: st.Mode()}
}

// TestDamagedSessionFiles: inspect, report, recordings ls and replay serve
// given a truncated file, a file from a newer schema, a file that is not
// bbolt at all (empty, text, zeros, a directory), a bbolt file of another
// program, each print exactly one line naming the file and what is
// wrong, exit 4 (an input file damaged or not ours), print nothing
// on stdout, and leave the file's bytes, mode and mtime unchanged and no
// other file beside it.
func TestDamagedSessionFiles(t *testing.T) {
	dir := t.TempDir()
	files := damagedFiles(t, dir)
	// Give every file an mtime in the past, so that a write within the
	// test's second cannot hide behind the clock's resolution.
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, p := range files {
		if err := os.Chtimes(p, past, past); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string]fileState{}
	for kind, p := range files {
		before[kind] = stateOf(t, p)
	}
	listing := func() []string {
		names, _ := filepath.Glob(filepath.Join(dir, "*"))
		return names
	}
	namesBefore := listing()

	// The line each kind of file gets (after "ssestress: " and the
	// command's prefix); for a truncated file the size its header claims
	// follows, a number larger than the file.
	want := map[string]string{
		"truncated":        "%s is truncated (shorter than its header says); it cannot be read safely: " + strconv.Itoa(len(before["truncated"].raw)) + " bytes, header says ",
		"truncated-header": "%s is truncated (shorter than its header says); it cannot be read safely: 100 bytes, header says ",
		"empty":            "%s is not an ssestress session file (too short to be a bbolt file)\n",
		"text":             "%s is not an ssestress session file (too short to be a bbolt file)\n",
		"zeros":            "%s is not an ssestress session file (not a bbolt database)\n",
		"directory":        "%s is not an ssestress session file (it is a directory)\n",
		"newer": fmt.Sprintf("%%s was written by a newer ssestress (schema version too new): version %d, this ssestress reads up to %d\n",
			session.SchemaVersion+1, session.SchemaVersion),
		"foreign": "%s is not an ssestress session file (no meta bucket)\n",
	}
	commands := []struct {
		name   string
		args   func(path string) []string
		prefix string // before the file's message
	}{
		{"inspect", func(p string) []string { return []string{"inspect", p} }, ""},
		{"report", func(p string) []string { return []string{"report", p} }, "report: "},
		{"recordings ls", func(p string) []string { return []string{"recordings", "ls", p} }, ""},
		{"replay serve", func(p string) []string {
			return []string{"replay", "serve", "--listen", "127.0.0.1:0", "--recording", p}
		}, ""},
	}
	for _, c := range commands {
		for kind, p := range files {
			t.Run(c.name+"/"+kind, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
				defer cancel()
				stdout, stderr, code := runCLI(t, ctx, c.args(p)...)
				line := "ssestress: " + c.prefix + fmt.Sprintf(want[kind], p)
				if code != 4 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, line) || stdout != "" {
					t.Errorf("exit %d, stdout %q, stderr\n got: %q\nwant: %q", code, stdout, stderr, line)
				}
				if strings.HasPrefix(kind, "truncated") {
					claim := strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(stderr, line)), " (ssestress salvage copies what can still be read)")
					claimed, err := strconv.Atoi(claim)
					if err != nil || claimed <= len(before[kind].raw) {
						t.Errorf("the header's size %q is not a number above the file's %d bytes", strings.TrimPrefix(stderr, line), len(before[kind].raw))
					}
				}
				after := stateOf(t, p)
				b := before[kind]
				if !bytes.Equal(after.raw, b.raw) || !after.mtime.Equal(b.mtime) || after.mode != b.mode {
					t.Errorf("the file changed: %d → %d bytes, mtime %v → %v, mode %v → %v",
						len(b.raw), len(after.raw), b.mtime, after.mtime, b.mode, after.mode)
				}
			})
		}
	}
	if got := listing(); fmt.Sprint(got) != fmt.Sprint(namesBefore) {
		t.Errorf("files appeared or vanished beside the damaged ones:\n before %v\n after  %v", namesBefore, got)
	}
}

// TestBadInputAcrossCommands fills the gaps the per-command tests
// (TestRunBadInput, TestTailBadInput, TestReportBadInput, TestBisectBadInput,
// TestCaptureBadInput, TestRequestFlagErrors, TestRecordingsCommands,
// TestProxyCommandErrors, TestInspectRejectsOtherFiles) leave: every
// subcommand's unknown flag, missing or extra arguments, config files that
// are not JSON objects or hold the wrong types, and files of the wrong kind
// where a command reads one. Each gives exactly this one line on stderr
// (naming the flag, field with file:line, or file), the exit code (2 for a
// bad command line, 1 for a file or a failure) and nothing on stdout.
func TestBadInputAcrossCommands(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	array := write("array.json", "[1, 2]")
	binary := write("binary.json", "\x00\xff\xfe not json")
	empty := write("empty.json", "")
	twoObjects := write("two.json", "{} {}")
	stringCount := write("string-count.json", `{"connections": "20"}`)
	hugeCount := write("huge-count.json", `{"connections": 1e99}`)
	duplicate := write("duplicate.json", "{\n  \"duration\": \"1h\",\n  \"duration\": \"2h\"\n}")
	badGroup := write("bad-group.json", "{\n  \"scenario\": \"flood\",\n  \"symbolGroups\": [[\"AAPL\"], 5]\n}")
	badInterval := write("bad-interval.json", "{\n  \"monitorInterval\": \"soon\"\n}")
	configDir := filepath.Join(dir, "config.d")
	os.Mkdir(configDir, 0o755)
	notes := write("notes.db", "these are notes, not a session file\n")
	prodCSV := write("prod.csv", "time,class\n2025-03-04T05:06:09Z,ECONNRESET\n")
	good := filepath.Join(dir, "good.db")
	w, err := session.Create(good, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.PutMeta(session.MetaRun, session.RunInfo{Tool: "ssestress test", Command: "run", StartedAt: time.Now()})
	w.Close()
	missing := filepath.Join(dir, "missing.db")

	for _, tc := range []struct {
		args []string
		msg  string
		code int
	}{
		// Config files: where in the file, and what is wrong.
		{[]string{"run", "--config=" + array}, "run: " + array + ":1: the config must be a JSON object {...}", 2},
		{[]string{"run", "--config=" + binary}, "run: " + binary + ":1: invalid JSON: invalid character '\\x00' looking for beginning of value", 2},
		{[]string{"run", "--config=" + empty}, "run: " + empty + ": invalid JSON: unexpected end of file", 2},
		{[]string{"run", "--config=" + twoObjects}, "run: " + twoObjects + ":1: unexpected data after the JSON object", 2},
		{[]string{"run", "--config=" + stringCount}, "run: " + stringCount + `:1: "connections": must be an integer, got "20"`, 2},
		{[]string{"run", "--config=" + hugeCount}, "run: " + hugeCount + `:1: "connections": must be an integer, got 1e99`, 2},
		{[]string{"run", "--config=" + duplicate}, "run: " + duplicate + `:3: "duration" given twice`, 2},
		{[]string{"run", "--config=" + badGroup}, "run: " + badGroup + `:3: "symbolGroups": group 2: symbols must be an array of strings or "A,B", got 5`, 2},
		{[]string{"run", "--config=" + badInterval}, "run: " + badInterval + `:2: "monitorInterval": invalid duration "soon" (use e.g. 30s, 1h, 72h, 3d)`, 2},
		{[]string{"run", "--config=" + configDir}, "run: --config: " + configDir + " is a directory, not a regular file", 2},
		// run flags the run test does not cover.
		{[]string{"run", "--duration=0s"}, "run: --duration: must be positive", 2},
		{[]string{"run", "--churn-rate=-1"}, "run: --churn-rate: must be a positive number (per minute), got -1", 2},
		{[]string{"run", "--event-rate=abc"}, `run: --event-rate: invalid message rate "abc" (use messages per minute, e.g. 600 or 100-1000)`, 2},
		{[]string{"run", "--target=http://"}, `run: --target: invalid URL "http://": no host`, 2},
		{[]string{"run", "--connections=99999999999999999999"}, `run: --connections: must be a positive integer, got "99999999999999999999"`, 2},
		{[]string{"run", "--backoff=-1s"}, `run: invalid value "-1s" for flag -backoff: invalid duration "-1s": negative (see ssestress run --help)`, 2},
		// serve.
		{[]string{"serve", "--bogus"}, "serve: flag provided but not defined: -bogus (see ssestress serve --help)", 2},
		{[]string{"serve", "extra"}, `serve: unexpected argument "extra" (see ssestress serve --help)`, 2},
		{[]string{"serve", "--event-rate=abc"}, `serve: --event-rate: invalid message rate "abc" (use messages per minute, e.g. 600 or 100-1000)`, 2},
		{[]string{"serve", "--history=0"}, "serve: --history must be positive", 2},
		{[]string{"serve", "--group-expiry=0s"}, "serve: --group-expiry must be positive", 2},
		{[]string{"serve", "--event-rate=NaN"}, `serve: --event-rate: invalid message rate "NaN" (use messages per minute, e.g. 600 or 100-1000)`, 2},
		{[]string{"serve", "--heartbeat=often"}, `serve: invalid value "often" for flag -heartbeat: invalid duration "often" (use e.g. 30s, 1h, 72h, 3d) (see ssestress serve --help)`, 2},
		{[]string{"serve", "--listen=nonsense"}, "serve: --listen nonsense: embedded server: listen tcp: address nonsense: missing port in address", 2},
		// inspect, report.
		{[]string{"inspect", "--bogus", good}, "inspect: flag provided but not defined: -bogus (see ssestress inspect --help)", 2},
		{[]string{"report", "--baseline", notes, good}, "report: --baseline: " + notes + " is not an ssestress session file (too short to be a bbolt file)", 4},
		{[]string{"report", "--baseline", good, missing}, "report: stat " + missing + ": no such file or directory", 1},
		{[]string{"report", good, "--production", filepath.Join(dir, "none.csv")}, "report: --production: stat " + filepath.Join(dir, "none.csv") + ": no such file or directory", 1},
		{[]string{"report", good, "--production", prodCSV, "--production-time", "when"}, `report: production errors: prod.csv has no column "when" (--production-time)`, 1},
		// recordings, replay.
		{[]string{"recordings"}, "recordings: give ls, show, export or import", 2},
		{[]string{"recordings", "ls", "--bogus"}, "recordings ls: flag provided but not defined: -bogus (see ssestress recordings ls --help)", 2},
		{[]string{"recordings", "ls", good, good}, `recordings ls: one file only, got "` + good + `" and "` + good + `"`, 2},
		{[]string{"recordings", "ls", good}, good + " holds no recorded streams (record with: ssestress proxy --record FILE)", 1},
		{[]string{"recordings", "import", notes, "--out", filepath.Join(dir, "imported.db")},
			"recordings import: " + notes + ": bad recording jsonl: line 1: invalid character 'h' in literal true (expecting 'r')", 4},
		{[]string{"replay"}, "replay: give serve or run", 2},
		{[]string{"replay", "serve", "--bogus"}, "replay serve: flag provided but not defined: -bogus (see ssestress replay serve --help)", 2},
		{[]string{"replay", "serve", "--recording", good, "extra"}, `replay serve: unexpected argument "extra" (the file goes after --recording)`, 2},
		{[]string{"replay", "serve", "--recording", good}, good + " holds no recorded streams (record with: ssestress proxy --record FILE)", 1},
		{[]string{"replay", "run"}, "replay run: --recording FILE is required", 2},
		// capture, bisect, completion, tail, the command itself.
		{[]string{"capture", "analyze", "--bogus"}, "capture analyze: flag provided but not defined: -bogus (see ssestress capture analyze --help)", 2},
		{[]string{"bisect", "--entry", "a=http://127.0.0.1:1", "--entry", "b=http://127.0.0.1:2", "--bogus"}, "bisect: flag provided but not defined: -bogus (see ssestress bisect --help)", 2},
		{[]string{"bisect", "--entry", "a=http://127.0.0.1:1", "--entry", "b=http://127.0.0.1:2", "--repeat=3"}, "bisect: --repeat: does not apply: bisect runs once against each entry point", 2},
		{[]string{"completion", "bash", "zsh"}, `completion: one shell only, got "bash" and "zsh"`, 2},
		{[]string{"completion", "--bogus"}, "completion: flag provided but not defined: -bogus (see ssestress completion --help)", 2},
		{[]string{"tail", "--count=x", "http://127.0.0.1:1/"}, `tail: invalid value "x" for flag -count: parse error (see ssestress tail --help)`, 2},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
			defer cancel()
			stdout, stderr, code := runCLI(t, ctx, tc.args...)
			if want := "ssestress: " + tc.msg + "\n"; stderr != want {
				t.Errorf("stderr\n got: %q\nwant: %q", stderr, want)
			}
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			// A command of subcommands given none prints its usage too.
			usage := len(tc.args) == 1 && (tc.args[0] == "recordings" || tc.args[0] == "replay")
			if (stdout != "") != usage || usage && !strings.HasPrefix(stdout, "Usage: ssestress "+tc.args[0]) {
				t.Errorf("stdout %q", stdout)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
				t.Errorf("a stack trace: %s", stderr)
			}
		})
	}
	// No command left a file behind.
	for _, name := range []string{"imported.db", "none.csv"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s was created", name)
		}
	}

	// No subcommand: the usage on stdout, one line on stderr, exit 2.
	stdout, stderr, code := runCLI(t, context.Background())
	if code != 2 || stderr != "ssestress: no subcommand given\n" || !strings.Contains(stdout, "Subcommands:") {
		t.Errorf("no subcommand: exit %d, stderr %q, stdout %q", code, stderr, stdout)
	}
}
