package clients

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is a pace in connections per second: fixed (Min == Max) or a range
// such as "1-5 per second". The zero Rate means "all at once".
//
// A range is a deterministic, seeded schedule inside the range: the gap
// before the k-th open is 1/r seconds where r is drawn uniformly from
// [Min, Max] by a hash of (seed, k). Every instantaneous rate therefore lies
// in the range, the same seed gives the same schedule on every machine and
// every run, and the schedule is a pure function of time (see Plan). This is
// the same reading the embedded server gives its message-rate range.
type Rate struct{ Min, Max float64 }

// ParseRate reads "5" or "1-5" (per second).
func ParseRate(s string) (Rate, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	min, err := strconv.ParseFloat(strings.TrimSpace(lo), 64)
	if err != nil || min <= 0 || min > 1e6 {
		return Rate{}, fmt.Errorf("invalid rate %q (use connections per second, e.g. 5 or 1-5)", s)
	}
	max := min
	if found {
		max, err = strconv.ParseFloat(strings.TrimSpace(hi), 64)
		if err != nil || max < min || max > 1e6 {
			return Rate{}, fmt.Errorf("invalid rate %q (use connections per second, e.g. 5 or 1-5)", s)
		}
	}
	return Rate{min, max}, nil
}

func (r Rate) String() string {
	if r.Min == 0 {
		return "all at once"
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	if r.Min == r.Max {
		return f(r.Min)
	}
	return f(r.Min) + "-" + f(r.Max)
}

// MarshalText writes the rate as ParseRate reads it.
func (r Rate) MarshalText() ([]byte, error) {
	if r.Min == 0 {
		return []byte("0"), nil
	}
	return []byte(r.String()), nil
}

// gap is the wait before the k-th open (k ≥ 1).
func (r Rate) gap(seed uint64, k int) time.Duration {
	if r.Min <= 0 {
		return 0
	}
	perS := r.Min
	if r.Max > r.Min {
		perS = r.Min + unit(seed, uint64(k))*(r.Max-r.Min)
	}
	return time.Duration(float64(time.Second) / perS)
}

// unit maps (seed, n) to [0, 1) with splitmix64: a stateless generator, so
// any step of a schedule is computed without replaying the ones before it.
func unit(seed, n uint64) float64 {
	z := seed*0x9E3779B97F4A7C15 + n + 0x632BE59BD9B4E019
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}

// Plan is a scenario's pacing: which client connections are opened and
// closed, and when, as a pure function of the time elapsed since the start
// of the run. Connections are numbered in the order they open (0, 1, 2, ...),
// which is also the round-robin order of symbol groups.
//
//   - The first Connections connections open during the ramp: the first at
//     0, then one per gap drawn from Ramp (zero Ramp: all at 0). RampEnd is
//     the time of the last of them. They stay open unless churned.
//   - Churn > 0 without a variable set (scenario churn): at RampEnd + j·Churn,
//     j = 1, 2, ..., the oldest open connection is closed and a new one
//     opened, so Connections stay open.
//   - VariableMax > 0 (scenario mixed): on top of the steady Connections, a
//     variable set whose size for period j (from RampEnd + j·Churn, j = 0,
//     1, ...) is drawn from [VariableMin, VariableMax] by a hash of
//     (Seed, j). When it grows, new connections open at the period's start;
//     when it shrinks, its oldest connections are closed.
//
// The schedule never ends when Churn > 0; otherwise it ends with the ramp.
//
// With a Shard, the plan keeps only the actions on the connections the
// shard owns, at the times the whole plan has them: n shards of a plan
// together open and close exactly what the whole plan does, with the same
// connection numbers (hence the same ids and symbol groups), each at 1/n
// of the rate.
type Plan struct {
	Connections              int
	Ramp                     Rate
	Churn                    time.Duration
	VariableMin, VariableMax int
	Seed                     uint64
	Shard                    Shard
}

// Shard is one of Count parts of a plan, numbered from 1: it owns the
// connections n with n mod Count = Index-1, so the connections are dealt
// round-robin and every shard opens its share at its share of the rate.
// The zero Shard is the whole plan.
type Shard struct{ Index, Count int }

// ParseShard reads "i/n" (1 ≤ i ≤ n).
func ParseShard(s string) (Shard, error) {
	is, ns, ok := strings.Cut(strings.TrimSpace(s), "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(is))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	switch {
	case !ok || err1 != nil || err2 != nil || n < 1:
		return Shard{}, fmt.Errorf("invalid shard %q (use i/n, e.g. 2/3 for the second of three parts)", s)
	case i == 0:
		return Shard{}, fmt.Errorf("invalid shard %q: shards are numbered from 1 (a Kubernetes completion index is the shard minus one)", s)
	case i < 0 || i > n:
		return Shard{}, fmt.Errorf("invalid shard %q: i must be between 1 and %d", s, n)
	}
	return Shard{Index: i, Count: n}, nil
}

// String writes the shard as ParseShard reads it; "" for the whole plan.
func (s Shard) String() string {
	if s.Count == 0 {
		return ""
	}
	return strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.Count)
}

// Owns reports whether connection n belongs to the shard.
func (s Shard) Owns(n int) bool { return s.Count <= 1 || n%s.Count == s.Index-1 }

// Concurrent is the most connections the plan holds open at once: the
// steady ones and the largest variable set, the shard's part of them
// (rounded up).
func (p Plan) Concurrent() int {
	n := p.Connections + p.VariableMax
	if c := p.Shard.Count; c > 1 {
		n = (p.Connections+c-1)/c + (p.VariableMax+c-1)/c
	}
	return n
}

// Check reports a plan that cannot run.
func (p Plan) Check() error {
	switch {
	case p.Connections < 0:
		return fmt.Errorf("connections must not be negative")
	case p.VariableMax > 0 && p.Churn <= 0:
		return fmt.Errorf("a variable set needs a period (churn rate)")
	case p.VariableMin < 0 || p.VariableMax < p.VariableMin:
		return fmt.Errorf("variable set %d-%d is not a range", p.VariableMin, p.VariableMax)
	case p.Connections == 0 && p.VariableMax == 0:
		return fmt.Errorf("connections must be positive")
	case p.Churn > 0 && p.VariableMax == 0 && p.Connections == 0:
		return fmt.Errorf("churn needs base connections")
	case p.Shard != Shard{} && (p.Shard.Count < 1 || p.Shard.Index < 1 || p.Shard.Index > p.Shard.Count):
		return fmt.Errorf("shard %d/%d is not one of the parts", p.Shard.Index, p.Shard.Count)
	case p.Shard.Count > p.Connections:
		return fmt.Errorf("%d shards need at least %d connections, got %d (shard %s would open none)",
			p.Shard.Count, p.Shard.Count, p.Connections, Shard{p.Shard.Count, p.Shard.Count})
	}
	return nil
}

// Action is one step of a schedule.
type Action struct {
	At   time.Duration // since the start of the run
	Open bool          // open (true) or close (false)
	Conn int           // connection number
}

// Schedule iterates a Plan's actions in time order. It is deterministic: the
// same Plan always yields the same actions.
//
// A periodic step may hold no action (the variable set kept its size, or
// a shard owns none of the step's connections). Peek and Next look at most
// maxEmptySteps steps ahead and then report no more actions: a variable
// set of fixed size never changes again, and a shard that owns nothing in
// that many periods (days at the default rate) owns nothing in a run.
type Schedule struct {
	p       Plan
	k       int           // ramp opens emitted
	t       time.Duration // time of the last ramp open
	period  int           // next periodic step
	queue   []Action
	varOpen int // variable connections opened so far
	varShut int // variable connections closed so far
}

// Schedule starts iterating the plan's actions.
func (p Plan) Schedule() *Schedule { return &Schedule{p: p} }

// RampEnd is the time of the last ramp open.
func (p Plan) RampEnd() time.Duration {
	var t time.Duration
	for k := 1; k < p.Connections; k++ {
		t += p.Ramp.gap(p.Seed, k)
	}
	return t
}

// Next returns the next action, or false when the plan has no more.
func (s *Schedule) Next() (Action, bool) {
	a, ok := s.Peek()
	if ok {
		s.queue = s.queue[1:]
	}
	return a, ok
}

// maxEmptySteps bounds how far Peek looks for the next action.
const maxEmptySteps = 1 << 16

// Peek returns the next action without consuming it.
func (s *Schedule) Peek() (Action, bool) {
	for empty := 0; len(s.queue) == 0; empty++ {
		if empty >= maxEmptySteps || !s.fill() {
			return Action{}, false
		}
	}
	return s.queue[0], true
}

// push queues a if the plan's shard owns its connection.
func (s *Schedule) push(a Action) {
	if s.p.Shard.Owns(a.Conn) {
		s.queue = append(s.queue, a)
	}
}

// fill queues the next step's actions; false when there are none.
func (s *Schedule) fill() bool {
	p := s.p
	if s.k < p.Connections {
		if s.k > 0 {
			s.t += p.Ramp.gap(p.Seed, s.k)
		}
		s.push(Action{At: s.t, Open: true, Conn: s.k})
		s.k++
		return true
	}
	if p.Churn <= 0 {
		return false
	}
	j := s.period
	s.period++
	at := s.t + time.Duration(j)*p.Churn
	if p.VariableMax == 0 {
		if j == 0 {
			return true // churn starts one period after the ramp
		}
		s.push(Action{At: at, Open: false, Conn: j - 1})
		s.push(Action{At: at, Open: true, Conn: p.Connections + j - 1})
		return true
	}
	want := p.VariableMin
	span := p.VariableMax - p.VariableMin
	if span > 0 {
		want += int(unit(p.Seed^0xA5A5, uint64(j)) * float64(span+1))
	} else if j > 0 {
		return false // a variable set of fixed size was opened in period 0
	}
	for s.varOpen-s.varShut < want {
		s.push(Action{At: at, Open: true, Conn: p.Connections + s.varOpen})
		s.varOpen++
	}
	for s.varOpen-s.varShut > want {
		s.push(Action{At: at, Open: false, Conn: p.Connections + s.varShut})
		s.varShut++
	}
	return true
}

// Actions lists the actions scheduled before until.
func (p Plan) Actions(until time.Duration) []Action {
	var out []Action
	s := p.Schedule()
	for {
		a, ok := s.Next()
		if !ok || a.At >= until {
			return out
		}
		out = append(out, a)
	}
}

// Wanted is the number of connections the plan has open at elapsed (after
// the actions scheduled at elapsed itself).
func (p Plan) Wanted(elapsed time.Duration) int {
	n := 0
	for _, a := range p.Actions(elapsed + 1) {
		if a.Open {
			n++
		} else {
			n--
		}
	}
	return n
}
