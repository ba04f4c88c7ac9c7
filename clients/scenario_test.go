package clients

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/session"
)

// scheduleTolerance is how late a connection's recorded open or close may
// be after its planned time on a loaded 2-core machine (the schedule itself
// is exact; this is goroutine scheduling latency). Early is never allowed
// beyond clock granularity (scheduleEarly).
const (
	scheduleTolerance = 600 * time.Millisecond
	scheduleEarly     = 5 * time.Millisecond
)

// TestScenariosAgainstFeed runs each scenario with its rates scaled up
// against the embedded server and checks, from the session file, that the
// connections the plan says were opened and closed at the planned times,
// that each received events, and that nothing failed.
func TestScenariosAgainstFeed(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}, Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()

	for _, tc := range []struct {
		scenario   string
		conns      int
		ramp       Rate
		churnRate  float64 // per minute
		vmin, vmax int
		periods    int // churn/variable periods to run
		seed       uint64
		duration   time.Duration
	}{
		// flood: 20 connections at 5-10 per second (the seed's 1-5/s, faster).
		{scenario: Flood, conns: 20, ramp: Rate{5, 10}, duration: 3300 * time.Millisecond},
		{scenario: LongRunning, conns: 6, ramp: Rate{50, 50}, duration: 1500 * time.Millisecond},
		// churn: 4 base connections, one replaced every second.
		{scenario: Churn, conns: 4, ramp: Rate{100, 100}, churnRate: 60, periods: 4},
		// mixed: 3 steady + a variable set of 2-4 changing every 800 ms
		// (seed 5 moves it often).
		{scenario: Mixed, conns: 3, ramp: Rate{100, 100}, churnRate: 75, vmin: 2, vmax: 4, periods: 6, seed: 5},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			plan, err := PlanFor(tc.scenario, tc.conns, tc.ramp, tc.churnRate, tc.vmin, tc.vmax, max(tc.seed, 1))
			if err != nil {
				t.Fatal(err)
			}
			duration := tc.duration
			if tc.periods > 0 {
				// End 0.8 period after the last period (more than
				// scheduleTolerance) so that its new connections open
				// and receive events even when late.
				duration = plan.RampEnd() + time.Duration(tc.periods)*plan.Churn + plan.Churn*8/10
			}
			w, path := newRecorder(t)
			counters := &Counters{}
			opts := &Options{Recorder: w, Counters: counters, Scenario: tc.scenario}
			ctx, cancel := context.WithTimeout(context.Background(), duration+testTimeout)
			defer cancel()
			res, err := Run(ctx, RunConfig{Plan: plan, Duration: duration, Target: srv.URL, Options: opts})
			if err != nil {
				t.Fatal(err)
			}
			if res.Interrupted || res.AllFailed || res.Elapsed < duration {
				t.Fatalf("result %+v for a %v run", res, duration)
			}
			checkAgainstPlan(t, plan, duration, res.Start, w, path)
			if e := counters.Errors(); len(e) != 0 {
				t.Fatalf("errors %v", e)
			}
			if counters.Active.Load() != 0 {
				t.Fatalf("%d still active after Run returned", counters.Active.Load())
			}
		})
	}
}

// checkAgainstPlan compares the conns bucket with the plan's schedule.
func checkAgainstPlan(t *testing.T, plan Plan, duration time.Duration, start time.Time, w *session.Writer, path string) {
	t.Helper()
	type want struct {
		open, close time.Duration // close < 0: open until the end
	}
	wants := map[string]*want{}
	for _, a := range plan.Actions(duration) {
		id := ClientID(a.Conn)
		if a.Open {
			wants[id] = &want{open: a.At, close: -1}
		} else {
			wants[id].close = a.At
		}
	}
	conns, errs := readBack(t, w, path)
	if len(errs) != 0 {
		t.Fatalf("%d error records, first %+v", len(errs), errs[0])
	}
	if len(conns) != len(wants) {
		t.Fatalf("%d connection records, the plan opens %d", len(conns), len(wants))
	}
	t0 := start
	late := func(what string, got time.Time, planned time.Duration) {
		t.Helper()
		if d := got.Sub(t0) - planned; d < -scheduleEarly || d > scheduleTolerance {
			t.Errorf("%s at +%v, planned +%v (early by at most %v, late by at most %v)",
				what, got.Sub(t0), planned, scheduleEarly, scheduleTolerance)
		}
	}
	// The ramp's measured mean rate against the plan's, which lies inside
	// the configured range (checked when the ramp is long enough for
	// scheduling jitter not to dominate).
	if plan.Connections > 1 && plan.Ramp.Min > 0 && plan.RampEnd() >= time.Second {
		var first, last time.Time
		for _, c := range conns {
			switch c.ClientID {
			case ClientID(0):
				first = c.Start
			case ClientID(plan.Connections - 1):
				last = c.Start
			}
		}
		// Never faster than planned (5% for clock granularity); slower
		// only by scheduling delay.
		planned := float64(plan.Connections-1) / plan.RampEnd().Seconds()
		measured := float64(plan.Connections-1) / last.Sub(first).Seconds()
		if planned < plan.Ramp.Min || planned > plan.Ramp.Max || measured < planned*0.7 || measured > planned*1.05 {
			t.Errorf("ramp rate: planned %.2f/s, measured %.2f/s, range %v/s", planned, measured, plan.Ramp)
		} else {
			t.Logf("ramp rate: planned %.2f/s, measured %.2f/s, range %v/s", planned, measured, plan.Ramp)
		}
	}
	closedByPlan := 0
	for _, c := range conns {
		w := wants[c.ClientID]
		if w == nil || c.Attempt != 0 {
			t.Fatalf("record %s/%d is not in the plan (or a reconnect)", c.ClientID, c.Attempt)
		}
		if c.Events == 0 {
			t.Errorf("%s received no events in %v", c.ClientID, c.End.Sub(c.Start))
		}
		if c.EndClass != "" || c.ClosedBy != session.ClosedBySelf || c.End.IsZero() {
			t.Errorf("%s ended %q by %q at %v", c.ClientID, c.EndClass, c.ClosedBy, c.End)
		}
		if c.LocalAddr == "" || c.Status != 200 || c.FirstEvent.IsZero() || !strings.Contains(c.URL, "symbols="+c.Group) {
			t.Errorf("%s: incomplete record %+v", c.ClientID, c)
		}
		late(c.ClientID+" opened", c.Start, w.open)
		endAt := duration
		if w.close >= 0 {
			endAt = w.close
			closedByPlan++
		}
		late(c.ClientID+" closed", c.End, endAt)
	}
	// Groups are assigned round-robin in connection order.
	for _, c := range conns {
		n := atoi(strings.TrimPrefix(c.ClientID, "c"))
		if want := strings.Join(DefaultGroups[n%len(DefaultGroups)], ","); c.Group != want {
			t.Errorf("%s has group %s, want %s", c.ClientID, c.Group, want)
		}
	}
	t.Logf("%d connections opened, %d closed by the plan, all on schedule (at most %v late)", len(conns), closedByPlan, scheduleTolerance)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestRunEndsEarlyWhenAllFail: every connection gets a 404, which an
// EventSource does not retry; the flood plan opens no more, so the run ends
// at once instead of idling for its duration.
func TestRunEndsEarlyWhenAllFail(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	counters := &Counters{}
	plan := Plan{Connections: 3, Ramp: Rate{100, 100}}
	start := time.Now()
	res, err := Run(context.Background(), RunConfig{Plan: plan, Duration: time.Hour, Target: srv.URL + "/nothing-here", Options: &Options{Counters: counters}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.AllFailed || time.Since(start) > testTimeout {
		t.Fatalf("result %+v after %v", res, time.Since(start))
	}
	if got := counters.Errors(); got["HTTP_404"] != 3 || len(got) != 1 {
		t.Fatalf("errors %v, want HTTP_404: 3", got)
	}
}

// TestRunInterrupted: cancelling the context ends the run at once, closes
// every connection as the client, and records no error.
func TestRunInterrupted(t *testing.T) {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	counters := &Counters{}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		for deadline := time.Now().Add(testTimeout); counters.Events.Load() < 50 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}()
	res, err := Run(ctx, RunConfig{Plan: Plan{Connections: 5}, Duration: time.Hour, Target: srv.URL, Options: &Options{Counters: counters}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Elapsed > testTimeout {
		t.Fatalf("result %+v", res)
	}
	if counters.Active.Load() != 0 || counters.ErrorTotal() != 0 || counters.Streams.Load() != 5 || counters.ActiveMax.Load() != 5 {
		t.Fatalf("after interrupt: active %d, errors %v, streams %d, max %d", counters.Active.Load(), counters.Errors(),
			counters.Streams.Load(), counters.ActiveMax.Load())
	}
}
