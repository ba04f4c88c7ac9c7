package replay

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// Endings compares, connection by connection, how the replayed connections
// of a recorded pattern ended with how their recorded streams did. It is a
// clients.Recorder: put it between the load clients and the session file,
// and it passes every record on while it notes each connection's first
// attempt as it closes.
type Endings struct {
	next clients.Recorder
	pop  *Population

	mu    sync.Mutex
	ended map[int]connEnd // by connection number
}

// connEnd is how one replayed connection's first attempt ended.
type connEnd struct {
	kind  string
	class string // for EndKindOther
	age   time.Duration
}

// NewEndings returns an Endings for pop that passes records on to next.
func NewEndings(pop *Population, next clients.Recorder) *Endings {
	return &Endings{next: next, pop: pop, ended: map[int]connEnd{}}
}

// Put passes rec on and notes a closed first attempt.
func (e *Endings) Put(rec session.Record) {
	e.next.Put(rec)
	c, ok := rec.(session.ConnRecord)
	if !ok || c.Attempt != 0 || c.End.IsZero() || !e.pop.Recorded() {
		return
	}
	n, err := strconv.Atoi(strings.TrimPrefix(c.ClientID, "c"))
	if err != nil || n < 0 || n >= len(e.pop.Specs) {
		return
	}
	end := connEnd{age: c.End.Sub(c.Start), class: c.EndClass}
	switch c.EndClass {
	case "":
		end.kind = session.EndKindClient // closed by the client: at its hold, or at the run's end
	case errclass.ECONNRESET:
		end.kind = session.EndKindReset
	case errclass.UnexpectedEOF:
		end.kind = session.EndKindCut
	case errclass.EOF:
		end.kind = session.EndKindClean
	default:
		end.kind = session.EndKindOther
		if strings.HasPrefix(c.EndClass, "HTTP_") {
			end.kind = session.EndKindStatus
		}
	}
	if end.kind == session.EndKindClient && e.pop.Specs[n].Ending == session.EndKindOpen {
		// The recorded stream was open when the recording ended: the
		// replay holds it to its own end, where the client closes it.
		end.kind = session.EndKindOpen
	}
	e.mu.Lock()
	e.ended[n] = end
	e.mu.Unlock()
}

// endingOrder is the order of the kinds in a comparison.
var endingOrder = []string{
	session.EndKindReset, session.EndKindCut, session.EndKindClean, session.EndKindStatus,
	session.EndKindClient, session.EndKindOpen,
}

// Result is the comparison so far, per recorded ending kind (only the
// kinds the recording has), for the session file (meta "replay"). It is
// empty under a scenario pattern, whose connections replay no one stream.
func (e *Endings) Result(recordingPath string, scale int) session.ReplayEndings {
	out := session.ReplayEndings{Recording: recordingPath, Scale: scale, Pattern: "recorded"}
	if !e.pop.Recorded() {
		out.Pattern = e.pop.Scenario
		return out
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	byKind := map[string]*endingAcc{}
	for n, spec := range e.pop.Specs {
		a := byKind[spec.Ending]
		if a == nil {
			a = &endingAcc{row: session.ReplayEnding{Kind: spec.Ending}, sources: map[string]bool{}}
			byKind[spec.Ending] = a
		}
		if !a.sources[spec.Source] {
			a.sources[spec.Source] = true
			a.row.Recorded++
			if spec.Ending != session.EndKindOpen {
				a.recorded = append(a.recorded, spec.Age)
			}
		}
		a.row.Expected++
		got, ok := e.ended[n]
		switch {
		case !ok:
			a.other("not replayed")
		case got.kind == spec.Ending:
			a.row.Replayed++
			if spec.Ending != session.EndKindOpen {
				a.replayed = append(a.replayed, got.age)
				a.ageErrors = append(a.ageErrors, (got.age - spec.Age).Abs())
			}
		case got.kind == session.EndKindOther:
			a.other(got.class)
		default:
			a.other(got.kind)
		}
	}
	for _, kind := range endingOrder {
		if a := byKind[kind]; a != nil {
			a.row.RecordedAge, a.row.ReplayedAge, a.row.AgeError = AgeDistOf(a.recorded), AgeDistOf(a.replayed), AgeDistOf(a.ageErrors)
			out.Endings = append(out.Endings, a.row)
		}
	}
	return out
}

// endingAcc gathers one ending kind of a comparison.
type endingAcc struct {
	row                session.ReplayEnding
	recorded, replayed []time.Duration
	ageErrors          []time.Duration
	sources            map[string]bool // recorded streams counted
}

// other counts an expected connection that ended otherwise.
func (a *endingAcc) other(how string) {
	if a.row.Other == nil {
		a.row.Other = map[string]int64{}
	}
	a.row.Other[how]++
}

// AgeDistOf summarises ds (nearest-rank percentiles).
func AgeDistOf(ds []time.Duration) session.AgeDist {
	if len(ds) == 0 {
		return session.AgeDist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) session.Seconds {
		i := int(p*float64(len(s))+0.9999999) - 1
		return session.Seconds(s[min(max(i, 0), len(s)-1)])
	}
	return session.AgeDist{N: int64(len(s)), Min: session.Seconds(s[0]), P50: rank(0.5), P95: rank(0.95), Max: session.Seconds(s[len(s)-1])}
}
