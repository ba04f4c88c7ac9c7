package session

import (
	"encoding/json"
	"time"
)

// Record is anything the Writer can store: it names its bucket and is
// encoded as JSON.
type Record interface {
	Bucket() string
}

// Keyed records choose their own key (a later Put with the same key
// replaces the value); others get the bucket's next sequence number.
type Keyed interface {
	Record
	Key() []byte
}

// RunInfo describes the run that wrote the file (meta/"run").
type RunInfo struct {
	Tool      string          `json:"tool"`    // "ssestress <version>"
	Command   string          `json:"command"` // run, proxy, replay run, ...
	Args      []string        `json:"args,omitempty"`
	Scenario  string          `json:"scenario,omitempty"`
	Target    string          `json:"target,omitempty"`
	Config    json.RawMessage `json:"config,omitempty"`
	Shard     string          `json:"shard,omitempty"`
	Host      string          `json:"host,omitempty"`
	PID       int             `json:"pid"`
	StartedAt time.Time       `json:"started_at"`
	EndedAt   time.Time       `json:"ended_at,omitzero"`
	// TimeScale is the factor the run's fault durations were divided by
	// (--time-scale; 1 when none), so a report matches known timeouts
	// divided by it too.
	TimeScale float64 `json:"time_scale,omitempty"`
	// Keepalive is the TCP keepalive idle period of the writing process's
	// own client sockets (0: off), so a reset after a silence of exactly
	// this long is known to be the tool's own probe.
	Keepalive Seconds `json:"keepalive_s,omitempty"`
}

// Roles of the endpoints in the topology: who an address is.
const (
	RoleClient    = "client"    // a generated load client
	RoleProxy     = "proxy"     // an ssestress proxy (Name says which)
	RoleServer    = "server"    // the service under test (or the embedded server)
	RoleMiddlebox = "middlebox" // a box on the path that ssestress does not run (a load balancer, NAT, firewall)
	// RoleTarget is an address an ssestress process sends to without
	// knowing what it is: a proxy's upstream, a run's --target. Another
	// file of the same picture may say (a proxy's listener is that proxy);
	// otherwise it is taken to be the server.
	RoleTarget = "target"
)

// Hops of a proxy: the two sides of an ssestress proxy, always named with
// the proxy ("proxy B's upstream hop"). "Hop" means nothing else in the
// schema; a stretch of the path between two endpoints is a link.
const (
	HopClient   = "client"   // the proxy's sockets accepted from its clients
	HopUpstream = "upstream" // the proxy's sockets dialed to its upstream
)

// Endpoint is one address of the topology and its role.
type Endpoint struct {
	Role string `json:"role"`
	Name string `json:"name,omitempty"` // proxy or middlebox name
	Hop  string `json:"hop,omitempty"`  // for a proxy's address: the hop it faces (HopClient for its listener)
	Addr string `json:"addr"`           // host:port
	URL  string `json:"url,omitempty"`
}

func (Endpoint) Bucket() string { return BucketTopology }

// Who closed a connection first, from the point of view of the process
// that wrote the record (ConnRecord.ClosedBy, HopConn.ClosedBy).
const (
	ClosedBySelf = "self" // the writing process closed it (the client, or the proxy on that hop)
	ClosedByPeer = "peer" // the other end of the socket (or something in its name) ended it
)

// Endings: how a TCP connection ended, as the segment that ended it.
// "Reset" always means a RST segment; a FIN is a close.
const (
	EndingRST = "rst" // a RST segment (ECONNRESET on the other side)
	EndingFIN = "fin" // a FIN: an orderly close, even if it cut a stream short
)

// ConnRecord is one connection attempt of a generated client. It is written
// when the attempt starts, rewritten with its progress while it is open (at
// the monitor interval, at most once a second) and rewritten when it ends,
// so a killed run still shows the open connections and what they received.
type ConnRecord struct {
	// ClientID names one generated client, stable across its reconnects
	// ("c0007"); Attempt numbers its connections (0 for the first).
	ClientID   string    `json:"client_id"`
	Attempt    int       `json:"attempt"`
	Scenario   string    `json:"scenario,omitempty"`
	Group      string    `json:"group,omitempty"` // symbol group, "A,B,C"
	URL        string    `json:"url"`
	LocalAddr  string    `json:"local_addr,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Start      time.Time `json:"start"`               // dial began
	Connected  time.Time `json:"connected,omitzero"`  // TCP connected
	FirstByte  time.Time `json:"first_byte,omitzero"` // response headers received
	FirstEvent time.Time `json:"first_event,omitzero"`
	End        time.Time `json:"end,omitzero"` // zero while open
	Status     int       `json:"status,omitempty"`
	// Events, Comments and Bytes count what this attempt received.
	Events      int64   `json:"events"`
	Comments    int64   `json:"comments"`
	Bytes       int64   `json:"bytes"`
	MaxGap      Seconds `json:"max_gap_s"` // longest silence between events
	LastEventID string  `json:"last_event_id,omitempty"`
	Retry       Seconds `json:"retry_s,omitempty"` // last retry the server advertised
	// EndClass is the error class that ended the attempt; "" when the client
	// closed it (end of run, churn).
	EndClass   string `json:"end_class,omitempty"`
	EndMessage string `json:"end_message,omitempty"`
	ClosedBy   string `json:"closed_by,omitempty"` // ClosedBySelf (the client) or ClosedByPeer
}

func (ConnRecord) Bucket() string { return BucketConns }

// Key is "<client id>/<attempt>" so the close replaces the open.
func (c ConnRecord) Key() []byte { return ConnKey(c.ClientID, c.Attempt) }

// ConnKey is the key of a ConnRecord.
func ConnKey(clientID string, attempt int) []byte {
	b := make([]byte, 0, len(clientID)+7)
	b = append(b, clientID...)
	b = append(b, '/')
	return appendPadded(b, attempt, 5)
}

func appendPadded(b []byte, n, width int) []byte {
	var digits [20]byte
	i := len(digits)
	for n >= 10 {
		i--
		digits[i] = byte('0' + n%10)
		n /= 10
	}
	i--
	digits[i] = byte('0' + n)
	for pad := width - (len(digits) - i); pad > 0; pad-- {
		b = append(b, '0')
	}
	return append(b, digits[i:]...)
}

// Sources of an ErrorRecord.
const (
	SourceClient = "client" // a generated client (run, replay run)
	SourceProxy  = "proxy"  // an ssestress proxy, on one of its hops
)

// ErrorRecord is one classified failure: a client error (Source
// SourceClient: ClientID and Attempt name the connection) or a failure a
// proxy saw on one of its hops (Source SourceProxy: Proxy, ConnID, Hop).
type ErrorRecord struct {
	Time     time.Time `json:"time"`
	Source   string    `json:"source"`
	ClientID string    `json:"client_id,omitempty"`
	Attempt  int       `json:"attempt"`
	Proxy    string    `json:"proxy,omitempty"`
	ConnID   string    `json:"conn_id,omitempty"` // the proxy's connection id
	Hop      string    `json:"hop,omitempty"`     // the proxy's hop
	Scenario string    `json:"scenario,omitempty"`
	Group    string    `json:"group,omitempty"`
	Class    string    `json:"class"`
	Message  string    `json:"message"`
	// LocalAddr and RemoteAddr are the failing socket's (the client's, or
	// the proxy's on Hop).
	LocalAddr  string `json:"local_addr,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	// Age is the connection's age at the error; Idle the time before it
	// with no byte received.
	Age         Seconds `json:"age_s"`
	Idle        Seconds `json:"idle_s"`
	Events      int64   `json:"events"` // events received in this attempt
	LastEventID string  `json:"last_event_id,omitempty"`
}

func (ErrorRecord) Bucket() string { return BucketErrors }

// Sample is one reading of the monitor (the seed's TestMetrics and more).
// Counts are totals since the start.
type Sample struct {
	Time       time.Time        `json:"time"`
	Uptime     Seconds          `json:"uptime_s"`
	Active     int64            `json:"active"`
	Attempts   int64            `json:"attempts"` // connection attempts so far
	Events     int64            `json:"events"`
	Comments   int64            `json:"comments"`
	Reconnects int64            `json:"reconnects"`
	Errors     map[string]int64 `json:"errors,omitempty"` // class → count so far
	HeapAlloc  uint64           `json:"heap_alloc_bytes"`
	RSS        uint64           `json:"rss_bytes"`
	Goroutines int              `json:"goroutines"`
	FDs        int              `json:"fds"`
	// TimerLag is how late the monitor's tick fired: the tool's own
	// scheduling delay.
	TimerLag Seconds `json:"timer_lag_s"`
	// CPUUser and CPUSystem are the CPU time the writing process (the load
	// generator, the proxy) has used since it started, in user and kernel
	// mode; absent where the platform does not tell. With TimerLag they show
	// when the tool itself, not the system under test, was the bottleneck.
	CPUUser   Seconds `json:"cpu_user_s,omitempty"`
	CPUSystem Seconds `json:"cpu_system_s,omitempty"`
	// ServerPID, ServerRSS and ServerFDs describe the server process named
	// with run --server-pid (absent without it, or once it has exited), so
	// a server's leak shows beside the errors it causes.
	ServerPID int    `json:"server_pid,omitempty"`
	ServerRSS uint64 `json:"server_rss_bytes,omitempty"`
	ServerFDs int    `json:"server_fds,omitempty"`
	// ServerThreads and ServerTCP (sockets by state: ESTABLISHED,
	// CLOSE_WAIT, TIME_WAIT, ...) show the classic leaks behind failures
	// after days, such as CLOSE_WAIT sockets piling up.
	ServerThreads int              `json:"server_threads,omitempty"`
	ServerTCP     map[string]int64 `json:"server_tcp,omitempty"`
}

func (Sample) Bucket() string { return BucketSamples }

// Summary is the end-of-run totals (meta/"summary"); the same object is
// printed by run --json. Its counts are of the generated clients: Clients
// started, connection Attempts (first connects and reconnects), Errors by
// class (client errors, not RST segments). A proxy's file leaves them zero
// and keeps its own totals in its ProxyInfo.
type Summary struct {
	Scenario        string           `json:"scenario"`
	DurationS       float64          `json:"duration_s"`
	Clients         int64            `json:"clients"`
	Attempts        int64            `json:"attempts"`
	Reconnects      int64            `json:"reconnects"`
	ActiveMax       int64            `json:"active_max"`
	Events          int64            `json:"events"`
	EventsPerS      float64          `json:"events_per_s"`
	Errors          map[string]int64 `json:"errors"`
	MemoryPeakBytes uint64           `json:"memory_peak_bytes"`
	SessionFile     string           `json:"session_file"`
	Interrupted     bool             `json:"interrupted,omitempty"`
	RecordsDropped  uint64           `json:"records_dropped,omitempty"`
	// Thresholds are the results of run's and replay run's --fail-on
	// thresholds, in the order given (absent without any).
	Thresholds []Threshold `json:"thresholds,omitempty"`
}

// Threshold is the result of one --fail-on threshold, evaluated once the
// run ended: the expression as written, the value it measured and whether
// it passed. A threshold fails when its expression holds ("ECONNRESET>0"
// fails on the first ECONNRESET); the command then exits 3.
type Threshold struct {
	Expr string `json:"expr"`
	// Value is what the left side measured, in Unit: a count ("" unit), a
	// rate ("/s", "/min", "/h", "/d", "/connection-hour") or a duration in
	// seconds ("s"). Null when there was nothing to measure or it is not
	// finite: a percentile over no errors, a rate over no time (Note says
	// which).
	Value  *float64 `json:"value"`
	Unit   string   `json:"unit,omitempty"`
	Passed bool     `json:"passed"`
	Note   string   `json:"note,omitempty"`
}
