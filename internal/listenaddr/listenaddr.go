// Package listenaddr completes the listen addresses every ssestress
// listener takes (serve, replay serve, proxy, its control API, the live
// view): a bare port means loopback, so nothing is exposed to the network
// unless a host is named (0.0.0.0:8080, [::]:8080, 10.0.0.7:8080).
package listenaddr

import (
	"net"
	"strings"
)

// Loopback completes a listen address: empty is def, a bare port ("8080"
// or ":8080") binds 127.0.0.1, anything else is kept as given (an address
// with a host, or a mistake the listener then refuses).
func Loopback(addr, def string) string {
	addr = strings.TrimSpace(addr)
	switch {
	case addr == "":
		return def
	case !strings.Contains(addr, ":") && isPort(addr):
		return net.JoinHostPort("127.0.0.1", addr)
	case strings.HasPrefix(addr, ":"):
		return "127.0.0.1" + addr
	}
	return addr
}

// IsLoopback reports whether a listen address binds to loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isPort reports whether s is all digits (a bare port).
func isPort(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
