package capture

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// PickIface returns the interface that traffic to target leaves through:
// the loopback interface for loopback addresses and for the host's own
// addresses (Linux routes those through lo too), otherwise the interface
// holding the local address the kernel chooses for target. target is
// "host:port", a host or IP, or a URL. No packet is sent.
func PickIface(ctx context.Context, target string) (string, error) {
	host := hostOf(target)
	var addr netip.Addr
	if host == "" {
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	} else if a, err := netip.ParseAddr(host); err == nil {
		addr = a.Unmap()
	} else {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(addrs) == 0 {
			return "", fmt.Errorf("pick capture interface for %s: %v (give --iface)", target, err)
		}
		addr = addrs[0].Unmap()
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("pick capture interface: %w", err)
	}
	loopback := ""
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
			loopback = ifi.Name
			break
		}
	}
	if addr.IsLoopback() || isLocalAddr(ifaces, addr) {
		if loopback == "" {
			return "", fmt.Errorf("pick capture interface for %s: no loopback interface is up (give --iface)", target)
		}
		return loopback, nil
	}
	// Connecting a UDP socket asks the kernel for the route without
	// sending anything.
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 9)))
	if err != nil {
		return "", fmt.Errorf("pick capture interface for %s: no route: %w (give --iface)", target, err)
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	conn.Close()
	for _, ifi := range ifaces {
		if ifaceHas(ifi, local) {
			return ifi.Name, nil
		}
	}
	return "", fmt.Errorf("pick capture interface for %s: no interface holds %s (give --iface)", target, local)
}

// hostOf extracts the host of "host:port", "[v6]:port", a bare host or a URL.
func hostOf(target string) string {
	target = strings.TrimSpace(target)
	if strings.Contains(target, "://") {
		if u, err := url.Parse(target); err == nil {
			return u.Hostname()
		}
	}
	if h, _, err := net.SplitHostPort(target); err == nil {
		return h
	}
	return strings.Trim(target, "[]")
}

func isLocalAddr(ifaces []net.Interface, a netip.Addr) bool {
	for _, ifi := range ifaces {
		if ifaceHas(ifi, a) {
			return true
		}
	}
	return false
}

func ifaceHas(ifi net.Interface, a netip.Addr) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, ad := range addrs {
		if n, ok := ad.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// ARPHRD link types of /sys/class/net/<iface>/type that carry Ethernet
// headers on a packet socket.
const (
	arphrdEther    = 1
	arphrdLoopback = 772
)

// checkLinkType refuses interfaces whose frames are not Ethernet (tun,
// WireGuard, ...): the decoder and the pcap file assume Ethernet. When
// sysfs cannot tell, it lets the capture try.
func checkLinkType(iface string) error {
	b, err := os.ReadFile("/sys/class/net/" + iface + "/type")
	if err != nil {
		return nil
	}
	t, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || t == arphrdEther || t == arphrdLoopback {
		return nil
	}
	return fmt.Errorf("%w: interface %s has link type %d; capture supports Ethernet and loopback interfaces", ErrUnsupported, iface, t)
}
