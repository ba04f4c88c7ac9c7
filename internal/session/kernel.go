package session

import (
	"math"
	"sort"
	"time"
)

// BucketKernelEvents holds KernelEvent records.
const BucketKernelEvents = "kernel_events"

// MetaKernel is the meta key of KernelInfo.
const MetaKernel = "kernel"

// Kernel events (KernelEvent.Event): the tracepoint each record comes from.
const (
	// KernelSendReset is tcp:tcp_send_reset: this host's kernel sent an RST.
	KernelSendReset = "send_reset"
	// KernelReceiveReset is tcp:tcp_receive_reset: a socket of this host
	// accepted an RST.
	KernelReceiveReset = "receive_reset"
	// KernelState is sock:inet_sock_set_state for a TCP socket.
	KernelState = "state"
)

// KernelEvent is one event of the kernel's TCP tracepoints (bucket
// kernel_events), written by the kernel evidence collector
// (capture/kernel).
//
// LocalAddr is always the address of this host's socket the event is
// about, RemoteAddr its peer. For send_reset that is the RST's source and
// destination: the kernel fills them from the socket when there is one,
// and otherwise reverses the segment that provoked the RST, so the source
// is still this host's side (a connect to a closed port: LocalAddr is the
// closed port). For receive_reset and state the kernel fills them from the
// socket (saddr/sport are the socket's own). IPv4-mapped IPv6 addresses
// are written as IPv4, as a packet capture sees them.
//
// The same event is traced by every process that has a tracefs instance,
// each stamping it when it writes it into its own buffer: the copies'
// KernelTime differ by a few microseconds, so keys can differ.
// SameKernelEvent and DedupKernelEvents count such copies once.
type KernelEvent struct {
	// Time is the wall-clock time of KernelTime (see KernelInfo for the
	// mapping and its error).
	Time time.Time `json:"time"`
	// KernelTime is the trace timestamp: CLOCK_MONOTONIC in seconds, with
	// the microsecond resolution the trace prints.
	KernelTime float64 `json:"kernel_time_s"`
	Event      string  `json:"event"` // KernelSendReset, KernelReceiveReset, KernelState
	LocalAddr  string  `json:"local_addr"`
	RemoteAddr string  `json:"remote_addr"`
	// State is the socket's state when it sent the RST (send_reset only),
	// as the kernel names it ("TCP_CLOSE"); empty when the kernel had no
	// socket for the segment it answered (NO_SOCKET and the like).
	State string `json:"state,omitempty"`
	// Reason is the kernel's enum sk_rst_reason name (send_reset only):
	// "TCP_ABORT_ON_CLOSE". capture/kernel.Reasons explains each.
	Reason string `json:"reason,omitempty"`
	// OldState and NewState are the transition of a state event.
	OldState string `json:"old_state,omitempty"`
	NewState string `json:"new_state,omitempty"`
	// SockCookie is the socket's cookie (the kernel's unique socket id, as
	// `ss -e` prints after "sk:"): from the event for receive_reset, from
	// the socket table (sock_diag) otherwise; 0 when unknown.
	SockCookie uint64 `json:"sock_cookie,omitempty"`
	// TID is the thread in whose context the kernel ran (the traced pid),
	// PID its process (thread group) and Comm the process's name. 0 is the
	// idle task.
	TID  int    `json:"tid"`
	PID  int    `json:"pid"`
	Comm string `json:"comm,omitempty"`
	// Softirq: the event ran in softirq context (packet receive, timers).
	// The task is then whatever happened to be running and says nothing of
	// who owned the socket (except on loopback, where the sender's own
	// system call usually runs the receive).
	Softirq bool `json:"softirq,omitempty"`
	// OwnerPID and OwnerComm name the process that held this host's socket
	// (LocalAddr) open, found in the socket table sampled while the run
	// went (0 when not found: the socket lived shorter than the sampling
	// period, or had no socket, or belonged to another network namespace).
	OwnerPID  int    `json:"owner_pid,omitempty"`
	OwnerComm string `json:"owner_comm,omitempty"`
}

func (KernelEvent) Bucket() string { return BucketKernelEvents }

// Key is KernelEventKey.
func (e KernelEvent) Key() []byte { return []byte(KernelEventKey(e)) }

// KernelEventKey is "<kernel time, microseconds, 17 digits> <event>
// <local>><remote>" followed by " <reason>" for send_reset and
// " <old>><new>" for state: sorted by time, and the same for one process's
// repeated writes of the event.
func KernelEventKey(e KernelEvent) string {
	b := make([]byte, 0, 17+2+len(e.Event)+2+len(e.LocalAddr)+len(e.RemoteAddr)+40)
	b = appendPadded(b, int(KernelMicros(e.KernelTime)), 17)
	b = append(b, ' ')
	b = append(b, e.Event...)
	b = append(b, ' ')
	b = append(b, e.LocalAddr...)
	b = append(b, '>')
	b = append(b, e.RemoteAddr...)
	switch e.Event {
	case KernelSendReset:
		b = append(b, ' ')
		b = append(b, e.Reason...)
	case KernelState:
		b = append(b, ' ')
		b = append(b, e.OldState...)
		b = append(b, '>')
		b = append(b, e.NewState...)
	}
	return string(b)
}

// KernelMicros converts a KernelTime to integer microseconds.
func KernelMicros(kernelTime float64) int64 {
	if kernelTime <= 0 {
		return 0
	}
	return int64(math.Round(kernelTime * 1e6))
}

// KernelDedupWindow is how far apart the KernelTime of two copies of one
// event traced by two processes may be. Measured copies differ by 0–3 µs;
// distinct events with the same 4-tuple, kind and reason or transition
// are at least a retransmission timeout (200 ms) apart.
const KernelDedupWindow = time.Millisecond

// SameKernelEvent says whether a and b are the same kernel event seen by
// two tracers: same kind, addresses, reason or transition and cookie
// (when both know it), and kernel times within KernelDedupWindow.
func SameKernelEvent(a, b KernelEvent) bool {
	if a.Event != b.Event || a.LocalAddr != b.LocalAddr || a.RemoteAddr != b.RemoteAddr ||
		a.Reason != b.Reason || a.OldState != b.OldState || a.NewState != b.NewState {
		return false
	}
	if a.Event == KernelReceiveReset && a.SockCookie != 0 && b.SockCookie != 0 && a.SockCookie != b.SockCookie {
		return false
	}
	d := KernelMicros(a.KernelTime) - KernelMicros(b.KernelTime)
	return d >= -KernelDedupWindow.Microseconds() && d <= KernelDedupWindow.Microseconds()
}

// DedupKernelEvents merges the kernel events of several files: sorted by
// kernel time, each event once (the first copy, with the owner and cookie
// filled from a later copy when the first lacks them).
func DedupKernelEvents(events []KernelEvent) []KernelEvent {
	sorted := append([]KernelEvent(nil), events...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].KernelTime < sorted[j].KernelTime })
	out := sorted[:0]
	window := KernelDedupWindow.Seconds()
	for _, e := range sorted {
		dup := false
		for k := len(out) - 1; k >= 0 && e.KernelTime-out[k].KernelTime <= window; k-- {
			if SameKernelEvent(out[k], e) {
				if out[k].OwnerPID == 0 && e.OwnerPID != 0 {
					out[k].OwnerPID, out[k].OwnerComm = e.OwnerPID, e.OwnerComm
				}
				if out[k].SockCookie == 0 {
					out[k].SockCookie = e.SockCookie
				}
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, e)
		}
	}
	return out
}

// KernelInfo describes the kernel evidence collector of a run
// (meta/"kernel"). A run that could not trace writes it with Disabled set,
// so a report knows its resets carry no kernel reason.
type KernelInfo struct {
	// Instance is the tracefs instance the process used (removed at exit).
	Instance string `json:"instance,omitempty"`
	// Events are the tracepoints enabled ("tcp/tcp_send_reset", ...).
	Events []string `json:"events,omitempty"`
	// Clock is the instance's trace_clock; ClockOffsetErrorS bounds the
	// error of the mapping from it to wall-clock time (half the width of
	// the tightest pair of clock readings used to measure the offset).
	// The trace prints microseconds, which adds up to 1 µs.
	Clock             string  `json:"clock,omitempty"`
	ClockOffsetErrorS float64 `json:"clock_offset_error_s,omitempty"`
	// BufferBytes is the instance's ring buffer per CPU.
	BufferBytes int64     `json:"buffer_bytes,omitempty"`
	Started     time.Time `json:"started,omitzero"`
	Stopped     time.Time `json:"stopped,omitzero"`
	// EventsRead counts the events parsed, EventsKept those that passed
	// the process's filter and were recorded (the reset events of
	// kernel_events: state changes are traced but not stored), EventsLost
	// those the kernel overwrote before
	// they were read (the trace's "[LOST n EVENTS]" lines, or the buffer's
	// own overrun counters when they say more).
	EventsRead uint64 `json:"events_read"`
	EventsKept uint64 `json:"events_kept"`
	EventsLost uint64 `json:"events_lost"`
	// OwnerSamples counts the socket-table samples taken to find owners.
	OwnerSamples uint64 `json:"owner_samples"`
	// Disabled says why no kernel evidence was collected; "" when it was.
	Disabled string `json:"disabled,omitempty"`
}
