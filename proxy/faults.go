package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is a fault installed in a proxy: its spec and the behaviour of its
// kind, with durations already shrunk by the time scale. A preset is a
// Fault made of parts, each a Fault of its own kind and hop.
type Fault struct {
	Spec  FaultSpec
	b     behaviour
	after time.Duration // Spec.After, scaled
	parts []*Fault
}

// behaviour is what a kind does, built once from a spec's parameters. Its
// one method attaches the fault to one hop connection and returns the
// per-connection effect, or nil when the kind does not act on connections
// (down, http-status act at accept, dial or request time). What an effect
// can do is told by the optional interfaces it implements: shaper, limiter,
// blocker, guard, closeDelayer, unitFault, unitObserver, stopper.
type behaviour interface {
	attach(a *attachment) any
}

// downer is a behaviour that refuses or resets connections as they open
// (kind down).
type downer interface {
	downAction() string
}

// responder is a behaviour that answers a request with a status instead of
// the upstream's response (kind http-status). A zero timeout answers at
// once; otherwise only when the upstream has not answered within it.
type responder interface {
	respond() (code int, timeout time.Duration)
}

// Effect abilities.
type (
	// shaper schedules the data of a direction: it sets the time each
	// piece may pass and may split pieces. It is a pure function of the
	// pieces' arrival times and its own state.
	shaper interface {
		shape(dir string, now time.Time, ps []piece) []piece
	}
	// limiter lets only so many bytes pass, then acts (reached).
	limiter interface {
		remaining() int64 // bytes still allowed; -1 when not limiting now
		reached()
	}
	// blocker drops the data of its directions while it blocks.
	blocker interface {
		blocks(now time.Time) bool
	}
	// guard checks a connection before data passes: true means the flow is
	// gone and the connection has been reset.
	guard interface {
		forgotten(now, idleSince time.Time) bool
	}
	// closeDelayer postpones the proxy's close of the socket.
	closeDelayer interface {
		closeDelay(now time.Time) time.Duration
	}
	// unitFault acts on an SSE unit (an event, or a comment or other block)
	// before it is forwarded: it may drop, delay or stall it.
	unitFault interface {
		unit(u *unit)
	}
	// unitObserver is told of each unit once it has been forwarded.
	unitObserver interface {
		forwarded(u *unit)
	}
	// stopper releases what an effect holds when its fault is removed.
	stopper interface {
		stop()
	}
)

// piece is data on its way through a delay line: it may pass at at.
type piece struct {
	data  []byte
	buf   *[]byte // the pooled buffer data is in, when a line holds it
	at    time.Time
	err   error         // read side: the error that ended reading
	flush chan struct{} // write side: closed when every earlier piece is written
}

// unit is one SSE dispatch unit on its way to the client.
type unit struct {
	data    []byte
	event   bool
	arrival time.Time // when its last byte arrived from the upstream
	at      time.Time // when it may be forwarded
	drop    bool
	stall   bool
	st      *stream // the stream it belongs to (nil in the shapers' unit tests)
}

// newFault builds the Fault of a spec at a time scale.
func newFault(spec FaultSpec, scale float64) (*Fault, error) {
	if spec.Kind == "preset" {
		pr, ok := presets[spec.Preset]
		if !ok {
			return nil, fmt.Errorf("%w: unknown preset %q", ErrBadFault, spec.Preset)
		}
		f := &Fault{Spec: spec}
		for _, text := range pr.faults {
			ps, err := ParseFault(text)
			if err != nil {
				return nil, fmt.Errorf("preset %s: %w", spec.Preset, err)
			}
			ps.Name = spec.Name + "/" + ps.Kind
			ps.Toxicity = spec.Toxicity
			if spec.Match != "" {
				ps.Match = spec.Match
			}
			ps.After += spec.After
			part, err := newFault(ps, scale)
			if err != nil {
				return nil, err
			}
			f.parts = append(f.parts, part)
		}
		return f, nil
	}
	kd, ok := kinds[spec.Kind]
	if !ok {
		return nil, fmt.Errorf("%w: unknown fault kind %q", ErrBadFault, spec.Kind)
	}
	b, err := kd.build(spec, scale)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadFault, spec.Spec, err)
	}
	return &Fault{Spec: spec, b: b, after: scaled(spec.After, scale)}, nil
}

// leaves are the faults that act: the parts of a preset, or the fault.
func (f *Fault) leaves() []*Fault {
	if f.parts != nil {
		return f.parts
	}
	return []*Fault{f}
}

// attachment is one fault attached to one hop connection.
type attachment struct {
	f      *Fault
	h      *hopConn
	dirs   string    // down, up or both
	since  time.Time // when it was attached
	start  time.Time // when it begins to act: since + after
	effect any

	mu      sync.Mutex
	timers  []*time.Timer
	stopped bool
	once    atomic.Bool
}

func (a *attachment) active(now time.Time) bool { return !now.Before(a.start) }

func (a *attachment) actsOn(dir string) bool { return a.dirs == DirBoth || a.dirs == dir }

// at runs fn at t unless the attachment is stopped first. The timer it
// returns may be Reset by fn to run again (one timer per effect, however
// long the connection lives); it is nil when the attachment is stopped.
func (a *attachment) at(t time.Time, fn func()) *time.Timer {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return nil
	}
	timer := time.AfterFunc(time.Until(t), func() {
		if a.isStopped() || a.h.isDead() {
			return
		}
		fn()
	})
	a.timers = append(a.timers, timer)
	return timer
}

func (a *attachment) isStopped() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopped
}

func (a *attachment) stop() {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	a.stopped = true
	for _, t := range a.timers {
		t.Stop()
	}
	a.timers = nil
	a.mu.Unlock()
	if s, ok := a.effect.(stopper); ok {
		s.stop()
	}
}

// fire records that the fault acted (an attachment without a connection,
// as in the shapers' unit tests, records nothing).
func (a *attachment) fire(action, detail string) {
	if a.h == nil {
		return
	}
	a.h.fire(a.f, a.f.Spec.Direction, action, detail)
}

// firstTime is true the first time only: a fault that acts continuously
// (latency, drop-events, ...) records its first action, once per
// connection; hot paths test it before building the detail.
func (a *attachment) firstTime() bool { return !a.once.Load() && a.once.CompareAndSwap(false, true) }

// closeConn closes the connection (rst or fin) from a fault acting inside
// Read or Write: at once, so that nothing else closes it first, and without
// waiting for a delay line (the caller may be the line's own goroutine).
func (a *attachment) closeConn(action string) {
	a.h.closeNow(action)
}
