// Package analysis turns session files into an answer: what failed, when,
// on which hop, sent by whom, and whether the pattern matches a known
// middlebox timeout or a fault that was injected on purpose.
//
// Data enters only through session files (internal/session): Load streams
// the records of one or more files (shards of one run, or a run and the
// proxies it went through) into a Report, a tree of plain structs. Nothing
// else in the package reads a session file. Renderers (table, markdown,
// csv, json, html and the SVG graphs) take a Report and write it; they
// share nothing but the Report and the Tables built from it. Compare
// (--baseline), CompareProduction (--production) and Reproduction (--repeat)
// build their own plain structs the same way.
package analysis

import "time"

// The explanation of every error comes from package attribution (the one
// engine behind capture analyze, report, bisect and the end-of-run lines):
// the report groups its answers into tables.

// Report is everything the report says about one or more session files.
// Durations are float seconds in fields whose JSON name ends in _s.
type Report struct {
	Files     []FileInfo        `json:"files"`
	Scenarios []ScenarioSummary `json:"scenarios"`
	// Classes lists the error classes seen, most frequent first: the column
	// order of the tables that break counts down by class.
	Classes []string `json:"classes"`
	// TimeScale is the proxies' --time-scale: fault durations were divided
	// by it (60 makes a 60 s preset act in 1 s); 1 when none was set. It is
	// found in the files' run info.
	TimeScale float64 `json:"time_scale"`

	Patterns     []ErrorPattern   `json:"error_patterns"`
	AgeBuckets   []DurationBucket `json:"age_buckets"`
	IdleBuckets  []DurationBucket `json:"idle_buckets"`
	Fingerprints []Cluster        `json:"fingerprints"`
	Timeline     Timeline         `json:"errors_over_time"`
	Groups       []GroupStats     `json:"groups"`
	Messages     []MessageCount   `json:"messages"`
	// MessagesOmitted counts distinct messages beyond the ones listed.
	MessagesOmitted int `json:"messages_omitted,omitempty"`
	// ResetChains are the explained errors (and failed proxy client
	// connections), grouped by cause.
	ResetChains []ResetChain `json:"reset_chains"`
	// Hops summarises the proxies' hop connections: how each hop ended.
	Hops        []HopStats   `json:"hops"`
	Connections ConnStats    `json:"connections"`
	Heartbeat   Heartbeat    `json:"heartbeat"`
	Resources   []Resources  `json:"resources"`
	Overhead    []Overhead   `json:"overhead"`
	Graphs      []Graph      `json:"graphs"`
	Verdict     Verdict      `json:"verdict"`
	Evidence    EvidenceSeen `json:"evidence"`
	// Replay and UnrecordedTunnels are what the files say about recording
	// and replay (recorded.go): replay runs' recorded-against-replayed
	// endings, and tunnels a proxy passed through without recording.
	Replay            []ReplayComparison `json:"replay,omitempty"`
	UnrecordedTunnels []UnrecordedTunnel `json:"unrecorded_tunnels,omitempty"`

	// raw keeps each error's class, age, idle and time for the comparisons
	// that need whole distributions (--production, --repeat).
	raw *rawErrors
}

// rawErrors are the errors as Load kept them.
type rawErrors struct {
	classes    []string
	attrs      []origin
	points     []errPoint
	fileStarts []int64 // unix ns, per file
}

// FileInfo describes one session file that went into the report.
type FileInfo struct {
	Name      string    `json:"name"` // base name of the file
	Path      string    `json:"path"`
	Command   string    `json:"command,omitempty"`
	Scenario  string    `json:"scenario,omitempty"`
	Shard     string    `json:"shard,omitempty"`
	Host      string    `json:"host,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	DurationS float64   `json:"duration_s"`
	// Records counts the records read per bucket.
	Records     map[string]int64 `json:"records"`
	Interrupted bool             `json:"interrupted,omitempty"`
	// Dropped is what the writer could not store (queue or file full).
	Dropped uint64 `json:"records_dropped,omitempty"`
	// Unreadable counts per bucket the records that did not decode and
	// were skipped.
	Unreadable map[string]int64 `json:"records_unreadable,omitempty"`
	// SnapshotAt is set when the file was being written: the report reads
	// what its writer had committed at that time.
	SnapshotAt time.Time `json:"snapshot_at,omitzero"`
}

// EvidenceSeen says which kinds of evidence the files hold, so the verdict
// can say what to enable.
type EvidenceSeen struct {
	ClientRecords bool `json:"client_records"` // conns or errors of generated clients
	ProxyRecords  bool `json:"proxy_records"`  // hop_conns
	FaultEvents   bool `json:"fault_events"`
	Capture       bool `json:"capture"` // a capture ran (or captured resets are present)
	ServerSamples bool `json:"server_samples"`
	// CaptureDisabled says why a requested capture did not run.
	CaptureDisabled string `json:"capture_disabled,omitempty"`
	CapturePackets  uint64 `json:"capture_packets,omitempty"`
	CaptureDrops    uint64 `json:"capture_kernel_drops,omitempty"`
	// Kernel: a kernel evidence collector ran (--kernel); KernelDisabled
	// says why an asked-for one did not; KernelEventsLost counts the
	// events its trace buffer overflowed with.
	Kernel           bool   `json:"kernel,omitempty"`
	KernelDisabled   string `json:"kernel_disabled,omitempty"`
	KernelEventsLost uint64 `json:"kernel_events_lost,omitempty"`
}

// ScenarioSummary is the run summary of one scenario, merged over files.
type ScenarioSummary struct {
	Scenario  string  `json:"scenario"`
	Files     int     `json:"files"`
	DurationS float64 `json:"duration_s"`
	// Attempts counts connection attempts; Active those still open at the end.
	Attempts int64 `json:"attempts"`
	Active   int64 `json:"connections_active"`
	// ActiveMax is the most connections open at once (summed over files
	// that ran side by side, an upper bound for shards).
	ActiveMax   int64            `json:"active_max"`
	Events      int64            `json:"events"`
	EventsPerS  float64          `json:"events_per_s"`
	Reconnects  int64            `json:"reconnects"`
	FirstEventS Dist             `json:"time_to_first_event_s"`
	Errors      int64            `json:"errors"`
	ErrorsBy    map[string]int64 `json:"errors_by_class"`
	Interrupted bool             `json:"interrupted,omitempty"`
}

// ErrorPattern is one cell of errors by class × hop × origin.
type ErrorPattern struct {
	Class string `json:"class"`
	// Hop is where the root of the error happened: a proxy's hop
	// ("p1/upstream"), "direct", or "?".
	Hop string `json:"hop"`
	// Origin is who sent the segment at the root: server, proxy p1,
	// middlebox, client, unknown.
	Origin string `json:"origin"`
	// Cause is injected (a fault of ours), natural, forged (a middlebox in
	// an endpoint's name), lost-state (the peer no longer knew the
	// connection) or unknown.
	Cause string `json:"cause"`
	// Via lists the proxies that passed it on to the client, innermost
	// first ("B, A").
	Via string `json:"via,omitempty"`
	// Confidence in the origin: high (packets, a fault firing, the
	// sender's own record), medium (the receiving proxy's record), low
	// (the client's error alone), none.
	Confidence string  `json:"confidence"`
	Fault      string  `json:"fault,omitempty"` // kind of the injected fault, "" when natural
	Evidence   string  `json:"evidence"`        // packets, fault firing, own record, peer's record, client error, none
	Count      int64   `json:"count"`
	Share      float64 `json:"share"` // of all errors
}

// DurationBucket counts errors whose connection age (or idle time) fell in
// [Lo, Hi).
type DurationBucket struct {
	Label   string           `json:"label"`
	LoS     float64          `json:"lo_s"`
	HiS     float64          `json:"hi_s"` // 0 for the open last bucket
	Count   int64            `json:"count"`
	ByClass map[string]int64 `json:"by_class"`
	// Fingerprint names the clusters the bucket's errors belong to (with
	// how many, when not all belong to one) and how many belong to none.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Cluster is a group of errors of one class at nearly the same connection
// age or idle time, or a threshold no error of the class came below: the
// fingerprint of a timeout somewhere on the path.
type Cluster struct {
	// Shape is "cluster" (the errors at one value) or "threshold" (every
	// error at or above LoS, none below).
	Shape     string  `json:"shape"`
	Dimension string  `json:"dimension"` // "idle" or "age"
	Class     string  `json:"class"`
	CenterS   float64 `json:"center_s"` // median of the cluster
	LoS       float64 `json:"lo_s"`
	HiS       float64 `json:"hi_s"`
	Count     int64   `json:"count"`
	Share     float64 `json:"share"` // of the class's errors
	// MatchKind is "injected" (most members were injected by one fault),
	// "keepalive" (our own keepalive period: the probe only revealed a
	// connection the peer no longer knew), "fault" (a duration of a fault
	// we configured), "known" (a known middlebox default, possibly
	// time-scaled) or "none". Ours are matched first: a number of ours is
	// never named as a middlebox that shares it.
	MatchKind string `json:"match_kind"`
	Match     string `json:"match"` // the fingerprint in words
	Hop       string `json:"hop,omitempty"`
	Origin    string `json:"origin,omitempty"`
}

// Timeline is errors over time since the start of each file, by class and
// by hop.
type Timeline struct {
	BinS float64   `json:"bin_s"`
	Bins []TimeBin `json:"bins"`
}

// TimeBin is one bin of the Timeline.
type TimeBin struct {
	StartS  float64          `json:"start_s"`
	Count   int64            `json:"count"`
	ByClass map[string]int64 `json:"by_class"`
	// BrokenByHop counts the resets and cuts (ECONNRESET, UNEXPECTED_EOF,
	// EPIPE) by hop.
	BrokenByHop map[string]int64 `json:"resets_and_cuts_by_hop,omitempty"`
}

// GroupStats is one symbol group.
type GroupStats struct {
	Group string `json:"group"`
	// Attempts counts the group's connection attempts (reconnects
	// included); Errors its client errors.
	Attempts         int64            `json:"attempts"`
	Events           int64            `json:"events"`
	Errors           int64            `json:"errors"`
	ErrorsPerAttempt float64          `json:"errors_per_attempt"`
	ByClass          map[string]int64 `json:"by_class"`
}

// MessageCount is one distinct error message (ports replaced by '*').
type MessageCount struct {
	Message string  `json:"message"`
	Class   string  `json:"class"`
	Count   int64   `json:"count"`
	FirstS  float64 `json:"first_s"` // since the start of its file
	LastS   float64 `json:"last_s"`
}

// ResetChain is a group of explained errors (or failed proxy client
// connections) with one cause: same sender, hop, cause and relays. Chain
// is one of them in words, with client addresses and durations written
// generally (ports as '*', idle as the group's range).
type ResetChain struct {
	Chain      string `json:"chain"`
	Sender     string `json:"sender"` // server, proxy p1, middlebox, client, unknown
	Hop        string `json:"hop"`
	Cause      string `json:"cause"` // injected, natural, forged, lost-state, unknown
	Seen       string `json:"seen"`  // what the clients felt: reset, cut, close, ...
	Confidence string `json:"confidence"`
	Injected   bool   `json:"injected"`
	Fault      string `json:"fault,omitempty"`
	Forged     bool   `json:"forged,omitempty"`
	// Idle is the range of the idle times before the errors, as the idle
	// table's buckets; IdleMinS and IdleMaxS are its ends.
	Idle     string  `json:"idle"`
	IdleMinS float64 `json:"idle_min_s"`
	IdleMaxS float64 `json:"idle_max_s"`
	Count    int64   `json:"count"`
	// Source says what was counted: client errors, or proxy client
	// connections (a proxy's file with no client records).
	Source string `json:"source"`
}

// HopStats is how the connections of one proxy hop ended.
type HopStats struct {
	Proxy       string `json:"proxy"`
	Hop         string `json:"hop"`
	Connections int64  `json:"connections"`
	Open        int64  `json:"open"` // not closed when the file was written
	// Ended counts closes by "<closed by> <how>", e.g. "server RST".
	Ended map[string]int64 `json:"ended"`
	// Faults counts fault events by kind.
	Faults map[string]int64 `json:"faults"`
}

// ConnStats describes the connection attempts of the generated clients.
type ConnStats struct {
	Attempts   int64 `json:"attempts"`
	Reconnects int64 `json:"reconnects"`
	// ConnHours is the summed lifetime of all attempts, the denominator of
	// error rates.
	ConnHours float64          `json:"connection_hours"`
	LifetimeS Dist             `json:"lifetime_s"`
	Lifetimes []DurationBucket `json:"lifetime_buckets"`
	Events    Dist             `json:"events_per_connection"`
	MaxGapS   Dist             `json:"max_gap_s"`
	// EndedBy counts attempts by how they ended: their end class, "closed
	// by client" or "open".
	EndedBy map[string]int64 `json:"ended_by"`
}

// Heartbeat compares the heartbeat interval the clients saw with the idle
// timeouts of the hops.
type Heartbeat struct {
	// IntervalS is the median over connections with at least two comments
	// of lifetime / comments; 0 when no heartbeats were seen.
	IntervalS   float64      `json:"interval_s"`
	Connections int64        `json:"connections_with_heartbeats"`
	MaxGapP99S  float64      `json:"max_gap_p99_s"`
	Timeouts    []HopTimeout `json:"hop_timeouts"`
	Warnings    []string     `json:"warnings"`
}

// HopTimeout is an idle timeout of a hop, and where it came from.
type HopTimeout struct {
	Where    string  `json:"where"` // "proxy p1 client hop", "path (fingerprint)"
	TimeoutS float64 `json:"timeout_s"`
	Source   string  `json:"source"` // fault event, fingerprint
}

// Resources is one process's resource usage over the run, from the
// monitor's samples.
type Resources struct {
	Process string `json:"process"` // "client (run.db)", "server pid 123 (run.db)"
	Role    string `json:"role"`    // client, proxy, server
	Samples int    `json:"samples"`
	// First, Peak and Last are the readings at the first sample, the
	// highest reading and at the last sample (drift shows leaks).
	First ResourceReading `json:"first"`
	Peak  ResourceReading `json:"peak"`
	Last  ResourceReading `json:"last"`
	// Rows is the series thinned to at most a dozen rows for the tables.
	Rows []ResourceRow `json:"rows"`
}

// ResourceReading is one set of readings; fields that were not sampled are 0.
type ResourceReading struct {
	RSS        uint64           `json:"rss_bytes"`
	Heap       uint64           `json:"heap_bytes,omitempty"`
	Goroutines int              `json:"goroutines,omitempty"`
	Threads    int              `json:"threads,omitempty"`
	FDs        int              `json:"fds"`
	TCP        map[string]int64 `json:"tcp,omitempty"` // sockets by state
}

// ResourceRow is one thinned sample.
type ResourceRow struct {
	AtS        float64 `json:"at_s"`
	Active     int64   `json:"active"`
	EventsPerS float64 `json:"events_per_s"`
	ResourceReading
	TimerLagS float64 `json:"timer_lag_s"`
}

// Overhead is the tool's own cost: the evidence that the load generator or
// the proxy was not the bottleneck.
type Overhead struct {
	Process string `json:"process"`
	Samples int    `json:"samples"`
	// CPUPercent is the process's CPU over the run (100 = one core); -1
	// when the file does not record it.
	CPUPercent float64 `json:"cpu_percent"`
	// CPUUserS and CPUSystemS are the CPU seconds the process had used, in
	// user mode and in the kernel, at its last sample (absent when not
	// recorded).
	CPUUserS   float64 `json:"cpu_user_s,omitempty"`
	CPUSystemS float64 `json:"cpu_system_s,omitempty"`
	TimerLagS  Dist    `json:"timer_lag_s"`
	Note       string  `json:"note"`
}

// Graph is one time series chart; the HTML report and --graphs draw it.
type Graph struct {
	ID     string `json:"id"` // file name stem: active-connections
	Title  string `json:"title"`
	YLabel string `json:"y_label"`
	// Kind says how the points read: GraphGauge (a reading at each X, held
	// until the next), GraphRate (the mean over the interval ending at
	// X) or GraphCounts (counts in the bin of BinS seconds starting at X).
	Kind string  `json:"kind"`
	BinS float64 `json:"bin_s,omitempty"`
	// Integer is set when the values are whole numbers (connections,
	// errors): the axis has no ticks between them.
	Integer bool `json:"integer,omitempty"`
	// StartedAt is the wall-clock time of X = 0: the earliest start of
	// the files.
	StartedAt time.Time `json:"started_at,omitzero"`
	// Note says what the graph lacks and why (a server not sampled).
	Note   string   `json:"note,omitempty"`
	Series []Series `json:"series"`
}

// Series is one line of a Graph: X is seconds since the graph's
// StartedAt.
type Series struct {
	Name string    `json:"name"`
	X    []float64 `json:"x"`
	Y    []float64 `json:"y"`
	// From is where a rate's first interval starts (its file's start).
	From float64 `json:"from,omitempty"`
}
