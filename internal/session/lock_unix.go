//go:build unix

package session

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// heldForWriting reports whether another open file description holds the
// file's exclusive lock (a writer's bbolt lock), without waiting for it.
func heldForWriting(path string) bool {
	// Opening a FIFO would block: only a regular file can be a session
	// file (Open says so).
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// lockShared takes a shared flock(2) on f, as bbolt does for a read-only
// open, waiting at most timeout for a writer's exclusive lock to go. It
// returns errLocked when the wait ran out. The lock goes with f's Close.
// Holding it while validating means no writer changes the file between
// the validation and bbolt's own (compatible, shared) lock.
func lockShared(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if time.Now().After(deadline) {
			return errLocked
		}
		time.Sleep(50 * time.Millisecond)
	}
}
