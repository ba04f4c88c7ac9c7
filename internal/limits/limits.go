// Package limits raises the process's file descriptor limit at start and
// says how many connections the process can hold with it, so a run asked
// for more connections than the limit allows fails with a reason instead of
// a storm of EMFILE errors.
package limits

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// reserve is how many descriptors stay free for the session file, the
// listeners, /proc reads and the runtime.
const reserve = 64

// RaiseNoFile raises the soft RLIMIT_NOFILE to the hard limit and returns
// the new soft limit. It is harmless to call more than once.
func RaiseNoFile() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read file descriptor limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise file descriptor limit to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// CapacityError: Conns connections need about Need descriptors but the
// soft limit, raised to the hard one, is Limit. Its message says what to
// change on the system; the command adds its own remedies (fewer
// connections, shards, another process for the server) in its flags' names.
type CapacityError struct {
	Conns int
	Need  uint64
	Limit uint64
}

func (e *CapacityError) Error() string {
	return fmt.Sprintf("%d connections need about %d file descriptors in this process but the limit is %d (the hard limit; raise it with ulimit -Hn or systemd's LimitNOFILE)",
		e.Conns, e.Need, e.Limit)
}

// CheckCapacity says whether conns connections, each using perConn
// descriptors in this process (1 for a client, 2 for a proxied stream or a
// client of an embedded server, 3 for a run with an in-process proxy and
// embedded server), fit in the limit; a *CapacityError when they do not.
// Reading the limit may fail where there is none to read: then it says
// nothing (nil), and the run finds out.
func CheckCapacity(conns, perConn int) error {
	soft, err := RaiseNoFile()
	if err != nil {
		return nil
	}
	need := uint64(conns*perConn) + reserve
	if need > soft {
		return &CapacityError{Conns: conns, Need: need, Limit: soft}
	}
	return nil
}
