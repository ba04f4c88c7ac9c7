package attribution

import (
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Party is an endpoint as the files know it.
type Party struct {
	Role string `json:"role"`           // client, proxy, server, middlebox, unknown
	Name string `json:"name,omitempty"` // the proxy's or middlebox's name, the client's id
	Addr string `json:"addr,omitempty"`
	// Assumed: no file says what this address is; a process only sent to
	// it (a proxy's upstream, a run's target), so it is taken for the
	// server. KnownAs says how it is known.
	Assumed bool   `json:"assumed,omitempty"`
	KnownAs string `json:"known_as,omitempty"`
}

// RoleUnknown is the role of an address nothing describes.
const RoleUnknown = "unknown"

// Words names the party in a sentence: "proxy B", "the server
// 127.0.0.1:8090", "client c0003".
func (p Party) Words() string {
	switch p.Role {
	case session.RoleProxy:
		if p.Name != "" {
			return "proxy " + p.Name
		}
		return "a proxy " + p.Addr
	case session.RoleServer:
		if p.Addr == "" {
			return "the server"
		}
		if p.Assumed && p.KnownAs != "" {
			// Said every time: another file could show it is a proxy.
			return "the server " + p.Addr + " (known only as " + p.KnownAs + ")"
		}
		return "the server " + p.Addr
	case session.RoleClient:
		if p.Name != "" {
			return "client " + p.Name
		}
		if p.Addr == "" {
			return "the client"
		}
		return "the client " + p.Addr
	case session.RoleMiddlebox:
		if p.Name != "" {
			return "middlebox " + p.Name
		}
		return "a middlebox"
	}
	if p.Addr != "" {
		return p.Addr
	}
	return "an unknown sender"
}

// Noun names the party again, once Words has named it in the sentence:
// "proxy B", "the server", "the client", "a middlebox".
func (p Party) Noun() string {
	switch p.Role {
	case session.RoleProxy:
		return p.Words()
	case session.RoleServer:
		return "the server"
	case session.RoleClient:
		return "the client"
	case session.RoleMiddlebox:
		return "a middlebox"
	}
	return p.Words()
}

// Kinds of root cause.
const (
	KindInjected  = "injected"   // a fault of an ssestress proxy
	KindNatural   = "natural"    // an endpoint's own program or stack
	KindForged    = "forged"     // a middlebox sent it in an endpoint's name
	KindLostState = "lost-state" // the peer (or a middlebox) no longer knew the connection
	KindUnknown   = "unknown"
)

// Cause is the root of an ending: who sent the first segment of it, where,
// and whether it was injected, natural, forged, or the mark of lost state.
type Cause struct {
	Kind string `json:"kind"`
	// Sender sent the segment (a middlebox for a forged one, or for lost
	// state answered in a peer's name; the peer whose stack answered
	// otherwise).
	Sender Party `json:"sender"`
	// InNameOf is the endpoint a forged segment pretended to come from.
	InNameOf *Party `json:"in_name_of,omitempty"`
	// Receiver is who the segment was sent to.
	Receiver Party `json:"receiver"`
	// Ending is the segment: rst, fin, refused, stream, timeout.
	Ending string `json:"ending"`
	// Proxy and Hop place it on a proxy's hop; Link names the connection
	// otherwise ("direct": a client and a server with no proxy between).
	Proxy string `json:"proxy,omitempty"`
	Hop   string `json:"hop,omitempty"`
	Link  string `json:"link,omitempty"`
	// FaultName and FaultKind name the injected fault.
	FaultName string `json:"fault_name,omitempty"`
	FaultKind string `json:"fault_kind,omitempty"`
	// Idle is the silence before the ending (lost state: before the
	// segment whose answer revealed it); RevealedBy says what that
	// segment was.
	Idle       session.Seconds `json:"idle_s,omitempty"`
	RevealedBy string          `json:"revealed_by,omitempty"`
	// Class is the error class a proxy recorded when it ended the socket
	// itself (LINE_TOO_LONG, ...).
	Class string `json:"class,omitempty"`
	// Kernel is what the kernel traced of the root segment: the sender's
	// reason and process (for a timeout, the receiver's kernel giving up);
	// nil without kernel evidence.
	Kernel *KernelReset `json:"kernel,omitempty"`
}

// Where names the place of the cause: "B/upstream", "direct".
func (c *Cause) Where() string {
	if c.Proxy != "" {
		return c.Proxy + "/" + c.Hop
	}
	if c.Link != "" {
		return c.Link
	}
	return "?"
}

// Relay is a proxy that passed an ending on from its upstream hop to its
// client hop.
type Relay struct {
	Proxy string `json:"proxy"`
	// Received is how its upstream hop ended (rst, fin, ...); Sent how it
	// then ended its client hop.
	Received string `json:"received"`
	Sent     string `json:"sent"`
	// Policy is its --on-upstream-error (reset, eof, abort); "" when it
	// passed a clean end on as it came.
	Policy string `json:"policy,omitempty"`
}

// Explanation is the answer for one incident.
type Explanation struct {
	Cause
	// Relays are the proxies that passed it on, innermost first.
	Relays []Relay `json:"relays,omitempty"`
	// Seen is what the client saw (Seen constants) and Class its error
	// class ("" for a proxy's client connection: no client recorded it).
	Seen  string `json:"seen"`
	Class string `json:"class,omitempty"`
	// Chain is the explanation in words, from the root to the client.
	Chain      []string `json:"chain"`
	Confidence string   `json:"confidence"`
	// Evidence is the strongest kind of evidence behind the root.
	Evidence string `json:"evidence"`
	// Missing says what evidence would raise the confidence; Conflicts
	// where the evidence disagrees.
	Missing   []string `json:"missing,omitempty"`
	Conflicts []string `json:"conflicts,omitempty"`
	// Incident says what was explained.
	Incident Incident `json:"incident"`

	root *segment // the root's segment, when captured
	key  string   // Key, once computed
}

// Incident is what an Explanation explains: a generated client's error,
// or a proxy's client connection no client recorded.
type Incident struct {
	Source   string    `json:"source"` // session.SourceClient or session.SourceProxy
	Time     time.Time `json:"time"`
	ClientID string    `json:"client_id,omitempty"`
	Attempt  int       `json:"attempt,omitempty"`
	Proxy    string    `json:"proxy,omitempty"`
	ConnID   string    `json:"conn_id,omitempty"`
	Class    string    `json:"class,omitempty"` // the client's error class
	// LocalAddr and RemoteAddr are the client's socket.
	LocalAddr  string          `json:"local_addr,omitempty"`
	RemoteAddr string          `json:"remote_addr,omitempty"`
	Age        session.Seconds `json:"age_s"`
	Idle       session.Seconds `json:"idle_s"`
}

// ChainText is the chain on one line.
func (x *Explanation) ChainText() string { return strings.Join(x.Chain, " → ") }

// Segment is one RST segment of the capture(s), each once, attributed.
type Segment struct {
	Time     time.Time `json:"time"`
	Sender   Party     `json:"sender"`
	InNameOf *Party    `json:"in_name_of,omitempty"`
	Receiver Party     `json:"receiver"`
	// Proxy and Hop place it on a proxy's hop, Link otherwise.
	Proxy string `json:"proxy,omitempty"`
	Hop   string `json:"hop,omitempty"`
	Link  string `json:"link,omitempty"`
	// Captures are the captures that saw it (none when only the kernel
	// traced it); Flow the key of the first one's flow.
	Captures []string        `json:"captures"`
	Flow     string          `json:"flow"`
	Age      session.Seconds `json:"age_s"`
	Idle     session.Seconds `json:"idle_s"` // -1 ns when unknown
	Reason   string          `json:"reason"` // abort, after-close, reply, refused, answer
	Kind     string          `json:"kind"`   // injected, natural, forged, lost-state
	// FaultName and FaultKind name the fault that injected it.
	FaultName  string   `json:"fault_name,omitempty"`
	FaultKind  string   `json:"fault_kind,omitempty"`
	Evidence   []string `json:"evidence,omitempty"`
	Confidence string   `json:"confidence"`
	// Kernel is the sender's kernel's trace of it (nil when not traced);
	// Received says the receiver's kernel traced its arrival.
	Kernel   *KernelReset `json:"kernel,omitempty"`
	Received bool         `json:"kernel_received,omitempty"`
	// Explains is the incident it is the root of, and Chain that
	// incident's chain.
	Explains *Incident `json:"explains,omitempty"`
	Chain    string    `json:"chain,omitempty"`
}

// Where is the segment's hop or link as tables write it.
func (s *Segment) Where() string {
	if s.Proxy != "" {
		return s.Proxy + "/" + s.Hop
	}
	return s.Link
}
