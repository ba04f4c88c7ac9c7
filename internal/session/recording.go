package session

import (
	"net/http"
	"time"
)

// RecStream is one stream recorded by an ssestress proxy (bucket
// rec_streams): the request as the client sent it (credentials redacted),
// the response status and headers, and how the stream ended. It is written
// when the stream begins, rewritten when the response arrives and rewritten
// again when the stream ends, so a recording killed mid-stream still lists
// the streams that were open (Ended false).
type RecStream struct {
	Proxy      string `json:"proxy"`   // the recording proxy's --name
	ConnID     string `json:"conn_id"` // the proxy's connection id ("<proxy>-<n>")
	ClientAddr string `json:"client_addr,omitempty"`
	Method     string `json:"method"`
	Host       string `json:"host,omitempty"`
	Path       string `json:"path"`            // URL path, no query
	Query      string `json:"query,omitempty"` // raw query, no '?'; credential parameters' values redacted
	// Group is the symbol group of the request ("AAPL,MSFT": the symbols
	// query parameter, upper-cased and sorted), "" when it names none.
	Group  string      `json:"group,omitempty"`
	Header http.Header `json:"header,omitempty"` // request headers, redacted
	// Redacted names the headers (request and response) whose values were
	// replaced by the redaction marker, and the query parameters so
	// replaced, each as "?name".
	Redacted []string  `json:"redacted,omitempty"`
	Start    time.Time `json:"start"` // the request reached the proxy; offsets count from here

	Status     int         `json:"status,omitempty"`
	RespHeader http.Header `json:"resp_header,omitempty"`
	RespAt     Seconds     `json:"resp_at_s,omitempty"` // response headers, since Start

	// Frames counts the frames recorded (events, comments, retries: the
	// RecEvents of the stream) and Bytes the body bytes seen; both are final
	// only once Ended.
	Frames int64 `json:"frames"`
	Bytes  int64 `json:"bytes"`

	Ended bool    `json:"ended"`
	End   Seconds `json:"end_s,omitempty"` // since Start
	// EndedBy is who ended the stream: EndedByClient, EndedByProxy or
	// EndedByUpstream.
	EndedBy string `json:"ended_by,omitempty"`
	// Ending is EndingFIN (clean close, or EOF seen) or EndingRST (reset).
	Ending string `json:"ending,omitempty"`
	// Class is the error class that ended it (errclass), "" for none.
	Class string `json:"class,omitempty"`
	// Stopped is set when the recording was stopped (control API) while the
	// stream was still open: the stream went on but was not recorded further.
	Stopped bool `json:"stopped,omitempty"`
}

func (RecStream) Bucket() string { return BucketRecStreams }

// Who ended a recorded stream (RecStream.EndedBy).
const (
	EndedByClient   = "client"   // the client side (the client, or a fault on the client hop)
	EndedByProxy    = "proxy"    // the recording proxy itself (a fault, its shutdown)
	EndedByUpstream = "upstream" // the server side: the upstream the proxy forwarded to
)

// Key is "<proxy>/<conn id>".
func (s RecStream) Key() []byte { return RecStreamKey(s.Proxy, s.ConnID) }

// RecStreamKey is the key of a RecStream.
func RecStreamKey(proxy, connID string) []byte {
	b := make([]byte, 0, len(proxy)+len(connID)+1)
	b = append(b, proxy...)
	b = append(b, '/')
	return append(b, connID...)
}

// Kinds of RecEvent.
const (
	RecKindEvent   = "event"   // a dispatched event: ID, Type, Data
	RecKindComment = "comment" // a comment line (heartbeat): Comment
	RecKindRetry   = "retry"   // a valid retry field: Retry
)

// RecEvent is one frame of a recorded stream (bucket rec_events), as the
// client received it, with its time since the stream's Start. Data and
// Comment are UTF-8 text (invalid bytes become U+FFFD, as an EventSource
// client decodes them).
type RecEvent struct {
	Proxy  string  `json:"proxy"`
	ConnID string  `json:"conn_id"`
	Seq    int     `json:"seq"` // 0, 1, 2, ... within the stream
	Offset Seconds `json:"offset_s"`
	Kind   string  `json:"kind"`
	// ID is the stream's last event ID when the event was dispatched (it
	// persists across events until the server sets another).
	ID      string  `json:"id,omitempty"`
	Type    string  `json:"type,omitempty"` // "message" when the stream named none
	Data    string  `json:"data,omitempty"`
	Comment string  `json:"comment,omitempty"`
	Retry   Seconds `json:"retry_s,omitempty"`
}

func (RecEvent) Bucket() string { return BucketRecEvents }

// Key is "<proxy>/<conn id>/<seq, ten digits>": a stream's events are
// contiguous and in order.
func (e RecEvent) Key() []byte { return recItemKey(e.Proxy, e.ConnID, e.Seq) }
