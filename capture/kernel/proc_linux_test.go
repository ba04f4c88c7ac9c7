package kernel

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestProcCache: a thread id without the trace's tgid is mapped to its
// process through /proc/<tid>/status, and named from /proc/<pid>/comm; a
// gone thread keeps the trace's name unless it is the "<...>" placeholder.
func TestProcCache(t *testing.T) {
	tids := make(chan int)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread() // a thread of its own, with its own tid, kept until release
		tids <- unix.Gettid()
		<-release
	}()
	tid := <-tids
	defer close(release)
	if tid == os.Getpid() {
		t.Skip("the goroutine ran on the main thread")
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	p := newProcCache()
	now := time.Now()
	pid, name := p.process(tid, 0, []byte("<...>"), now)
	if pid != os.Getpid() || name != strings.TrimSpace(string(comm)) {
		t.Errorf("thread %d: pid %d %q, want %d %q", tid, pid, name, os.Getpid(), comm)
	}
	// The recorded tgid is taken as is.
	if pid, _ := p.process(tid, 12345678, nil, now); pid != 12345678 {
		t.Errorf("recorded tgid ignored: %d", pid)
	}
	// Gone: no /proc entry. The thread id stands, with the trace's name.
	const gone = 4_194_301
	if pid, name := p.process(gone, 0, []byte("node"), now); pid != gone || name != "node" {
		t.Errorf("gone thread: %d %q", pid, name)
	}
	if _, name := p.process(gone, 0, []byte("<...>"), now); name != "" {
		t.Errorf("placeholder name kept: %q", name)
	}
	if pid, name := p.process(0, 0, []byte("<idle>"), now); pid != 0 || name != idleComm {
		t.Errorf("idle: %d %q", pid, name)
	}
}
