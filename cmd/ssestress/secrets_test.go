package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/internal/feed"
)

// The secrets of TestSecretsNeverWrittenOrShown, one per way in: each is
// unique, so finding it anywhere means it leaked from that way.
var testSecrets = map[string]string{
	"--token-file":     "S3cr3t-tokenfile-a41f09c2",
	"--token-env":      "S3cr3t-tokenenv-b52e18d3",
	"--header-file":    "S3cr3t-xapikey-c63d27e4",  // X-Api-Key
	"--header-env":     "S3cr3t-xauthtok-d74c36f5", // X-Auth-Token
	"--cookie-file":    "S3cr3t-cookiefile-e85b4506",
	"--cookie-env":     "S3cr3t-cookieenv-f96a5617",
	"query token":      "S3cr3t-querytoken-0a796728",
	"query api_key":    "S3cr3t-queryapikey-1b887839",
	"--api-token-file": "S3cr3t-apitokenfile-2c99894a",
	"--api-token-env":  "S3cr3t-apitokenenv-3daa9a5b",
	"--api-token":      "S3cr3t-apitokenflag-4ebbab6c",
}

// findSecrets returns the ways in whose secret is in what.
func findSecrets(what []byte, skip ...string) []string {
	var found []string
	for way, s := range testSecrets {
		if strings.Contains(string(what), s) && !contains(skip, way) {
			found = append(found, way)
		}
	}
	return found
}

// secretServer demands every credential the clients were given (so the
// test knows each was sent) and echoes the bearer token into the content
// type of the group ECHO, as a server quoting a credential in an error.
func secretServer(t *testing.T) *httptest.Server {
	t.Helper()
	inner := feed.New(feed.Config{Rate: feed.Rate{Min: 6000, Max: 6000}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sid, _ := r.Cookie("sid")
		q := r.URL.Query()
		auth := r.Header.Get("Authorization")
		if (auth != "Bearer "+testSecrets["--token-file"] && auth != "Bearer "+testSecrets["--token-env"]) ||
			r.Header.Get("X-Api-Key") != testSecrets["--header-file"] || r.Header.Get("X-Auth-Token") != testSecrets["--header-env"] ||
			sid == nil || (sid.Value != testSecrets["--cookie-file"] && sid.Value != testSecrets["--cookie-env"]) ||
			q.Get("token") != testSecrets["query token"] || q.Get("api_key") != testSecrets["query api_key"] {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if q.Get("symbols") == "ECHO" {
			w.Header().Set("Content-Type", "text/plain; seen="+auth)
			io.WriteString(w, "no stream here")
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); inner.Close() })
	return srv
}

// cmdlineOf is the command line of a running process as other users see
// it (/proc/PID/cmdline).
func cmdlineOf(t *testing.T, p *process) []byte {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("cmdline of %v: %v", p, err)
	}
	return raw
}

// TestSecretsNeverWrittenOrShown gives a credential through every way a
// secret enters ssestress: the bearer token from --token-file and
// --token-env, an X-Api-Key from --header-file, an X-Auth-Token from
// --header-env, cookies from --cookie-file and --cookie-env, token= and
// api_key= query parameters (in the target of a config file), the control
// API's token from --api-token-file, --api-token-env and --api-token. Two
// runs go through a recording proxy (with packet capture where the test
// may capture) to a server that refuses any stream missing one of them
// and echoes the token into an error. None of the secrets is then found
// in the raw bytes of any session file or pcap, in inspect (text and
// JSON), in any report format, in the recording's export and show, in
// what the processes printed, or in the command line of a process that
// was given them through a file or the environment (read from /proc while
// it runs). The secret typed on the command line (--api-token) is warned
// about in one line.
func TestSecretsNeverWrittenOrShown(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*runTestTimeout)
	defer cancel()
	srv := secretServer(t)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("SSESTRESS_TEST_TOKEN", testSecrets["--token-env"])
	t.Setenv("SSESTRESS_TEST_HEADERS", "X-Auth-Token: "+testSecrets["--header-env"])
	t.Setenv("SSESTRESS_TEST_COOKIES", "sid="+testSecrets["--cookie-env"])
	t.Setenv("SSESTRESS_TEST_API_TOKEN", testSecrets["--api-token-env"])
	tokenFile := write("token", testSecrets["--token-file"]+"\n")
	headerFile := write("headers", "# credentials\nX-Api-Key: "+testSecrets["--header-file"]+"\n")
	cookieFile := write("cookies", "sid="+testSecrets["--cookie-file"]+"\n")
	apiTokenFile := write("api-token", testSecrets["--api-token-file"])
	capture := os.Geteuid() == 0

	// The recording proxy, its control API behind --api-token-file.
	proxyDB := filepath.Join(dir, "proxy.db")
	proxyArgs := []string{"proxy", "--upstream", srv.URL, "--listen", "127.0.0.1:0", "--record", proxyDB,
		"--api", "127.0.0.1:0", "--api-token-file", apiTokenFile}
	if capture {
		proxyArgs = append(proxyArgs, "--capture", "--pcap", filepath.Join(dir, "proxy.pcap"))
	}
	proxyProc := startProcess(t, proxyArgs...)
	proxyURL := proxyProc.wait(t, listeningOn, runTestTimeout)[1]
	api := proxyProc.wait(t, regexp.MustCompile(`control API on (http://\S+) \(token required\)`), runTestTimeout)[1]
	// The token from the file works, and nothing else does.
	for token, want := range map[string]int{testSecrets["--api-token-file"]: 200, "wrong": 401} {
		req, _ := http.NewRequest("GET", api+"/conns", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("control API with token %q: %d, want %d", token, resp.StatusCode, want)
		}
	}
	// A proxy given its token through the environment, and one given it on
	// the command line (warned about).
	envProxy := startProcess(t, "proxy", "--upstream", srv.URL, "--listen", "127.0.0.1:0", "--out", filepath.Join(dir, "env-proxy.db"),
		"--api", "127.0.0.1:0", "--api-token-env", "SSESTRESS_TEST_API_TOKEN")
	envProxy.wait(t, listeningOn, runTestTimeout)
	flagProxy := startProcess(t, "proxy", "--upstream", srv.URL, "--listen", "127.0.0.1:0", "--out", filepath.Join(dir, "flag-proxy.db"),
		"--api", "127.0.0.1:0", "--api-token", testSecrets["--api-token"])
	flagProxy.wait(t, listeningOn, runTestTimeout)

	// Two runs through the proxy: the query secrets in the config file's
	// target, the others through their twins.
	config := write("run.json", fmt.Sprintf(`{"target": %q, "connections": 3, "rate": "100", "symbol-groups": [["AAPL"], ["MSFT"], ["ECHO"]]}`,
		proxyURL+"/stream?symbols={symbols}&token="+testSecrets["query token"]+"&api_key="+testSecrets["query api_key"]))
	runDB := filepath.Join(dir, "run.db")
	runArgs := []string{"run", "--config", config, "--duration=2s", "--monitor-interval=200ms", "--out", runDB,
		"--token-file", tokenFile, "--header-file", headerFile, "--header-env", "SSESTRESS_TEST_HEADERS", "--cookie-file", cookieFile}
	if capture {
		runArgs = append(runArgs, "--capture", "--pcap", filepath.Join(dir, "run.pcap"))
	}
	run1 := startProcess(t, runArgs...)
	run2DB := filepath.Join(dir, "run2.db")
	run2 := startProcess(t, "run", "--config", config, "--duration=2s", "--monitor-interval=200ms", "--out", run2DB,
		"--token-env", "SSESTRESS_TEST_TOKEN", "--header-file", headerFile, "--header-env", "SSESTRESS_TEST_HEADERS", "--cookie-env", "SSESTRESS_TEST_COOKIES")
	run1.wait(t, regexp.MustCompile(`ssestress run: `), runTestTimeout)
	run2.wait(t, regexp.MustCompile(`ssestress run: `), runTestTimeout)

	// While they run, their command lines hold none of the secrets.
	for _, p := range []*process{proxyProc, envProxy, run1, run2} {
		if found := findSecrets(cmdlineOf(t, p)); len(found) > 0 {
			t.Errorf("the command line of %v holds the secrets of %v", p, found)
		}
	}
	if found := findSecrets(cmdlineOf(t, flagProxy)); len(found) != 1 || found[0] != "--api-token" {
		t.Errorf("the command line of the --api-token proxy holds %v", found)
	}

	for _, p := range []*process{run1, run2} {
		select {
		case <-p.done:
		case <-time.After(runTestTimeout):
			t.Fatalf("%v did not end", p)
		}
		if p.code != 0 {
			t.Fatalf("%v: exit %d\n%s", p, p.code, p.output())
		}
	}
	for _, p := range []*process{proxyProc, envProxy, flagProxy} {
		if code := p.stop(t); code != 0 && code != exitInterrupted {
			t.Fatalf("%v: exit %d\n%s", p, code, p.output())
		}
	}
	if !strings.Contains(flagProxy.output(), "warning: --api-token on the command line: other users of this machine can read it in the process list") {
		t.Errorf("no warning about --api-token on the command line:\n%s", flagProxy.output())
	}
	for _, p := range []*process{proxyProc, envProxy, run1, run2} {
		if strings.Contains(p.output(), "warning:") {
			t.Errorf("%v warned although no secret was on its command line:\n%s", p, p.output())
		}
	}

	// Every stream got through: the server refused any that lacked one.
	_, _, conns, errs := readSession(t, runDB)
	streamed := 0
	for _, c := range conns {
		if c.Events > 0 {
			streamed++
		}
	}
	classes := map[string]int{}
	for _, e := range errs {
		classes[e.Class]++
	}
	if streamed < 2 || classes["HTTP_401"] > 0 || classes["BAD_CONTENT_TYPE"] == 0 {
		t.Fatalf("streams with events %d, errors %v: the credentials did not all reach the server", streamed, classes)
	}

	// What was written and what is shown.
	look := func(what string, b []byte, skip ...string) {
		t.Helper()
		if found := findSecrets(b, skip...); len(found) > 0 {
			t.Errorf("%s holds the secrets of %v", what, found)
		}
	}
	for _, p := range []*process{proxyProc, envProxy, run1, run2} {
		look(fmt.Sprintf("the output of %v", p), []byte(p.output()))
	}
	look("the output of the --api-token proxy", []byte(flagProxy.output()), "--api-token")
	files, _ := filepath.Glob(filepath.Join(dir, "*.db"))
	pcaps, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if capture && len(pcaps) == 0 {
		t.Error("no pcap written")
	}
	for _, f := range append(files, pcaps...) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		look(filepath.Base(f)+" (raw bytes)", raw)
	}
	for _, f := range files {
		for _, args := range [][]string{{"inspect", f}, {"inspect", "--json", f}} {
			stdout, stderr, _ := runCLI(t, ctx, args...)
			look(strings.Join(args, " "), []byte(stdout+stderr))
		}
	}
	for _, format := range analysis.Formats() {
		args := []string{"report", runDB, run2DB, proxyDB, "--format", format}
		csvDir := filepath.Join(dir, "report-csv")
		if format == "csv" { // one table per file
			args = append(args, "-o", csvDir)
		}
		stdout, stderr, code := runCLI(t, ctx, args...)
		if code != 0 {
			t.Errorf("report --format %s: exit %d: %s", format, code, stderr)
		}
		look("report --format "+format, []byte(stdout+stderr))
		if format == "csv" {
			tables, _ := filepath.Glob(filepath.Join(csvDir, "*.csv"))
			if len(tables) == 0 {
				t.Errorf("report --format csv -o %s wrote no table", csvDir)
			}
			for _, f := range tables {
				raw, _ := os.ReadFile(f)
				look("report --format csv: "+filepath.Base(f), raw)
			}
		}
	}
	for _, kind := range analysis.ExportKinds() {
		stdout, stderr, code := runCLI(t, ctx, "export", runDB, run2DB, proxyDB, kind[0], "--format", "jsonl")
		if code != 0 {
			t.Errorf("export %s: exit %d: %s", kind[0], code, stderr)
		}
		look("export "+kind[0], []byte(stdout+stderr))
	}
	export := filepath.Join(dir, "export.jsonl")
	for _, args := range [][]string{{"recordings", "export", proxyDB, "-o", export}, {"recordings", "ls", proxyDB},
		{"recordings", "show", proxyDB, "--frames", "3"}} {
		stdout, stderr, code := runCLI(t, ctx, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		look(strings.Join(args, " "), []byte(stdout+stderr))
	}
	raw, _ := os.ReadFile(export)
	look("the recording's export", raw)
	if !strings.Contains(string(raw), `"X-Api-Key":["[redacted]"]`) || !strings.Contains(string(raw), "token=[redacted]") {
		t.Errorf("the export does not show the credentials redacted:\n%.2000s", raw)
	}
}
