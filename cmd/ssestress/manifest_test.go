package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ssestress/ssestress/internal/session"
)

// manifestPath is the Kubernetes manifest of deploy/kubernetes.
var manifestPath = filepath.Join("..", "..", "deploy", "kubernetes", "ssestress-job.yaml")

// k8sContainer is what the test needs of a container: its command line
// and environment.
type k8sContainer struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
}

type k8sJob struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		CompletionMode string `yaml:"completionMode"`
		Completions    int    `yaml:"completions"`
		Template       struct {
			Spec struct {
				InitContainers []k8sContainer `yaml:"initContainers"`
				Containers     []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func loadJobs(t *testing.T) map[string]k8sJob {
	t.Helper()
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]k8sJob{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var j k8sJob
		if err := dec.Decode(&j); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", manifestPath, err)
		}
		if j.Kind == "Job" {
			jobs[j.Metadata.Name] = j
		}
	}
	return jobs
}

// expandK8s applies Kubernetes' expansion of command and args: $(NAME)
// becomes the value of the container's variable NAME (left as is when
// there is none), and $$ a literal $.
func expandK8s(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				b.WriteByte('$')
				continue
			}
			name := s[i+2 : i+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
				i += end
			} else {
				b.WriteByte('$')
			}
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// fakeSSEStress is an ssestress that records each invocation's arguments,
// NUL-separated, in $CAPTURE_DIR/<n>, and succeeds.
const fakeSSEStress = `#!/bin/sh
n=$(ls "$CAPTURE_DIR" | wc -l | tr -d ' ')
printf '%s\0' "$@" > "$CAPTURE_DIR/$n"
`

// scriptRun runs a container's script as the pod would (Kubernetes
// expansion, then /bin/sh -c with the container's environment and extra)
// with the fake ssestress first in PATH, and returns each ssestress
// invocation's arguments.
func scriptRun(ctx context.Context, t *testing.T, c k8sContainer, bin string, extra map[string]string) ([][]string, error) {
	t.Helper()
	if strings.Join(c.Command, " ") != "/bin/sh -c" || len(c.Args) != 1 {
		t.Fatalf("%s: command %q args %q: want /bin/sh -c SCRIPT", c.Name, c.Command, c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for k, v := range extra {
		env[k] = v
	}
	captureDir := t.TempDir()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", expandK8s(c.Args[0], env))
	// A killed script's sleep keeps the output pipe open: stop waiting
	// for it soon after.
	cmd.WaitDelay = time.Second
	cmd.Env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "CAPTURE_DIR=" + captureDir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s script: %v: %s", c.Name, err, out)
	}
	names, _ := os.ReadDir(captureDir)
	sort.Slice(names, func(i, j int) bool {
		a, _ := strconv.Atoi(names[i].Name())
		b, _ := strconv.Atoi(names[j].Name())
		return a < b
	})
	var calls [][]string
	for _, n := range names {
		raw, err := os.ReadFile(filepath.Join(captureDir, n.Name()))
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00"))
	}
	return calls, nil
}

// TestManifestCommandLines runs the manifest's scripts through a real
// shell, as each pod would, with an ssestress that records its arguments;
// then hands those arguments to the real flag parsing of run (every shard)
// and to the real report (on session files at the paths the shards were
// given): the command lines of the manifest are accepted by this binary.
func TestManifestCommandLines(t *testing.T) {
	if _, err := parseRunArgs([]string{"--shard", "1/2"}, io.Discard); err != nil && strings.Contains(err.Error(), "shard") {
		t.Skipf("ssestress run does not accept --shard yet (%v); the manifest's shards need it", err)
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to run the manifest's scripts")
	}
	jobs := loadJobs(t)
	shards, report := jobs["ssestress-shards"], jobs["ssestress-report"]
	if shards.Spec.CompletionMode != "Indexed" || shards.Spec.Completions < 2 {
		t.Fatalf("ssestress-shards: completionMode %q, completions %d", shards.Spec.CompletionMode, shards.Spec.Completions)
	}
	if len(shards.Spec.Template.Spec.Containers) != 1 || len(report.Spec.Template.Spec.InitContainers) != 1 || len(report.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("want one container in ssestress-shards, one init container and one container in ssestress-report")
	}
	n := shards.Spec.Completions
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	sessions := filepath.Join(tmp, "sessions")
	os.Mkdir(bin, 0o755)
	os.Mkdir(sessions, 0o755)
	if err := os.WriteFile(filepath.Join(bin, "ssestress"), []byte(fakeSSEStress), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The pods' session directory is the volume; here a temp dir.
	dir := map[string]string{"SESSION_DIR": sessions}

	wait := report.Spec.Template.Spec.InitContainers[0]
	waitCtx, waitCancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	if _, err := scriptRun(waitCtx, t, wait, bin, dir); err == nil {
		t.Error("the report's wait step finished before any shard did")
	}
	waitCancel()

	for i := 0; i < n; i++ {
		env := map[string]string{"SESSION_DIR": sessions, "JOB_COMPLETION_INDEX": strconv.Itoa(i)}
		calls, err := scriptRun(ctx, t, shards.Spec.Template.Spec.Containers[0], bin, env)
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) != 1 || len(calls[0]) < 2 || calls[0][0] != "run" {
			t.Fatalf("completion index %d ran %q, want one ssestress run", i, calls)
		}
		args := calls[0][1:]
		o, err := parseRunArgs(args, io.Discard)
		if err != nil {
			t.Fatalf("completion index %d: ssestress run %s: %v", i, strings.Join(args, " "), err)
		}
		wantOut := filepath.Join(sessions, fmt.Sprintf("shard-%d.db", i+1))
		if o.out != wantOut {
			t.Errorf("completion index %d writes %s, want %s", i, o.out, wantOut)
		}
		if line := strings.Join(args, " "); !strings.Contains(line, fmt.Sprintf("--shard %d/%d", i+1, n)) {
			t.Errorf("completion index %d: %s: want --shard %d/%d", i, line, i+1, n)
		}
		// The session file that run would have written.
		w, err := session.Create(o.out, session.Options{})
		if err != nil {
			t.Fatal(err)
		}
		w.PutMeta(session.MetaRun, session.RunInfo{Tool: "ssestress test", Command: "run", Args: args, Scenario: o.cfg.Scenario,
			StartedAt: time.Now().Add(-time.Minute), EndedAt: time.Now()})
		w.PutMeta(session.MetaSummary, session.Summary{Scenario: o.cfg.Scenario, DurationS: 60, Clients: 3, Events: 30})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := scriptRun(ctx, t, wait, bin, dir); err != nil {
		t.Fatalf("the report's wait step, every shard done: %v", err)
	}
	calls, err := scriptRun(ctx, t, report.Spec.Template.Spec.Containers[0], bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 {
		t.Fatal("the report step runs no ssestress")
	}
	for _, call := range calls {
		if call[0] != "report" {
			t.Fatalf("report step runs ssestress %q", call)
		}
		files := 0
		for _, a := range call[1:] {
			if strings.HasSuffix(a, ".db") {
				files++
			}
		}
		if files != n {
			t.Errorf("ssestress %s: %d session files, want the %d shards'", strings.Join(call, " "), files, n)
		}
		var out, errOut bytes.Buffer
		if err := runReport(ctx, call[1:], &out, &errOut); err != nil {
			t.Fatalf("ssestress %s: %v", strings.Join(call, " "), err)
		}
		if out.Len() == 0 && !strings.Contains(errOut.String(), "wrote") {
			t.Errorf("ssestress %s printed and wrote nothing", strings.Join(call, " "))
		}
	}
	if st, err := os.Stat(filepath.Join(sessions, "report.md")); err != nil || st.Size() == 0 {
		t.Errorf("the merged markdown report next to the session files: %v", err)
	}
}

// TestExpandK8s checks the test's own Kubernetes expansion.
func TestExpandK8s(t *testing.T) {
	env := map[string]string{"A": "1", "EMPTY": ""}
	for in, want := range map[string]string{
		"$(A)/$(B)":         "1/$(B)",
		"$$((X + 1))":       "$((X + 1))",
		"x$(EMPTY)y $$A $A": "xy $A $A",
		"$":                 "$",
		"$(":                "$(",
	} {
		if got := expandK8s(in, env); got != want {
			t.Errorf("expandK8s(%q) = %q, want %q", in, got, want)
		}
	}
}
