package bench

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loadServer is the SSE server of the load and saturation rows: a net/http
// handler that, like the embedded feed, writes and flushes each event on
// its own. GET /stream?rate=R sends R events per second, each one's data
// starting with its send time in nanoseconds since base (monotonic, shared
// with the clients in this process, so receive - send is the latency);
// GET /fast sends events as fast as the client takes them, flushed in
// groups of fastBatch as a buffered server does.
type loadServer struct {
	URL  string
	base time.Time
	hs   *http.Server
	sent atomic.Int64
}

// fastBatch is how many events /fast writes per flush.
const fastBatch = 64

// eventPad brings an event to about the size of a quote feed's (~110 bytes).
const eventPad = ` {"symbol":"AAPL","price":187.1234,"volume":1200}`

func startLoadServer() (*loadServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &loadServer{URL: "http://" + ln.Addr().String(), base: time.Now()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", s.stream)
	mux.HandleFunc("GET /fast", s.fast)
	s.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.hs.Serve(ln)
	return s, nil
}

func (s *loadServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.hs.Shutdown(ctx) != nil {
		s.hs.Close()
	}
}

// appendEvent appends one event whose data starts with stamp.
func appendEvent(b []byte, id int, stamp int64) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, "\nevent: quote\ndata: "...)
	b = strconv.AppendInt(b, stamp, 10)
	b = append(b, eventPad...)
	return append(b, "\n\n"...)
}

func (s *loadServer) stream(w http.ResponseWriter, r *http.Request) {
	rate, _ := strconv.Atoi(r.URL.Query().Get("rate"))
	if rate <= 0 || rate > 10000 {
		http.Error(w, "rate=1..10000 events per second", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	gap := time.Second / time.Duration(rate)
	// A random phase spreads the streams' events over the interval, as
	// independent clients' would be.
	timer := time.NewTimer(rand.N(gap))
	defer timer.Stop()
	next := time.Now()
	buf := make([]byte, 0, 160)
	for id := 1; ; id++ {
		select {
		case <-r.Context().Done():
			return
		case <-timer.C:
		}
		buf = appendEvent(buf[:0], id, int64(time.Since(s.base)))
		if _, err := w.Write(buf); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		s.sent.Add(1)
		next = next.Add(gap)
		d := time.Until(next)
		if d < 0 { // fell behind: do not burst to catch up
			next, d = time.Now(), 0
		}
		timer.Reset(d)
	}
}

func (s *loadServer) fast(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var batch []byte
	for i := range fastBatch {
		batch = appendEvent(batch, i+1, 0)
	}
	for r.Context().Err() == nil {
		if _, err := w.Write(batch); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		s.sent.Add(fastBatch)
	}
}

// holdServer is the server of the conns row: it costs almost nothing per
// connection (a socket, no goroutine), so the memory measured is the
// client's or the proxy's. Each connection gets the response head, then a
// heartbeat comment every second and, while traffic is on, events spread
// evenly over all connections.
type holdServer struct {
	URL string
	ln  net.Listener

	mu    sync.Mutex
	conns []net.Conn

	traffic atomic.Int64 // events per second over all connections
	events  atomic.Int64
	stopped chan struct{}
	wg      sync.WaitGroup
}

const holdHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"

func startHoldServer() (*holdServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &holdServer{URL: "http://" + ln.Addr().String(), ln: ln, stopped: make(chan struct{})}
	s.wg.Add(3)
	go s.accept()
	go s.heartbeats()
	go s.pace()
	return s, nil
}

func (s *holdServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		// Read the request head on its own goroutine, then keep only the
		// socket.
		go func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReaderSize(c, 1024)
			if _, err := http.ReadRequest(br); err != nil {
				c.Close()
				return
			}
			c.SetReadDeadline(time.Time{})
			if _, err := c.Write([]byte(holdHead)); err != nil {
				c.Close()
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// chunk frames an SSE piece as one HTTP/1.1 chunk.
func chunk(sse string) []byte { return []byte(fmt.Sprintf("%x\r\n%s\r\n", len(sse), sse)) }

func (s *holdServer) snapshot() []net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Conn(nil), s.conns...)
}

func (s *holdServer) heartbeats() {
	defer s.wg.Done()
	hb := chunk(": heartbeat\n\n")
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
		for _, c := range s.snapshot() {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write(hb)
		}
	}
}

// pace sends traffic events round-robin at the traffic rate.
func (s *holdServer) pace() {
	defer s.wg.Done()
	ev := chunk("id: 1\nevent: quote\ndata: " + eventPad + eventPad + "\n\n")
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	next := 0
	var owed float64
	for {
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
		rate := s.traffic.Load()
		if rate <= 0 {
			owed = 0
			continue
		}
		conns := s.snapshot()
		if len(conns) == 0 {
			continue
		}
		owed += float64(rate) / 100
		for ; owed >= 1; owed-- {
			c := conns[next%len(conns)]
			next++
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(ev); err == nil {
				s.events.Add(1)
			}
		}
	}
}

func (s *holdServer) held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// dropAll closes every connection (between the client and proxy phases).
func (s *holdServer) dropAll() {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (s *holdServer) close() {
	s.ln.Close()
	close(s.stopped)
	s.wg.Wait()
	s.dropAll()
}
