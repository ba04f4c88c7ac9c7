package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/replay"
)

// endingServer streams an event every 100 ms and ends each stream as its
// query says (end=rst|fin|clean at=DURATION) right after the event due at
// that age: with a RST (SetLinger 0), with a FIN in the middle of an event
// (a chunk cut short), or cleanly (the chunked body's end). Without end=
// it streams until the client leaves.
func endingServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		at, _ := time.ParseDuration(q.Get("at"))
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		start := time.Now()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			fmt.Fprintf(w, "id: %d\ndata: quote %d\n\n", i, i)
			rc.Flush()
			if q.Get("end") != "" && time.Since(start) >= at-30*time.Millisecond {
				break
			}
		}
		switch q.Get("end") {
		case "rst":
			conn, _, err := rc.Hijack()
			if err != nil {
				panic(err)
			}
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		case "fin":
			conn, _, err := rc.Hijack()
			if err != nil {
				panic(err)
			}
			io.WriteString(conn, "40\r\ndata: half an ev") // 64 bytes announced, 19 sent
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// recordedStream is one stream the test records: how the server (or the
// client) ends it, and when.
type recordedStream struct {
	end string        // rst, fin, clean; "" for the client
	at  time.Duration // age at the end
}

// recordingPlan is what each recording proxy records: the server's RST and
// its FIN mid-event at two ages, clean ends, and streams the client ends.
var recordingPlan = []recordedStream{
	{"rst", 600 * time.Millisecond}, {"rst", 600 * time.Millisecond}, {"rst", 600 * time.Millisecond}, {"rst", 600 * time.Millisecond},
	{"fin", 900 * time.Millisecond}, {"fin", 900 * time.Millisecond}, {"fin", 900 * time.Millisecond}, {"fin", 900 * time.Millisecond},
	{"clean", 1200 * time.Millisecond}, {"clean", 1200 * time.Millisecond}, {"clean", 1200 * time.Millisecond},
	{"", 750 * time.Millisecond}, {"", 750 * time.Millisecond}, {"", 750 * time.Millisecond},
}

// TestReplayReproducesEndings is issue 18's first check end to end, every
// hop a process of its own: load clients record streams through two
// `ssestress proxy --record` processes in front of a server that ends
// them with a RST, with a FIN in the middle of an event and cleanly, at
// known ages, while the clients end others; the requests of the streams
// the server resets carry a Last-Event-ID the server did not resume from
// (its ids restart at 1), which replay serve must not resume from either,
// at either scale against the same server. One proxy passes an upstream
// failure on as a reset (the default), the other as a cut body
// (--on-upstream-error abort), so the recording holds every ending kind.
// While the proxies run, recordings ls and report read what they have
// committed. The two recordings are merged (export, import) and replayed:
// replay run --scale 1 and --scale 5 against replay serve reproduce each
// ending kind in at least 95 % of the connections, at the recorded ages
// within 50 ms (p95), and the report on each replay shows the fingerprints
// of the report on the recording.
func TestReplayReproducesEndings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	upstream := endingServer(t)

	// Two recording proxies, separate processes.
	type proxyRun struct {
		name, policy, file, url string
		p                       *process
	}
	proxies := []*proxyRun{{name: "edge", policy: "reset"}, {name: "cutter", policy: "abort"}}
	for _, pr := range proxies {
		pr.file = filepath.Join(dir, pr.name+".db")
		pr.p = startProcess(t, "proxy", "--listen", "127.0.0.1:0", "--upstream", upstream.URL, "--name", pr.name,
			"--on-upstream-error", pr.policy, "--record", pr.file, "--quiet", "--monitor-interval", "200ms")
		pr.url = pr.p.wait(t, listeningOn, 60*time.Second)[1]
	}

	// The recording's clients: one attempt each, their records in a
	// session file of their own (the report on the recording reads it).
	clientsFile := filepath.Join(dir, "clients.db")
	cw, err := session.Create(clientsFile, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cw.PutMeta(session.MetaRun, session.RunInfo{Command: "test clients", Scenario: "recorded", StartedAt: time.Now()})
	opts := &clients.Options{Recorder: cw, NoReconnect: true, Scenario: "recorded"}
	var wg sync.WaitGroup
	n := 0
	for _, pr := range proxies {
		for i, rs := range recordingPlan {
			id, delay := n, time.Duration(n)*15*time.Millisecond
			n++
			q := fmt.Sprintf("/stream?symbols=%s%d", strings.ToUpper(pr.name[:1]), i)
			if rs.end != "" {
				q += "&end=" + rs.end + "&at=" + rs.at.String()
			}
			u, _ := clients.ParseTarget(pr.url + q)
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(delay)
				sctx := ctx
				if rs.end == "" {
					var cancel context.CancelFunc
					sctx, cancel = context.WithTimeout(ctx, rs.at)
					defer cancel()
				}
				s := clients.NewStream(clients.ClientID(id), "", u, opts)
				if rs.end == "rst" {
					// As a reconnecting client would: an id the server
					// does not resume from (its ids start at 1 again).
					s.SetLastEventID("3")
				}
				s.Run(sctx)
			}()
		}
	}
	wg.Wait()
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}

	// Read while recording: the proxies still hold their files.
	stdout, stderr, code := replayCLI(t, ctx, "recordings", "ls", proxies[0].file)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%d streams", len(recordingPlan))) ||
		!strings.Contains(stderr, "is being written") {
		t.Fatalf("recordings ls on the file being recorded: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = replayCLI(t, ctx, "report", proxies[1].file, "--format", "json")
	var live struct {
		Files []analysis.FileInfo `json:"files"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &live) != nil || len(live.Files) != 1 || live.Files[0].SnapshotAt.IsZero() {
		t.Fatalf("report on the file being recorded: exit %d %s\n%.300s", code, stderr, stdout)
	}
	for _, pr := range proxies {
		if code := pr.p.stop(t); code != 0 {
			t.Fatalf("proxy %s exited %d:\n%s", pr.name, code, pr.p.output())
		}
	}

	// One recording of both: export each, import streams then frames.
	var streams, frames []string
	for _, pr := range proxies {
		out, stderr, code := replayCLI(t, ctx, "recordings", "export", pr.file, "--format", "jsonl")
		if code != 0 {
			t.Fatalf("export %s: %s", pr.file, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.Contains(line, `"record":"stream"`) {
				streams = append(streams, line)
			} else {
				frames = append(frames, line)
			}
		}
	}
	jsonl := filepath.Join(dir, "both.jsonl")
	os.WriteFile(jsonl, []byte(strings.Join(append(streams, frames...), "\n")+"\n"), 0o644)
	recFile := filepath.Join(dir, "recording.db")
	if _, stderr, code := replayCLI(t, ctx, "recordings", "import", jsonl, "--out", recFile); code != 0 {
		t.Fatalf("import: %s", stderr)
	}

	// The recording holds each ending kind at its age.
	rec, err := recording.Load(recFile)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string][]time.Duration{}
	withID := 0
	for _, s := range rec.Streams {
		if s.Header.Get("Last-Event-Id") == "3" {
			withID++
		}
		k := replay.EndingOf(s)
		kinds[k] = append(kinds[k], s.End.D())
	}
	for kind, want := range map[string]int{session.EndKindReset: 8, session.EndKindCut: 8, session.EndKindClean: 6, session.EndKindClient: 6} {
		if len(kinds[kind]) != want {
			t.Errorf("recorded %d %s endings, want %d (all: %v)", len(kinds[kind]), kind, want, kindCounts(kinds))
		}
	}
	if withID != 8 {
		t.Errorf("%d recorded requests carry Last-Event-ID 3, want 8", withID)
	}
	if t.Failed() {
		t.FailNow()
	}
	recorded := reportOf(t, ctx, clientsFile, proxies[0].file, proxies[1].file)
	if len(recorded.Fingerprints) == 0 {
		t.Fatal("the report on the recording found no fingerprint")
	}
	t.Logf("recording: %s", fingerprints(recorded.Fingerprints))

	// Replay: replay serve stands in for the server, replay run for the
	// clients, at scale 1 and 5.
	server := startProcess(t, "replay", "serve", "--recording", recFile, "--listen", "127.0.0.1:0")
	target := server.wait(t, regexp.MustCompile(`on (http://127\.0\.0\.1:\d+) \(speed`), 60*time.Second)[1]
	for _, scale := range []int{1, 5} {
		t.Run(fmt.Sprintf("scale %d", scale), func(t *testing.T) {
			out := filepath.Join(dir, fmt.Sprintf("replay-%d.db", scale))
			stdout, stderr, code := replayCLI(t, ctx, "replay", "run", "--recording", recFile, "--target", target,
				"--scale", fmt.Sprint(scale), "--out", out, "--json")
			if code != 0 {
				t.Fatalf("replay run: exit %d: %s", code, stderr)
			}
			var sum struct {
				session.Summary
				Replay *session.ReplayEndings `json:"replay"`
			}
			if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Replay == nil {
				t.Fatalf("replay run --json: %v\n%s", err, stdout)
			}
			checkEndings(t, sum.Replay, scale, kinds)
			replayed := reportOf(t, ctx, out)
			if len(replayed.Replay) != 1 || len(replayed.Replay[0].Endings) != 4 {
				t.Errorf("report --format json: replay %+v, want the four ending kinds", replayed.Replay)
			}
			t.Logf("replay: %s", fingerprints(replayed.Fingerprints))
			sameFingerprints(t, recorded.Fingerprints, replayed.Fingerprints)
		})
	}
}

// checkEndings checks a replay's comparison: each kind reproduced by at
// least 95 % of its connections, at the recorded ages within 50 ms p95.
func checkEndings(t *testing.T, got *session.ReplayEndings, scale int, recorded map[string][]time.Duration) {
	t.Helper()
	if got.Scale != scale || got.Pattern != "recorded" {
		t.Errorf("comparison of scale %d, pattern %q", got.Scale, got.Pattern)
	}
	seen := map[string]bool{}
	for _, e := range got.Endings {
		seen[e.Kind] = true
		want := int64(len(recorded[e.Kind]))
		t.Logf("%-6s recorded %d, replayed %d of %d, age recorded p50 %v replayed p50 %v, error p95 %v max %v, otherwise %v",
			e.Kind, e.Recorded, e.Replayed, e.Expected, e.RecordedAge.P50, e.ReplayedAge.P50, e.AgeError.P95, e.AgeError.Max, e.Other)
		if e.Recorded != want || e.Expected != want*int64(scale) {
			t.Errorf("%s: %d recorded, %d expected; want %d and %d", e.Kind, e.Recorded, e.Expected, want, want*int64(scale))
		}
		if float64(e.Replayed) < math.Ceil(0.95*float64(e.Expected)) {
			t.Errorf("%s: %d of %d connections ended so (%v otherwise), want at least 95%%", e.Kind, e.Replayed, e.Expected, e.Other)
		}
		if e.AgeError.P95.D() > 50*time.Millisecond {
			t.Errorf("%s: age error p95 %v, want at most 50 ms", e.Kind, e.AgeError.P95)
		}
	}
	for kind := range recorded {
		if !seen[kind] {
			t.Errorf("no %s row in the comparison", kind)
		}
	}
}

// reportOf is report --format json on files.
func reportOf(t *testing.T, ctx context.Context, files ...string) *analysis.Report {
	t.Helper()
	stdout, stderr, code := replayCLI(t, ctx, append(append([]string{"report"}, files...), "--format", "json")...)
	if code != 0 {
		t.Fatalf("report %v: exit %d: %s", files, code, stderr)
	}
	var rep analysis.Report
	dec := json.NewDecoder(bytes.NewReader([]byte(stdout)))
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("report %v: %v", files, err)
	}
	return &rep
}

// sameFingerprints checks that two reports found the same clusters: the
// same class, dimension and kind of match, centres within the clustering's
// own window (10 %, and 50 ms for values near zero).
func sameFingerprints(t *testing.T, want, got []analysis.Cluster) {
	t.Helper()
	match := func(a, b analysis.Cluster) bool {
		return a.Class == b.Class && a.Dimension == b.Dimension && a.MatchKind == b.MatchKind &&
			math.Abs(a.CenterS-b.CenterS) <= max(0.1*max(a.CenterS, b.CenterS), 0.05)
	}
	for _, side := range []struct {
		name     string
		from, in []analysis.Cluster
	}{{"missing from the replay", want, got}, {"spurious in the replay", got, want}} {
		for _, c := range side.from {
			if !slices.ContainsFunc(side.in, func(o analysis.Cluster) bool { return match(c, o) }) {
				t.Errorf("fingerprint %s: %s %s cluster at %.3f s (%s)", side.name, c.Class, c.Dimension, c.CenterS, c.Match)
			}
		}
	}
}

func fingerprints(cs []analysis.Cluster) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %s %.3fs ×%d", c.Class, c.Dimension, c.CenterS, c.Count))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func kindCounts(k map[string][]time.Duration) map[string]int {
	out := map[string]int{}
	for kind, v := range k {
		out[kind] = len(v)
	}
	return out
}
