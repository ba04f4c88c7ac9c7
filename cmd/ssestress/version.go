package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// version is what this binary says it is: in `ssestress version`, in every
// session file's RunInfo.Tool ("ssestress " + version) and in the
// User-Agent of its clients. A release build stamps it:
//
//	go build -ldflags "-X main.version=v1.2.0" ./cmd/ssestress
//
// (deploy/Dockerfile does, from its VERSION build argument). Left unstamped,
// init replaces it by what the go command recorded in the binary
// (describeVersion), so that a session file always names the build that
// wrote it.
var version string

func init() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		info = nil
	}
	version = describeVersion(version, info)
}

// describeVersion is the version of a build stamped with stamp (empty: not
// stamped) whose build info is info (nil: none recorded):
//
//   - the stamp, when there is one;
//   - else the main module's version: "v1.2.0" for go install …@v1.2.0, a
//     pseudo-version such as "v0.0.0-20261201120000-0123456789ab+dirty" for a
//     build in a git checkout (Go ≥ 1.24), "(devel)" when the go command knew
//     no version (-buildvcs=false, a worktree, a copy without .git);
//   - followed by "rev" and the first 12 digits of the VCS revision, and
//     "+dirty" when the tree had uncommitted changes, unless the version
//     already says them.
//
// A go install from the module proxy records no revision: its version is the
// release. It never returns an empty string.
func describeVersion(stamp string, info *debug.BuildInfo) string {
	v := strings.TrimSpace(stamp)
	if v == "" && info != nil {
		v = info.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	if info == nil {
		return v
	}
	var revision string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if revision != "" && !strings.Contains(v, revision) {
		v += " rev " + revision
	}
	if dirty && !strings.Contains(v, "+dirty") && !strings.HasSuffix(v, "-dirty") {
		v += "+dirty"
	}
	return v
}

// printVersion is ssestress version (and --version).
func printVersion(stdout io.Writer) error {
	_, err := fmt.Fprintln(stdout, "ssestress", version)
	return err
}

var versionCmd = &command{
	name:     "version",
	summary:  "print the version this binary was built as (also --version)",
	synopsis: "version",
	examples: "  ssestress version\n  ssestress --version",
	setup: func(fs *flagSet) action {
		return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error { return printVersion(stdout) }
	},
}
