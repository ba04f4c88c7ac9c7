//go:build unix

package procstat

import (
	"fmt"
	"syscall"
	"time"
)

func selfCPU() (CPUTimes, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return CPUTimes{}, fmt.Errorf("procstat: getrusage: %w", err)
	}
	return CPUTimes{User: time.Duration(ru.Utime.Nano()), System: time.Duration(ru.Stime.Nano())}, nil
}
