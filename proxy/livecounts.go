package proxy

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// The proxy's running counts by hop, for a live view (Prometheus /metrics,
// the live page): what the proxy knows of its own sockets while it runs,
// without reading the session file. They are counted where the records
// are made (register, close, faultFired), so they agree with the hop
// records and fault events of the session file; keys are bounded (two
// hops, two endings, two closers, the registry's fault kinds).

// HopEnding is one way a hop connection ended: on which hop, with which
// segment (session.EndingRST or EndingFIN) and who sent it first
// (session.ClosedBySelf: this proxy, or ClosedByPeer).
type HopEnding struct {
	Hop      string
	Ending   string
	ClosedBy string
}

// FaultFired counts fault firings by hop and fault kind.
type FaultFired struct {
	Hop  string
	Kind string
}

// LiveCounts are a copy of the proxy's counts by hop.
type LiveCounts struct {
	// Opened and Closed count hop connections by hop (session.HopClient,
	// HopUpstream): accepted or dialed, and closed (their record final).
	Opened map[string]int64
	Closed map[string]int64
	// Endings counts the closed hop connections by how they ended.
	Endings map[HopEnding]int64
	// Fired counts fault firings (every FaultEvent) by hop and kind.
	Fired map[FaultFired]int64
}

// HopFailure is a hop connection that ended with a failure the proxy saw
// on it (its record's class: ECONNRESET, ETIMEDOUT, LINE_TOO_LONG, ...;
// not a clean EOF), with its age and idle time when it closed.
type HopFailure struct {
	Hop   string
	Class string
	Age   time.Duration
	Idle  time.Duration
}

// hopCounts are the counts behind LiveCounts and the failure observer.
type hopCounts struct {
	mu      sync.Mutex
	opened  map[string]int64
	closed  map[string]int64
	endings map[HopEnding]int64
	fired   map[FaultFired]int64
	onFail  atomic.Pointer[func(HopFailure)]
}

// LiveCounts returns the counts so far.
func (p *Proxy) LiveCounts() LiveCounts {
	c := &p.counts
	c.mu.Lock()
	defer c.mu.Unlock()
	return LiveCounts{Opened: countsCopy(c.opened), Closed: countsCopy(c.closed),
		Endings: countsCopy(c.endings), Fired: countsCopy(c.fired)}
}

// countsCopy is a copy of m, never nil.
func countsCopy[K comparable](m map[K]int64) map[K]int64 {
	if m == nil {
		return map[K]int64{}
	}
	return maps.Clone(m)
}

// OnHopFailure has fn told of every hop connection that closes with a
// failure, from the goroutine that closes it (fn must be quick and must
// not block); nil stops it. A failure classified after the close (rare)
// is counted in Stats.Errors but not told here.
func (p *Proxy) OnHopFailure(fn func(HopFailure)) {
	if fn == nil {
		p.counts.onFail.Store(nil)
		return
	}
	p.counts.onFail.Store(&fn)
}

func (c *hopCounts) opened1(hop string) {
	c.mu.Lock()
	if c.opened == nil {
		c.opened = map[string]int64{}
	}
	c.opened[hop]++
	c.mu.Unlock()
}

// closed1 counts a hop connection whose close was just recorded.
func (c *hopCounts) closed1(h *hopConn) {
	h.mu.Lock()
	end := HopEnding{Hop: h.hop, Ending: h.how, ClosedBy: closedByOf(h.closedBy)}
	class, age := h.class, h.endAt.Sub(h.open)
	idle := h.endAt.Sub(h.lastActivity(DirBoth))
	h.mu.Unlock()
	c.mu.Lock()
	if c.closed == nil {
		c.closed, c.endings = map[string]int64{}, map[HopEnding]int64{}
	}
	c.closed[h.hop]++
	c.endings[end]++
	c.mu.Unlock()
	if class == "" || class == errclass.EOF {
		return
	}
	if fn := c.onFail.Load(); fn != nil {
		(*fn)(HopFailure{Hop: h.hop, Class: class, Age: max(age, 0), Idle: max(idle, 0)})
	}
}

func (c *hopCounts) fired1(ev session.FaultEvent) {
	c.mu.Lock()
	if c.fired == nil {
		c.fired = map[FaultFired]int64{}
	}
	c.fired[FaultFired{Hop: ev.Hop, Kind: ev.FaultKind}]++
	c.mu.Unlock()
}
