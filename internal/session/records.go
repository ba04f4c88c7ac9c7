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
}

// Roles of the endpoints in the topology.
const (
	RoleClient    = "client"    // a generated load client
	RoleProxy     = "proxy"     // an ssestress proxy (Name says which)
	RoleServer    = "server"    // the service under test (or the embedded server)
	RoleMiddlebox = "middlebox" // a hop named by the user that ssestress does not run
)

// Hops of a proxy.
const (
	HopClient   = "client"   // client ↔ proxy
	HopUpstream = "upstream" // proxy ↔ server
)

// Endpoint is one address of the topology and its role.
type Endpoint struct {
	Role string `json:"role"`
	Name string `json:"name,omitempty"` // proxy or hop name
	Side string `json:"side,omitempty"` // for a proxy: the hop this address faces
	Addr string `json:"addr"`           // host:port
	URL  string `json:"url,omitempty"`
}

func (Endpoint) Bucket() string { return BucketTopology }

// ConnRecord is one connection attempt of a generated client. It is written
// when the attempt starts, rewritten with its progress while it is open (at
// the monitor interval, at most once a second) and rewritten when it ends,
// so a killed run still shows the open connections and what they received.
type ConnRecord struct {
	ConnID     string    `json:"conn_id"` // stable across reconnects: "c0007"
	Attempt    int       `json:"attempt"` // 0 for the first connect, then 1, 2, ...
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
	Events      int64         `json:"events"`
	Comments    int64         `json:"comments"`
	Bytes       int64         `json:"bytes"`
	MaxGap      time.Duration `json:"max_gap_ns"` // longest silence between events
	LastEventID string        `json:"last_event_id,omitempty"`
	Retry       time.Duration `json:"retry_ns,omitempty"` // last retry the server advertised
	// EndClass is the error class that ended the attempt; "" when the client
	// closed it (end of run, churn).
	EndClass   string `json:"end_class,omitempty"`
	EndMessage string `json:"end_message,omitempty"`
	ClosedBy   string `json:"closed_by,omitempty"` // "client" or "server"
}

func (ConnRecord) Bucket() string { return BucketConns }

// Key is "<conn id>/<attempt>" so the close replaces the open.
func (c ConnRecord) Key() []byte { return ConnKey(c.ConnID, c.Attempt) }

// ConnKey is the key of a ConnRecord.
func ConnKey(connID string, attempt int) []byte {
	b := make([]byte, 0, len(connID)+7)
	b = append(b, connID...)
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

// ErrorRecord is one classified failure seen by a generated client (Hop
// "client") or by another producer.
type ErrorRecord struct {
	Time        time.Time     `json:"time"`
	Source      string        `json:"source"` // "client", "proxy:<name>", "replay"
	ConnID      string        `json:"conn_id"`
	Attempt     int           `json:"attempt"`
	Scenario    string        `json:"scenario,omitempty"`
	Group       string        `json:"group,omitempty"`
	Hop         string        `json:"hop,omitempty"`
	Class       string        `json:"class"`
	Message     string        `json:"message"`
	LocalAddr   string        `json:"local_addr,omitempty"`
	RemoteAddr  string        `json:"remote_addr,omitempty"`
	Age         time.Duration `json:"age_ns"`             // since the attempt started
	SinceLast   time.Duration `json:"since_last_byte_ns"` // idle time before the error
	Events      int64         `json:"events"`             // events received in this attempt
	LastEventID string        `json:"last_event_id,omitempty"`
}

func (ErrorRecord) Bucket() string { return BucketErrors }

// Sample is one reading of the monitor (the seed's TestMetrics and more).
type Sample struct {
	Time       time.Time        `json:"time"`
	Uptime     time.Duration    `json:"uptime_ns"`
	Active     int64            `json:"active"`
	Opened     int64            `json:"opened"` // connection attempts so far
	Messages   int64            `json:"messages"`
	Comments   int64            `json:"comments"`
	Reconnects int64            `json:"reconnects"`
	Errors     map[string]int64 `json:"errors,omitempty"` // class → count so far
	HeapAlloc  uint64           `json:"heap_alloc_bytes"`
	RSS        uint64           `json:"rss_bytes"`
	Goroutines int              `json:"goroutines"`
	FDs        int              `json:"fds"`
	// TimerLag is how late the monitor's tick fired: the tool's own
	// scheduling delay.
	TimerLag time.Duration `json:"timer_lag_ns"`
	// CPUUser and CPUSystem are the CPU time the writing process (the load
	// generator, the proxy) has used since it started, in user and kernel
	// mode; absent where the platform does not tell. With TimerLag they show
	// when the tool itself, not the system under test, was the bottleneck.
	CPUUser   time.Duration `json:"cpu_user_ns,omitempty"`
	CPUSystem time.Duration `json:"cpu_system_ns,omitempty"`
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
// printed by run --json.
type Summary struct {
	Scenario          string           `json:"scenario"`
	DurationS         float64          `json:"duration_s"`
	ConnectionsOpened int64            `json:"connections_opened"`
	ActiveMax         int64            `json:"active_max"`
	Messages          int64            `json:"messages"`
	MessagesPerS      float64          `json:"messages_per_s"`
	Reconnects        int64            `json:"reconnects"`
	Errors            map[string]int64 `json:"errors"`
	MemoryPeakBytes   uint64           `json:"memory_peak_bytes"`
	SessionFile       string           `json:"session_file"`
	Interrupted       bool             `json:"interrupted,omitempty"`
	RecordsDropped    uint64           `json:"records_dropped,omitempty"`
}
