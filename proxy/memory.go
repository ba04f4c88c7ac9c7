package proxy

import (
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/membudget"
)

// The proxy's share of the process's memory budget (Config.Budget,
// --max-memory) is what its delay lines hold: the pieces a shaping fault
// (latency, bandwidth, slicer) keeps back, up to lineDepth pieces a side,
// which a fast peer fills. A hop asks before a line takes a piece and
// gives back as the piece passes; past the budget the hops holding the
// most are ended (closed, class MEMORY_BUDGET), and a hop refused its own
// request fails the write or read that asked. Everything else the proxy
// holds per connection is a few small fixed buffers, and recorded streams
// are the session writer's queue (its own share of the budget).

// memGrow asks the budget for n more bytes for this hop.
func (h *hopConn) memGrow(n int64) error {
	if h.p.budget == nil {
		return nil
	}
	h.memOnce.Do(func() { h.mem = h.p.budget.Hold(h.endOverBudget) })
	if err := h.mem.Grow(n); err != nil {
		h.endOverBudget() // this hop holds the most: it ends, as it would for another
		return err
	}
	return nil
}

// memShrink gives n bytes back.
func (h *hopConn) memShrink(n int64) {
	if h.p.budget != nil {
		h.memOnce.Do(func() {})
		h.mem.Shrink(n)
	}
}

// memRelease gives back all the hop holds (its close).
func (h *hopConn) memRelease() {
	if h.p.budget != nil {
		h.memOnce.Do(func() {})
		h.mem.Release()
	}
}

// endOverBudget ends the hop when its delay lines hold the most and the
// budget is spent: the pieces they hold are dropped, not delivered (a
// close would otherwise wait for them to pass), and the socket closes.
func (h *hopConn) endOverBudget() {
	h.setClass(errclass.MemoryBudget)
	if wl := h.wline.Load(); wl != nil {
		wl.setErr(errOverBudget) // the line passes its pieces without writing or waiting
	}
	h.dropOnce.Do(func() { close(h.dropped()) })
	go h.closeNow(ActionFIN) // not on the asker's goroutine: a close may wait
}

// dropped is closed once the hop is ended past the budget.
func (h *hopConn) dropped() chan struct{} {
	h.dropMu.Lock()
	defer h.dropMu.Unlock()
	if h.dropCh == nil {
		h.dropCh = make(chan struct{})
	}
	return h.dropCh
}

// errOverBudget is what a hop ended past the memory budget returns.
var errOverBudget = &membudget.OverError{}
