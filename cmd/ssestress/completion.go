package main

import (
	"context"
	"io"
	"sort"
	"strings"
	"unicode"

	"github.com/ssestress/ssestress/proxy"
)

// Completion is data-driven: the scripts completion prints are small and
// the same for every version; each asks the binary itself what can come
// next (ssestress __complete), which reads the commands table and each
// command's flag set (names, which take a value, and what the values can
// be: scenarios, formats, fault kinds and their keys, presets, shells,
// files). Nothing is parsed out of help text, and the answers always match
// the binary that gives them.

const completionExamples = `  source <(ssestress completion bash)                       (this shell)
  ssestress completion bash > /etc/bash_completion.d/ssestress
  ssestress completion zsh > "${fpath[1]}/_ssestress"        (then: autoload -U compinit && compinit)
  ssestress completion fish > ~/.config/fish/completions/ssestress.fish`

const completionAbout = `The script asks the binary what can follow (ssestress __complete): subcommands, flags,
and flag values — scenarios, formats, fault kinds, their keys and values, presets, shells,
interfaces, files — so it always matches the binary on the PATH.`

// completionShells are the scripts completion writes.
var completionShells = map[string]string{
	"bash": bashCompletion,
	"zsh":  zshCompletion,
	"fish": fishCompletion,
}

func shellNames() []string {
	names := make([]string, 0, len(completionShells))
	for n := range completionShells {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var completionCmd = &command{
	name:     "completion",
	summary:  "print a shell completion script: bash, zsh or fish",
	synopsis: "completion bash|zsh|fish",
	about:    completionAbout,
	examples: completionExamples,
	args:     argSpec{name: "SHELL", what: "shell", min: 1, max: 1, values: wordsOf(shellNames)},
	setup: func(fs *flagSet) action {
		return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			script, ok := completionShells[args[0]]
			if !ok {
				return usageErrorf("completion: unknown shell %q (use bash, zsh or fish)", args[0])
			}
			_, err := io.WriteString(stdout, script)
			return err
		}
	},
}

// completeCmd is the hidden __complete the scripts call: the words typed
// so far (the last one being completed, maybe empty) in, one candidate a
// line out, after a first line that says what the shell adds itself
// (:files, :dirs) or how (:nospace, :words).
var completeCmd = &command{
	name:   "__complete",
	hidden: true,
	intercept: func(ctx context.Context, args []string, stdout, stderr io.Writer) (bool, error) {
		shell, line, cur, words := "", "", "", []string(nil)
		for len(args) > 0 {
			switch a := args[0]; {
			case a == "--shell" && len(args) > 1:
				shell, args = args[1], args[2:]
			case a == "--line" && len(args) > 1:
				line, args = args[1], args[2:]
			case a == "--cur" && len(args) > 1:
				cur, args = args[1], args[2:]
			case a == "--":
				words, args = args[1:], nil
			default:
				return true, usageErrorf("__complete: unexpected %q", a)
			}
		}
		if shell == "bash" {
			words = shellSplit(line)
			if len(words) > 0 {
				words = words[1:] // the command itself
			}
		}
		if len(words) == 0 {
			words = []string{""}
		}
		res := complete(words)
		return true, res.write(stdout, shell, cur)
	},
}

// Directives: what the shell does with the answer.
const (
	dirWords   = ":words"   // offer the candidates
	dirNoSpace = ":nospace" // offer them, no space after (a key= or kind: goes on)
	dirFiles   = ":files"   // let the shell complete file names
	dirDirs    = ":dirs"    // let the shell complete directory names
)

// completion is an answer: a directive and candidates, each a whole word
// (current is the word being completed, as typed so far) with an optional
// description.
type completion struct {
	directive string
	current   string
	words     []candidate
}

type candidate struct{ word, desc string }

// write prints the answer for shell. For bash, whose current word stops at
// ':' and '=' (COMP_WORDBREAKS), each candidate loses the part before the
// word bash completes (cur); zsh takes "word:description" with ':'
// escaped, fish "word<TAB>description".
func (c completion) write(w io.Writer, shell, cur string) error {
	var b strings.Builder
	b.WriteString(c.directive + "\n")
	strip := 0
	if shell == "bash" && strings.HasSuffix(c.current, cur) {
		strip = len(c.current) - len(cur)
	}
	for _, cand := range c.words {
		desc := oneLine(cand.desc)
		switch shell {
		case "bash":
			if len(cand.word) >= strip {
				b.WriteString(cand.word[strip:] + "\n")
			}
		case "zsh":
			b.WriteString(strings.ReplaceAll(cand.word, ":", `\:`))
			if desc != "" {
				b.WriteString(":" + desc)
			}
			b.WriteString("\n")
		case "fish":
			b.WriteString(cand.word)
			if desc != "" {
				b.WriteString("\t" + desc)
			}
			b.WriteString("\n")
		default:
			b.WriteString(cand.word + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// oneLine makes a description one short line without the flag package's
// back quotes.
func oneLine(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "`", ""), "\n", " ")
	if i := strings.Index(s, ": "); i > 60 {
		s = s[:i]
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// complete answers what can follow words (after "ssestress"; the last
// word is the one being completed, maybe empty).
func complete(words []string) completion {
	cur := words[len(words)-1]
	done := words[:len(words)-1]
	if len(done) == 0 {
		return offer(cur, dirWords, topCandidates())
	}
	if done[0] == "help" {
		return completeHelp(done[1:], cur)
	}
	cmd, ok := commands[done[0]]
	if !ok || cmd.hidden {
		return completion{directive: dirWords, current: cur}
	}
	c, rest := cmd.find(done[1:])
	// Subcommands go first, before any flag.
	if len(c.subs) > 0 && len(rest) == 0 && !strings.HasPrefix(cur, "-") {
		return offer(cur, dirWords, subCandidates(c))
	}
	if c.setup == nil {
		return completion{directive: dirWords, current: cur}
	}
	fs := c.flags()
	// Walk what is typed: a flag that takes a value eats the next word.
	positional := 0
	valueOf := ""
	for i := 0; i < len(rest); i++ {
		w := rest[i]
		if w == "--" {
			positional += len(rest) - i - 1
			break
		}
		if name, ok := flagWord(w); ok {
			if !strings.Contains(w, "=") && fs.takesValue(name) {
				if i == len(rest)-1 {
					valueOf = name
				}
				i++
			}
			continue
		}
		positional++
	}
	if valueOf != "" {
		return completeValue(fs, valueOf, "", cur)
	}
	if strings.HasPrefix(cur, "-") {
		if name, value, ok := strings.Cut(cur, "="); ok {
			if n, isFlag := flagWord(name); isFlag {
				return completeValue(fs, n, name+"=", value)
			}
		}
		return offer(cur, dirWords, flagCandidates(fs))
	}
	if c.args.name == "" || (c.args.max >= 0 && positional >= c.args.max) {
		// Nothing positional can come: the flags are what is left.
		return offer(cur, dirWords, flagCandidates(fs))
	}
	return valueCompletion(c.args.values, "", cur, "")
}

// completeHelp completes "help COMMAND [SUB]".
func completeHelp(done []string, cur string) completion {
	if len(done) == 0 {
		var cands []candidate
		for _, n := range commandNames() {
			cands = append(cands, candidate{n, commands[n].summary})
		}
		return offer(cur, dirWords, cands)
	}
	cmd, ok := commands[done[0]]
	if !ok {
		return completion{directive: dirWords, current: cur}
	}
	c, rest := cmd.find(done[1:])
	if len(rest) > 0 {
		return completion{directive: dirWords, current: cur}
	}
	return offer(cur, dirWords, subCandidates(c))
}

func topCandidates() []candidate {
	var cands []candidate
	for _, n := range commandNames() {
		cands = append(cands, candidate{n, commands[n].summary})
	}
	return append(cands, candidate{"help", "print the help of a subcommand"})
}

func subCandidates(c *command) []candidate {
	var cands []candidate
	for _, s := range c.subs {
		if !s.hidden {
			cands = append(cands, candidate{s.name, s.summary})
		}
	}
	return cands
}

func flagCandidates(fs *flagSet) []candidate {
	var cands []candidate
	for _, f := range fs.visible() {
		cands = append(cands, candidate{"--" + f.Name, f.Usage})
	}
	return cands
}

// flagWord reads "--name" or "-name" (and "--name=value") as a flag name.
func flagWord(w string) (string, bool) {
	if !strings.HasPrefix(w, "-") || w == "-" || w == "--" {
		return "", false
	}
	name := strings.TrimLeft(w, "-")
	name, _, _ = strings.Cut(name, "=")
	return name, name != ""
}

// completeValue completes the value of flag name; prefix is what stands
// before the value in the word ("--format=" or "").
func completeValue(fs *flagSet, name, prefix, value string) completion {
	m, ok := fs.meta[name]
	if !ok {
		return completion{directive: dirWords, current: prefix + value}
	}
	return valueCompletion(m.values, prefix, value, name)
}

// valueCompletion offers what spec allows for value, each candidate with
// prefix in front.
func valueCompletion(spec valueSpec, prefix, value, flagName string) completion {
	switch spec.kind {
	case valFiles:
		return completion{directive: dirFiles, current: prefix + value}
	case valDirs:
		return completion{directive: dirDirs, current: prefix + value}
	case valWords:
		var cands []candidate
		for _, w := range spec.words() {
			cands = append(cands, candidate{prefix + w, ""})
		}
		return offer(prefix+value, dirWords, cands)
	case valFault:
		return completeFault(prefix, value)
	}
	return completion{directive: dirWords, current: prefix + value}
}

// offer keeps the candidates that start with cur.
func offer(cur, directive string, cands []candidate) completion {
	out := completion{directive: directive, current: cur}
	for _, c := range cands {
		if strings.HasPrefix(c.word, cur) {
			out.words = append(out.words, c)
		}
	}
	return out
}

// completeFault completes a --fault value: KIND: or preset:, then a
// preset's name, then key= (the keys the kind has and the common ones not
// yet given), then a key's value where it has a fixed set (hop, direction,
// and the kind's own: action, code, ...).
func completeFault(prefix, value string) completion {
	kinds := proxy.Kinds()
	head, rest, hasColon := strings.Cut(value, ":")
	if !hasColon {
		var cands []candidate
		for _, k := range kinds {
			cands = append(cands, candidate{prefix + k.Name + ":", k.Summary})
		}
		cands = append(cands, candidate{prefix + "preset:", "a real middlebox's timeouts and faults"})
		return offer(prefix+value, dirNoSpace, cands)
	}
	var kind *proxy.KindInfo
	keys := []string{"name", "toxicity", "match", "after"}
	start := prefix + head + ":"
	if head == "preset" {
		name, opts, named := strings.Cut(rest, ":")
		if !named {
			var cands []candidate
			for _, p := range proxy.Presets() {
				cands = append(cands, candidate{start + p.Name, p.Summary})
			}
			return offer(prefix+value, dirWords, cands)
		}
		start += name + ":"
		rest = opts
	} else {
		for i := range kinds {
			if kinds[i].Name == head {
				kind = &kinds[i]
			}
		}
		if kind == nil {
			return completion{directive: dirWords, current: prefix + value}
		}
		keys = append([]string{"hop"}, keys...)
		if kind.Directional {
			keys = append(keys, "direction")
		}
		keys = append(keys, kind.Keys...)
	}
	pieces := strings.Split(rest, ",")
	last := pieces[len(pieces)-1]
	given := map[string]bool{}
	for _, p := range pieces[:len(pieces)-1] {
		k, _, _ := strings.Cut(p, "=")
		given[k] = true
		start += p + ","
	}
	key, _, hasValue := strings.Cut(last, "=")
	if !hasValue {
		var cands []candidate
		for _, k := range keys {
			if !given[k] {
				cands = append(cands, candidate{start + k + "=", ""})
			}
		}
		return offer(prefix+value, dirNoSpace, cands)
	}
	var choices []string
	switch {
	case key == "hop" && kind != nil:
		choices = kind.Hops
	case key == "direction":
		choices = []string{proxy.DirDown, proxy.DirUp, proxy.DirBoth}
	}
	var cands []candidate
	for _, c := range choices {
		cands = append(cands, candidate{start + key + "=" + c, ""})
	}
	return offer(prefix+value, dirNoSpace, cands)
}

// shellSplit splits a command line as the shell would, roughly: blanks
// separate words, quotes and backslashes keep them together. A line ending
// in a blank ends with an empty word (the one being completed).
func shellSplit(line string) []string {
	var (
		words []string
		cur   strings.Builder
		quote rune
		in    bool
	)
	esc := false
	for _, r := range line {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\' && quote != '\'':
			esc, in = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case unicode.IsSpace(r):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	words = append(words, cur.String()) // the word being completed, maybe ""
	return words
}

// The scripts. Each hands the words typed so far to ssestress __complete
// and turns its answer into the shell's own completion.

const bashCompletion = `# bash completion for ssestress (generated by: ssestress completion bash)
# It asks the binary what can follow: ssestress __complete.
_ssestress() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    local line="${COMP_LINE:0:COMP_POINT}"
    local IFS=$'\n'
    local -a out
    out=($(command "${COMP_WORDS[0]}" __complete --shell bash --cur "$cur" --line "$line" 2>/dev/null))
    local directive="${out[0]}"
    out=("${out[@]:1}")
    case "$directive" in
    :files) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
    :dirs) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
    :nospace) compopt -o nospace 2>/dev/null; COMPREPLY=("${out[@]}") ;;
    *) COMPREPLY=("${out[@]}") ;;
    esac
}
complete -F _ssestress ssestress
`

const zshCompletion = `#compdef ssestress
# zsh completion for ssestress (generated by: ssestress completion zsh)
# It asks the binary what can follow: ssestress __complete.
_ssestress() {
    local -a lines cands
    lines=("${(@f)$(${words[1]} __complete --shell zsh -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    case ${lines[1]} in
    :files) _files; return ;;
    :dirs) _files -/; return ;;
    esac
    cands=("${(@)lines[2,-1]}")
    (( ${#cands} )) || return 1
    if [[ ${lines[1]} == :nospace ]]; then
        _describe -t values ssestress cands -S ''
    else
        _describe -t values ssestress cands
    fi
}
# Autoloaded from fpath, the file is _ssestress's body: it defines the
# function and calls it. Sourced, it registers the function.
if [[ "$funcstack[1]" == _ssestress ]]; then
    _ssestress "$@"
else
    compdef _ssestress ssestress
fi
`

const fishCompletion = `# fish completion for ssestress (generated by: ssestress completion fish)
# It asks the binary what can follow: ssestress __complete.
function __ssestress_complete
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -l out (command $tokens[1] __complete --shell fish -- $tokens[2..-1] "$cur" 2>/dev/null)
    switch "$out[1]"
        case :files
            __fish_complete_path "$cur"
        case :dirs
            __fish_complete_directories "$cur"
        case '*'
            printf '%s\n' $out[2..-1]
    end
end
complete -c ssestress -f -a '(__ssestress_complete)'
`
