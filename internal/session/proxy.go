package session

import (
	"strconv"
	"time"
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
	// upstream hop local is the proxy's ephemeral port and remote the server.
	LocalAddr  string    `json:"local_addr"`
	RemoteAddr string    `json:"remote_addr"`
	Method     string    `json:"method,omitempty"`
	Path       string    `json:"path,omitempty"` // path and query
	Status     int       `json:"status,omitempty"`
	Open       time.Time `json:"open"`
	Close      time.Time `json:"close,omitzero"` // zero while open
	// ClosedBy is who ended this hop first: "client", "proxy" or "server".
	ClosedBy string `json:"closed_by,omitempty"`
	// How is how it ended as the proxy saw it: "FIN" (EOF on read, or a
	// clean close by the proxy) or "RST" (ECONNRESET on read, or a
	// SetLinger(0) close by the proxy).
	How        string `json:"how,omitempty"`
	Class      string `json:"class,omitempty"` // error class seen on this hop, if any
	BytesUp    int64  `json:"bytes_up"`        // toward the server
	BytesDown  int64  `json:"bytes_down"`      // toward the client
	EventsDown int64  `json:"events_down"`     // SSE events forwarded toward the client
	// UpstreamErrorAction is what the proxy did to the client hop when the
	// upstream hop failed: "reset", "eof" or "abort" (--on-upstream-error).
	UpstreamErrorAction string        `json:"upstream_error_action,omitempty"`
	Faults              []FaultFiring `json:"faults,omitempty"`
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

// FaultFiring is a fault applied to a connection, inside its HopConn.
type FaultFiring struct {
	Fault  string    `json:"fault"`  // the fault's name (its spec, or the name given)
	Kind   string    `json:"kind"`   // reset, idle-timeout, latency, ...
	Action string    `json:"action"` // what it did: rst, fin, delay, drop, status, ...
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
	Fault     string    `json:"fault"`
	Kind      string    `json:"kind"`
	Direction string    `json:"direction,omitempty"`
	Action    string    `json:"action"`
	Detail    string    `json:"detail,omitempty"`
	// LocalAddr and RemoteAddr are the proxy's socket the fault acted on.
	LocalAddr  string `json:"local_addr,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
}

func (FaultEvent) Bucket() string { return BucketFaults }
