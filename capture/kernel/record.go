package kernel

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Writer is where a Recorder puts its records: a *session.Writer. Put
// must not block (the Writer only queues).
type Writer interface {
	Put(session.Record)
	PutMeta(key string, v any)
}

// RecordOptions configure a Recorder.
type RecordOptions struct {
	// Filter chooses the events of this process: its topology addresses
	// (Endpoints: listeners, targets, upstreams), the sockets it opens
	// (Live), ports. The zero Filter keeps every reset of the host.
	Filter Filter
	// BufferSizeKB, OwnerInterval and Tracefs are the collector's
	// (Options); zero values are its defaults.
	BufferSizeKB  int
	OwnerInterval time.Duration
	Tracefs       string
	// Keep, when positive, also keeps up to Keep recorded events in
	// memory (Events): for a caller with no session file.
	Keep int
}

// Recorder is one process's kernel evidence: a Collector whose reset
// events (send_reset, receive_reset) that pass the filter go into the
// process's session file as they are read, and whose KernelInfo is the
// file's meta "kernel" (written at start, so a file whose writer was
// killed says the collector ran, and rewritten with the counters at
// Close).
//
// State changes are traced (they trigger the owner samples that name the
// process of a socket) but not stored: every connection would add several
// records, and the resets carry what attribution needs.
type Recorder struct {
	c       *Collector
	w       Writer
	written atomic.Uint64

	keep int
	mu   sync.Mutex
	kept []session.KernelEvent

	closeOnce sync.Once
	info      session.KernelInfo
	closeErr  error
}

// StartRecorder starts the collector for a process that writes w (nil:
// nothing written; see RecordOptions.Keep). The collector runs until
// Close: give a ctx that outlives the work (context.WithoutCancel), so
// the resets of the process's own shutdown are read too; ctx ending
// closes it anyway. When kernel evidence is unavailable, the error is an
// *UnavailableError (one line: what is missing) and w's meta "kernel"
// says so (KernelInfo.Disabled).
func StartRecorder(ctx context.Context, w Writer, opts RecordOptions) (*Recorder, error) {
	r := &Recorder{w: w, keep: opts.Keep}
	c, err := Start(ctx, Options{Tracefs: opts.Tracefs, BufferSizeKB: opts.BufferSizeKB, Filter: opts.Filter,
		OwnerInterval: opts.OwnerInterval, Sink: r.sink})
	if err != nil {
		if w != nil {
			w.PutMeta(session.MetaKernel, session.KernelInfo{Disabled: err.Error()})
		}
		return nil, err
	}
	r.c = c
	if w != nil {
		w.PutMeta(session.MetaKernel, c.Info())
	}
	return r, nil
}

// sink runs on the collector's reader goroutine: it queues the record.
func (r *Recorder) sink(e session.KernelEvent) {
	if e.Event == session.KernelState {
		return
	}
	r.written.Add(1)
	if r.w != nil {
		r.w.Put(e)
	}
	if r.keep > 0 {
		r.mu.Lock()
		if len(r.kept) < r.keep {
			r.kept = append(r.kept, e)
		}
		r.mu.Unlock()
	}
}

// Close stops the collector (what the kernel buffer still holds is read
// first), removes its tracefs instance and writes the KernelInfo, whose
// EventsKept counts the reset events recorded. Safe twice and from
// several goroutines; every call returns the same.
func (r *Recorder) Close() (session.KernelInfo, error) {
	r.closeOnce.Do(func() {
		r.closeErr = r.c.Close()
		info := r.c.Info()
		info.EventsKept = r.written.Load()
		r.info = info
		if r.w != nil {
			r.w.PutMeta(session.MetaKernel, info)
		}
	})
	return r.info, r.closeErr
}

// Instance is the tracefs instance's directory.
func (r *Recorder) Instance() string { return r.c.Instance() }

// Recorded counts the reset events recorded so far.
func (r *Recorder) Recorded() uint64 { return r.written.Load() }

// Stats are the collector's counters so far.
func (r *Recorder) Stats() Stats { return r.c.Stats() }

// Events are the events kept in memory (RecordOptions.Keep).
func (r *Recorder) Events() []session.KernelEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]session.KernelEvent(nil), r.kept...)
}

// Summary says in one line what a recorder collected: the reset events
// recorded, the events read on the host and how many the kernel lost. A
// loss is said as such: the buffer overflowed, and some resets may lack
// their reason.
func Summary(info session.KernelInfo) string {
	if info.Disabled != "" {
		return "kernel evidence: off (" + info.Disabled + ")"
	}
	s := fmt.Sprintf("kernel evidence: %d reset %s recorded (%d events traced on this host)", info.EventsKept, plural(info.EventsKept, "event"), info.EventsRead)
	if info.EventsLost == 0 {
		return s + ", none lost"
	}
	return s + fmt.Sprintf("; the trace buffer overflowed: %d %s lost (counted for the whole host): some resets may lack their kernel reason", info.EventsLost, plural(info.EventsLost, "event"))
}

func plural(n uint64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
