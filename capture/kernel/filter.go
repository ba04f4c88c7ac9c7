package kernel

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// compiledFilter is a Filter made into sets.
type compiledFilter struct {
	all       bool
	endpoints map[netip.AddrPort]struct{}
	addrs     map[netip.Addr]struct{}
	ports     map[uint16]struct{}
	live      *EndpointSet
	own       bool
	match     func(Event) bool
}

func compileFilter(f Filter) *compiledFilter {
	c := &compiledFilter{all: f.IsZero(), own: f.OwnSockets, match: f.Match, live: f.Live}
	if len(f.Endpoints) > 0 {
		c.endpoints = make(map[netip.AddrPort]struct{}, len(f.Endpoints))
		for _, e := range f.Endpoints {
			c.endpoints[unmapAddrPort(e)] = struct{}{}
		}
	}
	if len(f.Addrs) > 0 {
		c.addrs = make(map[netip.Addr]struct{}, len(f.Addrs))
		for _, a := range f.Addrs {
			c.addrs[a.Unmap()] = struct{}{}
		}
	}
	if len(f.Ports) > 0 {
		c.ports = make(map[uint16]struct{}, len(f.Ports))
		for _, p := range f.Ports {
			c.ports[p] = struct{}{}
		}
	}
	return c
}

// byAddress says whether the addresses alone keep an event on the socket
// local↔remote.
func (c *compiledFilter) byAddress(local, remote netip.AddrPort) bool {
	if c.all {
		return true
	}
	if c.endpoints != nil {
		if _, ok := c.endpoints[local]; ok {
			return true
		}
		if _, ok := c.endpoints[remote]; ok {
			return true
		}
	}
	if c.addrs != nil {
		if _, ok := c.addrs[local.Addr()]; ok {
			return true
		}
		if _, ok := c.addrs[remote.Addr()]; ok {
			return true
		}
	}
	if c.ports != nil {
		if _, ok := c.ports[local.Port()]; ok {
			return true
		}
		if _, ok := c.ports[remote.Port()]; ok {
			return true
		}
	}
	if c.live != nil && (c.live.Has(local) || c.live.Has(remote)) {
		return true
	}
	return false
}

// keep decides for one event. ownedBySelf says whether the socket
// local→remote is held by this process (from the socket table).
func (c *compiledFilter) keep(e *Event, self int, ownedBySelf func(local, remote netip.AddrPort) bool) bool {
	if c.byAddress(e.Local, e.Remote) {
		return true
	}
	if c.own {
		if e.OwnerPID == self || (!e.Softirq && e.PID == self) {
			return true
		}
		// The peer is a socket of this process on this host.
		if ownedBySelf(e.Remote, e.Local) {
			return true
		}
	}
	return c.match != nil && c.match(*e)
}

// maxKernelPorts bounds the tracefs filter expression.
const maxKernelPorts = 32

// kernelPortFilter is the tracefs filter for receive_reset and set_state
// events ("sport == 80 || dport == 80 ..."), or "" when the filter keeps
// events that ports cannot express (OwnSockets, Addrs, Live, Match, zero).
func (c *compiledFilter) kernelPortFilter() string {
	if c.all || c.own || c.match != nil || c.addrs != nil || c.live != nil {
		return ""
	}
	var ports []uint16
	for p := range c.ports {
		ports = append(ports, p)
	}
	for e := range c.endpoints {
		ports = append(ports, e.Port())
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	if len(ports) == 0 || len(ports) > maxKernelPorts {
		return ""
	}
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteString(" || ")
		}
		ps := strconv.Itoa(int(p))
		b.WriteString("sport == " + ps + " || dport == " + ps)
	}
	return b.String()
}
