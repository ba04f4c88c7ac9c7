//go:build linux

package capture

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/capture/internal/looptest"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// lab is one live scenario: a session file with its writer, a capture on
// loopback writing a pcap file, and helpers for the records the rest of
// ssestress would write.
type lab struct {
	t       *testing.T
	dir     string
	path    string // session file
	pcap    string
	w       *session.Writer
	cap     *Capture
	stats   Stats
	stopped bool
	packets chan packet // every captured packet, when watched
	watch   atomic.Bool
}

func newLab(t *testing.T) *lab {
	t.Helper()
	looptest.NeedRoot(t)
	dir := t.TempDir()
	l := &lab{t: t, dir: dir, path: filepath.Join(dir, "run.db"), pcap: filepath.Join(dir, "trace.pcap"),
		packets: make(chan packet, 4096)}
	w, err := session.Create(l.path, session.Options{FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l.w = w
	t.Cleanup(func() {
		if !l.stopped {
			if l.cap != nil {
				l.cap.Stop()
			}
			l.w.Close()
		}
	})
	return l
}

// start starts the capture on loopback for the topology's ports.
func (l *lab) start(ports ...int) {
	l.t.Helper()
	cfg := Config{Iface: "lo", Ports: ports, Out: l.pcap, Session: l.w}
	cfg.observe = func(p packet) {
		if l.watch.Load() {
			select {
			case l.packets <- p:
			default:
			}
		}
	}
	c, err := Start(context.Background(), cfg)
	if err != nil {
		l.t.Fatalf("start capture: %v", err)
	}
	l.cap = c
}

// topology records an endpoint.
func (l *lab) topology(role, name, side, addr string) {
	l.w.Put(session.Endpoint{Role: role, Name: name, Hop: side, Addr: addr})
}

// finish stops the capture, closes the session file and attributes it
// with the attribution engine, as report does.
func (l *lab) finish() *attribution.Result {
	l.t.Helper()
	st, err := l.cap.Stop()
	if err != nil {
		l.t.Fatalf("stop capture: %v", err)
	}
	l.stats = st
	if err := l.w.Close(); err != nil {
		l.t.Fatal(err)
	}
	l.stopped = true
	return attributeFile(l.t, l.path, nil)
}

// attributeFile reads a session file (and the flows of pcap files, as
// capture analyze does) into the attribution engine.
func attributeFile(t *testing.T, path string, pcaps map[string][]session.Flow) *attribution.Result {
	t.Helper()
	r, err := session.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	in := &attribution.Input{}
	_, err = in.ReadFile(r, true)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if pcaps != nil {
		in.Captures, in.Flows = nil, nil
		for id, flows := range pcaps {
			in.AddCapture(session.CaptureInfo{ID: id}, flows)
		}
	}
	res := attribution.Analyze(in, attribution.Options{})
	for _, s := range res.Segments {
		t.Logf("segment %s → %s on %s reason=%s kind=%s conf=%s evidence=%q chain=%q",
			s.Sender.Words(), s.Receiver.Words(), s.Where(), s.Reason, s.Kind, s.Confidence, s.Evidence, s.Chain)
	}
	t.Logf("verdict: %s", res.Verdict.Statement)
	return res
}

// relay plays the role of an ssestress proxy in the topology: it accepts
// clients, dials the upstream, copies both ways, and writes HopConn and
// FaultEvent records as the proxy does. On an upstream error it resets the
// client hop (--on-upstream-error reset).
type relay struct {
	name     string
	ln       *net.TCPListener
	upstream string
	w        *session.Writer
	n        atomic.Int64
	mu       sync.Mutex
	pairs    map[string]*relayPair
	pairCh   chan *relayPair
}

type relayPair struct {
	r                *relay
	id               string
	client, up       *net.TCPConn
	clientHop, upHop session.HopConn
	mu               sync.Mutex
	ended            bool
	done             chan struct{}
}

func newRelay(t *testing.T, w *session.Writer, name, upstream string) *relay {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{name: name, ln: ln, upstream: upstream, w: w, pairs: map[string]*relayPair{}, pairCh: make(chan *relayPair, 8)}
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }
func (r *relay) port() int    { return r.ln.Addr().(*net.TCPAddr).Port }

func (r *relay) serve(client *net.TCPConn) {
	id := fmt.Sprintf("%s-%d", r.name, r.n.Add(1))
	now := time.Now()
	p := &relayPair{r: r, id: id, client: client, done: make(chan struct{})}
	p.clientHop = session.HopConn{Proxy: r.name, ConnID: id, Hop: session.HopClient,
		LocalAddr: client.LocalAddr().String(), RemoteAddr: client.RemoteAddr().String(), Opened: now}
	r.w.Put(p.clientHop)
	up, err := net.DialTimeout("tcp4", r.upstream, looptest.Deadline)
	if err != nil {
		client.Close()
		return
	}
	p.up = up.(*net.TCPConn)
	p.upHop = session.HopConn{Proxy: r.name, ConnID: id, Hop: session.HopUpstream,
		LocalAddr: up.LocalAddr().String(), RemoteAddr: up.RemoteAddr().String(), Opened: time.Now()}
	r.w.Put(p.upHop)
	go func() {
		// client → upstream
		io.Copy(p.up, p.client)
	}()
	r.pairCh <- p
	go func() {
		defer close(p.done)
		_, err := io.Copy(p.client, p.up)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.ended {
			return
		}
		p.ended = true
		now := time.Now()
		if errclass.Classify(err) == errclass.ECONNRESET {
			// The server reset the upstream hop: reset the client hop.
			p.upHop.Closed, p.upHop.ClosedBy, p.upHop.Ending, p.upHop.Class = now, session.ClosedByPeer, session.EndingRST, errclass.ECONNRESET
			p.client.SetLinger(0)
			p.client.Close()
			p.clientHop.Closed, p.clientHop.ClosedBy, p.clientHop.Ending = time.Now(), session.ClosedBySelf, session.EndingRST
			p.clientHop.OnUpstreamError = "reset"
		} else {
			p.upHop.Closed, p.upHop.ClosedBy, p.upHop.Ending = now, session.ClosedByPeer, session.EndingFIN
			p.client.Close()
			p.clientHop.Closed, p.clientHop.ClosedBy, p.clientHop.Ending = time.Now(), session.ClosedBySelf, session.EndingFIN
		}
		p.up.Close()
		r.w.Put(p.upHop)
		r.w.Put(p.clientHop)
	}()
}

func (r *relay) next(t *testing.T) *relayPair {
	t.Helper()
	select {
	case p := <-r.pairCh:
		return p
	case <-time.After(looptest.Deadline):
		t.Fatal("no connection reached the relay")
		return nil
	}
}

// injectReset fires a reset fault on one hop, as the proxy's fault engine
// does: the fault event first, then SO_LINGER 0 and close on that hop's
// socket, then a clean close of the other hop.
func (p *relayPair) injectReset(hop string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ended = true
	now := time.Now()
	target, other := p.client, p.up
	h, o := &p.clientHop, &p.upHop
	if hop == session.HopUpstream {
		target, other = p.up, p.client
		h, o = &p.upHop, &p.clientHop
	}
	fe := session.FaultEvent{Time: now, Proxy: p.r.name, ConnID: p.id, Hop: hop, FaultName: "reset", FaultKind: "reset", Action: "rst", Ending: session.EndingRST,
		LocalAddr: h.LocalAddr, RemoteAddr: h.RemoteAddr}
	p.r.w.Put(fe)
	h.Faults = append(h.Faults, session.FaultFiring{FaultName: "reset", FaultKind: "reset", Action: "rst", Ending: session.EndingRST, Time: now})
	target.SetLinger(0)
	target.Close()
	h.Closed, h.ClosedBy, h.Ending = time.Now(), session.ClosedBySelf, session.EndingRST
	other.Close()
	o.Closed, o.ClosedBy, o.Ending = time.Now(), session.ClosedBySelf, session.EndingFIN
	p.r.w.Put(*h)
	p.r.w.Put(*o)
}

// only returns the segments matching pred.
func only(ss []attribution.Segment, pred func(attribution.Segment) bool) []attribution.Segment {
	var out []attribution.Segment
	for _, s := range ss {
		if pred(s) {
			out = append(out, s)
		}
	}
	return out
}

// explanationOf is the explanation of a client's error.
func explanationOf(t *testing.T, res *attribution.Result, clientID string) *attribution.Explanation {
	t.Helper()
	for _, x := range res.Explanations {
		if x.Incident.ClientID == clientID {
			return x
		}
	}
	t.Fatalf("no explanation of %s's error", clientID)
	return nil
}
