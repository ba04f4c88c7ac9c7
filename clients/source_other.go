//go:build !linux

package clients

import "syscall"

// bindNoPort does nothing here: the option is Linux's.
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
