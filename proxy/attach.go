package proxy

import (
	"math/rand/v2"
	"time"
)

// connFaults is the immutable snapshot of the effects attached to a hop
// connection, sorted by ability and side, that Read and Write consult with
// one atomic load. It is rebuilt whenever a fault attaches or detaches.
type connFaults struct {
	read, write   side
	closeDelayers []*attachment
	units         []*attachment // effects that are unitFault or unitObserver
	changed       chan struct{} // closed when this snapshot is replaced
}

// side is what acts on the data of one side (Read or Write) of a socket.
type side struct {
	shapers  []shaper
	limiters []limiter
	blockers []blocker
	guards   []guard
}

// attachFaults attaches the leaf faults of hop h that apply to a request
// path (path "" = only faults without match), each decided once per
// connection: its toxicity is drawn the first time it applies.
func (p *Proxy) attachFaults(h *hopConn, path string, now time.Time) {
	for _, f := range p.faultList() {
		for _, leaf := range f.leaves() {
			if leaf.Spec.Hop != h.hop || leaf.b == nil {
				continue
			}
			if leaf.Spec.Match != "" && (path == "" || !leaf.Spec.matches(path)) {
				continue
			}
			h.attach(leaf, now)
		}
	}
}

// attach decides and, when drawn, attaches one leaf fault.
func (h *hopConn) attach(f *Fault, now time.Time) {
	h.mu.Lock()
	if h.finalized || h.decided[f] {
		h.mu.Unlock()
		return
	}
	if h.decided == nil {
		h.decided = map[*Fault]bool{}
	}
	h.decided[f] = true
	h.mu.Unlock()
	if f.Spec.Toxicity < 1 && rand.Float64() >= f.Spec.Toxicity {
		return
	}
	dirs := f.Spec.Direction
	if dirs == "" {
		dirs = DirBoth
	}
	a := &attachment{f: f, h: h, dirs: dirs, since: now, start: now.Add(f.after)}
	eff := f.b.attach(a)
	if eff == nil {
		a.stop()
		return
	}
	a.effect = eff
	h.mu.Lock()
	if h.finalized {
		h.mu.Unlock()
		a.stop()
		return
	}
	h.attached = append(h.attached, a)
	h.rebuild()
	h.mu.Unlock()
}

// detach removes the attachments of the given leaf faults; what they hold
// is released (a stall ends, delay lines stop waiting).
func (h *hopConn) detach(leaves []*Fault) {
	var stopped []*attachment
	h.mu.Lock()
	kept := h.attached[:0]
	for _, a := range h.attached {
		gone := false
		for _, f := range leaves {
			if a.f == f {
				gone = true
				break
			}
		}
		if gone {
			stopped = append(stopped, a)
		} else {
			kept = append(kept, a)
		}
	}
	h.attached = kept
	for _, f := range leaves {
		delete(h.decided, f)
	}
	h.rebuild()
	h.mu.Unlock()
	for _, a := range stopped {
		a.stop()
	}
}

// detachAll stops every attachment (the connection is closed).
func (h *hopConn) detachAll() {
	h.mu.Lock()
	all := h.attached
	h.attached = nil
	h.rebuild()
	h.mu.Unlock()
	for _, a := range all {
		a.stop()
	}
}

// rebuild publishes a new snapshot of h.attached; h.mu is held.
func (h *hopConn) rebuild() {
	old := h.faults.Load()
	var f *connFaults
	if len(h.attached) > 0 {
		f = &connFaults{changed: make(chan struct{})}
		for _, a := range h.attached {
			for _, sd := range []struct {
				s   *side
				dir string
			}{{&f.read, h.readDir}, {&f.write, h.writeDir}} {
				if !a.actsOn(sd.dir) {
					continue
				}
				if s, ok := a.effect.(shaper); ok {
					sd.s.shapers = append(sd.s.shapers, s)
				}
				if l, ok := a.effect.(limiter); ok {
					sd.s.limiters = append(sd.s.limiters, l)
				}
				if b, ok := a.effect.(blocker); ok {
					sd.s.blockers = append(sd.s.blockers, b)
				}
				if g, ok := a.effect.(guard); ok {
					sd.s.guards = append(sd.s.guards, g)
				}
			}
			if _, ok := a.effect.(closeDelayer); ok {
				f.closeDelayers = append(f.closeDelayers, a)
			}
			_, uf := a.effect.(unitFault)
			_, uo := a.effect.(unitObserver)
			if uf || uo {
				f.units = append(f.units, a)
			}
		}
	}
	h.faults.Store(f)
	if old != nil {
		close(old.changed)
	} else {
		h.signalChange()
	}
}

// signalChange wakes waiters when the snapshot goes from none to some.
func (h *hopConn) signalChange() {
	h.lineMu.Lock()
	if h.noneChanged != nil {
		close(h.noneChanged)
		h.noneChanged = nil
	}
	h.lineMu.Unlock()
}

// changes returns a channel closed at the next change of the snapshot.
func (h *hopConn) changes() <-chan struct{} {
	if f := h.faults.Load(); f != nil {
		return f.changed
	}
	h.lineMu.Lock()
	defer h.lineMu.Unlock()
	if f := h.faults.Load(); f != nil {
		return f.changed
	}
	if h.noneChanged == nil {
		h.noneChanged = make(chan struct{})
	}
	return h.noneChanged
}

// applied names the faults attached to h.
func (h *hopConn) applied() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.attached))
	for _, a := range h.attached {
		names = append(names, a.f.Spec.Name)
	}
	return names
}

// closeDelay is the slow-close delay in force now (the longest).
func (f *connFaults) closeDelay(now time.Time) (time.Duration, []*attachment) {
	var d time.Duration
	var acting []*attachment
	for _, a := range f.closeDelayers {
		if cd := a.effect.(closeDelayer).closeDelay(now); cd > 0 {
			d = max(d, cd)
			acting = append(acting, a)
		}
	}
	return d, acting
}

// shaping reports whether a side of h has shapers now.
func (h *hopConn) shaping(dir string) bool {
	f := h.faults.Load()
	if f == nil {
		return false
	}
	if dir == h.readDir {
		return len(f.read.shapers) > 0
	}
	return len(f.write.shapers) > 0
}

// shape runs the shapers of dir's side over pieces that arrived at now.
func (h *hopConn) shape(dir string, now time.Time, ps []piece) []piece {
	f := h.faults.Load()
	if f == nil {
		return ps
	}
	s := &f.write
	if dir == h.readDir {
		s = &f.read
	}
	for _, sh := range s.shapers {
		ps = sh.shape(dir, now, ps)
	}
	return ps
}
