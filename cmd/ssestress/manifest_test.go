package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/ssestress/ssestress/internal/session"
)

// The Kubernetes manifests of deploy/kubernetes: the run at the
// "restricted" Pod Security level, and the same run with packet capture.
var (
	manifestPath        = filepath.Join(repoRoot, "deploy", "kubernetes", "ssestress-job.yaml")
	captureManifestPath = filepath.Join(repoRoot, "deploy", "kubernetes", "ssestress-job-capture.yaml")
)

// k8sManifest is one manifest file, decoded into the Kubernetes API's own
// types.
type k8sManifest struct {
	path   string
	claim  corev1.PersistentVolumeClaim
	shards batchv1.Job // the Indexed Job of the shards
	report batchv1.Job // the Job that merges them
}

// loadManifest decodes every object of a manifest file strictly (an unknown
// or repeated field fails, as kubectl apply --validate=strict would) into
// k8s.io/api types, and requires exactly the claim and the two Jobs.
func loadManifest(t *testing.T, path string) k8sManifest {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := k8sManifest{path: path}
	seen := map[string]bool{}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var head struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		var fields map[string]any
		if err := yaml.Unmarshal(doc, &fields); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(fields) == 0 {
			continue // comments only
		}
		yaml.Unmarshal(doc, &head)
		var obj any
		switch head.APIVersion + " " + head.Kind + " " + head.Metadata.Name {
		case "v1 PersistentVolumeClaim ssestress-sessions":
			obj = &m.claim
		case "batch/v1 Job ssestress-shards":
			obj = &m.shards
		case "batch/v1 Job ssestress-report":
			obj = &m.report
		default:
			t.Fatalf("%s: unexpected object %s %s %q", path, head.APIVersion, head.Kind, head.Metadata.Name)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s: %s %s: %v", path, head.Kind, head.Metadata.Name, err)
		}
		key := head.Kind + "/" + head.Metadata.Name
		if seen[key] {
			t.Fatalf("%s: %s defined twice", path, key)
		}
		seen[key] = true
	}
	for _, want := range []string{"PersistentVolumeClaim/ssestress-sessions", "Job/ssestress-shards", "Job/ssestress-report"} {
		if !seen[want] {
			t.Fatalf("%s: no %s", path, want)
		}
	}
	if len(seen) != 3 {
		t.Errorf("%s: %d objects, want the claim and the two Jobs", path, len(seen))
	}
	return m
}

// containers is every container of a pod, init containers first.
func containers(pod *corev1.PodSpec) []*corev1.Container {
	var all []*corev1.Container
	for i := range pod.InitContainers {
		all = append(all, &pod.InitContainers[i])
	}
	for i := range pod.Containers {
		all = append(all, &pod.Containers[i])
	}
	return all
}

// envOf returns a container's variable, which must be a plain value.
func envOf(t *testing.T, c *corev1.Container, name string) (string, bool) {
	t.Helper()
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("%s: env %s comes from %v: the tests need plain values", c.Name, e.Name, e.ValueFrom)
		}
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// TestManifestStructure checks each manifest is what deploy/kubernetes/
// README.md says: an Indexed Job of SHARDS shards on a shared volume, each
// scraped by Prometheus, and a report Job on the same volume, consistent with
// each other and bounded in time.
func TestManifestStructure(t *testing.T) {
	for _, path := range []string{manifestPath, captureManifestPath} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m := loadManifest(t, path)
			if m.claim.Spec.Resources.Requests.Storage().IsZero() || len(m.claim.Spec.AccessModes) == 0 {
				t.Errorf("claim %s: no storage request or access mode", m.claim.Name)
			}
			s := m.shards.Spec
			if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion || s.Completions == nil || s.Parallelism == nil {
				t.Fatalf("shards Job: completionMode %v, completions %v, parallelism %v: want an Indexed Job with both set", s.CompletionMode, s.Completions, s.Parallelism)
			}
			if s.BackoffLimit == nil || *s.BackoffLimit != 0 {
				t.Error("shards Job: backoffLimit must be 0 (a retried shard would find its session file written)")
			}
			if len(s.Template.Spec.Containers) != 1 || len(s.Template.Spec.InitContainers) != 0 {
				t.Fatalf("shards Job: want one container")
			}
			run := &s.Template.Spec.Containers[0]
			n, _ := envOf(t, run, "SHARDS")
			if want := strconv.Itoa(int(*s.Completions)); n != want || *s.Parallelism != *s.Completions {
				t.Errorf("SHARDS=%q, completions %d, parallelism %d: they must be equal", n, *s.Completions, *s.Parallelism)
			}
			if !strings.Contains(strings.Join(run.Args, "\n"), "JOB_COMPLETION_INDEX") {
				t.Error("the shard command does not use JOB_COMPLETION_INDEX")
			}

			// Prometheus finds the shards' /metrics by the pod annotations.
			ann := s.Template.Annotations
			if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" {
				t.Errorf("shard pods: annotations %v: want prometheus.io/scrape \"true\" and path /metrics", ann)
			}
			var metricsPort int32
			for _, p := range run.Ports {
				if p.Name == "metrics" {
					metricsPort = p.ContainerPort
				}
			}
			if ann["prometheus.io/port"] != strconv.Itoa(int(metricsPort)) || metricsPort == 0 {
				t.Errorf("annotation prometheus.io/port %q, container port \"metrics\" %d: want the same port", ann["prometheus.io/port"], metricsPort)
			}

			// The report waits for as many shards as there are, within a
			// deadline longer than the shards'.
			r := m.report.Spec
			if len(r.Template.Spec.InitContainers) != 1 || len(r.Template.Spec.Containers) != 1 {
				t.Fatal("report Job: want one init container (waiting for the shards) and one container")
			}
			if got, _ := envOf(t, &r.Template.Spec.InitContainers[0], "SHARDS"); got != n {
				t.Errorf("report waits for SHARDS=%q, the shards Job has %q", got, n)
			}
			if s.ActiveDeadlineSeconds == nil || r.ActiveDeadlineSeconds == nil || *r.ActiveDeadlineSeconds <= *s.ActiveDeadlineSeconds {
				t.Errorf("activeDeadlineSeconds: shards %v, report %v: both bounded, the report's the longer", s.ActiveDeadlineSeconds, r.ActiveDeadlineSeconds)
			}

			// Every container mounts the claim at its SESSION_DIR and runs
			// the same image through sh -c.
			for _, job := range []*batchv1.Job{&m.shards, &m.report} {
				pod := &job.Spec.Template.Spec
				if pod.RestartPolicy != corev1.RestartPolicyNever {
					t.Errorf("%s: restartPolicy %q, want Never", job.Name, pod.RestartPolicy)
				}
				if len(pod.Volumes) != 1 || pod.Volumes[0].PersistentVolumeClaim == nil || pod.Volumes[0].PersistentVolumeClaim.ClaimName != m.claim.Name {
					t.Fatalf("%s: volumes %+v, want the claim %s", job.Name, pod.Volumes, m.claim.Name)
				}
				for _, c := range containers(pod) {
					dir, ok := envOf(t, c, "SESSION_DIR")
					if !ok || len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != dir || c.VolumeMounts[0].Name != pod.Volumes[0].Name {
						t.Errorf("%s/%s: SESSION_DIR %q, mounts %+v: the session directory must be the volume's mount path", job.Name, c.Name, dir, c.VolumeMounts)
					}
					if c.Image != run.Image {
						t.Errorf("%s/%s: image %q, the shards run %q", job.Name, c.Name, c.Image, run.Image)
					}
					if strings.Join(c.Command, " ") != "/bin/sh -c" || len(c.Args) != 1 || !strings.HasPrefix(c.Args[0], "set -eu\n") {
						t.Errorf("%s/%s: command %q args %q: want /bin/sh -c with one script starting with set -eu", job.Name, c.Name, c.Command, c.Args)
					}
				}
			}
		})
	}
}

// securityOf is the security context a container runs with: its own
// settings over its pod's.
type securityOf struct {
	runAsNonRoot             *bool
	runAsUser, runAsGroup    *int64
	allowPrivilegeEscalation *bool
	privileged               *bool
	seccomp                  *corev1.SeccompProfile
	drop, add                []corev1.Capability
	fsGroup                  *int64
}

func effectiveSecurity(pod *corev1.PodSpec, c *corev1.Container) securityOf {
	var s securityOf
	if p := pod.SecurityContext; p != nil {
		s.runAsNonRoot, s.runAsUser, s.runAsGroup, s.seccomp, s.fsGroup = p.RunAsNonRoot, p.RunAsUser, p.RunAsGroup, p.SeccompProfile, p.FSGroup
	}
	if cs := c.SecurityContext; cs != nil {
		if cs.RunAsNonRoot != nil {
			s.runAsNonRoot = cs.RunAsNonRoot
		}
		if cs.RunAsUser != nil {
			s.runAsUser = cs.RunAsUser
		}
		if cs.RunAsGroup != nil {
			s.runAsGroup = cs.RunAsGroup
		}
		if cs.SeccompProfile != nil {
			s.seccomp = cs.SeccompProfile
		}
		s.allowPrivilegeEscalation, s.privileged = cs.AllowPrivilegeEscalation, cs.Privileged
		if cs.Capabilities != nil {
			s.drop, s.add = cs.Capabilities.Drop, cs.Capabilities.Add
		}
	}
	return s
}

// restrictedLevel evaluates a pod template with the Pod Security admission's
// own checks at the "restricted" level of the newest version; it returns the
// reasons it would be refused.
func restrictedLevel(t *testing.T, level psaapi.Level, tmpl *corev1.PodTemplateSpec) []string {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var refused []string
	for _, r := range ev.EvaluatePod(psaapi.LevelVersion{Level: level, Version: psaapi.LatestVersion()}, &tmpl.ObjectMeta, &tmpl.Spec) {
		if !r.Allowed {
			refused = append(refused, r.ForbiddenReason+" ("+r.ForbiddenDetail+")")
		}
	}
	sort.Strings(refused)
	return refused
}

// TestManifestRestricted checks every container of ssestress-job.yaml at the
// "restricted" Pod Security level, field by field and with the admission
// controller's own evaluator, running as the image's user.
func TestManifestRestricted(t *testing.T) {
	m := loadManifest(t, manifestPath)
	var imageUser int64 = -1
	for _, cmd := range parseDockerfile(t, nil).final.Commands {
		if u, ok := cmd.(*instructions.UserCommand); ok {
			uid, _, _ := strings.Cut(u.User, ":")
			imageUser, _ = strconv.ParseInt(uid, 10, 64)
		}
	}
	for _, job := range []*batchv1.Job{&m.shards, &m.report} {
		pod := &job.Spec.Template.Spec
		if refused := restrictedLevel(t, psaapi.LevelRestricted, &job.Spec.Template); len(refused) > 0 {
			t.Errorf("%s: the restricted Pod Security level refuses it: %s", job.Name, strings.Join(refused, "; "))
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken: the pods never talk to the API server", job.Name)
		}
		for _, c := range containers(pod) {
			s := effectiveSecurity(pod, c)
			where := job.Name + "/" + c.Name
			if s.runAsNonRoot == nil || !*s.runAsNonRoot || s.runAsUser == nil || *s.runAsUser == 0 {
				t.Errorf("%s: runAsNonRoot %v, runAsUser %v: want a non-root user", where, s.runAsNonRoot, s.runAsUser)
			} else if *s.runAsUser != imageUser {
				t.Errorf("%s: runs as %d, the image's USER is %d", where, *s.runAsUser, imageUser)
			}
			if s.allowPrivilegeEscalation == nil || *s.allowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation must be false", where)
			}
			if s.privileged != nil && *s.privileged {
				t.Errorf("%s: privileged", where)
			}
			if !slices.Contains(s.drop, "ALL") || len(s.add) != 0 {
				t.Errorf("%s: capabilities drop %v add %v: want drop [ALL], nothing added", where, s.drop, s.add)
			}
			if s.seccomp == nil || s.seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile %v: want RuntimeDefault", where, s.seccomp)
			}
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem: everything is written to the volume", where)
			}
		}
	}
}

// TestManifestCaptureVariant checks ssestress-job-capture.yaml is
// ssestress-job.yaml but for the shard container's capture: --capture on
// its command line, NET_RAW its one capability, run as root (a capability
// added to a non-root container never reaches its processes: see
// TestCaptureVariantCanCapture). Pod Security's own evaluator agrees: the
// shard pods are refused by "restricted" and "baseline" for the capability
// and the user alone.
func TestManifestCaptureVariant(t *testing.T) {
	base := loadManifest(t, manifestPath)
	capt := loadManifest(t, captureManifestPath)
	if !apiequality.Semantic.DeepEqual(base.claim, capt.claim) {
		t.Error("the capture variant's claim differs")
	}
	if !apiequality.Semantic.DeepEqual(base.report, capt.report) {
		t.Error("the capture variant's report Job differs")
	}

	refused := restrictedLevel(t, psaapi.LevelRestricted, &capt.shards.Spec.Template)
	if want := []string{`runAsNonRoot != true (container "run" must not set securityContext.runAsNonRoot=false)`,
		`runAsUser=0 (container "run" must not set runAsUser=0)`,
		`unrestricted capabilities (container "run" must not include "NET_RAW" in securityContext.capabilities.add)`}; !slices.Equal(refused, want) {
		t.Errorf("restricted level refuses the capture shards for\n  %s\nwant\n  %s", strings.Join(refused, "\n  "), strings.Join(want, "\n  "))
	}
	refused = restrictedLevel(t, psaapi.LevelBaseline, &capt.shards.Spec.Template)
	if want := []string{`non-default capabilities (container "run" must not include "NET_RAW" in securityContext.capabilities.add)`}; !slices.Equal(refused, want) {
		t.Errorf("baseline level refuses the capture shards for\n  %s\nwant\n  %s", strings.Join(refused, "\n  "), strings.Join(want, "\n  "))
	}

	shards := capt.shards.DeepCopy()
	c := &shards.Spec.Template.Spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_RAW"}) {
		t.Fatalf("capture shard container: securityContext %v: want capabilities.add [NET_RAW]", sc)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsNonRoot == nil || *sc.RunAsNonRoot {
		t.Errorf("capture shard container: runAsUser %v, runAsNonRoot %v: want 0 and false (NET_RAW reaches root only)", sc.RunAsUser, sc.RunAsNonRoot)
	}
	if !strings.Contains(c.Args[0], " --capture") {
		t.Error("the capture shard does not run with --capture")
	}
	// Undo exactly those changes: what is left is the restricted manifest.
	sc.Capabilities.Add, sc.RunAsUser, sc.RunAsNonRoot = nil, nil, nil
	c.Args[0] = strings.Replace(c.Args[0], " --capture", "", 1)
	if !apiequality.Semantic.DeepEqual(base.shards, *shards) {
		a, _ := yaml.Marshal(base.shards)
		b, _ := yaml.Marshal(shards)
		t.Errorf("the capture variant's shards Job differs from ssestress-job.yaml's beyond --capture, NET_RAW and the user:\n%s\n---\n%s", a, b)
	}
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
// NUL-separated, in $CAPTURE_DIR/<n>, then exits $FAKE_EXIT (0 unless set);
// with FAKE_WAIT_TERM set to a file it first waits for SIGTERM, notes it in
// that file and exits 130, as ssestress does after its summary.
const fakeSSEStress = `#!/bin/sh
if [ -n "${FAKE_WAIT_TERM-}" ]; then
  # Before the arguments are recorded: a test signals once they are.
  trap 'kill "$s" 2>/dev/null; echo TERM > "$FAKE_WAIT_TERM"; exit 130' TERM
fi
n=$(ls "$CAPTURE_DIR" | wc -l | tr -d ' ')
printf '%s\0' "$@" > "$CAPTURE_DIR/$n.tmp" && mv "$CAPTURE_DIR/$n.tmp" "$CAPTURE_DIR/$n"
if [ -n "${FAKE_WAIT_TERM-}" ]; then
  sleep 60 & s=$!
  wait "$s"
  exit 1
fi
exit "${FAKE_EXIT:-0}"
`

// podScript is a container's script ready to run as the pod would:
// Kubernetes' expansion, then /bin/sh -c with the container's environment
// and extra, and the fake ssestress first in PATH. Its output goes to a file
// (a background sleep left by the script would hold a pipe open).
type podScript struct {
	cmd        *exec.Cmd
	captureDir string
	output     string
}

func newPodScript(ctx context.Context, t *testing.T, c *corev1.Container, extra map[string]string) *podScript {
	t.Helper()
	if strings.Join(c.Command, " ") != "/bin/sh -c" || len(c.Args) != 1 {
		t.Fatalf("%s: command %q args %q: want /bin/sh -c SCRIPT", c.Name, c.Command, c.Args)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "ssestress"), []byte(fakeSSEStress), 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for k, v := range extra {
		env[k] = v
	}
	p := &podScript{captureDir: t.TempDir(), output: filepath.Join(t.TempDir(), "output")}
	out, err := os.Create(p.output)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	p.cmd = exec.CommandContext(ctx, "/bin/sh", "-c", expandK8s(c.Args[0], env))
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "CAPTURE_DIR=" + p.captureDir}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	return p
}

func (p *podScript) Output() string {
	raw, _ := os.ReadFile(p.output)
	return string(raw)
}

// calls returns each ssestress invocation's arguments, in order.
func (p *podScript) calls(t *testing.T) [][]string {
	t.Helper()
	names, _ := os.ReadDir(p.captureDir)
	var nums []int
	for _, n := range names {
		if i, err := strconv.Atoi(n.Name()); err == nil {
			nums = append(nums, i)
		}
	}
	sort.Ints(nums)
	var calls [][]string
	for _, n := range nums {
		raw, err := os.ReadFile(filepath.Join(p.captureDir, strconv.Itoa(n)))
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00"))
	}
	return calls
}

// scriptRun runs a container's script to its end (see podScript) and returns
// each ssestress invocation's arguments.
func scriptRun(ctx context.Context, t *testing.T, c *corev1.Container, extra map[string]string) ([][]string, error) {
	t.Helper()
	p := newPodScript(ctx, t, c, extra)
	if err := p.cmd.Run(); err != nil {
		return p.calls(t), fmt.Errorf("%s script: %w: %s", c.Name, err, p.Output())
	}
	return p.calls(t), nil
}

// flagValue returns the value of --name in args (--name V or --name=V).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// fastWait are the report wait step's settings in these tests: look every
// second; the heartbeat and start limits stay the manifest's unless a test
// says otherwise.
var fastWait = map[string]string{"POLL_S": "1", "HEARTBEAT_S": "1"}

func withEnv(base map[string]string, kv ...string) map[string]string {
	env := map[string]string{}
	for k, v := range base {
		env[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

// TestManifestCommandLines runs each manifest's scripts through a real
// shell, as each pod would, with an ssestress that records its arguments;
// then hands those arguments to the real flag parsing of run (every shard)
// and to the real report (on session files at the paths the shards were
// given): the command lines of the manifests are accepted by this binary.
func TestManifestCommandLines(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to run the manifest's scripts")
	}
	for _, path := range []string{manifestPath, captureManifestPath} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m := loadManifest(t, path)
			shardC := &m.shards.Spec.Template.Spec.Containers[0]
			wait := &m.report.Spec.Template.Spec.InitContainers[0]
			reportC := &m.report.Spec.Template.Spec.Containers[0]
			n := int(*m.shards.Spec.Completions)
			sessions := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			dir := withEnv(fastWait, "SESSION_DIR", sessions)

			// Before any shard: still waiting when stopped, not failed.
			waitCtx, waitCancel := context.WithTimeout(ctx, 2500*time.Millisecond)
			_, err := scriptRun(waitCtx, t, wait, dir)
			if err == nil || waitCtx.Err() == nil {
				t.Errorf("the report's wait step ended (%v) before any shard had started", err)
			}
			waitCancel()

			for i := 0; i < n; i++ {
				calls, err := scriptRun(ctx, t, shardC, withEnv(dir, "JOB_COMPLETION_INDEX", strconv.Itoa(i)))
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
				mark := filepath.Join(sessions, fmt.Sprintf("shard-%d", i+1))
				if o.out != mark+".db" {
					t.Errorf("completion index %d writes %s, want %s.db", i, o.out, mark)
				}
				if got, _ := flagValue(args, "shard"); got != fmt.Sprintf("%d/%d", i+1, n) {
					t.Errorf("completion index %d: --shard %q, want %d/%d", i, got, i+1, n)
				}
				// Prometheus reaches the live view from outside the pod.
				if got, want := o.httpAddr, "0.0.0.0:"+m.shards.Spec.Template.Annotations["prometheus.io/port"]; got != want {
					t.Errorf("completion index %d: --http %q, want %s (every interface, the annotated port)", i, got, want)
				}
				if capturing := slices.Contains(args, "--capture"); capturing != (path == captureManifestPath) {
					t.Errorf("completion index %d: --capture %v in %s", i, capturing, filepath.Base(path))
				}
				for _, suffix := range []string{".done", ".alive"} {
					if _, err := os.Stat(mark + suffix); err != nil {
						t.Errorf("completion index %d: %v", i, err)
					}
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

			if _, err := scriptRun(ctx, t, wait, dir); err != nil {
				t.Fatalf("the report's wait step, every shard done: %v", err)
			}
			calls, err := scriptRun(ctx, t, reportC, dir)
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
				if err := reportCmd.execute(ctx, call[1:], &out, &errOut); err != nil {
					t.Fatalf("ssestress %s: %v", strings.Join(call, " "), err)
				}
				if out.Len() == 0 && !strings.Contains(errOut.String(), "wrote") {
					t.Errorf("ssestress %s printed and wrote nothing", strings.Join(call, " "))
				}
			}
			if st, err := os.Stat(filepath.Join(sessions, "report.md")); err != nil || st.Size() == 0 {
				t.Errorf("the merged markdown report next to the session files: %v", err)
			}
		})
	}
}

// waitFails runs the report's wait step on sessions and requires it to fail
// by itself (not stopped by the test's deadline), soon, saying want.
func waitFails(t *testing.T, wait *corev1.Container, env map[string]string, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := scriptRun(ctx, t, wait, env)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("the wait step did not fail by itself (%v)", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("the wait step failed with %v, want it to say %q", err, want)
	}
	t.Logf("the wait step failed after %v: %v", time.Since(start).Round(100*time.Millisecond), err)
}

// TestManifestFailFast: the report step does not wait for its deadline when
// a shard fails. A shard whose ssestress exits non-zero marks itself failed;
// one killed outright (OOM, node lost) stops its heartbeat; one never
// scheduled never starts one; a pod deleted or evicted passes SIGTERM on to
// ssestress. Each makes the wait step fail within seconds. A threshold
// failure (exit 3) leaves a whole session file: the shard is done.
func TestManifestFailFast(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to run the manifest's scripts")
	}
	m := loadManifest(t, manifestPath)
	shardC := &m.shards.Spec.Template.Spec.Containers[0]
	wait := &m.report.Spec.Template.Spec.InitContainers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("exit status", func(t *testing.T) {
		sessions := t.TempDir()
		env := withEnv(fastWait, "SESSION_DIR", sessions)
		if _, err := scriptRun(ctx, t, shardC, withEnv(env, "JOB_COMPLETION_INDEX", "0")); err != nil {
			t.Fatal(err)
		}
		_, err := scriptRun(ctx, t, shardC, withEnv(env, "JOB_COMPLETION_INDEX", "1", "FAKE_EXIT", "1"))
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("a shard whose ssestress exits 1: %v, want exit 1", err)
		}
		if raw, err := os.ReadFile(filepath.Join(sessions, "shard-2.failed")); err != nil || !strings.Contains(string(raw), "exited 1") {
			t.Fatalf("shard-2.failed: %q, %v", raw, err)
		}
		if _, err := os.Stat(filepath.Join(sessions, "shard-2.done")); err == nil {
			t.Error("a failed shard is marked done")
		}
		waitFails(t, wait, env, "shard 2 failed: ssestress run exited 1")
	})

	t.Run("threshold", func(t *testing.T) {
		sessions := t.TempDir()
		env := withEnv(fastWait, "SESSION_DIR", sessions)
		_, err := scriptRun(ctx, t, shardC, withEnv(env, "JOB_COMPLETION_INDEX", "0", "FAKE_EXIT", "3"))
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("a shard whose ssestress exits 3: %v, want exit 3", err)
		}
		if _, err := os.Stat(filepath.Join(sessions, "shard-1.done")); err != nil {
			t.Errorf("a shard whose thresholds failed is whole, so done: %v", err)
		}
	})

	t.Run("heartbeat", func(t *testing.T) {
		sessions := t.TempDir()
		env := withEnv(fastWait, "SESSION_DIR", sessions)
		os.WriteFile(filepath.Join(sessions, "shard-1.done"), nil, 0o644)
		alive := filepath.Join(sessions, "shard-2.alive")
		os.WriteFile(alive, nil, 0o644)
		v, _ := envOf(t, wait, "STALE_S")
		stale, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("STALE_S %q: %v", v, err)
		}
		old := time.Now().Add(-time.Duration(stale+60) * time.Second)
		if err := os.Chtimes(alive, old, old); err != nil {
			t.Fatal(err)
		}
		waitFails(t, wait, env, "shard 2 stopped: its heartbeat is")
	})

	t.Run("never started", func(t *testing.T) {
		sessions := t.TempDir()
		waitFails(t, wait, withEnv(fastWait, "SESSION_DIR", sessions, "START_TIMEOUT_S", "0"), "shard 1 has not started after 0 s")
	})

	t.Run("SIGTERM", func(t *testing.T) {
		sessions := t.TempDir()
		termNote := filepath.Join(t.TempDir(), "term")
		p := newPodScript(ctx, t, shardC, withEnv(fastWait, "SESSION_DIR", sessions, "JOB_COMPLETION_INDEX", "0", "FAKE_WAIT_TERM", termNote))
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Signal once ssestress has started (its arguments are recorded).
		for len(p.calls(t)) == 0 {
			if ctx.Err() != nil {
				t.Fatalf("the fake ssestress never started: %s", p.Output())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			tn, _ := os.ReadFile(termNote)
			fl, _ := os.ReadFile(filepath.Join(sessions, "shard-1.failed"))
			ents, _ := os.ReadDir(sessions)
			t.Fatalf("the shard's shell after SIGTERM: %v (%s), want exit 130, ssestress's; term %q failed %q sessions %v", err, p.Output(), tn, fl, ents)
		}
		if raw, err := os.ReadFile(termNote); err != nil || strings.TrimSpace(string(raw)) != "TERM" {
			t.Errorf("ssestress did not get the SIGTERM: %q %v", raw, err)
		}
		if raw, err := os.ReadFile(filepath.Join(sessions, "shard-1.failed")); err != nil || !strings.Contains(string(raw), "exited 130") {
			t.Errorf("shard-1.failed: %q, %v", raw, err)
		}
	})
}

// setprivArgs are the arguments of util-linux's setpriv that start a
// process with the credentials a container runtime (runc) gives a
// container's processes for s: its user and group, the pod's fsGroup as a
// supplementary group, no inheritable or ambient capabilities (Kubernetes
// sets none), a bounding set of the added capabilities (s drops ALL), and
// no_new_privs when privilege escalation is not allowed. Root then holds the
// bounding set; any other user, after the shell's exec, nothing.
func setprivArgs(t *testing.T, where string, s securityOf) []string {
	t.Helper()
	if !slices.Contains(s.drop, "ALL") || s.runAsUser == nil || s.runAsGroup == nil || s.fsGroup == nil {
		t.Fatalf("%s: the emulation needs drop [ALL], runAsUser, runAsGroup and fsGroup: %+v", where, s)
	}
	bounding := "-all"
	for _, c := range s.add {
		bounding += ",+" + strings.ToLower(string(c))
	}
	args := []string{"--reuid", strconv.FormatInt(*s.runAsUser, 10), "--regid", strconv.FormatInt(*s.runAsGroup, 10),
		"--groups", strconv.FormatInt(*s.fsGroup, 10), "--inh-caps", "-all", "--bounding-set", bounding}
	if s.allowPrivilegeEscalation != nil && !*s.allowPrivilegeEscalation {
		args = append(args, "--no-new-privs")
	}
	return args
}

// TestCaptureVariantCanCapture runs the image's binary (built as the
// Dockerfile builds it) with the credentials of each manifest's containers,
// as the container runtime would set them (setprivArgs; the seccomp profile
// is not applied), and opens a real packet capture on lo through /bin/sh as
// the Job's scripts do:
//   - the restricted shard runs, and cannot capture;
//   - the restricted shard with NET_RAW added, still non-root, cannot either:
//     the capability never reaches a non-root process;
//   - the capture variant's shard (root, NET_RAW alone, no_new_privs) can;
//   - the report's container, non-root, reads what it wrote.
func TestCaptureVariantCanCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("emulating the pods' users and capabilities needs root (CI runs as root); skipping")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux) to emulate the pods' credentials")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	built, _ := buildLikeDockerfile(t, ctx, map[string]string{"VERSION": dockerfileStamp})
	base := loadManifest(t, manifestPath)
	capt := loadManifest(t, captureManifestPath)

	// A directory the other users can reach: the binary, and the volume as
	// Kubernetes prepares it for fsGroup (group-owned, setgid, rwx).
	root, err := os.MkdirTemp("", "ssestress-creds-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	bin := filepath.Join(root, "ssestress")
	raw, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	volume := filepath.Join(root, "sessions")
	os.Mkdir(volume, 0o755)
	fsGroup := int(*base.shards.Spec.Template.Spec.SecurityContext.FSGroup)
	if err := os.Chown(volume, 0, fsGroup); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(volume, 0o2775|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}

	// inPod runs script with sh -c as the container would, bin and the
	// volume as $0 and $1.
	inPod := func(where string, s securityOf, script string) (string, error) {
		args := append(setprivArgs(t, where, s), "--", "/bin/sh", "-c", script, bin, volume)
		out, err := exec.CommandContext(ctx, setpriv, args...).CombinedOutput()
		return string(out), err
	}
	captureScript := func(pcap string) string {
		return `"$0" capture --iface lo --port 1 --duration 300ms --pcap "$1/` + pcap + `"`
	}
	shard := func(m k8sManifest) securityOf {
		pod := &m.shards.Spec.Template.Spec
		return effectiveSecurity(pod, &pod.Containers[0])
	}

	restricted := shard(base)
	out, err := inPod("restricted shard", restricted, `"$0" version`)
	if err != nil || strings.TrimSpace(out) != "ssestress "+dockerfileStamp {
		t.Fatalf("restricted shard: ssestress version: %v: %s", err, out)
	}
	if out, err := inPod("restricted shard", restricted, captureScript("restricted.pcap")); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("restricted shard: capture: %v: %s; want it refused (no NET_RAW)", err, out)
	}

	naive := restricted
	naive.add = []corev1.Capability{"NET_RAW"}
	if out, err := inPod("restricted shard + NET_RAW", naive, captureScript("naive.pcap")); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("restricted shard with NET_RAW added: capture: %v: %s; want it refused (a non-root process gets no capability)", err, out)
	}

	capture := shard(capt)
	if out, err := inPod("capture shard", capture, captureScript("shard-1.pcap")); err != nil {
		t.Fatalf("capture variant's shard: capture: %v: %s", err, out)
	}
	pcap := filepath.Join(volume, "shard-1.pcap")
	if st, err := os.Stat(pcap); err != nil || st.Size() == 0 {
		t.Fatalf("the capture wrote no pcap file: %v", err)
	}

	reportPod := &capt.report.Spec.Template.Spec
	report := effectiveSecurity(reportPod, &reportPod.Containers[0])
	if out, err := inPod("report", report, `cat "$1/shard-1.pcap" > /dev/null && touch "$1/report.md"`); err != nil {
		t.Errorf("the report's container cannot read what the capture wrote, or write beside it: %v: %s", err, out)
	}
}
