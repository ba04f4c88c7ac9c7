package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

const completionSynopsis = "completion bash|zsh|fish"

const completionExamples = `  source <(ssestress completion bash)                       (this shell)
  ssestress completion bash > /etc/bash_completion.d/ssestress
  ssestress completion zsh > "${fpath[1]}/_ssestress"        (then: autoload -U compinit && compinit)
  ssestress completion fish > ~/.config/fish/completions/ssestress.fish

The scripts are generated from the subcommands and their flags, so they
always match this binary.`

// listCommands returns the commands table. It is set in init: the table
// holds runCompletion, which reads the table, and a package-level variable
// cannot refer to itself through a function.
var listCommands func() map[string]command

func init() { listCommands = func() map[string]command { return commands } }

// completionShells are the scripts completion writes.
var completionShells = map[string]func(io.Writer, []cmdSpec) error{
	"bash": writeBashCompletion,
	"zsh":  writeZshCompletion,
	"fish": writeFishCompletion,
}

// runCompletion is ssestress completion SHELL: it prints a completion
// script for the shell.
func runCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("completion")
	if err := parseFlags(fs, args, stdout, completionSynopsis, completionExamples); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("completion: name one shell: bash, zsh or fish (usage: ssestress %s)", completionSynopsis)
	}
	write, ok := completionShells[fs.Arg(0)]
	if !ok {
		return usageErrorf("completion: unknown shell %q (use bash, zsh or fish)", fs.Arg(0))
	}
	return write(stdout, commandSpecs())
}

// cmdSpec is a subcommand as completion sees it: read from its --help.
type cmdSpec struct {
	name    string
	summary string
	flags   []flagSpec
	subs    []cmdSpec // e.g. replay serve|run
}

// flagSpec is one flag of a subcommand.
type flagSpec struct {
	name   string
	valued bool // takes a value (not a bool flag)
	usage  string
}

// commandSpecs reads every subcommand's --help (and its own subcommands'),
// so the scripts follow the flags as they are defined, with nothing to keep
// in step by hand.
func commandSpecs() []cmdSpec {
	table := listCommands()
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	sort.Strings(names)
	var specs []cmdSpec
	for _, n := range names {
		cmd := table[n]
		help := helpText(cmd, []string{"--help"})
		spec := cmdSpec{name: n, summary: cmd.summary, flags: parseHelpFlags(help)}
		for _, sub := range parseHelpSubcommands(n, help) {
			subSpec := cmdSpec{name: sub}
			if n != "completion" { // its "subcommands" are shell names, not commands
				subSpec.flags = parseHelpFlags(helpText(cmd, []string{sub, "--help"}))
			}
			spec.subs = append(spec.subs, subSpec)
		}
		specs = append(specs, spec)
	}
	specs = append(specs,
		cmdSpec{name: "help", summary: "list the subcommands"},
		cmdSpec{name: "version", summary: "print the version"})
	return specs
}

// helpText runs a subcommand with args (ending in --help) and returns what
// it printed. The context is already cancelled: --help must not start
// anything, and a command that would is stopped at once.
func helpText(cmd command, args []string) string {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	func() {
		defer func() { recover() }()
		cmd.run(ctx, args, &out, io.Discard)
	}()
	return out.String()
}

// flagLine matches flag.PrintDefaults' first line of a flag: "  -name" or
// "  -name type".
var flagLine = regexp.MustCompile(`^  -([A-Za-z0-9][-A-Za-z0-9_.]*)(?: (\S+))?$`)

// parseHelpFlags reads the flags from a --help text.
func parseHelpFlags(help string) []flagSpec {
	var flags []flagSpec
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flags = append(flags, flagSpec{name: m[1], valued: m[2] != ""})
			continue
		}
		if n := len(flags); n > 0 && strings.HasPrefix(line, "    \t") {
			u := strings.TrimSpace(line)
			if flags[n-1].usage != "" {
				u = flags[n-1].usage + " " + u
			}
			flags[n-1].usage = u
		}
	}
	return flags
}

// subcommandWord is a usage word naming subcommands: "analyze", "serve|run".
var subcommandWord = regexp.MustCompile(`^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*$`)

// parseHelpSubcommands reads the subcommands of name from the Usage lines
// of its --help: the word after "ssestress name" when it is lower-case
// ("capture analyze FILE", "replay serve|run ...").
func parseHelpSubcommands(name, help string) []string {
	var subs []string
	seen := map[string]bool{}
	for _, line := range strings.Split(help, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(line, "Usage:"))
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "ssestress" || fields[1] != name {
			continue
		}
		if !subcommandWord.MatchString(fields[2]) {
			continue
		}
		for _, s := range strings.Split(fields[2], "|") {
			if !seen[s] {
				seen[s] = true
				subs = append(subs, s)
			}
		}
	}
	return subs
}

// identifier makes a shell-safe name part: "capture-x" → "capture_x".
func identifier(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// flagWords lists flags as --name words.
func flagWords(flags []flagSpec, valuedOnly bool) string {
	var words []string
	for _, f := range flags {
		if !valuedOnly || f.valued {
			words = append(words, "--"+f.name)
		}
	}
	return strings.Join(words, " ")
}

// shellWords keeps only characters that need no quoting in the scripts'
// word lists (command and flag names already do; this is a guard).
func shellWords(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(" -_.|/", r) {
			return r
		}
		return -1
	}, s)
}

func writeBashCompletion(w io.Writer, specs []cmdSpec) error {
	var b strings.Builder
	b.WriteString("# bash completion for ssestress (generated by: ssestress completion bash)\n")
	var top []string
	for _, c := range specs {
		top = append(top, c.name)
	}
	b.WriteString("_ssestress_subs() {\n    case \"$1\" in\n")
	for _, c := range specs {
		if len(c.subs) > 0 {
			var s []string
			for _, sub := range c.subs {
				s = append(s, sub.name)
			}
			fmt.Fprintf(&b, "        %s) echo %q ;;\n", shellWords(c.name), shellWords(strings.Join(s, " ")))
		}
	}
	b.WriteString("    esac\n}\n")
	for _, fn := range []struct {
		name       string
		valuedOnly bool
	}{{"_ssestress_flags", false}, {"_ssestress_valued", true}} {
		fmt.Fprintf(&b, "%s() {\n    case \"$1\" in\n", fn.name)
		for _, c := range specs {
			if words := flagWords(c.flags, fn.valuedOnly); words != "" {
				fmt.Fprintf(&b, "        %q) echo %q ;;\n", shellWords(c.name+"/"), shellWords(words))
			}
			for _, sub := range c.subs {
				if words := flagWords(sub.flags, fn.valuedOnly); words != "" {
					fmt.Fprintf(&b, "        %q) echo %q ;;\n", shellWords(c.name+"/"+sub.name), shellWords(words))
				}
			}
		}
		b.WriteString("    esac\n}\n")
	}
	fmt.Fprintf(&b, `_ssestress() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local cmd="" sub="" i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "$w" in -*) continue ;; esac
        if [[ -z "$cmd" ]]; then
            cmd="$w"
        elif [[ -z "$sub" && " $(_ssestress_subs "$cmd") " == *" $w "* ]]; then
            sub="$w"
        fi
    done
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W %q -- "$cur"))
        return
    fi
    local flag="${prev#-}"
    flag="${flag#-}"
    if [[ "$prev" == -* && "$prev" != *=* && " $(_ssestress_valued "$cmd/$sub") " == *" --$flag "* ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
        return
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_ssestress_flags "$cmd/$sub")" -- "$cur"))
        return
    fi
    if [[ -z "$sub" && -n "$(_ssestress_subs "$cmd")" ]]; then
        COMPREPLY=($(compgen -W "$(_ssestress_subs "$cmd")" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o filenames -F _ssestress ssestress
`, shellWords(strings.Join(top, " ")))
	_, err := io.WriteString(w, b.String())
	return err
}

// zshDescription makes a description safe inside a single-quoted zsh word
// and an _arguments spec: no quotes, brackets or colons.
func zshDescription(s string) string {
	s = strings.Map(func(r rune) rune {
		switch r {
		case '\'', '"', '`', '$', '\\':
			return -1
		case '[', '(', '{':
			return '('
		case ']', ')', '}':
			return ')'
		case ':':
			return ';'
		case '\n', '\t':
			return ' '
		}
		return r
	}, s)
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

func writeZshCompletion(w io.Writer, specs []cmdSpec) error {
	var b strings.Builder
	b.WriteString("#compdef ssestress\n# zsh completion for ssestress (generated by: ssestress completion zsh)\n\n")
	b.WriteString("_ssestress() {\n    local -a cmds subs\n    cmds=(\n")
	for _, c := range specs {
		fmt.Fprintf(&b, "        '%s:%s'\n", shellWords(c.name), zshDescription(c.summary))
	}
	b.WriteString("    )\n    if (( CURRENT == 2 )); then\n        _describe -t commands 'ssestress subcommand' cmds\n        return\n    fi\n")
	b.WriteString("    local cmd=${words[2]} sub=\n    case $cmd in\n")
	for _, c := range specs {
		if len(c.subs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "        %s)\n            subs=(", shellWords(c.name))
		for _, sub := range c.subs {
			fmt.Fprintf(&b, " '%s'", shellWords(sub.name))
		}
		b.WriteString(" )\n            if (( CURRENT == 3 )); then\n                _describe -t commands \"$cmd subcommand\" subs\n                return\n            fi\n")
		b.WriteString("            sub=${words[3]}\n            ;;\n")
	}
	b.WriteString("    esac\n")
	b.WriteString("    if [[ -n $sub ]]; then\n        shift 2 words\n        (( CURRENT -= 2 ))\n    else\n        shift words\n        (( CURRENT -= 1 ))\n    fi\n")
	b.WriteString("    case \"$cmd/$sub\" in\n")
	writeCase := func(key string, flags []flagSpec) {
		fmt.Fprintf(&b, "        %s)\n            _arguments -S", shellWords(key))
		for _, f := range flags {
			desc := zshDescription(f.usage)
			if f.valued {
				fmt.Fprintf(&b, " \\\n                '--%s[%s]:value:_files'", shellWords(f.name), desc)
			} else {
				fmt.Fprintf(&b, " \\\n                '--%s[%s]'", shellWords(f.name), desc)
			}
		}
		b.WriteString(" \\\n                '*:file:_files'\n            ;;\n")
	}
	for _, c := range specs {
		writeCase(c.name+"/", c.flags)
		for _, sub := range c.subs {
			writeCase(c.name+"/"+sub.name, sub.flags)
		}
	}
	b.WriteString("        *) _files ;;\n    esac\n}\n\n")
	// Autoloaded from fpath, the file is _ssestress's body: it defines the
	// function and calls it. Sourced, it registers the function.
	b.WriteString("if [[ \"$funcstack[1]\" == _ssestress ]]; then\n    _ssestress \"$@\"\nelse\n    compdef _ssestress ssestress\nfi\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// fishDescription makes a description safe inside a single-quoted fish word.
func fishDescription(s string) string {
	s = strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", " ").Replace(s)
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

func writeFishCompletion(w io.Writer, specs []cmdSpec) error {
	var b strings.Builder
	b.WriteString("# fish completion for ssestress (generated by: ssestress completion fish)\n\n")
	b.WriteString("function __ssestress_subs\n    switch $argv[1]\n")
	for _, c := range specs {
		if len(c.subs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "        case %s\n            printf '%%s\\n'", shellWords(c.name))
		for _, sub := range c.subs {
			fmt.Fprintf(&b, " %s", shellWords(sub.name))
		}
		b.WriteString("\n")
	}
	b.WriteString("    end\nend\n\n")
	b.WriteString(`# __ssestress_path prints "command/subcommand" of the line so far.
function __ssestress_path
    set -l words (commandline -opc)
    set -e words[1]
    set -l cmd ''
    set -l sub ''
    for w in $words
        if string match -q -- '-*' $w
            continue
        end
        if test -z "$cmd"
            set cmd $w
        else if test -z "$sub"; and contains -- $w (__ssestress_subs $cmd)
            set sub $w
        end
    end
    echo "$cmd/$sub"
end

`)
	for _, c := range specs {
		fmt.Fprintf(&b, "complete -c ssestress -f -n 'test (__ssestress_path) = /' -a %s -d '%s'\n",
			shellWords(c.name), fishDescription(c.summary))
	}
	writeFlags := func(key string, flags []flagSpec) {
		for _, f := range flags {
			extra := ""
			if f.valued {
				extra = " -r -F"
			}
			fmt.Fprintf(&b, "complete -c ssestress -n 'test (__ssestress_path) = %s' -l %s%s -d '%s'\n",
				shellWords(key), shellWords(f.name), extra, fishDescription(f.usage))
		}
	}
	for _, c := range specs {
		for _, sub := range c.subs {
			fmt.Fprintf(&b, "complete -c ssestress -f -n 'test (__ssestress_path) = %s/' -a %s\n", shellWords(c.name), shellWords(sub.name))
		}
		writeFlags(c.name+"/", c.flags)
		for _, sub := range c.subs {
			writeFlags(c.name+"/"+sub.name, sub.flags)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
