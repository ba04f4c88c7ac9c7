package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ssestress/ssestress/internal/inputfile"
	"github.com/ssestress/ssestress/internal/redact"
)

// Secrets on the command line are visible to every user of the machine
// (ps, /proc/PID/cmdline) for as long as the process runs. Every secret
// flag therefore has twins that read it from a file or from the
// environment (--api-token-file, --api-token-env; --header-file,
// --header-env; --cookie-file, --cookie-env; the bearer token has only
// --token-file and --token-env), and a secret typed on the command line
// itself is used but warned about in one line. Secrets are never stored
// or printed: redactArgs replaces them in RunInfo.Args.

// secretFlagNames are the flags whose value is a secret as a whole.
var secretFlagNames = map[string]bool{"api-token": true}

// maxSecretFileSize caps a secret file (it may be <(pass show …)).
const maxSecretFileSize = 64 << 10

// secretSource is one secret flag with its twins: --NAME VALUE, --NAME-file
// FILE and --NAME-env VARIABLE. At most one of the three may be given.
type secretSource struct {
	name             string
	value, file, env string
}

// register adds --NAME (its usage names the value with a back-quoted
// word), --NAME-file and --NAME-env.
func (s *secretSource) register(fs *flagSet, usage string) {
	fs.StringVar(&s.value, s.name, "", usage+"; other users can read it in the process list: prefer --"+s.name+"-file or --"+s.name+"-env")
	fs.StringVar(&s.file, s.name+"-file", "", "`FILE` holding the --"+s.name+" value (surrounding white space ignored)")
	fs.StringVar(&s.env, s.name+"-env", "", "environment `VARIABLE` holding the --"+s.name+" value")
	fs.values(files(), s.name+"-file")
	fs.values(wordsOf(environNames), s.name+"-env")
}

// given reports whether any of the three was given.
func (s *secretSource) given() bool { return s.value != "" || s.file != "" || s.env != "" }

// resolve returns the secret, trimmed and checked as a header value
// (checkToken): "" when none of the three was given. Its errors name the
// flag, never the secret.
func (s *secretSource) resolve() (string, error) {
	n := 0
	for _, v := range []string{s.value, s.file, s.env} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return "", usageErrorf("give --%s, --%s-file or --%s-env, one of them", s.name, s.name, s.name)
	}
	var (
		v    string
		from string
	)
	switch {
	case s.file != "":
		raw, err := inputfile.ReadFile(s.file, maxSecretFileSize)
		if err != nil {
			return "", badValue("--"+s.name+"-file", err)
		}
		v, from = string(raw), "--"+s.name+"-file "+s.file
	case s.env != "":
		e, ok := os.LookupEnv(s.env)
		if !ok {
			return "", usageErrorf("--%s-env: environment variable %s is not set", s.name, s.env)
		}
		v, from = e, "--"+s.name+"-env "+s.env
	case s.value != "":
		v, from = s.value, "--"+s.name
	default:
		return "", nil
	}
	v = strings.TrimSpace(v)
	if err := checkToken(v); err != nil {
		return "", usageErrorf("%s: %v", from, err)
	}
	return v, nil
}

// readSecretLines reads the 'Name: value' (or cookie) lines of a --*-file
// or --*-env twin: blank lines and lines starting with '#' are skipped.
func readSecretLines(flagName, file, env string) ([]string, error) {
	var text string
	switch {
	case file != "":
		raw, err := inputfile.ReadFile(file, maxSecretFileSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flagName, err)
		}
		text = string(raw)
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return nil, fmt.Errorf("%s: environment variable %s is not set", flagName, env)
		}
		text = v
	}
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return nil, errors.New(flagName + ": holds nothing")
	}
	return lines, nil
}

// secretWarnings are the one-line warnings about secrets typed on the
// command line of a parsed flag set: a secret flag's value, a credential
// --header, a --cookie, and a credential in a URL (user info password,
// token=... query parameter). Each kind is warned about once.
func secretWarnings(fs *flagSet) []string {
	var out []string
	seen := map[string]bool{}
	warn := func(key, msg string) {
		if !seen[key] {
			seen[key] = true
			out = append(out, msg)
		}
	}
	const visible = "other users of this machine can read it in the process list (ps, /proc/PID/cmdline)"
	check := func(name, v string) {
		switch {
		case secretFlagNames[name] && v != "":
			warn(name, fmt.Sprintf("--%s on the command line: %s; use --%s-file FILE or --%s-env VARIABLE", name, visible, name, name))
		case name == "header":
			if n, _, ok := strings.Cut(v, ":"); ok && redact.Header(n) {
				warn(name, fmt.Sprintf("--header %s: on the command line: %s; use --header-file FILE or --header-env VARIABLE", strings.TrimSpace(n), visible))
			}
		case name == "capture-payload" && v != "false":
			warn(name, "--capture-payload: the pcap keeps the streams' bytes, credentials included (Authorization, cookies, tokens in URLs): keep it private")
		case name == "cookie":
			warn(name, fmt.Sprintf("--cookie on the command line: %s; use --cookie-file FILE or --cookie-env VARIABLE", visible))
		case urlFlags[name] || (name == "" && strings.Contains(v, "://")):
			if redact.URL(v) != v {
				what := "the URL"
				if name != "" {
					what = "--" + name
				}
				warn("url", fmt.Sprintf("%s holds a credential (%s): %s; send it in a header with --header-file or --header-env if the service takes one",
					what, redact.URL(v), visible))
			}
		}
	}
	args := fs.argv
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			for _, p := range args[i+1:] {
				check("", p)
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			check("", a)
			continue
		}
		name, value, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !inline {
			if !fs.takesValue(name) {
				check(name, "true") // a boolean flag
				continue
			}
			if i+1 >= len(args) {
				continue
			}
			i++
			value = args[i]
		}
		check(name, value)
	}
	return out
}

// registerCapturePayload adds --capture-payload: a pcap keeps only the
// packets' headers unless it is given (payloads hold credentials).
func registerCapturePayload(fs *flagSet, p *bool) {
	fs.BoolVar(p, "capture-payload", false, "keep the TCP payload in the pcap (default: each packet's headers only, which is all attribution reads); payloads hold credentials")
}

// warnSecrets prints secretWarnings, one line each. A command calls it once
// its command line has passed its checks: a bad command line gets its one
// line, not warnings besides.
func warnSecrets(fs *flagSet, w io.Writer) {
	for _, s := range secretWarnings(fs) {
		fmt.Fprintln(w, "ssestress: warning:", s)
	}
}
