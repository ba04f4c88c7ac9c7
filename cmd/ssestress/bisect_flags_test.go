package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBisectRequestFlags: bisect passes run's request flags to the run
// against every entry point: two targets that demand a bearer token (from
// --token-env), a cookie and an API key are streamed from, and the
// credentials are nowhere in the session files or the output; the stored
// args are redacted.
func TestBisectRequestFlags(t *testing.T) {
	outer, inner := authServer(t), authServer(t)
	t.Setenv("SSESTRESS_BISECT_TOKEN", testToken)
	dir := filepath.Join(t.TempDir(), "bisect")
	stdout, stderr, code := reportCLI(t, "bisect", "--entry", "outer="+outer.URL, "--entry", "inner="+inner.URL,
		"--token-env", "SSESTRESS_BISECT_TOKEN", "--cookie", "sid="+testCookie, "--header", "X-Api-Key: "+testAPIKey,
		"--scenario=flood", "--connections=4", "--rate=50", "--duration=1s", "--dir", dir, "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	assertNoSecret(t, "stdout", []byte(stdout))
	assertNoSecret(t, "stderr", []byte(stderr))
	for _, name := range []string{"outer", "inner"} {
		path := filepath.Join(dir, name+".db")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		assertNoSecret(t, path, raw)
		_, info, conns, errs := readSession(t, path)
		if len(conns) != 2 || len(errs) != 0 {
			t.Fatalf("%s: %d conns (want its share of 4), errors %+v", name, len(conns), errs)
		}
		for _, c := range conns {
			if c.Status != 200 || c.Events == 0 {
				t.Errorf("%s: conn %+v did not get through", name, c)
			}
		}
		args := strings.Join(info.Args, " ")
		for _, want := range []string{"--token-env=SSESTRESS_BISECT_TOKEN", "sid=[redacted]", "X-Api-Key: [redacted]"} {
			if !strings.Contains(args, want) {
				t.Errorf("%s: stored args lack %q: %s", name, want, args)
			}
		}
	}
}

// TestBisectRefusesRunFlags: run's flags bisect cannot honour stop it
// with exit 2 and why, instead of being dropped: an in-process fault would
// make the resets bisect looks for; the others are set per entry point or
// do not apply.
func TestBisectRefusesRunFlags(t *testing.T) {
	for flag, why := range map[string]string{
		"--fault=reset":     "an in-process fault proxy would make the resets it looks for",
		"--via-proxy":       "an in-process fault proxy would make the resets it looks for",
		"--http=:9090":      "share no live view address",
		"--json":            "bisect prints its own report",
		"--out=x.db":        "each entry point's run writes DIR/<name>.db",
		"--target=http://x": "set per entry point",
	} {
		_, stderr, code := runCLI(t, context.Background(), "bisect", "--entry", "a=http://127.0.0.1:1", "--entry", "b=http://127.0.0.1:2", flag)
		name, _, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
		if code != 2 || !strings.HasPrefix(stderr, "ssestress: bisect: --"+name+": ") || !strings.Contains(stderr, why) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", flag, code, stderr, why)
		}
	}
	help, _, _ := runCLI(t, context.Background(), "bisect", "--help")
	for _, want := range []string{"Run flags (passed to the run against every entry point):", "  --scenario NAME", "  --token-env VARIABLE", "Refused (exit 2):", "  --fault\n"} {
		if !strings.Contains(help, want) {
			t.Errorf("bisect --help lacks %q", want)
		}
	}
}

// TestBisectRefusesSeriesFlags: --repeat, --expect and --shard do not
// apply to bisect's one run per entry point.
func TestBisectRefusesSeriesFlags(t *testing.T) {
	for _, flag := range []string{"--repeat=3", "--expect=ECONNRESET", "--shard=1/2"} {
		_, stderr, code := runCLI(t, context.Background(), "bisect", "--entry", "a=http://127.0.0.1:1", "--entry", "b=http://127.0.0.1:2", flag)
		name, _, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
		want := "ssestress: bisect: --" + name + ": does not apply: bisect runs once against each entry point\n"
		if code != 2 || stderr != want {
			t.Errorf("%s: exit %d, stderr %q; want 2, %q", flag, code, stderr, want)
		}
	}
}
