// Command ssestress reproduces and explains ECONNRESET failures on
// Server-Sent Events services. main only wires signals and exit codes; each
// subcommand lives in its own file with an options struct and a function
// that writes to injected writers, so tests call it directly.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/ssestress/ssestress/internal/session"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the explicit table of subcommands.
var commands = map[string]command{
	"serve":      {"run the embedded SSE quote feed", runServe},
	"run":        {"run a load scenario (flood, long-running, churn, mixed) and record a session file", runRun},
	"tail":       {"print the events of one SSE stream as they arrive (like curl -N, but parsed)", runTail},
	"inspect":    {"print what a session file holds: run info, record counts, summary", runInspect},
	"report":     {"explain a run: error patterns, fingerprints, origin verdict, graphs; compare runs", runReport},
	"bisect":     {"run one scenario against each hop of a path and name the hop where resets enter", runBisect},
	"recordings": {"list, show, export (jsonl) and import the streams a proxy recorded (--record)", runRecordings},
	"replay":     {"replay a recording: serve it as the SSE server, or re-drive its clients at --scale", runReplay},
	"capture":    {"capture packets and tell who sent each TCP reset, on which hop; analyze pcap files", runCapture},
	"proxy":      {"run the fault-injecting proxy in front of an SSE service: per-hop TCP and SSE faults, control API", runProxy},
	"completion": {"print a shell completion script: bash, zsh or fish", runCompletion},
	"salvage":    {"copy every record of a damaged session file that can still be read into a new one, and say what was lost", runSalvage},
	"bench":      {"measure the clients, proxy, recording, capture, replay and reports side by side: one table of ratios and targets", runBench},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err as one line and returns the process exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	if (errors.Is(err, session.ErrDamaged) || errors.Is(err, session.ErrTruncated)) && !strings.HasPrefix(msg, "salvage:") {
		msg += " (ssestress salvage copies what can still be read)"
	}
	fmt.Fprintln(stderr, "ssestress: "+msg)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	var te *thresholdError
	if errors.As(err, &te) {
		return 3
	}
	if damagedInput(err) {
		return 4
	}
	return 1
}

// damagedInput reports whether err means an input file is damaged or not
// ours: exit code 4.
func damagedInput(err error) bool {
	for _, e := range []error{session.ErrDamaged, session.ErrTruncated, session.ErrNotSession, session.ErrNewerSchema} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// run dispatches to a subcommand. A panic becomes one line, not a trace.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: %v (please report it)", p)
		}
	}()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return usageErrorf("no subcommand given")
		}
		return errHelp
	}
	if args[0] == "version" || args[0] == "--version" {
		return printVersion(stdout)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return usageErrorf("unknown subcommand %q (run 'ssestress help' for the list)", args[0])
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ssestress reproduces and explains ECONNRESET failures on Server-Sent Events services.")
	fmt.Fprintln(w, "\nUsage: ssestress <subcommand> [flags]   (ssestress <subcommand> --help for its flags and examples)")
	fmt.Fprintln(w, "\nSubcommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
}
