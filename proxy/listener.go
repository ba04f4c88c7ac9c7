package proxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// The proxy's listener: every accepted socket becomes a client hop, and
// it can stop listening for a while (down:action=refuse).

// listener is the proxy's listener: every accepted socket becomes a client
// hopConn (faults of kind down act there), and it can stop listening for a
// while (down:action=refuse) without the HTTP server noticing.
type listener struct {
	p *Proxy

	mu   sync.Mutex
	addr net.Addr     // the address it listens on (rebind changes it)
	ln   net.Listener // nil while refusing or disabled
	// refusing: a down:action=refuse fault of the client hop is
	// installed; disabled: the proxy is disabled (Toxiproxy's enabled:
	// false). Either closes the listener; it listens again when neither
	// holds.
	refusing, disabled bool
	resumed            chan struct{} // closed when listening again
	closed             bool
	closedCh           chan struct{}
}

func newListener(p *Proxy, ln net.Listener) *listener {
	return &listener{p: p, addr: ln.Addr(), ln: ln, closedCh: make(chan struct{})}
}

func (l *listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr
}

func (l *listener) Accept() (net.Conn, error) {
	var backoff time.Duration // while descriptors run out
	var failed int64          // accepts failed in this episode
	for {
		l.mu.Lock()
		ln, resumed, closed := l.ln, l.resumed, l.closed
		l.mu.Unlock()
		if closed {
			return nil, net.ErrClosed
		}
		if ln == nil {
			select {
			case <-resumed:
			case <-l.closedCh:
			}
			continue
		}
		c, err := ln.Accept()
		if err != nil {
			l.mu.Lock()
			refused := l.ln != ln && !l.closed
			l.mu.Unlock()
			if refused {
				continue
			}
			if !outOfDescriptors(err) {
				return nil, err
			}
			// The pending connection stays queued and the listener stays
			// readable: retrying at once would spin a CPU.
			backoff = nextBackoff(backoff)
			failed++
			l.p.acceptErrors.Add(1)
			l.p.countError(session.HopClient, errclass.Classify(err))
			if failed == 1 {
				l.p.logf("proxy %s: accept: %v: new connections wait (backing off %s, up to %s) until descriptors are free", l.p.name, err, backoff, maxAcceptBackoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.closedCh:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		if failed > 0 {
			l.p.logf("proxy %s: accept works again after %d failed attempts", l.p.name, failed)
			backoff, failed = 0, 0
		}
		if h := l.p.accepted(c); h != nil {
			return h, nil
		}
	}
}

// Accept backoff at the descriptor limit: doubling from the first to the
// cap, as net/http's Serve does for temporary errors.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return minAcceptBackoff
	}
	return min(2*d, maxAcceptBackoff)
}

// outOfDescriptors reports an error of the file descriptor limit (the
// process's or the system's), or of kernel memory for sockets.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func (l *listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.closedCh)
	if l.ln != nil {
		return l.ln.Close()
	}
	return nil
}

// setRefusing stops or resumes listening for a refusing fault; changed
// reports a transition of that reason.
func (l *listener) setRefusing(refuse bool) (changed bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || refuse == l.refusing {
		return false, nil
	}
	l.refusing = refuse
	if err := l.reconcile(); err != nil {
		return true, fmt.Errorf("listen again on %s after down:action=refuse was removed: %w", l.addr, err)
	}
	return true, nil
}

// reconcile closes the listener while a reason holds and listens again
// (on addr) when none does. l.mu is held.
func (l *listener) reconcile() error {
	want := !l.refusing && !l.disabled
	switch {
	case !want && l.ln != nil:
		l.resumed = make(chan struct{})
		err := l.ln.Close()
		l.ln = nil
		return err
	case want && l.ln == nil:
		ln, err := l.p.listenTCP(l.addr.String())
		if err != nil {
			return err
		}
		l.ln = ln
		close(l.resumed)
	}
	return nil
}
