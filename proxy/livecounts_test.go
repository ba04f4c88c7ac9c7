package proxy

import (
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
)

// TestLiveCountsAgreeWithRecords: a fault resets the upstream hop after two
// events; the proxy passes the reset on to its client. The live counts
// (hops opened and closed, endings by hop and closer, firings by hop and
// kind) and the failures told to OnHopFailure say what the session file's
// hop records and fault events say.
func TestLiveCountsAgreeWithRecords(t *testing.T) {
	up := startFeed(t, feed.Config{Rate: feed.Rate{Min: 600, Max: 600}})
	w, path := newSession(t)
	p := startProxy(t, Config{Upstream: up.URL, Session: w, Faults: withFaults(t, "reset:hop=upstream,events=2")})
	failures := collectFailures(p)
	for range 2 {
		g := readStream(t, p.URL()+"/stream?symbols=AAPL", 0, 10*time.Second)
		if g.class != errclass.ECONNRESET {
			t.Fatalf("client saw %q (%v), want ECONNRESET", g.class, g.err)
		}
	}
	waitFor(t, 5*time.Second, "both connections' hops closed", func() bool {
		lc := p.LiveCounts()
		return lc.Closed[session.HopClient] == 2 && lc.Closed[session.HopUpstream] == 2
	})
	lc := p.LiveCounts()
	hops, faults := readSession(t, p, w, path)

	want := map[HopEnding]int64{}
	opened := map[string]int64{}
	for _, h := range hops {
		opened[h.Hop]++
		want[HopEnding{Hop: h.Hop, Ending: h.Ending, ClosedBy: h.ClosedBy}]++
	}
	if len(lc.Endings) != len(want) {
		t.Errorf("endings %v, records say %v", lc.Endings, want)
	}
	for k, n := range want {
		if lc.Endings[k] != n {
			t.Errorf("endings[%+v] = %d, records say %d", k, lc.Endings[k], n)
		}
	}
	// The fault reset the upstream hop; the proxy reset the client by its
	// policy.
	if lc.Endings[HopEnding{session.HopUpstream, session.EndingRST, session.ClosedBySelf}] != 2 ||
		lc.Endings[HopEnding{session.HopClient, session.EndingRST, session.ClosedBySelf}] != 2 {
		t.Errorf("endings %v: want 2 resets by the proxy on each hop", lc.Endings)
	}
	if lc.Opened[session.HopClient] != opened[session.HopClient] || lc.Opened[session.HopUpstream] != opened[session.HopUpstream] {
		t.Errorf("opened %v, records %v", lc.Opened, opened)
	}
	fired := map[FaultFired]int64{}
	for _, f := range faults {
		fired[FaultFired{Hop: f.Hop, Kind: f.FaultKind}]++
	}
	if len(fired) != 1 || fired[FaultFired{session.HopUpstream, "reset"}] != 2 || lc.Fired[FaultFired{session.HopUpstream, "reset"}] != 2 || len(lc.Fired) != 1 {
		t.Errorf("fired %v, records say %v", lc.Fired, fired)
	}
	// Failures are the hops whose record has a class other than EOF.
	var classed int
	for _, h := range hops {
		if h.Class != "" && h.Class != errclass.EOF {
			classed++
		}
	}
	if len(failures()) != classed {
		t.Errorf("%d failures told, %d hop records with a failure class: %+v", len(failures()), classed, failures())
	}
	if len(failures()) != 0 {
		t.Errorf("failures %+v: the proxy's own resets are not failures it saw", failures())
	}
}

// TestHopFailuresTold: an upstream that resets its streams after two
// events: the proxy sees ECONNRESET on its upstream hop (a failure, told
// with its age and idle time, counted as a reset by the peer) and resets
// its client by its policy (not a failure it saw).
func TestHopFailuresTold(t *testing.T) {
	w, path := newSession(t)
	p := startProxy(t, Config{Upstream: resetter(t, 2), Session: w})
	failures := collectFailures(p)
	g := readStream(t, p.URL()+"/stream", 0, 10*time.Second)
	if g.class != errclass.ECONNRESET {
		t.Fatalf("client saw %q (%v), want ECONNRESET", g.class, g.err)
	}
	waitFor(t, 5*time.Second, "both hops closed", func() bool {
		lc := p.LiveCounts()
		return lc.Closed[session.HopClient] == 1 && lc.Closed[session.HopUpstream] == 1
	})
	lc := p.LiveCounts()
	hops, _ := readSession(t, p, w, path)
	if lc.Endings[HopEnding{session.HopUpstream, session.EndingRST, session.ClosedByPeer}] != 1 ||
		lc.Endings[HopEnding{session.HopClient, session.EndingRST, session.ClosedBySelf}] != 1 || len(lc.Endings) != 2 {
		t.Errorf("endings %v: want the upstream's reset and the proxy's", lc.Endings)
	}
	told := failures()
	if len(told) != 1 || told[0].Hop != session.HopUpstream || told[0].Class != errclass.ECONNRESET {
		t.Fatalf("failures %+v, want one ECONNRESET on the upstream hop; records %+v", told, hops)
	}
	for _, h := range hops {
		if h.Hop != session.HopUpstream {
			continue
		}
		f := told[0]
		// The record's times are wall clock read back from the file; the
		// failure's age is on the monotonic clock: a microsecond apart.
		within(t, "failure age against the record's", f.Age, h.Closed.Sub(h.Opened), time.Millisecond)
		within(t, "failure idle against the record's", f.Idle, h.Idle.D(), time.Millisecond)
		if f.Idle <= 0 || f.Idle > f.Age {
			t.Errorf("failure %+v: idle out of range", f)
		}
	}
}

// collectFailures has p's hop failures kept; the function returns them so
// far.
func collectFailures(p *Proxy) func() []HopFailure {
	var (
		mu       sync.Mutex
		failures []HopFailure
	)
	p.OnHopFailure(func(f HopFailure) {
		mu.Lock()
		failures = append(failures, f)
		mu.Unlock()
	})
	return func() []HopFailure {
		mu.Lock()
		defer mu.Unlock()
		return append([]HopFailure(nil), failures...)
	}
}
