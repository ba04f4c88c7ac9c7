// Command ssestress reproduces and explains ECONNRESET failures on
// Server-Sent Events services. main only wires signals and exit codes; each
// subcommand lives in its own file as a command value (its flags as data, an
// options struct they fill, and a function that writes to injected
// writers), so tests call it directly and help, completion and bisect read
// its flags.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// commands is the explicit table of subcommands. It is filled in init: the
// help and completion commands read it.
var commands map[string]*command

func init() {
	commands = map[string]*command{}
	for _, c := range []*command{
		serveCmd, runCmd, tailCmd, inspectCmd, reportCmd, exportCmd, bisectCmd, recordingsCmd, replayCmd,
		captureCmd, proxyCmd, completionCmd, salvageCmd, benchCmd, versionCmd, completeCmd,
	} {
		commands[c.name] = c
		setParents(c)
	}
}

func setParents(c *command) {
	for _, s := range c.subs {
		s.parent = c
		setParents(s)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	// The context ends only by a signal: the command has stopped its work
	// and printed its summary by now.
	interrupted := ctx.Err() != nil
	stop()
	os.Exit(exitStatus(err, interrupted, os.Stderr))
}

// run dispatches to a subcommand. A panic becomes one line, not a trace.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: %v (please report it)", p)
		}
	}()
	if len(args) == 0 {
		usage(stdout)
		return usageErrorf("no subcommand given")
	}
	switch args[0] {
	case "-h", "--help", "-help":
		usage(stdout)
		return errHelp
	case "help":
		return runHelp(args[1:], stdout)
	case "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return usageErrorf("unknown subcommand %q (run 'ssestress help' for the list)", args[0])
	}
	c, rest := cmd.find(args[1:])
	return c.execute(ctx, rest, stdout, stderr)
}

// runHelp is ssestress help [COMMAND [SUBCOMMAND]].
func runHelp(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		usage(stdout)
		return errHelp
	}
	if args[0] == "kernel" && len(args) == 1 {
		kernelHelp(stdout)
		return errHelp
	}
	cmd, ok := commands[args[0]]
	if !ok || cmd.hidden {
		return usageErrorf("help: unknown subcommand %q (run 'ssestress help' for the list)", args[0])
	}
	c, rest := cmd.find(args[1:])
	if len(rest) > 0 {
		return usageErrorf("help: %s has no subcommand %q", c.fullName(), rest[0])
	}
	c.printHelp(stdout, nil)
	return errHelp
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ssestress reproduces and explains ECONNRESET failures on Server-Sent Events services.")
	fmt.Fprintln(w, "\nUsage: ssestress <subcommand> [flags]   (ssestress help <subcommand> for its flags and examples)")
	fmt.Fprintln(w, "\nSubcommands:")
	for _, n := range commandNames() {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "  help         print the help of a subcommand: ssestress help run")
	fmt.Fprintln(w, "  help kernel  what the kernel's reset reasons mean (--kernel)")
	fmt.Fprintln(w, "\nExit codes: 0 done; 1 the work failed; 2 bad command line or config; 3 a threshold failed;")
	fmt.Fprintln(w, "4 an input file is damaged or not a session file; 130 interrupted (after the summary).")
}
