package limits

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRaiseNoFile(t *testing.T) {
	got, err := RaiseNoFile()
	if err != nil {
		t.Fatal(err)
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	if got != lim.Max || lim.Cur != lim.Max {
		t.Fatalf("soft %d hard %d returned %d", lim.Cur, lim.Max, got)
	}
}

func TestCheckCapacity(t *testing.T) {
	if err := CheckCapacity(10, 1); err != nil {
		t.Fatalf("10 connections: %v", err)
	}
	err := CheckCapacity(1<<40, 2)
	if err == nil || !strings.Contains(err.Error(), "file descriptors") {
		t.Fatalf("huge: %v", err)
	}
}
