// Package inputfile reads the files a user names on the command line with
// a size cap, and tells a regular file from a FIFO, a device, a socket or
// a directory before anything blocks on it.
//
// Two kinds of inputs: small config-like files (a config, a token, PEM
// certificates and keys) are read whole with ReadFile under a limit;
// streams (a production error log, possibly <(zcat …)) are read with Open,
// which stops with an error at the limit. Session files and pcaps are
// read at random offsets or mapped, so they must be regular files:
// CheckRegular says so in one line. /dev/zero and friends are refused
// everywhere (a character device never ends); a FIFO is opened without
// blocking, so a named pipe nobody writes to reads as empty instead of
// hanging.
package inputfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// TooLargeError is returned when an input holds more than its limit.
type TooLargeError struct {
	Path  string
	Limit int64 // bytes
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %s, the most read from such a file", e.Path, FormatBytes(e.Limit))
}

// NotRegularError is returned for a path that is not a regular file where
// one is needed (or a device, directory or socket anywhere).
type NotRegularError struct {
	Path string
	Kind string // "a directory", "a FIFO (named pipe)", "a character device", …
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.Path, e.Kind)
}

// ErrTooLarge and ErrNotRegular match the two error types with errors.Is.
var (
	ErrTooLarge   = errors.New("input file too large")
	ErrNotRegular = errors.New("not a regular file")
)

func (e *TooLargeError) Is(target error) bool   { return target == ErrTooLarge }
func (e *NotRegularError) Is(target error) bool { return target == ErrNotRegular }

// kind names a file mode that is not a regular file ("" for a regular one).
func kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return ""
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file (mode " + m.String() + ")"
}

// CheckRegular returns a *NotRegularError unless path is a regular file
// (following symbolic links), and the error of os.Stat when it cannot be
// looked at. It opens nothing, so it never blocks on a FIFO.
func CheckRegular(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if k := kind(st.Mode()); k != "" {
		return &NotRegularError{Path: path, Kind: k}
	}
	return nil
}

// Open opens path for reading a stream of at most limit bytes: a regular
// file, or a pipe or FIFO (<(zcat …) on the command line). Reading past
// limit bytes fails with a *TooLargeError. Devices, directories and
// sockets are refused. A FIFO is opened without blocking: one that no
// process writes to reads as empty.
func Open(path string, limit int64) (io.ReadCloser, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	flags := os.O_RDONLY
	switch m := st.Mode(); {
	case m.IsRegular():
	case m&fs.ModeNamedPipe != 0:
		// O_NONBLOCK: open(2) of a FIFO waits for a writer otherwise. Go
		// then reads it through its poller, which waits for data without
		// holding a thread.
		flags |= syscall.O_NONBLOCK
	default:
		return nil, &NotRegularError{Path: path, Kind: kind(m)}
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, err
	}
	return &capped{f: f, path: path, left: limit, limit: limit}, nil
}

// capped reads at most limit bytes and then fails.
type capped struct {
	f           *os.File
	path        string
	left, limit int64
}

func (c *capped) Read(b []byte) (int, error) {
	if c.left <= 0 {
		// One byte more tells a file of exactly limit bytes from a larger one.
		var one [1]byte
		n, err := c.f.Read(one[:])
		if n > 0 {
			return 0, &TooLargeError{Path: c.path, Limit: c.limit}
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return 0, err
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.f.Read(b)
	c.left -= int64(n)
	return n, err
}

func (c *capped) Close() error { return c.f.Close() }

// ReadFile reads the whole of path, refusing more than limit bytes with a
// *TooLargeError (before reading when a regular file's size says so). It
// reads regular files, pipes and FIFOs; devices, directories and sockets
// are refused.
func ReadFile(path string, limit int64) ([]byte, error) {
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Size() > limit {
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	r, err := Open(path, limit)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// FormatBytes prints a byte count in the largest binary unit that divides
// it (64 KiB, 1 MiB), or in bytes.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
