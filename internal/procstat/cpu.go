package procstat

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

// CPUTimes is the CPU time a process has used since it started, in user
// mode and in the kernel (system calls: for a network tool mostly socket
// reads and writes). Its change over an interval, divided by the interval,
// is the process's CPU share (1.0 = one core busy).
type CPUTimes struct {
	User   time.Duration
	System time.Duration
}

// Total is User + System.
func (c CPUTimes) Total() time.Duration { return c.User + c.System }

// userHZ is the unit of the CPU times in /proc/<pid>/stat: the kernel
// reports them in USER_HZ ticks, which is 100 on every architecture Linux
// exposes to user space (sysconf(_SC_CLK_TCK); reading it needs cgo).
const userHZ = 100

// SelfCPU reads the calling process's CPU times, with getrusage where the
// platform has it (microsecond resolution).
func SelfCPU() (CPUTimes, error) { return selfCPU() }

// CPU reads the CPU times of the process pid from /proc/<pid>/stat (10 ms
// resolution).
func CPU(pid int) (CPUTimes, error) {
	if runtime.GOOS != "linux" {
		return CPUTimes{}, ErrUnsupported
	}
	raw, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", root, pid))
	if err != nil {
		return CPUTimes{}, fmt.Errorf("procstat: pid %d: %w", pid, err)
	}
	c, err := parseStatCPU(raw)
	if err != nil {
		return CPUTimes{}, fmt.Errorf("procstat: pid %d: stat: %w", pid, err)
	}
	return c, nil
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat line. Field 2, the command name, is in parentheses and
// may itself hold spaces and parentheses, so the fields are counted from
// the last ')'.
func parseStatCPU(raw []byte) (CPUTimes, error) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return CPUTimes{}, fmt.Errorf("no command name in %q", truncate(raw))
	}
	// After ')': field 3 (state) is fields[0], so field n is fields[n-3].
	fields := bytes.Fields(raw[i+1:])
	if len(fields) < 13 {
		return CPUTimes{}, fmt.Errorf("%d fields after the command name, want at least 13", len(fields))
	}
	utime, err := strconv.ParseUint(string(fields[14-3]), 10, 64)
	if err != nil {
		return CPUTimes{}, fmt.Errorf("utime %q", fields[14-3])
	}
	stime, err := strconv.ParseUint(string(fields[15-3]), 10, 64)
	if err != nil {
		return CPUTimes{}, fmt.Errorf("stime %q", fields[15-3])
	}
	tick := time.Second / userHZ
	return CPUTimes{User: time.Duration(utime) * tick, System: time.Duration(stime) * tick}, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
