package replay_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/replay"
)

// TestPlan: scale copies per recorded stream, spread until the next
// recorded start, with the recorded request, group and hold; credentials
// and client-set headers are not resent.
func TestPlan(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id string, start time.Duration, q string, end time.Duration) *recording.Stored {
		s := &recording.Stored{}
		s.Proxy, s.ConnID, s.Path, s.Query = "p", id, "/stream", q
		s.Group = recording.Group(q)
		s.Start = t0.Add(start)
		if end > 0 {
			s.Ended, s.End, s.EndedBy = true, session.Seconds(end), "client"
		}
		s.Header = http.Header{
			"Authorization": {recording.RedactedValue}, "Accept": {"text/event-stream"},
			"X-Tenant": {"blue"}, "Last-Event-Id": {"41"}, "Accept-Encoding": {"gzip"},
		}
		return s
	}
	rec := &recording.Recording{Streams: []*recording.Stored{
		mk("a", 0, "symbols=A,B", 2*time.Second),
		mk("b", time.Second, "symbols=C", 0),
		mk("c", 3*time.Second, "symbols=A,B", time.Second),
	}}
	specs := replay.Plan(rec, replay.PlanOptions{Scale: 4})
	if len(specs) != 12 {
		t.Fatalf("%d specs, want 12", len(specs))
	}
	type row struct {
		off    time.Duration
		source string
		hold   time.Duration
	}
	want := []row{
		{0, "p/a", 2 * time.Second}, {250 * time.Millisecond, "p/a", 2 * time.Second},
		{500 * time.Millisecond, "p/a", 2 * time.Second}, {750 * time.Millisecond, "p/a", 2 * time.Second},
		{time.Second, "p/b", 0}, {1500 * time.Millisecond, "p/b", 0},
		{2 * time.Second, "p/b", 0}, {2500 * time.Millisecond, "p/b", 0},
		// The last stream spreads over the mean gap between starts (1.5 s).
		{3 * time.Second, "p/c", time.Second}, {3375 * time.Millisecond, "p/c", time.Second},
		{3750 * time.Millisecond, "p/c", time.Second}, {4125 * time.Millisecond, "p/c", time.Second},
	}
	groups := map[string]int{}
	for i, s := range specs {
		if got := (row{s.Offset, s.Source, s.Hold}); got != want[i] {
			t.Errorf("spec %d = %+v, want %+v", i, got, want[i])
		}
		if s.Copy != i%4 {
			t.Errorf("spec %d: copy %d", i, s.Copy)
		}
		groups[s.Group]++
		if s.Header.Get("X-Tenant") != "blue" || s.Header.Get("Authorization") != "" || s.Header.Get("Accept") != "" || s.Header.Get("Accept-Encoding") != "" || s.Header.Get("Last-Event-Id") != "" {
			t.Errorf("spec %d headers: %v", i, s.Header)
		}
		if s.LastEventID != "41" {
			t.Errorf("spec %d: last event id %q", i, s.LastEventID)
		}
	}
	if groups["A,B"] != 8 || groups["C"] != 4 {
		t.Errorf("group mix %v, want A,B 8 and C 4", groups)
	}
	if specs[0].RequestURI != "/stream?symbols=A,B" {
		t.Errorf("request %q", specs[0].RequestURI)
	}
	if one := replay.Plan(rec, replay.PlanOptions{}); len(one) != 3 {
		t.Errorf("scale 0: %d specs, want 3", len(one))
	}
}
