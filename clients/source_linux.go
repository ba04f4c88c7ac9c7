package clients

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT before the dialer binds the
// source address: the port is then chosen at connect time per 4-tuple, not
// at bind time per address, so one address serves every target with its
// whole port range. A failure is ignored (older kernels): the bind then
// chooses the port as usual.
func bindNoPort(network, address string, c syscall.RawConn) error {
	c.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	return nil
}
