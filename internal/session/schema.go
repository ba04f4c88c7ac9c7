// Package session is the session file: one bbolt database per run that every
// producer (run, proxy, capture, replay run) writes and every consumer
// (inspect, report, replay serve) reads.
//
// Writing goes through one Writer per file: producers call Put, which only
// appends to an in-memory queue; one goroutine commits the queue in batches
// (every FlushInterval or BatchSize records, whichever comes first), so a
// slow disk never blocks a connection and a process killed with SIGKILL
// leaves a file that opens and holds everything up to the last commit.
// Reading goes through Reader, which opens the file read-only and says so in
// one line when another process holds it.
//
// # Schema (version 2)
//
// Every value is one JSON object, but for the blocks of recorded streams
// (RecChunks in rec_events), whose first byte (RecChunksFormat or
// RecChunksRaw, never '{') says they are binary: a value describes itself,
// so old files and imported recordings (one JSON RecEvent per frame) and
// new ones (blocks) are read by the same reader without a version change,
// and a reader that does not know blocks fails on them instead of
// reading a stream without its frames. Keys are 8-byte big-endian sequence
// numbers unless a record implements Keyed. Times are RFC 3339 with nanoseconds;
// durations are numbers of seconds (exact to the nanosecond, see Seconds)
// in keys whose name ends in _s; sizes are bytes in keys ending in _bytes.
//
//	bucket       key                   value
//	meta         "schema"              SchemaVersion as a decimal string
//	             "run"                 RunInfo: tool, command, args (secrets replaced), config,
//	                                   start/end, time scale, the clients' TCP keepalive
//	             "summary"             Summary: the end-of-run totals of the generated clients,
//	                                   and the results of --fail-on thresholds (Threshold)
//	             "replay"              ReplayEndings: replay run's recorded against replayed
//	                                   endings, per ending kind, with their ages
//	topology     seq                   Endpoint: an address and its role (client, proxy, server,
//	                                   middlebox, or target: sent to, identity known elsewhere)
//	conns        "<client id>/<attempt>" ConnRecord: one connection attempt of a generated
//	                                   client; written at open, checkpointed while open,
//	                                   rewritten at close
//	errors       seq                   ErrorRecord: one classified failure with its 4-tuple
//	samples      seq                   Sample: the monitor's periodic metrics
//	proxies      "<proxy name>"        ProxyInfo: an ssestress proxy's listener, upstream,
//	                                   keepalive, upstream-error policy, fault specs, totals,
//	                                   CONNECT tunnels it passed through unrecorded
//	hop_conns    see HopConn            proxy: one proxied connection per hop (fault proxy)
//	faults       seq                   FaultEvent: one fault that fired, with its action and
//	                                   whether it ended the connection (Ending)
//	captures     "<capture id>"        CaptureInfo: one packet capture (interface or pcap,
//	                                   host, ports, packets, kernel drops)
//	flows        "<first µs, 17 digits> <dialer> <listener> <capture id>"
//	                                   Flow: one TCP flow seen by one capture (SYN/SYN-ACK,
//	                                   FIN, RST packets, seqs, last data and bytes each way);
//	                                   written when the flow ends and at the end of the capture
//	resets       "<time µs, 17 digits> <sender>><receiver>[#n]"
//	                                   Reset: a cache of the producer's end-of-run attribution
//	                                   of each RST; never evidence (reports recompute)
//	kernel_events KernelEventKey        KernelEvent: one RST sent or received, or a TCP state
//	                                   change, as the kernel traced it (reason, task, socket
//	                                   owner); meta "kernel" is KernelInfo
//	rec_streams  "<proxy>/<conn id>"   RecStream: one stream recorded by a proxy (request with
//	                                   credentials redacted, response, ending); written at begin,
//	                                   rewritten at response and at end (Ended false while open)
//	rec_events   "<proxy>/<conn id>/<seq or block, 10 digits>"
//	                                   RecEvent: one frame (event, comment, retry) of a recorded
//	                                   stream with its offset from the stream's start (JSON,
//	                                   key seq); or RecChunks: a block of the stream's body
//	                                   pieces with their offsets (binary, key the block's
//	                                   number), which a reader parses into the same RecEvents
//
// The vocabulary is one name per concept: a client is a generated load
// client (client_id, attempt); conn_id is a proxy's connection, shared by
// its two hops; a hop is one side of a proxy (client or upstream), always
// named with the proxy; a link is a stretch of the path between two
// endpoints; a flow's ends are its dialer and listener; a reset is a RST
// segment and a FIN is a close (Ending); idle is the time with no byte
// before a moment, age the time since a connection opened.
//
// A newer tool adds buckets; it bumps SchemaVersion only when an existing
// bucket changes meaning. A Reader refuses files with a newer version and
// reads older ones through the migration in migrate.go, so consumers see
// only the current records.
//
// Beside the file, "<file>.live" holds the URL of the live view (--http) of
// the process writing it, while it runs (see WriteLiveURL): a Reader refused
// by the lock names it in the ErrInUse message.
package session

// SchemaVersion is the version of the layout described in the package doc.
const SchemaVersion = 2

// Bucket names. Later capabilities add theirs here so the schema stays in
// one place.
const (
	BucketMeta       = "meta"
	BucketTopology   = "topology"
	BucketConns      = "conns"
	BucketErrors     = "errors"
	BucketSamples    = "samples"
	BucketProxies    = "proxies"
	BucketHopConns   = "hop_conns"
	BucketFaults     = "faults"
	BucketCaptures   = "captures"
	BucketFlows      = "flows"
	BucketResets     = "resets"
	BucketRecStreams = "rec_streams"
	BucketRecEvents  = "rec_events"
)

// Meta keys.
const (
	MetaSchema  = "schema"
	MetaRun     = "run"
	MetaSummary = "summary"
)

// Buckets lists every bucket of the schema in a stable order.
var Buckets = []string{
	BucketMeta, BucketTopology, BucketConns, BucketErrors, BucketSamples,
	BucketProxies, BucketHopConns, BucketFaults, BucketCaptures, BucketFlows, BucketResets,
	BucketRecStreams, BucketRecEvents,
	// kernel_events, key KernelEventKey: KernelEvent, one TCP reset or
	// state change traced by the kernel (reason, task, socket owner);
	// meta "kernel" is KernelInfo. Written by capture/kernel.
	BucketKernelEvents,
}
