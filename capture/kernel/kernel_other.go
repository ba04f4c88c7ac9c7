//go:build !linux

package kernel

import (
	"context"
	"net/netip"
	"runtime"

	"github.com/ssestress/ssestress/internal/session"
)

// Collector reads kernel evidence; on this platform there is none.
type Collector struct{}

// Start reports that kernel evidence needs Linux (tracefs).
func Start(ctx context.Context, opts Options) (*Collector, error) {
	return nil, &UnavailableError{Err: ErrUnsupported, Detail: runtime.GOOS + " has no tracefs; kernel reset reasons need Linux 6.10 or later"}
}

// KernelReasons reports that this platform has no tracefs.
func KernelReasons() ([]string, error) {
	return nil, &UnavailableError{Err: ErrUnsupported, Detail: runtime.GOOS}
}

// Close does nothing.
func (c *Collector) Close() error { return nil }

// Done is closed: nothing runs.
func (c *Collector) Done() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

// Err is nil.
func (c *Collector) Err() error { return nil }

// Instance is empty.
func (c *Collector) Instance() string { return "" }

// Owner finds nothing.
func (c *Collector) Owner(local, remote netip.AddrPort) (Owner, bool) { return Owner{}, false }

// Stats are zero.
func (c *Collector) Stats() Stats { return Stats{} }

// Info is empty.
func (c *Collector) Info() session.KernelInfo { return session.KernelInfo{} }
