package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

// The exit codes of the developers' guide. exitStatus is the one place
// that maps an outcome onto them.
const (
	exitOK          = 0   // done
	exitFailed      = 1   // the work failed
	exitUsage       = 2   // bad command line or config
	exitThreshold   = 3   // a threshold failed (--fail-on)
	exitDamaged     = 4   // an input file is damaged or not ours
	exitInterrupted = 130 // SIGINT or SIGTERM, after the summary
)

// errHelp means --help was asked for and printed: exit 0.
var errHelp = errors.New("help shown")

// usageError is a bad command line or config: exit code 2. err, when set,
// is the cause (for errors.Is and errors.As).
type usageError struct {
	msg string
	err error
}

func (e *usageError) Error() string { return e.msg }
func (e *usageError) Unwrap() error { return e.err }

// badValue is a usage error for a flag's value that failed when used: an
// address that cannot be listened on, a file that does not read.
func badValue(flagName string, err error) error {
	return &usageError{msg: flagName + ": " + err.Error(), err: err}
}

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// thresholdError is a result that did not pass a gate the user set (a
// --fail-on threshold, a significant regression against --baseline): the
// work was done and its output written, and the process exits 3.
type thresholdError struct{ msg string }

func (e *thresholdError) Error() string { return e.msg }

// exitRules map errors onto exit codes; the first that matches wins, and
// an error no rule matches is exitFailed. A new kind of outcome (a failed
// --fail-on threshold, a damaged input file) adds its rule here.
var exitRules = []struct {
	code  int
	match func(error) bool
}{
	{exitUsage, func(err error) bool { var ue *usageError; return errors.As(err, &ue) }},
	{exitThreshold, func(err error) bool { var te *thresholdError; return errors.As(err, &te) }},
	{exitDamaged, damagedInput},
}

// damagedInput reports whether err means an input file is damaged or not
// ours: exit code 4.
func damagedInput(err error) bool {
	for _, e := range []error{session.ErrDamaged, session.ErrTruncated, session.ErrNotSession, session.ErrNewerSchema, recording.ErrBadJSONL} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// exitHints add what to do next to the line of an error a leaf returns
// without naming a command.
var exitHints = []struct {
	match func(error) bool
	hint  string
}{
	{func(err error) bool { return errors.Is(err, recording.ErrEmpty) }, "record with: ssestress proxy --record FILE"},
	{func(err error) bool {
		return (errors.Is(err, session.ErrDamaged) || errors.Is(err, session.ErrTruncated)) && !strings.HasPrefix(err.Error(), "salvage:")
	}, "ssestress salvage copies what can still be read"},
}

// exitCode prints err as one line (nothing for nil or help) and returns
// its exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	for _, h := range exitHints {
		if h.match(err) {
			msg += " (" + h.hint + ")"
		}
	}
	fmt.Fprintln(stderr, "ssestress: "+msg)
	for _, r := range exitRules {
		if r.match(err) {
			return r.code
		}
	}
	return exitFailed
}

// exitStatus is the process's exit code: exitCode's, except that a command
// stopped by a signal exits 130 (it has printed its summary by then) unless
// its command line was bad or its input damaged.
func exitStatus(err error, interrupted bool, stderr io.Writer) int {
	code := exitCode(err, stderr)
	if interrupted && (code == exitOK || code == exitFailed) && !errors.Is(err, errHelp) {
		return exitInterrupted
	}
	return code
}
