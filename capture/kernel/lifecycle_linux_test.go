package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// instanceGone fails the test if the instance directory is still there.
func instanceGone(t testing.TB, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("instance %s left behind (stat: %v)", dir, err)
	}
}

func hostDir(dir string) string { return strings.Replace(dir, tracefsDebugDir, tracefsDir, 1) }

// TestLifecycleNormalExit: a process that closes its collector leaves no
// instance.
func TestLifecycleNormalExit(t *testing.T) {
	needTracing(t)
	col := startChild(t, "collect", "ssk-normal", nil)
	dir := hostDir(col.expect(t, "INSTANCE "))
	if _, err := os.Stat(filepath.Join(dir, "events", "tcp", "tcp_send_reset", "enable")); err != nil {
		t.Fatalf("instance not there while running: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "events", "tcp", "tcp_send_reset", "enable")); strings.TrimSpace(string(b)) != "1" {
		t.Errorf("tcp_send_reset enable = %q while running", b)
	}
	col.send(t, "quit")
	if got := col.expect(t, "CLOSED "); got != "<nil>" {
		t.Errorf("Close: %s", got)
	}
	if code := col.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	instanceGone(t, dir)
}

// TestLifecycleInterrupt: Ctrl-C (SIGINT cancels the context given to
// Start) closes the collector by itself.
func TestLifecycleInterrupt(t *testing.T) {
	needTracing(t)
	col := startChild(t, "collect", "ssk-sigint", nil)
	dir := hostDir(col.expect(t, "INSTANCE "))
	if err := col.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if got := col.expect(t, "CLOSED "); got != "<nil>" {
		t.Errorf("after SIGINT: %s", got)
	}
	if code := col.wait(t); code != 130 {
		t.Errorf("exit code %d, want 130", code)
	}
	instanceGone(t, dir)
}

// TestLifecycleKillThenNextStart: a collector killed with SIGKILL leaves
// its instance; the next Start removes it, and leaves a live sibling's
// alone.
func TestLifecycleKillThenNextStart(t *testing.T) {
	needTracing(t)
	sibling := startChild(t, "collect", "ssk-sibling", nil)
	siblingDir := hostDir(sibling.expect(t, "INSTANCE "))
	victim := startChild(t, "collect", "ssk-victim", nil)
	victimDir := hostDir(victim.expect(t, "INSTANCE "))
	victim.cmd.Process.Kill()
	victim.wait(t)
	if _, err := os.Stat(victimDir); err != nil {
		t.Fatalf("a SIGKILLed collector's instance should stay until the next start: %v", err)
	}
	c, err := Start(context.Background(), Options{OwnerInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	instanceGone(t, victimDir)
	if _, err := os.Stat(siblingDir); err != nil {
		t.Errorf("the live sibling's instance was removed: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	instanceGone(t, c.Instance())
	sibling.send(t, "quit")
	sibling.expect(t, "CLOSED ")
	sibling.wait(t)
	instanceGone(t, siblingDir)
}

// TestPidReuse: an instance named after a pid that now belongs to a
// process started after the instance was made (the pid was reused) is
// stale. The pid is chosen with /proc/sys/kernel/ns_last_pid.
func TestPidReuse(t *testing.T) {
	needTracing(t)
	fsDir, _, err := findTracefs("")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	var sleeper *exec.Cmd
	for attempt := 0; attempt < 5 && sleeper == nil; attempt++ {
		b, err := os.ReadFile("/proc/sys/kernel/ns_last_pid")
		if err != nil {
			t.Skipf("ns_last_pid: %v", err)
		}
		last, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		pid = last + 500 + attempt*100
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		dir := filepath.Join(fsDir, "instances", instancePrefix+strconv.Itoa(pid))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond) // more than a clock tick between creation and reuse
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			os.Remove(dir)
			t.Skipf("cannot choose the next pid: %v", err)
		}
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			sleeper = cmd
			break
		}
		cmd.Process.Kill()
		cmd.Wait()
		removeInstance(dir)
	}
	if sleeper == nil {
		t.Skip("another process took the chosen pid five times (busy machine); skipping")
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	dir := filepath.Join(fsDir, "instances", instancePrefix+strconv.Itoa(pid))
	if alive, err := createdBy(dir, pid); alive || err != nil {
		t.Errorf("createdBy(%d) = %v, %v; want false: the process started after the instance", pid, alive, err)
	}
	removed, err := sweepStale(fsDir)
	if err != nil {
		t.Fatal(err)
	}
	if !containsString(removed, instancePrefix+strconv.Itoa(pid)) {
		t.Errorf("swept %q, want the reused pid's instance", removed)
	}
	instanceGone(t, dir)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCloseConcurrent: Close from several goroutines and the context at
// once (a signal path and the main path): one teardown, all calls return
// when the instance is gone, no goroutine left.
func TestCloseConcurrent(t *testing.T) {
	needTracing(t)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.Close()
		}()
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	instanceGone(t, c.Instance())
	if err := c.Close(); err != nil {
		t.Errorf("a later Close: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed")
	}
	end := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(end) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines, %d before", n, before)
	}
}

// TestSecondCollectorInProcess: two collectors in one process get two
// instances; the sweep leaves the live one alone.
func TestSecondCollectorInProcess(t *testing.T) {
	c1, _ := startCollector(t, Options{OwnerInterval: -1})
	c2, _ := startCollector(t, Options{OwnerInterval: -1})
	if c1.Instance() == c2.Instance() {
		t.Fatal("one instance for two collectors")
	}
	if _, err := os.Stat(c1.Instance()); err != nil {
		t.Errorf("the first collector's instance was swept: %v", err)
	}
	if !strings.HasSuffix(c2.Instance(), "-2") {
		t.Errorf("second instance %s", c2.Instance())
	}
}

// TestUnavailable: each missing piece gives one line naming it, and a
// sentinel errors.Is can tell.
func TestUnavailable(t *testing.T) {
	// Not a tracefs mount.
	_, err := Start(context.Background(), Options{Tracefs: t.TempDir()})
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrNoTracefs) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Start on a plain directory: %v", err)
	}
	// A kernel without the reason field, or without a tracepoint: fake
	// tracefs trees (readFormats reads only the format files).
	fake := func(files map[string]string) string {
		dir := t.TempDir()
		for name, src := range files {
			b, err := os.ReadFile(filepath.Join("testdata", src))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "events", name, "format")
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, b, 0o644)
		}
		return dir
	}
	old := fake(map[string]string{eventSendReset: "format-no-reason-tcp_send_reset", eventReceiveReset: "format-6.18/tcp_receive_reset"})
	_, err = readFormats(old, true)
	if !errors.Is(err, ErrNoReason) || !strings.Contains(err.Error(), "6.10") || strings.Contains(err.Error(), "\n") {
		t.Errorf("no reason field: %v", err)
	}
	noRecv := fake(map[string]string{eventSendReset: "format-6.18/tcp_send_reset"})
	if _, err = readFormats(noRecv, true); !errors.Is(err, ErrNoTracepoint) || !strings.Contains(err.Error(), "tcp:tcp_receive_reset") {
		t.Errorf("no receive tracepoint: %v", err)
	}
	// inet_sock_set_state is optional.
	full := fake(map[string]string{eventSendReset: "format-6.18/tcp_send_reset", eventReceiveReset: "format-6.18/tcp_receive_reset"})
	if f, err := readFormats(full, true); err != nil || len(f) != 2 {
		t.Errorf("without set_state: %v %v", f, err)
	}
}

// TestNotRoot runs Start in a child without root (setpriv): one line
// saying kernel tracing is not permitted.
func TestNotRoot(t *testing.T) {
	needTracing(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed: cannot drop root for the child")
	}
	// The child binary must be reachable by nobody: copy it to a
	// world-readable directory.
	exe, _ := os.Executable()
	dir, err := os.MkdirTemp("", "ssk-noroot")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "ssk-noroot")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", bin)
	cmd.Env = append(os.Environ(), childEnv+"=start")
	out, _ := cmd.CombinedOutput()
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(l, "STARTERR "); ok {
			line = s
		}
	}
	t.Logf("without root: %s", line)
	if !strings.Contains(line, "not permitted") || !strings.Contains(line, "root") {
		t.Errorf("child said %q, want one line saying tracing needs root\n%s", line, out)
	}
}

// TestSweepKeepsInstanceInUse: an instance named after a pid that does
// not exist here, but held open (a live ssestress in another pid
// namespace sharing the host's tracefs), is left alone; once closed, the
// next sweep removes it.
func TestSweepKeepsInstanceInUse(t *testing.T) {
	needTracing(t)
	fsDir, _, err := findTracefs("")
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for p := 4_190_000; p < 4_190_100; p++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); os.IsNotExist(err) {
			pid = p
			break
		}
	}
	if pid == 0 {
		t.Skip("no free pid found")
	}
	name := instancePrefix + strconv.Itoa(pid)
	dir := filepath.Join(fsDir, "instances", name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	defer removeInstance(dir)
	f, err := os.Open(filepath.Join(dir, "trace_pipe"))
	if err != nil {
		t.Fatal(err)
	}
	if removed, _ := sweepStale(fsDir); containsString(removed, name) {
		t.Error("an instance held open was swept")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("instance in use removed: %v", err)
	}
	f.Close()
	if removed, err := sweepStale(fsDir); err != nil || !containsString(removed, name) {
		t.Errorf("after close: swept %q (%v), want %s", removed, err, name)
	}
	instanceGone(t, dir)
}
