package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssestress/ssestress/internal/session"
)

// Snapshot is what a producer's counters say at one moment: its generated
// clients (nil for a proxy), its proxies and its session file.
type Snapshot struct {
	Clients *Clients
	Proxies []Proxy
	Session *Session
}

// Clients are the counts of a run's generated clients
// (clients.Counters).
type Clients struct {
	// Hop is where the clients' sockets are: the hop of the proxy they
	// dial ("run-proxy/client"), or the link ("direct" to the embedded
	// server, "client→target" to a --target).
	Hop                string
	Started, Attempts  int64
	Reconnects, Events int64
	Comments           int64
	Active, ActiveMax  int64
	Errors             map[string]int64 // by class
	HTTP2              bool
	HTTP2Connections   int64
	// Resets counts the TCP resets the clients received (ECONNRESET,
	// EPIPE) from ResetSender ("server", "target"); zero when a proxy of
	// this process holds the other end of their sockets and counts the
	// same segments as its own.
	Resets      int64
	ResetSender string
}

// Proxy is one proxy's counts. Hop keys are the proxy's own hops,
// session.HopClient and HopUpstream; the series name them with the proxy
// ("p/client").
type Proxy struct {
	Name string
	// Requests proxied, SSE events forwarded to clients.
	Requests, EventsForwarded int64
	// Opened and Closed count hop connections by hop.
	Opened, Closed map[string]int64
	Endings        map[Ending]int64
	Fired          map[Fired]int64
	// Errors counts failures the proxy saw, by hop and class (failed
	// accepts and dials included).
	Errors map[HopClass]int64
}

// Ending is how hop connections ended: session.EndingRST or EndingFIN,
// closed first by session.ClosedBySelf (the proxy) or ClosedByPeer.
type Ending struct{ Hop, Ending, ClosedBy string }

// Fired counts fault firings by hop and fault kind.
type Fired struct{ Hop, Kind string }

// HopClass counts failures by hop and error class.
type HopClass struct{ Hop, Class string }

// Session is the session file writer's counts.
type Session struct{ Committed, Dropped uint64 }

// Reset senders (label sender of ssestress_resets_total): the endpoint in
// whose name the RST came, as the process's own sockets saw it. A
// middlebox that forges a reset in an endpoint's name is told apart only
// by the report's attribution.
const (
	SenderProxy  = "proxy"  // a proxy of this process reset its socket
	SenderClient = "client" // the peer on a proxy's client hop
	SenderTarget = "target" // the peer on a proxy's upstream hop, or a --target the clients dial
	SenderServer = "server" // the embedded server the clients dial directly
)

// ResetSender names who sent the RST that ended a proxy's hop connection.
func ResetSender(hop, closedBy string) string {
	switch {
	case closedBy == session.ClosedBySelf:
		return SenderProxy
	case hop == session.HopClient:
		return SenderClient
	}
	return SenderTarget
}

// HopLabel is the hop label of a proxy's hop: "<proxy>/<hop>".
func HopLabel(proxy, hop string) string { return proxy + "/" + hop }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The ssestress series read from a Snapshot.
var (
	descInfo = desc("ssestress_info", "The ssestress command this process runs (always 1).", "command", "scenario", "version")

	descClients    = desc("ssestress_clients_total", "Generated clients (EventSources) started.")
	descAttempts   = desc("ssestress_attempts_total", "Connection attempts of the generated clients: first connects and reconnects.")
	descReconnects = desc("ssestress_reconnects_total", "Reconnects of the generated clients after a failure.")
	descEvents     = desc("ssestress_events_total", "SSE events dispatched to the generated clients.")
	descComments   = desc("ssestress_comments_total", "SSE comments (heartbeats) the generated clients received.")
	descActive     = desc("ssestress_streams_active", "Connection attempts with an open event-stream response now.")
	descActiveMax  = desc("ssestress_streams_active_max", "Most event streams open at once so far.")
	descClientErrs = desc("ssestress_client_errors_total", "Errors of the generated clients by error class and the hop or link of their socket.", "class", "hop")
	descH2Conns    = desc("ssestress_http2_connections", "TCP connections the generated clients' HTTP/2 streams share.")

	descProxyConns    = desc("ssestress_proxy_connections_total", "Hop connections of a proxy opened: accepted on its client hop, dialed on its upstream hop.", "hop")
	descProxyActive   = desc("ssestress_proxy_connections_active", "Hop connections of a proxy open now.", "hop")
	descProxyClosed   = desc("ssestress_proxy_connections_closed_total", "Hop connections of a proxy closed, by the segment that ended them (rst, fin) and who sent it first (self: the proxy, peer).", "hop", "ending", "closed_by")
	descProxyRequests = desc("ssestress_proxy_requests_total", "Requests a proxy passed on.", "proxy")
	descProxyEvents   = desc("ssestress_proxy_events_forwarded_total", "SSE events a proxy forwarded to its clients.", "proxy")
	descProxyErrs     = desc("ssestress_proxy_errors_total", "Failures a proxy saw on its hops by error class (resets by the peer, timeouts, failed accepts and dials).", "class", "hop")
	descFaults        = desc("ssestress_proxy_faults_fired_total", "Fault firings of a proxy by hop and fault kind.", "fault_kind", "hop")

	descResets = desc("ssestress_resets_total", "TCP resets (RST segments) that ended this process's sockets, by hop or link and sender: "+
		"proxy (a proxy of this process sent it), client or target (the peer of a proxy's client or upstream hop), "+
		"server or target (the peer the generated clients dial directly).", "hop", "sender")

	descCommitted = desc("ssestress_session_records_committed_total", "Records written to the session file.")
	descDropped   = desc("ssestress_session_records_dropped_total", "Records not written to the session file (queue or file full).")
)

// seriesCollector reads a Snapshot at each scrape.
type seriesCollector struct {
	opts                        Options
	clientClasses, proxyClasses *classGuard
}

func (c *seriesCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descClients, descAttempts, descReconnects, descEvents, descComments,
		descActive, descActiveMax, descClientErrs, descH2Conns, descProxyConns, descProxyActive, descProxyClosed,
		descProxyRequests, descProxyEvents, descProxyErrs, descFaults, descResets, descCommitted, descDropped} {
		ch <- d
	}
}

func (c *seriesCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.opts
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, o.Command, o.Scenario, o.Version)
	if o.Snapshot == nil {
		return
	}
	s := o.Snapshot()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	resets := map[[2]string]int64{}
	if cl := s.Clients; cl != nil {
		counter(descClients, float64(cl.Started))
		counter(descAttempts, float64(cl.Attempts))
		counter(descReconnects, float64(cl.Reconnects))
		counter(descEvents, float64(cl.Events))
		counter(descComments, float64(cl.Comments))
		gauge(descActive, float64(cl.Active))
		gauge(descActiveMax, float64(cl.ActiveMax))
		folded := c.clientClasses.fold(cl.Errors)
		for _, class := range sortedKeys(folded) {
			counter(descClientErrs, float64(folded[class]), class, cl.Hop)
		}
		if cl.HTTP2 {
			gauge(descH2Conns, float64(cl.HTTP2Connections))
		}
		if cl.ResetSender != "" {
			resets[[2]string{cl.Hop, cl.ResetSender}] += cl.Resets
		}
	}
	for _, p := range s.Proxies {
		for _, hop := range []string{session.HopClient, session.HopUpstream} {
			label := HopLabel(p.Name, hop)
			counter(descProxyConns, float64(p.Opened[hop]), label)
			gauge(descProxyActive, float64(p.Opened[hop]-p.Closed[hop]), label)
		}
		for _, e := range sortedBy(p.Endings, func(e Ending) string { return e.Hop + " " + e.Ending + " " + e.ClosedBy }) {
			label := HopLabel(p.Name, e.Hop)
			counter(descProxyClosed, float64(p.Endings[e]), label, e.Ending, e.ClosedBy)
			if e.Ending == session.EndingRST {
				resets[[2]string{label, ResetSender(e.Hop, e.ClosedBy)}] += p.Endings[e]
			}
		}
		counter(descProxyRequests, float64(p.Requests), p.Name)
		counter(descProxyEvents, float64(p.EventsForwarded), p.Name)
		byHop := map[string]map[string]int64{}
		for k, n := range p.Errors {
			if byHop[k.Hop] == nil {
				byHop[k.Hop] = map[string]int64{}
			}
			byHop[k.Hop][k.Class] += n
		}
		for _, hop := range sortedKeys(byHop) {
			folded := c.proxyClasses.fold(byHop[hop])
			for _, class := range sortedKeys(folded) {
				counter(descProxyErrs, float64(folded[class]), class, HopLabel(p.Name, hop))
			}
		}
		for _, f := range sortedBy(p.Fired, func(f Fired) string { return f.Hop + " " + f.Kind }) {
			counter(descFaults, float64(p.Fired[f]), f.Kind, HopLabel(p.Name, f.Hop))
		}
	}
	for _, k := range sortedBy(resets, func(k [2]string) string { return k[0] + " " + k[1] }) {
		counter(descResets, float64(resets[k]), k[0], k[1])
	}
	if ss := s.Session; ss != nil {
		counter(descCommitted, float64(ss.Committed))
		counter(descDropped, float64(ss.Dropped))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedBy[K comparable, V any](m map[K]V, key func(K) string) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return key(keys[i]) < key(keys[j]) })
	return keys
}
