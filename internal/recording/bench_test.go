package recording_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/recording/recordtest"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// quoteEvents returns n feed-like events (about 110 bytes each) as one
// SSE byte stream, and the length of each event.
func quoteEvents(n int) ([]byte, []int) {
	var b bytes.Buffer
	lens := make([]int, n)
	for i := range n {
		before := b.Len()
		sse.WriteEvent(&b, strconv.Itoa(i+1), "quote", fmt.Sprintf(`{"symbol":"MSFT","price":%.4f,"ts":%d}`, 100+float64(i%1000)/7, 1700000000000+i))
		lens[i] = b.Len() - before
	}
	return b.Bytes(), lens
}

// BenchmarkStreamWrite is the recorder's cost per event on the proxy's
// path: one Stream.Write per event (parse, copy, queue on the session
// writer), with the writer committing to a real bbolt file behind it.
// ns/op and events/s are the proxy side (what a stream pays); committed/s
// counts until every event is on disk (Close included): the session
// writer's sustained rate, the ceiling for recording at saturation. The
// queue is sized to hold the whole run so that nothing is dropped.
//
//	go test -run '^$' -bench BenchmarkStreamWrite -benchmem ./internal/recording/
func BenchmarkStreamWrite(b *testing.B) {
	data, lens := quoteEvents(4096)
	w, err := session.Create(filepath.Join(b.TempDir(), "bench.db"), session.Options{MaxPending: b.N + 16})
	if err != nil {
		b.Fatal(err)
	}
	rec := recording.New(w, "bench", recording.Options{})
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/stream?symbols=MSFT", nil)
	start := time.Now()
	s := rec.Begin("c1", req, start)
	b.SetBytes(int64(len(data) / len(lens)))
	b.ReportAllocs()
	b.ResetTimer()
	off, k := 0, 0
	for i := 0; i < b.N; i++ {
		if k == len(lens) {
			off, k = 0, 0
		}
		s.Write(data[off:off+lens[k]], start)
		off += lens[k]
		k++
	}
	el := b.Elapsed()
	s.End(session.EndedByClient, session.EndingFIN, "", time.Now())
	w.Close()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "committed/s")
	b.ReportMetric(float64(w.Dropped()), "dropped")
}

// BenchmarkRelay is events/s delivered end to end (a fast SSE source →
// the recording relay → a client that parses every event) with recording
// off and on: the ratio is the cost of recording on a stream. The source
// writes as fast as the client reads, in pieces of 32 events.
//
//	go test -run '^$' -bench BenchmarkRelay -benchmem ./internal/recording/
func BenchmarkRelay(b *testing.B) {
	data, _ := quoteEvents(32)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	source := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for r.Context().Err() == nil {
			if _, err := w.Write(data); err != nil {
				return
			}
			rc.Flush()
		}
	})}
	go source.Serve(ln)
	defer source.Close()
	upstream := "http://" + ln.Addr().String()

	for _, mode := range []string{"off", "on"} {
		b.Run("recording="+mode, func(b *testing.B) {
			var rec *recording.Recorder
			var w *session.Writer
			if mode == "on" {
				w, err = session.Create(filepath.Join(b.TempDir(), "relay.db"), session.Options{})
				if err != nil {
					b.Fatal(err)
				}
				rec = recording.New(w, "bench", recording.Options{})
			}
			relay, err := recordtest.Start(upstream, rec)
			if err != nil {
				b.Fatal(err)
			}
			defer relay.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", relay.URL+"/stream", nil)
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			defer resp.Body.Close()
			var p sse.Parser
			buf := make([]byte, 32<<10)
			events := 0
			count := func(f *sse.Frame) error {
				if f.Kind == sse.KindEvent {
					events++
				}
				return nil
			}
			b.ReportAllocs()
			b.ResetTimer()
			for events < b.N {
				n, err := resp.Body.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				p.Feed(buf[:n], count)
			}
			b.StopTimer()
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
			cancel()
			if w != nil {
				relay.Close()
				w.Close()
				b.ReportMetric(float64(w.Dropped()), "dropped")
			}
		})
	}
}

// BenchmarkRelayFixedLoad is the same relay at a fixed load, as in
// production: 100 streams × 100 events/s (10,000 events/s) with recording
// off and on. Delivery is the same either way (the load is well under
// saturation); the figures that differ are the CPU per event of the whole
// process (source, relay, recorder, session writer and clients together)
// and the event latency from the source's write to the client's parse.
//
//	go test -run '^$' -bench BenchmarkRelayFixedLoad -benchtime 60000x ./internal/recording/
func BenchmarkRelayFixedLoad(b *testing.B) {
	const streams, perStream = 100, 100 // events/s per stream
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	source := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		rc.Flush()
		t := time.NewTicker(time.Second / perStream)
		defer t.Stop()
		var buf []byte
		for id := 1; ; id++ {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
			buf = buf[:0]
			buf = fmt.Appendf(buf, "id: %d\nevent: quote\ndata: {\"symbol\":\"MSFT\",\"price\":123.4567,\"sent\":%d}\n\n", id, time.Now().UnixNano())
			if _, err := w.Write(buf); err != nil {
				return
			}
			rc.Flush()
		}
	})}
	go source.Serve(ln)
	defer source.Close()
	upstream := "http://" + ln.Addr().String()

	for _, mode := range []string{"off", "on"} {
		b.Run("recording="+mode, func(b *testing.B) {
			var rec *recording.Recorder
			var w *session.Writer
			if mode == "on" {
				w, err = session.Create(filepath.Join(b.TempDir(), "relay.db"), session.Options{})
				if err != nil {
					b.Fatal(err)
				}
				rec = recording.New(w, "bench", recording.Options{})
			}
			relay, err := recordtest.Start(upstream, rec)
			if err != nil {
				b.Fatal(err)
			}
			defer relay.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			events := make(chan time.Duration, 4096)
			for range streams {
				go func() {
					req, _ := http.NewRequestWithContext(ctx, "GET", relay.URL+"/stream", nil)
					resp, err := http.DefaultTransport.RoundTrip(req)
					if err != nil {
						return
					}
					defer resp.Body.Close()
					var p sse.Parser
					buf := make([]byte, 4096)
					for {
						n, err := resp.Body.Read(buf)
						if err != nil {
							return
						}
						now := time.Now().UnixNano()
						p.Feed(buf[:n], func(f *sse.Frame) error {
							if f.Kind == sse.KindEvent {
								i := bytes.LastIndexByte(f.Data, ':')
								sent, _ := strconv.ParseInt(string(f.Data[i+1:len(f.Data)-1]), 10, 64)
								select {
								case events <- time.Duration(now - sent):
								case <-ctx.Done():
								}
							}
							return nil
						})
					}
				}()
			}
			// Warm up: every stream connected and delivering.
			for range streams * 2 {
				<-events
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			lat := make([]time.Duration, 0, b.N)
			for len(lat) < b.N {
				lat = append(lat, <-events)
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			el := b.Elapsed()
			cancel()
			relay.Close()
			sortDurations(lat)
			b.ReportMetric(float64(len(lat))/el.Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-µs/event")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			if w != nil {
				w.Close()
				b.ReportMetric(float64(w.Dropped()), "dropped")
			}
		})
	}
}
