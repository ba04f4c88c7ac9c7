package clients

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/procstat"
)

// benchServer is a loopback SSE server with almost no per-connection cost
// of its own: it answers each request with the headers and then either
// streams a prepared buffer as fast as it can (stream) or only keeps the
// socket and sends a heartbeat chunk to every connection each second.
type benchServer struct {
	ln     net.Listener
	stream []byte // repeated forever when set
	mu     sync.Mutex
	conns  []net.Conn
	stop   chan struct{}
}

func newBenchServer(tb testing.TB, stream []byte) *benchServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &benchServer{ln: ln, stream: stream, stop: make(chan struct{})}
	const head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReaderSize(c, 512)
			if _, err := http.ReadRequest(br); err != nil {
				c.Close()
				continue
			}
			io.WriteString(c, head)
			if s.stream != nil {
				go func() {
					for {
						if _, err := c.Write(s.stream); err != nil {
							return
						}
					}
				}()
				continue
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	go func() {
		hb := []byte(fmt.Sprintf("%x\r\n%s\r\n", len(": hb\n\n"), ": hb\n\n"))
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			s.mu.Lock()
			conns := append([]net.Conn(nil), s.conns...)
			s.mu.Unlock()
			for _, c := range conns {
				c.Write(hb)
			}
		}
	}()
	tb.Cleanup(func() {
		close(s.stop)
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

// BenchmarkStreamThroughput measures the client's hot path over a real
// loopback socket: read, dechunk, parse, count. One op is one event.
//
//	go test -run XXX -bench StreamThroughput -benchmem ./clients/
func BenchmarkStreamThroughput(b *testing.B) {
	var events bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(&events, "id: %d\nevent: quote\ndata: {\"symbol\":\"AAPL\",\"price\":187.1234,\"ts\":1735830245123}\n\n", i)
	}
	chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", events.Len(), events.Bytes()))
	srv := newBenchServer(b, chunk)
	counters := &Counters{}
	u, _ := ParseTarget("http://" + srv.ln.Addr().String() + "/stream")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewStream("c0000", "", u, &Options{Counters: counters})
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	go func() { defer close(done); s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for counters.Events.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
	}
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(counters.Events.Load())/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkHeldStreams opens heldStreams (2,000) streams to a server that
// only sends a heartbeat per second, and reports the resident memory and goroutines each costs the
// process. The server side holds a socket and nothing else per connection,
// so the figure is essentially the client's. It ignores b.N: run it with
// -benchtime=1x.
//
//	go test -run XXX -bench HeldStreams -benchtime=1x ./clients/
func BenchmarkHeldStreams(b *testing.B) {
	const heldStreams = 2000
	srv := newBenchServer(b, nil)
	runtime.GC()
	debug.FreeOSMemory()
	before, err := procstat.Self()
	if err != nil {
		b.Skip("needs /proc:", err)
	}
	goroutinesBefore := runtime.NumGoroutine()
	var msBefore runtime.MemStats
	runtime.ReadMemStats(&msBefore)

	counters := &Counters{}
	opts := &Options{Counters: counters, Retry: time.Hour}
	u, _ := ParseTarget("http://" + srv.ln.Addr().String() + "/stream")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range heldStreams {
		s := NewStream(ClientID(i), "", u, opts)
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for counters.Active.Load() < heldStreams && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if counters.Active.Load() < heldStreams {
		b.Fatalf("only %d of %d streams active", counters.Active.Load(), heldStreams)
	}
	// Let two heartbeats flow, then measure.
	for hb := counters.Comments.Load(); counters.Comments.Load() < hb+2*heldStreams && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	debug.FreeOSMemory()
	after, _ := procstat.Self()
	var msAfter runtime.MemStats
	runtime.ReadMemStats(&msAfter)
	goroutines := runtime.NumGoroutine() - goroutinesBefore
	cancel()
	wg.Wait()

	perStream := float64(after.RSS-before.RSS) / heldStreams / 1024
	heap := float64(msAfter.HeapInuse-msBefore.HeapInuse) / heldStreams / 1024
	stack := float64(msAfter.StackInuse-msBefore.StackInuse) / heldStreams / 1024
	b.ReportMetric(perStream, "KiB-RSS/stream")
	b.ReportMetric(heap, "KiB-heap/stream")
	b.ReportMetric(stack, "KiB-stack/stream")
	b.ReportMetric(float64(goroutines)/heldStreams, "goroutines/stream")
}
