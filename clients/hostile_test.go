package clients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/procstat"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// heapCeiling is the most Go heap in use (after a GC) that the client may
// hold while a hostile server streams at it: the bounds on a line
// (sse.DefaultMaxLine, 1 MiB), an event (sse.DefaultMaxEvent, 16 MiB) and
// the response headers (DefaultMaxHeaderBytes, 1 MiB) plus the test
// binary's own heap, with room to spare; a client that buffers what it is
// sent would pass it within a fraction of a second at loopback speed.
const heapCeiling = 64 << 20

// heapWatch samples the heap in use after a forced GC while a case runs.
type heapWatch struct {
	stop chan struct{}
	done chan struct{}
	max  atomic.Uint64
	n    atomic.Int64
}

func watchHeap() *heapWatch {
	h := &heapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			h.n.Add(1)
			if ms.HeapInuse > h.max.Load() {
				h.max.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

// finish stops the sampling and returns the highest reading.
func (h *heapWatch) finish() (uint64, int64) {
	close(h.stop)
	<-h.done
	return h.max.Load(), h.n.Load()
}

// hostileServer accepts loopback connections and hands each to serve, which
// owns it. sent counts the body bytes the handlers wrote.
type hostileServer struct {
	ln     net.Listener
	sent   atomic.Int64
	wg     sync.WaitGroup
	closed chan struct{} // closed when the test ends: handlers that hang wait on it
}

func startHostile(t *testing.T, serve func(s *hostileServer, c net.Conn)) *hostileServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &hostileServer{ln: ln, closed: make(chan struct{})}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		close(s.closed)
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); serve(s, c) }()
		}
	}()
	return s
}

func (s *hostileServer) URL() string { return "http://" + s.ln.Addr().String() + "/stream" }

// readRequest reads the request head so the client's write completes.
func readRequest(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(testTimeout))
	_, err := http.ReadRequest(bufio.NewReader(c))
	c.SetReadDeadline(time.Time{})
	return err == nil
}

// pour writes piece again and again, up to limit bytes (0: until the
// client goes away), counting what was sent. It never holds more than
// piece in memory.
func (s *hostileServer) pour(c net.Conn, piece []byte, limit int64) {
	var sent int64
	for limit == 0 || sent < limit {
		n, err := c.Write(piece)
		sent += int64(n)
		s.sent.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// plainHeaders is an event-stream response whose body runs until the
// connection closes, so every byte the server writes reaches the parser.
const plainHeaders = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"

// gib is the size of the "1 GB event".
const gib = 1 << 30

// TestHostileUpstream runs one client against servers that misbehave in
// each way that can exhaust a naive client: endless lines in the headers
// and in the body, a 1 GiB event (generated on the fly, in one line and in
// 64 KiB data lines), binary garbage instead of a response and as a body,
// no response at all, and a server that accepts and never reads. Each case
// must end its attempt with a classified error recorded in a real session
// file, and the Go heap in use (after GC, sampled every 25 ms while the
// server streams) must stay under heapCeiling.
func TestHostileUpstream(t *testing.T) {
	// A request larger than the loopback socket buffers (4 MiB send, up to
	// 6 MiB receive): its write blocks when the server does not read.
	bigHeader := func() http.Header { return http.Header{"X-Filler": {strings.Repeat("f", 16<<20)}} }
	garbage := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(8, 8))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		name   string
		serve  func(s *hostileServer, c net.Conn)
		header func() http.Header
		class  string
		// maxSent bounds what the server got to send before the client cut
		// it off (0: not checked).
		maxSent int64
	}{
		{"endless status line", func(s *hostileServer, c net.Conn) {
			if readRequest(c) {
				io.WriteString(c, "HTTP/1.1 200 ")
				s.pour(c, bytes.Repeat([]byte("A"), 64<<10), 0)
			}
		}, nil, errclass.HeaderTooLong, 64 << 20},
		{"endless header line", func(s *hostileServer, c net.Conn) {
			if readRequest(c) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Junk: ")
				s.pour(c, bytes.Repeat([]byte("B"), 64<<10), 0)
			}
		}, nil, errclass.HeaderTooLong, 64 << 20},
		{"endless header list", func(s *hostileServer, c net.Conn) {
			if readRequest(c) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
				s.pour(c, []byte(strings.Repeat("X-Many: header\r\n", 4096)), 0)
			}
		}, nil, errclass.HeaderTooLong, 64 << 20},
		{"endless line without a newline", func(s *hostileServer, c net.Conn) {
			if readRequest(c) {
				io.WriteString(c, plainHeaders+"data: ")
				s.pour(c, bytes.Repeat([]byte("x"), 64<<10), 0)
			}
		}, nil, errclass.LineTooLong, 64 << 20},
		{"1 GiB event in one line", func(s *hostileServer, c net.Conn) {
			if readRequest(c) {
				io.WriteString(c, plainHeaders+"id: 1\ndata: ")
				s.pour(c, bytes.Repeat([]byte("y"), 64<<10), gib)
				io.WriteString(c, "\n\n")
			}
		}, nil, errclass.LineTooLong, 64 << 20},
		{"1 GiB event in 64 KiB data lines", func(s *hostileServer, c net.Conn) {
			if readRequest(c) {
				io.WriteString(c, plainHeaders+"id: 1\n")
				line := append(append([]byte("data: "), bytes.Repeat([]byte("z"), 64<<10-7)...), '\n')
				s.pour(c, line, gib)
				io.WriteString(c, "\n")
			}
		}, nil, errclass.EventTooLong, 128 << 20},
		{"binary garbage instead of a response", func(s *hostileServer, c net.Conn) {
			if readRequest(c) {
				s.pour(c, garbage, 0)
			}
		}, nil, errclass.BadResponse, 64 << 20},
		{"binary garbage as the body", func(s *hostileServer, c net.Conn) {
			if readRequest(c) {
				io.WriteString(c, plainHeaders)
				s.pour(c, garbage, 64<<20)
				c.Close()
			}
		}, nil, errclass.EOF, 0},
		{"binary garbage in a chunked body", func(s *hostileServer, c net.Conn) {
			if readRequest(c) {
				io.WriteString(c, sseHeaders)
				fmt.Fprintf(c, "%x\r\ndata: ok\n\n\r\n", len("data: ok\n\n"))
				s.pour(c, garbage, 0)
			}
		}, nil, errclass.BadResponse, 64 << 20},
		{"response that never sends headers", func(s *hostileServer, c net.Conn) {
			readRequest(c)
			io.Copy(io.Discard, c) // holds the connection open, says nothing
		}, nil, errclass.ETIMEDOUT, 0},
		{"accepts and never reads", func(s *hostileServer, c net.Conn) {
			<-s.closed
		}, nil, errclass.ETIMEDOUT, 0},
		{"accepts and never reads a large request", func(s *hostileServer, c net.Conn) {
			buf := make([]byte, 1)
			c.Read(buf) // reads one byte, then nothing: the client's write blocks
			<-s.closed
		}, bigHeader, errclass.ETIMEDOUT, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startHostile(t, tc.serve)
			w, path := newRecorder(t)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			failed := make(chan *session.ErrorRecord, 1)
			// The cases that must time out get a short header timeout;
			// the others a long one, so a client that buffers an endless
			// header until the timeout would show in the heap.
			headerTimeout := 10 * time.Second
			if tc.class == errclass.ETIMEDOUT {
				headerTimeout = 750 * time.Millisecond
			}
			var header http.Header
			if tc.header != nil {
				header = tc.header()
			}
			opts := &Options{
				Transport: &HTTP1{HeaderTimeout: headerTimeout},
				Header:    header,
				Recorder:  w, Counters: &Counters{},
				OnError: func(_ *Stream, rec *session.ErrorRecord) {
					select {
					case failed <- rec:
					default:
					}
					cancel()
				},
			}
			u, _ := ParseTarget(srv.URL())
			heap := watchHeap()
			start := time.Now()
			runErr := make(chan error, 1)
			go func() { runErr <- NewStream("c0000", "", u, opts).Run(ctx) }()
			var rec *session.ErrorRecord
			select {
			case rec = <-failed:
			case <-time.After(testTimeout + time.Second):
			}
			took := time.Since(start)
			<-runErr
			peak, readings := heap.finish()
			if rec == nil {
				t.Fatalf("no error after %v (the server sent %d bytes)", took, srv.sent.Load())
			}
			t.Logf("%s after %v: %s; server sent %s; peak heap in use %s (%d readings)",
				rec.Class, took.Round(time.Millisecond), rec.Message, Bytes(uint64(srv.sent.Load())), Bytes(peak), readings)
			if rec.Class != tc.class {
				t.Errorf("class %s (%s), want %s", rec.Class, rec.Message, tc.class)
			}
			if peak > heapCeiling {
				t.Errorf("heap in use reached %s, ceiling %s", Bytes(peak), Bytes(heapCeiling))
			}
			if tc.maxSent > 0 && srv.sent.Load() > tc.maxSent {
				t.Errorf("the server got to send %s before the client stopped reading", Bytes(uint64(srv.sent.Load())))
			}
			if tc.class == errclass.ETIMEDOUT && (took < headerTimeout || took > headerTimeout+5*time.Second) {
				t.Errorf("timed out after %v, header timeout %v", took, headerTimeout)
			}
			_, errs := readBack(t, w, path)
			if len(errs) != 1 || errs[0].Class != tc.class {
				t.Errorf("session file holds %d errors (%+v), want one %s", len(errs), errs, tc.class)
			}
		})
	}
}

// emfileChildEnv makes the test binary run TestEMFILEChild as the child of
// TestEMFILEBacksOff; it holds the URL of the parent's server.
const emfileChildEnv = "SSESTRESS_EMFILE_CHILD_URL"

// emfileWindow is how long the child keeps every descriptor taken.
const emfileWindow = 2 * time.Second

// emfileResult is what the child reports on its last stdout line.
type emfileResult struct {
	Attempts   int64         `json:"attempts"`     // connection attempts while out of descriptors
	CPU        time.Duration `json:"cpu_ns"`       // CPU (user+system) the child used in that window
	Errors     int64         `json:"emfile"`       // EMFILE errors counted by the Counters
	Recovered  time.Duration `json:"recovered_ns"` // from freeing descriptors to the next event
	ErrorClass string        `json:"class"`
}

// TestEMFILEBacksOff: a client out of file descriptors must back off, not
// spin. The parent serves a stream that advertises retry: 0 and ends after
// one event, so an EventSource reconnects at once, as the server asked. The
// child (this test binary re-executed) lowers RLIMIT_NOFILE to 1024 (soft
// and hard, so nothing can raise it back), connects once, then takes every
// free descriptor: each reconnect fails with EMFILE. For emfileWindow the
// child must use little CPU (a spinning client uses a whole core) and make
// few attempts; each failure is counted as EMFILE; once descriptors are
// free again the stream recovers within the backoff cap.
func TestEMFILEBacksOff(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RLIMIT_NOFILE and getrusage checked on Linux")
	}
	var served atomic.Int64
	srv := startHostile(t, func(s *hostileServer, c net.Conn) {
		if !readRequest(c) {
			return
		}
		n := served.Add(1)
		fmt.Fprintf(c, "%sretry: 0\nid: %d\ndata: tick\n\n", plainHeaders, n)
		c.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestEMFILEChild$", "-test.v")
	cmd.Env = append(os.Environ(), emfileChildEnv+"="+srv.URL())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var res emfileResult
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines {
		if j, ok := strings.CutPrefix(l, "EMFILE-RESULT "); ok {
			if err := json.Unmarshal([]byte(j), &res); err != nil {
				t.Fatal(err)
			}
		}
	}
	if res.ErrorClass == "" {
		t.Fatalf("no result from the child:\n%s", out)
	}
	t.Logf("out of descriptors for %v: %d attempts, %v CPU, %d EMFILE counted; recovered %v after descriptors were freed",
		emfileWindow, res.Attempts, res.CPU, res.Errors, res.Recovered)
	// Tolerances: a spinning client makes thousands of attempts and uses
	// about emfileWindow of CPU; backing off from 100 ms doubling makes
	// about five. CPU under a tenth of the window leaves room for the
	// race detector, GC and the session writer on a loaded machine.
	if res.ErrorClass != errclass.EMFILE || res.Errors < 1 {
		t.Errorf("failures classified %q, %d EMFILE counted", res.ErrorClass, res.Errors)
	}
	if res.Attempts > 20 {
		t.Errorf("%d attempts in %v without descriptors: the client spins", res.Attempts, emfileWindow)
	}
	if res.CPU > emfileWindow/10 {
		t.Errorf("the child used %v of CPU in %v without descriptors", res.CPU, emfileWindow)
	}
	if res.Recovered <= 0 || res.Recovered > maxLocalBackoff+3*time.Second {
		t.Errorf("recovered after %v, backoff cap %v", res.Recovered, maxLocalBackoff)
	}
}

// TestEMFILEChild is the child half of TestEMFILEBacksOff; it does nothing
// unless started by it.
func TestEMFILEChild(t *testing.T) {
	url := os.Getenv(emfileChildEnv)
	if url == "" {
		t.Skip("runs as the child of TestEMFILEBacksOff")
	}
	lim := unix.Rlimit{Cur: 1024, Max: 1024}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	w, path := newRecorder(t)
	counters := &Counters{}
	var (
		mu        sync.Mutex
		fillers   []*os.File
		attempts  atomic.Int64
		lastClass atomic.Value
		gotEvent  = make(chan time.Time, 64)
	)
	// fill takes every free descriptor.
	fill := func() {
		mu.Lock()
		defer mu.Unlock()
		for {
			f, err := os.Open(os.DevNull)
			if err != nil {
				if !errors.Is(err, unix.EMFILE) {
					t.Errorf("filling descriptors: %v", err)
				}
				return
			}
			fillers = append(fillers, f)
		}
	}
	opts := &Options{
		Recorder: w, Counters: counters,
		OnFrame: func(_ *Stream, f *sse.Frame, at time.Time) {
			if f.Kind == sse.KindEvent {
				gotEvent <- at
			}
		},
		OnReconnect: func(_ *Stream, attempt int, _ time.Duration) {
			attempts.Add(1)
			if attempt == 1 {
				fill() // the first connection is closed: take its descriptor too
			}
		},
		OnError: func(_ *Stream, rec *session.ErrorRecord) { lastClass.Store(rec.Class) },
	}
	u, _ := ParseTarget(url)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- NewStream("c0000", "", u, opts).Run(ctx) }()
	select {
	case <-gotEvent:
	case <-ctx.Done():
		t.Fatal("no first event")
	}
	// Wait for the first EMFILE, then measure a window without descriptors.
	for counters.Errors()[errclass.EMFILE] == 0 {
		if ctx.Err() != nil {
			t.Fatalf("no EMFILE error (errors %v)", counters.Errors())
		}
		time.Sleep(time.Millisecond)
	}
	for len(gotEvent) > 0 {
		<-gotEvent
	}
	cpu0, err := procstat.SelfCPU()
	if err != nil {
		t.Fatal(err)
	}
	att0 := attempts.Load()
	time.Sleep(emfileWindow)
	cpu1, _ := procstat.SelfCPU()
	res := emfileResult{Attempts: attempts.Load() - att0, CPU: cpu1.Total() - cpu0.Total(), Errors: counters.Errors()[errclass.EMFILE]}
	res.ErrorClass, _ = lastClass.Load().(string)

	// Free the descriptors: the stream must come back.
	mu.Lock()
	for _, f := range fillers {
		f.Close()
	}
	fillers = nil
	mu.Unlock()
	freed := time.Now()
	select {
	case at := <-gotEvent:
		res.Recovered = at.Sub(freed)
	case <-ctx.Done():
	}
	cancel()
	<-done
	w.Close()
	if r, err := session.Open(path); err == nil {
		r.Close()
	}
	j, _ := json.Marshal(res)
	fmt.Printf("EMFILE-RESULT %s\n", j)
}
