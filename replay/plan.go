package replay

import (
	"net/http"
	"sort"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
)

// ConnSpec is one connection of a replayed client population: what a load
// client asks for, when, and for how long.
type ConnSpec struct {
	// Offset is when the connection opens, since the start of the run.
	Offset time.Duration
	// Hold is how long it stays open; 0 means until the run ends (the
	// recorded stream was still open when the recording ended).
	Hold time.Duration
	// RequestURI is the recorded path and query ("/stream?symbols=A,B").
	RequestURI string
	// Header holds the recorded request headers a client may resend: not
	// the redacted ones, the hop-by-hop ones, nor those an SSE client sets
	// itself (Accept, Cache-Control, User-Agent, Last-Event-ID,
	// Accept-Encoding).
	Header http.Header
	// LastEventID is the Last-Event-ID the recorded client sent, if any.
	LastEventID string
	// Group is the recorded symbol group.
	Group string
	// Source names the recorded stream ("<proxy>/<conn id>").
	Source string
	// Copy numbers the copies of one recorded stream: 0 .. scale-1.
	Copy int
}

// PlanOptions configure Plan. The zero value replays the population once.
type PlanOptions struct {
	// Scale is the number of connections per recorded one (default 1).
	Scale int
}

// clientSetHeaders are set by the load client on every request, or must
// not be copied from a recording.
var clientSetHeaders = map[string]bool{
	"Accept": true, "Cache-Control": true, "User-Agent": true, "Last-Event-Id": true,
	"Accept-Encoding": true, "Host": true, "Content-Length": true,
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Proxy-Connection": true, "Proxy-Authorization": true,
}

// Plan turns the recorded client population into connection specs, in the
// order they open. Every recorded stream becomes Scale connections: the
// first at the recorded start (counted from the first recorded start), the
// others spread evenly until the next recorded start (or, for the last
// one, over the mean gap between recorded starts), so the arrival pattern
// keeps its shape at Scale times the rate. Each is held as long as the
// recorded client held its stream.
func Plan(rec *recording.Recording, opts PlanOptions) []ConnSpec {
	scale := max(opts.Scale, 1)
	streams := rec.Streams // ordered by Start
	if len(streams) == 0 {
		return nil
	}
	origin := streams[0].Start
	var meanGap time.Duration
	if n := len(streams); n > 1 {
		meanGap = streams[n-1].Start.Sub(origin) / time.Duration(n-1)
	}
	specs := make([]ConnSpec, 0, len(streams)*scale)
	for i, s := range streams {
		offset := s.Start.Sub(origin)
		window := meanGap
		for j := i + 1; j < len(streams); j++ {
			if next := streams[j].Start.Sub(origin); next > offset {
				window = next - offset
				break
			}
		}
		base := ConnSpec{
			Offset:     offset,
			Hold:       hold(s),
			RequestURI: s.Path,
			Group:      s.Group,
			Source:     s.Name(),
		}
		if s.Query != "" {
			base.RequestURI += "?" + s.Query
		}
		base.Header, base.LastEventID = resendable(s.Header)
		for c := range scale {
			spec := base
			spec.Copy = c
			spec.Offset = offset + window*time.Duration(c)/time.Duration(scale)
			specs = append(specs, spec)
		}
	}
	sort.SliceStable(specs, func(i, j int) bool { return specs[i].Offset < specs[j].Offset })
	return specs
}

// hold is how long the recorded client kept the stream: until its end,
// whoever ended it (a client that was cut reconnected as a new recorded
// stream), or until the run ends for a stream still open.
func hold(s *recording.Stored) time.Duration {
	if s.Ended && s.End > 0 {
		return s.End.D()
	}
	return 0
}

// resendable filters recorded request headers down to those a replaying
// client sends.
func resendable(h http.Header) (http.Header, string) {
	out := http.Header{}
	lastID := ""
	for name, vs := range h {
		canon := http.CanonicalHeaderKey(name)
		if canon == "Last-Event-Id" && len(vs) > 0 {
			lastID = vs[0]
		}
		if clientSetHeaders[canon] {
			continue
		}
		for _, v := range vs {
			if v != recording.RedactedValue {
				out.Add(canon, v)
			}
		}
	}
	if len(out) == 0 {
		out = nil
	}
	return out, lastID
}
