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

// CheckCapacity says whether conns connections, each using perConn
// descriptors in this process (1 for a client, 2 for a proxied stream, 3 for
// a run with an in-process proxy and embedded server), fit in the limit.
func CheckCapacity(conns, perConn int) error {
	soft, err := RaiseNoFile()
	if err != nil {
		return err
	}
	need := uint64(conns*perConn) + reserve
	if need > soft {
		return fmt.Errorf("%d connections need about %d file descriptors in this process but the limit is %d (hard limit); raise it (ulimit -Hn, systemd LimitNOFILE) or use fewer connections, --shard across processes, or --target so the server runs elsewhere",
			conns, need, soft)
	}
	return nil
}
