//go:build unix

package session

import (
	"errors"
	"os"
	"syscall"
)

// heldForWriting reports whether another open file description holds the
// file's exclusive lock (a writer's bbolt lock), without waiting for it.
func heldForWriting(path string) bool {
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
