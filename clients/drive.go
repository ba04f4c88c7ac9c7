package clients

import (
	"context"
	"sync"
	"time"
)

// Scheduler is a source of open and close actions in time order: a Plan's
// Schedule for run, a recorded population's for replay run. Peek returns
// the next action without consuming it; Next consumes it.
type Scheduler interface {
	Peek() (Action, bool)
	Next() (Action, bool)
}

// DriveConfig is what Drive needs: when streams open and close, for how
// long, and how to make stream n.
type DriveConfig struct {
	// Schedule numbers the streams and says when each opens and closes.
	Schedule Scheduler
	// Duration bounds the run, counted from Start; actions at or after it
	// are not taken.
	Duration time.Duration
	// Start is the instant the schedule counts from; zero means when Drive
	// is called. A caller that stamps its records before Drive passes the
	// same instant, so the schedule and the records share one origin.
	Start time.Time
	// NewStream makes stream n when the schedule opens it. An error skips
	// that stream (OnError is told) and the run goes on.
	NewStream func(n int) (*Stream, error)
	// OnError, when set, is told of each stream NewStream could not make.
	OnError func(n int, err error)
}

// DriveResult says how a Drive ended.
type DriveResult struct {
	// Start is the instant the schedule was counted from.
	Start   time.Time
	Elapsed time.Duration
	// Interrupted: ctx ended before the duration.
	Interrupted bool
	// Drained: every stream ended by itself (failed for good, or made its
	// one attempt) and the schedule opens no more, so Drive returned
	// before the duration.
	Drained bool
}

// Drive is the one scheduler of client populations, for run and replay
// run alike. It opens and closes streams when the schedule says, measured
// from the start so that delays do not accumulate, until the duration is
// over, ctx ends, or nothing is left to do (Drained). A close action for a
// stream that already ended is skipped. At the end every stream still open
// is closed by the client (not an error) and Drive returns after they all
// finished writing their records.
func Drive(ctx context.Context, cfg DriveConfig) DriveResult {
	start := cfg.Start
	if start.IsZero() {
		start = time.Now()
	}
	sched := cfg.Schedule
	streamsCtx, closeAll := context.WithCancel(context.Background())
	defer closeAll()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		cancels = map[int]context.CancelFunc{}
		changed = make(chan struct{}, 1)
	)
	live := func(n int) bool {
		mu.Lock()
		defer mu.Unlock()
		return cancels[n] != nil
	}
	open := func(n int) {
		s, err := cfg.NewStream(n)
		if err != nil || s == nil {
			if err != nil && cfg.OnError != nil {
				cfg.OnError(n, err)
			}
			return
		}
		sctx, cancel := context.WithCancel(streamsCtx)
		mu.Lock()
		cancels[n] = cancel
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Run(sctx)
			mu.Lock()
			delete(cancels, n)
			mu.Unlock()
			cancel()
			select {
			case changed <- struct{}{}:
			default:
			}
		}()
	}
	shut := func(n int) {
		mu.Lock()
		cancel := cancels[n]
		delete(cancels, n)
		mu.Unlock()
		if cancel != nil {
			cancel()
		}
	}

	res := DriveResult{Start: start}
	end := time.NewTimer(time.Until(start.Add(cfg.Duration)))
	defer end.Stop()
	next := time.NewTimer(time.Hour)
	defer next.Stop()
loop:
	for {
		// A close of a stream that already ended changes nothing: take it
		// now, so that a schedule whose streams all ended is seen drained.
		for a, ok := sched.Peek(); ok && !a.Open && !live(a.Conn); a, ok = sched.Peek() {
			sched.Next()
		}
		a, more := sched.Peek()
		more = more && a.At < cfg.Duration
		var due <-chan time.Time
		if more {
			next.Reset(time.Until(start.Add(a.At)))
			due = next.C
		} else {
			mu.Lock()
			n := len(cancels)
			mu.Unlock()
			if _, planned := sched.Peek(); !planned && n == 0 {
				res.Drained = true
				break loop
			}
		}
		select {
		case <-ctx.Done():
			res.Interrupted = true
			break loop
		case <-end.C:
			break loop
		case <-changed:
		case <-due:
			elapsed := time.Since(start)
			for {
				a, ok := sched.Peek()
				if !ok || a.At > elapsed || a.At >= cfg.Duration {
					break
				}
				sched.Next()
				if a.Open {
					open(a.Conn)
				} else {
					shut(a.Conn)
				}
			}
		}
	}
	closeAll()
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}
