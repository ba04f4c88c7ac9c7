package clients

import (
	"math"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		err  bool
	}{
		{"5", Rate{5, 5}, false},
		{"1-5", Rate{1, 5}, false},
		{" 0.5 - 2 ", Rate{0.5, 2}, false},
		{"0", Rate{}, true},
		{"5-1", Rate{}, true},
		{"-1", Rate{}, true},
		{"fast", Rate{}, true},
		{"1-", Rate{}, true},
	} {
		got, err := ParseRate(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestRampPacing checks the ramp of every kind of rate without a clock:
// the k-th open comes exactly one drawn gap after the previous one, every
// gap lies inside the range, the schedule is the same for the same seed and
// different for another.
func TestRampPacing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		plan   Plan
		minGap time.Duration
		maxGap time.Duration
	}{
		{"fixed 5/s", Plan{Connections: 20, Ramp: Rate{5, 5}, Seed: 1}, 200 * time.Millisecond, 200 * time.Millisecond},
		{"range 1-5/s", Plan{Connections: 50, Ramp: Rate{1, 5}, Seed: 1}, 200 * time.Millisecond, time.Second},
		{"all at once", Plan{Connections: 10, Seed: 1}, 0, 0},
		{"one", Plan{Connections: 1, Ramp: Rate{1, 5}, Seed: 7}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts := tc.plan.Actions(24 * time.Hour)
			if len(acts) != tc.plan.Connections {
				t.Fatalf("%d actions, want %d opens", len(acts), tc.plan.Connections)
			}
			for k, a := range acts {
				if !a.Open || a.Conn != k {
					t.Fatalf("action %d = %+v, want open of connection %d", k, a, k)
				}
				if k == 0 {
					if a.At != 0 {
						t.Fatalf("first open at %v, want 0", a.At)
					}
					continue
				}
				gap := a.At - acts[k-1].At
				if gap < tc.minGap || gap > tc.maxGap {
					t.Fatalf("gap before open %d is %v, outside [%v, %v]", k, gap, tc.minGap, tc.maxGap)
				}
			}
			if end := tc.plan.RampEnd(); end != acts[len(acts)-1].At {
				t.Fatalf("RampEnd %v, last open at %v", end, acts[len(acts)-1].At)
			}
			again := tc.plan.Actions(24 * time.Hour)
			for i := range acts {
				if acts[i] != again[i] {
					t.Fatalf("schedule not deterministic at %d: %+v vs %+v", i, acts[i], again[i])
				}
			}
		})
	}
	// A range really varies with the seed, and its mean rate lies inside it.
	a := Plan{Connections: 200, Ramp: Rate{1, 5}, Seed: 1}
	b := a
	b.Seed = 2
	if a.RampEnd() == b.RampEnd() {
		t.Fatal("seeds 1 and 2 give the same ramp")
	}
	mean := float64(a.Connections-1) / a.RampEnd().Seconds()
	if mean < 1 || mean > 5 || math.Abs(mean-3) > 1 {
		t.Fatalf("mean rate %.2f/s for 1-5/s", mean)
	}
}

func TestChurnPacing(t *testing.T) {
	p, err := PlanFor(Churn, 10, Rate{5, 5}, 1, 0, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	rampEnd := 9 * 200 * time.Millisecond
	if p.RampEnd() != rampEnd {
		t.Fatalf("ramp end %v, want %v", p.RampEnd(), rampEnd)
	}
	acts := p.Actions(rampEnd + 3*time.Minute + time.Second)
	// 10 opens, then at +1, +2, +3 min: close the oldest, open the next.
	if len(acts) != 10+3*2 {
		t.Fatalf("%d actions: %+v", len(acts), acts)
	}
	for j := 1; j <= 3; j++ {
		cl, op := acts[10+2*(j-1)], acts[10+2*(j-1)+1]
		at := rampEnd + time.Duration(j)*time.Minute
		if cl != (Action{At: at, Open: false, Conn: j - 1}) || op != (Action{At: at, Open: true, Conn: 9 + j}) {
			t.Fatalf("churn %d: %+v, %+v", j, cl, op)
		}
	}
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{
		{0, 1}, {200 * time.Millisecond, 2}, {rampEnd - 1, 9}, {rampEnd, 10},
		{rampEnd + time.Minute, 10}, {72 * time.Hour, 10},
	} {
		if got := p.Wanted(tc.at); got != tc.want {
			t.Errorf("Wanted(%v) = %d, want %d", tc.at, got, tc.want)
		}
	}
}

func TestMixedPacing(t *testing.T) {
	p, err := PlanFor(Mixed, 15, Rate{}, 1, 5, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	if p.RampEnd() != 0 {
		t.Fatalf("zero ramp rate should open all at once, ramp ends at %v", p.RampEnd())
	}
	seen := map[int]bool{}
	openVar := map[int]bool{}
	sizes := map[int]bool{}
	s := p.Schedule()
	var last time.Duration
	for period := 0; period < 200; {
		a, ok := s.Next()
		if !ok {
			t.Fatal("mixed schedule ended")
		}
		if a.At < last {
			t.Fatalf("actions out of order: %v after %v", a.At, last)
		}
		if a.At > last {
			// A period is complete: the variable set must be in range.
			if last > 0 || len(openVar) > 0 {
				if n := len(openVar); n < 5 || n > 10 {
					t.Fatalf("variable set of %d at %v", n, last)
				}
				sizes[len(openVar)] = true
				period++
			}
			last = a.At
		}
		if a.At%time.Minute != 0 {
			t.Fatalf("action at %v is not on a period boundary", a.At)
		}
		switch {
		case a.Conn < 15:
			if !a.Open || seen[a.Conn] {
				t.Fatalf("steady connection %d: %+v", a.Conn, a)
			}
			seen[a.Conn] = true
		case a.Open:
			if seen[a.Conn] {
				t.Fatalf("connection %d opened twice", a.Conn)
			}
			seen[a.Conn], openVar[a.Conn] = true, true
		default:
			if !openVar[a.Conn] {
				t.Fatalf("closing connection %d that is not open", a.Conn)
			}
			for c := range openVar {
				if c < a.Conn {
					t.Fatalf("closed %d before the older %d", a.Conn, c)
				}
			}
			delete(openVar, a.Conn)
		}
	}
	if len(sizes) < 4 {
		t.Fatalf("the variable set took only sizes %v in 200 periods", sizes)
	}
	if w := p.Wanted(30 * time.Second); w < 20 || w > 25 {
		t.Fatalf("Wanted(30s) = %d, want 15 steady + 5..10", w)
	}
}

func TestPlanForRejects(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		conns    int
		churn    float64
		vmin     int
		vmax     int
	}{
		{"bogus", 10, 1, 0, 0},
		{Flood, 0, 0, 0, 0},
		{Churn, 10, 0, 0, 0},
		{Mixed, 15, 0, 5, 10},
		{Mixed, 15, 1, 10, 5},
		{Mixed, 15, 1, 0, 0},
	} {
		if _, err := PlanFor(tc.scenario, tc.conns, Rate{1, 5}, tc.churn, tc.vmin, tc.vmax, 1); err == nil {
			t.Errorf("PlanFor(%+v) accepted", tc)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	half := func() float64 { return 0.5 }
	for _, tc := range []struct {
		b        Backoff
		failures int
		want     time.Duration
	}{
		{Backoff{}, 0, 3 * time.Second},
		{Backoff{}, 5, 3 * time.Second},
		{Backoff{Max: time.Minute}, 1, 3 * time.Second},
		{Backoff{Max: time.Minute}, 2, 6 * time.Second},
		{Backoff{Max: time.Minute}, 4, 24 * time.Second},
		{Backoff{Max: time.Minute}, 5, 48 * time.Second},
		{Backoff{Max: time.Minute}, 6, time.Minute},
		{Backoff{Max: time.Minute}, 50, time.Minute},
		{Backoff{Max: time.Minute, Jitter: 1}, 2, 3 * time.Second},
		{Backoff{Jitter: 0.5}, 1, 2250 * time.Millisecond},
	} {
		if got := tc.b.delay(3*time.Second, tc.failures, half); got != tc.want {
			t.Errorf("%+v after %d failures: %v, want %v", tc.b, tc.failures, got, tc.want)
		}
	}
}

func TestStreamURL(t *testing.T) {
	g := []string{"AAPL", "BRK.B"}
	for _, tc := range []struct{ target, path, want string }{
		{"http://127.0.0.1:8090", "", "http://127.0.0.1:8090/stream?symbols=AAPL,BRK.B"},
		{"http://127.0.0.1:8090/", "/sse?s={symbols}&x=1", "http://127.0.0.1:8090/sse?s=AAPL,BRK.B&x=1"},
		{"https://feed.example/quotes?g={symbols}", "", "https://feed.example/quotes?g=AAPL,BRK.B"},
		{"http://h/fixed/stream", "", "http://h/fixed/stream"},
	} {
		u, err := StreamURL(tc.target, tc.path, g)
		if err != nil || u.String() != tc.want {
			t.Errorf("StreamURL(%q, %q) = %v, %v; want %s", tc.target, tc.path, u, err, tc.want)
		}
	}
	for _, bad := range []string{"ftp://h/", "127.0.0.1:8090", "http://"} {
		if _, err := StreamURL(bad, "", g); err == nil {
			t.Errorf("StreamURL(%q) accepted", bad)
		}
	}
}
