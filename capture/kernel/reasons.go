package kernel

import "strings"

// Reason explains one enum sk_rst_reason value, as tcp:tcp_send_reset
// prints it: what it means for an SSE service and what usually causes it.
type Reason struct {
	Name    string // as the kernel prints it: "TCP_ABORT_ON_CLOSE"
	Meaning string // what the kernel did, in the SSE service's terms
	Causes  string // what usually leads there
	// Kind says what the reset means for the connection (KindAbort, ...):
	// what a consumer such as the attribution engine needs to decide, so
	// it never keeps its own list of reason names.
	Kind string
	// ByProcess: the reset follows from a system call of the socket's
	// process (close, setsockopt, exit), whose task the event then names;
	// otherwise the kernel acted on its own (a timer, an arriving segment)
	// and the task is incidental.
	ByProcess bool
	// Deed says what was done to the connections, in a clause whose
	// subject is the process (ByProcess) or "its kernel", plural: "closed
	// the sockets with unread data". Singular replaces "the sockets" by
	// "the socket" and "the connections" by "the connection".
	Deed string
}

// Kinds of reason (Reason.Kind).
const (
	// KindAbort: the socket was ended with a reset on purpose or by a
	// rule (unread data at close, SO_LINGER 0, memory, linger time).
	KindAbort = "abort"
	// KindNoSocket: the host had no socket for the segment it answered:
	// nothing listened (a refused connect), or the connection was
	// already gone (a reply after a reset, or lost state).
	KindNoSocket = "no-socket"
	// KindAfterClose: the socket's process had closed it (or it was in
	// TIME_WAIT) and data still arrived.
	KindAfterClose = "after-close"
	// KindTimeout: the kernel gave up on a peer that stopped answering
	// (keepalive probes unanswered); the process gets ETIMEDOUT.
	KindTimeout = "timeout"
	// KindOutOfStep: the kernel answered a segment it could not accept
	// (sequence, acknowledgement, timestamp or flags out of step).
	KindOutOfStep = "out-of-step"
)

// Reasons holds every reset reason Linux 6.10–6.18 prints (include/net/
// rstreason.h), keyed by name. ExplainReason looks one up; ReasonNames
// lists them in the kernel's order.
var Reasons = map[string]Reason{}

// reasonTable is Reasons in the kernel's enum order.
var reasonTable = []Reason{
	{Name: "NOT_SPECIFIED",
		Meaning: "the kernel sent a reset without naming why",
		Causes:  "a code path older kernels never labelled (before 6.11 every active reset was NOT_SPECIFIED), or an in-kernel user such as a BPF program or a netfilter/TPROXY module resetting the connection",
		Kind:    KindAbort, Deed: "reset the connections without naming why"},
	{Name: "NO_SOCKET",
		Meaning: "a segment arrived for a connection this host has no socket for, and the kernel answered it with a reset",
		Causes:  "a connect to a port nothing listens on (the client sees ECONNREFUSED); more often for SSE, a segment of a stream whose socket is already gone: the server process died or restarted, the socket was closed and freed, or a NAT/load balancer sent a long-idle stream's packets to a host that never had it",
		Kind:    KindNoSocket, Deed: "had no socket for the connections"},
	{Name: "TCP_INVALID_ACK_SEQUENCE",
		Meaning: "a segment acknowledged data outside the window the socket has sent (SEG.ACK not between SND.UNA and SND.NXT), answered with a reset",
		Causes:  "a middlebox that rewrote sequence numbers or mixed up two connections (NAT port reuse), or a peer that lost its connection state and talks about an old one",
		Kind:    KindOutOfStep, Deed: "answered acknowledgements of data never sent"},
	{Name: "TCP_RFC7323_PAWS",
		Meaning: "a segment failed the timestamp (PAWS) check of RFC 7323 and was answered with a reset",
		Causes:  "clients behind one NAT whose TCP timestamps differ, a peer whose clock or timestamp offset jumped, or a port reused before the old connection's timestamps expired",
		Kind:    KindOutOfStep, Deed: "answered segments that failed the timestamp (PAWS) check"},
	{Name: "TCP_TOO_OLD_ACK",
		Meaning: "a segment acknowledged data so old it must belong to another incarnation of the connection",
		Causes:  "a delayed duplicate from an earlier connection on the same 4-tuple, or a middlebox replaying segments",
		Kind:    KindOutOfStep, Deed: "answered acknowledgements from an older incarnation of the connections"},
	{Name: "TCP_ACK_UNSENT_DATA",
		Meaning: "a segment acknowledged data this socket never sent",
		Causes:  "a peer or middlebox out of step with this socket (NAT port reuse, a proxy that forged segments, state lost on one side)",
		Kind:    KindOutOfStep, Deed: "answered acknowledgements of data the sockets never sent"},
	{Name: "TCP_FLAGS",
		Meaning: "a segment carried flags the socket's state does not allow (for example no ACK where one is required)",
		Causes:  "a broken or hostile peer, a scanner, or a middlebox rewriting flags",
		Kind:    KindOutOfStep, Deed: "answered segments with flags the sockets' state does not allow"},
	{Name: "TCP_OLD_ACK",
		Meaning: "a segment carried an old but in-window acknowledgement where the handshake needed a current one",
		Causes:  "retransmissions crossing a restarted handshake; rarely seen outside packet loss on the path",
		Kind:    KindOutOfStep, Deed: "answered old acknowledgements during the handshake"},
	{Name: "TCP_ABORT_ON_DATA",
		Meaning: "data arrived on a socket its process had already closed (or shut down for reading), so the kernel reset the connection instead of taking bytes nobody will read",
		Causes:  "the client (or a proxy) kept sending after the server closed the stream: an SSE client's late request bytes, a proxy forwarding after its upstream closed; the server side sees a clean close, the sender ECONNRESET",
		Kind:    KindAfterClose, Deed: "got data after the process had closed the sockets"},
	{Name: "TCP_TIMEWAIT_SOCKET",
		Meaning: "a socket in TIME_WAIT received a segment it could not accept and answered with a reset",
		Causes:  "a peer still sending on a connection this host had finished (it missed the FIN exchange), or a new connection reusing the 4-tuple too early",
		Kind:    KindAfterClose, Deed: "answered segments for the connections it had finished (TIME_WAIT)"},
	{Name: "INVALID_SYN",
		Meaning: "a SYN arrived that the socket's state does not allow and the kernel reset the connection",
		Causes:  "a client that reconnects with the same source port while the old connection is still open here (after a client crash or a NAT mapping reset)",
		Kind:    KindOutOfStep, Deed: "answered SYNs the sockets' state does not allow"},
	{Name: "TCP_ABORT_ON_CLOSE",
		Meaning: "the process closed the socket while bytes it had not read were still in the receive queue: TCP cannot deliver them, so it resets instead of sending a FIN",
		Causes:  "a server closing a stream without draining the request (a Node handler ending the response while the client still sent data, a keep-alive request pipelined behind the SSE request), or a process exiting with open streams that had unread input",
		Kind:    KindAbort, ByProcess: true, Deed: "closed the sockets with unread data"},
	{Name: "TCP_ABORT_ON_LINGER",
		Meaning: "an orphaned socket waiting in FIN_WAIT2 was reset because its linger time (TCP_LINGER2) is negative or ran out",
		Causes:  "a server that closed the stream and set TCP_LINGER2 < 0, or a peer that never sends its own FIN (a half-closed SSE client); tcp_fin_timeout",
		Kind:    KindAbort, Deed: "gave up on the sockets' closing handshake (linger time in FIN_WAIT2)"},
	{Name: "TCP_ABORT_ON_MEMORY",
		Meaning: "the kernel reset the connection because it is out of socket memory or has too many orphaned sockets",
		Causes:  "a host under memory pressure or with net.ipv4.tcp_max_orphans reached: many streams closed at once with data still queued (a mass disconnect, a server restart)",
		Kind:    KindAbort, Deed: "ran out of socket memory or orphan sockets"},
	{Name: "TCP_STATE",
		Meaning: "the socket was closed or aborted in a state that requires a reset (RFC 9293): close with SO_LINGER 0, a disconnect, or a socket destroyed from outside",
		Causes:  "an application resetting on purpose (SO_LINGER 0, Go's SetLinger(0), Node's socket.resetAndDestroy()), a proxy aborting a hop, or an operator or agent killing the socket (ss -K, SOCK_DESTROY)",
		Kind:    KindAbort, ByProcess: true, Deed: "aborted the sockets (SO_LINGER 0, a disconnect, or a socket destroyed)"},
	{Name: "TCP_KEEPALIVE_TIMEOUT",
		Meaning: "TCP keepalive probes (or TCP_USER_TIMEOUT) went unanswered, so the kernel gave up on the connection and reset it; its process gets ETIMEDOUT",
		Causes:  "the peer vanished without a FIN or reset: host down, network cut, or a NAT/firewall/load balancer that dropped the idle stream's state and now drops its packets. For SSE: a stream quieter than a middlebox's idle timeout",
		Kind:    KindTimeout, Deed: "gave up on the connections after unanswered keepalive probes"},
	{Name: "TCP_DISCONNECT_WITH_DATA",
		Meaning: "the process disconnected the socket (connect(AF_UNSPEC) or an abort) while data it had written was still unsent or unacknowledged",
		Causes:  "an application tearing down a stream it was still writing to: a server abandoning a slow SSE client with a full send buffer",
		Kind:    KindAbort, ByProcess: true, Deed: "disconnected the sockets with data still unsent"},
	{Name: "MPTCP_RST_EUNSPEC", Meaning: "MPTCP: unspecified error", Causes: "an MPTCP subflow reset; not plain TCP",
		Kind: KindAbort, Deed: "reset MPTCP subflows"},
	{Name: "MPTCP_RST_EMPTCP", Meaning: "MPTCP: MPTCP-specific error", Causes: "an MPTCP protocol error on a subflow",
		Kind: KindAbort, Deed: "reset MPTCP subflows"},
	{Name: "MPTCP_RST_ERESOURCE", Meaning: "MPTCP: lack of resources", Causes: "the host could not allocate a subflow",
		Kind: KindAbort, Deed: "reset MPTCP subflows"},
	{Name: "MPTCP_RST_EPROHIBIT", Meaning: "MPTCP: administratively prohibited", Causes: "MPTCP policy refused the subflow",
		Kind: KindAbort, Deed: "reset MPTCP subflows"},
	{Name: "MPTCP_RST_EWQ2BIG", Meaning: "MPTCP: too much unacknowledged data", Causes: "a subflow's send queue grew too large",
		Kind: KindAbort, Deed: "reset MPTCP subflows"},
	{Name: "MPTCP_RST_EBADPERF", Meaning: "MPTCP: unacceptable subflow performance", Causes: "the path manager dropped a slow subflow",
		Kind: KindAbort, Deed: "reset MPTCP subflows"},
	{Name: "MPTCP_RST_EMIDDLEBOX", Meaning: "MPTCP: middlebox interference", Causes: "a middlebox stripped or altered MPTCP options",
		Kind: KindAbort, Deed: "reset MPTCP subflows"},
	{Name: "ERROR", Meaning: "the kernel hit an unexpected error while handling the connection", Causes: "rare internal errors; report with the kernel version",
		Kind: KindAbort, Deed: "hit an internal error"},
	{Name: "MAX", Meaning: "the enum's end marker; never sent", Causes: "none",
		Kind: KindAbort, Deed: "reset the connections"},
}

func init() {
	for _, r := range reasonTable {
		Reasons[r.Name] = r
	}
}

// ExplainReason returns the explanation of a reason name; ok is false for
// a name this table does not know (a newer kernel), which callers show as
// is.
func ExplainReason(name string) (r Reason, ok bool) {
	r, ok = Reasons[name]
	return r, ok
}

// ReasonNames lists the known reasons in the kernel's enum order.
func ReasonNames() []string {
	names := make([]string, len(reasonTable))
	for i, r := range reasonTable {
		names[i] = r.Name
	}
	return names
}

// Singular is a Deed for one connection: "closed the socket with unread
// data".
func Singular(deed string) string {
	return singular.Replace(deed)
}

var singular = strings.NewReplacer("the sockets' ", "the socket's ", "the sockets", "the socket", "the connections", "the connection",
	"answered acknowledgements", "answered an acknowledgement", "answered old acknowledgements", "answered an old acknowledgement",
	"answered segments", "answered a segment", "answered SYNs", "answered a SYN", "MPTCP subflows", "an MPTCP subflow")

func init() {
	for _, r := range reasonTable {
		if r.Deed == "" || r.Kind == "" {
			panic("kernel: reason " + r.Name + " has no Deed or Kind")
		}
	}
}
