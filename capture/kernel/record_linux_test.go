package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// TestRecorderWritesSessionFile: a recorder filtered on a server's
// address writes that server's TCP_ABORT_ON_CLOSE and the client's
// receive_reset into a real session file, no state event, and the meta
// "kernel" with the counters; a reset on another port is left out.
func TestRecorderWritesSessionFile(t *testing.T) {
	needTracing(t)
	path := filepath.Join(t.TempDir(), "k.db")
	w, err := session.Create(path, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	server := startChild(t, "server", "ssk-rec-srv", []string{"ADDR=127.0.0.1:0"})
	addr := mustAddrPort(t, server.expect(t, "LISTEN "))
	r, err := StartRecorder(context.Background(), w, RecordOptions{Filter: Filter{Endpoints: []netip.AddrPort{addr}}})
	if err != nil {
		t.Fatal(err)
	}
	// Another server's reset, which the filter leaves out.
	other := startChild(t, "server", "ssk-rec-oth", []string{"ADDR=127.0.0.1:0"})
	otherAddr := mustAddrPort(t, other.expect(t, "LISTEN "))
	for _, s := range []struct {
		c    *child
		addr netip.AddrPort
	}{{server, addr}, {other, otherAddr}} {
		dial := startChild(t, "dial", "ssk-rec-dial", []string{"ADDR=" + s.addr.String()})
		dial.expect(t, "CONNECTED ")
		s.c.expect(t, "ACCEPTED 0 ")
		dial.send(t, "linger") // the client resets (SO_LINGER 0: TCP_STATE)
		dial.expect(t, "DONE linger")
	}
	deadlineAt := time.Now().Add(deadline)
	for r.Recorded() < 2 && time.Now().Before(deadlineAt) {
		time.Sleep(20 * time.Millisecond)
	}
	info, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if again, err2 := r.Close(); err2 != nil || again.EventsKept != info.EventsKept {
		t.Errorf("second Close: %+v %v", again, err2)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(info.Instance); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance %s left behind: %v", info.Instance, err)
	}
	rd, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	evs, err := session.All[session.KernelEvent](rd, session.BucketKernelEvents)
	if err != nil {
		t.Fatal(err)
	}
	var sends, recvs int
	for _, e := range evs {
		if e.LocalAddr != addr.String() && e.RemoteAddr != addr.String() {
			t.Errorf("event of another socket recorded: %+v", e)
		}
		switch e.Event {
		case session.KernelSendReset:
			sends++
			if e.Reason != "TCP_STATE" || e.Comm != "ssk-rec-dial" {
				t.Errorf("send_reset %+v, want TCP_STATE by ssk-rec-dial", e)
			}
		case session.KernelReceiveReset:
			recvs++
		default:
			t.Errorf("state event recorded: %+v", e)
		}
	}
	if sends != 1 || recvs != 1 {
		t.Errorf("%d send_reset and %d receive_reset recorded, want 1 and 1:\n%s", sends, recvs, dumpEvents(evs))
	}
	var got session.KernelInfo
	if ok, err := rd.Meta(session.MetaKernel, &got); !ok || err != nil || got.EventsKept != uint64(len(evs)) || got.Stopped.IsZero() || got.Disabled != "" {
		t.Errorf("meta kernel %+v (%v %v), want %d kept and a stop time", got, ok, err, len(evs))
	}
	if s := Summary(got); !strings.Contains(s, "2 reset events recorded") || !strings.Contains(s, "none lost") {
		t.Errorf("summary %q", s)
	}
}

// TestRecorderUnavailable: without tracefs the recorder starts nothing,
// says what is missing in one line, and the session file says so too.
func TestRecorderUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	w, err := session.Create(path, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, startErr := StartRecorder(context.Background(), w, RecordOptions{Tracefs: t.TempDir()})
	var ue *UnavailableError
	if !errors.As(startErr, &ue) || strings.Contains(startErr.Error(), "\n") {
		t.Fatalf("StartRecorder on a plain directory: %v", startErr)
	}
	w.Close()
	rd, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got session.KernelInfo
	if ok, _ := rd.Meta(session.MetaKernel, &got); !ok || got.Disabled != startErr.Error() {
		t.Errorf("meta kernel %+v, want Disabled %q", got, startErr)
	}
	if s := Summary(got); !strings.HasPrefix(s, "kernel evidence: off (kernel evidence unavailable: ") {
		t.Errorf("summary %q", s)
	}
}

// TestSummaryLost: a loss is said as such.
func TestSummaryLost(t *testing.T) {
	s := Summary(session.KernelInfo{EventsKept: 180, EventsRead: 900, EventsLost: 40})
	if !strings.Contains(s, "overflowed: 40 events lost") || !strings.Contains(s, "180 reset events recorded") {
		t.Errorf("summary %q", s)
	}
}

// BenchmarkRecordedReset is the cost per traced reset on the path the
// commands use (run, proxy, replay run, capture --kernel): the four trace
// lines of a reset parsed, the process and owner lookups, the topology
// filter, and the two reset records queued to a real session file and
// committed (the final flush is timed too). Compare with
// BenchmarkTracedReset in one run:
//
//	go test -run '^$' -bench 'TracedReset|RecordedReset' ./capture/kernel
func BenchmarkRecordedReset(b *testing.B) {
	self := os.Getpid()
	lines := benchLines(self)
	w, err := session.Create(filepath.Join(b.TempDir(), "bench.db"), session.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r := &Recorder{w: w}
	c, now := benchCollector(Filter{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:35038")}}, r.sink)
	b.ReportAllocs()
	b.ResetTimer()
	// Each reset gets its own kernel time (distinct records, as distinct
	// resets are), written over the lines' fixed-width timestamp.
	var pos []int
	for _, l := range lines {
		pos = append(pos, bytes.Index(l, []byte(" 308.1984"))+1)
	}
	var digits []byte
	for i := 0; i < b.N; i++ {
		us := 100_000_000 + int64(i)
		digits = strconv.AppendInt(digits[:0], us/1_000_000, 10)
		digits = append(digits, '.')
		digits = append(digits, fmt.Sprintf("%06d", us%1_000_000)...)
		for j, l := range lines {
			copy(l[pos[j]:], digits)
			c.handleLine(l, now)
		}
		if i%4096 == 4095 {
			w.Flush()
		}
	}
	w.Flush()
	b.StopTimer()
	b.ReportMetric(float64(r.Recorded())/float64(b.N), "records/reset")
}
