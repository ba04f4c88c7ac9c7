package replay

import (
	"time"

	"golang.org/x/sys/unix"
)

// fineSleep blocks the calling thread for d with nanosleep(2), which is
// accurate to tens of microseconds.
func fineSleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}

const haveFineSleep = true
