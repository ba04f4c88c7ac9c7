package attribution

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/ssestress/ssestress/internal/session"
)

// roleInfo is what the files say an address is.
type roleInfo struct {
	role string // session.Role*, "" when nothing says
	name string // the proxy's or middlebox's name
	// assumed: only ever sent to (a proxy's upstream, a run's target) and
	// described by no file: taken for the server; as says how it is known
	// ("proxy P's upstream", "the run's target").
	assumed bool
	as      string
}

// rank orders what files say of one address: a proxy's own word that it
// listens there beats anything else, so an address that is a proxy's
// listener in one file is never the server because another file sent to
// it.
func (r roleInfo) rank() int {
	switch r.role {
	case session.RoleProxy:
		return 5
	case session.RoleMiddlebox:
		return 4
	case session.RoleServer:
		if r.assumed {
			return 1
		}
		return 3
	case session.RoleClient:
		return 2
	}
	return 0
}

// listens reports whether the address is one that connections are made to.
func (r roleInfo) listens() bool {
	switch r.role {
	case session.RoleProxy, session.RoleServer, session.RoleMiddlebox:
		return true
	}
	return false
}

type topology struct {
	exact map[netip.AddrPort]roleInfo
	// port holds endpoints on an unspecified address (0.0.0.0:8080).
	port map[uint16]roleInfo
}

func (t *topology) set(a netip.AddrPort, r roleInfo) {
	if a.Addr().IsUnspecified() {
		if old, ok := t.port[a.Port()]; !ok || r.rank() > old.rank() {
			t.port[a.Port()] = r
		}
		return
	}
	if old, ok := t.exact[a]; !ok || r.rank() > old.rank() {
		t.exact[a] = r
	}
}

func (t *topology) lookup(a netip.AddrPort) roleInfo {
	if r, ok := t.exact[a]; ok {
		return r
	}
	if r, ok := t.port[a.Port()]; ok {
		return r
	}
	return roleInfo{}
}

// addrs turns an address of a record (host:port, perhaps a host name) into
// IP addresses.
func (e *Engine) addrs(s string) []netip.AddrPort {
	if ap, ok := parseAP(s); ok {
		return []netip.AddrPort{ap}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil
	}
	var ips []netip.Addr
	switch {
	case e.opts.Resolve != nil:
		ips = e.opts.Resolve(host)
	case host == "localhost":
		ips = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	}
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
	}
	return out
}

func (e *Engine) buildTopology() {
	e.topo = topology{exact: map[netip.AddrPort]roleInfo{}, port: map[uint16]roleInfo{}}
	set := func(addr string, r roleInfo) {
		for _, a := range e.addrs(addr) {
			e.topo.set(a, r)
		}
	}
	// A proxy's own word on its upstream comes first: of two labels of
	// equal rank the first stays.
	for _, r := range e.in.Proxies {
		set(r.R.Listen, roleInfo{role: session.RoleProxy, name: r.R.Name})
		if r.R.Upstream != "" {
			set(r.R.Upstream, roleInfo{role: session.RoleServer, assumed: true, as: "proxy " + r.R.Name + "'s upstream"})
		}
	}
	for _, r := range e.in.HopConns {
		h := r.R
		switch h.Hop {
		case session.HopClient:
			set(h.LocalAddr, roleInfo{role: session.RoleProxy, name: h.Proxy})
		case session.HopUpstream:
			set(h.RemoteAddr, roleInfo{role: session.RoleServer, assumed: true, as: "proxy " + h.Proxy + "'s upstream"})
		}
	}
	for _, r := range e.in.Topology {
		ep := r.R
		switch ep.Role {
		case session.RoleProxy:
			set(ep.Addr, roleInfo{role: session.RoleProxy, name: ep.Name})
		case session.RoleTarget:
			set(ep.Addr, roleInfo{role: session.RoleServer, assumed: true, as: "the target of " + e.in.Files[r.File].Name})
		case session.RoleServer, session.RoleMiddlebox, session.RoleClient:
			set(ep.Addr, roleInfo{role: ep.Role, name: ep.Name})
		}
	}
}
