// Package metrics is ssestress's Prometheus exposition: the series a live
// view (--http ADDR/metrics of run, replay run and proxy) serves, their
// names, labels and help, in one place.
//
// A Registry holds the standard process and Go collectors of
// github.com/prometheus/client_golang (process_cpu_seconds_total,
// process_resident_memory_bytes, go_goroutines, ...: what stock dashboards
// read), the server's process readings of --server-pid (the same
// collector, as ssestress_server_process_*{pid}), and ssestress's own
// series. These are read at scrape time from a Snapshot of the counters the
// producer already keeps (clients.Counters, the proxy's counts), so a
// scrape never drifts from the session file's summary and nothing updates
// gauges in the background. Only the histograms of age and idle time at
// each error are observed as the errors happen (ErrorHistograms).
//
// Labels are bounded: hop is a proxy's hop ("<proxy>/client",
// "<proxy>/upstream": two per proxy of the process) or the one link the
// generated clients dial ("direct", "client→target"); class is an error
// class of the taxonomy, at most MaxClasses distinct ones per family (later
// ones are counted under class "OTHER"); fault_kind is one of the proxy's
// kinds; ending, closed_by and sender have two to four values each.
package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options describe the process a Registry exposes.
type Options struct {
	// Command ("run", "replay run", "proxy"), Scenario and Version label
	// ssestress_info.
	Command, Scenario, Version string
	// Snapshot returns the producer's counters; it is called once per
	// scrape and must be safe for concurrent use. Nil: no ssestress series
	// but ssestress_info.
	Snapshot func() Snapshot
	// ServerPID, when positive, adds the process readings of the server
	// under test (run --server-pid) as ssestress_server_* series labelled
	// with its pid.
	ServerPID int
}

// Registry is the registry of one live view. Other series (a threshold's
// state, say) can be registered on it like on any prometheus.Registry.
type Registry struct {
	*prometheus.Registry
	// ClientErrors and ProxyErrors are the histograms of age and idle time
	// at each error of the generated clients and of the proxies' hops.
	ClientErrors *ErrorHistograms
	ProxyErrors  *ErrorHistograms
}

// New builds the registry: the standard process and Go collectors, the
// server's readings, the ssestress series and the error histograms.
func New(o Options) *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	clientGuard, proxyGuard := newClassGuard(), newClassGuard()
	r := &Registry{
		Registry:     reg,
		ClientErrors: newErrorHistograms("ssestress_client_error", "an error of a generated client", clientGuard),
		ProxyErrors:  newErrorHistograms("ssestress_proxy_error", "a failure a proxy saw on one of its hop connections", proxyGuard),
	}
	reg.MustRegister(r.ClientErrors.age, r.ClientErrors.idle, r.ProxyErrors.age, r.ProxyErrors.idle)
	reg.MustRegister(&seriesCollector{opts: o, clientClasses: clientGuard, proxyClasses: proxyGuard})
	if o.ServerPID > 0 {
		pid := o.ServerPID
		labelled := prometheus.WrapRegistererWith(prometheus.Labels{"pid": strconv.Itoa(pid)}, reg)
		labelled.MustRegister(
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{
				PidFn: func() (int, error) { return pid, nil }, Namespace: "ssestress_server",
			}),
			&serverCollector{pid: pid},
		)
	}
	return r
}

// Handler serves the registry in the exposition format the scraper asks
// for (the text format by default).
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, // a failed reading leaves one series out, not the scrape
		Registry:      r.Registry,               // promhttp_metric_handler_errors_total
	})
}
