package proxy

import (
	"net"
	"strconv"
	"time"

	"github.com/ssestress/ssestress/internal/redact"
	"github.com/ssestress/ssestress/internal/session"
)

// The live hop connections: registered at accept or dial (their open
// record), forgotten at close, and what faults of kind down and
// http-status decide as a connection or a request arrives.

func (p *Proxy) closeLive() {
	for _, h := range p.liveConns() {
		h.closeWith(ActionFIN, "proxy")
	}
}

// drainLimit bounds how long a close waits for a delay line to empty.
func (p *Proxy) drainLimit() time.Duration {
	if p.closing.Load() {
		return 100 * time.Millisecond
	}
	return 30 * time.Second
}

// register makes a new hop connection live and writes its open record.
func (p *Proxy) register(h *hopConn) {
	p.lmu.Lock()
	p.live[h] = struct{}{}
	p.lmu.Unlock()
	p.counts.opened1(h.hop)
	if h.hop == session.HopClient {
		n := p.activeConns.Add(1)
		for m := p.activeMax.Load(); n > m && !p.activeMax.CompareAndSwap(m, n); m = p.activeMax.Load() {
		}
	}
	h.put()
	if p.events.has() {
		p.events.publish(h.event("open"))
	}
}

func (p *Proxy) forget(h *hopConn) {
	p.lmu.Lock()
	delete(p.live, h)
	p.lmu.Unlock()
	if h.hop == session.HopClient {
		p.activeConns.Add(-1)
	}
}

func (p *Proxy) liveConns() []*hopConn {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	out := make([]*hopConn, 0, len(p.live))
	for h := range p.live {
		out = append(out, h)
	}
	return out
}

// faultFired records a fault event and counts it.
func (p *Proxy) faultFired(ev session.FaultEvent) {
	p.faultsFired.Add(1)
	ev.Detail = redact.Text(ev.Detail)
	p.counts.fired1(ev)
	if p.session != nil {
		p.session.Put(ev)
	}
	if p.events.has() {
		p.events.publish(ConnEvent{
			Time: ev.Time, Type: "fault", Proxy: ev.Proxy, ConnID: ev.ConnID, Request: ev.Request, Hop: ev.Hop,
			LocalAddr: ev.LocalAddr, RemoteAddr: ev.RemoteAddr,
			Fault: ev.FaultName, Kind: ev.FaultKind, Action: ev.Action, Detail: ev.Detail,
		})
	}
	p.logf("%s %s: fault %s: %s %s", ev.ConnID, ev.Hop, ev.FaultName, ev.Action, ev.Detail)
}

// accepted turns a new client socket into a client hopConn and the
// clientWire the HTTP server uses, unless a down fault closes it at once
// (nil).
func (p *Proxy) accepted(c net.Conn) *clientWire {
	n := p.nextConn.Add(1)
	h := newHopConn(p, c, session.HopClient, p.name+"-"+strconv.FormatInt(n, 10), 0)
	h.wire = newClientWire(p, h)
	p.register(h)
	if p.closing.Load() {
		h.closeWith(ActionFIN, "proxy")
		return nil
	}
	if f, action := p.downFor(session.HopClient, ""); f != nil {
		h.fire(f, "", action, "connection closed on accept ("+action+")")
		h.closeWith(action, "proxy")
		return nil
	}
	p.attachFaults(h, "", time.Now())
	return h.wire
}

// downFor draws the down faults of a hop that apply to a new connection.
// Listener-wide refusal is not drawn here (see updateRefuse).
func (p *Proxy) downFor(hop, path string) (*Fault, string) {
	for _, f := range p.faultList() {
		for _, leaf := range f.leaves() {
			d, ok := leaf.b.(downer)
			if !ok || leaf.Spec.Hop != hop || !leaf.Spec.matches(path) || (leaf.Spec.Match != "" && path == "") {
				continue
			}
			action := d.downAction()
			if hop == session.HopClient && action == ActionRefuse {
				continue
			}
			if draw(leaf.Spec.Toxicity) {
				return leaf, action
			}
		}
	}
	return nil, ""
}

// responderFor draws the http-status faults that apply to a request.
func (p *Proxy) responderFor(path string) (*Fault, int, time.Duration) {
	for _, f := range p.faultList() {
		for _, leaf := range f.leaves() {
			r, ok := leaf.b.(responder)
			if !ok || !leaf.Spec.matches(path) {
				continue
			}
			if draw(leaf.Spec.Toxicity) {
				code, timeout := r.respond()
				return leaf, code, timeout
			}
		}
	}
	return nil, 0, 0
}
