package inputfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// within fails the test if fn does not return within d: a FIFO must not
// block a reader.
func within(t *testing.T, d time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still blocked after %v", d)
	}
}

func mkfifo(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return p
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte("0123456789"), 0o644)
	if b, err := ReadFile(small, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("a file of exactly the limit: %q, %v", b, err)
	}
	var tl *TooLargeError
	if _, err := ReadFile(small, 9); !errors.As(err, &tl) || tl.Limit != 9 || tl.Path != small || !errors.Is(err, ErrTooLarge) {
		t.Errorf("a file over the limit: %v", err)
	} else if msg := err.Error(); msg != small+" is larger than 9 bytes, the most read from such a file" {
		t.Errorf("message %q", msg)
	}
	if _, err := ReadFile(small, 1<<20); err != nil {
		t.Error(err)
	}
	var nr *NotRegularError
	if _, err := ReadFile("/dev/zero", 1<<20); !errors.As(err, &nr) || nr.Kind != "a character device" {
		t.Errorf("/dev/zero: %v", err)
	}
	if _, err := ReadFile(dir, 1<<20); !errors.As(err, &nr) || nr.Kind != "a directory" || err.Error() != dir+" is a directory, not a regular file" {
		t.Errorf("a directory: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "none"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

// TestFIFO: a FIFO nobody writes to reads as empty at once; one whose
// writer sends more than the limit is refused at the limit; a pipe
// (<(cmd) on a shell's command line) is read whole.
func TestFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := mkfifo(t, dir)
	within(t, 5*time.Second, func() {
		if b, err := ReadFile(fifo, 1<<20); err != nil || len(b) != 0 {
			t.Errorf("a FIFO with no writer: %q, %v", b, err)
		}
	})
	// A writer that never stops: refused at the limit.
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		buf := bytes.Repeat([]byte("x"), 4096)
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}()
	within(t, 10*time.Second, func() {
		// The writer may not have opened the FIFO yet: wait for it.
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, err := ReadFile(fifo, 64<<10)
			if err == nil && len(b) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("an endless FIFO: %d bytes, %v", len(b), err)
			}
			return
		}
	})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.Write([]byte("token-from-a-pipe\n")); w.Close() }()
	within(t, 5*time.Second, func() {
		b, err := ReadFile("/proc/self/fd/"+itoa(int(r.Fd())), 1024)
		if err != nil || string(b) != "token-from-a-pipe\n" {
			t.Errorf("a pipe: %q, %v", b, err)
		}
	})
	r.Close()
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestOpenStream: Open reads a stream up to its limit and fails past it.
func TestOpenStream(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "log")
	os.WriteFile(p, bytes.Repeat([]byte("a"), 1000), 0o644)
	f, err := Open(p, 999)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if !errors.Is(err, ErrTooLarge) || len(b) != 999 {
		t.Errorf("past the limit: %d bytes, %v", len(b), err)
	}
	f, _ = Open(p, 1000)
	if b, err := io.ReadAll(f); err != nil || len(b) != 1000 {
		t.Errorf("at the limit: %d bytes, %v", len(b), err)
	}
	f.Close()
	if _, err := Open("/dev/zero", 10); !errors.Is(err, ErrNotRegular) {
		t.Errorf("/dev/zero: %v", err)
	}
}

// TestCheckRegular: session files and pcaps must be regular files; the
// check opens nothing, so a FIFO does not block it.
func TestCheckRegular(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, nil, 0o644)
	if err := CheckRegular(p); err != nil {
		t.Error(err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(p, link)
	if err := CheckRegular(link); err != nil {
		t.Errorf("a link to a file: %v", err)
	}
	fifo := mkfifo(t, dir)
	for path, kind := range map[string]string{fifo: "a FIFO (named pipe)", dir: "a directory", "/dev/null": "a character device"} {
		within(t, 5*time.Second, func() {
			var nr *NotRegularError
			if err := CheckRegular(path); !errors.As(err, &nr) || nr.Kind != kind {
				t.Errorf("%s: %v, want %s", path, err, kind)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{1 << 20: "1 MiB", 64 << 10: "64 KiB", 1 << 30: "1 GiB", 1000: "1000 bytes", 3 << 19: "1536 KiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
