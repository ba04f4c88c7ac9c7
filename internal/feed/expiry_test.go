package feed

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/sse"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGroupPausesThenExpires: a group's generator stops when its last
// subscriber leaves (no events, no CPU), the group is kept for
// GroupExpiry (a client resuming meanwhile loses nothing), then forgotten;
// a client coming back later with Last-Event-ID gets ids that go on from
// its own.
func TestGroupPausesThenExpires(t *testing.T) {
	srv := startFeed(t, Config{Rate: Rate{6000, 6000}, Heartbeat: -1, GroupExpiry: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := srv.URL + "/stream?symbols=ZZZ"

	ctx1, cut := context.WithCancel(ctx)
	d, _ := open(t, ctx1, url, "")
	var last uint64
	for range 5 {
		last, _ = strconv.ParseUint(nextEvent(t, d).ID, 10, 64)
	}
	cut()
	waitFor(t, "the generator still runs without subscribers", 2*time.Second, func() bool { return srv.Stats().Generating == 0 })
	if st := srv.Stats(); st.Groups != 1 {
		t.Fatalf("the group was forgotten before its expiry: %+v", st)
	}
	sent := srv.Stats().Sent
	time.Sleep(50 * time.Millisecond)
	if srv.Stats().Sent != sent {
		t.Fatal("events sent with no subscriber")
	}

	// Within the expiry: resumed with nothing lost.
	ctx2, cut2 := context.WithCancel(ctx)
	d2, _ := open(t, ctx2, url, strconv.FormatUint(last, 10))
	first, _ := strconv.ParseUint(nextEvent(t, d2).ID, 10, 64)
	if first != last+1 {
		t.Fatalf("resumed at id %d after %d", first, last)
	}
	for range 3 {
		last, _ = strconv.ParseUint(nextEvent(t, d2).ID, 10, 64)
	}
	cut2()

	waitFor(t, "the group was not forgotten after its expiry", 5*time.Second, func() bool { return srv.Stats().Groups == 0 })
	// After it: a new group whose ids go on from the client's.
	d3, _ := open(t, ctx, url, strconv.FormatUint(last, 10))
	if id, _ := strconv.ParseUint(nextEvent(t, d3).ID, 10, 64); id != last+1 {
		t.Fatalf("after expiry, first id %d after the client's %d", id, last)
	}
}

// TestHeartbeatsOnly: NoMessages (serve --message-rate 0) serves the
// retry advertisement and heartbeats, no events, and runs no generator.
func TestHeartbeatsOnly(t *testing.T) {
	srv := startFeed(t, Config{Rate: NoMessages, Heartbeat: 40 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, _ := open(t, ctx, srv.URL+"/stream?symbols=AAPL", "")
	heartbeats, retry := 0, false
	for heartbeats < 4 {
		f, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch f.Kind {
		case sse.KindEvent:
			t.Fatalf("an event on a heartbeat-only feed: %+v", f)
		case sse.KindRetry:
			retry = true
		case sse.KindComment:
			heartbeats++
		}
	}
	if !retry {
		t.Error("no retry advertised")
	}
	if st := srv.Stats(); st.Generating != 0 || st.Sent != 0 || st.Groups != 1 {
		t.Errorf("stats %+v: want no generator, nothing sent, one group", st)
	}
}

// oneOffGroups opens n streams, each of its own symbol group, over one
// HTTP/2 connection (h2c) with 16 at a time: each reads its first event
// and goes away.
func oneOffGroups(t *testing.T, srv *Running, prefix string, n int) {
	t.Helper()
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || failed.Load() != nil || ctx.Err() != nil {
					return
				}
				if err := oneOff(ctx, client, fmt.Sprintf("%s/stream?symbols=%s%d", srv.URL, prefix, i)); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatal(err)
	}
}

func oneOff(ctx context.Context, client *http.Client, url string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	d := sse.NewDecoder(resp.Body, 0)
	for {
		f, err := d.Next()
		if err != nil {
			return fmt.Errorf("%s: %w", url, err)
		}
		if f.Kind == sse.KindEvent {
			return nil
		}
	}
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestOneOffGroupsFreed: 100,000 one-off symbol groups (5,000 under
// -short), each read for one event, leave the heap less than 10 MB larger
// (2 MB under -short) once they expired: a forgotten group keeps nothing.
// (The feed once kept every group and its generator for ever: 5,000
// one-off requests grew it by 4.4 MB/s.)
func TestOneOffGroupsFreed(t *testing.T) {
	n, limit := 100_000, uint64(10<<20)
	if testing.Short() {
		n, limit = 5_000, 2<<20
	}
	srv := startFeed(t, Config{Rate: Rate{6000, 6000}, Heartbeat: -1, GroupExpiry: 100 * time.Millisecond})
	expired := func() bool { return srv.Stats().Groups == 0 }
	// Warm up the connection, pools and maps first.
	oneOffGroups(t, srv, "W", 1000)
	waitFor(t, "warm-up groups not forgotten", 30*time.Second, expired)
	before := heapAfterGC()
	start := time.Now()
	oneOffGroups(t, srv, "S", n)
	took := time.Since(start)
	peak := srv.Stats().Groups
	waitFor(t, "one-off groups not forgotten", 60*time.Second, expired)
	after := heapAfterGC()
	growth := int64(after) - int64(before)
	t.Logf("%d one-off groups in %v (%d kept at the end, before expiry); heap %d → %d bytes after expiry (%+d)",
		n, took.Round(time.Millisecond), peak, before, after, growth)
	if growth > int64(limit) {
		t.Errorf("heap grew by %d bytes over %d expired groups, want < %d", growth, n, limit)
	}
	if st := srv.Stats(); st.Generating != 0 || st.Active != 0 {
		t.Errorf("stats %+v after every client left", st)
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Skipf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestNoClientsNoCPU: with 2,000 groups kept (clients gone, not yet
// expired) and no client, the feed uses under 1 % of a core, measured as
// the process's CPU time over 3 s. (It once kept a generator ticking per
// group: about 35 % of a core with no client.)
func TestNoClientsNoCPU(t *testing.T) {
	srv := startFeed(t, Config{Rate: Rate{600, 600}, GroupExpiry: time.Hour})
	oneOffGroups(t, srv, "C", 2000)
	waitFor(t, "generators still run without subscribers", 10*time.Second, func() bool {
		st := srv.Stats()
		return st.Generating == 0 && st.Active == 0
	})
	if st := srv.Stats(); st.Groups != 2000 {
		t.Fatalf("%d groups kept, want 2000 (kept until they expire)", st.Groups)
	}
	runtime.GC() // not counted: the measurement starts after it
	const window = 3 * time.Second
	cpu0, wall0 := cpuTime(t), time.Now()
	time.Sleep(window)
	cpu, wall := cpuTime(t)-cpu0, time.Since(wall0)
	share := float64(cpu) / float64(wall)
	t.Logf("CPU %v over %v: %.2f %% of a core", cpu, wall.Round(time.Millisecond), share*100)
	if share >= 0.01 {
		t.Errorf("the feed used %.2f %% of a core with no client, want < 1 %%", share*100)
	}
}
