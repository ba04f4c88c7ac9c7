package proxy

import (
	"strconv"
	"testing"
	"time"
)

// TestLatencyJitterKeepsOrder: with a jitter far larger than the gap
// between events, each event is still delayed by about delay ± jitter,
// the delays vary, and no event overtakes another (an event whose draw is
// shorter waits behind the one before it).
func TestLatencyJitterKeepsOrder(t *testing.T) {
	const n = 40
	srv := script(t, ticker(n, 3*time.Millisecond, time.Second))
	p := startProxy(t, Config{Upstream: srv.URL, Faults: withFaults(t, "latency:delay=60ms,jitter=40ms")})
	l := openLive(t, p.URL()+"/ticks")
	lo, hi := time.Hour, time.Duration(0)
	for i := 1; i <= n; i++ {
		lf, ok := l.next(5 * time.Second)
		if !ok || lf.err != nil {
			t.Fatalf("event %d: %v", i, lf.err)
		}
		if lf.f.ID != strconv.Itoa(i) {
			t.Fatalf("event %d arrived as id %s: one overtook another", i, lf.f.ID)
		}
		d := lf.at.Sub(sentAt(lf.f))
		lo, hi = min(lo, d), max(hi, d)
		// Never less than delay - jitter; at most delay + jitter, plus the
		// wait behind an earlier event, plus scheduling.
		if d < 20*time.Millisecond-time.Millisecond || d > 100*time.Millisecond+tolLoose {
			t.Errorf("event %d delayed %v, want 20ms..100ms", i, d)
		}
	}
	if hi-lo < 10*time.Millisecond {
		t.Errorf("delays %v..%v: no jitter", lo, hi)
	}
}
