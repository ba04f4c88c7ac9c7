package main

import (
	"context"
	"strings"
	"testing"
)

// TestHelpCommand: ssestress help CMD [SUB] prints what CMD [SUB] --help
// prints; help of something unknown is a usage error.
func TestHelpCommand(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{{"run"}, {"replay", "run"}, {"bisect"}, {"capture", "analyze"}, {"recordings"}} {
		viaHelp, _, code := runCLI(t, ctx, append([]string{"help"}, args...)...)
		viaFlag, _, code2 := runCLI(t, ctx, append(args, "--help")...)
		if code != 0 || code2 != 0 || viaHelp != viaFlag || !strings.HasPrefix(viaHelp, "Usage: ssestress "+strings.Join(args, " ")) {
			t.Errorf("help %v (exit %d) differs from --help (exit %d):\n%s\n---\n%s", args, code, code2, viaHelp, viaFlag)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help", "nosuch"}, `ssestress: help: unknown subcommand "nosuch"`},
		{[]string{"help", "replay", "frob"}, `ssestress: help: replay has no subcommand "frob"`},
	} {
		_, stderr, code := runCLI(t, ctx, tc.args...)
		if code != 2 || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2, %q", tc.args, code, stderr, tc.want)
		}
	}
	// The top-level help lists every subcommand and the exit codes.
	top, _, code := runCLI(t, ctx, "help")
	for _, n := range commandNames() {
		if !strings.Contains(top, "  "+n+" ") {
			t.Errorf("help lacks %s", n)
		}
	}
	if code != 0 || !strings.Contains(top, "130 interrupted") || strings.Contains(top, "__complete") {
		t.Errorf("help (exit %d):\n%s", code, top)
	}
}

// TestDeprecatedFlags: an old name that means the same still works, says
// its new name in one note, and is not offered by help or completion.
func TestDeprecatedFlags(t *testing.T) {
	ctx := context.Background()
	_, stderr, code := runCLI(t, ctx, "serve", "--message-rate", "abc")
	if code != 2 || !strings.HasPrefix(stderr, "ssestress: note: --message-rate is now --event-rate (SSE events, not messages)\n") ||
		!strings.Contains(stderr, "serve: --event-rate: ") {
		t.Errorf("serve --message-rate: exit %d, %q", code, stderr)
	}
	_, stderr, code = runCLI(t, ctx, "bisect", "--hop", "a=http://127.0.0.1:1")
	if code != 2 || !strings.Contains(stderr, "note: --hop is now --entry") || !strings.Contains(stderr, "give at least two --entry NAME=URL") {
		t.Errorf("bisect --hop: exit %d, %q", code, stderr)
	}
	help, _, _ := runCLI(t, ctx, "help", "serve")
	if strings.Contains(help, "message-rate") {
		t.Errorf("serve's help offers the old name:\n%s", help)
	}
	if _, words := completeWords("serve --mess"); len(words) != 0 {
		t.Errorf("completion offers %q", words)
	}
}
