package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInterruptExits130: a run stopped by Ctrl-C (SIGINT) or SIGTERM
// prints its summary, closes its session file, and then exits 130, as the
// exit code table says; serve and proxy, which run until stopped, too.
func TestInterruptExits130(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		args    []string
		started string // a stderr or stdout line that says the work began
		summary string // what stdout holds at the end
		sig     syscall.Signal
	}{
		{"run SIGINT", []string{"run", "--connections=2", "--rate=20", "--duration=1m", "--out=" + filepath.Join(dir, "int.db")},
			"ssestress run: flood", "session file: " + filepath.Join(dir, "int.db"), syscall.SIGINT},
		{"run SIGTERM", []string{"run", "--connections=2", "--rate=20", "--duration=1m", "--out=" + filepath.Join(dir, "term.db")},
			"ssestress run: flood", "(interrupted)", syscall.SIGTERM},
		{"serve SIGINT", []string{"serve", "--listen=127.0.0.1:0"}, "serving SSE quote feed", "stopped:", syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, exe, tc.args...)
			cmd.Env = append(os.Environ(), testMainEnv+"=1")
			stdout, err := os.CreateTemp(dir, "stdout")
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout = stdout
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 64)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			started := false
			deadline := time.After(20 * time.Second)
			for !started {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatal("ssestress ended before it started")
					}
					started = strings.Contains(l, tc.started)
				case <-deadline:
					out, _ := os.ReadFile(stdout.Name())
					started = strings.Contains(string(out), tc.started)
					if !started {
						t.Fatalf("no %q within 20 s (stdout %q)", tc.started, out)
					}
				case <-time.After(50 * time.Millisecond):
					out, _ := os.ReadFile(stdout.Name())
					started = strings.Contains(string(out), tc.started)
				}
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			go func() {
				for range lines {
				}
			}()
			err = cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
				t.Fatalf("exit %v, want %d", err, exitInterrupted)
			}
			out, _ := os.ReadFile(stdout.Name())
			if !strings.Contains(string(out), tc.summary) {
				t.Fatalf("stdout lacks %q:\n%s", tc.summary, out)
			}
		})
	}
}

// TestExitStatus: the one mapping of outcomes onto exit codes.
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		err         error
		interrupted bool
		want        int
	}{
		{nil, false, exitOK},
		{errHelp, false, exitOK},
		{errHelp, true, exitOK},
		{errors.New("the work failed"), false, exitFailed},
		{usageErrorf("bad flag"), false, exitUsage},
		{nil, true, exitInterrupted},
		{errors.New("failed while stopping"), true, exitInterrupted},
		{usageErrorf("bad flag"), true, exitUsage},
	} {
		if got := exitStatus(tc.err, tc.interrupted, &strings.Builder{}); got != tc.want {
			t.Errorf("exitStatus(%v, interrupted %v) = %d, want %d", tc.err, tc.interrupted, got, tc.want)
		}
	}
}
