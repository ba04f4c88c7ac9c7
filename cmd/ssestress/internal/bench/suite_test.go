package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// childEnv marks a re-run of this test binary as a child process.
const childEnv = "SSESTRESS_BENCHSUITE_CHILD"

// TestMain lets the tests start real child processes: the test binary
// re-runs itself with childEnv set and becomes Child, as ssestress bench
// --child does.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		if err := Child(context.Background(), os.Args[1], os.Args[2:], os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testSpawn starts this test binary as a child in role.
func testSpawn(ctx context.Context, role string, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{role}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd
}

func testSuite(t *testing.T, cfg Config) *suite {
	t.Helper()
	if cfg.Spawn == nil {
		cfg.Spawn = testSpawn
	}
	cfg.Toxiproxy = "-"
	cfg.TempDir = t.TempDir()
	cfg.Log = &testLog{t}
	cfg = cfg.withDefaults()
	return &suite{cfg: cfg, res: &Result{}, tmp: cfg.TempDir}
}

type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// figure returns the line named name, failing the test when there is none.
func figure(t *testing.T, figs []Figure, name string) Figure {
	t.Helper()
	for _, f := range figs {
		if f.Name == name {
			return f
		}
	}
	var names []string
	for _, f := range figs {
		names = append(names, f.Name+" ("+f.Status+" "+f.Note+")")
	}
	t.Fatalf("no line %q in %s", name, strings.Join(names, "; "))
	return Figure{}
}

// TestChildRelayForwardsAndReports starts a relay child process in front
// of the load server, streams stamped events through it, and reads the
// child's own usage: CPU grows with the traffic, memory and descriptors
// are the child's.
func TestChildRelayForwardsAndReports(t *testing.T) {
	s := testSuite(t, Config{})
	srv, err := startLoadServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := s.startPath(ctx, pathRelay, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	u0, err := h.usage()
	if err != nil {
		t.Fatal(err)
	}
	if u0.PID == os.Getpid() || u0.PID == 0 {
		t.Fatalf("usage of pid %d: not a child", u0.PID)
	}
	l, err := openStreams(ctx, h.url+"/stream?rate=100", 10, srv.base, true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	st, err := measureWindow(ctx, l, h, 200*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// 10 streams × 100 events/s for 1 s: 1,000 events, with wide
	// tolerance for a loaded machine.
	if st.events < 500 || st.events > 1500 {
		t.Errorf("%d events in %v, want about 1000", st.events, st.elapsed)
	}
	if !st.measured || st.hopCPU <= 0 {
		t.Errorf("relay CPU %v (measured %v): the child's usage did not grow", st.hopCPU, st.measured)
	}
	if st.p50 <= 0 || st.p99 < st.p50 || st.p99 > 5*time.Second {
		t.Errorf("latency p50 %v p99 %v", st.p50, st.p99)
	}
	u1, err := h.usage()
	if err != nil {
		t.Fatal(err)
	}
	if u1.RSS == 0 || u1.FDs < 20 || u1.Goroutines < 20 {
		t.Errorf("relay child usage %+v: want RSS, and the 20 sockets and their goroutines", u1)
	}
}

// TestChildProtocol runs Child in this process over pipes: a bad command
// is answered with an error, stat answers, and the end of its input stops
// it.
func TestChildProtocol(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Child(context.Background(), RoleClients, nil, inR, outW); outW.Close() }()
	br := bufio.NewReader(outR)
	line := func() map[string]any {
		t.Helper()
		b, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		return m
	}
	if h := line(); h["error"] != nil || h["pid"] == nil {
		t.Fatalf("hello %v", h)
	}
	io.WriteString(inW, "frobnicate\n")
	if m := line(); m["error"] == nil {
		t.Errorf("unknown command answered %v, want an error", m)
	}
	io.WriteString(inW, "open not-a-count\n")
	if m := line(); m["error"] == nil {
		t.Errorf("bad open answered %v, want an error", m)
	}
	io.WriteString(inW, "stat gc\n")
	if m := line(); m["error"] != nil || m["rss"] == nil || m["cpu_ns"] == nil {
		t.Errorf("stat answered %v", m)
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Child after end of input: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Child did not stop when its input ended")
	}

	// An unknown role is refused with the error in the first line.
	var out bytes.Buffer
	if err := Child(context.Background(), "juggler", nil, strings.NewReader(""), &out); err == nil || !strings.Contains(out.String(), "unknown child role") {
		t.Errorf("unknown role: %v, %q", err, out.String())
	}
}

// TestLoadRowSmall runs the load row end to end at a small load: every
// path delivers what is offered, and the targets are judged.
func TestLoadRowSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four child processes for about 15 s")
	}
	s := testSuite(t, Config{LoadStreams: 40, Rate: 20, Window: 1500 * time.Millisecond, Rounds: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := runLoad(ctx, s); err != nil {
		t.Fatal(err)
	}
	figs := s.res.Figures
	for _, p := range []string{pathDirect, pathRelay, pathProxy, pathLatency0, pathRecord} {
		f := figure(t, figs, "events/s, "+p)
		// 40 × 20 = 800 events/s offered; a loaded machine may deliver
		// a little less in a 1.5 s window.
		if f.Value < 600 || f.Value > 1000 {
			t.Errorf("%s: %v events/s, want about 800", p, f.Value)
		}
	}
	cpu := figure(t, figs, "CPU per event, proxy process")
	if cpu.Value <= 0 || cpu.Target != "≤ 1.5× relay" || (cpu.Status != Met && cpu.Status != Short) {
		t.Errorf("proxy CPU line %+v", cpu)
	}
	rec := figure(t, figs, "events/s, proxy, recording")
	if rec.Status != Met && rec.Status != Short {
		t.Errorf("recording line not judged: %+v", rec)
	}
	lat := figure(t, figs, "latency p50 / p99, proxy")
	if !strings.Contains(lat.Versus, "Toxiproxy") || lat.Status == "" {
		t.Errorf("proxy latency line %+v: want a Toxiproxy comparison and a status", lat)
	}
	if len(s.loadResults) != 5 {
		t.Errorf("%d load results kept for the allocs row, want 5", len(s.loadResults))
	}
}

// TestConnsRowSmall holds 200 streams in a client child and in a proxy
// child and checks the figures are per stream and plausible.
func TestConnsRowSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("holds streams in child processes for about 10 s")
	}
	s := testSuite(t, Config{HoldStreams: 200})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := runConns(ctx, s); err != nil {
		t.Fatal(err)
	}
	figs := s.res.Figures
	if f := figure(t, figs, "client streams held, one process"); f.Value != 200 || f.Status != Untried {
		t.Errorf("client held %+v: want 200, untried (the target is 15,000)", f)
	}
	if f := figure(t, figs, "client goroutines per stream"); f.Value < 0.9 || f.Value > 1.5 {
		t.Errorf("client goroutines per stream %v, want about 1", f.Value)
	}
	// RSS per stream: a few KiB at least (buffers, a goroutine stack),
	// far below a megabyte.
	for _, name := range []string{"client RSS per stream", "proxy RSS per idle stream", "proxy RSS per stream under traffic"} {
		f := figure(t, figs, name)
		if f.Value < 2 || f.Value > 1024 || (f.Status != Met && f.Status != Short) {
			t.Errorf("%s: %+v", name, f)
		}
	}
	if f := figure(t, figs, "proxy RSS per stream under traffic"); !strings.Contains(f.Note, "received") || strings.Contains(f.Note, "received 0 events") {
		t.Errorf("traffic did not flow: %s", f.Note)
	}
}

// TestCapacity checks the descriptor arithmetic and the message given
// when a process cannot hold what was asked.
func TestCapacity(t *testing.T) {
	if got := capacity(20000, 2); got != 9968 {
		t.Errorf("capacity(20000, 2) = %d, want 9968", got)
	}
	if got := capacity(20000, 1); got != 19936 {
		t.Errorf("capacity(20000, 1) = %d, want 19936", got)
	}
	if got := capacity(10, 1); got != 0 {
		t.Errorf("capacity(10, 1) = %d, want 0", got)
	}
	s := testSuite(t, Config{})
	note := limitNote(15000, 9968, "one proxy process", 20000, 2)
	for _, want := range []string{"15,000", "9,968", "20000", "2 descriptor"} {
		if !strings.Contains(note, want) {
			t.Errorf("limit note %q lacks %q", note, want)
		}
	}
	var f Figure
	s.judgeHeld(&f, 15000, 9968, 9000, note)
	if f.Status != Met || f.Note != note {
		t.Errorf("9,968 of 15,000 asked, target 9,000: %+v", f)
	}
	f = Figure{}
	s.judgeHeld(&f, 15000, 9968, 15000, note)
	if f.Status != Short || f.Shortfall != "short by 5,032" {
		t.Errorf("9,968 held, target 15,000: %+v", f)
	}
	f = Figure{}
	s.judgeHeld(&f, 2000, 2000, 15000, "")
	if f.Status != Untried || !strings.Contains(f.Note, "--streams 15000") {
		t.Errorf("2,000 asked, target 15,000: %+v", f)
	}
}

// TestReplayRow replays a short recording at speed 1 and 10.
func TestReplayRow(t *testing.T) {
	rec := benchRecording(4, time.Second)
	for _, speed := range []float64{1, 10} {
		gaps, lag, err := replayGaps(context.Background(), rec, speed)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, st := range rec.Streams {
			want += len(st.Events) - 1
		}
		if len(gaps) != want || len(lag) == 0 {
			t.Fatalf("speed %v: %d gaps (want %d), %d lag samples", speed, len(gaps), want, len(lag))
		}
		// Generous: the row judges 2 ms; a test on a shared machine
		// only checks the gaps are the recorded ones divided by speed:
		// a gap not divided would be off by 18 ms or more.
		if p50 := percentile(gaps, 50); p50 > 8*time.Millisecond {
			t.Errorf("speed %v: gap error p50 %v", speed, p50)
		}
	}
}

// TestReportFile writes a small report file, reuses it, and times its
// report.
func TestReportFile(t *testing.T) {
	dir := t.TempDir()
	path, err := reportFile(context.Background(), dir, 2000, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Count(session.BucketConns) + r.Count(session.BucketErrors); n != 2000 {
		t.Errorf("%d records, want 2000", n)
	}
	r.Close()
	again, err := reportFile(context.Background(), dir, 2000, func(string, ...any) { t.Error("rewrote the cached file") })
	if err != nil || again != path {
		t.Fatalf("second call: %s, %v", again, err)
	}
	if st2, _ := os.Stat(path); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("cached file was rewritten")
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	if filepath.Dir(path) != dir {
		t.Errorf("file %s not in %s", path, dir)
	}
}

// TestCaptureRow offers packets on loopback (root only).
func TestCaptureRow(t *testing.T) {
	if os.Geteuid() != 0 {
		s := testSuite(t, Config{Quick: true})
		runCapture(context.Background(), s)
		if len(s.res.Figures) != 1 || s.res.Figures[0].Status != Skipped {
			t.Fatalf("without root: %+v, want one skipped line", s.res.Figures)
		}
		return
	}
	s := testSuite(t, Config{Quick: true})
	sent, st, el, err := s.captureRun(context.Background(), 20000, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if sent < 5000 || el <= 0 {
		t.Fatalf("sent %d packets in %v", sent, el)
	}
	// The capture counts every packet it read; what it did not read the
	// kernel counted as dropped.
	if st.Packets+st.KernelDrops < sent {
		t.Errorf("sent %d, captured %d, dropped %d", sent, st.Packets, st.KernelDrops)
	}
}

// TestAllocsRow runs the hot-path benchmarks: the client engine allocates
// nothing per event without ids, and the proxy once per write.
func TestAllocsRow(t *testing.T) {
	if testing.Short() {
		t.Skip("three testing.Benchmark runs of about a second each")
	}
	s := testSuite(t, Config{})
	if err := runAllocs(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	figs := s.res.Figures
	if f := figure(t, figs, "client engine allocs per event"); f.Value > 0.05 {
		t.Errorf("client engine: %v allocs per event, want about 0", f.Value)
	}
	if f := figure(t, figs, "client engine allocs per event with a new id"); f.Value < 0.5 || f.Value > 1.1 {
		t.Errorf("client engine with ids: %v allocs per event, want about 1 (the id string)", f.Value)
	}
	if f := figure(t, figs, "proxy allocs per event, saturated stream"); f.Status == "" || !strings.Contains(f.Text, "per write") {
		t.Errorf("proxy line %+v", f)
	}
}

// TestChunkCounter feeds a chunked body in every split and counts its
// chunks and events.
func TestChunkCounter(t *testing.T) {
	var body string
	for _, piece := range []string{"data: a\n\nda", "ta: b\n\n: c\n\nid: 1\ndata: d\n\n", ""} {
		body += fmt.Sprintf("%X\r\n%s\r\n", len(piece), piece) // the last, empty, ends the body
	}
	for split := 1; split < len(body); split++ {
		var c chunkCounter
		c.feed([]byte(body[:split]))
		c.feed([]byte(body[split:]))
		if c.chunks != 3 || c.events != 4 {
			t.Fatalf("split at %d: %d chunks, %d blank lines; want 3, 4", split, c.chunks, c.events)
		}
	}
}

// TestParseOnly accepts row names and refuses others by name.
func TestParseOnly(t *testing.T) {
	got, err := ParseOnly(" load, conns,load ")
	if err != nil || strings.Join(got, ",") != "load,conns" {
		t.Errorf("ParseOnly = %v, %v", got, err)
	}
	if _, err := ParseOnly("load,bogus"); !errors.Is(err, ErrUnknownRow) || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("bogus row: %v", err)
	}
	if _, err := Run(context.Background(), Config{Only: []string{"nope"}}); !errors.Is(err, ErrUnknownRow) {
		t.Errorf("Run with an unknown row: %v", err)
	}
}

// TestJudgeAndRender checks the status arithmetic and that the table has
// one line per figure, shared notes printed once, and the machine.
func TestJudgeAndRender(t *testing.T) {
	var f Figure
	f.atLeast(0.85, 0.9, "×")
	if f.Status != Short || f.Shortfall != "short by 0.050×" {
		t.Errorf("0.85 vs ≥ 0.9: %+v", f)
	}
	f = Figure{}
	f.atMost(1.2, 1.5, "×")
	if f.Status != Met || f.Shortfall != "" {
		t.Errorf("1.2 vs ≤ 1.5: %+v", f)
	}
	f = Figure{}
	f.below(10, 10, " ms")
	if f.Status != Short {
		t.Errorf("10 vs < 10: %+v", f)
	}
	for v, want := range map[float64]string{1234567: "1,234,567", 999: "999", 0: "0", -4321: "-4,321"} {
		if got := fmtCount(v); got != want {
			t.Errorf("fmtCount(%v) = %q, want %q", v, got, want)
		}
	}
	res := &Result{Machine: ReadMachine(), Layout: Layout, Figures: []Figure{
		{Row: RowLoad, Name: "a", Text: "1", Note: "shared"},
		{Row: RowLoad, Name: "b", Text: "2", Note: "shared", Target: "t", Status: Short, Shortfall: "short by 1"},
		{Row: RowReport, Name: "c", Text: "3", Note: "own", Status: Met},
	}}
	var b bytes.Buffer
	if err := res.RenderTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"a [1]", "b [1]", "c [2]", "[1] shared", "[2] own", "short by 1", "1 met, 1 short", "cores", "load average"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "shared") != 1 {
		t.Errorf("shared note printed %d times", strings.Count(out, "shared"))
	}
	b.Reset()
	if err := res.RenderJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back.Figures) != 3 || back.Figures[1].Shortfall != "short by 1" {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
	if res.Met() {
		t.Error("Met() with a short figure")
	}
}

// TestMachine reads this machine.
func TestMachine(t *testing.T) {
	m := ReadMachine()
	if m.Cores < 1 || m.Go == "" || m.CPU == "" {
		t.Errorf("machine %+v", m)
	}
	if _, err := os.Stat("/proc/loadavg"); err == nil && m.LoadBefore == "" {
		t.Errorf("no load average: %+v", m)
	}
}

// TestLoadStatsMerge: rounds add up; the latency and the rate judged are
// the medians of the rounds'.
func TestLoadStatsMerge(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	var acc loadStats
	acc.merge(loadStats{path: "p", events: 100, elapsed: time.Second, hopCPU: 2 * time.Millisecond, hopMallocs: 50, measured: true, lat: ms(5, 1, 3)})
	acc.merge(loadStats{path: "p", events: 300, elapsed: time.Second, hopCPU: 6 * time.Millisecond, hopMallocs: 150, measured: true, lat: ms(2, 4, 100)})
	acc.finish()
	if acc.events != 400 || acc.perS != 200 || len(acc.rounds) != 2 || acc.medianPerS() != 200 {
		t.Errorf("events %d, %v/s, median %v/s, rounds %d; want 400, 200/s, 200/s, 2", acc.events, acc.perS, acc.medianPerS(), len(acc.rounds))
	}
	if got := acc.cpuPerEvent(); got != 20 {
		t.Errorf("CPU per event %v µs, want 20", got)
	}
	if got := acc.allocsPerEvent(); got != 0.5 {
		t.Errorf("allocs per event %v, want 0.5", got)
	}
	// Round one: p50 3 ms, p99 5 ms; round two: 4 ms, 100 ms.
	if acc.p50 != 3500*time.Microsecond || acc.p99 != 52500*time.Microsecond {
		t.Errorf("p50 %v p99 %v, want the medians 3.5ms and 52.5ms", acc.p50, acc.p99)
	}
	acc.merge(loadStats{path: "p", events: 100, elapsed: time.Second, measured: true, lat: ms(1, 1, 6)})
	acc.finish()
	if acc.p50 != 3*time.Millisecond || acc.p99 != 6*time.Millisecond || acc.medianPerS() != 100 {
		t.Errorf("three rounds: p50 %v p99 %v rate %v, want the middle rounds' 3ms, 6ms, 100/s", acc.p50, acc.p99, acc.medianPerS())
	}
	if got := acc.roundsText(func(r roundStat) string { return fmtMS(r.p99) }); got != "5.00, 100, 6.00" {
		t.Errorf("rounds text %q", got)
	}
	var mixed loadStats
	mixed.merge(loadStats{measured: true})
	mixed.merge(loadStats{measured: false})
	if mixed.measured {
		t.Error("a round without the hop's usage left the merge marked measured")
	}
}
