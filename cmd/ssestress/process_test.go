package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// processEnv makes this test binary run ssestress (TestSsestressProcess)
// instead of the tests: a separate process for each hop of an end-to-end
// test, without building the binary.
const processEnv = "SSESTRESS_TEST_PROCESS"

// TestSsestressProcess is not a test of its own: when startProcess runs
// this binary with processEnv set, it is ssestress, with the arguments
// after "--", its signals and its exit code.
func TestSsestressProcess(t *testing.T) {
	if os.Getenv(processEnv) != "1" {
		t.Skip("runs ssestress only in a child process of another test")
	}
	i := slices.Index(os.Args, "--")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[i+1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// process is ssestress running as a child process; its stdout and stderr
// lines are kept.
type process struct {
	cmd  *exec.Cmd
	args []string // the ssestress arguments, for messages
	mu   sync.Mutex
	out  []string // stdout and stderr lines, in arrival order per stream
	done chan struct{}
	code int
}

// startProcess runs "ssestress args..." as a separate process: this test
// binary as main (built as the tests are, -race included). It is
// interrupted (and killed if it does not stop) when the test ends.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestSsestressProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), processEnv+"=1")
	return startExec(t, cmd, args)
}

// startBinary runs a built ssestress (buildBinary) as startProcess does:
// for figures a -race build would distort, such as resident memory.
func startBinary(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	return startExec(t, exec.Command(bin, args...), args)
}

// startExec starts cmd, whose ssestress arguments are args.
func startExec(t *testing.T, cmd *exec.Cmd, args []string) *process {
	t.Helper()
	p := &process{cmd: cmd, args: args, done: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				p.mu.Lock()
				p.out = append(p.out, sc.Text())
				p.mu.Unlock()
			}
		}()
	}
	go func() {
		readers.Wait()
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// wait waits for a line matching re and returns its submatches.
func (p *process) wait(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, l := range p.out {
			if m := re.FindStringSubmatch(l); m != nil {
				p.mu.Unlock()
				return m
			}
		}
		p.mu.Unlock()
		select {
		case <-p.done:
			t.Fatalf("ssestress %s exited (%d) before printing %q:\n%s", strings.Join(p.args, " "), p.code, re, p.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssestress %s printed no %q within %v:\n%s", strings.Join(p.args, " "), re, timeout, p.output())
		}
	}
}

// stop interrupts the process as Ctrl-C does, waits for it (killing it
// after 15 s) and returns its exit code.
func (p *process) stop(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("ssestress %s did not stop within 15 s of SIGINT", strings.Join(p.args, " "))
	}
	return p.code
}

// output is everything the process printed so far.
func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.out, "\n")
}

// listeningOn is the line a proxy prints when it listens.
var listeningOn = regexp.MustCompile(`listening on (https?://127\.0\.0\.1:\d+)`)

func (p *process) String() string { return fmt.Sprint(p.cmd.Args[3:]) }
