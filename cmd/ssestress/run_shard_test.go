package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/feed"
)

// TestRunShardsMergeToWhole runs three "run --shard k/3" processes at once
// against one target and checks that "report a.db b.db c.db" adds up to
// the unsharded scenario's plan: the same connections (ids and count) in
// the same symbol groups. Churn makes the plan more than a ramp: the
// shards close and open the replaced connections too.
func TestRunShardsMergeToWhole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*runTestTimeout)
	defer cancel()
	dir := t.TempDir()
	bin := buildBinary(t, ctx, dir)
	srv, err := feed.Start("127.0.0.1:0", feed.Config{Rate: feed.Rate{Min: 1200, Max: 1200}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()

	// Churn every 800 ms after a ramp of 6 ms: actions at 0-6 ms, 806 ms
	// and 1606 ms, each at least 390 ms from the end at 2 s.
	scenario := []string{"run", "--scenario=churn", "--connections=7", "--rate=1000", "--churn-rate=75",
		"--duration=2s", "--monitor-interval=200ms", "--target=" + srv.URL}
	whole, err := parseRunArgs(scenario[1:], &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := whole.cfg.plan()
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := map[string]bool{}
	wantGroups := map[string]int64{}
	for _, a := range plan.Actions(time.Duration(whole.cfg.Duration)) {
		if a.Open {
			wantIDs[clients.ClientID(a.Conn)] = true
			wantGroups[strings.Join(whole.cfg.SymbolGroups[a.Conn%len(whole.cfg.SymbolGroups)], ",")]++
		}
	}
	if len(wantIDs) != 9 {
		t.Fatalf("the plan opens %d connections, the test expects 7 + 2 churned", len(wantIDs))
	}

	var files []string
	var children []*exec.Cmd
	var logs []*bytes.Buffer
	for k := 1; k <= 3; k++ {
		out := filepath.Join(dir, fmt.Sprintf("shard-%d.db", k))
		files = append(files, out)
		child := exec.CommandContext(ctx, bin, append(scenario[:len(scenario):len(scenario)], fmt.Sprintf("--shard=%d/3", k), "--out="+out, "--json")...)
		var log bytes.Buffer
		child.Stdout, child.Stderr = &log, &log
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, child)
		logs = append(logs, &log)
	}
	for k, child := range children {
		if err := child.Wait(); err != nil {
			t.Fatalf("shard %d/3: %v\n%s", k+1, err, logs[k])
		}
		if !strings.Contains(logs[k].String(), fmt.Sprintf("shard %d/3 (connections c%04d, c%04d, ...: every 3rd)", k+1, k, k+3)) {
			t.Errorf("shard %d/3 does not say which part it runs:\n%s", k+1, logs[k])
		}
	}

	stdout, stderr, code := reportCLI(t, append([]string{"report", "--format", "json"}, files...)...)
	if code != 0 {
		t.Fatalf("report: exit %d: %s", code, stderr)
	}
	var rep struct {
		Files []struct {
			Name  string `json:"name"`
			Shard string `json:"shard"`
		} `json:"files"`
		Scenarios []struct {
			Scenario string `json:"scenario"`
			Files    int    `json:"files"`
			Attempts int64  `json:"attempts"`
			Errors   int64  `json:"errors"`
		} `json:"scenarios"`
		Groups []struct {
			Group    string `json:"group"`
			Attempts int64  `json:"attempts"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report json: %v\n%s", err, stdout)
	}
	if len(rep.Files) != 3 {
		t.Fatalf("report files %+v", rep.Files)
	}
	for k, f := range rep.Files {
		if f.Shard != fmt.Sprintf("%d/3", k+1) {
			t.Errorf("file %s: shard %q", f.Name, f.Shard)
		}
	}
	if len(rep.Scenarios) != 1 || rep.Scenarios[0].Files != 3 || rep.Scenarios[0].Attempts != int64(len(wantIDs)) || rep.Scenarios[0].Errors != 0 {
		t.Fatalf("merged summary %+v, want %d connections opened over 3 files and no error", rep.Scenarios, len(wantIDs))
	}
	gotGroups := map[string]int64{}
	for _, g := range rep.Groups {
		gotGroups[g.Group] = g.Attempts
	}
	if fmt.Sprint(gotGroups) != fmt.Sprint(wantGroups) {
		t.Fatalf("merged groups %v, the unsharded plan's %v", gotGroups, wantGroups)
	}

	// The ids: each shard has its own, together the plan's.
	gotIDs := map[string]bool{}
	for k, f := range files {
		_, info, conns, _ := readSession(t, f)
		if info.Shard != fmt.Sprintf("%d/3", k+1) {
			t.Errorf("%s: run info shard %q", f, info.Shard)
		}
		for _, c := range conns {
			var n int
			fmt.Sscanf(c.ClientID, "c%d", &n)
			if n%3 != k || gotIDs[c.ClientID] {
				t.Errorf("%s holds %s (shard %d/3 owns every 3rd from c%04d; duplicates are wrong)", f, c.ClientID, k+1, k)
			}
			gotIDs[c.ClientID] = true
		}
	}
	if len(gotIDs) != len(wantIDs) {
		t.Fatalf("shards opened %v, the plan %v", sortedSet(gotIDs), sortedSet(wantIDs))
	}
	for id := range wantIDs {
		if !gotIDs[id] {
			t.Fatalf("no shard opened %s (shards opened %v)", id, sortedSet(gotIDs))
		}
	}
}

func sortedSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestRunSourceAddr: with --source-addr the connections leave from the
// given loopback addresses, round-robin, as the session file records; and
// addresses that cannot serve are refused in one line before anything
// starts.
func TestRunSourceAddr(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "src.db")
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	stdout, stderr, code := runCLI(t, ctx, "run", "--connections=6", "--rate=100", "--duration=1s",
		"--event-rate=1200", "--source-addr", "127.0.0.2-127.0.0.3,127.0.0.9", "--json", "--out="+out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "from 3 source addresses") {
		t.Errorf("the start line does not name the source addresses:\n%s", stderr)
	}
	_, _, conns, errs := readSession(t, out)
	if len(conns) != 6 || len(errs) != 0 {
		t.Fatalf("%d conns, errors %+v; stdout %s", len(conns), errs, stdout)
	}
	from := map[string]int{}
	for _, c := range conns {
		host, _, err := net.SplitHostPort(c.LocalAddr)
		if err != nil || c.Events == 0 {
			t.Fatalf("conn %+v", c)
		}
		from[host]++
	}
	if from["127.0.0.2"] != 2 || from["127.0.0.3"] != 2 || from["127.0.0.9"] != 2 {
		t.Fatalf("connections by local address %v, want two from each of 127.0.0.2, 127.0.0.3, 127.0.0.9", from)
	}

	// HTTP/2: the streams share one connection, from the next source
	// address.
	out2 := filepath.Join(dir, "src-h2.db")
	_, stderr, code = runCLI(t, ctx, "run", "--connections=3", "--rate=100", "--duration=1s", "--http2",
		"--event-rate=1200", "--source-addr", "127.0.0.5", "--out="+out2)
	if code != 0 {
		t.Fatalf("--http2: exit %d: %s", code, stderr)
	}
	_, _, conns, _ = readSession(t, out2)
	for _, c := range conns {
		if host, _, _ := net.SplitHostPort(c.LocalAddr); host != "127.0.0.5" || c.Events == 0 {
			t.Errorf("--http2: conn %+v, want events over a connection from 127.0.0.5", c)
		}
	}
	if len(conns) != 3 {
		t.Errorf("--http2: %d conns", len(conns))
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--source-addr=192.0.2.10"}, "run: --source-addr: source address 192.0.2.10 is not an address of this host (bind: cannot assign requested address); give local addresses, e.g. 127.0.0.2-127.0.0.9 on loopback"},
		{[]string{"--source-addr=127.0.0.9-127.0.0.2"}, `run: --source-addr: "127.0.0.9-127.0.0.2" is not a range of addresses of one family from low to high`},
		{[]string{"--source-addr=::1"}, "run: --source-addr: ::1 cannot reach 127.0.0.1 (IPv4 and IPv6 do not mix)"},
		{[]string{"--source-addr=127.0.0.2", "--target=http://192.0.2.1:8090"}, "run: --source-addr: the loopback address 127.0.0.2 cannot reach 192.0.2.1 (give addresses of an interface that routes there)"},
	} {
		if tc.args[0] == "--source-addr=::1" && !hostHasIPv6Loopback() {
			continue
		}
		args := append([]string{"run", "--duration=1s", "--out=" + filepath.Join(dir, "never.db")}, tc.args...)
		stdout, stderr, code := runCLI(t, ctx, args...)
		if want := "ssestress: " + tc.want + "\n"; stderr != want || code != 2 || stdout != "" {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, code, stderr, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "never.db")); err == nil {
		t.Fatal("a refused run left a session file")
	}
}

// hostHasIPv6Loopback reports whether ::1 can be bound here.
func hostHasIPv6Loopback() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
