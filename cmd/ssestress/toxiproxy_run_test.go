package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// TestRunAPI: run --api serves the in-process proxy's control API and
// Toxiproxy's, which can add a toxic during the run; --api-token is
// required by it and never recorded; a bad --api is exit 2.
func TestRunAPI(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	out := filepath.Join(dir, "api.db")
	var stdout, stderr runTestBuffer
	done := make(chan int, 1)
	go func() {
		err := run(ctx, []string{"run", "--scenario=flood", "--connections=2", "--rate=50", "--duration=3s", "--api", "127.0.0.1:0",
			"--api-token", "s3cret-token", "--out", out}, &stdout, &stderr)
		done <- exitCode(err, &stderr)
	}()
	re := regexp.MustCompile(`control API on (http://127\.0\.0\.1:\d+)`)
	var api string
	for deadline := time.Now().Add(20 * time.Second); api == ""; {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			api = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no API line:\n%s", stderr.String())
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	get := func(token string) (int, map[string]json.RawMessage) {
		req, _ := http.NewRequest("GET", api+"/proxies", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]json.RawMessage
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", code)
	}
	code, proxies := get("s3cret-token")
	if code != 200 || proxies["run-proxy"] == nil {
		t.Fatalf("GET /proxies: %d %v", code, proxies)
	}
	req, _ := http.NewRequest("POST", api+"/proxies/run-proxy/toxics", strings.NewReader(`{"name":"rp","type":"reset_peer","attributes":{"timeout":0}}`))
	req.Header.Set("Authorization", "Bearer s3cret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("add reset_peer: %d", resp.StatusCode)
	}
	if code := <-done; code != exitOK {
		t.Fatalf("run exited %d:\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), "s3cret-token") {
		t.Fatalf("the token was printed:\n%s\n%s", stdout.String(), stderr.String())
	}
	r, err := session.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var info session.RunInfo
	if _, err := r.Meta(session.MetaRun, &info); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(info.Args, " "), "s3cret-token") || !strings.Contains(strings.Join(info.Args, " "), "--api-token") {
		t.Fatalf("RunInfo.Args: %q", info.Args)
	}
	faults, err := session.All[session.FaultEvent](r, session.BucketFaults)
	if err != nil || len(faults) == 0 || faults[0].FaultName != "rp" {
		t.Fatalf("the toxic added through the API did not fire: %+v %v", faults, err)
	}

	_, errOut, code := runCLI(t, ctx, "run", "--duration=1s", "--api-token", "x", "--out", filepath.Join(dir, "a.db"))
	if code != exitUsage || !strings.Contains(errOut, "--api-token goes with --api") {
		t.Fatalf("--api-token alone: %d %s", code, errOut)
	}
	_, errOut, code = runCLI(t, ctx, "run", "--duration=1s", "--api", "10.255.255.1:1", "--out", filepath.Join(dir, "b.db"))
	if code != exitUsage || !strings.Contains(errOut, "--api") {
		t.Fatalf("--api off loopback without a token: %d %s", code, errOut)
	}
}
