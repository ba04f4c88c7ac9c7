package replay

import (
	"net/http"
	"sort"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

// ConnSpec is one connection of a replayed client population: what a load
// client asks for, when, and for how long.
type ConnSpec struct {
	// Offset is when the connection opens, since the start of the run.
	Offset time.Duration
	// Hold is when the client closes it, counted from Offset: the recorded
	// age for a stream the client ended, EndBound of it for one the server
	// side ended (which the replayed server ends first), and 0, until the
	// run ends, for one still open when the recording ended.
	Hold time.Duration
	// Ending is how the recorded stream ended (EndingOf): what its replay
	// reproduces. Age is its recorded age at that end (0 while open).
	Ending string
	Age    time.Duration
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
// keeps its shape at Scale times the rate. Each keeps its recorded ending:
// the client closes it at its recorded age when the recorded client did;
// otherwise the server side ends it (Hold is then only a bound).
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
			Ending:     EndingOf(s),
			RequestURI: s.Path,
			Group:      s.Group,
			Source:     s.Name(),
		}
		if base.Ending != session.EndKindOpen {
			base.Age = s.End.D()
		}
		base.Hold = hold(base.Ending, base.Age)
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

// EndGrace is the least time past its recorded age that a replayed client
// waits for the server side to end a stream it ended in the recording
// (EndBound).
const EndGrace = 5 * time.Second

// EndBound is when a replayed client gives up waiting for the server side
// to end a stream it ended at age in the recording, and closes it itself:
// well past the recorded time (twice the age, and at least EndGrace
// after it), so that a late replayed ending still reaches the client and
// a target that never ends the stream does not hold the run forever.
func EndBound(age time.Duration) time.Duration { return age + max(age, EndGrace) }

// hold is when the replayed client closes a stream of the recorded ending
// kind and age (ConnSpec.Hold).
func hold(ending string, age time.Duration) time.Duration {
	switch ending {
	case session.EndKindOpen:
		return 0
	case session.EndKindClient:
		return max(age, time.Nanosecond)
	}
	return EndBound(age)
}

// EndingOf is how the recorded stream ended as its client saw it: the
// ending kind replay serve reproduces and replay run compares. A stream the
// recording proxy itself ended (a fault, its policy on an upstream
// failure) was ended by the server side as far as the client knows; when
// the proxy passed an upstream failure on by its --on-upstream-error
// policy, the client saw the policy's ending (a reset, a cut body, a clean
// end), whatever the upstream did.
func EndingOf(s *recording.Stored) string {
	switch {
	case !s.Ended || s.Stopped:
		return session.EndKindOpen
	case s.Status != 0 && s.Status != http.StatusOK:
		return session.EndKindStatus
	case s.EndedBy == session.EndedByClient || s.EndedBy == "":
		return session.EndKindClient
	case s.UpstreamErrorAction == "reset":
		return session.EndKindReset
	case s.UpstreamErrorAction == "abort":
		return session.EndKindCut
	case s.UpstreamErrorAction == "eof":
		return session.EndKindClean
	case s.Ending == session.EndingRST || s.Class == errclass.ECONNRESET:
		return session.EndKindReset
	case s.Class == "" || s.Class == errclass.EOF:
		return session.EndKindClean
	}
	return session.EndKindCut
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
