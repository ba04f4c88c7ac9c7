package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Where tracefs lives.
const (
	tracefsDir      = "/sys/kernel/tracing"
	tracefsDebugDir = "/sys/kernel/debug/tracing"
)

// instancePrefix names this tool's tracefs instances: "ssestress-<pid>",
// or "ssestress-<pid>-<n>" for a second collector in one process.
const instancePrefix = "ssestress-"

// findTracefs returns the tracefs mount point, mounting tracefs on
// /sys/kernel/tracing when it is not mounted (under `ip netns exec`, /sys
// is a fresh sysfs whose tracing directory is empty). mounted says it did.
func findTracefs(want string) (dir string, mounted bool, err error) {
	if want != "" {
		if !isTracefs(want) {
			return "", false, &UnavailableError{Err: ErrNoTracefs, Detail: want + " is not a tracefs mount"}
		}
		return want, false, nil
	}
	for _, d := range []string{tracefsDir, tracefsDebugDir} {
		if isTracefs(d) {
			return d, false, nil
		}
	}
	err = unix.Mount("nodev", tracefsDir, "tracefs", 0, "")
	switch {
	case err == nil:
		return tracefsDir, true, nil
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return "", false, &UnavailableError{Err: ErrNotPermitted, Detail: "tracefs is not mounted and mounting it needs root (CAP_SYS_ADMIN)"}
	case errors.Is(err, unix.ENODEV):
		return "", false, &UnavailableError{Err: ErrNoTracefs, Detail: "this kernel has no tracefs (CONFIG_TRACING off)"}
	default:
		return "", false, &UnavailableError{Err: ErrNoTracefs, Detail: fmt.Sprintf("mount -t tracefs nodev %s: %v", tracefsDir, err)}
	}
}

func isTracefs(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.TRACEFS_MAGIC
}

// liveInstances are the instances this process has made and not yet
// removed: a stale-instance sweep never touches them.
var liveInstances = struct {
	sync.Mutex
	names map[string]bool
}{names: map[string]bool{}}

// createInstance makes this process's instance under fsDir/instances.
func createInstance(fsDir string) (name, dir string, err error) {
	liveInstances.Lock()
	defer liveInstances.Unlock()
	pid := os.Getpid()
	for n := 1; n < 100; n++ {
		name = instancePrefix + strconv.Itoa(pid)
		if n > 1 {
			name += "-" + strconv.Itoa(n)
		}
		if liveInstances.names[name] {
			continue
		}
		dir = filepath.Join(fsDir, "instances", name)
		err = unix.Mkdir(dir, 0o700)
		if errors.Is(err, unix.EEXIST) {
			// Left by an earlier process with this pid: take it over
			// unless it is in use (a process of another pid namespace
			// sharing the host's tracefs), then try the next name.
			if gone, _ := removeIfUnused(dir); !gone {
				continue
			}
			err = unix.Mkdir(dir, 0o700)
		}
		if err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) {
				return "", "", &UnavailableError{Err: ErrNotPermitted, Detail: "creating a tracefs instance needs root: " + err.Error()}
			}
			return "", "", fmt.Errorf("create tracefs instance %s: %w", dir, err)
		}
		liveInstances.names[name] = true
		return name, dir, nil
	}
	return "", "", fmt.Errorf("create tracefs instance: too many collectors in process %d", pid)
}

func forgetInstance(name string) {
	liveInstances.Lock()
	delete(liveInstances.names, name)
	liveInstances.Unlock()
}

// removeInstance disables the instance's events, then removes it. A
// reader that still holds trace_pipe open makes rmdir fail with EBUSY for
// a moment: retry briefly.
func removeInstance(dir string) error {
	// events/enable at the instance root turns every event of the instance
	// off; writing it fails only when the instance is already gone.
	os.WriteFile(filepath.Join(dir, "events", "enable"), []byte("0"), 0)
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove tracefs instance %s: %w", dir, err)
}

// removeIfUnused removes an instance nobody holds open. rmdir of an
// instance whose files are open (a live reader's trace_pipe) fails with
// EBUSY: that proves an owner is alive whatever its pid says. The kernel
// disables the instance's events itself as it removes it.
func removeIfUnused(dir string) (gone bool, err error) {
	err = unix.Rmdir(dir)
	switch {
	case err == nil || errors.Is(err, unix.ENOENT):
		return true, nil
	case errors.Is(err, unix.EBUSY):
		return false, nil
	}
	return false, fmt.Errorf("remove tracefs instance %s: %w", dir, err)
}

// sweepStale removes the instances of ssestress processes that are gone:
// killed with SIGKILL, crashed. It returns the names it removed.
//
// An instance "ssestress-<pid>[-n]" is stale when no process has that pid,
// when the pid is this process's and the instance is not one it made, or
// when the process with that pid started after the instance was created
// (the pid was reused). That last check replaces comparing /proc/PID/comm
// or /proc/PID/exe with our own: both differ between builds, `go run`,
// test binaries and renamed copies of one ssestress (so a live sibling
// would be swept), and a reused pid may well be another ssestress. The
// process that creates an instance is alive when it does, so its start
// time (/proc/PID/stat, clock ticks since boot) is before the instance's
// creation (the directory's ctime); a process started after it cannot be
// the creator. The only miss is a pid reused within the same 10 ms clock
// tick as the instance's creation. An instance held open is never removed
// (removeIfUnused): that covers a live ssestress in another pid namespace
// (a container) sharing the host's tracefs, whose pid means nothing here.
func sweepStale(fsDir string) (removed []string, err error) {
	entries, err := os.ReadDir(filepath.Join(fsDir, "instances"))
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, ok := instancePID(e.Name())
		if !ok {
			continue
		}
		dir := filepath.Join(fsDir, "instances", e.Name())
		if pid == self {
			liveInstances.Lock()
			mine := liveInstances.names[e.Name()]
			liveInstances.Unlock()
			if mine {
				continue
			}
		} else if alive, _ := createdBy(dir, pid); alive {
			continue
		}
		gone, err := removeIfUnused(dir)
		if err != nil {
			return removed, err
		}
		if gone {
			removed = append(removed, e.Name())
		}
	}
	return removed, nil
}

// instancePID reads the pid of "ssestress-<pid>" or "ssestress-<pid>-<n>".
func instancePID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, instancePrefix)
	if !ok {
		return 0, false
	}
	rest, _, _ = strings.Cut(rest, "-")
	pid, err := strconv.Atoi(rest)
	return pid, err == nil && pid > 0
}

// createdBy says whether process pid is alive and could have created the
// instance dir (it started before the instance was made).
func createdBy(dir string, pid int) (bool, error) {
	start, err := processStartBoot(pid)
	if err != nil {
		return false, err // no such process
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, err
	}
	created := time.Unix(st.Ctim.Unix())
	// Map the wall-clock ctime onto the boot clock of the start time.
	var real, boot unix.Timespec
	unix.ClockGettime(unix.CLOCK_REALTIME, &real)
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	createdBoot := time.Duration(boot.Nano()) - time.Duration(real.Nano()-created.UnixNano())
	return start <= createdBoot, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture's user ABI.
const clockTicks = 100

// processStartBoot is when process pid started, on the boot clock.
func processStartBoot(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ..." – comm may hold spaces and parentheses;
	// the fields after the last ')' are fixed. starttime is field 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	const startField = 22 - 3 // fields 1 and 2 precede the ')', field 3 is state
	if len(fields) <= startField {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ticks, err := strconv.ParseInt(fields[startField], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// writeFile writes a tracefs control file, naming it in the error.
func writeFile(dir, name, value string) error {
	err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("write %q to %s: %w", value, filepath.Join(dir, name), err)
	}
	return nil
}
