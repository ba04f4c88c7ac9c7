package main

import (
	"encoding/json"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/internal/metrics"
	"github.com/ssestress/ssestress/internal/procstat"
	"github.com/ssestress/ssestress/internal/session"
)

// The live page's feed: /live/events streams one JSON snapshot (liveSnap)
// per tick as SSE events "snapshot", and "end" when the producer stops.
// A snapshot reads the same counters as /metrics; the verdict in it is
// recomputed from the session file by the attribution engine, at most
// once per monitor interval and never more than a tenth of the time
// (verdictCache), and only while a page is open.

// liveSnap is one snapshot of /live/events. Durations are seconds in _s
// keys, sizes bytes in _bytes keys.
type liveSnap struct {
	Time     time.Time `json:"time"`
	Command  string    `json:"command"`
	Scenario string    `json:"scenario,omitempty"`
	UptimeS  float64   `json:"uptime_s"`
	// Active counts the event streams open now: the generated clients'
	// (run, replay run), or the proxies' client connections (proxy).
	Active   int64 `json:"active"`
	Clients  int64 `json:"clients"`
	Attempts int64 `json:"attempts"`
	// Events counts the SSE events the clients received, or (proxy) the
	// events the proxies forwarded; EventsPerS is their rate since the
	// snapshot before (since the start in the first).
	Events     int64   `json:"events"`
	EventsPerS float64 `json:"events_per_s"`
	// Errors are the clients' errors (run, replay run) or the proxies'
	// failures (proxy), by class and hop.
	Errors []liveCount `json:"errors"`
	// Resets are ssestress_resets_total: RSTs that ended this process's
	// sockets, by hop and sender.
	Resets []liveCount `json:"resets"`
	// Faults are the fault firings by hop and kind.
	Faults     []liveCount  `json:"faults"`
	RSSBytes   uint64       `json:"rss_bytes,omitempty"`
	Goroutines int          `json:"goroutines"`
	Verdict    *liveVerdict `json:"verdict,omitempty"`
}

// liveCount is one count of a snapshot's tables.
type liveCount struct {
	Hop    string `json:"hop"`
	Class  string `json:"class,omitempty"`
	Sender string `json:"sender,omitempty"`
	Kind   string `json:"fault_kind,omitempty"`
	Count  int64  `json:"count"`
}

// liveVerdict is the verdict so far and when it was computed.
type liveVerdict struct {
	Statement    string    `json:"statement"`
	Confidence   string    `json:"confidence,omitempty"`
	ClientErrors int64     `json:"client_errors"`
	Resets       int64     `json:"resets"`
	Cuts         int64     `json:"cuts"`
	ComputedAt   time.Time `json:"computed_at"`
	TookS        float64   `json:"took_s"`
	Error        string    `json:"error,omitempty"`
}

// maxLiveViewers bounds the pages open at once: each costs a snapshot per
// tick.
const maxLiveViewers = 32

// liveFeed serves /live/events.
type liveFeed struct {
	src     *liveSource
	verdict *verdictCache // nil: no verdict
	tick    time.Duration
	viewers atomic.Int32
	stopped chan struct{}
	once    sync.Once
}

func newLiveFeed(src *liveSource, verdict func() (analysis.Verdict, error), interval time.Duration) *liveFeed {
	f := &liveFeed{src: src, stopped: make(chan struct{})}
	// Counts are cheap: a snapshot a second, or at the monitor interval
	// when it is shorter (not under 100 ms).
	f.tick = time.Second
	if interval > 0 && interval < f.tick {
		f.tick = max(interval, 100*time.Millisecond)
	}
	if verdict != nil {
		f.verdict = &verdictCache{compute: verdict, every: max(interval, f.tick)}
	}
	return f
}

// stop ends every event stream (each is sent "end") and the verdict's
// recomputation; safe on nil and twice.
func (f *liveFeed) stop() {
	if f == nil {
		return
	}
	f.once.Do(func() { close(f.stopped) })
	if f.verdict != nil {
		f.verdict.stop()
	}
}

// wait waits for a verdict being computed.
func (f *liveFeed) wait() {
	if f != nil && f.verdict != nil {
		f.verdict.wg.Wait()
	}
}

// serveEvents streams snapshots until the page goes or the producer
// stops.
func (f *liveFeed) serveEvents(w http.ResponseWriter, r *http.Request) {
	if f.viewers.Add(1) > maxLiveViewers {
		f.viewers.Add(-1)
		http.Error(w, "too many live pages open", http.StatusServiceUnavailable)
		return
	}
	defer f.viewers.Add(-1)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	send := func(event string, v any) bool {
		data, err := json.Marshal(v)
		if err != nil {
			return false
		}
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second)) // a page that reads nothing is dropped
		if _, err := w.Write([]byte("event: " + event + "\ndata: " + string(data) + "\n\n")); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	t := time.NewTicker(f.tick)
	defer t.Stop()
	var prev *liveSnap
	for {
		snap := f.snapshot(prev)
		if !send("snapshot", snap) {
			return
		}
		prev = &snap
		select {
		case <-r.Context().Done():
			return
		case <-f.stopped:
			send("end", struct {
				Time time.Time `json:"time"`
			}{time.Now()})
			return
		case <-t.C:
		}
	}
}

// snapshot reads the counters now; prev (nil at first) gives the rate.
func (f *liveFeed) snapshot(prev *liveSnap) liveSnap {
	src := f.src
	now := time.Now()
	snap := liveSnap{Time: now, Command: src.command, Scenario: src.scenario, Goroutines: runtime.NumGoroutine(),
		Errors: []liveCount{}, Resets: []liveCount{}, Faults: []liveCount{}}
	src.mu.Lock()
	start := src.start
	src.mu.Unlock()
	if !start.IsZero() {
		snap.UptimeS = now.Sub(start).Seconds()
	}
	if st, err := procstat.Self(); err == nil {
		snap.RSSBytes = st.RSS
	}
	m := src.snapshot()
	resets := map[[2]string]int64{}
	if cl := m.Clients; cl != nil {
		snap.Active, snap.Clients, snap.Attempts, snap.Events = cl.Active, cl.Started, cl.Attempts, cl.Events
		for class, n := range cl.Errors {
			snap.Errors = append(snap.Errors, liveCount{Hop: cl.Hop, Class: class, Count: n})
		}
		if cl.ResetSender != "" && cl.Resets > 0 {
			resets[[2]string{cl.Hop, cl.ResetSender}] += cl.Resets
		}
	}
	for _, p := range m.Proxies {
		if m.Clients == nil {
			snap.Active += p.Opened[session.HopClient] - p.Closed[session.HopClient]
			snap.Events += p.EventsForwarded
			for k, n := range p.Errors {
				snap.Errors = append(snap.Errors, liveCount{Hop: metrics.HopLabel(p.Name, k.Hop), Class: k.Class, Count: n})
			}
		}
		for e, n := range p.Endings {
			if e.Ending == session.EndingRST {
				resets[[2]string{metrics.HopLabel(p.Name, e.Hop), metrics.ResetSender(e.Hop, e.ClosedBy)}] += n
			}
		}
		for k, n := range p.Fired {
			snap.Faults = append(snap.Faults, liveCount{Hop: metrics.HopLabel(p.Name, k.Hop), Kind: k.Kind, Count: n})
		}
	}
	for k, n := range resets {
		snap.Resets = append(snap.Resets, liveCount{Hop: k[0], Sender: k[1], Count: n})
	}
	for _, list := range [][]liveCount{snap.Errors, snap.Resets, snap.Faults} {
		sort.Slice(list, func(i, j int) bool {
			if list[i].Count != list[j].Count {
				return list[i].Count > list[j].Count
			}
			return list[i].Hop+list[i].Class+list[i].Sender+list[i].Kind < list[j].Hop+list[j].Class+list[j].Sender+list[j].Kind
		})
	}
	switch {
	case prev != nil && now.After(prev.Time):
		snap.EventsPerS = float64(snap.Events-prev.Events) / now.Sub(prev.Time).Seconds()
	case snap.UptimeS > 0:
		snap.EventsPerS = float64(snap.Events) / snap.UptimeS
	}
	if f.verdict != nil {
		snap.Verdict = f.verdict.get(now)
	}
	return snap
}

// verdictCache recomputes the verdict in the background, one computation
// at a time, when a snapshot asks and one is due: every interval, but
// never sooner than ten times the last computation took after its start,
// so the attribution engine takes at most a tenth of a core however big
// the session file grows. Nothing is computed while no page is open.
type verdictCache struct {
	compute func() (analysis.Verdict, error)
	every   time.Duration
	now     func() time.Time // nil: time.Now

	mu      sync.Mutex
	last    *liveVerdict
	running bool
	stopped bool
	nextAt  time.Time
	wg      sync.WaitGroup
}

// get returns the latest verdict (nil before the first) and starts the
// next computation when it is due.
func (c *verdictCache) get(now time.Time) *liveVerdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running && !c.stopped && !now.Before(c.nextAt) {
		c.running = true
		c.wg.Add(1)
		go c.run(now)
	}
	return c.last
}

func (c *verdictCache) run(start time.Time) {
	defer c.wg.Done()
	clock := c.now
	if clock == nil {
		clock = time.Now
	}
	v, err := c.compute()
	took := clock().Sub(start)
	lv := &liveVerdict{Statement: v.Statement, Confidence: v.Confidence, ClientErrors: v.ClientErrors,
		Resets: v.Resets, Cuts: v.Cuts, ComputedAt: clock(), TookS: took.Seconds()}
	if err != nil {
		lv.Error = err.Error()
	}
	c.mu.Lock()
	c.last, c.running = lv, false
	c.nextAt = start.Add(max(c.every, 10*took))
	c.mu.Unlock()
}

// stop starts no more computations.
func (c *verdictCache) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
}
