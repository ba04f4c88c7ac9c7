package replay_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/replay"
)

// TestPopulationEndings: the recorded pattern keeps each stream's ending.
// The client closes a stream it ended at its recorded age; a stream the
// server side ended (whatever the proxy's policy made of it) is closed
// only at its bound; one still open is never closed by the schedule; the
// stream factory makes one-attempt streams that name their recorded stream
// and the run.
func TestPopulationEndings(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id string, start time.Duration, endedBy, ending, class, action string, end time.Duration) *recording.Stored {
		s := &recording.Stored{UpstreamErrorAction: action}
		s.Proxy, s.ConnID, s.Path, s.Query, s.Status = "p", id, "/stream", "symbols="+id, 200
		s.Start = t0.Add(start)
		if endedBy != "" {
			s.Ended, s.End, s.EndedBy, s.Ending, s.Class = true, session.Seconds(end), endedBy, ending, class
		}
		return s
	}
	rec := &recording.Recording{Streams: []*recording.Stored{
		mk("client", 0, session.EndedByClient, session.EndingFIN, "", "", 2*time.Second),
		mk("rst", 10*time.Millisecond, session.EndedByUpstream, session.EndingRST, "ECONNRESET", "", time.Second),
		mk("abort", 20*time.Millisecond, session.EndedByUpstream, session.EndingRST, "ECONNRESET", "abort", time.Second),
		mk("eof", 30*time.Millisecond, session.EndedByProxy, session.EndingRST, "UNEXPECTED_EOF", "eof", 8*time.Second),
		mk("clean", 40*time.Millisecond, session.EndedByUpstream, session.EndingFIN, "EOF", "", 3*time.Second),
		mk("open", 50*time.Millisecond, "", "", "", "", 0),
	}}
	pop, err := replay.NewPopulation(rec, replay.PopulationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		kind  string
		close time.Duration // since the open; 0: never
	}{
		"p/client": {session.EndKindClient, 2 * time.Second},
		"p/rst":    {session.EndKindReset, 6 * time.Second}, // 1 s + 5 s
		"p/abort":  {session.EndKindCut, 6 * time.Second},
		"p/eof":    {session.EndKindClean, 16 * time.Second}, // 8 s + 8 s
		"p/clean":  {session.EndKindClean, 8 * time.Second},
		"p/open":   {session.EndKindOpen, 0},
	}
	closes := map[int]time.Duration{}
	opens := map[int]time.Duration{}
	sched := pop.Schedule()
	for a, ok := sched.Next(); ok; a, ok = sched.Next() {
		if a.Open {
			opens[a.Conn] = a.At
		} else {
			closes[a.Conn] = a.At - opens[a.Conn]
		}
	}
	for n, spec := range pop.Specs {
		w := want[spec.Source]
		if spec.Ending != w.kind || closes[n] != w.close {
			t.Errorf("%s: ending %s closed after %v, want %s after %v", spec.Source, spec.Ending, closes[n], w.kind, w.close)
		}
	}
	// The run lasts to the last bound (the eof stream's, at 30 ms + 16 s).
	if want := 30*time.Millisecond + 16*time.Second + 100*time.Millisecond; pop.Duration != want {
		t.Errorf("duration %v, want %v", pop.Duration, want)
	}
	var got []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: x\n\n")
	}))
	defer srv.Close()
	target, _ := url.Parse(srv.URL + "/base")
	s, err := pop.Streams(target, clients.Options{}, http.Header{"X-Extra": {"1"}}, "run-1")(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	s.Run(ctx) // one attempt: no reconnect after the server's end
	if len(got) != 1 || time.Since(start) > 2*time.Second {
		t.Fatalf("%d requests in %v, want one attempt", len(got), time.Since(start))
	}
	r := got[0]
	if r.URL.String() != "/base/stream?symbols=rst" || r.Header.Get(replay.HeaderStream) != "p/rst" ||
		r.Header.Get(replay.HeaderRun) != "run-1" || r.Header.Get("X-Extra") != "1" {
		t.Errorf("request %s with %v", r.URL, r.Header)
	}

	mixed, err := replay.NewPopulation(rec, replay.PopulationOptions{Scenario: clients.Churn, Scale: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if mixed.Recorded() || mixed.Scenario != clients.Churn || mixed.Spec(7).Source != pop.Specs[1].Source {
		t.Errorf("scenario population: recorded %v, scenario %s, spec 7 %s", mixed.Recorded(), mixed.Scenario, mixed.Spec(7).Source)
	}
	if _, err := replay.NewPopulation(rec, replay.PopulationOptions{Scenario: "nope"}); err == nil {
		t.Error("unknown scenario accepted")
	}
}
