package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// rawServer accepts connections on a free loopback port and gives each to
// handle, which owns it until done is closed (at cleanup, when the
// connections are closed too); it returns the server's URL.
func rawServer(t *testing.T, handle func(c net.Conn, done <-chan struct{})) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c, done)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// readHead reads a request head (up to the blank line).
func readHead(c net.Conn) *bufio.Reader {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			break
		}
	}
	c.SetReadDeadline(time.Time{})
	return br
}

const (
	sseHead        = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
	sseChunkedHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)

// writeChunk writes p as one chunk of a chunked body.
func writeChunk(w io.Writer, p []byte) error {
	if _, err := fmt.Fprintf(w, "%x\r\n", len(p)); err != nil {
		return err
	}
	if _, err := w.Write(p); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}

// heapCeiling samples HeapInuse after a GC every 50 ms until stop is
// called, and returns the largest.
func heapCeiling() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := func() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > peak.Load() {
			peak.Store(ms.HeapInuse)
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		sample()
		return peak.Load()
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// pull GETs url and reads the body into a hash until it ends; it returns
// the bytes read, their hash, the status and the error that ended it.
func pull(t *testing.T, url string, d time.Duration) (int64, [32]byte, int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client().Do(req)
	if err != nil {
		return 0, [32]byte{}, 0, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return n, sum, resp.StatusCode, err
}

// TestHostileUpstream: an upstream that misbehaves never makes the proxy
// hold memory or hang; each case ends in a classified error recorded on
// the upstream hop.
func TestHostileUpstream(t *testing.T) {
	t.Run("endless line", func(t *testing.T) {
		up := rawServer(t, func(c net.Conn, _ <-chan struct{}) {
			readHead(c)
			io.WriteString(c, sseHead+"data: ")
			chunk := bytes.Repeat([]byte("x"), 32<<10)
			for i := 0; i < 2048; i++ { // 64 MB at most
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		})
		w, path := newSession(t)
		p := startProxy(t, Config{Upstream: up, Session: w, MaxEventSize: 1 << 20})
		n, _, status, err := pull(t, p.URL()+"/s", 20*time.Second)
		// The reset drops what is still in flight: the client gets up to
		// the limit, then ECONNRESET.
		if status != 200 || errclass.Classify(err) != errclass.ECONNRESET || n > 1<<20+64<<10 {
			t.Fatalf("client read %d bytes, status %d, then %v", n, status, err)
		}
		hops, _ := readSession(t, p, w, path)
		if up := hopRecord(t, hops, session.HopUpstream); up.Class != errclass.LineTooLong || up.ClosedBy != session.ClosedBySelf ||
			up.BytesDown < 1<<20 || up.BytesDown > 2<<20 {
			t.Fatalf("upstream hop %+v", up)
		}
		if e := p.Stats().Errors["upstream:"+errclass.LineTooLong]; e != 1 {
			t.Errorf("errors %v", p.Stats().Errors)
		}
	})

	t.Run("huge event", func(t *testing.T) {
		size := int64(1 << 30)
		if testing.Short() {
			size = 64 << 20 // the 1 GB event runs without -short
		}
		// The event, then the body cut (no last chunk): every byte reaches
		// the client before the cut does (--on-upstream-error=abort; a
		// reset would drop what is still in flight).
		up := rawServer(t, func(c net.Conn, _ <-chan struct{}) {
			readHead(c)
			io.WriteString(c, sseChunkedHead)
			writeChunk(c, []byte("data: "))
			chunk := bytes.Repeat([]byte("y"), 64<<10)
			for sent := int64(0); sent < size; sent += int64(len(chunk)) {
				if writeChunk(c, chunk) != nil {
					return
				}
			}
			writeChunk(c, []byte("\n\n"))
			c.Close()
		})
		w, path := newSession(t)
		p := startProxy(t, Config{Upstream: up, Session: w, OnUpstreamError: UpstreamAbort})
		base := heapInuse()
		stop := heapCeiling()
		start := time.Now()
		n, _, status, err := pull(t, p.URL()+"/s", 5*time.Minute)
		elapsed := time.Since(start)
		peak := stop()
		if status != 200 || n != size+len64("data: \n\n") || errclass.Classify(err) != errclass.UnexpectedEOF {
			t.Fatalf("client read %d bytes (want %d), status %d, then %v", n, size+8, status, err)
		}
		// Server, proxy and client share this process: the ceiling covers
		// the three, against an event of size bytes.
		const ceiling = 32 << 20
		if peak > base+ceiling {
			t.Fatalf("HeapInuse after GC peaked at %d MB during a %d MB event (base %d MB)", peak>>20, size>>20, base>>20)
		}
		t.Logf("%d MB event in %v (%.0f MB/s); HeapInuse after GC base %.1f MB, peak %.1f MB",
			size>>20, elapsed.Round(time.Millisecond), float64(size)/(1<<20)/elapsed.Seconds(), float64(base)/(1<<20), float64(peak)/(1<<20))
		hops, _ := readSession(t, p, w, path)
		if up := hopRecord(t, hops, session.HopUpstream); up.Class != errclass.UnexpectedEOF || up.EventsDown != 1 {
			t.Fatalf("upstream hop %+v", up)
		}
	})

	t.Run("binary garbage body", func(t *testing.T) {
		garbage := make([]byte, 4<<20)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range garbage {
			garbage[i] = byte(rng.UintN(256))
		}
		up := rawServer(t, func(c net.Conn, _ <-chan struct{}) {
			readHead(c)
			io.WriteString(c, sseChunkedHead)
			for b := garbage; len(b) > 0; b = b[min(len(b), 10000):] {
				if writeChunk(c, b[:min(len(b), 10000)]) != nil {
					return
				}
			}
			c.Close() // a cut: no last chunk
		})
		// Without faults the bytes are copied; with an SSE-aware fault they
		// go through the unit splitter: either way unchanged.
		for _, faults := range [][]string{nil, {"delay-events:delay=1ms"}} {
			w, path := newSession(t)
			p := startProxy(t, Config{Upstream: up, Session: w, OnUpstreamError: UpstreamAbort, Faults: withFaults(t, faults...)})
			n, sum, status, err := pull(t, p.URL()+"/s", 20*time.Second)
			if status != 200 || errclass.Classify(err) != errclass.UnexpectedEOF || n != int64(len(garbage)) || sum != sha256.Sum256(garbage) {
				t.Fatalf("faults %v: client: status %d, %d of %d bytes (same: %v), then %v", faults, status, n, len(garbage), sum == sha256.Sum256(garbage), err)
			}
			hops, _ := readSession(t, p, w, path)
			if uh := hopRecord(t, hops, session.HopUpstream); uh.Class != errclass.UnexpectedEOF {
				t.Fatalf("faults %v: upstream hop %+v", faults, uh)
			}
		}
	})

	t.Run("garbage instead of a response", func(t *testing.T) {
		up := rawServer(t, func(c net.Conn, _ <-chan struct{}) {
			readHead(c)
			c.Write([]byte("\x00\x01\xffnot HTTP at all\x00\r\n\r\n"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		})
		w, path := newSession(t)
		p := startProxy(t, Config{Upstream: up, Session: w})
		g := readStream(t, p.URL()+"/s", 1, 10*time.Second)
		if g.class != "HTTP_502" {
			t.Fatalf("client saw %s (%v)", g.class, g.err)
		}
		hops, _ := readSession(t, p, w, path)
		uh := hopRecord(t, hops, session.HopUpstream)
		if uh.Class == "" || uh.Class == errclass.EOF {
			t.Fatalf("upstream hop has no error class: %+v", uh)
		}
		t.Logf("upstream hop class %s", uh.Class)
	})

	t.Run("more than 1 MiB of small headers", func(t *testing.T) {
		var block strings.Builder
		for i := range 40000 { // about 30 bytes each: 1.2 MB, as the clients are tested with
			fmt.Fprintf(&block, "X-Many-%05d: small value\r\n", i)
		}
		up := rawServer(t, func(c net.Conn, done <-chan struct{}) {
			readHead(c)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"+block.String()+"\r\ndata: x\n\n")
			<-done
		})
		w, path := newSession(t)
		p := startProxy(t, Config{Upstream: up, Session: w})
		g := readStream(t, p.URL()+"/s", 1, 10*time.Second)
		if g.class != "HTTP_502" {
			t.Fatalf("client saw %s (%v)", g.class, g.err)
		}
		hops, _ := readSession(t, p, w, path)
		if uh := hopRecord(t, hops, session.HopUpstream); uh.Class != errclass.HeaderTooLong {
			t.Fatalf("upstream hop %+v", uh)
		}
	})

	t.Run("no response headers", func(t *testing.T) {
		up := rawServer(t, func(c net.Conn, _ <-chan struct{}) {
			readHead(c)
			io.Copy(io.Discard, c) // until the proxy gives up
		})
		w, path := newSession(t)
		p := startProxy(t, Config{Upstream: up, Session: w, UpstreamHeaderTimeout: 300 * time.Millisecond})
		g := readStream(t, p.URL()+"/s", 1, 10*time.Second)
		if g.class != "HTTP_504" {
			t.Fatalf("client saw %s (%v)", g.class, g.err)
		}
		within(t, "504 after", g.endAt.Sub(g.start), 300*time.Millisecond, tolLoose)
		hops, _ := readSession(t, p, w, path)
		if up := hopRecord(t, hops, session.HopUpstream); up.Class != errclass.ETIMEDOUT || up.ClosedBy != session.ClosedBySelf {
			t.Fatalf("upstream hop %+v", up)
		}
	})

	t.Run("never reads", func(t *testing.T) {
		up := rawServer(t, func(c net.Conn, done <-chan struct{}) { <-done })
		w, path := newSession(t)
		p := startProxy(t, Config{Upstream: up, Session: w, UpstreamHeaderTimeout: 500 * time.Millisecond})
		base := heapInuse()
		body := io.LimitReader(zeros{}, 256<<20)
		req, _ := http.NewRequest("POST", p.URL()+"/upload", body)
		start := time.Now()
		resp, err := client().Do(req)
		took := time.Since(start)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		// The proxy answers 504 while the client is still sending; the
		// client may see the answer or its write cut: either way, soon.
		if (err == nil && resp.StatusCode != http.StatusGatewayTimeout) || took > 5*time.Second {
			t.Fatalf("client: %v %v after %v", resp, err, took)
		}
		if grown := int64(heapInuse()) - int64(base); grown > 32<<20 {
			t.Fatalf("heap grew %d MB while an upstream did not read", grown>>20)
		}
		hops, _ := readSession(t, p, w, path)
		if up := hopRecord(t, hops, session.HopUpstream); up.Class != errclass.ETIMEDOUT || up.BytesUp > 128<<20 {
			t.Fatalf("upstream hop %+v", up)
		}
		t.Logf("client: status %v, err %v, after %v", statusOf(resp, err), err, took.Round(time.Millisecond))
	})
}

func len64(s string) int64 { return int64(len(s)) }

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func statusOf(resp *http.Response, err error) int {
	if err != nil || resp == nil {
		return 0
	}
	return resp.StatusCode
}
