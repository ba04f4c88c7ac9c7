//go:build linux

package capture

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/capture/internal/looptest"
	"github.com/ssestress/ssestress/internal/session"
)

// tcpdumpRun is a tcpdump writing a file in the background.
type tcpdumpRun struct {
	cmd  *exec.Cmd
	file string
	done chan error
}

// startTcpdump starts tcpdump -w and returns once it says it is listening.
func startTcpdump(t *testing.T, bin, file, filter string, args ...string) *tcpdumpRun {
	t.Helper()
	// A 32 MiB buffer: with the default one, tcpdump's ring holds only a
	// few 256 KiB frames in immediate mode and the kernel drops packets.
	all := append([]string{"--immediate-mode", "-U", "-n", "-B", "32768", "-w", file}, args...)
	all = append(all, filter)
	cmd := exec.Command(bin, all...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	run := &tcpdumpRun{cmd: cmd, file: file, done: make(chan error, 1)}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.Contains(sc.Text(), "listening on") {
				select {
				case listening <- sc.Text():
				default:
				}
			}
		}
		run.done <- fmt.Errorf("%v: %s", cmd.Wait(), strings.Join(lines, "; "))
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})
	select {
	case <-listening:
	case err := <-run.done:
		t.Fatalf("tcpdump %v ended: %v", args, err)
	case <-time.After(looptest.Deadline):
		t.Fatalf("tcpdump %v did not start listening", args)
	}
	return run
}

// stop waits until the file holds want packets, then stops tcpdump.
func (r *tcpdumpRun) stop(t *testing.T, want uint64) {
	t.Helper()
	deadline := time.Now().Add(looptest.Deadline)
	for {
		fr, err := ReadFile(r.file, nil)
		if err == nil && fr.Packets >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump file %s: %v packets of %d after %v (%v)", r.file, fr, want, looptest.Deadline, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-r.done:
	case <-time.After(looptest.Deadline):
		t.Fatal("tcpdump did not stop on SIGINT")
	}
}

// TestTcpdumpFileSameAttribution: the server-through-proxy chain captured
// at the same time by the live capture and by tcpdump (loopback Ethernet,
// and the "any" device in both cooked formats, those two cut to 128 bytes
// a packet) gives the same attribution
// from every file as live, record for record; so does the capture's own
// pcap file read back.
func TestTcpdumpFileSameAttribution(t *testing.T) {
	looptest.NeedRoot(t)
	bin, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed (apt-get install -y tcpdump; .ci/run installs it): skipping the comparison with tcpdump files")
	}
	l, srv, rl := proxyLab(t)
	filter := fmt.Sprintf("tcp port %d or tcp port %d", srv.Port, rl.port())
	runs := map[string]*tcpdumpRun{
		"lo (Ethernet)": startTcpdump(t, bin, filepath.Join(l.dir, "lo.pcap"), filter, "-i", "lo", "-s", "0"),
		"any (SLL2)":    startTcpdump(t, bin, filepath.Join(l.dir, "any2.pcap"), filter, "-i", "any", "-y", "LINUX_SLL2", "-s", "128"),
		"any (SLL)":     startTcpdump(t, bin, filepath.Join(l.dir, "any1.pcap"), filter, "-i", "any", "-y", "LINUX_SLL", "-s", "128"),
		"our pcap file": nil,
	}
	res := serverResetThroughProxy(t, l, srv, rl)
	checkChainThroughProxy(t, res, srv, rl)

	for name, run := range runs {
		file := l.pcap
		if run != nil {
			run.stop(t, l.stats.Packets)
			file = run.file
		}
		fr, err := ReadFile(file, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fr.Packets != l.stats.Packets {
			t.Errorf("%s: %d packets, the live capture processed %d", name, fr.Packets, l.stats.Packets)
		}
		got := attributeFile(t, l.path, map[string][]session.Flow{FileCaptureID(file): fr.Flows})
		sameAttribution(t, name, got, res)
	}
}

// timeTolerance is how far apart two packet sockets may stamp the same
// packet: the kernel stamps each socket's copy on its own (measured: 1-2 µs).
const timeTolerance = 100 * time.Microsecond

var durationText = regexp.MustCompile(`[0-9.<]+ (ms|s)\b`)

// sameAttribution compares two attributions of the same traffic field by
// field: times within timeTolerance, the capture's name aside, everything
// else exactly.
func sameAttribution(t *testing.T, name string, got, want *attribution.Result) {
	t.Helper()
	if len(got.Segments) != len(want.Segments) {
		t.Errorf("%s: %d segments, live %d", name, len(got.Segments), len(want.Segments))
		return
	}
	near := func(a, b time.Duration) bool { d := a - b; return d < timeTolerance && d > -timeTolerance }
	for i := range want.Segments {
		g, w := got.Segments[i], want.Segments[i]
		if !near(g.Time.Sub(w.Time), 0) || !near(g.Age.D(), w.Age.D()) || !near(g.Idle.D(), w.Idle.D()) {
			t.Errorf("%s: segment %d time/age/idle %v/%v/%v, live %v/%v/%v", name, i, g.Time, g.Age, g.Idle, w.Time, w.Age, w.Idle)
		}
		for _, s := range []*attribution.Segment{&g, &w} {
			s.Time, s.Age, s.Idle, s.Flow, s.Captures, s.Chain = time.Time{}, 0, 0, "", nil, durationText.ReplaceAllString(s.Chain, "D")
			if s.Explains != nil {
				e := *s.Explains
				e.Age, e.Idle = 0, 0
				s.Explains = &e
			}
			for k := range s.Evidence {
				s.Evidence[k] = durationText.ReplaceAllString(s.Evidence[k], "D")
			}
		}
		if a, b := jsonOf(t, g), jsonOf(t, w); a != b {
			t.Errorf("%s: segment %d differs from live\n got  %s\n want %s", name, i, a, b)
		}
	}
	if a, b := durationText.ReplaceAllString(got.Verdict.Statement, "D"), durationText.ReplaceAllString(want.Verdict.Statement, "D"); a != b {
		t.Errorf("%s: verdict %q, live %q", name, a, b)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
