package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ssestress/ssestress/analysis"
)

// bisectOptions are bisect's own flags; every other flag goes to run.
type bisectOptions struct {
	hops       []analysis.BisectEntry
	sequential bool
	dir        string
	format     string
	out        string
	runArgs    []string
}

const bisectSynopsis = "bisect --hop NAME=URL --hop NAME=URL [...] [--sequential] [--dir DIR] [run flags: --scenario, --connections, --duration, ...]"

const bisectExamples = `  ssestress bisect --hop lb=http://lb --hop nginx=http://nginx:8080 --hop app=http://app:3000 --duration 10m --connections 30
  ssestress bisect --hop p1=http://127.0.0.1:9001 --hop server=http://127.0.0.1:8090 --sequential --duration 2m
  ssestress bisect --hop cdn=https://feed.example --hop origin=https://origin.internal:8443 --token-env FEED_TOKEN --ca internal-ca.pem --http2

Entry points go from the outermost to the innermost. The same scenario runs against each,
each with its share of --connections (all at once, or one after another with --sequential),
into DIR/<name>.db; the report names the hop between the last entry point that shows resets
and the first that does not. A URL without a path gets run's default stream path.
The request flags of run (--header, --cookie, --token-file, --token-env, --insecure, --ca,
--http2) apply to every entry point; the session files keep them redacted.`

// bisectFlags are the flags bisect keeps; the value says whether it takes
// an argument.
var bisectFlags = map[string]bool{"hop": true, "sequential": false, "dir": true, "format": true, "out": true, "help": false, "h": false}

func runBisect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseBisectArgs(args, stdout)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("bisect: --dir: %w", err)
	}
	for i := range o.hops {
		o.hops[i].File = filepath.Join(o.dir, o.hops[i].Name+".db")
		if _, err := os.Stat(o.hops[i].File); err == nil {
			return fmt.Errorf("bisect: %s exists: choose another --dir (session files are never overwritten)", o.hops[i].File)
		}
	}
	shares := splitConnections(o.runArgs, len(o.hops))
	how := "at once"
	if o.sequential {
		how = "one after another"
	}
	fmt.Fprintf(stderr, "ssestress bisect: %d entry points, %s; session files in %s\n", len(o.hops), how, o.dir)

	errs := make([]error, len(o.hops))
	logs := make([]bytes.Buffer, len(o.hops))
	runOne := func(i int) {
		h := o.hops[i]
		args := append(withConnections(o.runArgs, shares[i]), "--target="+h.URL, "--out="+h.File)
		errs[i] = runRun(ctx, args, &logs[i], &logs[i])
	}
	if o.sequential {
		for i := range o.hops {
			if ctx.Err() != nil {
				break
			}
			runOne(i)
		}
	} else {
		var wg sync.WaitGroup
		for i := range o.hops {
			wg.Add(1)
			go func() { defer wg.Done(); runOne(i) }()
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("bisect: run against %s (%s): %w", o.hops[i].Name, o.hops[i].URL, err)
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("bisect: interrupted: %w", ctx.Err())
	}
	res, err := analysis.Bisect(o.hops)
	if err != nil {
		return fmt.Errorf("bisect: %w", err)
	}
	var buf bytes.Buffer
	if err := analysis.RenderDoc(&buf, res.Doc(), o.format); err != nil {
		return fmt.Errorf("bisect: %w", err)
	}
	if o.out == "" {
		_, err = stdout.Write(buf.Bytes())
		return err
	}
	if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bisect: --out: %w", err)
	}
	fmt.Fprintf(stderr, "wrote %s report to %s\n", o.format, o.out)
	return nil
}

// parseBisectArgs takes bisect's own flags out of args and checks the rest
// as run's.
func parseBisectArgs(args []string, stdout io.Writer) (*bisectOptions, error) {
	o := &bisectOptions{format: "table"}
	var own []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, ok := bisectFlags[name]
		if !strings.HasPrefix(a, "-") || !ok {
			o.runArgs = append(o.runArgs, a)
			continue
		}
		own = append(own, a)
		if takesValue && !hasValue && i+1 < len(args) {
			i++
			own = append(own, args[i])
		}
	}
	fs := newFlags("bisect")
	var hops stringList
	fs.Var(&hops, "hop", "entry point NAME=URL, outermost first (repeat for each hop, at least two)")
	fs.BoolVar(&o.sequential, "sequential", false, "run against the entry points one after another instead of at once")
	fs.StringVar(&o.dir, "dir", "", "directory of the session files, one per entry point (default bisect-<time>)")
	fs.StringVar(&o.format, "format", "table", "output format: "+strings.Join(analysis.Formats(), ", "))
	fs.StringVar(&o.out, "out", "", "write the report to FILE instead of standard output")
	if err := parseFlags(fs, own, stdout, bisectSynopsis, bisectExamples); err != nil {
		return nil, err
	}
	if _, ok := analysis.Renderers[o.format]; !ok {
		return nil, usageErrorf("bisect: --format %q: use %s", o.format, strings.Join(analysis.Formats(), ", "))
	}
	if len(hops) < 2 {
		return nil, usageErrorf("bisect: give at least two --hop NAME=URL, outermost first")
	}
	seen := map[string]bool{}
	for _, h := range hops {
		name, raw, ok := strings.Cut(h, "=")
		if !ok || name == "" || raw == "" {
			return nil, usageErrorf("bisect: --hop %q: use NAME=URL, e.g. --hop lb=http://lb:80", h)
		}
		if strings.ContainsAny(name, `/\ `) || seen[name] {
			return nil, usageErrorf("bisect: --hop %q: names must be distinct and hold no / \\ or space", h)
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, usageErrorf("bisect: --hop %q: the URL must be http:// or https:// with a host", h)
		}
		seen[name] = true
		o.hops = append(o.hops, analysis.BisectEntry{Name: name, URL: raw})
	}
	for _, a := range o.runArgs {
		if a == "--" || !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "target":
			return nil, usageErrorf("bisect: --target is set per entry point (use --hop NAME=URL)")
		case "repeat", "expect", "shard":
			return nil, usageErrorf("bisect: --%s does not apply: bisect runs once against each entry point", name)
		}
	}
	if o.dir == "" {
		o.dir = "bisect-" + time.Now().Format("20060102-150405")
	}
	// The run flags are checked once, before anything starts.
	check := append(withConnections(o.runArgs, 1), "--target="+o.hops[0].URL, "--out="+filepath.Join(o.dir, "check.db"))
	if _, err := parseRunArgs(check, io.Discard); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return nil, usageErrorf("bisect: %s", strings.TrimPrefix(ue.msg, "run: "))
		}
		return nil, err
	}
	return o, nil
}

// connectionsArg finds --connections in run's arguments: its value and the
// indexes it spans; n is -1 when it is not there.
func connectionsArg(args []string) (n, at, width int) {
	for i, a := range args {
		name, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "connections" {
			continue
		}
		width = 1
		if !hasValue && i+1 < len(args) {
			v, width = args[i+1], 2
		}
		c, err := strconv.Atoi(v)
		if err != nil {
			return -1, -1, 0
		}
		return c, i, width
	}
	return -1, -1, 0
}

// splitConnections gives each of k entry points its share of
// --connections (the first ones get the remainder, each at least one);
// -1 when --connections was not given (each run keeps its default).
func splitConnections(args []string, k int) []int {
	n, _, _ := connectionsArg(args)
	shares := make([]int, k)
	for i := range shares {
		if n < 0 {
			shares[i] = -1
			continue
		}
		shares[i] = n / k
		if i < n%k {
			shares[i]++
		}
		shares[i] = max(1, shares[i])
	}
	return shares
}

// withConnections returns args with --connections set to n (unchanged
// when n < 0).
func withConnections(args []string, n int) []string {
	if n < 0 {
		return append([]string(nil), args...)
	}
	out := make([]string, 0, len(args)+1)
	_, at, width := connectionsArg(args)
	for i := 0; i < len(args); i++ {
		if i == at {
			i += width - 1
			continue
		}
		out = append(out, args[i])
	}
	return append(out, "--connections="+strconv.Itoa(n))
}
