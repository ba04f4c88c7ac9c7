package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The benchmarks compare the same SSE load sent direct to a server,
// through a minimal io.Copy TCP relay (the floor any proxy pays), through
// the proxy with no fault, and through the proxy with a latency fault of 0
// (the delay-line path). Server, relay or proxy, and clients share this
// process, so CPU figures are per delivered event for the whole process;
// "added" figures subtract the direct run's.
//
//	go test -run XXX -bench . -benchtime 1x -benchmem ./proxy/
//
// (-benchtime 1x: each benchmark sizes its own load; BenchmarkStreamBody
// alone is a classic b.N benchmark: go test -run XXX -bench StreamBody -benchmem ./proxy/)

// benchServer streams events: ?n=N events as fast as the client takes
// them, or ?rate=R events per second until the client leaves; each event's
// data is its send time (UnixNano), and each is flushed on its own, as SSE
// servers do.
func benchServer(b *testing.B) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		f := w.(http.Flusher)
		f.Flush()
		buf := make([]byte, 0, 64)
		send := func() error {
			buf = append(buf[:0], "data: "...)
			buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
			buf = append(buf, "\n\n"...)
			_, err := w.Write(buf)
			f.Flush()
			return err
		}
		if n, _ := strconv.Atoi(r.URL.Query().Get("n")); n > 0 {
			for i := 0; i < n; i++ {
				if send() != nil {
					return
				}
			}
			return
		}
		rate, _ := strconv.Atoi(r.URL.Query().Get("rate"))
		if rate <= 0 {
			<-r.Context().Done()
			return
		}
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
				if send() != nil {
					return
				}
			}
		}
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

// relay is a minimal TCP relay: two io.Copy per connection.
func relay(b testing.TB, upstream string) string {
	target := upstream[len("http://"):]
	return serveConns(b, func(c net.Conn) {
		u, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		go func() { io.Copy(u, c); u.Close() }()
		io.Copy(c, u)
		c.Close()
	})
}

// serveConns accepts on a loopback port until the benchmark ends, each
// connection handled on a goroutine of its own, and returns its URL.
func serveConns(b testing.TB, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return "http://" + ln.Addr().String()
}

// benchTarget is a path under comparison and the client that takes it.
type benchTarget struct {
	name, url string
	client    *http.Client
}

// benchTargets are the paths under comparison: direct, a minimal relay,
// the proxy plain and with a latency fault of 0, and the proxy's TLS
// listener with HTTP/1.1 (one connection per stream), with h2 (streams
// share connections) and h2c.
func benchTargets(b *testing.B) []benchTarget {
	server := benchServer(b)
	plain := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	p := startProxy(b, Config{Upstream: server})
	pl := startProxy(b, Config{Upstream: server, Faults: withFaults(b, "latency:delay=0s")})
	pt := startProxy(b, Config{Upstream: server, TLSSelfSigned: true})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pt.CertPEM())
	tlsH1 := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool},
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	return []benchTarget{
		{"direct", server, plain}, {"relay", relay(b, server), plain}, {"proxy", p.URL(), plain},
		{"proxy-latency0", pl.URL(), plain}, {"proxy-tls", pt.URL(), tlsH1}, {"proxy-h2", pt.URL(), h2Client(pool)},
		{"proxy-h2c", p.URL(), h2cClient()},
	}
}

// streamEvents reads events from url, calling on for each one's data.
func streamEvents(c *http.Client, url string, on func(data []byte) bool) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			if !on(bytes.TrimSuffix(data, []byte("\n"))) {
				return nil
			}
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkThroughput: 50 streams, each carrying b.N/50 events as fast as
// they go; events/s delivered and CPU per event.
func BenchmarkThroughput(b *testing.B) {
	const streams = 50
	for _, tg := range benchTargets(b) {
		b.Run(tg.name, func(b *testing.B) {
			per := max(b.N/streams, 2000)
			var wg sync.WaitGroup
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			cpu0, start := cpuTime(), time.Now()
			for s := 0; s < streams; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n := 0
					if err := streamEvents(tg.client, tg.url+"/?n="+strconv.Itoa(per), func([]byte) bool { n++; return true }); err != nil || n != per {
						b.Errorf("stream got %d of %d events: %v", n, per, err)
					}
				}()
			}
			wg.Wait()
			el, cpu := time.Since(start), cpuTime()-cpu0
			runtime.ReadMemStats(&m1)
			total := float64(per * streams)
			b.ReportMetric(total/el.Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Microseconds())/total, "cpu-µs/event")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/total, "allocs/event")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkLatency: 500 streams × 20 events/s; the time from the server's
// write to the client's read, p50 and p99, and CPU per event, over 3 s
// after a 1 s warm-up (the streams opening).
func BenchmarkLatency(b *testing.B) {
	const (
		streams = 500
		rate    = 20
		warmUp  = time.Second
		dur     = 3 * time.Second
	)
	for _, tg := range benchTargets(b) {
		b.Run(tg.name, func(b *testing.B) {
			var mu sync.Mutex
			var lat []time.Duration
			var wg sync.WaitGroup
			measureAt := time.Now().Add(warmUp)
			stopAt := measureAt.Add(dur)
			var m0, m1 runtime.MemStats
			var cpu0 time.Duration
			warmed := make(chan struct{})
			time.AfterFunc(warmUp, func() { runtime.ReadMemStats(&m0); cpu0 = cpuTime(); close(warmed) })
			for s := 0; s < streams; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					local := make([]time.Duration, 0, rate*4)
					err := streamEvents(tg.client, tg.url+"/?rate="+strconv.Itoa(rate), func(data []byte) bool {
						now := time.Now()
						if now.After(measureAt) {
							ns, _ := strconv.ParseInt(string(data), 10, 64)
							local = append(local, now.Sub(time.Unix(0, ns)))
						}
						return now.Before(stopAt)
					})
					if err != nil {
						b.Error(err)
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			<-warmed
			el, cpu := time.Since(measureAt), cpuTime()-cpu0
			runtime.ReadMemStats(&m1)
			slices.Sort(lat)
			if len(lat) == 0 {
				b.Fatal("no events")
			}
			pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(len(lat))/el.Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-µs/event")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(len(lat)), "allocs/event")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkMemoryPerStream holds 1000 idle streams open and reports the
// heap and stacks they take: for the proxy, minus what the same streams
// take direct (server and client live in this process too).
func BenchmarkMemoryPerStream(b *testing.B) {
	const streams = 1000
	measure := func(url string) (float64, func()) {
		runtime.GC()
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		var bodies []io.Closer
		tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
		for i := 0; i < streams; i++ {
			resp, err := (&http.Client{Transport: tr}).Get(url + "/?idle=1")
			if err != nil {
				b.Fatal(err)
			}
			bodies = append(bodies, resp.Body)
		}
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		var m1 runtime.MemStats
		runtime.ReadMemStats(&m1)
		used := float64((m1.HeapInuse+m1.StackInuse)-(m0.HeapInuse+m0.StackInuse)) / streams / 1024
		return used, func() {
			for _, c := range bodies {
				c.Close()
			}
		}
	}
	server := benchServer(b)
	p := startProxy(b, Config{Upstream: server})
	for i := 0; i < b.N; i++ {
		direct, closeDirect := measure(server)
		closeDirect()
		proxied, closeProxied := measure(p.URL())
		g := runtime.NumGoroutine()
		closeProxied()
		b.ReportMetric(direct, "direct-KiB/stream")
		b.ReportMetric(proxied-direct, "proxy-KiB/stream")
		b.ReportMetric(float64(g)/streams, "goroutines/stream")
		b.ReportMetric(0, "ns/op")
	}
}

// eventSource returns one SSE event per Read, n times.
type eventSource struct {
	n   int
	evt []byte
}

func (s *eventSource) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	s.n--
	return copy(p, s.evt), nil
}

func (s *eventSource) Close() error { return nil }

// BenchmarkStreamBody is the proxy's per-event hot path without sockets:
// the copy loop, event counting and the hop counters. One op is one event;
// -benchmem shows it allocates nothing per event.
func BenchmarkStreamBody(b *testing.B) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	p := &Proxy{name: "bench", events: newBroadcaster(), live: map[*hopConn]struct{}{}}
	st := &stream{p: p, client: newHopConn(p, c1, "client", "bench-1", 0)}
	body := &streamBody{st: st, isSSE: true,
		body: &eventSource{n: b.N, evt: []byte("id: 12345\nevent: quote\ndata: {\"symbol\":\"AAPL\",\"price\":187.1234}\n\n")}}
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := body.WriteTo(io.Discard); err != nil {
		b.Fatal(err)
	}
	if got := st.client.eventsDown.Load(); got != int64(b.N) {
		b.Fatalf("counted %d events of %d", got, b.N)
	}
}

// BenchmarkOneStreamLatency: one stream at 500 events/s, direct, through
// the relay and through the proxy, three times in turn: the time from the
// server's write to the client's read of each event, p50, p90 and p99 of
// 1,500 events. What a path adds to one event, without the queueing of
// many streams at once.
func BenchmarkOneStreamLatency(b *testing.B) {
	up := serveConns(b, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for {
			time.Sleep(2 * time.Millisecond)
			ev := "data: " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n\n"
			if _, err := io.WriteString(c, strconv.FormatInt(int64(len(ev)), 16)+"\r\n"+ev+"\r\n"); err != nil {
				return
			}
		}
	})
	p := startProxy(b, Config{Upstream: up})
	paths := []struct{ name, url string }{{"direct", up}, {"relay", relay(b, up)}, {"proxy", p.URL()}}
	plain := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for round := 1; round <= 3; round++ {
		for _, path := range paths {
			var lat []time.Duration
			err := streamEvents(plain, path.url+"/s", func(data []byte) bool {
				if ns, err := strconv.ParseInt(string(data), 10, 64); err == nil {
					lat = append(lat, time.Since(time.Unix(0, ns)))
				}
				return len(lat) < 1500
			})
			if err != nil {
				b.Fatal(err)
			}
			slices.Sort(lat)
			b.Logf("round %d, %s: p50 %v p90 %v p99 %v", round, path.name, lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)*99/100])
		}
	}
}
