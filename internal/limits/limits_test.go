package limits

import (
	"errors"
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
	err := CheckCapacity(1<<30, 2)
	var ce *CapacityError
	if !errors.As(err, &ce) || ce.Conns != 1<<30 || ce.Need != 2<<30+reserve || !strings.Contains(err.Error(), "file descriptors") {
		t.Fatalf("huge: %v", err)
	}
	if strings.Contains(err.Error(), "--") {
		t.Fatalf("%q names a flag: the command does", err)
	}
}
