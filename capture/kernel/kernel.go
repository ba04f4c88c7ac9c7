// Package kernel collects the kernel's own evidence about TCP resets: why
// each RST was sent (the tcp:tcp_send_reset tracepoint's reason, Linux ≥
// 6.10), which socket received one (tcp:tcp_receive_reset), the TCP state
// changes around them (sock:inet_sock_set_state), the task in whose context
// the kernel ran, and the process that owned the local socket.
//
// Data enters from a private tracefs instance (instances/ssestress-<pid>),
// read as text from its trace_pipe without cgo or a compiler, and from the
// socket table (sock_diag, as `ss -tp` reads it) sampled while the run goes.
// It leaves as session.KernelEvent records handed to Options.Sink, in
// kernel timestamp order, and as session.KernelInfo (Collector.Info) at the
// end.
//
// Tracepoints are host-wide: every process tracing sees every reset of the
// host. Options.Filter keeps the events that touch this process's sockets
// and topology addresses; session.DedupKernelEvents counts an event seen by
// several processes once.
//
// Text rather than the per-CPU binary buffers: the kernel merges the CPUs
// in timestamp order, the printed key=value fields survive layout changes
// between kernels, and parsing costs about 2.3 µs per traced reset
// (BenchmarkTracedReset). What text loses: timestamps are printed in
// microseconds, and pointers are hashed.
//
// Owners are sampled, so a socket that lives shorter than OwnerMinGap
// after it is established (or OwnerInterval, for a process not seen
// before) may carry no owner; the task of an event that ran in its
// process's context (a close) still names it. Filter.Live is the exact
// way for a process to keep its own sockets' events.
//
// Without root, without tracefs, without the tracepoints or on a kernel
// whose tcp_send_reset has no reason, Start returns an *UnavailableError
// whose text is one line saying what is missing; the caller prints it and
// goes on with its other evidence.
package kernel

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Sentinel errors, wrapped by *UnavailableError: errors.Is tells them apart.
var (
	// ErrUnsupported: not Linux.
	ErrUnsupported = errors.New("kernel tracing not supported on this platform")
	// ErrNotPermitted: tracefs needs root (CAP_SYS_ADMIN to mount it,
	// write access to create an instance).
	ErrNotPermitted = errors.New("kernel tracing not permitted")
	// ErrNoTracefs: the kernel has no tracefs, or it cannot be mounted.
	ErrNoTracefs = errors.New("no tracefs")
	// ErrNoTracepoint: a tracepoint the collector needs is missing.
	ErrNoTracepoint = errors.New("tracepoint missing")
	// ErrNoReason: tcp_send_reset has no reason field (Linux < 6.10).
	ErrNoReason = errors.New("tcp_send_reset has no reason field")
)

// UnavailableError says in one line what is missing for kernel evidence.
// Err is one of the sentinels above.
type UnavailableError struct {
	Err    error
	Detail string // what exactly, and what would fix it
}

func (e *UnavailableError) Error() string {
	if e.Detail == "" {
		return "kernel evidence unavailable: " + e.Err.Error()
	}
	return "kernel evidence unavailable: " + e.Err.Error() + ": " + e.Detail
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Options configure a Collector. The zero value traces every TCP reset and
// state change of the host and discards them (set Sink).
type Options struct {
	// Tracefs is the tracefs mount point. "" finds it: /sys/kernel/tracing,
	// else /sys/kernel/debug/tracing; when neither is mounted (under `ip
	// netns exec`, /sys is a fresh sysfs) tracefs is mounted on
	// /sys/kernel/tracing.
	Tracefs string
	// BufferSizeKB is the instance's ring buffer per CPU in KiB. 0 means
	// DefaultBufferSizeKB(number of CPUs).
	BufferSizeKB int
	// Filter chooses the events kept; the zero Filter keeps all.
	Filter Filter
	// Sink receives each kept event, in kernel timestamp order, from the
	// collector's reader goroutine. It must return quickly (the kernel
	// buffer fills meanwhile, and overflows are counted as lost) and must
	// not call Close.
	Sink func(session.KernelEvent)
	// OwnerInterval is how often the socket table is sampled to find the
	// owners of sockets; a new established socket or a reset on an unknown
	// socket triggers a sample sooner (at most one per OwnerMinGap). 0
	// means 1 s; negative disables owner lookup.
	OwnerInterval time.Duration
	// NoStateEvents leaves sock:inet_sock_set_state off: resets only.
	// Owner samples are then triggered by the interval and resets alone.
	NoStateEvents bool
}

// OwnerMinGap is the shortest time between two socket-table samples: a
// socket that lives shorter than this after it is established may be
// missed (its events then carry no owner).
const OwnerMinGap = 100 * time.Millisecond

// DefaultBufferSizeKB is the ring buffer per CPU used when
// Options.BufferSizeKB is 0: 32 MiB shared by the CPUs, at least 1 MiB and
// at most 4 MiB each. An event takes 70–100 bytes, so 4 MiB holds about
// 40,000 events per CPU: seconds of a reset storm if the reader stalls.
func DefaultBufferSizeKB(cpus int) int {
	if cpus < 1 {
		cpus = 1
	}
	return min(max(32768/cpus, 1024), 4096)
}

// Filter chooses the events a process keeps. An event is kept when any
// set field matches it; the zero Filter keeps every event.
type Filter struct {
	// Endpoints keeps events whose local or remote address:port is one of
	// these (the topology: a listener, a target, a proxy).
	Endpoints []netip.AddrPort
	// Addrs keeps events whose local or remote address is one of these.
	Addrs []netip.Addr
	// Ports keeps events whose local or remote port is one of these.
	Ports []uint16
	// Live keeps events whose local or remote address:port is in the set
	// at the time the event is read: the process adds its sockets as it
	// opens them (a client's local address once connected, a proxy's
	// accepted and upstream connections). This is the exact way to keep a
	// process's own events; OwnSockets finds them by sampling.
	Live *EndpointSet
	// OwnSockets keeps events on sockets this process holds, and on their
	// peers on this host: known from the socket table (sampled, see
	// OwnerMinGap) or because the event ran in this process's context
	// outside softirq (a close, a setsockopt).
	OwnSockets bool
	// Match keeps the events it returns true for.
	Match func(Event) bool
}

// IsZero says whether f keeps every event.
func (f Filter) IsZero() bool {
	return len(f.Endpoints) == 0 && len(f.Addrs) == 0 && len(f.Ports) == 0 && f.Live == nil && !f.OwnSockets && f.Match == nil
}

// EndpointSet is a set of addresses that changes while the collector
// runs (Filter.Live). Safe for concurrent use.
type EndpointSet struct {
	mu sync.RWMutex
	m  map[netip.AddrPort]struct{}
}

// NewEndpointSet returns an empty set.
func NewEndpointSet() *EndpointSet {
	return &EndpointSet{m: map[netip.AddrPort]struct{}{}}
}

// Add puts addresses in the set (IPv4-mapped IPv6 addresses as IPv4).
func (s *EndpointSet) Add(addrs ...netip.AddrPort) {
	s.mu.Lock()
	for _, a := range addrs {
		s.m[unmapAddrPort(a)] = struct{}{}
	}
	s.mu.Unlock()
}

// Remove takes addresses out of the set. A process removes a socket's
// address some time after closing it, so late events (the peer's reset
// answering a last segment) are still kept.
func (s *EndpointSet) Remove(addrs ...netip.AddrPort) {
	s.mu.Lock()
	for _, a := range addrs {
		delete(s.m, unmapAddrPort(a))
	}
	s.mu.Unlock()
}

// Has says whether a is in the set.
func (s *EndpointSet) Has(a netip.AddrPort) bool {
	s.mu.RLock()
	_, ok := s.m[a]
	s.mu.RUnlock()
	return ok
}

// Len is the number of addresses in the set.
func (s *EndpointSet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

func unmapAddrPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Event is a kernel event as the filter sees it: the record with its
// addresses parsed.
type Event struct {
	session.KernelEvent
	Local, Remote netip.AddrPort
}

// Owner is the process that held a socket open, as the socket table and
// /proc said when the socket was sampled.
type Owner struct {
	PID    int
	Comm   string
	Cookie uint64
	Inode  uint32
}

// Stats are a collector's counters.
type Stats struct {
	Read uint64 // events parsed
	Kept uint64 // events that passed the filter (handed to Sink)
	// Lost is the larger of LostReported (the trace's "[LOST n EVENTS]"
	// lines) and Overrun (the per-CPU buffers' overrun, commit overrun and
	// dropped counters): events the kernel wrote but nobody read.
	Lost         uint64
	LostReported uint64
	Overrun      uint64
	// OwnerSamples counts socket-table samples; OwnerScans the full /proc
	// scans among them; Sockets the sockets currently known.
	OwnerSamples uint64
	OwnerScans   uint64
	Sockets      int
	// Unparsed counts trace lines that were not understood (a format this
	// collector does not know); they are skipped.
	Unparsed uint64
}
