package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/membudget"
)

// TestDelayLinesWithinTheBudget: streams from a flooding upstream through
// a latency fault fill their delay lines (up to lineDepth pieces a side,
// megabytes per connection). With a budget, what the lines hold never
// passes it, the streams that held the most end with MEMORY_BUDGET on the
// hop that held it (their held pieces dropped), and every byte taken is
// given back.
func TestDelayLinesWithinTheBudget(t *testing.T) {
	chunk := bytes.Repeat([]byte("data: "+string(bytes.Repeat([]byte("f"), 4000))+"\n\n"), 8)
	up := rawServer(t, func(c net.Conn, done <-chan struct{}) {
		readHead(c)
		io.WriteString(c, sseChunkedHead)
		for i := 0; i < 4000; i++ { // 128 MB at most per stream
			if writeChunk(c, chunk) != nil {
				return
			}
		}
	})
	const limit = 4 << 20
	budget := membudget.New(limit)
	w, path := newSession(t)
	p := startProxy(t, Config{Upstream: up, Session: w, Budget: budget, Faults: withFaults(t, "latency:delay=3s")})
	const streams = 6
	var wg sync.WaitGroup
	classes := make([]string, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := readStream(t, fmt.Sprintf("%s/s%d", p.URL(), i), 0, 20*time.Second)
			classes[i] = g.class
		}()
	}
	wg.Wait()
	hops, _ := readSession(t, p, w, path)
	ended := 0
	for _, h := range hops {
		if h.Class == errclass.MemoryBudget {
			ended++
		}
	}
	t.Logf("budget %d KiB: peak %d KiB, %d streams ended (%d hops MEMORY_BUDGET); clients saw %v", limit>>10, budget.Peak()>>10, budget.Ended(), ended, classes)
	if ended == 0 || budget.Ended() == 0 {
		t.Fatalf("no stream ended past the budget: peak %d of %d", budget.Peak(), limit)
	}
	if peak := budget.Peak(); peak > limit {
		t.Fatalf("peak %d, budget %d", peak, limit)
	}
	if used := budget.Used(); used != 0 {
		t.Fatalf("%d bytes still held after every stream closed", used)
	}
}
