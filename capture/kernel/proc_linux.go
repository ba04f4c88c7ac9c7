package kernel

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

// procCache maps traced thread ids to their process and names, read from
// /proc while the process lives. Entries expire after procTTL so a reused
// id is read again; the map is bounded by procMax.
type procCache struct {
	mu    sync.Mutex
	tids  map[int]procEntry // thread id → process
	comms map[int]procEntry // process id → name
}

type procEntry struct {
	pid  int
	comm string
	at   time.Time
}

const (
	procTTL = 10 * time.Second
	procMax = 16384
)

func newProcCache() *procCache {
	return &procCache{tids: map[int]procEntry{}, comms: map[int]procEntry{}}
}

// idleComm names the idle task (pid 0), as the trace prints it.
const idleComm = "<idle>"

// process returns the process (thread group id) of thread tid and its
// name. tgid is what the trace recorded (0 when it did not); traceComm the
// thread's name as the trace printed it ("<...>" when its cache missed).
func (p *procCache) process(tid, tgid int, traceComm []byte, now time.Time) (int, string) {
	if tid == 0 {
		return 0, idleComm
	}
	pid := tgid
	if pid == 0 {
		p.mu.Lock()
		e, ok := p.tids[tid]
		p.mu.Unlock()
		if ok && now.Sub(e.at) < procTTL {
			pid = e.pid
		} else {
			pid = readTgid(tid)
			if pid != 0 {
				p.mu.Lock()
				if len(p.tids) >= procMax {
					clear(p.tids)
				}
				p.tids[tid] = procEntry{pid: pid, at: now}
				p.mu.Unlock()
			}
		}
	}
	if pid == 0 {
		// The thread is gone and the trace had no tgid: report the thread.
		return tid, traceName(traceComm)
	}
	if comm := p.comm(pid, now); comm != "" {
		return pid, comm
	}
	return pid, traceName(traceComm)
}

// comm is the name of process pid ("" when it is gone).
func (p *procCache) comm(pid int, now time.Time) string {
	p.mu.Lock()
	e, ok := p.comms[pid]
	p.mu.Unlock()
	if ok && now.Sub(e.at) < procTTL {
		return e.comm
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	comm := string(bytes.TrimRight(b, "\n"))
	p.mu.Lock()
	if len(p.comms) >= procMax {
		clear(p.comms)
	}
	p.comms[pid] = procEntry{pid: pid, comm: comm, at: now}
	p.mu.Unlock()
	return comm
}

// traceName is the trace's comm unless it is the "<...>" placeholder.
func traceName(comm []byte) string {
	if len(comm) == 0 || string(comm) == "<...>" {
		return ""
	}
	return string(comm)
}

// readTgid reads "Tgid:" from /proc/<tid>/status (a thread id works there
// although /proc does not list it); 0 when the thread is gone.
func readTgid(tid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return 0
	}
	i := bytes.Index(b, []byte("\nTgid:"))
	if i < 0 {
		return 0
	}
	rest := bytes.TrimLeft(b[i+len("\nTgid:"):], " \t")
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	n, _ := strconv.Atoi(string(rest))
	return n
}
