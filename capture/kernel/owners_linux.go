package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tuple is a socket seen from its own side.
type tuple struct{ local, remote netip.AddrPort }

// sockInfo is one socket of the socket table.
type sockInfo struct {
	cookie uint64
	inode  uint32
	pid    int
	comm   string
	seen   time.Time // the last sample that listed it
	// resolved: a full /proc scan ran after the socket was first listed,
	// so pid 0 means no process holds it (an orphan, a socket in flight).
	resolved bool
}

// ownerTable is the socket table sampled with sock_diag, as `ss -tp`
// builds it: the kernel lists each TCP socket with its inode and cookie,
// and /proc/PID/fd links name the inodes each process holds.
//
// What it misses: sockets that live shorter than the time between two
// samples (OwnerMinGap after a trigger, the interval otherwise) – a
// connection refused at once, a stream reset within 100 ms of its start –
// and sockets of other network namespaces (sock_diag lists the
// namespace the collector runs in). Their events carry no owner.
type ownerTable struct {
	self     int
	interval time.Duration
	want     func(tuple) bool // sockets whose owner is worth a /proc scan
	procs    *procCache

	mu       sync.RWMutex
	byTuple  map[tuple]*sockInfo
	byCookie map[uint64]*sockInfo
	owners   map[int]time.Time // processes that held sockets: scanned first
	lastFull time.Time

	samples, scans atomic.Uint64
}

// goneTTL is how long a socket stays in the table after it is no longer
// listed, so late events (a receive_reset after the socket was freed, an
// RST from an orphan) still find their owner.
const goneTTL = time.Minute

// maxSockets bounds the table; beyond it, sockets are dropped (any).
const maxSockets = 1 << 20

func newOwnerTable(interval time.Duration, want func(tuple) bool, procs *procCache) *ownerTable {
	return &ownerTable{
		self: os.Getpid(), interval: interval, want: want, procs: procs,
		byTuple: map[tuple]*sockInfo{}, byCookie: map[uint64]*sockInfo{}, owners: map[int]time.Time{},
	}
}

// lookup finds a socket by cookie (when known) or by tuple.
func (t *ownerTable) lookup(local, remote netip.AddrPort, cookie uint64) (sockInfo, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if cookie != 0 {
		if s, ok := t.byCookie[cookie]; ok {
			return *s, true
		}
	}
	if s, ok := t.byTuple[tuple{local, remote}]; ok {
		return *s, true
	}
	return sockInfo{}, false
}

// ownedBySelf says whether the socket local→remote is one of this process's.
func (t *ownerTable) ownedBySelf(local, remote netip.AddrPort) bool {
	s, ok := t.lookup(local, remote, 0)
	return ok && s.pid == t.self
}

// forget drops the tuple's socket when it was last listed before at (and
// says so): a new connection on a reused 4-tuple must not inherit the old
// socket's owner.
func (t *ownerTable) forget(local, remote netip.AddrPort, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := tuple{local, remote}
	if s, ok := t.byTuple[k]; ok && s.seen.Before(at) {
		delete(t.byTuple, k)
		return true
	}
	return false
}

func (t *ownerTable) size() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byTuple)
}

// sample lists the sockets and finds the owners of new ones: first among
// this process's descriptors and those of processes that held sockets
// before, then, at most once per interval, in every process's.
func (t *ownerTable) sample(now time.Time) error {
	t.samples.Add(1)
	var socks []diagSock
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		s, err := dumpTCP(family)
		if err != nil {
			if family == unix.AF_INET6 && errors.Is(err, unix.ENOENT) {
				continue // no IPv6
			}
			return err
		}
		socks = append(socks, s...)
	}
	unresolved := map[uint32]*sockInfo{}
	t.mu.Lock()
	for _, d := range socks {
		if d.inode == 0 {
			continue // not attached to a file: in an accept queue, orphaned
		}
		k := tuple{d.local, d.remote}
		s := t.byTuple[k]
		if s == nil || s.cookie != d.cookie {
			if old := t.byCookie[d.cookie]; old != nil && old.inode == d.inode {
				s = old // same socket, tuple changed (a bind after listing)
			} else {
				s = &sockInfo{cookie: d.cookie, inode: d.inode}
			}
			t.byTuple[k] = s
			t.byCookie[d.cookie] = s
		}
		s.seen = now
		if s.pid == 0 && !s.resolved {
			unresolved[s.inode] = s
		}
	}
	t.evictLocked(now)
	owners := make([]int, 0, len(t.owners))
	for pid := range t.owners {
		owners = append(owners, pid)
	}
	full := len(unresolved) > 0 && now.Sub(t.lastFull) >= t.interval
	if full {
		t.lastFull = now
	}
	t.mu.Unlock()
	if len(unresolved) == 0 {
		return nil
	}

	// Resolve outside the lock: readlink of many descriptors takes time.
	found := map[uint32]int{}
	need := map[uint32]bool{}
	for ino := range unresolved {
		need[ino] = true
	}
	scanFDs(t.self, need, found)
	for _, pid := range owners {
		if len(need) == 0 {
			break
		}
		if pid != t.self {
			scanFDs(pid, need, found)
		}
	}
	if full && len(need) > 0 {
		// Only sockets the filter cares about are worth a scan of every
		// process; the rest stay without owner.
		wanted := map[uint32]bool{}
		t.mu.RLock()
		for k, s := range t.byTuple {
			if need[s.inode] && (t.want == nil || t.want(k) || t.peerIsSelfLocked(k)) {
				wanted[s.inode] = true
			}
		}
		t.mu.RUnlock()
		if len(wanted) > 0 {
			t.scans.Add(1)
			scanAllFDs(t.self, wanted, found)
		}
	}

	comms := map[int]string{}
	for _, pid := range found {
		if _, ok := comms[pid]; !ok {
			comms[pid] = t.procs.comm(pid, now)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for ino, s := range unresolved {
		if pid, ok := found[ino]; ok {
			s.pid, s.comm, s.resolved = pid, comms[pid], true
			t.owners[pid] = now
		} else if full {
			s.resolved = true
		}
	}
	for pid, at := range t.owners {
		if now.Sub(at) > goneTTL {
			delete(t.owners, pid)
		}
	}
	return nil
}

// peerIsSelfLocked says whether the socket's peer on this host is ours.
func (t *ownerTable) peerIsSelfLocked(k tuple) bool {
	s, ok := t.byTuple[tuple{k.remote, k.local}]
	return ok && s.pid == t.self
}

func (t *ownerTable) evictLocked(now time.Time) {
	for k, s := range t.byTuple {
		if now.Sub(s.seen) > goneTTL || len(t.byTuple) > maxSockets {
			delete(t.byTuple, k)
			if t.byCookie[s.cookie] == s {
				delete(t.byCookie, s.cookie)
			}
		}
	}
	for c, s := range t.byCookie {
		if now.Sub(s.seen) > goneTTL {
			delete(t.byCookie, c)
		}
	}
}

// scanFDs finds which of the wanted socket inodes process pid holds.
func scanFDs(pid int, need map[uint32]bool, found map[uint32]int) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	var buf [64]byte
	for _, name := range names {
		n, err := unix.Readlink(dir+name, buf[:])
		if err != nil {
			continue
		}
		ino, ok := socketInode(buf[:n])
		if ok && need[ino] {
			found[ino] = pid
			delete(need, ino)
			if len(need) == 0 {
				return
			}
		}
	}
}

// scanAllFDs scans every process (as ss -p does), this one first.
func scanAllFDs(self int, need map[uint32]bool, found map[uint32]int) {
	d, err := os.Open("/proc")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, name := range names {
		if len(need) == 0 {
			return
		}
		pid, err := strconv.Atoi(name)
		if err != nil || pid == self {
			continue
		}
		scanFDs(pid, need, found)
	}
}

// socketInode reads "socket:[12345]".
func socketInode(link []byte) (uint32, bool) {
	const prefix = "socket:["
	if len(link) < len(prefix)+2 || string(link[:len(prefix)]) != prefix || link[len(link)-1] != ']' {
		return 0, false
	}
	n, ok := atoi(link[len(prefix) : len(link)-1])
	return uint32(n), ok && n <= 1<<32-1
}

// diagSock is one socket of a sock_diag dump.
type diagSock struct {
	local, remote netip.AddrPort
	state         uint8
	cookie        uint64
	inode         uint32
}

// diagStates are the TCP states dumped: every state of a socket a process
// can hold (not LISTEN, TIME_WAIT or NEW_SYN_RECV, which have no owner).
const diagStates = 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<7 | 1<<8 | 1<<9 | 1<<11

// Sizes of struct nlmsghdr, inet_diag_req_v2 and inet_diag_msg.
const (
	nlmsgHdrLen   = 16
	diagReqLen    = 56
	diagMsgLen    = 72
	diagRecvBytes = 1 << 16
)

// dumpTCP lists the TCP sockets of one family in this network namespace
// with NETLINK_SOCK_DIAG (INET_DIAG_REQ_V2, what `ss` sends).
func dumpTCP(family uint8) ([]diagSock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	req := make([]byte, nlmsgHdrLen+diagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // seq
	req[16] = family
	req[17] = unix.IPPROTO_TCP
	ne.PutUint32(req[20:], diagStates)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}
	var out []diagSock
	buf := make([]byte, diagRecvBytes)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, fmt.Errorf("sock_diag read: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag reply: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(ne.Uint32(m.Data)); code != 0 {
						return nil, fmt.Errorf("sock_diag: %w", unix.Errno(-code))
					}
				}
				return out, nil
			}
			if d, ok := parseDiagMsg(m.Data); ok {
				out = append(out, d)
			}
		}
	}
}

// parseDiagMsg reads a struct inet_diag_msg: ports are big-endian, the
// cookie two host-order 32-bit halves, low half first.
func parseDiagMsg(b []byte) (diagSock, bool) {
	if len(b) < diagMsgLen {
		return diagSock{}, false
	}
	ne := binary.NativeEndian
	var d diagSock
	d.state = b[1]
	sport := binary.BigEndian.Uint16(b[4:])
	dport := binary.BigEndian.Uint16(b[6:])
	var src, dst netip.Addr
	switch b[0] {
	case unix.AF_INET:
		src = netip.AddrFrom4([4]byte(b[8:12]))
		dst = netip.AddrFrom4([4]byte(b[24:28]))
	case unix.AF_INET6:
		src = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		dst = netip.AddrFrom16([16]byte(b[24:40])).Unmap()
	default:
		return diagSock{}, false
	}
	d.local = netip.AddrPortFrom(src, sport)
	d.remote = netip.AddrPortFrom(dst, dport)
	d.cookie = uint64(ne.Uint32(b[44:])) | uint64(ne.Uint32(b[48:]))<<32
	d.inode = ne.Uint32(b[68:])
	return d, true
}
