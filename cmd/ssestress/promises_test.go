package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/internal/session"
)

// startCommand runs a command that serves until interrupted; it returns
// the submatches of the first output line matching re and a stop function
// that interrupts the command and returns its exit code.
func startCommand(t *testing.T, re *regexp.Regexp, args ...string) ([]string, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut runTestBuffer
	done := make(chan int, 1)
	go func() { done <- exitCode(run(ctx, args, &out, &errOut), &errOut) }()
	stop := func() int {
		cancel()
		select {
		case c := <-done:
			return c
		case <-time.After(runTestTimeout):
			t.Fatalf("%v did not stop", args)
			return -1
		}
	}
	var m []string
	waitFor(t, fmt.Sprintf("%v to print %s", args, re), func() bool {
		select {
		case c := <-done:
			t.Fatalf("%v exited %d: %s %s", args, c, out.String(), errOut.String())
		default:
		}
		m = re.FindStringSubmatch(out.String() + errOut.String())
		return m != nil
	})
	t.Cleanup(func() { cancel() })
	return m, stop
}

// TestBarePortIsLoopback: every listener given a bare port (:0) binds
// 127.0.0.1, as the address each prints (its socket's own) shows: serve,
// replay serve and its live view, the proxy and its control API, and a
// run's live view.
func TestBarePortIsLoopback(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	_, recDB := importedRecording(t, ctx, dir)
	loop := `http://(127\.0\.0\.1):\d+`
	for _, tc := range []struct {
		args []string
		re   string
	}{
		{[]string{"serve", "--listen", ":0"}, `serving SSE quote feed on ` + loop},
		{[]string{"replay", "serve", "--recording", recDB, "--listen", ":0"}, `replaying .* on ` + loop},
		{[]string{"replay", "serve", "--recording", recDB, "--listen", "127.0.0.1:0", "--http", ":0"}, `live view on ` + loop},
		{[]string{"proxy", "--listen", ":0", "--upstream", "http://" + closedPort(t), "--out", filepath.Join(dir, "p1.db")}, `listening on ` + loop},
		{[]string{"proxy", "--listen", "127.0.0.1:0", "--api", ":0", "--upstream", "http://" + closedPort(t), "--out", filepath.Join(dir, "p2.db")}, `control API on ` + loop},
		{[]string{"run", "--duration=30s", "--connections=1", "--http", ":0", "--out", filepath.Join(dir, "r.db")}, `live view on ` + loop},
	} {
		m, stop := startCommand(t, regexp.MustCompile(tc.re), tc.args...)
		if m[1] != "127.0.0.1" {
			t.Errorf("%v listens on %s", tc.args, m[0])
		}
		if code := stop(); code != 0 && code != exitInterrupted {
			t.Errorf("%v: exit %d", tc.args, code)
		}
	}
}

// importedRecording imports a small recording (one stream, one event):
// its jsonl and its session file.
func importedRecording(t *testing.T, ctx context.Context, dir string) (jsonl, recDB string) {
	t.Helper()
	jsonl = filepath.Join(dir, "rec.jsonl")
	lines := `{"record":"stream","proxy":"p","conn_id":"p-1","method":"GET","path":"/stream","query":"symbols=AAPL","start":"2026-01-01T00:00:00Z","status":200,"resp_header":{"Content-Type":["text/event-stream"]},"resp_at_s":0.001}` + "\n" +
		`{"record":"event","proxy":"p","conn_id":"p-1","seq":0,"offset_s":0.01,"kind":"event","id":"1","data":"x"}` + "\n"
	if err := os.WriteFile(jsonl, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	recDB = filepath.Join(dir, "rec.db")
	if _, stderr, code := runCLI(t, ctx, "recordings", "import", jsonl, "--out", recDB); code != 0 {
		t.Fatalf("import: exit %d: %s", code, stderr)
	}
	return jsonl, recDB
}

// TestOutOfRangeValues: every out-of-range value is refused with one line
// and exit 2 (a command line) or 4 (a file that is damaged or not ours).
func TestOutOfRangeValues(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	_, recDB := importedRecording(t, ctx, dir)
	dead := "http://" + closedPort(t)
	badStatus := func(status string) string {
		p := filepath.Join(dir, "status"+status+".jsonl")
		os.WriteFile(p, []byte(`{"record":"stream","proxy":"p","conn_id":"p-1","method":"GET","path":"/s","start":"2026-01-01T00:00:00Z","status":`+status+`}`+"\n"), 0o644)
		return p
	}
	badSchema := func(v string) string {
		p := filepath.Join(dir, "schema"+v+".db")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		w, err := session.Create(p, session.Options{})
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		db, err := bolt.Open(p, 0o644, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(session.BucketMeta)).Put([]byte(session.MetaSchema), []byte(v))
		})
		db.Close()
		return p
	}
	os.Setenv("SSESTRESS_TEST_BLANK_TOKEN", "  ")
	defer os.Unsetenv("SSESTRESS_TEST_BLANK_TOKEN")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", "--via-proxy", "--time-scale", "Inf", "--duration=1s"}, 2, "--time-scale must be positive"},
		{[]string{"run", "--via-proxy", "--time-scale", "NaN", "--duration=1s"}, 2, "--time-scale must be positive"},
		{[]string{"run", "--time-scale", "NaN", "--duration=1s"}, 2, "--time-scale must be positive"},
		{[]string{"proxy", "--upstream", dead, "--time-scale", "NaN"}, 2, "--time-scale NaN must be positive"},
		{[]string{"proxy", "--upstream", dead, "--time-scale", "+Inf"}, 2, "--time-scale +Inf must be positive"},
		{[]string{"bench", "--load", "0"}, 2, "--load must be positive"},
		{[]string{"bench", "--streams", "0"}, 2, "--streams must be positive"},
		{[]string{"recordings", "show", recDB, "--frames", "-1"}, 2, "--frames must be 0 or more"},
		{[]string{"proxy", "--upstream", dead, "--api-token", " "}, 2, "--api-token: the token is empty"},
		{[]string{"proxy", "--upstream", dead, "--api-token-env", "SSESTRESS_TEST_BLANK_TOKEN"}, 2, "the token is empty"},
		{[]string{"proxy", "--upstream", dead, "--api-token-env", "SSESTRESS_TEST_NO_SUCH_VARIABLE"}, 2, "is not set"},
		{[]string{"proxy", "--upstream", dead, "--api-token-file", filepath.Join(dir, "none")}, 2, "--api-token-file"},
		{[]string{"proxy", "--upstream", dead, "--api-token", "a", "--api-token-env", "HOME"}, 2, "one of them"},
		{[]string{"recordings", "import", badStatus("-1"), "--out", filepath.Join(dir, "i1.db")}, 4, "HTTP status -1 is not a three-digit code"},
		{[]string{"recordings", "import", badStatus("1000000000000000"), "--out", filepath.Join(dir, "i2.db")}, 4, "is not a three-digit code"},
		{[]string{"inspect", badSchema("-5")}, 4, "bad schema version -5"},
		{[]string{"inspect", badSchema("0")}, 4, "bad schema version 0"},
		{[]string{"report", badSchema("0")}, 4, "bad schema version 0"},
	} {
		_, stderr, code := runCLI(t, ctx, tc.args...)
		if code != tc.code || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line with %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	for _, f := range []string{"i1.db", "i2.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("a refused import left %s", f)
		}
	}
}

// TestReplayServeRefusesBadStatus: a session file whose recorded stream
// carries an HTTP status no response can have (written past the importer)
// is replayed without it: replay serve answers its path 404 and never
// panics in its handler.
func TestReplayServeRefusesBadStatus(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rec.db")
	w, err := session.Create(p, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, s := range []struct {
		path   string
		status int
	}{{"/good", 200}, {"/bad", 1_000_000_000_000_000}, {"/negative", -1}} {
		w.Put(session.RecStream{Proxy: "p", ConnID: "p" + s.path, Method: "GET", Path: s.path, Start: start, Status: s.status,
			RespHeader: http.Header{"Content-Type": {"text/event-stream"}}, Ended: true, End: 1})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m, stop := startCommand(t, regexp.MustCompile(`on (http://127\.0\.0\.1:\d+)`), "replay", "serve", "--recording", p, "--listen", "127.0.0.1:0")
	base := m[1]
	for path, want := range map[string]int{"/good": 200, "/bad": 404, "/negative": 404} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v (a handler that panics drops the connection)", path, err)
		}
		resp.Body.Close() // a replayed stream may be held open
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if code := stop(); code != 0 && code != exitInterrupted {
		t.Errorf("exit %d", code)
	}
}

// TestDescriptorCheckCountsTheProxy: a run through the in-process proxy
// holds three descriptors per stream besides the embedded server's (its
// client's socket, and the proxy's two); one that cannot is refused before
// it starts, naming the proxy. Run in a child with a low descriptor limit.
func TestDescriptorCheckCountsTheProxy(t *testing.T) {
	if os.Getenv("SSESTRESS_TEST_FDCHECK") == "1" {
		lim := unix.Rlimit{Cur: 256, Max: 256}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
		defer cancel()
		// 60 streams: 60×2+64 fit 256 without the proxy; 60×4+64 do not.
		_, stderr, code := runCLI(t, ctx, "run", "--connections=60", "--duration=1s", "--via-proxy", "--out", filepath.Join(t.TempDir(), "x.db"))
		fmt.Printf("RESULT %d %s", code, stderr)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDescriptorCheckCountsTheProxy$", "-test.v")
	cmd.Env = append(os.Environ(), "SSESTRESS_TEST_FDCHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`RESULT (\d+) (.*)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("child printed no result:\n%s", out)
	}
	if string(m[1]) != "1" || !strings.Contains(string(m[2]), "4 descriptors per stream, two of them the in-process proxy's") {
		t.Fatalf("run through the proxy at 256 descriptors: exit %s, %s", m[1], m[2])
	}
}
