package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250 and stime 37
	// ticks (fields 14 and 15).
	line := []byte("4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 37 0 0 20 0 9 0 100 1000000 500 18446744073709551615\n")
	got, err := parseStatCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if got.User != 2500*time.Millisecond || got.System != 370*time.Millisecond {
		t.Fatalf("got %+v, want user 2.5s system 370ms", got)
	}
	for _, bad := range []string{"", "4242 no parens", "4242 (x) S 1 2", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 u s"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestSelfCPUCountsWork burns about 300 ms of CPU in user mode and some in
// the kernel, and checks that both readers see it. Tolerances: the user
// time must grow by at least half the work (a loaded machine only delays
// the loop, which measures CPU, not wall time), and the two readers must
// agree within 50 ms (/proc/<pid>/stat has 10 ms ticks and is read a moment
// later).
func TestSelfCPUCountsWork(t *testing.T) {
	skipIfNoProc(t)
	before, err := SelfCPU()
	if err != nil {
		t.Fatal(err)
	}
	const work = 300 * time.Millisecond
	for {
		now, err := SelfCPU()
		if err != nil {
			t.Fatal(err)
		}
		if now.User-before.User >= work {
			break
		}
		spin(10_000)
		// Some system calls, so System grows too.
		if f, err := os.Open(os.DevNull); err == nil {
			f.Close()
		}
	}
	after, err := SelfCPU()
	if err != nil {
		t.Fatal(err)
	}
	if grew := after.User - before.User; grew < work/2 {
		t.Fatalf("user CPU grew by %v after %v of work", grew, work)
	}
	if after.System <= before.System {
		t.Fatalf("system CPU did not grow: %v → %v", before.System, after.System)
	}
	proc, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := proc.Total() - after.Total(); d < -50*time.Millisecond || d > 50*time.Millisecond+time.Second/userHZ {
		t.Fatalf("/proc says %v, getrusage %v", proc, after)
	}
	if _, err := CPU(1 << 30); err == nil {
		t.Fatal("no error for a pid that cannot exist")
	}
}

var sink uint64

func spin(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink = x
}
