package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// LoadEvidence reads what attribution needs from a session file. Topology
// addresses given as host names are resolved (bounded by ctx), so the
// flows' literal addresses can be matched to them.
func LoadEvidence(ctx context.Context, r *session.Reader) (*Evidence, error) {
	ev := &Evidence{}
	var err error
	if ev.Topology, err = session.All[session.Endpoint](r, session.BucketTopology); err != nil {
		return nil, err
	}
	if ev.Conns, err = session.All[session.ConnRecord](r, session.BucketConns); err != nil {
		return nil, err
	}
	if ev.Errors, err = session.All[session.ErrorRecord](r, session.BucketErrors); err != nil {
		return nil, err
	}
	if ev.HopConns, err = session.All[session.HopConn](r, session.BucketHopConns); err != nil {
		return nil, err
	}
	if ev.Faults, err = session.All[session.FaultEvent](r, session.BucketFaults); err != nil {
		return nil, err
	}
	if ev.Flows, err = session.All[session.Flow](r, session.BucketFlows); err != nil {
		return nil, err
	}
	captures, err := r.Captures()
	if err != nil {
		return nil, err
	}
	for _, c := range captures {
		ev.Ports = append(ev.Ports, c.Ports...)
	}
	ev.Topology = resolveTopology(ctx, ev.Topology)
	return ev, nil
}

// resolveTopology adds, for each endpoint whose address is a host name, a
// copy per IP address it resolves to.
func resolveTopology(ctx context.Context, eps []session.Endpoint) []session.Endpoint {
	out := eps
	for _, e := range eps {
		host, port, err := net.SplitHostPort(e.Addr)
		if err != nil {
			continue
		}
		if _, err := netip.ParseAddr(host); err == nil || host == "" {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			c := e
			c.Addr = net.JoinHostPort(a.Unmap().String(), port)
			out = append(out, c)
		}
	}
	return out
}

// Result is the outcome of an attribution.
type Result struct {
	Resets []session.Reset `json:"resets"`
	// Flows is the number of flow summaries looked at; 0 means the resets
	// rest on socket evidence alone.
	Flows int `json:"flows"`
	// Errors counts the client errors; Explained those with a chain.
	Errors    int `json:"errors"`
	Explained int `json:"explained"`
}

// Summarize builds a Result from attributed resets.
func Summarize(ev *Evidence, resets []session.Reset) *Result {
	res := &Result{Resets: resets, Flows: len(ev.Flows)}
	for _, e := range ev.Errors {
		if e.Source == "" || e.Source == session.RoleClient {
			res.Errors++
		}
	}
	for _, r := range resets {
		if r.Root && r.Error != nil {
			res.Explained++
		}
	}
	return res
}

// AnalyzeOptions configure AttributeFile.
type AnalyzeOptions struct {
	// Pcap, when set, is the packet evidence instead of the session file's
	// own flows: the flows of a pcap file read with ReadFile.
	Pcap *FileResult
	// Ports add server-side ports to the topology's.
	Ports []int
	// DryRun leaves the session file as it is.
	DryRun bool
}

// ErrHasFlows is returned by AttributeFile when a pcap file's flows would
// be stored into a session file that holds flows of its own capture.
var ErrHasFlows = errors.New("already holds the flows of its own capture")

// AttributeFile attributes the resets of a session file and, unless
// opts.DryRun, stores them in its resets bucket (and opts.Pcap's flows in
// its flows bucket), replacing the records of an earlier analysis of the
// same traffic. Call it after the file's writer is closed: it opens the
// file twice, first to read, then to append.
func AttributeFile(ctx context.Context, path string, opts AnalyzeOptions) (*Result, error) {
	r, err := session.Open(path)
	if err != nil {
		return nil, err
	}
	ev, err := LoadEvidence(ctx, r)
	r.Close()
	if err != nil {
		return nil, err
	}
	if opts.Pcap != nil {
		if len(ev.Flows) > 0 && !opts.DryRun {
			return nil, fmt.Errorf("%s %w (%d flows): analyze the pcap file without storing", path, ErrHasFlows, len(ev.Flows))
		}
		ev.Flows = opts.Pcap.Flows
	}
	ev.Ports = append(ev.Ports, opts.Ports...)
	resets := Attribute(ev)
	res := Summarize(ev, resets)
	if opts.DryRun {
		return res, nil
	}
	var writeErr error
	w, err := session.Create(path, session.Options{Append: true, OnError: func(err error) { writeErr = err }})
	if err != nil {
		return nil, err
	}
	if opts.Pcap != nil {
		for _, f := range opts.Pcap.Flows {
			w.Put(f)
		}
	}
	for _, rs := range resets {
		w.Put(rs)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if writeErr != nil {
		return nil, fmt.Errorf("%s: store resets: %w", path, writeErr)
	}
	return res, nil
}

// Seconds formats a duration in seconds with one decimal, "-" when unknown.
func Seconds(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
}
