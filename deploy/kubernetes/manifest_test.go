package kubernetes_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The parts of the Kubernetes objects the manifest uses. Decoding is
// strict (KnownFields): a misspelt key in the manifest fails the test, as
// kubectl apply --validate=strict would reject it.
type object struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   metadata `yaml:"metadata"`
	Spec       spec     `yaml:"spec"`
}

type metadata struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

// spec is the union of the PersistentVolumeClaim's and the Job's specs.
type spec struct {
	// PersistentVolumeClaim
	AccessModes []string `yaml:"accessModes"`
	Resources   struct {
		Requests map[string]string `yaml:"requests"`
	} `yaml:"resources"`
	// Job
	CompletionMode        string   `yaml:"completionMode"`
	Completions           *int     `yaml:"completions"`
	Parallelism           *int     `yaml:"parallelism"`
	BackoffLimit          *int     `yaml:"backoffLimit"`
	ActiveDeadlineSeconds int      `yaml:"activeDeadlineSeconds"`
	Template              template `yaml:"template"`
}

type template struct {
	Metadata metadata `yaml:"metadata"`
	Spec     podSpec  `yaml:"spec"`
}

type podSpec struct {
	RestartPolicy   string         `yaml:"restartPolicy"`
	SecurityContext map[string]any `yaml:"securityContext"`
	InitContainers  []container    `yaml:"initContainers"`
	Containers      []container    `yaml:"containers"`
	Volumes         []struct {
		Name                  string `yaml:"name"`
		PersistentVolumeClaim struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
	} `yaml:"volumes"`
}

type container struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	Env             []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	Resources map[string]map[string]string `yaml:"resources"`
}

func (c container) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func load(t *testing.T) map[string]object {
	t.Helper()
	raw, err := os.ReadFile("ssestress-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	objs := map[string]object{}
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ssestress-job.yaml: %v", err)
		}
		key := o.Kind + "/" + o.Metadata.Name
		if _, dup := objs[key]; dup {
			t.Fatalf("%s defined twice", key)
		}
		objs[key] = o
	}
	return objs
}

// TestManifestStructure checks the manifest is what README.md says: an
// Indexed Job of SHARDS shards on a shared volume, and a report Job on the
// same volume, consistent with each other.
func TestManifestStructure(t *testing.T) {
	objs := load(t)
	pvc, ok := objs["PersistentVolumeClaim/ssestress-sessions"]
	if !ok || pvc.APIVersion != "v1" || pvc.Spec.Resources.Requests["storage"] == "" {
		t.Fatalf("no usable PersistentVolumeClaim ssestress-sessions: %+v", pvc)
	}
	shards, ok := objs["Job/ssestress-shards"]
	if !ok || shards.APIVersion != "batch/v1" {
		t.Fatal("no batch/v1 Job ssestress-shards")
	}
	report, ok := objs["Job/ssestress-report"]
	if !ok || report.APIVersion != "batch/v1" {
		t.Fatal("no batch/v1 Job ssestress-report")
	}
	if len(objs) != 3 {
		t.Errorf("%d objects, want the claim and the two Jobs", len(objs))
	}

	s := shards.Spec
	if s.CompletionMode != "Indexed" || s.Completions == nil || s.Parallelism == nil {
		t.Fatalf("shards Job: completionMode %q, completions %v, parallelism %v: want an Indexed Job with both set", s.CompletionMode, s.Completions, s.Parallelism)
	}
	if s.BackoffLimit == nil || *s.BackoffLimit != 0 {
		t.Error("shards Job: backoffLimit must be 0 (a retried shard would find its session file written)")
	}
	if len(s.Template.Spec.Containers) != 1 {
		t.Fatalf("shards Job: %d containers, want 1", len(s.Template.Spec.Containers))
	}
	run := s.Template.Spec.Containers[0]
	n, _ := run.env("SHARDS")
	if want := strconv.Itoa(*s.Completions); n != want || *s.Parallelism != *s.Completions {
		t.Errorf("SHARDS=%q, completions %d, parallelism %d: they must be equal", n, *s.Completions, *s.Parallelism)
	}
	if !strings.Contains(strings.Join(run.Args, "\n"), "JOB_COMPLETION_INDEX") {
		t.Error("the shard command does not use JOB_COMPLETION_INDEX")
	}

	// The report waits for as many shards as there are.
	if len(report.Spec.Template.Spec.InitContainers) != 1 || len(report.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("report Job: want one init container (waiting for the shards) and one container")
	}
	wait := report.Spec.Template.Spec.InitContainers[0]
	if got, _ := wait.env("SHARDS"); got != n {
		t.Errorf("report waits for SHARDS=%q, the shards Job has %q", got, n)
	}
	if report.Spec.ActiveDeadlineSeconds <= 0 {
		t.Error("report Job without activeDeadlineSeconds would wait forever for a failed shard")
	}

	// Every container mounts the claim at its SESSION_DIR and runs the
	// same image through sh -c.
	for _, job := range []object{shards, report} {
		pod := job.Spec.Template.Spec
		if pod.RestartPolicy != "Never" {
			t.Errorf("%s: restartPolicy %q, want Never", job.Metadata.Name, pod.RestartPolicy)
		}
		if len(pod.Volumes) != 1 || pod.Volumes[0].PersistentVolumeClaim.ClaimName != pvc.Metadata.Name {
			t.Fatalf("%s: volumes %+v, want the claim %s", job.Metadata.Name, pod.Volumes, pvc.Metadata.Name)
		}
		for _, c := range append(append([]container(nil), pod.InitContainers...), pod.Containers...) {
			dir, ok := c.env("SESSION_DIR")
			if !ok || len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != dir || c.VolumeMounts[0].Name != pod.Volumes[0].Name {
				t.Errorf("%s/%s: SESSION_DIR %q, mounts %+v: the session directory must be the volume's mount path", job.Metadata.Name, c.Name, dir, c.VolumeMounts)
			}
			if c.Image != run.Image {
				t.Errorf("%s/%s: image %q, the shards run %q", job.Metadata.Name, c.Name, c.Image, run.Image)
			}
			if strings.Join(c.Command, " ") != "/bin/sh -c" || len(c.Args) != 1 || !strings.HasPrefix(c.Args[0], "set -eu\n") {
				t.Errorf("%s/%s: command %q args %q: want /bin/sh -c with one script starting with set -eu", job.Metadata.Name, c.Name, c.Command, c.Args)
			}
		}
	}
}
