package main

import (
	"context"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ssestress/ssestress/capture/kernel"
)

// TestHelpKernel: ssestress help kernel explains every reason the kernel
// can give (but MPTCP's), and the README's table has a row for each.
func TestHelpKernel(t *testing.T) {
	out, _, code := runCLI(t, context.Background(), "help", "kernel")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || !strings.Contains(out, "--kernel") {
		t.Fatalf("help kernel: exit %d\n%s", code, out)
	}
	for _, name := range kernel.ReasonNames() {
		if strings.HasPrefix(name, "MPTCP_") || name == "MAX" {
			continue
		}
		r, _ := kernel.ExplainReason(name)
		if !strings.Contains(out, "\n  "+name+"\n") || !strings.Contains(strings.Join(strings.Fields(out), " "), r.Meaning) {
			t.Errorf("help kernel does not explain %s", name)
		}
		if !strings.Contains(string(readme), "| `"+name+"` | "+r.Meaning+" | "+r.Causes+" |") {
			t.Errorf("README's reasons table lacks %s as capture/kernel explains it", name)
		}
	}
	top, _, _ := runCLI(t, context.Background(), "help")
	if !strings.Contains(top, "help kernel") {
		t.Errorf("help does not point to help kernel:\n%s", top)
	}
}

// TestKernelFlagFollowsCapture: --kernel is on with --capture unless
// turned off, and on when given.
func TestKernelFlagFollowsCapture(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--capture"}, true},
		{[]string{"--capture", "--kernel=false"}, false},
		{[]string{"--kernel"}, true},
		{[]string{"--kernel=true", "--capture"}, true},
	} {
		o, err := parseRunArgs(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := o.hop.kernel.wanted(o.hop.capture); got != tc.want || o.hop.explains() != (tc.want || o.hop.capture) {
			t.Errorf("run %v: kernel %v, want %v", tc.args, got, tc.want)
		}
	}
	_, stderr, code := runCLI(t, context.Background(), "run", "--kernel=maybe")
	if code != 2 || !strings.Contains(stderr, "-kernel") || !strings.Contains(stderr, "not true or false") {
		t.Errorf("--kernel=maybe: exit %d, %q", code, stderr)
	}
	_, stderr, code = runCLI(t, context.Background(), "run", "--client-keepalive", "-1s")
	if code != 2 || !strings.Contains(stderr, "client-keepalive") || !strings.Contains(stderr, "negative") {
		t.Errorf("--client-keepalive -1s: exit %d, %q", code, stderr)
	}
}

// TestKernelEndpoints: the addresses a process knows become those the
// kernel prints: a listener on 0.0.0.0 is each of the host's addresses,
// a name its addresses.
func TestKernelEndpoints(t *testing.T) {
	got := kernelEndpoints(context.Background(), "127.0.0.1:80", "0.0.0.0:81", "localhost:82", "[::ffff:127.0.0.1]:83", "nonsense", "127.0.0.1:0")
	for _, want := range []string{"127.0.0.1:80", "127.0.0.1:81", "127.0.0.1:82", "127.0.0.1:83"} {
		if !slices.Contains(got, netip.MustParseAddrPort(want)) {
			t.Errorf("%s not among %v", want, got)
		}
	}
	for _, a := range got {
		if a.Port() == 0 {
			t.Errorf("port 0 kept: %v", got)
		}
	}
}
