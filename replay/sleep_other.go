//go:build !linux

package replay

import "time"

func fineSleep(d time.Duration) { time.Sleep(d) }

// haveFineSleep is false where nanosleep(2) is not used: the runtime timer
// is as good as time.Sleep there.
const haveFineSleep = false
