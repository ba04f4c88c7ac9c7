//go:build linux

package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/capture/internal/looptest"
	"github.com/ssestress/ssestress/internal/session"
)

// waitGoroutines waits (bounded) until the goroutine count is back to n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStopIdle: with no packet arriving at all, Stop returns promptly (the
// reader never blocks in a read) and leaves no goroutine behind.
func TestStopIdle(t *testing.T) {
	looptest.NeedRoot(t)
	before := runtime.NumGoroutine()
	c, err := Start(context.Background(), Config{Iface: "lo", Ports: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * pollTimeout)
	start := time.Now()
	st, err := c.Stop()
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	// pollTimeout plus scheduling on a loaded machine.
	if took > 2*time.Second {
		t.Errorf("Stop took %v, want about %v", took, pollTimeout)
	}
	if st.Packets != 0 || st.Stopped.IsZero() || st.Iface != "lo" {
		t.Errorf("stats %+v", st)
	}
	if _, err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	waitGoroutines(t, before)
}

// TestStopUnderTraffic: Stop while packets stream in, with Progress read
// concurrently (run with -race), drains and ends within drainLimit.
func TestStopUnderTraffic(t *testing.T) {
	looptest.NeedRoot(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	before := runtime.NumGoroutine()
	c, err := Start(context.Background(), Config{Iface: "lo", Ports: []int{ln.Addr().(*net.TCPAddr).Port}, Out: filepath.Join(t.TempDir(), "x.pcap")})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetNoDelay(true)
	stopWriting := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-stopWriting:
				return
			default:
			}
			if _, err := conn.Write([]byte("data: x\n\n")); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(looptest.Deadline)
	for c.Progress().Packets < 1000 {
		if time.Now().After(deadline) {
			t.Fatal("no traffic captured")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	st, err := c.Stop()
	took := time.Since(start)
	close(stopWriting)
	<-wrote
	if err != nil {
		t.Fatal(err)
	}
	if took > drainLimit+time.Second {
		t.Errorf("Stop took %v, want at most drainLimit %v", took, drainLimit)
	}
	if st.Written != st.Packets || st.Packets < 1000 {
		t.Errorf("stats %+v", st)
	}
	conn.Close()
	waitGoroutines(t, before+1) // the listener's accept loop started before
}

// TestContextEndsCapture: cancelling the context stops the reader; Stop
// then returns at once.
func TestContextEndsCapture(t *testing.T) {
	looptest.NeedRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Start(ctx, Config{Iface: "lo", Ports: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the capture did not end with its context")
	}
	if _, err := c.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestStartErrors(t *testing.T) {
	looptest.NeedRoot(t)
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists.pcap")
	os.WriteFile(exists, []byte("keep me"), 0o644)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Iface: "nosuch0"}, `no interface "nosuch0"`},
		{Config{Iface: "lo", Out: exists}, "already exists"},
		{Config{Iface: "lo", Ports: []int{0}}, "out of range"},
	} {
		_, err := Start(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep me" {
		t.Error("an existing pcap file was overwritten")
	}
}

func TestPickIface(t *testing.T) {
	for _, target := range []string{"127.0.0.1:8080", "http://127.0.0.1:8090/stream", "localhost:3000", "[::1]:80", ""} {
		name, err := PickIface(context.Background(), target)
		if err != nil {
			t.Fatalf("%q: %v", target, err)
		}
		ifi, err := net.InterfaceByName(name)
		if err != nil || ifi.Flags&net.FlagLoopback == 0 {
			t.Errorf("%q: picked %s, want the loopback interface", target, name)
		}
	}
	// The host's own non-loopback address is reached through lo as well.
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			name, err := PickIface(context.Background(), n.IP.String())
			if ifi, _ := net.InterfaceByName(name); err != nil || ifi == nil || ifi.Flags&net.FlagLoopback == 0 {
				t.Errorf("own address %s: picked %q (%v), want the loopback interface", n.IP, name, err)
			}
			break
		}
	}
}

// TestNotPermitted runs the capture without CAP_NET_RAW (setpriv drops it
// from a child copy of this test binary): Start says so in one line,
// wraps ErrNotPermitted and leaves the reason in the session file.
func TestNotPermitted(t *testing.T) {
	if os.Getenv("CAPTURE_NOT_PERMITTED_CHILD") != "" {
		notPermittedChild(t)
		return
	}
	looptest.NeedRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed: cannot drop CAP_NET_RAW for the child")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), looptest.Deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, "--bounding-set", "-net_raw", "--inh-caps", "-net_raw",
		os.Args[0], "-test.run", "^TestNotPermitted$", "-test.v")
	cmd.Env = append(os.Environ(), "CAPTURE_NOT_PERMITTED_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), "START ERROR: "); ok {
			line = s
		}
	}
	if !strings.Contains(line, "not permitted") || strings.Contains(line, "\n") {
		t.Errorf("child said %q, want one line saying capture is not permitted\n%s", line, out)
	}
	r, err := session.Open(filepath.Join(dir, "run.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	captures, err := r.Captures()
	if err != nil || len(captures) != 1 || !strings.Contains(captures[0].Disabled, "not permitted") {
		t.Errorf("captures = %+v (%v), want one with the reason", captures, err)
	}
}

func notPermittedChild(t *testing.T) {
	dir := os.Getenv("CAPTURE_NOT_PERMITTED_CHILD")
	w, err := session.Create(filepath.Join(dir, "run.db"), session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, err = Start(context.Background(), Config{Iface: "lo", Ports: []int{8080}, Session: w})
	if !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("Start without CAP_NET_RAW: %v, want ErrNotPermitted", err)
	}
	fmt.Println("START ERROR: " + err.Error())
}
