package session

// MetaReplay is the meta key of ReplayEndings, written by replay run.
const MetaReplay = "replay"

// Ending kinds of a stream as its client saw it (ReplayEnding.Kind): how a
// recorded stream ended, which its replay reproduces, and how a replayed
// connection ended. They are finer than Ending (rst or fin): a FIN in the
// middle of a chunked body is a cut, at its end a clean end.
const (
	EndKindReset  = "reset"  // the server side sent a RST: ECONNRESET
	EndKindCut    = "cut"    // the server side closed inside the body: UNEXPECTED_EOF
	EndKindClean  = "clean"  // the server side ended the body: EOF
	EndKindStatus = "status" // the server side answered an HTTP error status instead of a stream
	EndKindClient = "client" // the client closed the stream
	EndKindOpen   = "open"   // still open when the recording (or the replay) ended
	EndKindOther  = "other"  // any other failure (its class is in ReplayEnding.Other)
)

// ReplayEndings is replay run's comparison of how the recorded streams
// ended with how their replayed connections ended (meta "replay"), written
// at the end of the run. Each connection of the recorded pattern replays
// one recorded stream, so the two are compared connection by connection;
// under a --scenario pattern connections do not keep their recorded
// endings and Endings is empty.
type ReplayEndings struct {
	Recording string `json:"recording"` // the recording's session file
	Scale     int    `json:"scale"`
	// Pattern is "recorded" or the scenario whose pattern was applied.
	Pattern string         `json:"pattern"`
	Endings []ReplayEnding `json:"endings"`
}

// ReplayEnding is one ending kind of the recorded streams: how many there
// were, how many of their replayed connections (Recorded × scale) ended the
// same way, how the others ended, and at which ages. Ages count from the
// request: a recorded stream's from when the request reached the recording
// proxy, a replayed connection's from its dial.
type ReplayEnding struct {
	Kind     string `json:"kind"`     // EndKindReset, EndKindCut, ...
	Recorded int64  `json:"recorded"` // recorded streams that ended so
	Expected int64  `json:"expected"` // replayed connections of those streams
	Replayed int64  `json:"replayed"` // of those, the ones that ended the same way
	// Other counts how the other expected connections ended: by ending
	// kind, or by error class for EndKindOther failures.
	Other map[string]int64 `json:"other,omitempty"`
	// RecordedAge is the distribution of the recorded streams' ages at
	// their end; ReplayedAge that of the replayed connections that ended
	// the same way; AgeError that of |replayed age − recorded age| over
	// those connections, each against its own recorded stream.
	RecordedAge AgeDist `json:"recorded_age"`
	ReplayedAge AgeDist `json:"replayed_age"`
	AgeError    AgeDist `json:"age_error"`
}

// AgeDist summarises a set of durations; all zero when the set is empty
// (N 0).
type AgeDist struct {
	N   int64   `json:"n"`
	Min Seconds `json:"min_s"`
	P50 Seconds `json:"p50_s"`
	P95 Seconds `json:"p95_s"`
	Max Seconds `json:"max_s"`
}
