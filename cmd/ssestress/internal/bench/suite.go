// Package bench is the measurement code of ssestress bench: the
// benchmark suite that shows, side by side in one run, what the load
// clients, the proxy, recording, capture, replay and reports cost on this
// machine, each figure as a ratio to a reference measured in the same run
// (absolute figures vary between machines) and each target of the issue
// marked met or short.
//
// Process layout. The SSE server and the load clients run in the bench
// process. Everything whose cost is judged runs in a child process of the
// same binary (Config.Spawn: "ssestress bench --child ROLE"): the io.Copy
// relay, the proxy (proxy.Start with the session file and recorder that
// ssestress proxy gives it) and, for the held-connections row, the client
// engine. So the CPU, memory and allocations of a relay or a proxy are its
// own process's, read by the child itself (getrusage, /proc/self/status,
// runtime.MemStats) and sent back over a line protocol on its stdin and
// stdout (child.go). Toxiproxy, when installed, runs as its own process
// and is read from /proc.
//
// Data leaves as a Result: a flat list of Figures (one line of the table
// each) and the Machine they were measured on; render.go turns it into the
// table or JSON.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Row names: the --only values, one per part of the suite.
const (
	RowLoad       = "load"       // fixed load: events/s, latency, CPU per event: direct, relay, proxy, latency 0, recording
	RowSaturation = "saturation" // a few streams as fast as they go: events/s, proxy vs relay
	RowConns      = "conns"      // concurrent streams held by one client process and one proxy process
	RowCapture    = "capture"    // packets/s processed and kernel drops
	RowReplay     = "replay"     // gap error at speed 1 and 10
	RowReport     = "report"     // time to render a session file of one million records
	RowAllocs     = "allocs"     // allocations per event on the client's and proxy's hot paths
)

// Rows lists every row in the order the suite runs them.
var Rows = []string{RowLoad, RowSaturation, RowConns, RowCapture, RowReplay, RowReport, RowAllocs}

// ErrUnknownRow is returned by Run for an --only value that names no row.
var ErrUnknownRow = errors.New("unknown row")

// Spawner starts a child process of the bench binary in role with args
// (the command is not started yet: Run wires its stdin and stdout). The
// child must call Child with the same role and args.
type Spawner func(ctx context.Context, role string, args []string) *exec.Cmd

// Config configures a run. Zero values mean the defaults of a full run.
type Config struct {
	// Quick scales everything down to about a minute.
	Quick bool
	// Only runs these rows (default all).
	Only []string
	// LoadStreams and Rate are the fixed load of the load row (default
	// 1,000 streams × 20 events/s; quick: 200 × 20).
	LoadStreams int
	Rate        int
	// Window is how long each path of the load and saturation rows is
	// measured after its warm-up, per round (default 4 s; quick 3 s; the
	// saturation row measures half as long).
	Window time.Duration
	// Rounds is how many times each path is measured, the order reversed
	// every other round; every round is printed and the median is judged
	// (default 5; quick 2).
	Rounds int
	// HoldStreams is how many streams the conns row holds (default 15,000,
	// the client target; the proxy holds what its descriptor limit allows,
	// two per stream; quick 500).
	HoldStreams int
	// Spawn starts child processes; nil skips the rows that need one.
	Spawn Spawner
	// Toxiproxy is the toxiproxy-server binary to compare with; "" looks
	// for toxiproxy-server in PATH; "-" never runs it.
	Toxiproxy string
	// TempDir holds the session files and caches (default os.TempDir()).
	TempDir string
	// Log receives one line per step (nil: none).
	Log io.Writer
}

func (c Config) withDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.LoadStreams <= 0 {
		c.LoadStreams = 1000
		if c.Quick {
			c.LoadStreams = 200
		}
	}
	if c.Window <= 0 {
		c.Window = 4 * time.Second
		if c.Quick {
			c.Window = 3 * time.Second
		}
	}
	if c.Rounds <= 0 {
		c.Rounds = 5
		if c.Quick {
			c.Rounds = 2
		}
	}
	if c.HoldStreams <= 0 {
		c.HoldStreams = 15000
		if c.Quick {
			c.HoldStreams = 500
		}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Figure is one line of the table: a measured value, what it is compared
// with and, when the issue sets one, its target and whether it is met.
type Figure struct {
	Row    string  `json:"row"`
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit,omitempty"`
	Text   string  `json:"text"`             // the value as printed
	Versus string  `json:"versus,omitempty"` // the reference it is compared with
	Ratio  float64 `json:"ratio,omitempty"`  // Value / reference
	Target string  `json:"target,omitempty"` // the target, in words
	Status string  `json:"status,omitempty"` // met, short, untried, skipped, or "" (no target)
	// Shortfall says by how much a short figure missed ("short by 0.12×").
	Shortfall string `json:"shortfall,omitempty"`
	Note      string `json:"note,omitempty"` // how short, why skipped, how measured
}

// Statuses of a Figure.
const (
	Met     = "met"
	Short   = "short"
	Untried = "untried" // the run did not go as far as the target asks (say how in Note)
	Skipped = "skipped" // the row could not run here (Note says why)
)

// Result is one run of the suite.
type Result struct {
	Machine Machine       `json:"machine"`
	Layout  string        `json:"layout"`
	Quick   bool          `json:"quick"`
	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Figures []Figure      `json:"figures"`
}

// Met reports whether every figure with a target met it.
func (r *Result) Met() bool {
	for _, f := range r.Figures {
		if f.Status == Short {
			return false
		}
	}
	return true
}

// Layout says where each part runs; it is printed above the table.
const Layout = "server and load clients in the bench process; relay, proxy and held clients each in a child process " +
	"(ssestress bench --child ROLE), so their CPU, memory and allocations are their own"

// suite is one run in progress.
type suite struct {
	cfg  Config
	res  *Result
	tmp  string
	toxi string // toxiproxy-server path, "" when not available

	// The load and saturation rows' measurements, which the allocs row
	// also reports.
	loadResults, satResults map[string]loadStats
}

func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Log, "bench: "+format+"\n", args...)
}

func (s *suite) add(f Figure) { s.res.Figures = append(s.res.Figures, f) }

// skip adds a skipped line for row.
func (s *suite) skip(row, name, why string) {
	s.add(Figure{Row: row, Name: name, Text: "—", Status: Skipped, Note: why})
}

// rowFuncs runs each row.
var rowFuncs = map[string]func(ctx context.Context, s *suite) error{
	RowLoad:       runLoad,
	RowSaturation: runSaturation,
	RowConns:      runConns,
	RowCapture:    runCapture,
	RowReplay:     runReplay,
	RowReport:     runReport,
	RowAllocs:     runAllocs,
}

// ParseOnly splits a comma-separated --only value and checks each name.
func ParseOnly(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(Rows, f) {
			return nil, fmt.Errorf("%w %q (rows: %s)", ErrUnknownRow, f, strings.Join(Rows, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// Run runs the rows of cfg and returns their figures. A row that fails
// adds a skipped line saying why and the others still run; Run returns an
// error only for a bad Config or when ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	for _, r := range cfg.Only {
		if _, ok := rowFuncs[r]; !ok {
			return nil, fmt.Errorf("%w %q (rows: %s)", ErrUnknownRow, r, strings.Join(Rows, ", "))
		}
	}
	s := &suite{cfg: cfg, res: &Result{Machine: ReadMachine(), Layout: Layout, Quick: cfg.Quick, Started: time.Now()}}
	s.tmp = cfg.TempDir
	if s.tmp == "" {
		s.tmp = defaultTempDir()
	}
	s.toxi = findToxiproxy(cfg.Toxiproxy)
	for _, row := range Rows {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, row) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return s.res, err
		}
		start := time.Now()
		s.logf("%s ...", row)
		if err := rowFuncs[row](ctx, s); err != nil {
			if ctx.Err() != nil {
				return s.res, ctx.Err()
			}
			s.skip(row, row, "failed: "+oneLine(err.Error()))
		}
		s.logf("%s done in %v", row, time.Since(start).Round(100*time.Millisecond))
	}
	s.res.Machine.LoadAfter = readLoadAvg()
	s.res.Elapsed = time.Since(s.res.Started)
	return s.res, nil
}

func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}
