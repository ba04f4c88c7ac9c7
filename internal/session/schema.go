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
// # Schema (version 1)
//
// Every value is one JSON object. Keys are 8-byte big-endian sequence numbers
// unless a record implements Keyed. Times are RFC 3339 with nanoseconds;
// durations are integer nanoseconds in fields whose JSON name ends in _ns.
//
//	bucket       key                   value
//	meta         "schema"              SchemaVersion as a decimal string
//	             "run"                 RunInfo: tool, command, args, config, start/end
//	             "summary"             Summary: the end-of-run totals
//	             "capture"             CaptureInfo: interface, ports, packets, kernel drops
//	topology     seq                   Endpoint: an address and its role (client, proxy, server)
//	conns        "<conn id>/<attempt>" ConnRecord: one connection attempt of a generated
//	                                   client; written at open, checkpointed while open,
//	                                   rewritten at close
//	errors       seq                   ErrorRecord: one classified failure with its 4-tuple
//	samples      seq                   Sample: the monitor's periodic metrics
//	hop_conns    see HopConn            proxy: one proxied connection per hop (fault proxy)
//	faults       seq                   FaultEvent: one fault that fired (fault proxy)
//	flows        "<first µs, 17 digits> <client> <server>"
//	                                   Flow: one TCP flow seen by the capture (SYN/SYN-ACK, FIN,
//	                                   RST packets, seqs, last data and bytes each way); written
//	                                   when the flow ends and at the end of the capture
//	resets       "<time µs, 17 digits> <sender>><receiver>[#n]"
//	                                   Reset: one attributed RST (hop, sender and receiver roles,
//	                                   age, idle, injected/forged, the client error and chain it
//	                                   explains); written by capture analysis at the end of a run
//	rec_streams  "<proxy>/<conn id>"   RecStream: one stream recorded by a proxy (request with
//	                                   credentials redacted, response, ending); written at begin,
//	                                   rewritten at response and at end (Ended false while open)
//	rec_events   "<proxy>/<conn id>/<seq, 10 digits>"
//	                                   RecEvent: one frame (event, comment, retry) of a recorded
//	                                   stream with its offset from the stream's start
//
// A newer tool adds buckets; it bumps SchemaVersion only when an existing
// bucket changes meaning. A Reader refuses files with a newer version.
//
// Beside the file, "<file>.live" holds the URL of the live view (--http) of
// the process writing it, while it runs (see WriteLiveURL): a Reader refused
// by the lock names it in the ErrInUse message.
package session

// SchemaVersion is the version of the layout described in the package doc.
const SchemaVersion = 1

// Bucket names. Later capabilities add theirs here so the schema stays in
// one place.
const (
	BucketMeta       = "meta"
	BucketTopology   = "topology"
	BucketConns      = "conns"
	BucketErrors     = "errors"
	BucketSamples    = "samples"
	BucketHopConns   = "hop_conns"
	BucketFaults     = "faults"
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
	BucketHopConns, BucketFaults, BucketFlows, BucketResets,
	BucketRecStreams, BucketRecEvents,
	// kernel_events, key KernelEventKey: KernelEvent, one TCP reset or
	// state change traced by the kernel (reason, task, socket owner);
	// meta "kernel" is KernelInfo. Written by capture/kernel.
	BucketKernelEvents,
}
