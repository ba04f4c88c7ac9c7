package clients

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// TestMonitorSamples runs the monitor for about half a second at a 100 ms
// interval, not on a terminal: one stored Sample and one plain line per
// interval, plus the final one.
func TestMonitorSamples(t *testing.T) {
	w, path := newRecorder(t)
	counters := &Counters{}
	counters.open()
	counters.Events.Add(1234)
	counters.addError("ECONNRESET")
	var out bytes.Buffer
	m := &Monitor{Interval: 100 * time.Millisecond, Counters: counters, Recorder: w, Out: &out}
	ctx, cancel := context.WithTimeout(context.Background(), 550*time.Millisecond)
	defer cancel()
	m.Run(ctx)

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	samples, err := session.All[session.Sample](r, session.BucketSamples)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// 5 ticks in 550 ms plus the final sample; a loaded machine may skip
	// a tick (the schedule catches up instead of bunching).
	if len(samples) < 4 || len(samples) > 7 || len(lines) != len(samples) {
		t.Fatalf("%d samples and %d lines in 550ms at 100ms:\n%s", len(samples), len(lines), out.String())
	}
	for i, s := range samples {
		if s.Active != 1 || s.Events != 1234 || s.Errors["ECONNRESET"] != 1 || s.Goroutines < 1 || s.HeapAlloc == 0 {
			t.Fatalf("sample %d: %+v", i, s)
		}
		if runtime.GOOS == "linux" && (s.RSS == 0 || s.FDs < 3) {
			t.Fatalf("sample %d without process figures: %+v", i, s)
		}
		if s.TimerLag < 0 || s.TimerLag.D() > 5*time.Second {
			t.Fatalf("sample %d: timer lag %v", i, s.TimerLag)
		}
		if i > 0 && s.Uptime <= samples[i-1].Uptime {
			t.Fatalf("uptime not increasing: %v after %v", s.Uptime, samples[i-1].Uptime)
		}
	}
	if !strings.Contains(lines[0], "active 1") || !strings.Contains(lines[0], "errors 1 (ECONNRESET 1)") {
		t.Fatalf("status line %q", lines[0])
	}
	if m.PeakMemory() == 0 {
		t.Fatal("no peak memory")
	}
}

// TestMonitorTerminalRewritesOneLine: on a terminal the status is one line
// rewritten with \r, ended by a newline when the monitor stops.
func TestMonitorTerminalRewritesOneLine(t *testing.T) {
	var out bytes.Buffer
	m := &Monitor{Interval: 50 * time.Millisecond, Counters: &Counters{}, Out: &out, Terminal: true}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	m.Run(ctx)
	s := out.String()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || strings.Count(s, "\r") < 3 {
		t.Fatalf("terminal output %q", s)
	}
}

func TestBytesAndErrorsFormat(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 14_890_000: "14.2 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := FormatErrors(map[string]int64{"EOF": 1, "ECONNRESET": 3, "HTTP_502": 1}); got != "ECONNRESET 3, EOF 1, HTTP_502 1" {
		t.Errorf("FormatErrors = %q", got)
	}
}

// TestMonitorSampleCPU: every sample carries the process's CPU time, which
// only grows, so the report can state the tool's own CPU.
func TestMonitorSampleCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("CPU times are read on Linux")
	}
	m := &Monitor{Counters: &Counters{}}
	first := m.Sample(0)
	deadline := time.Now().Add(10 * time.Second)
	x := uint64(1)
	for time.Now().Before(deadline) {
		for range 100_000 {
			x = x*6364136223846793005 + 1
		}
		if s := m.Sample(0); (s.CPUUser + s.CPUSystem).D() >= (first.CPUUser+first.CPUSystem).D()+20*time.Millisecond {
			if s.CPUUser < first.CPUUser || s.CPUSystem < first.CPUSystem {
				t.Fatalf("CPU times went back: %v/%v then %v/%v", first.CPUUser, first.CPUSystem, s.CPUUser, s.CPUSystem)
			}
			return
		}
	}
	t.Fatalf("CPU time did not grow by 20 ms in 10 s of spinning (first sample %v user, %v system; %d)", first.CPUUser, first.CPUSystem, x)
}

// TestMonitorServerTCPStates: with a server pid (here this process, which
// holds a listening socket and a connected client socket) the samples carry its
// threads and its TCP sockets by state.
func TestMonitorServerTCPStates(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, path := newRecorder(t)
	m := &Monitor{Interval: 50 * time.Millisecond, Counters: &Counters{}, Recorder: w, Out: io.Discard, ServerPID: os.Getpid()}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
	defer cancel()
	m.Run(ctx)
	w.Close()
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	samples, _ := session.All[session.Sample](r, session.BucketSamples)
	if len(samples) == 0 {
		t.Fatal("no samples")
	}
	s := samples[len(samples)-1]
	if s.ServerThreads < 1 || s.ServerTCP["LISTEN"] < 1 || s.ServerTCP["ESTABLISHED"] < 1 {
		t.Fatalf("server threads %d, TCP states %v", s.ServerThreads, s.ServerTCP)
	}
}
