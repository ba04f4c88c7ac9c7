// Package membudget bounds the memory a process lets its peers make it
// hold, in total: the load clients' event and line buffers, the proxy's
// delay lines and the recorder's queue share one Budget (--max-memory).
//
// Memory enters through a Holder: a stream asks Grow before it allocates
// and gives back with Shrink or Release. Past the budget the holders with
// the largest buffers are ended (their end function is called, once; the
// stream then ends with the class MEMORY_BUDGET) and the request waits,
// briefly, for them to let go; when the asker is itself the largest, Grow
// refuses with ErrOver and the asker ends. What is held never passes the
// budget. A fixed share (the session writer's queue) is taken with
// Take. The rest of the process (sockets, goroutines, small per-stream
// state) is not counted here: SetProcessLimit gives the Go runtime the
// whole budget as its soft memory limit, so the garbage collector works to
// keep the process under it.
package membudget

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
)

// ErrOver is returned by Grow when the budget is spent and the asker
// holds the most: it must end its stream (class MEMORY_BUDGET).
var ErrOver = errors.New("memory budget spent")

// OverError is ErrOver with the budget's figures; its class is
// MEMORY_BUDGET.
type OverError struct {
	Limit, Held int64 // the shared budget, and what the ended stream held
}

func (e *OverError) Error() string {
	return fmt.Sprintf("memory budget of %d bytes spent: this stream held the most (%d bytes) and was ended (--max-memory)", e.Limit, e.Held)
}

// Is makes errors.Is(err, ErrOver) true.
func (e *OverError) Is(target error) bool { return target == ErrOver }

// ErrClass is the class of the taxonomy.
func (e *OverError) ErrClass() string { return errclass.MemoryBudget }

// Budget is the memory the holders share. A nil *Budget has no limit:
// every method works and Grow never refuses.
type Budget struct {
	limit int64

	mu      sync.Mutex
	used    int64 // held by holders and taken
	freeing int64 // held by holders already ended, about to be released
	holders map[*Holder]struct{}
	freed   chan struct{} // closed (and replaced) when bytes are given back while requests wait
	waiting int           // requests waiting on freed

	ended atomic.Int64 // holders ended past the budget
	peak  atomic.Int64
}

// New returns a budget of limit bytes (nil when limit <= 0: no limit).
func New(limit int64) *Budget {
	if limit <= 0 {
		return nil
	}
	return &Budget{limit: limit, holders: map[*Holder]struct{}{}, freed: make(chan struct{})}
}

// Limit is the budget in bytes (0: none).
func (b *Budget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

// Used is what is held and taken now.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Peak is the most that was held and taken at once.
func (b *Budget) Peak() int64 {
	if b == nil {
		return 0
	}
	return b.peak.Load()
}

// Ended counts the streams ended because the budget was spent.
func (b *Budget) Ended() int64 {
	if b == nil {
		return 0
	}
	return b.ended.Load()
}

// Take takes n bytes for good, for a part that bounds itself (the session
// writer's queue); it returns what it could take, at most n and at most
// what is left.
func (b *Budget) Take(n int64) int64 {
	if b == nil {
		return n
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	n = max(0, min(n, b.limit-b.used))
	b.used += n
	b.notePeak()
	return n
}

func (b *Budget) notePeak() {
	if b.used > b.peak.Load() {
		b.peak.Store(b.used)
	}
}

// Holder is one stream's share of the budget.
type Holder struct {
	b     *Budget
	end   func()
	held  int64 // guarded by b.mu
	ended bool  // guarded by b.mu
}

// Hold returns a holder for a stream; end ends the stream when another's
// request needs its memory (called at most once, from the requester's
// goroutine, without locks held). A nil budget returns a nil *Holder,
// whose methods do nothing.
func (b *Budget) Hold(end func()) *Holder {
	if b == nil {
		return nil
	}
	return &Holder{b: b, end: end}
}

// maxWait is the longest Grow waits for ended holders to let go of what
// they hold before it gives up and ends its own holder.
const maxWait = 250 * time.Millisecond

// Grow asks for n more bytes. Past the budget, the holders that hold the
// most are ended until what the others hold leaves room for n, and Grow
// waits (at most maxWait) for the ended ones to let go, so what is held
// never passes the budget; when this holder is the one that holds the
// most, or the wait runs out, Grow returns an *OverError and the holder
// must end its stream.
func (h *Holder) Grow(n int64) error {
	if h == nil || n <= 0 {
		return nil
	}
	b := h.b
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	b.mu.Lock()
	for {
		if h.ended {
			held := h.held
			b.mu.Unlock()
			return &OverError{Limit: b.limit, Held: held}
		}
		if b.used+n <= b.limit {
			break
		}
		var toEnd []*Holder
		refused := false
		for b.used-b.freeing+n > b.limit {
			var largest *Holder
			for o := range b.holders {
				if !o.ended && o != h && (largest == nil || o.held > largest.held) {
					largest = o
				}
			}
			if largest == nil || largest.held <= h.held {
				refused = true // this holder holds the most
				break
			}
			largest.ended = true
			b.freeing += largest.held
			toEnd = append(toEnd, largest)
		}
		if refused {
			h.end0()
		}
		freed := b.freed
		if !refused {
			b.waiting++
		}
		b.mu.Unlock()
		b.ended.Add(int64(len(toEnd)))
		for _, o := range toEnd {
			if o.end != nil {
				o.end()
			}
		}
		if refused {
			return &OverError{Limit: b.limit, Held: h.Held() + n}
		}
		// Room is promised by the holders ended: wait for them to let go.
		if timer == nil {
			timer = time.NewTimer(maxWait)
		}
		select {
		case <-freed:
			b.mu.Lock()
			b.waiting--
		case <-timer.C:
			b.mu.Lock()
			b.waiting--
			if b.used+n > b.limit {
				h.end0()
				held := h.held
				b.mu.Unlock()
				return &OverError{Limit: b.limit, Held: held + n}
			}
		}
	}
	h.held += n
	b.used += n
	b.holders[h] = struct{}{}
	b.notePeak()
	b.mu.Unlock()
	return nil
}

// end0 marks the holder ended by its own request (b.mu held): what it
// holds is about to be released.
func (h *Holder) end0() {
	h.ended = true
	h.b.freeing += h.held
	h.b.ended.Add(1)
}

// Shrink gives n bytes back.
func (h *Holder) Shrink(n int64) {
	if h == nil || n <= 0 {
		return
	}
	b := h.b
	b.mu.Lock()
	n = min(n, h.held)
	h.held -= n
	b.used -= n
	if h.ended {
		b.freeing -= n
	}
	if h.held == 0 {
		delete(b.holders, h)
	}
	if b.waiting > 0 { // wake the requests waiting for room
		close(b.freed)
		b.freed = make(chan struct{})
	}
	b.mu.Unlock()
}

// Release gives back all the holder holds; the holder may Grow again
// unless it was ended (a stream that reconnects asks for a new holder).
func (h *Holder) Release() {
	if h == nil {
		return
	}
	h.b.mu.Lock()
	held := h.held
	h.b.mu.Unlock()
	h.Shrink(held)
}

// Held is what the holder holds.
func (h *Holder) Held() int64 {
	if h == nil {
		return 0
	}
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return h.held
}

// Ended reports whether the holder was ended past the budget.
func (h *Holder) Ended() bool {
	if h == nil {
		return false
	}
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return h.ended
}

// SetProcessLimit gives the Go runtime limit as its soft memory limit
// (debug.SetMemoryLimit): the collector runs harder as the process nears
// it, instead of letting the heap double past what is live.
func SetProcessLimit(limit int64) {
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
}

// DefaultFraction is the share of the machine's available memory the
// default budget takes: half of MemAvailable, or of the cgroup's limit
// when that is lower, at the start.
const DefaultFraction = 2

// Default is the budget --max-memory defaults to: half of the memory
// available to this process at start (the smaller of /proc/meminfo's
// MemAvailable and the cgroup's memory limit), and 0 (no budget) where
// neither can be read.
func Default() int64 {
	avail := memAvailable()
	if cg := cgroupLimit(); cg > 0 && (avail == 0 || cg < avail) {
		avail = cg
	}
	return avail / DefaultFraction
}

// memAvailable is MemAvailable of /proc/meminfo, in bytes (0: unknown).
func memAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			fields := strings.Fields(rest)
			if len(fields) >= 1 {
				kb, err := strconv.ParseInt(fields[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}

// cgroupLimit is the memory limit of this process's cgroup (v2
// memory.max of its own group, else v1 memory.limit_in_bytes), 0 when
// there is none.
func cgroupLimit() int64 {
	paths := []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}
	if raw, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok && rest != "/" && !strings.Contains(rest, "..") {
				paths = append([]string{"/sys/fs/cgroup" + rest + "/memory.max"}, paths...)
			}
		}
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(raw))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // v1 says "no limit" with a huge number
			return 0
		}
		return n
	}
	return 0
}
