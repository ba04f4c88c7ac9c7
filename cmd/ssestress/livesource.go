package main

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/metrics"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/proxy"
	"github.com/ssestress/ssestress/replay"
)

// liveSource is what a producer's live view reads: its generated clients'
// counters and its proxies' counts, at each scrape of /metrics and each
// snapshot of /live/events, and the histograms its clients and proxies
// feed as errors happen.
type liveSource struct {
	command, scenario string
	counters          *clients.Counters // nil: no generated clients (proxy)
	// clientHop is the hop or link of the clients' sockets; resetSender
	// who sends the resets they receive ("": a proxy of this process,
	// which counts them as its own).
	clientHop, resetSender string
	h2                     func() int64 // nil: not HTTP/2
	reg                    *metrics.Registry

	mu      sync.Mutex
	proxies []*proxy.Proxy
	w       *session.Writer // set by serveLive
	start   time.Time
}

// newClientsLive is the live source of run and replay run: their clients
// dial the in-process proxy (p, when --via-proxy), the embedded server
// (embedded) or a target.
func newClientsLive(command, scenario string, counters *clients.Counters, setup *requestSetup, p *proxy.Proxy, embedded bool, serverPID int) *liveSource {
	src := &liveSource{command: command, scenario: scenario, counters: counters}
	switch {
	case p != nil:
		src.clientHop = metrics.HopLabel(p.Name(), session.HopClient)
	case embedded:
		src.clientHop, src.resetSender = session.LinkDirect, metrics.SenderServer
	default:
		src.clientHop, src.resetSender = session.RoleClient+"→"+session.RoleTarget, metrics.SenderTarget
	}
	if setup != nil && setup.h2 != nil {
		src.h2 = setup.h2.Connections
	}
	src.reg = metrics.New(metrics.Options{Command: command, Scenario: scenario, Version: version, Snapshot: src.snapshot, ServerPID: serverPID})
	if p != nil {
		src.addProxy(p)
	}
	return src
}

// newProxyLive is the live source of ssestress proxy.
func newProxyLive(p *proxy.Proxy) *liveSource {
	src := &liveSource{command: "proxy", scenario: p.Summary().Scenario}
	src.reg = metrics.New(metrics.Options{Command: "proxy", Scenario: src.scenario, Version: version, Snapshot: src.snapshot})
	src.addProxy(p)
	return src
}

// addProxy adds a proxy of the process (the first one, or one started at
// run time) and has its hop failures observed.
func (s *liveSource) addProxy(p *proxy.Proxy) {
	s.mu.Lock()
	s.proxies = append(s.proxies, p)
	s.mu.Unlock()
	name := p.Name()
	p.OnHopFailure(func(f proxy.HopFailure) {
		s.reg.ProxyErrors.Observe(f.Class, metrics.HopLabel(name, f.Hop), f.Age, f.Idle)
	})
	p.OnProxyAdded(s.addProxy) // proxies added through Toxiproxy's API
}

// observe has every error of the clients made with opts observed by the
// histograms of age and idle time (before whatever OnError did).
func (s *liveSource) observe(opts *clients.Options) {
	next := opts.OnError
	opts.OnError = func(st *clients.Stream, rec *session.ErrorRecord) {
		s.reg.ClientErrors.Observe(rec.Class, s.clientHop, rec.Age.D(), rec.Idle.D())
		if next != nil {
			next(st, rec)
		}
	}
}

// attach is called by serveLive with the session file's writer and start.
func (s *liveSource) attach(w *session.Writer, start time.Time) {
	s.mu.Lock()
	s.w, s.start = w, start
	s.mu.Unlock()
}

// snapshot reads the counters (metrics.Options.Snapshot).
func (s *liveSource) snapshot() metrics.Snapshot {
	s.mu.Lock()
	proxies, w := slices.Clone(s.proxies), s.w
	s.mu.Unlock()
	var snap metrics.Snapshot
	if c := s.counters; c != nil {
		errs := c.Errors()
		cl := &metrics.Clients{
			Hop: s.clientHop, Started: c.Streams.Load(), Attempts: c.Attempts.Load(), Reconnects: c.Reconnects.Load(),
			Events: c.Events.Load(), Comments: c.Comments.Load(), Active: c.Active.Load(), ActiveMax: c.ActiveMax.Load(),
			Errors: errs, ResetSender: s.resetSender,
		}
		if s.resetSender != "" {
			for class, n := range errs {
				if attribution.IsReset(class) {
					cl.Resets += n
				}
			}
		}
		if s.h2 != nil {
			cl.HTTP2, cl.HTTP2Connections = true, s.h2()
		}
		snap.Clients = cl
	}
	for _, p := range proxies {
		st, lc := p.Stats(), p.LiveCounts()
		mp := metrics.Proxy{
			Name: p.Name(), Requests: st.Streams, EventsForwarded: st.EventsDown,
			Opened: lc.Opened, Closed: lc.Closed,
			Endings: make(map[metrics.Ending]int64, len(lc.Endings)), Fired: make(map[metrics.Fired]int64, len(lc.Fired)),
			Errors: make(map[metrics.HopClass]int64, len(st.Errors)),
		}
		for k, n := range lc.Endings {
			mp.Endings[metrics.Ending{Hop: k.Hop, Ending: k.Ending, ClosedBy: k.ClosedBy}] += n
		}
		for k, n := range lc.Fired {
			mp.Fired[metrics.Fired{Hop: k.Hop, Kind: k.Kind}] += n
		}
		for k, n := range st.Errors {
			hop, class, _ := strings.Cut(k, ":")
			mp.Errors[metrics.HopClass{Hop: hop, Class: class}] += n
		}
		snap.Proxies = append(snap.Proxies, mp)
	}
	if w != nil {
		snap.Session = &metrics.Session{Committed: w.Committed(), Dropped: w.Dropped()}
	}
	return snap
}

// verdict is the verdict so far of the file (the report's, read as
// /report reads it).
func (f *liveFile) verdict() (v analysis.Verdict, err error) {
	err = f.withReport(func(rep *analysis.Report) error { v = rep.Verdict; return nil })
	return v, err
}

// replayServeRegistry is the /metrics of replay serve: the standard
// process and Go series and the server's own counters, read at scrape
// time.
func replayServeRegistry(srv *replay.Server) *metrics.Registry {
	reg := metrics.New(metrics.Options{Command: "replay serve", Version: version})
	reg.MustRegister(replayServeCollector{srv})
	return reg
}

var (
	descReplayServed = prometheus.NewDesc("ssestress_replay_streams_served_total", "Requests answered with a recorded stream.", nil, nil)
	descReplayActive = prometheus.NewDesc("ssestress_replay_streams_active", "Recorded streams being sent now.", nil, nil)
	descReplayFrames = prometheus.NewDesc("ssestress_replay_frames_total", "Recorded frames (events, comments, retry) sent.", nil, nil)
)

type replayServeCollector struct{ srv *replay.Server }

func (c replayServeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReplayServed
	ch <- descReplayActive
	ch <- descReplayFrames
}

func (c replayServeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	ch <- prometheus.MustNewConstMetric(descReplayServed, prometheus.CounterValue, float64(st.Served))
	ch <- prometheus.MustNewConstMetric(descReplayActive, prometheus.GaugeValue, float64(st.Active))
	ch <- prometheus.MustNewConstMetric(descReplayFrames, prometheus.CounterValue, float64(st.Frames))
}
