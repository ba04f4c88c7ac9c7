package clients

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// The scenarios.
const (
	Flood       = "flood"
	LongRunning = "long-running"
	Churn       = "churn"
	Mixed       = "mixed"
)

// Scenarios lists the scenario names in the order the help shows them.
var Scenarios = []string{Flood, LongRunning, Churn, Mixed}

// Defaults are a scenario's parameters when nothing overrides them: the
// seed test plan's values.
type Defaults struct {
	Connections     int           // steady (mixed), base (churn) or total connections
	Duration        time.Duration // run length
	Rate            Rate          // ramp: connections opened per second
	ChurnRate       float64       // per minute: churn's replacements, mixed's variable-set changes
	VariableMin     int           // mixed only
	VariableMax     int           // mixed only
	MessageRate     string        // the embedded server's messages per minute per symbol group
	MonitorInterval time.Duration
}

// ScenarioDefaults holds each scenario's defaults.
var ScenarioDefaults = map[string]Defaults{
	Flood:       {Connections: 20, Duration: time.Hour, Rate: Rate{1, 5}, MessageRate: "600", MonitorInterval: 10 * time.Second},
	LongRunning: {Connections: 20, Duration: 72 * time.Hour, Rate: Rate{1, 5}, MessageRate: "600", MonitorInterval: 5 * time.Minute},
	Churn:       {Connections: 10, Duration: 24 * time.Hour, Rate: Rate{1, 5}, ChurnRate: 1, MessageRate: "600", MonitorInterval: 10 * time.Second},
	Mixed: {Connections: 15, Duration: 48 * time.Hour, Rate: Rate{1, 5}, ChurnRate: 1, VariableMin: 5, VariableMax: 10,
		MessageRate: "100-1000", MonitorInterval: 10 * time.Second},
}

// PlanFor builds the pacing of scenario. churnRate is per minute.
func PlanFor(scenario string, connections int, ramp Rate, churnRate float64, variableMin, variableMax int, seed uint64) (Plan, error) {
	p := Plan{Connections: connections, Ramp: ramp, Seed: seed}
	period := time.Duration(0)
	if churnRate > 0 {
		period = time.Duration(float64(time.Minute) / churnRate)
	}
	switch scenario {
	case Flood, LongRunning:
	case Churn:
		if period <= 0 {
			return Plan{}, fmt.Errorf("churn needs a positive churn rate")
		}
		p.Churn = period
	case Mixed:
		if period <= 0 {
			return Plan{}, fmt.Errorf("mixed needs a positive churn rate (how often the variable set changes)")
		}
		if variableMax <= 0 {
			return Plan{}, fmt.Errorf("mixed needs a variable set whose maximum is at least 1, got %d-%d", variableMin, variableMax)
		}
		p.Churn, p.VariableMin, p.VariableMax = period, variableMin, variableMax
	default:
		return Plan{}, fmt.Errorf("unknown scenario %q (use %s)", scenario, strings.Join(Scenarios, ", "))
	}
	return p, p.Check()
}

// DefaultPath is the request path and query template; {symbols} becomes the
// connection's symbol group.
const DefaultPath = "/stream?symbols={symbols}"

// DefaultGroups are the symbol groups assigned round-robin when none are
// configured.
var DefaultGroups = [][]string{
	{"AAPL", "MSFT", "GOOG"},
	{"AMZN", "META", "NFLX"},
	{"NVDA", "AMD", "INTC"},
	{"TSLA", "F", "GM"},
	{"JPM", "BAC", "GS"},
}

// StreamURL is the URL a connection of group asks for. When target
// contains "{symbols}" it is the template; when its path is empty or "/",
// path (default DefaultPath) is appended; otherwise target is used as it is
// for every connection.
func StreamURL(target, path string, group []string) (*url.URL, error) {
	syms := url.QueryEscape(strings.Join(group, ","))
	syms = strings.ReplaceAll(syms, "%2C", ",")
	raw := target
	if !strings.Contains(target, "{symbols}") {
		u, err := ParseTarget(target)
		if err != nil {
			return nil, err
		}
		if u.Path == "" || u.Path == "/" {
			if path == "" {
				path = DefaultPath
			}
			raw = strings.TrimSuffix(target, "/") + path
		}
	}
	return ParseTarget(strings.ReplaceAll(raw, "{symbols}", syms))
}

// RunConfig is what Run needs. Options is shared by every stream; set its
// Recorder and Counters to record and count.
type RunConfig struct {
	Plan     Plan
	Duration time.Duration
	Target   string     // base URL or template, see StreamURL
	Path     string     // request template (default DefaultPath)
	Groups   [][]string // symbol groups (default DefaultGroups)
	// GroupPaths[i], when set, is the request template of Groups[i]
	// instead of Path (a service that serves groups under different paths).
	GroupPaths []string
	Options    *Options
}

// Result says how a run ended.
type Result struct {
	// Start is the instant the schedule is measured from.
	Start   time.Time
	Elapsed time.Duration
	// Interrupted: ctx ended before the duration.
	Interrupted bool
	// AllFailed: every connection failed for good (e.g. HTTP 404) and the
	// plan opens no more, so the run ended early.
	AllFailed bool
}

// ClientID names the n-th generated client of a run.
func ClientID(n int) string { return fmt.Sprintf("c%04d", n) }

// Run executes the plan for cfg.Duration with Drive: it opens and closes
// streams when the schedule says, measured from the start so delays do not
// accumulate. When ctx ends or the duration is over, every stream is closed
// by the client (not an error) and Run returns after they all finished
// writing their records. Streams reconnect, so the run ends early only when
// every one failed for good (AllFailed).
func Run(ctx context.Context, cfg RunConfig) (Result, error) {
	if err := cfg.Plan.Check(); err != nil {
		return Result{}, err
	}
	groups := cfg.Groups
	if len(groups) == 0 {
		groups = DefaultGroups
	}
	urls := make([]urlGroup, len(groups))
	for i, g := range groups {
		path := cfg.Path
		if i < len(cfg.GroupPaths) && cfg.GroupPaths[i] != "" && len(cfg.Groups) > 0 {
			path = cfg.GroupPaths[i]
		}
		u, err := StreamURL(cfg.Target, path, g)
		if err != nil {
			return Result{}, err
		}
		urls[i] = urlGroup{u, strings.Join(g, ",")}
	}
	opts := cfg.Options
	if opts == nil {
		opts = &Options{}
	}

	d := Drive(ctx, DriveConfig{
		Schedule: cfg.Plan.Schedule(),
		Duration: cfg.Duration,
		NewStream: func(n int) (*Stream, error) {
			ug := urls[n%len(urls)]
			return NewStream(ClientID(n), ug.group, ug.url, opts), nil
		},
	})
	return Result{Start: d.Start, Elapsed: d.Elapsed, Interrupted: d.Interrupted, AllFailed: d.Drained}, nil
}

type urlGroup struct {
	url   *url.URL
	group string
}
