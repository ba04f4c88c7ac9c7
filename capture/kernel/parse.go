package kernel

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/ssestress/ssestress/internal/session"
)

// Tracepoint names as trace_pipe prints them.
const (
	tpSendReset    = "tcp_send_reset"
	tpReceiveReset = "tcp_receive_reset"
	tpSetState     = "inet_sock_set_state"
)

// traceLine is one line of trace_pipe, split but not yet interpreted:
//
//	python3-20549   (  20549) [001] ..s1.   389.272019: tcp_send_reset: skbaddr=...
//
// The "(tgid)" column is there because the instance sets record-tgid;
// "(-------)" means the kernel had no tgid for the thread.
type traceLine struct {
	comm    []byte
	tid     int
	tgid    int // 0: not recorded
	cpu     int
	softirq bool
	micros  int64 // the timestamp in microseconds
	name    []byte
	body    []byte
}

// parseLine splits a trace_pipe line. lost is n for a "CPU:1 [LOST n
// EVENTS]" line; ok is false for anything else it cannot read.
func parseLine(b []byte) (l traceLine, lost uint64, ok bool) {
	b = bytes.TrimRight(b, "\r\n")
	if i := bytes.Index(b, []byte("[LOST ")); i >= 0 && bytes.HasPrefix(bytes.TrimLeft(b, " "), []byte("CPU:")) {
		rest := b[i+len("[LOST "):]
		j := bytes.IndexByte(rest, ' ')
		if j > 0 {
			if n, err := strconv.ParseUint(string(rest[:j]), 10, 64); err == nil {
				return l, n, false
			}
		}
		return l, 0, false
	}
	// The comm is at most 15 bytes and may hold anything, even " [1] ",
	// so try each '[' until the rest of the header reads right.
	for start := 0; start < len(b); {
		k := bytes.IndexByte(b[start:], '[')
		if k < 0 {
			return l, 0, false
		}
		k += start
		start = k + 1
		if l, ok = parseHeaderAt(b, k); ok {
			return l, 0, true
		}
	}
	return l, 0, false
}

// parseHeaderAt reads the header around the '[' of the CPU column at k.
func parseHeaderAt(b []byte, k int) (l traceLine, ok bool) {
	// [cpu]
	end := bytes.IndexByte(b[k:], ']')
	if end < 2 {
		return l, false
	}
	cpu, ok := atoi(b[k+1 : k+end])
	if !ok {
		return l, false
	}
	l.cpu = cpu
	rest := b[k+end+1:]
	// flags: "..s1." (irqs-off, need-resched, hard/soft irq, preempt
	// depth, migrate-disable), then the timestamp and ": ".
	rest = bytes.TrimLeft(rest, " ")
	sp := bytes.IndexByte(rest, ' ')
	if sp < 3 {
		return l, false
	}
	flags := rest[:sp]
	switch flags[2] {
	case 's', 'H', 'h', 'z', 'Z': // softirq, hardirq in softirq, hardirq, NMI
		l.softirq = true
	case '.':
	default:
		return l, false
	}
	rest = bytes.TrimLeft(rest[sp:], " ")
	colon := bytes.Index(rest, []byte(": "))
	if colon < 0 {
		return l, false
	}
	if l.micros, ok = parseMicros(rest[:colon]); !ok {
		return l, false
	}
	rest = rest[colon+2:]
	colon = bytes.Index(rest, []byte(": "))
	if colon < 0 {
		if !bytes.HasSuffix(rest, []byte(":")) {
			return l, false
		}
		colon = len(rest) - 1
		l.name, l.body = rest[:colon], nil
	} else {
		l.name, l.body = rest[:colon], rest[colon+2:]
	}
	// Before the '[': "comm-tid", padding, optionally "(tgid)" and padding.
	head := bytes.TrimRight(b[:k], " ")
	if n := len(head); n > 0 && head[n-1] == ')' {
		open := bytes.LastIndexByte(head, '(')
		if open < 0 {
			return l, false
		}
		tg := bytes.TrimSpace(head[open+1 : n-1])
		if t, ok := atoi(tg); ok {
			l.tgid = t
		} else if len(bytes.Trim(tg, "-")) != 0 {
			return l, false
		}
		head = bytes.TrimRight(head[:open], " ")
	}
	dash := bytes.LastIndexByte(head, '-')
	if dash < 0 {
		return l, false
	}
	if l.tid, ok = atoi(head[dash+1:]); !ok {
		return l, false
	}
	l.comm = bytes.TrimLeft(head[:dash], " ")
	return l, true
}

// parseMicros reads "389.272019" (seconds.microseconds) as microseconds.
func parseMicros(b []byte) (int64, bool) {
	dot := bytes.IndexByte(b, '.')
	if dot < 1 {
		return 0, false
	}
	sec, ok := atoi(b[:dot])
	if !ok {
		return 0, false
	}
	frac := b[dot+1:]
	if len(frac) == 0 || len(frac) > 9 {
		return 0, false
	}
	us := int64(0)
	for i := 0; i < 6; i++ {
		us *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			us += int64(c - '0')
		}
	}
	return int64(sec)*1_000_000 + us, true
}

// atoi reads a non-negative decimal.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// tcpFields are the fields of one of the three tracepoints, interpreted.
type tcpFields struct {
	event         string // session.Kernel*
	local, remote netip.AddrPort
	state         string // send_reset: the socket's state, "" for UNKNOWN
	reason        string
	oldState      string
	newState      string
	cookie        uint64
	notTCP        bool // a state event of another protocol
}

// interned holds the names the kernel prints, so records share strings.
var interned = map[string]string{}

func init() {
	for _, r := range reasonTable {
		interned[r.Name] = r.Name
	}
	for _, s := range []string{"TCP_ESTABLISHED", "TCP_SYN_SENT", "TCP_SYN_RECV", "TCP_FIN_WAIT1",
		"TCP_FIN_WAIT2", "TCP_TIME_WAIT", "TCP_CLOSE", "TCP_CLOSE_WAIT", "TCP_LAST_ACK",
		"TCP_LISTEN", "TCP_CLOSING", "TCP_NEW_SYN_RECV", "TCP_BOUND_INACTIVE", "UNKNOWN"} {
		interned[s] = s
	}
}

func intern(b []byte) string {
	if s, ok := interned[string(b)]; ok {
		return s
	}
	return string(b)
}

// parseFields interprets the body of a tcp_send_reset, tcp_receive_reset
// or inet_sock_set_state line. ok is false for other events and for
// bodies without addresses.
func parseFields(name, body []byte) (f tcpFields, ok bool) {
	switch string(name) {
	case tpSendReset:
		f.event = session.KernelSendReset
	case tpReceiveReset:
		f.event = session.KernelReceiveReset
	case tpSetState:
		f.event = session.KernelState
	default:
		return f, false
	}
	var (
		src, dst                       netip.AddrPort
		saddr, daddr, saddr6, daddr6   netip.Addr
		sport, dport                   uint16
		family6, haveSrc, haveDst      bool
		havePorts, haveDaddr           bool
		haveDport, haveDaddr6          bool
		haveSaddr, haveSaddr6, badAddr bool
	)
	for len(body) > 0 {
		var tok []byte
		if sp := bytes.IndexByte(body, ' '); sp >= 0 {
			tok, body = body[:sp], body[sp+1:]
		} else {
			tok, body = body, nil
		}
		eq := bytes.IndexByte(tok, '=')
		if eq < 0 {
			continue
		}
		key, val := tok[:eq], tok[eq+1:]
		switch string(key) {
		case "src":
			src, ok = parseAddrPort(val)
			haveSrc, badAddr = true, badAddr || !ok
		case "dest":
			dst, ok = parseAddrPort(val)
			haveDst, badAddr = true, badAddr || !ok
		case "state":
			if s := intern(val); s != "UNKNOWN" {
				f.state = s
			}
		case "reason":
			f.reason = intern(val)
		case "oldstate":
			f.oldState = intern(val)
		case "newstate":
			f.newState = intern(val)
		case "family":
			family6 = string(val) == "AF_INET6"
		case "protocol":
			f.notTCP = string(val) != "IPPROTO_TCP"
		case "sport":
			p, ok := atoi(val)
			sport, havePorts = uint16(p), havePorts || ok
		case "dport":
			p, ok := atoi(val)
			dport, haveDport = uint16(p), ok
		case "saddr":
			saddr, haveSaddr = parseIPv4(val)
		case "daddr":
			daddr, haveDaddr = parseIPv4(val)
		case "saddrv6":
			saddr6, haveSaddr6 = parseAddr(val)
		case "daddrv6":
			daddr6, haveDaddr6 = parseAddr(val)
		case "sock_cookie":
			f.cookie, _ = strconv.ParseUint(string(val), 16, 64)
		}
	}
	switch {
	case haveSrc || haveDst:
		if badAddr || !haveSrc || !haveDst {
			return f, false
		}
		f.local, f.remote = src, dst
	case !havePorts || !haveDport:
		return f, false
	case family6 && haveSaddr6 && haveDaddr6:
		f.local = netip.AddrPortFrom(saddr6.Unmap(), sport)
		f.remote = netip.AddrPortFrom(daddr6.Unmap(), dport)
	case !family6 && haveSaddr && haveDaddr:
		f.local = netip.AddrPortFrom(saddr, sport)
		f.remote = netip.AddrPortFrom(daddr, dport)
	default:
		return f, false
	}
	return f, true
}

// parseAddrPort reads "%pISpc": "127.0.0.1:80" or "[::1]:80" (IPv4-mapped
// addresses are unmapped).
func parseAddrPort(b []byte) (netip.AddrPort, bool) {
	var host, port []byte
	if len(b) > 0 && b[0] == '[' {
		end := bytes.IndexByte(b, ']')
		if end < 0 || end+1 >= len(b) || b[end+1] != ':' {
			return netip.AddrPort{}, false
		}
		host, port = b[1:end], b[end+2:]
	} else {
		c := bytes.LastIndexByte(b, ':')
		if c < 0 {
			return netip.AddrPort{}, false
		}
		host, port = b[:c], b[c+1:]
	}
	p, ok := atoi(port)
	if !ok || p > 65535 {
		return netip.AddrPort{}, false
	}
	a, ok := parseIPv4(host)
	if !ok {
		if a, ok = parseAddr(host); !ok {
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), true
}

// parseIPv4 reads a dotted quad without allocating.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	part, n, digits := 0, 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n*10 + int(c-'0')
			digits++
			if n > 255 || digits > 3 {
				return netip.Addr{}, false
			}
		case c == '.' && digits > 0 && part < 3:
			ip[part] = byte(n)
			part, n, digits = part+1, 0, 0
		default:
			return netip.Addr{}, false
		}
	}
	if part != 3 || digits == 0 {
		return netip.Addr{}, false
	}
	ip[3] = byte(n)
	return netip.AddrFrom4(ip), true
}

func parseAddr(b []byte) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	return a, err == nil
}
