package clients

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// recorderFunc is a Recorder that calls a function.
type recorderFunc func(session.Record)

func (f recorderFunc) Put(r session.Record) { f(r) }

// listSchedule is a Scheduler over a fixed list of actions.
type listSchedule struct{ actions []Action }

func (l *listSchedule) Peek() (Action, bool) {
	if len(l.actions) == 0 {
		return Action{}, false
	}
	return l.actions[0], true
}

func (l *listSchedule) Next() (Action, bool) {
	a, ok := l.Peek()
	if ok {
		l.actions = l.actions[1:]
	}
	return a, ok
}

// TestDriveOneAttemptStreams: streams with NoReconnect that the server
// ends at known ages end then, with the server's ending, each once; the
// closes scheduled well after those ends are skipped; a stream closed by
// the schedule before the server ends it is closed by the client at its
// time; a stream NewStream cannot make is reported and skipped; and Drive
// returns drained as soon as the last stream ended, long before its
// duration.
func TestDriveOneAttemptStreams(t *testing.T) {
	// The server ends a stream after ?end= milliseconds, or never.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "retry: 10\ndata: hello\n\n")
		w.(http.Flusher).Flush()
		d, err := strconv.Atoi(r.URL.Query().Get("end"))
		if err != nil {
			<-r.Context().Done()
			return
		}
		select {
		case <-time.After(time.Duration(d) * time.Millisecond):
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()

	var mu sync.Mutex
	ends := map[string]string{}
	counters := &Counters{}
	opts := &Options{NoReconnect: true, Counters: counters, Recorder: recorderFunc(func(rec session.Record) {
		if c, ok := rec.(session.ConnRecord); ok && !c.End.IsZero() {
			how := c.EndClass
			if how == "" {
				how = c.ClosedBy
			}
			mu.Lock()
			ends[c.ClientID] = how
			mu.Unlock()
		}
	})}
	// Conns 0 and 1 are ended by the server at 150 and 250 ms (their
	// scheduled closes at 5 s must be skipped); conn 2 is closed by the
	// schedule at 200 ms; conn 3 cannot be made.
	sched := &listSchedule{actions: []Action{
		{At: 0, Open: true, Conn: 0},
		{At: 20 * time.Millisecond, Open: true, Conn: 1},
		{At: 40 * time.Millisecond, Open: true, Conn: 2},
		{At: 60 * time.Millisecond, Open: true, Conn: 3},
		{At: 240 * time.Millisecond, Open: false, Conn: 2},
		{At: 5 * time.Second, Open: false, Conn: 0},
		{At: 5 * time.Second, Open: false, Conn: 1},
	}}
	ending := map[int]string{0: "150", 1: "230"}
	var skipped []int
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	start := time.Now()
	res := Drive(ctx, DriveConfig{
		Schedule: sched, Duration: time.Hour,
		NewStream: func(n int) (*Stream, error) {
			if n == 3 {
				return nil, errors.New("no spec")
			}
			u, _ := url.Parse(srv.URL + "/?end=" + ending[n])
			return NewStream(ClientID(n), "", u, opts), nil
		},
		OnError: func(n int, err error) { skipped = append(skipped, n) },
	})
	if !res.Drained || res.Interrupted {
		t.Fatalf("result %+v", res)
	}
	// The last stream ended at about 270 ms; the duration is an hour and
	// the skipped closes were at 5 s.
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Drive took %v, want it to return when the last stream ended (~0.3 s)", took)
	}
	if len(skipped) != 1 || skipped[0] != 3 {
		t.Errorf("skipped %v, want [3]", skipped)
	}
	if a := counters.Attempts.Load(); a != 3 {
		t.Errorf("%d attempts, want 3 (one per stream, no reconnect)", a)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]string{"c0000": "EOF", "c0001": "EOF", "c0002": "self"}
	for id, how := range want {
		if ends[id] != how {
			t.Errorf("%s ended %q, want %q (all: %v)", id, ends[id], how, ends)
		}
	}
}
