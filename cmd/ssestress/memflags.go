package main

import (
	"fmt"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/membudget"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/size"
)

// The process's memory budget (--max-memory, on run, replay run and
// proxy). Its default is half of the memory available to the process at
// start (membudget.Default: /proc/meminfo's MemAvailable, or the cgroup's
// limit when lower). It is spent so:
//
//   - the Go runtime gets three quarters of it as its soft memory limit,
//     so the collector works to keep the whole process under it (the
//     binary, stacks and memory freed but not yet returned to the system
//     are the margin);
//   - three eighths of it are the budget the peers' data may fill: the
//     clients' line and event buffers and the proxy's delay lines grow
//     only by asking it (a buffer being replaced counts with the new one
//     until it is copied), and past it the streams holding the most end
//     (MEMORY_BUDGET); what they leave behind is garbage the collector
//     reclaims within the runtime's limit;
//   - out of that half, the session writer's queue takes its bound
//     (session.DefaultMaxPendingBytes, less when the budget is small):
//     past it records are dropped and counted, never queued without end.
//
// The rest (sockets, goroutines, a few KiB per stream) is what the process
// needs to hold its connections at all; the descriptor check bounds it.

// minMaxMemory is the least --max-memory: below it the budget could not
// hold the writer's queue and a few events.
const minMaxMemory = 32 << 20

// memoryFlags is --max-memory.
type memoryFlags struct {
	size size.Bytes
	set  bool
}

// String and Set make memoryFlags the flag's value: unset, it prints no
// default of its own (the usage says what the default is).
func (m *memoryFlags) String() string {
	if m == nil || !m.set {
		return ""
	}
	return m.size.String()
}

func (m *memoryFlags) Set(s string) error {
	if err := m.size.Set(s); err != nil {
		return err
	}
	if m.size < 0 {
		return fmt.Errorf("a size must not be negative")
	}
	m.set = true
	return nil
}

func (m *memoryFlags) register(fs *flagSet) {
	fs.Var(m, "max-memory", fmt.Sprintf("memory budget of the process, e.g. 2GiB; past it the streams holding the most data end (MEMORY_BUDGET) and records are dropped and counted "+
		"(default: half the memory available at start, %s here; 0: none)", defaultMemoryText()))
	fs.meta["max-memory"].placeholder = "SIZE"
}

func defaultMemoryText() string {
	if d := membudget.Default(); d > 0 {
		return clients.Bytes(uint64(d))
	}
	return "none (unknown)"
}

// processMemory is the budget as a command spends it.
type processMemory struct {
	limit   int64             // the whole process (0: none)
	buffers *membudget.Budget // what peers' data may fill (nil: none)
	writer  int64             // the session writer's queue bound (0: its default)
}

// start reads the flag, gives the runtime its limit and returns the
// budget's parts. cmd names the command in messages.
func (m *memoryFlags) start(cmd string) (processMemory, error) {
	limit := int64(m.size)
	if !m.set {
		limit = membudget.Default()
	}
	if limit == 0 {
		return processMemory{}, nil
	}
	if limit < minMaxMemory {
		return processMemory{}, usageErrorf("%s: --max-memory %s is too small: at least %s", cmd, clients.Bytes(uint64(limit)), clients.Bytes(minMaxMemory))
	}
	// The runtime's soft limit sits below the budget: the resident set
	// also holds the binary, and memory the collector freed reaches the
	// system a moment later.
	membudget.SetProcessLimit(limit - limit/4)
	pm := processMemory{limit: limit, buffers: membudget.New(limit / 8 * 3)}
	want := min(int64(session.DefaultMaxPendingBytes), limit/8)
	pm.writer = max(pm.buffers.Take(want), 1<<20)
	return pm, nil
}
