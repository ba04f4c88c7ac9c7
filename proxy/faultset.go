package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// ErrNoFault is returned for a fault name the proxy does not have.
var ErrNoFault = errors.New("no such fault")

// ErrFaultExists is returned when adding a fault whose name is taken.
var ErrFaultExists = errors.New("a fault with this name exists")

// draw decides a toxicity: true with probability t.
func draw(t float64) bool { return t >= 1 || (t > 0 && rand.Float64() < t) }

func (p *Proxy) faultList() []*Fault {
	p.fmu.RLock()
	defer p.fmu.RUnlock()
	return p.faults
}

// Faults lists the installed faults in order.
func (p *Proxy) Faults() []FaultSpec {
	list := p.faultList()
	out := make([]FaultSpec, len(list))
	for i, f := range list {
		out[i] = f.Spec
	}
	return out
}

// AddFault installs a fault; it applies to new connections and to the
// live connections it matches at once.
func (p *Proxy) AddFault(spec FaultSpec) error {
	f, err := newFault(spec, p.scale)
	if err != nil {
		return err
	}
	p.fmu.Lock()
	for _, g := range p.faults {
		if g.Spec.Name == spec.Name {
			p.fmu.Unlock()
			return fmt.Errorf("%w: %q", ErrFaultExists, spec.Name)
		}
	}
	p.faults = append(append([]*Fault(nil), p.faults...), f)
	p.fmu.Unlock()
	p.applyToLive()
	p.updateRefuse()
	p.logf("proxy %s: fault added: %s", p.name, spec.Spec)
	return nil
}

// UpdateFault replaces the fault named name by spec (which takes that
// name): live connections lose the old one and draw the new one.
func (p *Proxy) UpdateFault(name string, spec FaultSpec) error {
	spec.Name = name
	spec.Spec = spec.format(spec.Name != spec.format(false))
	f, err := newFault(spec, p.scale)
	if err != nil {
		return err
	}
	old, err := p.swapFault(name, f)
	if err != nil {
		return err
	}
	p.detachFromLive(old)
	p.applyToLive()
	p.updateRefuse()
	p.logf("proxy %s: fault updated: %s", p.name, spec.Spec)
	return nil
}

// RemoveFault uninstalls a fault; what it holds on live connections is
// released (held data passes, a stall ends).
func (p *Proxy) RemoveFault(name string) error {
	old, err := p.swapFault(name, nil)
	if err != nil {
		return err
	}
	p.detachFromLive(old)
	p.updateRefuse()
	p.logf("proxy %s: fault removed: %s", p.name, name)
	return nil
}

// swapFault replaces (or with nil removes) the fault named name.
func (p *Proxy) swapFault(name string, with *Fault) (*Fault, error) {
	p.fmu.Lock()
	defer p.fmu.Unlock()
	for i, g := range p.faults {
		if g.Spec.Name != name {
			continue
		}
		list := append([]*Fault(nil), p.faults[:i]...)
		if with != nil {
			list = append(list, with)
		}
		p.faults = append(list, p.faults[i+1:]...)
		return g, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNoFault, name)
}

func (p *Proxy) applyToLive() {
	now := time.Now()
	for _, h := range p.liveConns() {
		p.attachFaults(h, h.currentPath(), now)
	}
}

func (p *Proxy) detachFromLive(f *Fault) {
	for _, h := range p.liveConns() {
		h.detach(f.leaves())
	}
}

// refusing is the down:action=refuse fault of the client hop, if any.
func (p *Proxy) refusing() *Fault {
	for _, f := range p.faultList() {
		for _, leaf := range f.leaves() {
			if d, ok := leaf.b.(downer); ok && leaf.Spec.Hop == session.HopClient && d.downAction() == ActionRefuse {
				return leaf
			}
		}
	}
	return nil
}

// updateRefuse closes the listener while a refusing fault is installed and
// opens it again on the same address when it is removed.
func (p *Proxy) updateRefuse() {
	f := p.refusing()
	changed, err := p.ln.setRefusing(f != nil)
	if err != nil {
		p.logf("proxy %s: %v", p.name, err)
	}
	if changed && f != nil {
		p.faultFired(session.FaultEvent{
			Time: time.Now(), Proxy: p.name, Hop: session.HopClient, FaultName: f.Spec.Name, FaultKind: f.Spec.Kind,
			Action: ActionRefuse, Ending: session.EndingRefused, Detail: "listener " + p.Addr() + " closed: new connections are refused",
			LocalAddr: p.Addr(),
		})
	}
}
