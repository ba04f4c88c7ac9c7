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

// bisectOptions are bisect's own flags; run's flags it passes on to the run
// against every entry point are collected in runArgs.
type bisectOptions struct {
	entries    []analysis.BisectEntry
	entryTexts stringList
	sequential bool
	dir        string
	format     string
	output     string
	force      bool // --force: replace --output
	runArgs    []string
}

const bisectSynopsis = "bisect --entry NAME=URL --entry NAME=URL [...] [--sequential] [--dir DIR] [run flags: --scenario, --connections, --duration, ...]"

const bisectExamples = `  ssestress bisect --entry lb=http://lb --entry nginx=http://nginx:8080 --entry app=http://app:3000 --duration 10m --connections 30
  ssestress bisect --entry p1=http://127.0.0.1:9001 --entry server=http://127.0.0.1:8090 --sequential --duration 2m
  ssestress bisect --entry cdn=https://feed.example --entry origin=https://origin.internal:8443 --token-env FEED_TOKEN --ca internal-ca.pem --http2`

const bisectAbout = `Entry points go from the outermost to the innermost. The same scenario runs against each,
each with its share of --connections (all at once, or one after another with --sequential),
into DIR/<name>.db; the report names the link between the last entry point that shows resets
and the first that does not. A URL without a path gets run's default stream path.
Run's flags listed below apply to every entry point's run; the session files keep credentials
redacted. The flags under Refused are run's that bisect cannot honour.`

// bisectRefuses are run's flags bisect cannot honour, with why: given,
// they stop it with exit 2 instead of being silently dropped.
var bisectRefuses = map[string]string{
	"target":            "set per entry point: give --entry NAME=URL",
	"out":               "each entry point's run writes DIR/<name>.db (--dir DIR); the report goes to -o FILE",
	"repeat":            "does not apply: bisect runs once against each entry point",
	"expect":            "does not apply: bisect runs once against each entry point",
	"shard":             "does not apply: bisect runs once against each entry point",
	"via-proxy":         "bisect measures the path as it is; an in-process fault proxy would make the resets it looks for (ssestress run --fault against one entry point)",
	"fault":             "bisect measures the path as it is; an in-process fault proxy would make the resets it looks for (ssestress run --fault against one entry point)",
	"on-upstream-error": "goes with --via-proxy, which bisect does not take",
	"time-scale":        "goes with --via-proxy, which bisect does not take",
	"keepalive":         "goes with --via-proxy, which bisect does not take",
	"api":               "goes with --via-proxy, which bisect does not take",
	"api-token":         "goes with --via-proxy, which bisect does not take",
	"fail-on":           "bisect expects resets at some entry points: it judges where they enter, not whether they happen",
	"http":              "the runs against the entry points share no live view address",
	"json":              "bisect prints its own report (--format json)",
	"pcap":              "each entry point's capture goes beside its session file, DIR/<name>.pcap",
}

// bisectRunSection titles run's flags in bisect's help.
const bisectRunSection = "Run flags (passed to the run against every entry point)"

var bisectCmd = &command{
	name:     "bisect",
	summary:  "run one scenario against each entry point of a path and name the link of the path where resets enter",
	synopsis: bisectSynopsis,
	about:    bisectAbout,
	examples: bisectExamples,
	setup: func(fs *flagSet) action {
		o := newBisectOptions(fs)
		return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
			if err := o.check(); err != nil {
				return err
			}
			warnSecrets(fs, stderr)
			return o.run(ctx, stdout, stderr)
		}
	},
}

// newBisectOptions registers bisect's own flags, then run's: each run
// flag bisect can pass on as one that collects --name=value into runArgs,
// each it cannot as a refused flag.
func newBisectOptions(fs *flagSet) *bisectOptions {
	o := &bisectOptions{format: "table"}
	fs.Var(&o.entryTexts, "entry", "entry point `NAME=URL`, outermost first (repeat for each, at least two)")
	fs.deprecated("hop", "entry", "a hop is a proxy's side; where a run connects is an entry point")
	fs.BoolVar(&o.sequential, "sequential", false, "run against the entry points one after another instead of at once")
	fs.StringVar(&o.dir, "dir", "", "`DIR` of the session files, one per entry point (default bisect-<time>)")
	fs.StringVar(&o.format, "format", "table", "output `FORMAT`: "+strings.Join(analysis.Formats(), ", "))
	fs.StringVar(&o.output, "output", "", "write the report to `FILE` instead of standard output")
	fs.alias("o", "output")
	fs.BoolVar(&o.force, "force", false, fmt.Sprintf(forceUsage, "--output"))
	fs.values(dirs(), "dir")
	fs.values(wordsOf(analysis.Formats), "format")
	fs.values(files(), "output", "o")

	run := runCmd.flags()
	fs.section = bisectRunSection
	for _, f := range run.visible() {
		if reason, ok := bisectRefuses[f.Name]; ok {
			fs.refuse(f.Name, run.takesValue(f.Name), reason)
			continue
		}
		fs.Var(&passedFlag{name: f.Name, bool: !run.takesValue(f.Name), args: &o.runArgs}, f.Name, f.Usage)
		fs.meta[f.Name].values = run.meta[f.Name].values
		fs.meta[f.Name].passthrough = true
		fs.meta[f.Name].placeholder, _ = run.placeholder(f)
	}
	fs.section = ""
	return o
}

// passedFlag collects a run flag as --name=value, in the order given.
type passedFlag struct {
	name  string
	bool  bool
	args  *[]string
	value string
}

func (p *passedFlag) String() string   { return p.value }
func (p *passedFlag) IsBoolFlag() bool { return p.bool }
func (p *passedFlag) Set(v string) error {
	p.value = v
	*p.args = append(*p.args, "--"+p.name+"="+v)
	return nil
}

func (o *bisectOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("bisect: --dir: %w", err)
	}
	for i := range o.entries {
		o.entries[i].File = filepath.Join(o.dir, o.entries[i].Name+".db")
		if _, err := os.Stat(o.entries[i].File); err == nil {
			return fmt.Errorf("bisect: %s exists: choose another --dir (session files are never overwritten)", o.entries[i].File)
		}
	}
	shares := splitConnections(o.runArgs, len(o.entries))
	how := "at once"
	if o.sequential {
		how = "one after another"
	}
	fmt.Fprintf(stderr, "ssestress bisect: %d entry points, %s; session files in %s\n", len(o.entries), how, o.dir)

	errs := make([]error, len(o.entries))
	logs := make([]bytes.Buffer, len(o.entries))
	runOne := func(i int) {
		h := o.entries[i]
		args := append(withConnections(o.runArgs, shares[i]), "--target="+h.URL, "--out="+h.File)
		errs[i] = runCmd.execute(ctx, args, &logs[i], &logs[i])
	}
	if o.sequential {
		for i := range o.entries {
			if ctx.Err() != nil {
				break
			}
			runOne(i)
		}
	} else {
		var wg sync.WaitGroup
		for i := range o.entries {
			wg.Add(1)
			go func() { defer wg.Done(); runOne(i) }()
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("bisect: run against %s (%s): %w", o.entries[i].Name, o.entries[i].URL, err)
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("bisect: interrupted: %w", ctx.Err())
	}
	res, err := analysis.Bisect(o.entries)
	if err != nil {
		return fmt.Errorf("bisect: %w", err)
	}
	var buf bytes.Buffer
	if err := analysis.RenderDoc(&buf, res.Doc(), o.format); err != nil {
		return fmt.Errorf("bisect: %w", err)
	}
	if o.output == "" {
		_, err = stdout.Write(buf.Bytes())
		return err
	}
	if err := writeOutput("bisect", "--output", o.output, buf.Bytes(), o.force); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s report to %s\n", o.format, o.output)
	return nil
}

// check checks the entry points and, once, run's flags, before anything
// starts.
func (o *bisectOptions) check() error {
	if _, ok := analysis.Renderers[o.format]; !ok {
		return usageErrorf("bisect: --format %q: use %s", o.format, strings.Join(analysis.Formats(), ", "))
	}
	if len(o.entryTexts) < 2 {
		return usageErrorf("bisect: give at least two --entry NAME=URL, outermost first")
	}
	if err := checkOutput("bisect", "--output", o.output, o.force); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, h := range o.entryTexts {
		name, raw, ok := strings.Cut(h, "=")
		if !ok || name == "" || raw == "" {
			return usageErrorf("bisect: --entry %q: use NAME=URL, e.g. --entry lb=http://lb:80", h)
		}
		if strings.ContainsAny(name, `/\ `) || seen[name] {
			return usageErrorf("bisect: --entry %q: names must be distinct and hold no / \\ or space", h)
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageErrorf("bisect: --entry %q: the URL must be http:// or https:// with a host", h)
		}
		seen[name] = true
		o.entries = append(o.entries, analysis.BisectEntry{Name: name, URL: raw})
	}
	if o.dir == "" {
		o.dir = freshName("bisect", "", time.Now())
	}
	// The run flags are checked once, before anything starts.
	check := append(withConnections(o.runArgs, 1), "--target="+o.entries[0].URL, "--out="+filepath.Join(o.dir, "check.db"))
	if _, err := parseRunArgs(check, io.Discard); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return &usageError{msg: "bisect: " + ue.msg, err: err}
		}
		return err
	}
	return nil
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
