package capture

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ssestress/ssestress/internal/session"
)

// Multi is several live captures run as one, one per interface: a proxy's
// client hop on lo and its upstream hop on eth0, or every link a router
// joins. Each writes its own pcap file and its own flows (its CaptureInfo
// and flows carry its own ID); attribution joins them, counting a segment
// seen on two interfaces once.
type Multi struct {
	caps []*Capture
}

// StartEach starts one capture per interface in ifaces (deduplicated) with
// cfg; cfg.Out becomes "<out>-<iface>.pcap" for every interface but the
// first when there are several. When one fails to start the others are
// stopped and its error returned.
func StartEach(ctx context.Context, cfg Config, ifaces []string) (*Multi, error) {
	var seen []string
	for _, i := range ifaces {
		if i != "" && !slices.Contains(seen, i) {
			seen = append(seen, i)
		}
	}
	if len(seen) == 0 {
		seen = []string{""} // Start picks the interface
	}
	m := &Multi{}
	for n, iface := range seen {
		c := cfg
		c.Iface = iface
		if n > 0 && cfg.Out != "" {
			ext := filepath.Ext(cfg.Out)
			c.Out = strings.TrimSuffix(cfg.Out, ext) + "-" + iface + ext
		}
		one, err := Start(ctx, c)
		if err != nil {
			m.Stop()
			return nil, err
		}
		m.caps = append(m.caps, one)
	}
	return m, nil
}

// Ifaces picks, for each of targets ("host:port", hosts or URLs), the
// interface traffic to it leaves through (PickIface), each once.
func Ifaces(ctx context.Context, targets []string) ([]string, error) {
	var out []string
	var errs []error
	for _, t := range targets {
		if t == "" {
			continue
		}
		i, err := PickIface(ctx, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Iface lists the interfaces captured on: "lo,eth0".
func (m *Multi) Iface() string {
	var names []string
	for _, c := range m.caps {
		names = append(names, c.Iface())
	}
	return strings.Join(names, ",")
}

// Captures are the captures, one per interface.
func (m *Multi) Captures() []*Capture { return m.caps }

// Progress sums the captures' counters.
func (m *Multi) Progress() Stats {
	var s Stats
	for _, c := range m.caps {
		s = sum(s, c.Progress())
	}
	s.Iface = m.Iface()
	return s
}

// Stop stops every capture and sums their counters; the error is the
// first one met.
func (m *Multi) Stop() (Stats, error) {
	var s Stats
	var first error
	for _, c := range m.caps {
		st, err := c.Stop()
		s = sum(s, st)
		if err != nil && first == nil {
			first = err
		}
	}
	s.Iface = m.Iface()
	return s, first
}

// ResetFlows returns the flows with an RST of every capture.
func (m *Multi) ResetFlows() []session.Flow {
	var out []session.Flow
	for _, c := range m.caps {
		out = append(out, c.ResetFlows()...)
	}
	return out
}

// Infos are the captures' descriptions (after Stop).
func (m *Multi) Infos() []session.CaptureInfo {
	var out []session.CaptureInfo
	for _, c := range m.caps {
		out = append(out, c.Info())
	}
	return out
}

func sum(a, b Stats) Stats {
	if a.Started.IsZero() || (!b.Started.IsZero() && b.Started.Before(a.Started)) {
		a.Started = b.Started
	}
	if b.Stopped.After(a.Stopped) {
		a.Stopped = b.Stopped
	}
	a.Packets += b.Packets
	a.Written += b.Written
	a.KernelPackets += b.KernelPackets
	a.KernelDrops += b.KernelDrops
	a.Flows += b.Flows
	a.Resets += b.Resets
	a.Untracked += b.Untracked
	return a
}
