package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func vcsInfo(version, revision, modified string) *debug.BuildInfo {
	info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/ssestress/ssestress", Version: version}}
	if revision != "" {
		info.Settings = append(info.Settings, debug.BuildSetting{Key: "vcs", Value: "git"},
			debug.BuildSetting{Key: "vcs.revision", Value: revision},
			debug.BuildSetting{Key: "vcs.time", Value: "2026-12-01T12:00:00Z"})
	}
	if modified != "" {
		info.Settings = append(info.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
	}
	return info
}

func TestDescribeVersion(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name  string
		stamp string
		info  *debug.BuildInfo
		want  string
	}{
		{"go install of a release", "", vcsInfo("v1.2.0", "", ""), "v1.2.0"},
		{"no build info", "", nil, "(devel)"},
		{"no version recorded", "", vcsInfo("", "", ""), "(devel)"},
		{"checkout, no version", "", vcsInfo("(devel)", rev, "false"), "(devel) rev 0123456789ab"},
		{"dirty checkout, no version", "", vcsInfo("(devel)", rev, "true"), "(devel) rev 0123456789ab+dirty"},
		{"checkout, pseudo-version says it all", "", vcsInfo("v0.0.0-20261201120000-0123456789ab+dirty", rev, "true"),
			"v0.0.0-20261201120000-0123456789ab+dirty"},
		{"tagged checkout", "", vcsInfo("v1.2.0", rev, "false"), "v1.2.0 rev 0123456789ab"},
		{"stamped, no VCS (the image)", "v1.3.0", vcsInfo("(devel)", "", ""), "v1.3.0"},
		{"stamped in a dirty checkout", "v1.3.0", vcsInfo("(devel)", rev, "true"), "v1.3.0 rev 0123456789ab+dirty"},
		{"stamped with git describe", " v1.3.0-2-g0123456789ab-dirty\n", vcsInfo("(devel)", rev, "true"), "v1.3.0-2-g0123456789ab-dirty"},
		{"short revision", "", vcsInfo("(devel)", "abc123", ""), "(devel) rev abc123"},
	} {
		if got := describeVersion(tc.stamp, tc.info); got != tc.want {
			t.Errorf("%s: describeVersion(%q, …) = %q, want %q", tc.name, tc.stamp, got, tc.want)
		}
	}
}

// TestVersionCommand: version and --version print the version the session
// files record, and exit 0.
func TestVersionCommand(t *testing.T) {
	if version == "" {
		t.Fatal("version is empty after init")
	}
	for _, arg := range []string{"version", "--version"} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), []string{arg}, &out, &errOut); err != nil {
			t.Fatalf("ssestress %s: %v", arg, err)
		}
		if got, want := out.String(), "ssestress "+version+"\n"; got != want || errOut.Len() != 0 {
			t.Errorf("ssestress %s printed %q (stderr %q), want %q", arg, got, errOut.String(), want)
		}
	}
}

// TestVersionFromVCS builds the command unstamped, with VCS stamping on, in
// a git clone of this checkout with an uncommitted change: the binary names
// the revision and says the tree was dirty. (Not in this checkout itself:
// the go command does not stamp a build in a git worktree.)
func TestVersionFromVCS(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	head, err := exec.CommandContext(ctx, git, "-C", repoRoot, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("the sources are not a git checkout (%v): nothing to stamp from", err)
	}
	revision := strings.TrimSpace(string(head))
	// A clone at HEAD holding this working tree (the code under test, with
	// whatever is not committed yet) and one more change: dirty in any case.
	clone := filepath.Join(t.TempDir(), "src")
	if out, err := exec.CommandContext(ctx, git, "clone", "--quiet", "--shared", "--no-checkout", repoRoot, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, git, "-C", clone, "reset", "--quiet", revision).CombinedOutput(); err != nil {
		t.Fatalf("git reset %s: %v: %s", revision, err, out)
	}
	copyTree(t, repoRoot, clone, func(rel string) bool { return rel == ".git" })
	f, err := os.OpenFile(filepath.Join(clone, "README.md"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\nan uncommitted change\n")
	f.Close()

	bin := filepath.Join(t.TempDir(), "ssestress")
	// -buildvcs=true on the command line wins over a GOFLAGS=-buildvcs=false.
	build := exec.CommandContext(ctx, goBin, "build", "-buildvcs=true", "-trimpath", "-o", bin, "./cmd/ssestress")
	build.Dir = clone
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in a clone: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("ssestress version: %v: %s", err, out)
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "ssestress ") || !strings.Contains(line, revision[:12]) || !strings.HasSuffix(line, "+dirty") {
		t.Errorf("ssestress version = %q: want the revision %s and +dirty", line, revision[:12])
	}
	t.Logf("unstamped build of a dirty clone: %s", line)
}
