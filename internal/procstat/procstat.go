// Package procstat reads what the kernel says about a process from /proc:
// its resident memory, open file descriptors and threads (Read), and its TCP
// sockets with their states (TCPSockets, TCPStates). ssestress uses it for
// its own process (the run monitor, so the load generator's cost is visible)
// and for a server's pid (--server-pid), so it reads /proc/<pid> only and
// never needs anything the process does not already expose.
//
// Linux only: elsewhere every function returns ErrUnsupported.
package procstat

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// ErrUnsupported is returned where /proc does not exist.
var ErrUnsupported = errors.New("procstat: /proc is not available on " + runtime.GOOS)

// root is the proc file system; tests do not change it, it is a variable
// only so the paths are built in one place.
const root = "/proc"

// Stat is one reading of a process's resources.
type Stat struct {
	// RSS is the resident set size in bytes (VmRSS).
	RSS uint64
	// RSSPeak is the highest RSS the process has had (VmHWM).
	RSSPeak uint64
	// FDs is the number of open file descriptors.
	FDs int
	// Threads is the number of OS threads.
	Threads int
}

// Self reads the calling process.
func Self() (Stat, error) { return Read(os.Getpid()) }

// Read reads the process pid.
func Read(pid int) (Stat, error) {
	if runtime.GOOS != "linux" {
		return Stat{}, ErrUnsupported
	}
	var st Stat
	raw, err := os.ReadFile(fmt.Sprintf("%s/%d/status", root, pid))
	if err != nil {
		return Stat{}, fmt.Errorf("procstat: pid %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "VmRSS":
			st.RSS = parseKB(val)
		case "VmHWM":
			st.RSSPeak = parseKB(val)
		case "Threads":
			st.Threads, _ = strconv.Atoi(val)
		}
	}
	n, err := countDir(fmt.Sprintf("%s/%d/fd", root, pid))
	if err != nil {
		return Stat{}, fmt.Errorf("procstat: pid %d: %w", pid, err)
	}
	st.FDs = n
	return st, nil
}

// parseKB reads "1234 kB" as bytes.
func parseKB(s string) uint64 {
	num, _, _ := strings.Cut(s, " ")
	v, _ := strconv.ParseUint(num, 10, 64)
	return v * 1024
}

// countDir counts directory entries without building a slice of them, so
// a process holding 15,000 sockets costs no more than a few reads.
func countDir(path string) (int, error) {
	d, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	n := 0
	for {
		names, err := d.Readdirnames(1024)
		n += len(names)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		if len(names) == 0 {
			return n, nil
		}
	}
}

// TCP states as the kernel numbers them (include/net/tcp_states.h), named
// as ss(8) and netstat print them.
var tcpStateNames = [...]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
	11: "CLOSING", 12: "NEW_SYN_RECV",
}

// Socket is one TCP socket of a process.
type Socket struct {
	Local  netip.AddrPort
	Remote netip.AddrPort
	State  string // ESTABLISHED, LISTEN, CLOSE_WAIT, ...
	Inode  uint64
	// TxQueue and RxQueue are the bytes waiting in the send and receive
	// queues (for a listener, RxQueue is the accept backlog).
	TxQueue, RxQueue uint64
}

// TCPSockets lists the TCP sockets (IPv4 and IPv6) that pid holds open. It
// reads the socket inodes from /proc/<pid>/fd and matches them against
// /proc/<pid>/net/tcp and tcp6, which list every socket of the process's
// network namespace. Reading another user's process needs the same rights
// as reading its fd directory.
func TCPSockets(pid int) ([]Socket, error) {
	if runtime.GOOS != "linux" {
		return nil, ErrUnsupported
	}
	inodes, err := socketInodes(pid)
	if err != nil {
		return nil, fmt.Errorf("procstat: pid %d: %w", pid, err)
	}
	var out []Socket
	for _, name := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("%s/%d/net/%s", root, pid, name))
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, fmt.Errorf("procstat: pid %d: %w", pid, err)
		}
		socks, err := parseNetTCP(raw)
		if err != nil {
			return nil, fmt.Errorf("procstat: pid %d: net/%s: %w", pid, name, err)
		}
		for _, s := range socks {
			if _, ok := inodes[s.Inode]; ok {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// TCPStates counts the TCP sockets of pid by state.
func TCPStates(pid int) (map[string]int, error) {
	socks, err := TCPSockets(pid)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, s := range socks {
		counts[s.State]++
	}
	return counts, nil
}

// socketInodes reads the inodes of the sockets among pid's descriptors
// ("socket:[12345]" links).
func socketInodes(pid int) (map[uint64]struct{}, error) {
	dir := fmt.Sprintf("%s/%d/fd", root, pid)
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	inodes := map[uint64]struct{}{}
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			link, lerr := os.Readlink(dir + "/" + n)
			if lerr != nil {
				continue // closed since the directory was read
			}
			if rest, ok := strings.CutPrefix(link, "socket:["); ok {
				if ino, perr := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64); perr == nil {
					inodes[ino] = struct{}{}
				}
			}
		}
		if err != nil || len(names) == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return inodes, nil
		}
	}
}

// parseNetTCP parses the text of /proc/net/tcp or tcp6:
//
//	sl  local_address rem_address   st tx_queue:rx_queue tr tm->when retrnsmt   uid  timeout inode
//	 0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 ...
func parseNetTCP(raw []byte) ([]Socket, error) {
	var out []Socket
	lines := bytes.Split(raw, []byte{'\n'})
	for i, line := range lines {
		if i == 0 || len(bytes.TrimSpace(line)) == 0 {
			continue // header
		}
		f := strings.Fields(string(line))
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 10", i+1, len(f))
		}
		local, err := parseHexAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: local address: %w", i+1, err)
		}
		remote, err := parseHexAddr(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: remote address: %w", i+1, err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: state %q", i+1, f[3])
		}
		state := "UNKNOWN"
		if int(st) < len(tcpStateNames) && tcpStateNames[st] != "" {
			state = tcpStateNames[st]
		}
		tx, rx, _ := strings.Cut(f[4], ":")
		txq, _ := strconv.ParseUint(tx, 16, 64)
		rxq, _ := strconv.ParseUint(rx, 16, 64)
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: inode %q", i+1, f[9])
		}
		out = append(out, Socket{Local: local, Remote: remote, State: state, Inode: inode, TxQueue: txq, RxQueue: rxq})
	}
	return out, nil
}

// parseHexAddr reads "0100007F:1F90" (IPv4) or a 32-digit IPv6 address and
// port. The address is printed as 32-bit words in host byte order.
func parseHexAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address in %q", s)
	}
	// Each 32-bit word was printed as a host-order integer: turn it back
	// into network order.
	for w := 0; w < len(b); w += 4 {
		v := binary.BigEndian.Uint32(b[w:])
		binary.NativeEndian.PutUint32(b[w:], v)
	}
	var addr netip.Addr
	if len(b) == 4 {
		addr = netip.AddrFrom4([4]byte(b))
	} else {
		addr = netip.AddrFrom16([16]byte(b)).Unmap()
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
