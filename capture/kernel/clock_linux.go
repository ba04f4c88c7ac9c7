package kernel

import (
	"time"

	"golang.org/x/sys/unix"
)

// traceClock is the instance's trace_clock: "mono" is CLOCK_MONOTONIC
// (ktime_get_mono_fast_ns), the clock user space can read too, so a trace
// timestamp maps to wall-clock time by one offset. "local" (the default)
// is a per-CPU clock user space cannot read.
const traceClock = "mono"

// clockOffset maps CLOCK_MONOTONIC to wall-clock time.
type clockOffset struct {
	realMinusMono int64 // nanoseconds
	errNs         int64 // half the width of the bracket it was measured in
}

// measureClockOffset reads CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_MONOTONIC
// a few times and keeps the tightest bracket: the offset's error is half
// that bracket (a fraction of a microsecond when not preempted).
// CLOCK_MONOTONIC and CLOCK_REALTIME are slewed alike by NTP, so the
// offset changes only when the wall clock is stepped; the collector
// measures it again every clockRefresh.
func measureClockOffset() clockOffset {
	best := clockOffset{errNs: 1 << 62}
	for i := 0; i < 7; i++ {
		var m1, r, m2 unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
		unix.ClockGettime(unix.CLOCK_REALTIME, &r)
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2)
		width := m2.Nano() - m1.Nano()
		if half := (width + 1) / 2; half < best.errNs {
			best = clockOffset{realMinusMono: r.Nano() - (m1.Nano()+m2.Nano())/2, errNs: half}
		}
	}
	return best
}

// clockRefresh is how often the offset is measured again.
const clockRefresh = 10 * time.Second

// wall maps a trace timestamp (microseconds of CLOCK_MONOTONIC) to
// wall-clock time.
func (o clockOffset) wall(micros int64) time.Time {
	return time.Unix(0, micros*1000+o.realMinusMono)
}
