//go:build !unix

package session

import (
	"os"
	"time"
)

// heldForWriting is not known without a non-blocking lock probe: Open's
// own wait for the lock decides.
func heldForWriting(string) bool { return false }

// lockShared does nothing where flock(2) does not exist: bbolt's own lock
// still refuses a file in use, after the validation.
func lockShared(f *os.File, timeout time.Duration) error { return nil }
