package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/size"
)

// command is one subcommand as data, after Vegeta's command{fs, fn}: its
// words for help, its flags (setup registers them on a fresh flagSet bound
// to fresh options), the arguments after the flags, and what it does. help,
// completion and bisect build a command's flag set with setup and read it,
// without running anything.
type command struct {
	name     string // "run"; a subcommand's full name is "replay run"
	summary  string
	synopsis string // after "ssestress "; may hold several lines
	about    string // paragraphs printed after the synopsis (optional)
	examples string
	// args describes the arguments after (or between) the flags.
	args argSpec
	// setup registers the flags and returns the action that runs once they
	// are parsed. nil for a command that only holds subcommands.
	setup func(fs *flagSet) action
	// subs are the command's own subcommands (replay serve|run); a command
	// may have both (capture, capture analyze).
	subs []*command
	// intercept, when set, sees the arguments before any parsing and may
	// take them over (bench --child ROLE ARGS, whose ARGS are not ours).
	intercept func(ctx context.Context, args []string, stdout, stderr io.Writer) (bool, error)
	hidden    bool // left out of help and completion (__complete)

	parent *command
}

// action runs a command with its positional arguments once its flags are
// parsed into the options setup bound them to.
type action func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// argSpec describes a command's positional arguments.
type argSpec struct {
	name string // "FILE", "URL", "SHELL"; "" when the command takes none
	what string // the argument in messages ("session file"); name when empty
	// none is the hint when a command that takes no argument is given one.
	none     string
	min, max int       // counts accepted; max < 0: no limit
	values   valueSpec // what completion offers
}

// fullName is "replay run" for a subcommand.
func (c *command) fullName() string {
	if c.parent != nil {
		return c.parent.fullName() + " " + c.name
	}
	return c.name
}

// sub finds a subcommand by name.
func (c *command) sub(name string) *command {
	for _, s := range c.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (c *command) subNames() []string {
	var names []string
	for _, s := range c.subs {
		if !s.hidden {
			names = append(names, s.name)
		}
	}
	return names
}

// flags builds the command's flag set (and throws away what setup
// returns): what help, completion and bisect read.
func (c *command) flags() *flagSet {
	fs := newFlagSet(c)
	if c.setup != nil {
		c.setup(fs)
	}
	return fs
}

// find resolves args to the deepest command they name and the arguments
// left for it.
func (c *command) find(args []string) (*command, []string) {
	for len(args) > 0 {
		s := c.sub(args[0])
		if s == nil {
			break
		}
		c, args = s, args[1:]
	}
	return c, args
}

// execute parses args for c and runs it: the one place where flags are
// parsed, help is printed and positional arguments are counted.
func (c *command) execute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if c.intercept != nil {
		if done, err := c.intercept(ctx, args, stdout, stderr); done {
			return err
		}
	}
	if c.setup == nil {
		if len(args) > 0 && isHelpWord(args[0]) {
			c.printHelp(stdout, nil)
			return errHelp
		}
		c.printHelp(stdout, nil)
		if len(args) == 0 {
			return usageErrorf("%s: give %s", c.fullName(), orList(c.subNames()))
		}
		return usageErrorf("%s: unknown subcommand %q (use %s)", c.fullName(), args[0], orList(c.subNames()))
	}
	fs := newFlagSet(c)
	act := c.setup(fs)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	for _, n := range fs.notes {
		fmt.Fprintln(stderr, "ssestress: note:", n)
	}
	if err := c.args.check(c, pos); err != nil {
		return err
	}
	return act(ctx, pos, stdout, stderr)
}

func isHelpWord(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }

// check counts the positional arguments.
func (a argSpec) check(c *command, pos []string) error {
	what := a.what
	if what == "" {
		what = a.name
	}
	switch {
	case a.name == "" && len(pos) > 0:
		hint := a.none
		if hint == "" {
			hint = "see ssestress " + c.fullName() + " --help"
		}
		return usageErrorf("%s: unexpected argument %q (%s)", c.fullName(), pos[0], hint)
	case len(pos) < a.min:
		return usageErrorf("%s: no %s given (usage: ssestress %s)", c.fullName(), what, firstLine(c.synopsis))
	case a.max >= 0 && len(pos) > a.max:
		return usageErrorf("%s: one %s only, got %q and %q", c.fullName(), what, pos[0], pos[1])
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// orList is "a, b or c".
func orList(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// valueKind is how completion fills a value.
type valueKind int

const (
	valNone  valueKind = iota // free text: nothing to offer
	valFiles                  // file names
	valDirs                   // directory names
	valWords                  // one of words()
	valFault                  // a --fault spec: kinds, presets, keys, key values
)

// valueSpec is what completion offers for a flag's value or an argument.
type valueSpec struct {
	kind  valueKind
	words func() []string
}

func files() valueSpec { return valueSpec{kind: valFiles} }
func dirs() valueSpec  { return valueSpec{kind: valDirs} }
func words(list ...string) valueSpec {
	return valueSpec{kind: valWords, words: func() []string { return list }}
}
func wordsOf(f func() []string) valueSpec { return valueSpec{kind: valWords, words: f} }

// flagMeta is what a flag has beyond the flag package's Flag.
type flagMeta struct {
	values  valueSpec
	section string // help section; "" is the command's own "Flags"
	short   string // the one-letter alias ("o" for output)
	alias   bool   // another name of a flag (-o, a deprecated name): not listed
	// passthrough is set on a flag bisect passes on to run.
	passthrough bool
	placeholder string // the value's word in help when the usage names none
}

// refusal is a flag a command knows and refuses: a renamed one (with its
// new name) or one it cannot honour (bisect --fault).
type refusal struct {
	name, reason string
	valued       bool // takes a value (so the next word is not an argument)
}

// flagSet is a command's flags as data: the flag package's FlagSet (which
// parses), and for each flag in registration order how completion fills
// its value and where help lists it; plus the flags it refuses, with why.
type flagSet struct {
	*flag.FlagSet
	cmd     *command
	order   []string
	meta    map[string]*flagMeta
	refused []refusal
	given   []string // refused flags found by parse
	notes   []string // what deprecated names were used, for stderr
	argv    []string // the arguments parse was given, as typed
	section string   // section of the flags registered now
}

// newFlagSet returns a flag set that never prints on its own and never
// exits.
func newFlagSet(c *command) *flagSet {
	name := "ssestress"
	if c != nil {
		name = c.fullName()
	}
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), cmd: c, meta: map[string]*flagMeta{}}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

func (fs *flagSet) added(name string) {
	fs.order = append(fs.order, name)
	fs.meta[name] = &flagMeta{section: fs.section}
}

// The flag package's definers, recording the order and section.

func (fs *flagSet) StringVar(p *string, name, value, usage string) {
	fs.FlagSet.StringVar(p, name, value, usage)
	fs.added(name)
}

func (fs *flagSet) BoolVar(p *bool, name string, value bool, usage string) {
	fs.FlagSet.BoolVar(p, name, value, usage)
	fs.added(name)
}

func (fs *flagSet) IntVar(p *int, name string, value int, usage string) {
	fs.FlagSet.IntVar(p, name, value, usage)
	fs.added(name)
}

func (fs *flagSet) Float64Var(p *float64, name string, value float64, usage string) {
	fs.FlagSet.Float64Var(p, name, value, usage)
	fs.added(name)
}

func (fs *flagSet) Var(v flag.Value, name, usage string) {
	fs.FlagSet.Var(v, name, usage)
	fs.added(name)
}

func (fs *flagSet) Func(name, usage string, fn func(string) error) {
	fs.FlagSet.Func(name, usage, fn)
	fs.added(name)
}

// DurationVar registers a duration in the syntax people type (dur.Parse:
// a unit is required, days allowed), printed rounded.
func (fs *flagSet) DurationVar(p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*durationValue)(p), name, usage)
}

// SizeVar registers a size (internal/size: 16MB is 10^6-based, 16MiB
// 2^20-based).
func (fs *flagSet) SizeVar(p *int64, name string, value int64, usage string) {
	*p = value
	fs.Var((*size.Bytes)(p), name, usage)
}

func (fs *flagSet) String(name, value, usage string) *string {
	p := new(string)
	fs.StringVar(p, name, value, usage)
	return p
}

func (fs *flagSet) Bool(name string, value bool, usage string) *bool {
	p := new(bool)
	fs.BoolVar(p, name, value, usage)
	return p
}

func (fs *flagSet) Int(name string, value int, usage string) *int {
	p := new(int)
	fs.IntVar(p, name, value, usage)
	return p
}

// durationValue is a time.Duration read by dur.Parse.
type durationValue time.Duration

func (d *durationValue) String() string { return dur.Format(time.Duration(*d)) }
func (d *durationValue) Set(s string) error {
	v, err := dur.Parse(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

// values sets how completion fills the value of the named flags.
func (fs *flagSet) values(spec valueSpec, names ...string) {
	for _, n := range names {
		fs.meta[n].values = spec
	}
}

// alias registers a one-letter alias of a flag: -o for --output.
func (fs *flagSet) alias(short, long string) {
	f := fs.Lookup(long)
	fs.FlagSet.Var(f.Value, short, f.Usage)
	fs.meta[short] = &flagMeta{alias: true, values: fs.meta[long].values}
	fs.meta[long].short = short
}

// deprecated keeps an old name of a flag working, hidden from help and
// completion: using it sets the flag and prints a note naming the new one.
// (Renamed flags whose old name would now mean something else are refused
// instead, by the command.)
func (fs *flagSet) deprecated(old, now, why string) {
	f := fs.Lookup(now)
	note := fmt.Sprintf("--%s is now --%s", old, now)
	if why != "" {
		note += " (" + why + ")"
	}
	fs.FlagSet.Var(&deprecatedValue{Value: f.Value, fs: fs, note: note}, old, note)
	fs.meta[old] = &flagMeta{alias: true}
}

// deprecatedValue forwards to the new flag's value and remembers the note.
type deprecatedValue struct {
	flag.Value
	fs   *flagSet
	note string
}

func (d *deprecatedValue) Set(s string) error {
	if !slices.Contains(d.fs.notes, d.note) {
		d.fs.notes = append(d.fs.notes, d.note)
	}
	return d.Value.Set(s)
}

func (d *deprecatedValue) IsBoolFlag() bool {
	b, ok := d.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// refuse makes name a known flag that stops the command with reason.
func (fs *flagSet) refuse(name string, valued bool, reason string) {
	fs.refused = append(fs.refused, refusal{name: name, reason: reason, valued: valued})
	var v flag.Value = &refusedValue{fs: fs, name: name}
	if !valued {
		v = &refusedBool{refusedValue{fs: fs, name: name}}
	}
	fs.FlagSet.Var(v, name, reason)
}

type refusedValue struct {
	fs   *flagSet
	name string
}

func (r *refusedValue) String() string { return "" }
func (r *refusedValue) Set(string) error {
	r.fs.given = append(r.fs.given, r.name)
	return nil
}

type refusedBool struct{ refusedValue }

func (r *refusedBool) IsBoolFlag() bool { return true }

// parse parses args, flags before, between and after the positional
// arguments ("--" ends the flags), and returns the positional ones. --help
// prints the help and returns errHelp; a bad or refused flag returns a
// usage error naming it.
func (fs *flagSet) parse(args []string, stdout io.Writer) ([]string, error) {
	fs.argv = args
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.cmd.printHelp(stdout, fs)
			return nil, errHelp
		}
		if err != nil {
			return nil, &usageError{msg: fmt.Sprintf("%s: %v (see ssestress %s --help)", fs.Name(), err, fs.Name()), err: err}
		}
		if len(fs.given) > 0 {
			for _, r := range fs.refused {
				if r.name == fs.given[0] {
					return nil, usageErrorf("%s: --%s: %s", fs.Name(), r.name, r.reason)
				}
			}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// Parse consumed a "--" itself when it was next: everything left
		// is positional then.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// visible lists the flags help and completion show, in registration order.
func (fs *flagSet) visible() []*flag.Flag {
	var out []*flag.Flag
	for _, n := range fs.order {
		if m := fs.meta[n]; m.alias {
			continue
		}
		out = append(out, fs.Lookup(n))
	}
	return out
}

// takesValue reports whether a flag (or refused flag) reads the next word
// as its value.
func (fs *flagSet) takesValue(name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return false
	}
	return true
}

// placeholder is the word help shows for a flag's value: the usage's
// back-quoted word, else one from its type (or the flag it stands for).
func (fs *flagSet) placeholder(f *flag.Flag) (name, usage string) {
	name, usage = flag.UnquoteUsage(f)
	if m := fs.meta[f.Name]; m != nil && m.placeholder != "" && name == "value" {
		name = m.placeholder
	}
	switch f.Value.(type) {
	case *durationValue, *dur.Duration:
		if name == "value" || name == "duration" {
			name = "D"
		}
	case *size.Bytes:
		if name == "value" {
			name = "SIZE"
		}
	}
	switch name {
	case "value", "string":
		name = "VALUE"
	case "int":
		name = "N"
	case "float":
		name = "F"
	}
	return name, usage
}

// printHelp prints a command's help: synopsis, what it is, its flags by
// section, the flags it refuses, its subcommands and examples. fs is its
// flag set when already built (nil: built here).
func (c *command) printHelp(w io.Writer, fs *flagSet) {
	fmt.Fprintf(w, "Usage: ssestress %s\n", strings.ReplaceAll(c.synopsis, "\n", "\n       ssestress "))
	if c.summary != "" {
		fmt.Fprintf(w, "\n%s%s.\n", strings.ToUpper(c.summary[:1]), c.summary[1:])
	}
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(c.about, "\n"))
	}
	if len(c.subs) > 0 {
		fmt.Fprintln(w, "\nSubcommands:")
		for _, s := range c.subs {
			if !s.hidden {
				fmt.Fprintf(w, "  %-8s %s\n", s.name, s.summary)
			}
		}
	}
	if c.setup != nil {
		if fs == nil {
			fs = c.flags()
		}
		fs.printFlags(w)
	}
	if c.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(c.examples, "\n"))
	}
}

// printFlags lists the flags by section, each with its value word, default
// and usage, then the refused ones.
func (fs *flagSet) printFlags(w io.Writer) {
	var sections []string
	bySection := map[string][]*flag.Flag{}
	for _, f := range fs.visible() {
		s := fs.meta[f.Name].section
		if _, ok := bySection[s]; !ok {
			sections = append(sections, s)
		}
		bySection[s] = append(bySection[s], f)
	}
	for _, s := range sections {
		title := s
		if title == "" {
			title = "Flags"
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, f := range bySection[s] {
			word, usage := fs.placeholder(f)
			head := "--" + f.Name
			if short := fs.meta[f.Name].short; short != "" {
				head = "-" + short + ", " + head
			}
			if fs.takesValue(f.Name) {
				head += " " + word
			}
			if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "0s" && def != "0B" && fs.takesValue(f.Name) {
				usage += " (default " + def + ")"
			}
			fmt.Fprintf(w, "  %s\n        %s\n", head, strings.ReplaceAll(usage, "\n", "\n        "))
		}
	}
	if len(fs.refused) > 0 {
		fmt.Fprintln(w, "\nRefused (exit 2):")
		for _, r := range fs.refused {
			fmt.Fprintf(w, "  --%s\n        %s\n", r.name, r.reason)
		}
	}
}

// commandNames are the visible top-level commands, sorted.
func commandNames() []string {
	var names []string
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}
