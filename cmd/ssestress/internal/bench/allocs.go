package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/proxy"
)

// fastSource is a raw loopback SSE server with no cost of its own per
// event: each connection gets the response head and then one prepared
// chunk of 100 events, over and over, until it closes. Neither it nor the
// raw reader below allocates per event, so the allocations a benchmark
// counts are the code under test's.
type fastSource struct {
	ln    net.Listener
	chunk []byte
}

func startFastSource(withIDs bool) (*fastSource, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var events []byte
	for i := range 100 {
		if withIDs {
			events = appendEvent(events, i+1, 1735830245123456789)
		} else {
			events = append(events, "event: quote\ndata: 1735830245123456789"+eventPad+"\n\n"...)
		}
	}
	s := &fastSource{ln: ln, chunk: []byte(fmt.Sprintf("%x\r\n%s\r\n", len(events), events))}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				if _, err := io.WriteString(c, holdHead); err != nil {
					return
				}
				for {
					if _, err := c.Write(s.chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s, nil
}

func (s *fastSource) url() string { return "http://" + s.ln.Addr().String() }

// clientHotPath is a testing.Benchmark of the client engine's per-event
// path over a real loopback socket: read, dechunk, parse, count. One op
// is one event.
func clientHotPath(src *fastSource) testing.BenchmarkResult {
	return testing.Benchmark(func(b *testing.B) {
		counters := &clients.Counters{}
		u, _ := clients.ParseTarget(src.url() + "/stream")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := clients.NewStream("c0000", "", u, &clients.Options{Counters: counters})
		done := make(chan struct{})
		b.ReportAllocs()
		b.ResetTimer()
		go func() { defer close(done); s.Run(ctx) }()
		deadline := time.Now().Add(time.Minute)
		for counters.Events.Load() < int64(b.N) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
		b.StopTimer()
		cancel()
		<-done
	})
}

// proxyHotPath is a testing.Benchmark of the proxy's per-event path, in
// this process: the fast source → proxy.Start (no fault, no session file)
// → a raw reader that counts the events and the chunks (the proxy's
// writes) without allocating. One op is one event; the allocations are the
// proxy's (the source and the reader make none). It also returns how many
// writes the last run took.
func proxyHotPath(ctx context.Context, src *fastSource) (testing.BenchmarkResult, int, error) {
	p, err := proxy.Start(ctx, proxy.Config{Listen: "127.0.0.1:0", Upstream: src.url(), Name: "bench"})
	if err != nil {
		return testing.BenchmarkResult{}, 0, err
	}
	defer p.Close()
	var (
		runErr error
		writes int
	)
	r := testing.Benchmark(func(b *testing.B) {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			runErr = err
			return
		}
		defer c.Close()
		io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: "+p.Addr()+"\r\nAccept: text/event-stream\r\n\r\n")
		br := bufio.NewReaderSize(c, 32<<10)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			runErr = err
			return
		}
		// The body is read raw (resp.Body.Close would read the endless
		// body to its end; closing the connection ends it).
		if resp.StatusCode != http.StatusOK || len(resp.TransferEncoding) == 0 {
			runErr = fmt.Errorf("proxy answered %s %v", resp.Status, resp.TransferEncoding)
			return
		}
		var cc chunkCounter
		buf := make([]byte, 32<<10)
		c.SetReadDeadline(time.Now().Add(time.Minute))
		b.ReportAllocs()
		b.ResetTimer()
		for cc.events < b.N {
			n, err := br.Read(buf)
			if err != nil {
				runErr = err
				return
			}
			cc.feed(buf[:n])
		}
		writes = cc.chunks
	})
	return r, writes, runErr
}

// chunkCounter reads an HTTP/1.1 chunked body as it arrives: it counts
// the chunks (each is one write of the sender's) and the SSE events in
// them (their blank lines), allocating nothing.
type chunkCounter struct {
	state          int // 0: size line, 1: data, 2: CRLF after data
	size           int64
	crlf           int
	last           byte
	chunks, events int
}

func (c *chunkCounter) feed(p []byte) {
	for i := 0; i < len(p); {
		switch c.state {
		case 0:
			b := p[i]
			i++
			switch {
			case b == '\n':
				c.chunks++
				c.state = 1
			case b >= '0' && b <= '9':
				c.size = c.size*16 + int64(b-'0')
			case b >= 'a' && b <= 'f':
				c.size = c.size*16 + int64(b-'a'+10)
			case b >= 'A' && b <= 'F':
				c.size = c.size*16 + int64(b-'A'+10)
			}
		case 1:
			n := int(min(int64(len(p)-i), c.size))
			for _, b := range p[i : i+n] {
				if b == '\n' && c.last == '\n' {
					c.events++
				}
				c.last = b
			}
			i += n
			c.size -= int64(n)
			if c.size == 0 {
				c.state, c.crlf = 2, 2
			}
		case 2:
			i++
			if c.crlf--; c.crlf == 0 {
				c.state = 0
			}
		}
	}
}

func allocsPerOp(r testing.BenchmarkResult) float64 {
	if r.N == 0 {
		return 0
	}
	return float64(r.MemAllocs) / float64(r.N)
}

// runAllocs is row 6: allocations per event on the client's and the
// proxy's hot paths (testing.Benchmark with ReportAllocs, as go test
// -benchmem prints them), and in the relay and proxy processes under the
// load row's fixed load when that row ran.
func runAllocs(ctx context.Context, s *suite) error {
	withIDs, err := startFastSource(true)
	if err != nil {
		return err
	}
	defer withIDs.ln.Close()
	noIDs, err := startFastSource(false)
	if err != nil {
		return err
	}
	defer noIDs.ln.Close()
	perOp := func(r testing.BenchmarkResult, what string) string {
		n := float64(max(r.N, 1))
		return fmt.Sprintf("%s: testing.Benchmark, %s events at %s ns/event, %s B/event (-benchmem)",
			what, fmtCount(float64(r.N)), fmtNum(float64(r.T.Nanoseconds())/n), fmtNum(float64(r.MemBytes)/n))
	}

	s.logf("allocs: client engine hot path")
	r := clientHotPath(noIDs)
	a := allocsPerOp(r)
	f := Figure{Row: RowAllocs, Name: "client engine allocs per event", Value: a, Unit: "allocs", Text: fmtNum(a),
		Target: "0 per event", Note: perOp(r, "one stream over loopback read, dechunked, parsed and counted, events without id")}
	f.atMost(a, 0.01, " allocs")
	s.add(f)
	r = clientHotPath(withIDs)
	a = allocsPerOp(r)
	f = Figure{Row: RowAllocs, Name: "client engine allocs per event with a new id", Value: a, Unit: "allocs", Text: fmtNum(a),
		Target: "≤ 1: the id string", Note: perOp(r, "the same with an id on every event: the parser keeps each new id as the stream's last event ID string (EventSource's lastEventId, sent as Last-Event-ID on reconnect), one small allocation")}
	f.atMost(a, 1, " allocs")
	s.add(f)

	s.logf("allocs: proxy hot path")
	r, writes, err := proxyHotPath(ctx, withIDs)
	if err != nil {
		s.skip(RowAllocs, "proxy allocs per event", oneLine(err.Error()))
	} else {
		a = allocsPerOp(r)
		perWrite := float64(r.MemAllocs) / float64(max(writes, 1))
		f = Figure{Row: RowAllocs, Name: "proxy allocs per event, saturated stream", Value: a, Unit: "allocs",
			Text: fmt.Sprintf("%s (%s per write)", fmtNum(a), fmtNum(perWrite)), Target: "≤ 1 per write",
			Note: perOp(r, fmt.Sprintf("proxy in this process, no fault, one stream as fast as it goes, %s events per write to the client", fmtNum(float64(r.N)/float64(max(writes, 1))))) +
				"; the copy loop frames each read as one chunk in its own buffer and allocates nothing"}
		f.atMost(perWrite, 1.05, " allocs per write")
		s.add(f)
	}

	// Under the load row's fixed load each event arrives alone: what a
	// process allocates per read is then per event.
	for _, p := range []string{pathRelay, pathProxy, pathLatency0, pathRecord} {
		st, ok := s.loadResults[p]
		if !ok || !st.measured {
			continue
		}
		a := st.allocsPerEvent()
		f := Figure{Row: RowAllocs, Name: "allocs per event, " + p + " process, fixed load", Value: a, Unit: "allocs",
			Text: fmtNum(a), Note: "the load row's child process, one event per read: runtime.MemStats.Mallocs over the window / events delivered"}
		switch p {
		case pathLatency0:
			f.Target = "≤ 0.1"
			f.atMost(a, 0.1, " allocs")
		case pathRecord:
			f.Target = "≤ 2"
			f.atMost(a, 2, " allocs")
		}
		s.add(f)
	}
	return nil
}
