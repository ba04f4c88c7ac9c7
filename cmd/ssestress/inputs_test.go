package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// TestCappedInputs: every file a command reads is size-capped or must be
// a regular file: /dev/zero (which never ends) is refused at once, a FIFO
// nobody writes to does not block, a directory is named; each gives one
// line and the exit code of a bad command line (2), or of an input file
// that is not ours (4) for session files.
func TestCappedInputs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	good := filepath.Join(dir, "good.db")
	w, err := session.Create(good, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.PutMeta(session.MetaRun, session.RunInfo{Tool: "ssestress test", Command: "run", StartedAt: time.Now()})
	w.Close()
	pcap := filepath.Join(dir, "trace.pcap")
	writeAbortPcap(t, pcap, "127.0.0.1:50000", "127.0.0.1:8080")
	url := "http://127.0.0.1:1/stream"
	for _, tc := range []struct {
		args []string
		code int
		want string // the line after "ssestress: "
	}{
		{[]string{"run", "--config", "/dev/zero"}, 2, "run: --config: /dev/zero is a character device, not a regular file"},
		{[]string{"run", "--config", fifo}, 2, "run: " + fifo + ": invalid JSON: unexpected end of file"},
		{[]string{"tail", "--token-file", "/dev/zero", url}, 2, "tail: --token-file: /dev/zero is a character device, not a regular file"},
		{[]string{"tail", "--ca", "/dev/zero", url}, 2, "tail: --ca: /dev/zero is a character device, not a regular file"},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--tls-cert", "/dev/zero", "--tls-key", "/dev/zero"}, 2,
			"serve: --tls-cert: load certificate /dev/zero / key /dev/zero: /dev/zero is a character device, not a regular file"},
		{[]string{"proxy", "--upstream", "https://127.0.0.1:1", "--upstream-ca", "/dev/zero"}, 2,
			"proxy: --upstream-ca: /dev/zero is a character device, not a regular file"},
		{[]string{"proxy", "--config", "/dev/zero"}, 2, "proxy: --config /dev/zero is a character device, not a regular file"},
		{[]string{"report", good, "--production", "/dev/zero"}, 1, "report: --production: /dev/zero is a character device, not a regular file"},
		{[]string{"inspect", fifo}, 4, fifo + " is not an ssestress session file (it is a FIFO (named pipe))"},
		{[]string{"report", fifo}, 4, "report: " + fifo + " is not an ssestress session file (it is a FIFO (named pipe))"},
		{[]string{"recordings", "ls", "/dev/zero"}, 4, "/dev/zero is not an ssestress session file (it is a character device)"},
		{[]string{"capture", "analyze", fifo}, 1, fifo + " is a FIFO (named pipe), not a regular file"},
		{[]string{"capture", "analyze", pcap, "--session", fifo}, 4, fifo + " is not an ssestress session file (it is a FIFO (named pipe))"},
		{[]string{"salvage", fifo, "--out", filepath.Join(dir, "out.db")}, 4, "salvage: " + fifo + " is not an ssestress session file (it is a FIFO (named pipe))"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			done := make(chan struct{})
			var stderr string
			var code int
			go func() {
				defer close(done)
				_, stderr, code = runCLI(t, ctx, tc.args...)
			}()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("blocked")
			}
			if want := "ssestress: " + tc.want + "\n"; stderr != want || code != tc.code {
				t.Errorf("exit %d, stderr %q; want exit %d, %q", code, stderr, tc.code, want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "out.db")); err == nil {
		t.Error("salvage left an output behind")
	}
}
