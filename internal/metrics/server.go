package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssestress/ssestress/internal/procstat"
)

// The server's readings beside the standard process collector's
// (ssestress_server_process_*): whether it can be read, its threads, and
// its TCP sockets by state, where the classic leaks behind failures after
// days show (CLOSE_WAIT piling up). The pid label is added by the
// registerer.
var (
	descServerUp      = desc("ssestress_server_up", "1 when the server process (--server-pid) could be read from /proc, 0 when not (exited, or no /proc).")
	descServerThreads = desc("ssestress_server_threads", "OS threads of the server process.")
	descServerTCP     = desc("ssestress_server_tcp_sockets", "TCP sockets of the server process by state (ESTABLISHED, CLOSE_WAIT, TIME_WAIT, ...).", "state")
)

type serverCollector struct{ pid int }

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descServerUp
	ch <- descServerThreads
	ch <- descServerTCP
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := procstat.Read(c.pid)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descServerUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descServerUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(descServerThreads, prometheus.GaugeValue, float64(st.Threads))
	states, err := procstat.TCPStates(c.pid)
	if err != nil {
		return
	}
	for _, state := range sortedKeys(states) {
		ch <- prometheus.MustNewConstMetric(descServerTCP, prometheus.GaugeValue, float64(states[state]), state)
	}
}
