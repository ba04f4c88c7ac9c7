package session

import (
	"strconv"
	"time"
)

// ProxyInfo describes one ssestress proxy (bucket proxies, key its name):
// the facts about it that attribution must not guess, written when it
// starts and rewritten with its totals when it stops. A file may hold
// several (a run's in-process proxy, proxies added at run time).
type ProxyInfo struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`             // its listener (the client hop's local address)
	Upstream string `json:"upstream,omitempty"` // host:port it forwards to; "" in forward mode
	Mode     string `json:"mode"`               // "reverse" or "forward"
	// Keepalive is the TCP keepalive idle period the proxy sets on both
	// hops' sockets (0: keepalive off): a peer that answers the probe with
	// a RST after exactly this long a silence is answering the proxy's
	// own probe, not timing out.
	Keepalive Seconds `json:"keepalive_s"`
	// OnUpstreamError is what the proxy does to the client hop when its
	// upstream hop fails: "reset", "eof" or "abort".
	OnUpstreamError string  `json:"on_upstream_error"`
	TimeScale       float64 `json:"time_scale"`
	// Faults are the fault specs it started with.
	Faults  []string  `json:"faults,omitempty"`
	Started time.Time `json:"started"`
	Stopped time.Time `json:"stopped,omitzero"` // zero while it runs

	// Totals, final once Stopped is set: client connections accepted,
	// requests proxied, most client connections open at once, SSE events
	// forwarded to clients, fault firings.
	Connections int64 `json:"connections"`
	Requests    int64 `json:"requests"`
	ActiveMax   int64 `json:"active_max"`
	Events      int64 `json:"events"`
	FaultsFired int64 `json:"faults_fired"`
	// Errors counts the failures the proxy saw, by "<hop> <class>".
	Errors map[string]int64 `json:"errors,omitempty"`
	// UnrecordedTunnels counts, by target ("host:port"), the CONNECT
	// tunnels of forward mode the proxy passed through without parsing
	// or recording them: TLS inside and no --mitm, or a tunnel it could
	// not take over (HTTP/2 CONNECT). Tunnels carrying plain HTTP, and TLS
	// ones with --mitm, are recorded like any stream and not counted here.
	UnrecordedTunnels map[string]int64 `json:"unrecorded_tunnels,omitempty"`
}

func (ProxyInfo) Bucket() string { return BucketProxies }

// Key is the proxy's name.
func (p ProxyInfo) Key() []byte { return []byte(p.Name) }

// Proxy modes.
const (
	ModeReverse = "reverse"
	ModeForward = "forward"
)

// HopConn is one proxied connection seen on one hop of an ssestress proxy.
// Both hops of one proxied stream share ConnID, which is how a client-side
// error is followed to the upstream flow it was paired with. It is written
// when the hop opens and rewritten when it closes.
type HopConn struct {
	Proxy  string `json:"proxy"`   // the proxy's --name
	ConnID string `json:"conn_id"` // "<proxy>-<n>", shared by both hops
	Hop    string `json:"hop"`     // HopClient or HopUpstream
	// Request is, on the upstream hop, the request's number on its client
	// connection (1 for the first): a keep-alive client connection that
	// carries several requests has one upstream HopConn per request. It is
	// 0 on the client hop.
	Request int `json:"request,omitempty"`
	// LocalAddr and RemoteAddr are the proxy's socket on this hop: on the
	// client hop local is the listener and remote the client; on the
	// upstream hop local is the proxy's ephemeral port and remote the
	// upstream.
	LocalAddr  string    `json:"local_addr"`
	RemoteAddr string    `json:"remote_addr"`
	Method     string    `json:"method,omitempty"`
	Path       string    `json:"path,omitempty"` // path and query
	Status     int       `json:"status,omitempty"`
	Opened     time.Time `json:"opened"`
	Closed     time.Time `json:"closed,omitzero"` // zero while open
	// ClosedBy is who ended this hop first: ClosedBySelf (this proxy) or
	// ClosedByPeer (the client on the client hop, the upstream on the
	// upstream hop).
	ClosedBy string `json:"closed_by,omitempty"`
	// Ending is how it ended as the proxy's socket saw it: EndingFIN (EOF
	// on read, or a clean close by the proxy) or EndingRST (ECONNRESET on
	// read, or a SetLinger(0) close by the proxy).
	Ending string `json:"ending,omitempty"`
	// Idle is the time with no byte either way on this hop before it
	// closed (set once Closed is): a RST from the peer after exactly the
	// proxy's keepalive period of silence answered the proxy's own probe.
	Idle      Seconds `json:"idle_s,omitempty"`
	Class     string  `json:"class,omitempty"` // error class seen on this hop, if any
	BytesUp   int64   `json:"bytes_up"`        // toward the upstream
	BytesDown int64   `json:"bytes_down"`      // toward the client
	// EventsDown counts the SSE events that came down this hop: from the
	// upstream on the upstream hop, to the client on the client hop (fewer
	// when a fault dropped some).
	EventsDown int64 `json:"events_down"`
	// OnUpstreamError is set on the client hop when the upstream hop failed
	// and the proxy ended this hop by its policy: "reset", "eof" or
	// "abort" (ProxyInfo.OnUpstreamError).
	OnUpstreamError string        `json:"on_upstream_error,omitempty"`
	Faults          []FaultFiring `json:"faults,omitempty"`
}

func (HopConn) Bucket() string { return BucketHopConns }

// Key is "<proxy>/<conn id>/<hop>", and "<proxy>/<conn id>/<hop>/<request>"
// for the upstream hops of the second and later requests of a connection.
func (h HopConn) Key() []byte {
	k := h.Proxy + "/" + h.ConnID + "/" + h.Hop
	if h.Request > 1 {
		k += "/" + strconv.Itoa(h.Request)
	}
	return []byte(k)
}

// Fault actions: what a fault did when it fired. The proxy states with
// each firing whether it ended the connection (FaultFiring.Ending);
// consumers never infer it from the action.
const (
	ActionRST        = "rst"         // closed the socket with a RST (SetLinger(0))
	ActionFIN        = "fin"         // closed the socket with a FIN
	ActionRefuse     = "refuse"      // refused a connection: listener closed, or upstream not dialed
	ActionStatus     = "status"      // answered an HTTP error status instead of streaming
	ActionRSTStream  = "rst-stream"  // reset one HTTP/2 stream (RST_STREAM)
	ActionGoAway     = "goaway"      // sent an HTTP/2 GOAWAY and closed the connection
	ActionDelay      = "delay"       // delayed data or events
	ActionThrottle   = "throttle"    // limited the bandwidth
	ActionSlice      = "slice"       // cut writes into small slices
	ActionBlackhole  = "blackhole"   // stopped forwarding without closing
	ActionDrop       = "drop"        // dropped SSE events
	ActionStall      = "stall"       // stopped in the middle of an event
	ActionDelayClose = "delay-close" // held a close back
	ActionNone       = "none"        // could not act (e.g. an HTTP/2 fault on an HTTP/1.1 connection)
)

// Endings of a fault firing (FaultFiring.Ending), beside EndingRST and
// EndingFIN, for what ends less or more than one TCP connection.
const (
	EndingRefused = "refused" // the connection was never made (ECONNREFUSED, or no upstream)
	EndingStream  = "stream"  // one stream ended (an HTTP status, an HTTP/2 RST_STREAM); the connection lives on
)

// actionEnding is how each action ends the connection it acts on. The
// proxy records it with each firing (FaultFiring.Ending); actions not
// listed do not end the connection.
var actionEnding = map[string]string{
	ActionRST:       EndingRST,
	ActionFIN:       EndingFIN,
	ActionGoAway:    EndingFIN, // GOAWAY, then the connection is closed
	ActionRefuse:    EndingRefused,
	ActionStatus:    EndingStream,
	ActionRSTStream: EndingStream,
}

// ActionEnding is the Ending a firing with action has: what the proxy
// states with each firing, and what version 1 files' actions meant.
func ActionEnding(action string) string { return actionEnding[action] }

// FaultFiring is a fault applied to a connection, inside its HopConn.
type FaultFiring struct {
	FaultName string `json:"fault_name"` // the fault's name (its spec, or the name given)
	FaultKind string `json:"fault_kind"` // reset, idle-timeout, latency, ...
	Action    string `json:"action"`     // one of the Action constants
	// Ending is how this firing ended the connection on its hop:
	// EndingRST, EndingFIN, EndingRefused, EndingStream, or "" when it did
	// not end it (it slowed, delayed, dropped or stalled).
	Ending string    `json:"ending,omitempty"`
	Time   time.Time `json:"time"`
}

// FaultEvent is a fault that fired, recorded on its own (bucket faults) so a
// report can tell an injected reset from a natural one without reading every
// HopConn.
type FaultEvent struct {
	Time      time.Time `json:"time"`
	Proxy     string    `json:"proxy"`
	ConnID    string    `json:"conn_id"`
	Request   int       `json:"request,omitempty"` // the request on the client connection, when known
	Hop       string    `json:"hop"`
	FaultName string    `json:"fault_name"`
	FaultKind string    `json:"fault_kind"`
	Direction string    `json:"direction,omitempty"`
	Action    string    `json:"action"`
	Ending    string    `json:"ending,omitempty"` // as FaultFiring.Ending
	Detail    string    `json:"detail,omitempty"`
	// LocalAddr and RemoteAddr are the proxy's socket the fault acted on.
	LocalAddr  string `json:"local_addr,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
}

func (FaultEvent) Bucket() string { return BucketFaults }

// Ends reports whether the firing ended the connection or stream it acted on.
func (f FaultFiring) Ends() bool { return f.Ending != "" }

// Ends reports whether the firing ended the connection or stream it acted on.
func (f FaultEvent) Ends() bool { return f.Ending != "" }
