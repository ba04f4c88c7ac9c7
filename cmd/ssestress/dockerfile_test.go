package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// repoRoot is the repository's root: the Dockerfile's build context.
var repoRoot = filepath.Join("..", "..")

// dockerfilePath is the image's Dockerfile (docker build -f deploy/Dockerfile .).
var dockerfilePath = filepath.Join(repoRoot, "deploy", "Dockerfile")

// dockerfileStamp and dockerfileRevision are the build arguments the tests
// give, as docker build --build-arg would.
const (
	dockerfileStamp    = "v9.8.7-dockerfile-test"
	dockerfileRevision = "0123456789abcdef0123456789abcdef01234567"
)

// dockerImage is what the tests read from the Dockerfile with BuildKit's own
// parser: the stage that runs go build and the final stage.
type dockerImage struct {
	build, final instructions.Stage
	// goBuild is the RUN that builds the binary, buildDir its WORKDIR and
	// buildEnv the build arguments and ENV it sees.
	goBuild  *instructions.RunCommand
	buildDir string
	buildEnv []string
	// copyFrom is the final stage's COPY --from=build.
	copyFrom *instructions.CopyCommand
}

// parseDockerfile parses the Dockerfile as docker build does and picks out
// the build RUN and the final stage, with the environment docker build
// would give that RUN for buildArgs.
func parseDockerfile(t *testing.T, buildArgs map[string]string) dockerImage {
	t.Helper()
	raw, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", dockerfilePath, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s: %s", dockerfilePath, w.Short)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("%s: %v", dockerfilePath, err)
	}
	if len(metaArgs) != 0 {
		t.Errorf("%s: ARG before the first FROM: keep the base images pinned in their FROM lines", dockerfilePath)
	}
	if len(stages) != 2 {
		t.Fatalf("%s: %d stages, want a build stage and the image", dockerfilePath, len(stages))
	}
	img := dockerImage{build: stages[0], final: stages[1]}
	for _, cmd := range img.build.Commands {
		switch c := cmd.(type) {
		case *instructions.WorkdirCommand:
			img.buildDir = c.Path
		case *instructions.ArgCommand:
			for _, a := range c.Args {
				v, given := buildArgs[a.Key]
				if !given && a.Value != nil {
					v = *a.Value
				}
				img.buildEnv = append(img.buildEnv, a.Key+"="+v)
			}
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				img.buildEnv = append(img.buildEnv, kv.Key+"="+kv.Value)
			}
		case *instructions.RunCommand:
			if strings.Contains(strings.Join(c.CmdLine, " "), "go build") {
				if img.goBuild != nil {
					t.Fatalf("%s: two RUNs run go build", dockerfilePath)
				}
				img.goBuild = c
			}
		}
	}
	if img.goBuild == nil || !img.goBuild.PrependShell {
		t.Fatalf("%s: stage %q has no shell-form RUN of go build", dockerfilePath, img.build.Name)
	}
	for _, cmd := range img.final.Commands {
		if c, ok := cmd.(*instructions.CopyCommand); ok && c.From != "" {
			if c.From != img.build.Name || img.copyFrom != nil {
				t.Fatalf("%s: the image copies from %q; want one COPY --from=%s", dockerfilePath, c.From, img.build.Name)
			}
			img.copyFrom = c
		}
	}
	if img.copyFrom == nil {
		t.Fatalf("%s: the image copies nothing from stage %q", dockerfilePath, img.build.Name)
	}
	return img
}

// TestDockerfileImage checks the image stage: a small pinned base with the
// shell the Job's scripts need, the binary as entry point, a numeric
// non-root user (runAsNonRoot can only check a number), and OCI labels that
// carry the version and revision given as build arguments.
func TestDockerfileImage(t *testing.T) {
	img := parseDockerfile(t, nil)
	if !regexp.MustCompile(`^alpine:\d+\.\d+(\.\d+)?$`).MatchString(img.final.BaseName) {
		t.Errorf("image base %q: want alpine:X.Y (small, pinned, with the /bin/sh the Job's scripts need)", img.final.BaseName)
	}
	if !regexp.MustCompile(`^golang:1\.\d+`).MatchString(img.build.BaseName) {
		t.Errorf("build base %q: want a pinned golang:1.N image", img.build.BaseName)
	}
	args := map[string]bool{}
	var entrypoint []string
	var user string
	labels := map[string]string{}
	lex := shell.NewLex('\\')
	given := map[string]string{"VERSION": dockerfileStamp, "REVISION": dockerfileRevision}
	for _, cmd := range img.final.Commands {
		switch c := cmd.(type) {
		case *instructions.ArgCommand:
			for _, a := range c.Args {
				args[a.Key] = true
			}
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				// A label sees only the build arguments its stage
				// declared before it.
				var declared []string
				for k := range args {
					declared = append(declared, k+"="+given[k])
				}
				v, _, err := lex.ProcessWord(kv.Value, shell.EnvsFromSlice(declared))
				if err != nil {
					t.Fatalf("LABEL %s=%s: %v", kv.Key, kv.Value, err)
				}
				labels[kv.Key] = v
			}
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				t.Errorf("ENTRYPOINT %q is in shell form: signals would go to the shell, not to ssestress", c.CmdLine)
			}
			entrypoint = c.CmdLine
		}
	}
	if labels["org.opencontainers.image.version"] != dockerfileStamp || labels["org.opencontainers.image.revision"] != dockerfileRevision {
		t.Errorf("labels %v: want org.opencontainers.image.version and .revision from the VERSION and REVISION build arguments", labels)
	}
	if labels["org.opencontainers.image.licenses"] != "MIT" {
		t.Errorf("label org.opencontainers.image.licenses %q, want MIT (LICENSE)", labels["org.opencontainers.image.licenses"])
	}
	uid, gid, ok := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root uid", user)
	}
	if n, err := strconv.Atoi(gid); ok && (err != nil || n == 0) {
		t.Errorf("USER %q: want a numeric non-root gid", user)
	}
	if len(entrypoint) != 1 || len(img.copyFrom.SourcePaths) != 1 {
		t.Fatalf("ENTRYPOINT %q, COPY --from %q: want the one binary as entry point", entrypoint, img.copyFrom.SourcePaths)
	}
	if dest := img.copyFrom.DestPath; dest != entrypoint[0] {
		t.Errorf("COPY --from=%s puts the binary at %s, ENTRYPOINT runs %s", img.build.Name, dest, entrypoint[0])
	}
}

// dockerContext copies the build context docker build would send: the
// repository less what .dockerignore excludes. It is also the proof that
// .dockerignore keeps what the build needs.
func dockerContext(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	for _, must := range []string{".git", "x.db", "cmd/x.pcap"} {
		if excluded, _ := pm.MatchesOrParentMatches(must); !excluded {
			t.Errorf(".dockerignore sends %s to the build", must)
		}
	}
	dst := t.TempDir()
	copyTree(t, repoRoot, dst, func(rel string) bool {
		excluded, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatalf(".dockerignore on %s: %v", rel, err)
		}
		return excluded
	})
	return dst
}

// copyTree copies the directories and regular files under src to dst,
// less those skip says to leave out (a skipped directory with its contents).
func copyTree(t *testing.T, src, dst string, skip func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		switch {
		case rel == ".":
			return nil
		case skip(rel) && d.IsDir():
			return filepath.SkipDir
		case skip(rel):
			return nil
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), raw, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fakeGo is a go command that records its environment's CGO_ENABLED and its
// arguments, NUL-separated, in $RECORD.
const fakeGo = `#!/bin/sh
{ printf 'CGO_ENABLED=%s\0' "${CGO_ENABLED-}"; printf '%s\0' "$@"; } > "$RECORD"
`

// buildLikeDockerfile builds the binary as the Dockerfile's build stage
// would for the build arguments: the stage's RUN goes through /bin/sh (as
// docker runs it) with its build arguments and ENV, in a copy of the build
// context, with a go that records what it was asked; then the real go runs
// that command line, the output path (/out/... in the image) moved to a
// temporary directory. It returns the binary and the recorded go command.
func buildLikeDockerfile(t *testing.T, ctx context.Context, buildArgs map[string]string) (string, []string) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to run the Dockerfile's RUN")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	img := parseDockerfile(t, buildArgs)
	src := dockerContext(t)
	for _, cmd := range img.build.Commands {
		if c, ok := cmd.(*instructions.CopyCommand); ok {
			for _, p := range c.SourcePaths {
				if _, err := os.Stat(filepath.Join(src, p)); err != nil {
					t.Errorf("COPY %s: not in the build context: %v", p, err)
				}
			}
		}
	}
	fake := t.TempDir()
	record := filepath.Join(fake, "record")
	if err := os.WriteFile(filepath.Join(fake, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	sh := exec.CommandContext(ctx, "/bin/sh", "-c", strings.Join(img.goBuild.CmdLine, " "))
	sh.Dir = src
	sh.Env = append([]string{"PATH=" + fake + ":/usr/bin:/bin", "RECORD=" + record}, img.buildEnv...)
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("RUN %s: %v: %s", img.goBuild.CmdLine, err, out)
	}
	raw, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("RUN %s did not run go: %v", img.goBuild.CmdLine, err)
	}
	words := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	cgo, goArgs := words[0], words[1:]
	if cgo != "CGO_ENABLED=0" {
		t.Errorf("RUN %s: go build runs with %s, want CGO_ENABLED=0 (a static binary)", img.goBuild.CmdLine, cgo)
	}
	if len(goArgs) == 0 || goArgs[0] != "build" {
		t.Fatalf("RUN %s runs go %q", img.goBuild.CmdLine, goArgs)
	}

	// The binary goes where COPY --from takes it; here, a temp dir.
	bin := filepath.Join(t.TempDir(), "ssestress")
	out := -1
	for i, a := range goArgs {
		if a == "-o" && i+1 < len(goArgs) {
			out = i + 1
		}
	}
	if out < 0 {
		t.Fatalf("go %q: no -o", goArgs)
	}
	built := goArgs[out]
	if !filepath.IsAbs(built) {
		built = filepath.Join(img.buildDir, built)
	}
	if img.copyFrom.SourcePaths[0] != built {
		t.Errorf("go build writes %s, the image copies %s", built, img.copyFrom.SourcePaths[0])
	}
	run := append([]string(nil), goArgs...)
	run[out] = bin
	gobuild := exec.CommandContext(ctx, goBin, run...)
	gobuild.Dir = src
	gobuild.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := gobuild.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(run, " "), err, out)
	}
	return bin, goArgs
}

// TestDockerfileBuildsStampedStaticBinary builds the binary as the image's
// build stage does (docker build cannot run here) and checks it: static,
// built with -trimpath and -s -w, stamped with the VERSION build argument,
// saying so in `version` and in the session files it writes.
func TestDockerfileBuildsStampedStaticBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, goArgs := buildLikeDockerfile(t, ctx, map[string]string{"VERSION": dockerfileStamp, "REVISION": dockerfileRevision})
	line := strings.Join(goArgs, " ")
	for _, want := range []string{"-trimpath", "./cmd/ssestress"} {
		if !strings.Contains(line, want) {
			t.Errorf("go %s: no %s", line, want)
		}
	}

	// What the go command recorded in the binary: the flags it was given.
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings %v: want CGO_ENABLED=0 and -trimpath", settings)
	}
	// With -trimpath the go command does not record -ldflags (they may
	// hold paths): read them from the command line, and check their effect
	// below (no symbol table, no DWARF, the stamp printed).
	var ldflags string
	for i, a := range goArgs {
		if a == "-ldflags" && i+1 < len(goArgs) {
			ldflags = goArgs[i+1]
		} else if v, ok := strings.CutPrefix(a, "-ldflags="); ok {
			ldflags = v
		}
	}
	for _, want := range []string{"-s", "-w", "-X main.version=" + dockerfileStamp} {
		if !strings.Contains(" "+ldflags+" ", " "+want+" ") {
			t.Errorf("-ldflags %q lacks %q", ldflags, want)
		}
	}
	if info.Path != "github.com/ssestress/ssestress/cmd/ssestress" {
		t.Errorf("binary of %s, want cmd/ssestress", info.Path)
	}

	// Static: no program interpreter, no shared libraries; stripped.
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := ef.ImportedLibraries(); len(libs) != 0 {
		t.Errorf("the binary needs %v: not static", libs)
	}
	if ef.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -s did not strip it")
	}
	if ef.Section(".debug_info") != nil || ef.Section(".zdebug_info") != nil {
		t.Error("the binary has DWARF: -w did not drop it")
	}
	ef.Close()

	for _, arg := range []string{"version", "--version"} {
		out, err := exec.CommandContext(ctx, bin, arg).CombinedOutput()
		if err != nil {
			t.Fatalf("ssestress %s: %v: %s", arg, err, out)
		}
		if got, want := string(out), "ssestress "+dockerfileStamp+"\n"; got != want {
			t.Errorf("ssestress %s printed %q, want %q", arg, got, want)
		}
	}

	// The stamp is what session files record as the tool that wrote them.
	db := filepath.Join(t.TempDir(), "run.db")
	run := exec.CommandContext(ctx, bin, "run", "--scenario", "flood", "--connections", "2", "--rate", "20",
		"--duration", "300ms", "--event-rate", "100", "--out", db)
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("ssestress run: %v: %s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "inspect", "--json", db).Output()
	if err != nil {
		t.Fatalf("ssestress inspect: %v", err)
	}
	var rep struct {
		Run struct {
			Tool string `json:"tool"`
		} `json:"run"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("inspect --json: %v: %s", err, out)
	}
	if want := "ssestress " + dockerfileStamp; rep.Run.Tool != want {
		t.Errorf("the session file says it was written by %q, want %q", rep.Run.Tool, want)
	}
}
