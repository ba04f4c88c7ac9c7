package metrics

import (
	"os"
	"runtime"
	"strconv"

	"github.com/ssestress/ssestress/internal/procstat"
)

// Process names a process whose resources a live view exposes: the tool
// itself ("ssestress") and the server under test (--server-pid, "server").
type Process struct {
	Role string
	PID  int
}

// Self is the calling process in the role "ssestress".
func Self() Process { return Process{Role: "ssestress", PID: os.Getpid()} }

// ProcessFamilies reads procs from /proc and returns
// ssestress_process_resident_memory_bytes, ssestress_process_open_fds and
// ssestress_process_threads labelled with role and pid, plus the Go heap
// and goroutines of the calling process. A process that cannot be read
// (exited, or no /proc) is left out, and ssestress_process_up says so.
func ProcessFamilies(procs ...Process) []Family {
	rss := Family{Name: "ssestress_process_resident_memory_bytes", Help: "Resident memory of the process (VmRSS).", Kind: Gauge}
	fds := Family{Name: "ssestress_process_open_fds", Help: "Open file descriptors of the process.", Kind: Gauge}
	threads := Family{Name: "ssestress_process_threads", Help: "OS threads of the process.", Kind: Gauge}
	up := Family{Name: "ssestress_process_up", Help: "1 when the process could be read from /proc, 0 when not (exited, or no /proc).", Kind: Gauge}
	for _, p := range procs {
		labels := L("role", p.Role, "pid", strconv.Itoa(p.PID))
		st, err := procstat.Read(p.PID)
		if err != nil {
			up.Samples = append(up.Samples, Sample{Labels: labels, Value: 0})
			continue
		}
		up.Samples = append(up.Samples, Sample{Labels: labels, Value: 1})
		rss.Samples = append(rss.Samples, Sample{Labels: labels, Value: float64(st.RSS)})
		fds.Samples = append(fds.Samples, Sample{Labels: labels, Value: float64(st.FDs)})
		threads.Samples = append(threads.Samples, Sample{Labels: labels, Value: float64(st.Threads)})
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return []Family{up, rss, fds, threads,
		One("ssestress_go_heap_alloc_bytes", "Go heap in use by ssestress.", Gauge, float64(ms.HeapAlloc)),
		One("ssestress_go_goroutines", "Goroutines of ssestress.", Gauge, float64(runtime.NumGoroutine())),
	}
}
