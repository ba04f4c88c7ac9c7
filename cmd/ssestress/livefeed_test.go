package main

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis"
)

// TestVerdictCacheBounded: the verdict is computed one at a time, not
// before the interval, and never sooner than ten times what the last
// computation took; it stops when the feed stops. The clock is the
// test's: a computation "takes" 3 s.
func TestVerdictCacheBounded(t *testing.T) {
	var now atomic.Int64 // seconds
	clock := func() time.Time { return time.Unix(now.Load(), 0) }
	var computed atomic.Int32
	release := make(chan struct{})
	c := &verdictCache{every: 5 * time.Second, now: clock, compute: func() (analysis.Verdict, error) {
		<-release
		computed.Add(1)
		now.Add(3) // it took 3 s
		return analysis.Verdict{Statement: "so far"}, nil
	}}
	if v := c.get(clock()); v != nil {
		t.Fatalf("a verdict before any was computed: %+v", v)
	}
	c.get(clock()) // one is running: no second one
	release <- struct{}{}
	c.wg.Wait()
	if computed.Load() != 1 {
		t.Fatalf("%d computations, want 1 at a time", computed.Load())
	}
	v := c.get(clock())
	if v == nil || v.Statement != "so far" || v.TookS != 3 {
		t.Fatalf("verdict %+v", v)
	}
	// Started at 0, took 3 s: the next is due at 30 s, not at 5 s.
	for _, at := range []int64{5, 10, 29} {
		now.Store(at)
		c.get(clock())
		c.mu.Lock()
		running := c.running
		c.mu.Unlock()
		if running {
			t.Fatalf("a computation at %d s, before ten times the 3 s the last took", at)
		}
	}
	now.Store(30)
	c.get(clock())
	release <- struct{}{}
	c.wg.Wait()
	if computed.Load() != 2 {
		t.Fatalf("no computation once due (%d)", computed.Load())
	}
	c.stop()
	now.Store(1000)
	c.get(clock())
	c.mu.Lock()
	running := c.running
	c.mu.Unlock()
	if running {
		t.Fatal("a computation after stop")
	}
}
