package replay_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/recording/recordtest"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
	"github.com/ssestress/ssestress/replay"
)

// childEnv names the session file a recording child writes.
const childEnv = "SSESTRESS_TEST_RECORD_CHILD"

// recordChild is the process TestKilledRecordingReplays kills: it records
// three endless streams through a relay in front of an embedded server,
// with the production writer settings, and prints "committed N streams S"
// every 20 ms until it is killed.
func recordChild(path string) int {
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 3000, Max: 3000}, Heartbeat: 50 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w, err := session.Create(path, session.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rec := recording.New(w, "child", recording.Options{})
	relay, err := recordtest.Start(srv.URL, rec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, q := range []string{"A,B", "C", "D,E,F"} {
		go func() {
			resp, err := http.Get(relay.URL + "/stream?symbols=" + q)
			if err != nil {
				return
			}
			dec := sse.NewDecoder(resp.Body, 0)
			for {
				if _, err := dec.Next(); err != nil {
					return
				}
			}
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		streams, _ := rec.Counts()
		fmt.Printf("committed %d streams %d\n", w.Committed(), streams)
		time.Sleep(20 * time.Millisecond)
	}
	return 2 // never reached in the test: the parent kills it long before
}

// TestKilledRecordingReplays kills a recording process with SIGKILL at
// random moments mid-stream; each time the file opens, passes bbolt's
// consistency check, holds every record the child had seen committed, and
// replays every committed frame of every stream in order.
func TestKilledRecordingReplays(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range 4 {
		path := filepath.Join(t.TempDir(), "killed.db")
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill between 0.3 s and 1.5 s after the first commit of frames
		// with all three streams begun.
		killAfter := 300*time.Millisecond + time.Duration(rng.Int64N(int64(1200*time.Millisecond)))
		sc := bufio.NewScanner(out)
		var firstCommit time.Time
		lastCommitted, streams := 0, 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 4 {
				continue
			}
			lastCommitted, _ = strconv.Atoi(f[1])
			streams, _ = strconv.Atoi(f[3])
			if lastCommitted > 10 && streams == 3 && firstCommit.IsZero() {
				firstCommit = time.Now()
			}
			if !firstCommit.IsZero() && time.Since(firstCommit) > killAfter {
				break
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		cancel()
		if firstCommit.IsZero() {
			t.Fatalf("round %d: the child never committed (last line %q)", round, sc.Text())
		}

		r, err := session.Open(path)
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		if err := r.Check(); err != nil {
			t.Fatalf("round %d: consistency check: %v", round, err)
		}
		rec, err := recording.Read(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		// Every Put the child saw committed is in the file, except that a
		// stream record is rewritten (begin, response): at most 2 per stream
		// share a key.
		if stored := len(rec.Streams) + rec.Frames(); stored < lastCommitted-2*streams {
			t.Errorf("round %d: %d records in the file, child saw %d committed (%d streams)", round, stored, lastCommitted, streams)
		}
		if len(rec.Streams) == 0 || len(rec.Streams) > 3 {
			t.Fatalf("round %d: %d streams in the file, want 1 to 3", round, len(rec.Streams))
		}
		replayAll(t, rec)
		t.Logf("round %d: killed %v after the first commit: %d frames committed and replayed", round, killAfter, rec.Frames())
	}
}

// replayAll serves rec fast and checks every stream comes back whole.
func replayAll(t *testing.T, rec *recording.Recording) {
	t.Helper()
	srv, err := replay.Start("127.0.0.1:0", rec, replay.Config{Speed: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	var wg sync.WaitGroup
	for _, s := range rec.Streams {
		if s.Ended {
			t.Errorf("%s: recorded as ended, but the child was killed mid-stream", s.Name())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := fetch(t, srv.URL+s.Path+"?"+s.Query, nil, len(s.Events), 20*time.Second)
			if g.stream != s.Name() {
				t.Errorf("asked for %s, served %s", s.Name(), g.stream)
			}
			if len(g.frames) != len(s.Events) {
				t.Errorf("%s: replayed %d of %d committed frames", s.Name(), len(g.frames), len(s.Events))
			}
			sameFrames(t, s.Name(), s.Events, g.frames)
		}()
	}
	wg.Wait()
}
