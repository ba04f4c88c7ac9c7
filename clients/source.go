package clients

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
)

// SourceAddrs spreads outgoing connections round-robin over local source
// addresses. The kernel gives every source address its own range of
// ephemeral ports toward one target (and on Linux IP_BIND_ADDRESS_NO_PORT
// lets it choose the port per 4-tuple), so a run can hold more connections
// to one host:port than one address's ~28,000 ports allow. The zero value
// and nil leave the choice to the system.
type SourceAddrs struct {
	addrs []netip.Addr
	next  atomic.Uint64
}

// maxSourceAddrs bounds a range: beyond it a typo (127.0.0.2-127.255.0.0)
// rather than a need.
const maxSourceAddrs = 4096

// NewSourceAddrs rotates over addrs, in their order.
func NewSourceAddrs(addrs []netip.Addr) *SourceAddrs {
	return &SourceAddrs{addrs: append([]netip.Addr(nil), addrs...)}
}

// Addrs returns the addresses in rotation order.
func (s *SourceAddrs) Addrs() []netip.Addr {
	if s == nil {
		return nil
	}
	return append([]netip.Addr(nil), s.addrs...)
}

// dialer returns base with the next source address as its LocalAddr.
func (s *SourceAddrs) dialer(base *net.Dialer) *net.Dialer {
	if s == nil || len(s.addrs) == 0 {
		return base
	}
	d := *base
	ip := s.addrs[(s.next.Add(1)-1)%uint64(len(s.addrs))]
	d.LocalAddr = &net.TCPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	if d.ControlContext == nil && d.Control == nil {
		d.Control = bindNoPort
	}
	return &d
}

// ParseSourceAddrs reads a comma-separated list of addresses and inclusive
// ranges: "127.0.0.2-127.0.0.9", "10.0.0.5,10.0.0.7", "::1". Every address
// is of one family.
func ParseSourceAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or a range such as 127.0.0.2-127.0.0.9", part)
		}
		last := first
		if isRange {
			if last, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil || last.Is4() != first.Is4() || last.Less(first) {
				return nil, fmt.Errorf("%q is not a range of addresses of one family from low to high", part)
			}
		}
		for a := first; ; a = a.Next() {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
			if len(out) > maxSourceAddrs {
				return nil, fmt.Errorf("more than %d source addresses", maxSourceAddrs)
			}
			if a == last {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no address given")
	}
	for _, a := range out[1:] {
		if a.Is4() != out[0].Is4() {
			return nil, fmt.Errorf("%s and %s are of different families (IPv4 and IPv6 do not mix)", out[0], a)
		}
	}
	return out, nil
}

// CheckSourceAddrs binds each address (port 0) and releases it at once: an
// address that is not configured on this host fails here, in one line,
// instead of failing every connection of a run.
func CheckSourceAddrs(addrs []netip.Addr) error {
	for _, a := range addrs {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: a.AsSlice(), Zone: a.Zone()})
		if err != nil {
			cause := err
			var op *net.OpError
			if errors.As(err, &op) {
				cause = op.Err // "bind: cannot assign requested address"
			}
			return fmt.Errorf("source address %s is not an address of this host (%v); give local addresses, e.g. 127.0.0.2-127.0.0.9 on loopback", a, cause)
		}
		ln.Close()
	}
	return nil
}
