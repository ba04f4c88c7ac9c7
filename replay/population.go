package replay

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/recording"
)

// ScenarioReplay names the recorded pattern in records and summaries
// (RunInfo.Scenario, Summary.Scenario).
const ScenarioReplay = "replay"

// ErrNoStreams is returned by NewPopulation (and NewServer) for a recording
// with nothing to replay.
var ErrNoStreams = errors.New("no recorded stream with a response to replay")

// PopulationOptions configure NewPopulation. The zero value replays the
// recorded pattern once, for the recording's length.
type PopulationOptions struct {
	// Scale is the number of connections per recorded one (default 1).
	Scale int
	// Scenario, when set, applies that scenario's pattern (clients.Scenarios)
	// to the recorded mix of requests instead of the recorded pattern.
	Scenario string
	// Duration is the run's length; zero means the recording's (the
	// scenario's with Scenario).
	Duration time.Duration
	// Seed draws the scenario's ramp (the same seed, the same schedule).
	Seed uint64
}

// Population is the client population of one replay run: the schedule that
// clients.Drive follows and what each numbered connection asks for.
//
// In the recorded pattern connection n replays Specs[n]: it opens at the
// spec's offset and makes one attempt (a recorded client's reconnect is a
// recorded stream of its own). A stream the client ended is closed by the
// client at its recorded age; one the server side ended (reset, cut, clean
// end, error status) is held until the server side ends it, so that the
// replayed ending reaches the client, and closed by the client only at
// EndBound; one still open when the recording ended is held to the end of
// the run.
//
// Under a scenario connection n asks what Specs[n mod len(Specs)] asked and
// the scenario opens and closes the connections; they reconnect as
// EventSources do.
type Population struct {
	// Specs are the connection specs: the recorded pattern's, or the mix a
	// scenario draws from (one per recorded stream).
	Specs []ConnSpec
	// Scenario is ScenarioReplay, or the scenario applied.
	Scenario string
	// Duration is how long the run lasts.
	Duration time.Duration
	// Concurrent is the most connections open at once.
	Concurrent int
	plan       *clients.Plan // the scenario's; nil for the recorded pattern
}

// NewPopulation builds the population of rec under opts.
func NewPopulation(rec *recording.Recording, opts PopulationOptions) (*Population, error) {
	scale := max(opts.Scale, 1)
	p := &Population{Duration: opts.Duration, Scenario: ScenarioReplay}
	if opts.Scenario == "" {
		p.Specs = Plan(rec, PlanOptions{Scale: scale})
		if len(p.Specs) == 0 {
			return nil, ErrNoStreams
		}
		if p.Duration == 0 {
			p.Duration = recordedLength(rec, p.Specs)
		}
		p.Concurrent = len(p.Specs)
		return p, nil
	}
	def, ok := clients.ScenarioDefaults[opts.Scenario]
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q (use %s)", opts.Scenario, strings.Join(clients.Scenarios, ", "))
	}
	p.Scenario = opts.Scenario
	p.Specs = Plan(rec, PlanOptions{Scale: 1})
	if len(p.Specs) == 0 {
		return nil, ErrNoStreams
	}
	plan, err := clients.PlanFor(opts.Scenario, len(p.Specs)*scale, def.Rate, def.ChurnRate,
		def.VariableMin*scale, def.VariableMax*scale, opts.Seed)
	if err != nil {
		return nil, err
	}
	p.plan = &plan
	if p.Duration == 0 {
		p.Duration = def.Duration
	}
	p.Concurrent = plan.Concurrent()
	return p, nil
}

// Recorded reports whether the population follows the recorded pattern
// (each connection replays one recorded stream, with its ending).
func (p *Population) Recorded() bool { return p.plan == nil }

// Spec is what connection n asks for.
func (p *Population) Spec(n int) ConnSpec {
	if p.plan != nil {
		return p.Specs[n%len(p.Specs)]
	}
	return p.Specs[n]
}

// Schedule returns a fresh schedule of the population (a schedule is
// consumed by the Drive that follows it).
func (p *Population) Schedule() clients.Scheduler {
	if p.plan != nil {
		return p.plan.Schedule()
	}
	var actions []clients.Action
	for n, c := range p.Specs {
		actions = append(actions, clients.Action{At: c.Offset, Open: true, Conn: n})
		if c.Hold > 0 {
			actions = append(actions, clients.Action{At: c.Offset + c.Hold, Open: false, Conn: n})
		}
	}
	sort.SliceStable(actions, func(i, j int) bool { return actions[i].At < actions[j].At })
	return &actionList{actions: actions}
}

// Streams returns the stream factory of clients.Drive: connection n asks
// target (its path prefixed to the recorded one) for its spec's request,
// with the recorded headers and Last-Event-ID, extra's headers added or
// replacing, HeaderStream naming the recorded stream so that a replay
// server answers with that one, and HeaderRun naming the run (run, unique
// to it) so that it resumes only on ids delivered to this run. Streams
// share one Options per header set, made from base; in the recorded
// pattern each makes one attempt.
func (p *Population) Streams(target *url.URL, base clients.Options, extra http.Header, run string) func(n int) (*clients.Stream, error) {
	base.NoReconnect = p.plan == nil
	cache := map[string]*clients.Options{}
	optionsFor := func(h http.Header) *clients.Options {
		var key strings.Builder
		names := make([]string, 0, len(h))
		for k := range h {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(&key, "%s:%q\n", k, h[k])
		}
		if o := cache[key.String()]; o != nil {
			return o
		}
		o := base
		o.Header = h
		cache[key.String()] = &o
		return &o
	}
	prefix := strings.TrimSuffix(target.Path, "/")
	return func(n int) (*clients.Stream, error) {
		c := p.Spec(n)
		u, err := target.Parse(prefix + c.RequestURI)
		if err != nil {
			return nil, fmt.Errorf("recorded request %q: %w", c.RequestURI, err)
		}
		h := c.Header.Clone()
		if h == nil {
			h = http.Header{}
		}
		for k, vs := range extra {
			h[k] = vs
		}
		h.Set(HeaderStream, c.Source)
		h.Set(HeaderRun, run)
		s := clients.NewStream(clients.ClientID(n), c.Group, u, optionsFor(h))
		if c.LastEventID != "" {
			s.SetLastEventID(c.LastEventID)
		}
		return s, nil
	}
}

// recordedLength is how long a replay of the recorded pattern lasts by
// default: until every connection's close (a server-ended stream's bound
// included) and at least the recording's own length, plus 100 ms. Drive
// ends earlier when every connection has ended.
func recordedLength(rec *recording.Recording, specs []ConnSpec) time.Duration {
	var end time.Duration
	if len(rec.Streams) > 0 {
		origin := rec.Streams[0].Start
		for _, s := range rec.Streams {
			end = max(end, s.Start.Sub(origin)+s.Held())
		}
	}
	for _, c := range specs {
		end = max(end, c.Offset+c.Hold)
	}
	return max(end+100*time.Millisecond, time.Second)
}

// actionList is a Scheduler over actions in time order.
type actionList struct {
	actions []clients.Action
	i       int
}

func (l *actionList) Peek() (clients.Action, bool) {
	if l.i >= len(l.actions) {
		return clients.Action{}, false
	}
	return l.actions[l.i], true
}

func (l *actionList) Next() (clients.Action, bool) {
	a, ok := l.Peek()
	if ok {
		l.i++
	}
	return a, ok
}
