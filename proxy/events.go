package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// ConnEvent is one event of the control API's stream (GET /events): a hop
// connection opened ("open"), its peer ended it ("peer-close"), it closed
// ("close", with who closed it first and how), or a fault fired ("fault").
type ConnEvent struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	Proxy      string    `json:"proxy"`
	ConnID     string    `json:"conn_id"`
	Request    int       `json:"request,omitempty"`
	Hop        string    `json:"hop"`
	LocalAddr  string    `json:"local_addr,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Path       string    `json:"path,omitempty"`
	ClosedBy   string    `json:"closed_by,omitempty"`
	How        string    `json:"how,omitempty"`
	Class      string    `json:"class,omitempty"`
	BytesUp    int64     `json:"bytes_up,omitempty"`
	BytesDown  int64     `json:"bytes_down,omitempty"`
	EventsDown int64     `json:"events_down,omitempty"`
	Fault      string    `json:"fault,omitempty"`
	Kind       string    `json:"kind,omitempty"`
	Action     string    `json:"action,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

// broadcaster fans connection events out to the API's subscribers. A
// subscriber that does not keep up loses events (counted) rather than slow
// a connection down.
type broadcaster struct {
	n       atomic.Int32 // subscribers, read without the lock
	mu      sync.Mutex
	subs    map[chan ConnEvent]struct{}
	closed  bool
	dropped atomic.Int64
}

func newBroadcaster() *broadcaster { return &broadcaster{subs: map[chan ConnEvent]struct{}{}} }

// has reports whether anyone listens (events are not built otherwise).
func (b *broadcaster) has() bool { return b.n.Load() > 0 }

func (b *broadcaster) publish(ev ConnEvent) {
	if !b.has() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.subs {
		select {
		case c <- ev:
		default:
			b.dropped.Add(1)
		}
	}
}

// subscribe returns a channel of events and a function that ends the
// subscription. The channel is closed when the proxy closes.
func (b *broadcaster) subscribe() (<-chan ConnEvent, func()) {
	c := make(chan ConnEvent, 1024)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(c)
		return c, func() {}
	}
	b.subs[c] = struct{}{}
	b.n.Add(1)
	return c, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[c]; ok {
			delete(b.subs, c)
			b.n.Add(-1)
			close(c)
		}
	}
}

func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for c := range b.subs {
		delete(b.subs, c)
		close(c)
	}
	b.n.Store(0)
}
