package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/cmd/ssestress/internal/bench"
)

// benchOptions are the flags of ssestress bench.
type benchOptions struct {
	quick       bool
	only        string
	holdStreams int
	loadStreams int
	rate        int
	window      time.Duration
	rounds      int
	json        bool
	toxiproxy   string
	quiet       bool
	tempDir     string // --temp-dir: where the rows' files go, kept
	keep        bool   // --keep: keep the default directory
}

const benchSynopsis = "bench [--quick] [--only ROW[,ROW...]] [--streams N] [--load N] [--json] [--keep]"

const benchExamples = `  ssestress bench                       # every row, a few minutes
  ssestress bench --quick               # every row scaled down, about a minute
  ssestress bench --only load,saturation
  ssestress bench --only conns --streams 15000   # the client target (the proxy holds what its fd limit allows)
  ssestress bench --json > bench.json

Rows: load (1,000 streams × 20 events/s direct, through an io.Copy relay, the
proxy, the proxy with latency 0, the proxy recording, and Toxiproxy when
toxiproxy-server is in PATH), saturation (4 streams as fast as they go),
conns (streams held by one client process and one proxy process: RSS and
goroutines per stream), capture (packets/s and kernel drops; needs root),
replay (gap error at speed 1 and 10), report (one million records), allocs
(allocations per event on the client's and proxy's hot paths).

Each figure is shown with the reference it is compared with (measured in the
same run) as a ratio, and each target of the issue as met or short. The relay,
the proxy and the held clients run in child processes of this binary, so
their CPU and memory are their own; the server and the load clients run in
this process. Other processes on the same cores shift the absolute figures:
the load average is printed with them.`

// childFlag starts the hidden child mode: ssestress bench --child ROLE ARGS.
const childFlag = "--child"

var benchCmd = &command{
	name:     "bench",
	summary:  "measure the clients, proxy, recording, capture, replay and reports side by side: one table of ratios and targets",
	synopsis: benchSynopsis,
	examples: benchExamples,
	// The hidden child mode: ssestress bench --child ROLE ARGS, whose ARGS
	// are the child's own.
	intercept: func(ctx context.Context, args []string, stdout, stderr io.Writer) (bool, error) {
		if len(args) == 0 || args[0] != childFlag {
			return false, nil
		}
		if len(args) < 2 {
			return true, usageErrorf("bench: --child needs a role")
		}
		return true, bench.Child(ctx, args[1], args[2:], os.Stdin, stdout)
	},
	setup: func(fs *flagSet) action {
		var o benchOptions
		fs.BoolVar(&o.quick, "quick", false, "scale every row down: about a minute in all")
		fs.StringVar(&o.only, "only", "", "run only these `ROWS` (comma-separated): "+strings.Join(bench.Rows, ", "))
		fs.IntVar(&o.holdStreams, "streams", 0, "streams the conns row holds (default 15000; quick 500); targets: 15000 client, 9000 proxied (the proxy holds what its descriptor limit allows)")
		fs.IntVar(&o.loadStreams, "load", 0, "streams of the load row's fixed load (default 1000; quick 200)")
		fs.IntVar(&o.rate, "rate", 20, "events per second per stream of the load row")
		fs.DurationVar(&o.window, "window", 0, "how long each path of the load row is measured per round after its warm-up (default 4s; quick 3s; saturation half)")
		fs.IntVar(&o.rounds, "rounds", 0, "rounds of the load and saturation rows, the order of the paths reversed every other round; every round is printed and the median is judged (default 5; quick 2)")
		fs.BoolVar(&o.json, "json", false, "print the result as one JSON object instead of the table")
		fs.StringVar(&o.toxiproxy, "toxiproxy", "", "toxiproxy-server `BINARY` to compare with (default: toxiproxy-server in PATH; - for none)")
		fs.BoolVar(&o.quiet, "quiet", false, "do not print progress on stderr")
		fs.StringVar(&o.tempDir, "temp-dir", "", "write the rows' session files and pcaps into `DIR` and keep them there (a later run reuses the million-record report file); default: a new directory in the system's temp directory, removed at the end")
		fs.BoolVar(&o.keep, "keep", false, "keep the default directory of the rows' files (and say where) instead of removing it at the end")
		fs.values(wordsOf(func() []string { return bench.Rows }), "only")
		fs.values(files(), "toxiproxy")
		fs.values(dirs(), "temp-dir")
		return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
			// 0 means "the default" only when the flag is not given: a
			// given 0 is out of range.
			for _, f := range []struct {
				name string
				v    int64
			}{{"streams", int64(o.holdStreams)}, {"load", int64(o.loadStreams)}, {"window", int64(o.window)}, {"rounds", int64(o.rounds)}} {
				if flagsSet(fs.FlagSet)[f.name] && f.v == 0 {
					return usageErrorf("bench: --%s must be positive (leave it out for the default)", f.name)
				}
			}
			return o.run(ctx, stdout, stderr)
		}
	},
}

func (o *benchOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	only, err := bench.ParseOnly(o.only)
	if err != nil {
		return usageErrorf("bench: --only: %v", err)
	}
	switch {
	case o.holdStreams < 0, o.loadStreams < 0:
		return usageErrorf("bench: --streams and --load must not be negative")
	case o.rate <= 0 || o.rate > 10000:
		return usageErrorf("bench: --rate must be 1..10000 events per second")
	case o.window < 0 || o.rounds < 0:
		return usageErrorf("bench: --window and --rounds must not be negative")
	}
	if o.toxiproxy != "" && o.toxiproxy != "-" {
		if _, err := exec.LookPath(o.toxiproxy); err != nil {
			return usageErrorf("bench: --toxiproxy %s: not an executable", o.toxiproxy)
		}
	}
	// The rows' session files, pcaps and caches (hundreds of MB) go into
	// --temp-dir, kept, or a directory of this run's, removed at the end
	// unless --keep.
	tmp := o.tempDir
	if tmp != "" {
		if st, err := os.Stat(tmp); err != nil || !st.IsDir() {
			return usageErrorf("bench: --temp-dir %s: not a directory", tmp)
		}
	} else {
		if tmp, err = os.MkdirTemp("", "ssestress-bench-"); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer func() {
			if o.keep {
				fmt.Fprintf(stderr, "ssestress bench: kept what the rows wrote in %s\n", tmp)
				return
			}
			os.RemoveAll(tmp)
		}()
	}
	cfg := bench.Config{
		Quick: o.quick, Only: only, LoadStreams: o.loadStreams, Rate: o.rate, Window: o.window, Rounds: o.rounds,
		HoldStreams: o.holdStreams, Toxiproxy: o.toxiproxy, Spawn: benchSpawner(), TempDir: tmp,
	}
	if !o.quiet {
		cfg.Log = stderr
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, bench.ErrUnknownRow) {
			return usageErrorf("bench: %v", err)
		}
		if res == nil || ctx.Err() == nil {
			return fmt.Errorf("bench: %w", err)
		}
		fmt.Fprintln(stderr, "ssestress bench: interrupted; the figures so far:")
	}
	if o.json {
		return res.RenderJSON(stdout)
	}
	return res.RenderTable(stdout)
}

// benchSpawner starts child processes of this binary: ssestress bench
// --child ROLE ARGS. A test binary cannot be re-run as ssestress, so under
// go test the rows that need a child are skipped (the benchsuite package's
// own tests run them through its TestMain).
func benchSpawner() bench.Spawner {
	if testing.Testing() {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return func(ctx context.Context, role string, args []string) *exec.Cmd {
		return exec.CommandContext(ctx, exe, append([]string{"bench", childFlag, role}, args...)...)
	}
}
