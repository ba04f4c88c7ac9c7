package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/proxy"
)

// completeWords runs the completion logic on the words typed after
// "ssestress" (the last being completed) and returns directive and words.
func completeWords(line string) (string, []string) {
	c := complete(strings.Split(line, " "))
	var words []string
	for _, w := range c.words {
		words = append(words, w.word)
	}
	return c.directive, words
}

// TestCompleteValues: completion offers subcommands, flags and the values
// of flags from the flag sets' data: scenarios, formats, fault kinds, their
// keys and key values, presets, shells, error classes, files.
func TestCompleteValues(t *testing.T) {
	kinds := []string{}
	for _, k := range proxy.KindNames() {
		kinds = append(kinds, k+":")
	}
	presets := []string{}
	for _, p := range proxy.PresetNames() {
		presets = append(presets, "preset:"+p)
	}
	for _, tc := range []struct {
		line      string
		directive string
		want      []string // exactly these (nil: see contains)
		contains  []string // at least these
	}{
		{line: "ta", directive: dirWords, want: []string{"tail"}},
		{line: "re", directive: dirWords, want: []string{"recordings", "replay", "report"}},
		{line: "run --token-", directive: dirWords, want: []string{"--token-file", "--token-env"}},
		{line: "run --scenario ", directive: dirWords, want: clients.Scenarios},
		{line: "run --scenario=l", directive: dirWords, want: []string{"--scenario=long-running"}},
		{line: "replay run --scenario m", directive: dirWords, want: []string{"mixed"}},
		{line: "report --format ", directive: dirWords, want: analysis.Formats()},
		{line: "report -o ", directive: dirFiles},
		{line: "report --format=j", directive: dirWords, want: []string{"--format=json"}},
		{line: "report a.db ", directive: dirFiles},
		{line: "completion ", directive: dirWords, want: []string{"bash", "fish", "zsh"}},
		{line: "help ", directive: dirWords, contains: []string{"run", "replay", "bisect"}},
		{line: "help replay ", directive: dirWords, want: []string{"serve", "run"}},
		{line: "replay ", directive: dirWords, want: []string{"serve", "run"}},
		{line: "replay run --reco", directive: dirWords, want: []string{"--recording"}},
		{line: "replay run --recording ", directive: dirFiles},
		{line: "capture ", directive: dirWords, want: []string{"analyze"}},
		{line: "capture analyze ", directive: dirFiles},
		{line: "serve --tls-cert-o", directive: dirWords, want: []string{"--tls-cert-out"}},
		{line: "run --fault ", directive: dirNoSpace, want: append(kinds, "preset:")},
		{line: "proxy --fault res", directive: dirNoSpace, want: []string{"reset:"}},
		{line: "run --fault preset:", directive: dirWords, want: presets},
		{line: "run --fault preset:aws-alb:", directive: dirNoSpace,
			want: []string{"preset:aws-alb:name=", "preset:aws-alb:toxicity=", "preset:aws-alb:match=", "preset:aws-alb:after="}},
		{line: "run --fault reset:", directive: dirNoSpace, contains: []string{"reset:hop=", "reset:after=", "reset:direction=", "reset:bytes=", "reset:events="}},
		{line: "run --fault latency:hop=", directive: dirNoSpace, want: []string{"latency:hop=client", "latency:hop=upstream"}},
		{line: "run --fault h2-goaway:hop=", directive: dirNoSpace, want: []string{"h2-goaway:hop=client"}},
		{line: "run --fault reset:hop=upstream,direction=", directive: dirNoSpace,
			want: []string{"reset:hop=upstream,direction=down", "reset:hop=upstream,direction=up", "reset:hop=upstream,direction=both"}},
		{line: "run --fault reset:hop=upstream,af", directive: dirNoSpace, want: []string{"reset:hop=upstream,after="}},
		{line: "run --expect ECONN", directive: dirWords, want: []string{"ECONNRESET", "ECONNREFUSED"}},
		{line: "proxy --on-upstream-error ", directive: dirWords, want: []string{"reset", "eof", "abort"}},
		{line: "bisect --en", directive: dirWords, want: []string{"--entry"}},
		{line: "bisect --scenario ", directive: dirWords, want: clients.Scenarios},
		{line: "run --duration ", directive: dirWords, want: nil},
		{line: "inspect ", directive: dirFiles},
		{line: "inspect a.db ", directive: dirWords, contains: []string{"--json"}},
		{line: "tail ", directive: dirWords, want: nil},
	} {
		directive, words := completeWords(tc.line)
		if directive != tc.directive {
			t.Errorf("%q: directive %s, want %s", tc.line, directive, tc.directive)
		}
		if tc.contains != nil {
			for _, w := range tc.contains {
				if !slices.Contains(words, w) {
					t.Errorf("%q: %q lacks %q", tc.line, words, w)
				}
			}
			continue
		}
		if fmt.Sprint(words) != fmt.Sprint(tc.want) && !(len(words) == 0 && len(tc.want) == 0) {
			t.Errorf("%q: %q, want %q", tc.line, words, tc.want)
		}
	}
}

// TestCompletionReadsTheFlagSets: every flag of every command (and
// subcommand) is offered after "--", and no other: completion reads the
// same flag sets the commands parse with.
func TestCompletionReadsTheFlagSets(t *testing.T) {
	var walk func(path []string, c *command)
	walk = func(path []string, c *command) {
		if c.setup != nil {
			fs := c.flags()
			var want []string
			for _, f := range fs.visible() {
				want = append(want, "--"+f.Name)
			}
			_, got := completeWords(strings.Join(append(path, "--"), " "))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: completion offers %q, the flag set holds %q", strings.Join(path, " "), got, want)
			}
			if len(want) == 0 && c.name != "version" && c.name != "ls" && c.name != "completion" {
				t.Errorf("%s has no flags", strings.Join(path, " "))
			}
		}
		for _, s := range c.subs {
			walk(append(path[:len(path):len(path)], s.name), s)
		}
	}
	for _, n := range commandNames() {
		walk([]string{n}, commands[n])
	}
}

// TestBashCompletion: the script bash sources calls the binary on the
// PATH and completes through bash's own word splitting (':' and '=' break
// words there), flag values included.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	script, _, code := runCLI(t, ctx, "completion", "bash")
	if code != 0 {
		t.Fatal("completion bash failed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ssestress.bash")
	os.WriteFile(path, []byte(script), 0o644)
	if out, err := exec.Command(bash, "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	bin := ssestressOnPath(t)
	for _, tc := range []struct{ line, want string }{
		{"ssestress ta", "tail"},
		{"ssestress run --token-", "--token-file --token-env"},
		{"ssestress replay ", "serve run"},
		{"ssestress replay run --reco", "--recording"},
		{"ssestress run --scenario ", "flood long-running churn mixed"},
		{"ssestress run --scenario=lo", "long-running"},
		{"ssestress report --format=m", "markdown"},
		{"ssestress run --fault res", "reset:"},
		{"ssestress run --fault reset:hop=up", "upstream"},
		{"ssestress run --fault reset:hop=upstream,af", "upstream,after="}, // ',' breaks no word
		{"ssestress run --fault preset:aws-n", "aws-nat"},
		{"ssestress completion f", "fish"},
	} {
		words := bashWords(tc.line)
		cmd := fmt.Sprintf(`source %q; COMP_LINE=%q; COMP_POINT=%d; COMP_WORDS=(%s); COMP_CWORD=%d; _ssestress; echo "${COMPREPLY[*]}"`,
			path, tc.line, len(tc.line), quoteWords(words), len(words)-1)
		c := exec.CommandContext(ctx, bash, "-c", cmd)
		c.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := c.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("bash completes %q to %q (%v), want %q", tc.line, strings.TrimSpace(string(out)), err, tc.want)
		}
	}
}

// bashWords splits a line as bash's completion does: at blanks, and with
// ':' and '=' (in COMP_WORDBREAKS) as words of their own.
func bashWords(line string) []string {
	var words []string
	for _, field := range strings.Split(line, " ") {
		cur := ""
		for _, r := range field {
			if r == ':' || r == '=' {
				if cur != "" {
					words = append(words, cur)
				}
				words = append(words, string(r))
				cur = ""
				continue
			}
			cur += string(r)
		}
		if cur != "" || field == "" {
			words = append(words, cur)
		}
	}
	return words
}

// quoteWords writes words as a bash array body.
func quoteWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + w + "'"
	}
	return strings.Join(q, " ")
}

// TestFishCompletion: fish's own completion (complete -C) through the
// script and the binary on the PATH.
func TestFishCompletion(t *testing.T) {
	fish, err := exec.LookPath("fish")
	if err != nil {
		t.Skip("fish not installed (.ci/run installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	script, _, _ := runCLI(t, ctx, "completion", "fish")
	dir := t.TempDir()
	path := filepath.Join(dir, "ssestress.fish")
	os.WriteFile(path, []byte(script), 0o644)
	if out, err := exec.Command(fish, "--no-execute", path).CombinedOutput(); err != nil {
		t.Fatalf("fish --no-execute: %v\n%s", err, out)
	}
	bin := ssestressOnPath(t)
	for _, tc := range []struct{ line, want string }{
		{"ssestress ta", "tail"},
		{"ssestress run --scenario ", "churn flood long-running mixed"}, // fish sorts them
		{"ssestress run --fault reset:hop=up", "reset:hop=upstream"},
		{"ssestress replay ", "run serve"},
	} {
		c := exec.CommandContext(ctx, fish, "--no-config", "-c", fmt.Sprintf("source %q; complete -C %q", path, tc.line))
		c.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HOME="+dir)
		out, err := c.CombinedOutput()
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			w, _, _ := strings.Cut(l, "\t")
			got = append(got, w)
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("fish completes %q to %q (%v), want %q", tc.line, got, err, tc.want)
		}
	}
}

// TestZshCompletionSyntax: the zsh script parses (zsh -n); what it offers
// is what __complete answers, tested above.
func TestZshCompletionSyntax(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("zsh not installed (.ci/run installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTestTimeout)
	defer cancel()
	script, _, _ := runCLI(t, ctx, "completion", "zsh")
	path := filepath.Join(t.TempDir(), "_ssestress")
	os.WriteFile(path, []byte(script), 0o644)
	if out, err := exec.CommandContext(ctx, zsh, "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	// The answer in zsh's form: "word:description", ':' in words escaped.
	var out bytes.Buffer
	if err := complete([]string{"run", "--fault", "res"}).write(&out, "zsh", ""); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), ":nospace\nreset\\::") {
		t.Fatalf("zsh answer %q", out.String())
	}
}
