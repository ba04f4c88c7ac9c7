package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/session/damagetest"
)

// readerCommands are every subcommand that reads a session file, as
// argument lists for a file.
func readerCommands(pcap string) []struct {
	name string
	args func(path string) []string
} {
	cmds := []struct {
		name string
		args func(path string) []string
	}{
		{"inspect", func(p string) []string { return []string{"inspect", p} }},
		{"inspect --json", func(p string) []string { return []string{"inspect", "--json", p} }},
		{"recordings ls", func(p string) []string { return []string{"recordings", "ls", p} }},
		{"recordings show", func(p string) []string { return []string{"recordings", "show", p} }},
		{"recordings export", func(p string) []string { return []string{"recordings", "export", p, "--format", "jsonl"} }},
		{"replay serve", func(p string) []string {
			return []string{"replay", "serve", "--listen", "127.0.0.1:0", "--recording", p}
		}},
		{"replay run", func(p string) []string {
			return []string{"replay", "run", "--recording", p, "--target", "http://127.0.0.1:1/"}
		}},
		{"capture analyze --session", func(p string) []string { return []string{"capture", "analyze", pcap, "--session", p} }},
		{"salvage", func(p string) []string { return []string{"salvage", p, "--out", p + ".salvaged"} }},
		{"export errors", func(p string) []string { return []string{"export", p, "errors", "--format", "jsonl"} }},
		{"export resets", func(p string) []string { return []string{"export", p, "resets"} }},
	}
	for _, f := range []string{"table", "markdown", "json", "csv", "html"} {
		cmds = append(cmds, struct {
			name string
			args func(path string) []string
		}{"report --format " + f, func(p string) []string {
			if f == "csv" {
				return []string{"report", p, "--format", f, "--section", "summary"}
			}
			return []string{"report", p, "--format", f}
		}})
	}
	return cmds
}

// TestDamagedCorpusEveryReader runs every reader subcommand, in a child
// process of the built binary, on every file of the damaged corpus (the
// shared fixtures that crashed readers with SIGSEGV or a panic inside
// bbolt, crafted meta and page damage, truncation, random damage): each
// exits 4 with exactly one line on stderr that names the file, with no
// signal, no goroutine dump and no "internal error". salvage is the one
// reader that reads such files: it copies what it can (exit 0) or says in
// one line that nothing could be (exit 4).
func TestDamagedCorpusEveryReader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildBinary(t, ctx, dir)
	cases := damagetest.Corpus(t, dir)
	if testing.Short() {
		// Every fixture and crafted case, two random ones.
		var short []damagetest.Case
		random := 0
		for _, c := range cases {
			if strings.HasPrefix(c.Name, "random-") {
				if random++; random > 2 {
					continue
				}
			}
			short = append(short, c)
		}
		cases = short
	}
	paths := damagetest.Write(t, dir, cases)
	pcap := filepath.Join(dir, "trace.pcap")
	writeAbortPcap(t, pcap, "127.0.0.1:50000", "127.0.0.1:8080")
	for _, cmd := range readerCommands(pcap) {
		t.Run(cmd.name, func(t *testing.T) {
			for i, c := range cases {
				path := paths[i]
				stdout, stderr, code, signaled := runChild(t, ctx, bin, cmd.args(path)...)
				if signaled != "" || strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "internal error") ||
					strings.Contains(stderr, "panic") || strings.Contains(stderr, "fatal error") {
					t.Errorf("%s: crashed (%s, exit %d):\n%s", c.Name, signaled, code, stderr)
					continue
				}
				if cmd.name == "salvage" {
					os.Remove(path + ".salvaged")
					if code != 0 && (code != 4 || strings.Count(stderr, "\n") != 1) {
						t.Errorf("%s: salvage exit %d: %s", c.Name, code, stderr)
					}
					continue
				}
				if code != 4 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, path+" ") {
					t.Errorf("%s: exit %d, stderr %q: want exit 4 and one line naming %s", c.Name, code, stderr, path)
				}
				if stdout != "" {
					t.Errorf("%s: stdout %q", c.Name, stdout)
				}
			}
		})
	}
}

// runChild runs the binary with args and returns its output, exit code
// and the signal that ended it ("" when it exited).
func runChild(t *testing.T, ctx context.Context, bin string, args ...string) (string, string, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%v: %v", args, err)
	}
	signaled := ""
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		signaled = ws.Signal().String()
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode(), signaled
}

// TestBadRecordsSkipped: a session file with records that are not JSON in
// several buckets (a value edited by hand, bits flipped on disk) is read
// record by record: inspect, report and recordings read every other record
// and say how many they skipped, per bucket, and exit 0.
func TestBadRecordsSkipped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad-records.db")
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range session.Buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte(session.BucketMeta))
		meta.Put([]byte(session.MetaSchema), []byte(strconv.Itoa(session.SchemaVersion)))
		meta.Put([]byte(session.MetaRun), []byte(`{"tool":"ssestress test","command":"run","started_at":"2026-11-27T10:00:00Z"}`))
		meta.Put([]byte(session.MetaSummary), []byte(`{"scenario": flood`))
		put := func(bucket, key, val string) {
			if err == nil {
				err = tx.Bucket([]byte(bucket)).Put([]byte(key), []byte(val))
			}
		}
		for i := range 5 {
			k := "k" + strconv.Itoa(i)
			put(session.BucketConns, "c000"+strconv.Itoa(i)+"/00000", `{"client_id":"c000`+strconv.Itoa(i)+`","start":"2026-11-27T10:00:00Z","events":4}`)
			put(session.BucketErrors, k, `{"time":"2026-11-27T10:00:01Z","client_id":"c0001","class":"ECONNRESET"}`)
		}
		put(session.BucketConns, "c0009/00000", `{"client_id": c0009`)
		put(session.BucketErrors, "k9", `{"class": ECONNRESET`)
		put(session.BucketErrors, "k8", "\xff\xfe")
		put(session.BucketRecStreams, "p1/p1-1", `{"proxy":"p1","conn_id":"p1-1","method":"GET","path":"/stream","start":"2026-11-27T10:00:00Z"}`)
		put(session.BucketRecStreams, "p1/p1-2", `{"proxy":`)
		put(session.BucketRecEvents, "p1/p1-1/0000000000", `{"proxy":"p1","conn_id":"p1-1","seq":0,"kind":"event","data":"x"}`)
		put(session.BucketRecEvents, "p1/p1-1/0000000001", `not json`)
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	for _, tc := range []struct {
		name         string
		args         []string
		stdout       []string // lines or fragments the output holds
		stderrPrefix string   // "" when nothing is printed on stderr
	}{
		{"inspect", []string{"inspect", path}, []string{
			"clients       5 (5 connection attempts, 5 open when last written), 20 events",
			"errors        ECONNRESET 5",
			`unreadable    meta 1, conns 1, errors 2 records skipped (first: bucket meta key "summary": `,
			"summary       unreadable (see above)",
		}, ""},
		{"inspect --json", []string{"inspect", "--json", path}, []string{`"unreadable":{"conns":{"records":1,"first":"key \"c0009/00000\": invalid character 'c' looking for beginning of value"}`}, ""},
		{"report --format json", []string{"report", path, "--format", "json"}, []string{`"records_unreadable": {
        "conns": 1,
        "errors": 2,
        "meta": 1
      }`}, ""},
		{"report", []string{"report", path}, []string{"unreadable, skipped: errors 2, conns 1, meta 1"}, ""},
		{"export errors", []string{"export", path, "errors"}, []string{"\nbad-records.db,2026-11-27T10:00:01Z,"},
			"ssestress: warning: bad-records.db: 2 errors records could not be read and were skipped (first: key \"k8\": "},
		{"recordings ls", []string{"recordings", "ls", path}, []string{"1 streams, 1 frames"},
			"ssestress: warning: " + path + ": records that could not be read were skipped: rec_streams 1, rec_events 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, ctx, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, stdout)
				}
			}
			if tc.stderrPrefix == "" && stderr != "" || !strings.HasPrefix(stderr, tc.stderrPrefix) || strings.Count(stderr, "\n") > 1 {
				t.Errorf("stderr %q, want one line starting %q", stderr, tc.stderrPrefix)
			}
		})
	}
}

// TestSalvageCommand: salvage copies a damaged file's readable records
// into --out and prints what it copied and lost; an existing --out is
// refused (exit 2) unless --force; a file that is not bbolt exits 4; the
// copy is read by inspect like any session file.
func TestSalvageCommand(t *testing.T) {
	dir := t.TempDir()
	var damaged string
	for _, c := range damagetest.Crafted(t, damagetest.Real(t, dir)) {
		if c.Name == "leaf-count-ffff" {
			damaged = filepath.Join(dir, "damaged.db")
			os.WriteFile(damaged, c.Data, 0o644)
		}
	}
	out := filepath.Join(dir, "recovered.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "salvage", damaged, "--out", out)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"salvaged " + damaged + " into " + out, "│ errors        │ 6000   │", "copied 6605 records; no record found was lost"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, code = runCLI(t, ctx, "inspect", out)
	if code != 0 || !strings.Contains(stdout, "errors        ECONNRESET 6000") {
		t.Errorf("inspect of the copy: exit %d:\n%s", code, stdout)
	}
	notes := filepath.Join(dir, "notes.db")
	os.WriteFile(notes, bytes.Repeat([]byte("notes "), 2000), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"salvage", damaged, "--out", out}, 2, "ssestress: salvage: --out " + out + " already exists (give --force to replace it)\n"},
		{[]string{"salvage", damaged}, 2, "ssestress: salvage: --out FILE is required (usage: ssestress salvage BAD.db --out GOOD.db)\n"},
		{[]string{"salvage", "--out", out}, 2, "ssestress: salvage: no damaged session file given (usage: ssestress salvage BAD.db --out GOOD.db [--force] [--json])\n"},
		{[]string{"salvage", notes, "--out", filepath.Join(dir, "n.db")}, 4, "ssestress: salvage: " + notes + " is not an ssestress session file (not a bbolt database)\n"},
		{[]string{"salvage", damaged, "--out", out, "--force", "--json"}, 0, ""},
	} {
		stdout, stderr, code := runCLI(t, ctx, tc.args...)
		if code != tc.code || stderr != tc.want {
			t.Errorf("%v: exit %d, stderr %q; want exit %d, %q", tc.args, code, stderr, tc.code, tc.want)
		}
		if tc.code == 0 && !strings.Contains(stdout, `"errors":{"copied":6000,"unreadable":0,"pages_lost":0}`) {
			t.Errorf("%v: JSON lacks the errors bucket's counts:\n%s", tc.args, stdout)
		}
	}
}
