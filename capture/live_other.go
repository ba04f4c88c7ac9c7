//go:build !linux

package capture

import (
	"context"
	"fmt"
	"runtime"

	"github.com/ssestress/ssestress/internal/session"
)

// Capture is a running live capture; on this system there is none.
type Capture struct{}

// Start reports that live capture needs Linux (AF_PACKET); reading pcap
// files and attribution work everywhere.
func Start(ctx context.Context, cfg Config) (*Capture, error) {
	err := fmt.Errorf("%w on %s: live capture needs Linux (AF_PACKET); capture with tcpdump -w and run 'ssestress capture analyze'", ErrUnsupported, runtime.GOOS)
	if cfg.Session != nil {
		cfg.Session.Put(session.CaptureInfo{ID: LiveCaptureID(cfg.Iface), Iface: cfg.Iface, Ports: cfg.Ports, Disabled: err.Error()})
	}
	return nil, err
}

// Iface is the interface captured on.
func (c *Capture) Iface() string { return "" }

// Progress returns the counters.
func (c *Capture) Progress() Stats { return Stats{} }

// ResetFlows returns the flows that had an RST.
func (c *Capture) ResetFlows() []session.Flow { return nil }

// Stop ends the capture.
func (c *Capture) Stop() (Stats, error) { return Stats{}, nil }

// Info is the capture's description.
func (c *Capture) Info() session.CaptureInfo { return session.CaptureInfo{} }
