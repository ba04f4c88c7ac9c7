// Package kubernetes holds the Kubernetes manifest that spreads one
// ssestress scenario over many pods (ssestress-job.yaml: an Indexed Job
// whose completion index picks the --shard, session files on a shared
// volume, and a final report merging them) and the Dockerfile of its image.
// There is no Go code here; the manifest's tests live beside it
// (manifest_test.go: its structure) and in cmd/ssestress (manifest_test.go:
// its command lines, run through a shell against the real flag parsing).
package kubernetes
