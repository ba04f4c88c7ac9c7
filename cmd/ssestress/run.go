package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/outfile"
	"github.com/ssestress/ssestress/internal/procstat"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// runOptions is a parsed ssestress run command line: the merged
// configuration (config file, then flags, then the scenario's defaults)
// and the options that are not part of the config file.
type runOptions struct {
	cfg              runConfig
	configFile       string
	out              string // session file; empty: ssestress-<scenario>-<timestamp>.db
	json             bool
	req              requestFlags
	setup            *requestSetup // headers, TLS, transport made from req
	backoff          time.Duration
	retryOnHTTPError bool
	httpAddr         string            // --http: live view address; empty: none
	serverPID        int               // --server-pid: sampled into the samples and /metrics
	hop              hopFlags          // --via-proxy, --fault, --capture
	failOn           thresholdFlags    // --fail-on
	maxFileSize      int64             // --max-file-size: bbolt MaxSize of the session file
	mem              memoryFlags       // --max-memory
	memory           processMemory     // the budget as started
	texts            map[string]string // the config fields given as flags, by name
	shardText        string            // --shard
	sourceText       string            // --source-addr
	repeat           int               // --repeat: runs of the series (0: one run, no series)
	expect           string            // --expect: the error class a series counts ("": any)
	shard            clients.Shard
	source           *clients.SourceAddrs // --source-addr; nil: the system chooses
	args             []string
	notes            []string // remarks about ignored settings, printed at the start

	// afterRun, when set (tests), is called once the session file is
	// closed and before the live view stops, with the live view (nil
	// without --http).
	afterRun func(lv *liveView)
}

// probeTimeout bounds the pre-flight connection to a --target.
const probeTimeout = 5 * time.Second

const runSynopsis = "run [--scenario S] [--connections N] [--duration D] [--config FILE] [--target URL] [flags]"

const runExamples = `  ssestress run --scenario=flood --connections=20 --duration=1h
  ssestress run --scenario=long-running --connections=15 --duration=72h
  ssestress run --scenario=churn --churn-rate=6 --duration=10m --target http://127.0.0.1:8090
  ssestress run --config=custom-test.json --duration=30s
  ssestress run --scenario=flood --duration=30s --json
  ssestress run --target https://feed.example/ --token-env FEED_TOKEN --header 'X-Client: ssestress' --http2
  ssestress run --target https://127.0.0.1:8443 --ca feed-cert.pem --duration=10m
  ssestress run --scenario=flood --connections=20 --duration=20s --via-proxy --fault reset:hop=upstream,after=5s,toxicity=0.5
  ssestress run --scenario=long-running --duration=10m --fault preset:aws-alb --time-scale 60 --capture
  ssestress run --scenario=long-running --duration=72h --http 127.0.0.1:9090 --server-pid 4242
    (then: open http://127.0.0.1:9090/, curl 127.0.0.1:9090/metrics, curl '127.0.0.1:9090/report?format=markdown')
  ssestress run --duration=2m --fault reset:hop=upstream,after=30s,toxicity=0.5 --repeat 10 --expect ECONNRESET --out runs/reset.db
    (runs/reset-1.db ... runs/reset-10.db, and runs/reset-repeat.json with the reproduction rate)
  ssestress run --scenario=flood --connections=30000 --target http://10.0.0.7:8090 --shard 2/3 --out shard-2.db
    (one of three processes or machines; then: ssestress report shard-*.db)
  ssestress run --connections=40000 --target http://127.0.0.1:8090 --source-addr 127.0.0.2-127.0.0.9

Scenarios and their defaults (the seed test plan):
  flood         20 connections opened at 1-5 per second, 1h
  long-running  20 steady connections, 72h, monitor every 5m
  churn         10 base connections, one closed and a new one opened per minute, 24h
  mixed         15 steady + 5-10 variable connections, server event rate 100-1000/min, 48h

A config file holds the same settings as JSON, its keys the flags' names, e.g.
  {"scenario": "churn", "connections": 10, "duration": "24h", "churn-rate": 1,
   "symbol-groups": [["AAPL","MSFT"],["AMZN","META"]], "monitor-interval": "5m"}
(the seed's TestConfig names symbolGroups, churnRate, messageRate and monitorInterval are accepted
too). Durations need a unit: "duration": 20000 is refused, as 20 s or 5 h 33 min are both readings.
A group may be served under its own path:
  "symbol-groups": [{"symbols": ["AAPL","MSFT"], "path": "/v2/quotes?s={symbols}"}, ["AMZN"]]`

var runCmd = &command{
	name:     "run",
	summary:  "run a load scenario (flood, long-running, churn, mixed) and record a session file",
	synopsis: runSynopsis,
	examples: runExamples + "\n\n" + thresholdHelp,
	args:     argSpec{none: "settings are flags, e.g. --duration=30s"},
	setup: func(fs *flagSet) action {
		o := newRunOptions(fs)
		return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
			o.args = fs.argv
			if err := o.check(); err != nil {
				return err
			}
			warnSecrets(fs, stderr)
			return o.execute(ctx, stdout, stderr)
		}
	},
}

// newRunOptions registers run's flags on fs, bound to the options it
// returns. bisect reads the same flag set to pass run's flags on.
func newRunOptions(fs *flagSet) *runOptions {
	o := &runOptions{texts: map[string]string{}}
	fs.StringVar(&o.configFile, "config", "", "JSON config `FILE`: keys are these flags' names (the seed's TestConfig names are accepted too); flags given override it")
	for _, f := range configFields {
		name := f.name
		if f.duration {
			fs.Var(&configDuration{name: name, texts: o.texts}, name, f.usage)
		} else {
			fs.Func(name, f.usage, func(s string) error { o.texts[name] = s; return nil })
		}
		if f.values.kind != valNone {
			fs.values(f.values, name)
		}
	}
	fs.deprecated("message-rate", "event-rate", "SSE events, not messages")
	fs.StringVar(&o.out, "out", "", "session `FILE` to write (default ssestress-<scenario>-<timestamp>.db; never overwritten)")
	fs.BoolVar(&o.json, "json", false, "print the summary as one JSON object")
	o.req.register(fs)
	fs.StringVar(&o.httpAddr, "http", "", "serve a live view on `ADDR` (loopback when no host is given): a live page at /, /metrics (Prometheus), /report")
	fs.IntVar(&o.serverPID, "server-pid", 0, "`PID` of the server process: its memory and open fds are sampled beside the run's")
	fs.DurationVar(&o.backoff, "backoff", 0, "cap of exponential reconnect backoff with jitter (0: wait the server's retry, as browsers do)")
	fs.BoolVar(&o.retryOnHTTPError, "retry-on-http-error", false, "reconnect after a non-200 status or wrong Content-Type (browsers give up)")
	o.hop.register(fs)
	o.failOn.register(fs)
	fs.SizeVar(&o.maxFileSize, "max-file-size", 0, "stop recording (the run goes on) once the session file would pass `SIZE` (e.g. 500MB, 2GiB)")
	o.mem.register(fs)
	fs.IntVar(&o.repeat, "repeat", 0, "run the scenario `N` times, into <out>-1.db ... <out>-N.db, and report the reproduction rate (also in <out>-repeat.json)")
	fs.StringVar(&o.expect, "expect", "", "with --repeat: the error `CLASS` whose reproduction counts, e.g. ECONNRESET (default: any error)")
	fs.StringVar(&o.shardText, "shard", "", "run part `i/n` of the scenario: every n-th connection from the i-th, at 1/n of the rate; report merges the n session files")
	fs.StringVar(&o.sourceText, "source-addr", "", "spread the connections round-robin over these local `ADDRS` (127.0.0.2-127.0.0.9, or a comma list): an ephemeral port range each")
	fs.values(files(), "config", "out")
	fs.values(wordsOf(func() []string { return errorClasses }), "expect")
	return o
}

// configDuration is the flag of a config key that holds a duration: it
// reads the duration as every duration flag does (a unit required) and
// keeps the text for the config field, which flags override.
type configDuration struct {
	name  string
	texts map[string]string
	value time.Duration
}

func (c *configDuration) String() string {
	if c == nil || c.value == 0 {
		return ""
	}
	return dur.Format(c.value)
}

func (c *configDuration) Set(s string) error {
	d, err := dur.Parse(s)
	if err != nil {
		return err
	}
	c.value, c.texts[c.name] = d, s
	return nil
}

// parseRunArgs parses and checks a run command line, loading --config, as
// ssestress run does before it starts anything.
func parseRunArgs(args []string, stdout io.Writer) (*runOptions, error) {
	fs := newFlagSet(runCmd)
	o := newRunOptions(fs)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return nil, err
	}
	if err := runCmd.args.check(runCmd, pos); err != nil {
		return nil, err
	}
	o.args = args
	return o, o.check()
}

// check checks the parsed flags and builds the configuration: the config
// file, then the flags given, then the scenario's defaults.
func (o *runOptions) check() error {
	if o.shardText != "" {
		sh, err := clients.ParseShard(o.shardText)
		if err != nil {
			return usageErrorf("run: --shard: %v", err)
		}
		o.shard = sh
	}
	var sourceAddrs []netip.Addr
	if o.sourceText != "" {
		a, err := clients.ParseSourceAddrs(o.sourceText)
		if err != nil {
			return usageErrorf("run: --source-addr: %v", err)
		}
		sourceAddrs = a
	}
	repeatNotes, err := checkRepeatFlags("run", o.repeat, &o.expect)
	if err != nil {
		return err
	}
	o.notes = append(o.notes, repeatNotes...)
	if o.backoff < 0 {
		return usageErrorf("run: --backoff must not be negative")
	}
	setup, err := o.req.build()
	if err != nil {
		return usageErrorf("run: %v", err)
	}
	o.setup = setup
	notes, err := o.hop.check("run", setup.http2)
	if err != nil {
		return err
	}
	setup.secrets = append(setup.secrets, o.hop.secrets()...)
	if err := o.failOn.check("run"); err != nil {
		return err
	}
	o.notes = append(o.notes, notes...)
	if o.httpAddr != "" {
		if _, err := liveListenAddr(o.httpAddr); err != nil {
			return usageErrorf("run: %v", err)
		}
	}
	if o.serverPID < 0 {
		return usageErrorf("run: --server-pid must be a process id")
	}
	if o.serverPID > 0 {
		if _, err := procstat.Read(o.serverPID); err != nil && !errors.Is(err, procstat.ErrUnsupported) {
			return usageErrorf("run: --server-pid %d: no such process readable here", o.serverPID)
		}
	}

	var cfg runConfig
	if o.configFile != "" {
		if cfg, err = loadRunConfig(o.configFile); err != nil {
			return usageErrorf("run: %v", err)
		}
	}
	for _, f := range configFields {
		if s, ok := o.texts[f.name]; ok {
			if err := f.fromText(&cfg, s); err != nil {
				return usageErrorf("run: --%s: %v", f.name, err)
			}
		}
	}
	given := cfg // before defaults: what the user set
	cfg = cfg.withDefaults()
	if given.Variable != "" && cfg.Scenario != clients.Mixed {
		return usageErrorf("run: variable applies to the mixed scenario only (scenario is %s)", cfg.Scenario)
	}
	if given.ChurnRate > 0 && cfg.Scenario != clients.Churn && cfg.Scenario != clients.Mixed {
		o.notes = append(o.notes, fmt.Sprintf("churn-rate is used by the churn and mixed scenarios; ignored for %s", cfg.Scenario))
	}
	if given.EventRate != "" && cfg.Target != "" {
		o.notes = append(o.notes, "event-rate sets the embedded server's rate; ignored with a target")
	}
	plan, err := cfg.plan()
	if err != nil {
		return usageErrorf("run: %v", err)
	}
	if o.shard.Count > 0 {
		plan.Shard = o.shard
		if err := plan.Check(); err != nil {
			return usageErrorf("run: --shard: %v", err)
		}
		if cfg.Target == "" {
			o.notes = append(o.notes, "--shard without --target: this shard measures its own embedded server, not one shared with the other shards")
		}
	}
	if sourceAddrs != nil {
		dialed := cfg.Target
		if dialed == "" || o.hop.viaProxy {
			dialed = "http://127.0.0.1/" // the embedded server or the in-process proxy
		}
		if err := checkSourceAddrs(sourceAddrs, dialed); err != nil {
			return err
		}
		if o.hop.viaProxy {
			o.notes = append(o.notes, "--source-addr spreads the clients' connections to the in-process proxy; the proxy dials the target from the system's choice")
		}
		o.source = clients.NewSourceAddrs(sourceAddrs)
	}
	o.cfg = cfg
	return nil
}

// checkSourceAddrs refuses source addresses this host does not have, and
// those that cannot reach the target when its host is an address: another
// family, or loopback sources toward a remote address.
func checkSourceAddrs(addrs []netip.Addr, target string) error {
	if err := clients.CheckSourceAddrs(addrs); err != nil {
		return badValue("run: --source-addr", err) // an address this host does not have: a bad value
	}
	u, err := clients.StreamURL(target, "", []string{"X"})
	if err != nil {
		return nil // the target's own check reports it
	}
	dst, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return nil // a name: its addresses are known only when dialing
	}
	for _, a := range addrs {
		if a.Is4() != dst.Unmap().Is4() {
			return usageErrorf("run: --source-addr: %s cannot reach %s (IPv4 and IPv6 do not mix)", a, dst)
		}
		if a.IsLoopback() && !dst.IsLoopback() {
			return usageErrorf("run: --source-addr: the loopback address %s cannot reach %s (give addresses of an interface that routes there)", a, dst)
		}
	}
	return nil
}

// checkRepeatFlags checks --repeat and --expect, and writes the class in
// its canonical (upper) case. A class it does not know is a note, not an
// error: newer error classes may exist than this list.
func checkRepeatFlags(cmd string, repeat int, expect *string) (notes []string, err error) {
	if repeat < 0 || repeat > maxRepeat {
		return nil, usageErrorf("%s: --repeat must be between 1 and %d, got %d", cmd, maxRepeat, repeat)
	}
	if *expect == "" {
		return nil, nil
	}
	if repeat == 0 {
		return nil, usageErrorf("%s: --expect goes with --repeat N", cmd)
	}
	class := strings.ToUpper(strings.TrimSpace(*expect))
	if !errorClassSyntax.MatchString(class) {
		return nil, usageErrorf("%s: --expect %q is not an error class (e.g. ECONNRESET, HTTP_502, %sCANCEL)", cmd, *expect, errclass.H2RSTStreamPrefix)
	}
	*expect = class
	if !knownErrorClass(class) {
		notes = append(notes, fmt.Sprintf("--expect %s is not one of the error classes known here (%s, HTTP_<status>, %s<code>, %s<code>); runs count it only if it appears",
			class, strings.Join(errorClasses, ", "), errclass.H2RSTStreamPrefix, errclass.H2GoAwayPrefix))
	}
	return notes, nil
}

// maxRepeat bounds --repeat: beyond it a typo rather than a plan.
const maxRepeat = 10000

// errorClasses are the fixed names errclass.Classify returns.
var errorClasses = []string{
	errclass.ECONNRESET, errclass.EPIPE, errclass.ECONNREFUSED, errclass.ETIMEDOUT, errclass.EOF,
	errclass.UnexpectedEOF, errclass.BadContentType, errclass.LineTooLong, errclass.EventTooLong,
	errclass.HeaderTooLong, errclass.BadResponse, errclass.MemoryBudget, errclass.TLS, errclass.DNS,
	errclass.EMFILE, errclass.EADDRNOTAVAIL, errclass.Other,
}

// errorClassSyntax is what any class looks like: ECONNRESET, HTTP_502,
// H2_RST_STREAM:CANCEL.
var errorClassSyntax = regexp.MustCompile(`^[A-Z][A-Z0-9_]*(:[A-Z0-9_]+)?$`)

// knownErrorClass reports whether class is one errclass.Classify returns:
// a fixed name, HTTP_<status> or an HTTP/2 reset or GOAWAY.
func knownErrorClass(class string) bool {
	if slices.Contains(errorClasses, class) {
		return true
	}
	if code, ok := strings.CutPrefix(class, "HTTP_"); ok {
		n, err := strconv.Atoi(code)
		return err == nil && n >= 100 && n <= 999
	}
	for _, p := range []string{errclass.H2RSTStreamPrefix, errclass.H2GoAwayPrefix} {
		if rest, ok := strings.CutPrefix(class, p); ok && rest != "" {
			return true
		}
	}
	return false
}

// parseHeaderFlags reads "Name: value" lines. A bad line is not quoted in
// the error: it may hold a credential.
func parseHeaderFlags(lines []string) (http.Header, error) {
	h := http.Header{}
	for i, l := range lines {
		name, value, ok := strings.Cut(l, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
			return nil, fmt.Errorf("--header number %d is not 'Name: value' (not shown: it may hold a credential)", i+1)
		}
		h.Add(name, strings.TrimSpace(value))
	}
	return h, nil
}

// runTarget is the service a run measures.
type runTarget struct {
	url       string        // base URL or template of the service
	embedded  *feed.Running // nil for a --target
	certPEM   []byte        // the embedded server's generated certificate (https)
	endpoints []session.Endpoint
}

func (t *runTarget) stop() {
	if t.embedded != nil {
		t.embedded.Shutdown()
	}
}

// startRunTarget returns the service to measure: the --target, or the embedded
// server started on a free loopback port with the scenario's event rate.
// With useTLS the embedded server listens with TLS and HTTP/2 on a
// certificate generated for the run (run --http2 then measures what
// browsers do against production: h2 over TLS).
func startRunTarget(cfg runConfig, useTLS bool) (*runTarget, error) {
	if cfg.Target != "" {
		u, err := clients.StreamURL(cfg.Target, cfg.Path, []string{"X"})
		if err != nil {
			return nil, err
		}
		return &runTarget{url: cfg.Target, endpoints: []session.Endpoint{
			// The run only sends to --target; another file may say what it
			// is (a proxy's listener), so it is a target, not the server.
			{Role: session.RoleTarget, Addr: clients.HostPort(u), URL: redactURL(cfg.Target)},
		}}, nil
	}
	rate, err := feed.ParseRate(cfg.EventRate)
	if err != nil {
		return nil, err
	}
	var (
		tlsConfig *tls.Config
		certPEM   []byte
	)
	if useTLS {
		if tlsConfig, certPEM, err = tlsutil.ServerConfig(tlsutil.ServerOptions{SelfSigned: true}); err != nil {
			return nil, fmt.Errorf("embedded server: %w", err)
		}
	}
	srv, err := feed.StartTLS("127.0.0.1:0", feed.Config{Rate: rate}, tlsConfig)
	if err != nil {
		return nil, err
	}
	return &runTarget{url: srv.URL, embedded: srv, certPEM: certPEM, endpoints: []session.Endpoint{
		{Role: session.RoleServer, Name: "embedded", Addr: srv.Addr, URL: srv.URL},
	}}, nil
}

// execute runs the configured scenario (N times with --repeat) and prints
// its summary.
func (o *runOptions) execute(ctx context.Context, stdout, stderr io.Writer) error {
	plan, err := o.plan()
	if err != nil {
		return err
	}
	if err := checkCapacity(plan.Concurrent(), descriptorsPerStream(o.cfg.Target == "", o.hop.viaProxy)); err != nil {
		return err
	}
	if o.memory, err = o.mem.start("run"); err != nil {
		return err
	}
	o.hop.budget = o.memory.buffers
	errOut := &lockedWriter{w: stderr}
	for _, n := range o.notes {
		fmt.Fprintln(errOut, "ssestress: note:", n)
	}
	if o.setup == nil {
		o.setup = &requestSetup{}
	}
	defer o.setup.close()
	if o.repeat > 0 {
		name := o.cfg.Scenario + o.shardSuffix()
		return runSeries(ctx, seriesConfig{
			command: "run", args: redactArgs(o.args, o.setup.secrets), runs: o.repeat, expect: o.expect,
			out: o.out, name: name, json: o.json, thresholds: &o.failOn,
		}, func(ctx context.Context, path string) (session.Summary, error) {
			res, err := o.runOnce(ctx, plan, path, errOut)
			if err != nil {
				return session.Summary{}, err
			}
			return res.sum, nil
		}, stdout, errOut)
	}

	path := o.out
	if path == "" {
		path = defaultSessionPath(o.cfg.Scenario+o.shardSuffix(), time.Now())
	}
	res, err := o.runOnce(ctx, plan, path, errOut)
	if err != nil {
		return err
	}
	if o.json {
		if err := json.NewEncoder(stdout).Encode(res.sum); err != nil {
			return err
		}
	} else {
		if err := printRunSummary(stdout, res.sum, res.maxLag); err != nil {
			return err
		}
		printThresholds(stdout, "thresholds (--fail-on):", res.sum.Thresholds)
		fmt.Fprintf(stdout, "session file: %s (ssestress inspect %s)\n", path, path)
	}
	if res.allFailed {
		return fmt.Errorf("every connection failed for good (%s); nothing left to run", clients.FormatErrors(res.sum.Errors))
	}
	return thresholdsFailed("run", res.sum.Thresholds)
}

// plan is the configured scenario's pacing, this process's shard of it.
func (o *runOptions) plan() (clients.Plan, error) {
	plan, err := o.cfg.plan()
	if err != nil {
		return plan, usageErrorf("run: %v", err)
	}
	plan.Shard = o.shard
	return plan, nil
}

// shardSuffix names the shard in a default session file name.
func (o *runOptions) shardSuffix() string {
	if o.shard.Count == 0 {
		return ""
	}
	return fmt.Sprintf("-shard%dof%d", o.shard.Index, o.shard.Count)
}

// runResult is how one run ended.
type runResult struct {
	sum       session.Summary
	maxLag    time.Duration
	allFailed bool // every connection failed for good
}

// runOnce runs the scenario once into the session file at path: the
// target (the embedded server is started for the run), the proxy and
// capture of --via-proxy/--capture, the live view, the monitor and the
// clients. Errors before the file is complete are returned; how the run
// went is in the result.
func (o *runOptions) runOnce(ctx context.Context, plan clients.Plan, path string, errOut io.Writer) (*runResult, error) {
	cfg, setup := o.cfg, o.setup
	tgt, err := startRunTarget(cfg, setup.http2)
	if err != nil {
		return nil, err
	}
	defer tgt.stop()
	if tgt.certPEM != nil {
		if err := setup.trust(tgt.certPEM); err != nil {
			return nil, err
		}
	}
	setup.useSource(o.source)
	defer setup.close()
	if tgt.embedded == nil {
		if err := setup.probe(ctx, "target ", tgt.url); err != nil {
			return nil, err
		}
	}

	stored := cfg
	stored.Target = redactURL(cfg.Target)
	cfgJSON, _ := json.Marshal(stored)
	ss, err := openSession(sessionSpec{
		command: "run", path: path, flagName: "--out", maxSize: o.maxFileSize, maxPending: o.memory.writer, errOut: errOut,
		info: session.RunInfo{
			Args: redactArgs(o.args, setup.secrets), Scenario: cfg.Scenario, Target: redactURL(tgt.url), Config: cfgJSON,
			Shard: o.shard.String(), TimeScale: o.hop.runTimeScale(), Keepalive: applyClientKeepalive(time.Duration(o.hop.clientKeepalive), setup),
		},
		endpoints: tgt.endpoints,
	})
	if err != nil {
		return nil, err
	}
	defer ss.close()
	var targetAddrs []string
	for _, e := range tgt.endpoints {
		targetAddrs = append(targetAddrs, e.Addr)
	}
	// The proxy and the capture go between the clients and the target; the
	// proxy records its own endpoints.
	clientURL, hops, err := o.hop.start(ctx, tgt.url, setup.tlsConfig, targetAddrs, ss.w, path, errOut)
	if err != nil {
		return nil, err
	}
	defer hops.stop()

	fmt.Fprintf(errOut, "ssestress run: %s; session file %s\n", o.describe(plan, tgt), path)

	counters := &clients.Counters{}
	opts := &clients.Options{
		Transport: setup.transport, Header: setup.header, Redact: setup.redact,
		UserAgent: "ssestress/" + version, Scenario: cfg.Scenario,
		RetryOnHTTPError: o.retryOnHTTPError, Recorder: ss.w, Counters: counters, Budget: o.memory.buffers,
		// Open connections are rewritten with their progress as often as
		// the monitor samples, but at most once a second each.
		Checkpoint: max(time.Duration(cfg.MonitorInterval), time.Second),
	}
	if o.backoff > 0 {
		opts.Backoff = clients.Backoff{Max: o.backoff, Jitter: 0.5}
	}
	// The live view's /report reads the file in use, then the closed file.
	live := newClientsLive("run", cfg.Scenario, counters, setup, hops.proxy, tgt.embedded != nil, o.serverPID)
	live.observe(opts)
	if err := ss.serveLive(o.httpAddr, time.Duration(cfg.MonitorInterval), live); err != nil {
		return nil, err
	}
	mon := &clients.Monitor{
		Interval: time.Duration(cfg.MonitorInterval), Counters: counters,
		Out: errOut, Terminal: writerIsTerminal(o.stderrFile(errOut)), Start: ss.startedAt(), ServerPID: o.serverPID,
	}
	ss.monitor(mon)

	res, runErr := clients.Run(ctx, clients.RunConfig{
		Plan: plan, Duration: time.Duration(cfg.Duration), Target: clientURL, Path: cfg.Path,
		Groups: cfg.SymbolGroups, GroupPaths: cfg.GroupPaths, Options: opts,
	})
	ss.stopMonitor()
	setup.close()
	hops.stop()

	sum := clientSummary(cfg.Scenario, res.Elapsed, counters, mon, res.Interrupted)
	judgeErr := o.failOn.judge(ss.w, &sum) // into the summary, before it is written
	if err := ss.end(&sum); err != nil {
		return nil, err
	}
	if o.hop.explains() {
		ss.attribute(ctx, errOut)
	}
	if o.afterRun != nil {
		o.afterRun(ss.live)
	}
	ss.close()
	if runErr != nil {
		return nil, runErr
	}
	if judgeErr != nil {
		return nil, judgeErr
	}
	return &runResult{sum: sum, maxLag: mon.MaxLag(), allFailed: res.AllFailed}, nil
}

// describe is the run's first line: the scenario, the target, and every
// duration the run uses, rounded, so that a config's units can be checked
// at a glance ("duration": "20000" would show 5h33m20s here).
func (o *runOptions) describe(plan clients.Plan, tgt *runTarget) string {
	cfg := o.cfg
	which := "embedded server, " + cfg.EventRate + " events/min per group"
	if tgt.embedded == nil {
		which = "target"
	}
	if o.setup.http2 {
		which += ", HTTP/2"
	}
	if o.source != nil {
		which += fmt.Sprintf(", from %d source addresses", len(o.source.Addrs()))
	}
	line := fmt.Sprintf("%s, %s for %s against %s (%s); monitor every %s",
		cfg.Scenario, describePlan(cfg, plan), dur.Format(time.Duration(cfg.Duration)), redactURL(tgt.url), which,
		dur.Format(time.Duration(cfg.MonitorInterval)))
	if o.backoff > 0 {
		line += ", reconnect backoff up to " + dur.Format(o.backoff)
	}
	if o.hop.viaProxy {
		line += ", proxy keepalive " + dur.Format(time.Duration(o.hop.keepalive))
		if o.hop.timeScale != 1 {
			line += fmt.Sprintf(", fault durations ÷%v", o.hop.timeScale)
		}
	}
	return line
}

// stderrFile returns the writer the status line goes to, unwrapped, so
// that writerIsTerminal sees the *os.File behind the lock.
func (o *runOptions) stderrFile(w io.Writer) io.Writer {
	if lw, ok := w.(*lockedWriter); ok {
		return lw.w
	}
	return w
}

// useSource makes the transport dial from the source addresses (nil:
// leave the system's choice). It goes after trust, which rebuilds the
// transport.
func (s *requestSetup) useSource(src *clients.SourceAddrs) {
	if src == nil {
		return
	}
	if s.h2 != nil {
		s.h2.Source = src
		return
	}
	s.transport = &clients.HTTP1{TLSConfig: s.tlsConfig, Source: src}
}

// seriesConfig is a --repeat series.
type seriesConfig struct {
	command string   // run, replay run
	args    []string // redacted, for the summary file
	runs    int
	expect  string // "": any error
	out     string // --out: the stem of the files ("" for the default)
	name    string // the default stem's scenario part
	json    bool
	// thresholds are --fail-on: each run judges its own; the series is
	// judged on its runs pooled.
	thresholds *thresholdFlags
}

// seriesSummary is the summary file of a --repeat series,
// <stem>-repeat.json, and what --json prints.
type seriesSummary struct {
	Command string      `json:"command"`
	Args    []string    `json:"args,omitempty"`
	Repeat  int         `json:"repeat"` // runs asked for
	Expect  string      `json:"expect,omitempty"`
	Runs    []seriesRun `json:"runs"`
	// Completed counts the runs that ran their whole duration; the
	// reproduction rate is over them.
	Completed   int  `json:"completed"`
	Interrupted bool `json:"interrupted,omitempty"`
	// Reproduction is analysis.Reproduction over the completed runs' files
	// (absent when none completed).
	Reproduction *analysis.ReproductionResult `json:"reproduction,omitempty"`
	// Thresholds are the --fail-on results over every run pooled (each
	// run's own are in its summary); they decide the exit code.
	Thresholds []session.Threshold `json:"thresholds,omitempty"`
}

// seriesRun is one run of a series.
type seriesRun struct {
	Run         int             `json:"run"`
	SessionFile string          `json:"session_file"`
	Summary     session.Summary `json:"summary"`
}

// seriesStem returns the stem of a series' files: --out without .db, or
// ssestress-<name>-<time> (with -2, -3 ... until no file of the series
// exists). A file of the series that exists already is refused: session
// files are never overwritten.
func seriesStem(cfg seriesConfig, now time.Time) (string, error) {
	files := func(stem string) []string {
		f := []string{stem + "-repeat.json"}
		for i := 1; i <= cfg.runs; i++ {
			f = append(f, fmt.Sprintf("%s-%d.db", stem, i))
		}
		return f
	}
	exists := func(stem string) string {
		for _, f := range files(stem) {
			if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
				return f
			}
		}
		return ""
	}
	if cfg.out != "" {
		stem := strings.TrimSuffix(cfg.out, ".db")
		if f := exists(stem); f != "" {
			return "", usageErrorf("%s: %s already exists (choose another --out, or remove it)", cfg.command, f)
		}
		return stem, nil
	}
	base := "ssestress-" + cfg.name + "-" + now.Format("20060102-150405")
	stem := base
	for i := 2; exists(stem) != ""; i++ {
		if i > 1000 {
			return "", fmt.Errorf("%s: no free file name for %s-*.db (give --out)", cfg.command, base)
		}
		stem = base + "-" + strconv.Itoa(i)
	}
	return stem, nil
}

// runSeries runs once cfg.runs times, each into <stem>-<i>.db, stopping
// early when ctx ends (the run in progress ends as an interrupted run
// does). It then measures the reproduction over the completed runs, writes
// <stem>-repeat.json and prints the rate.
func runSeries(ctx context.Context, cfg seriesConfig, once func(ctx context.Context, path string) (session.Summary, error), stdout, errOut io.Writer) error {
	stem, err := seriesStem(cfg, time.Now())
	if err != nil {
		return err
	}
	summaryPath := stem + "-repeat.json"
	fmt.Fprintf(errOut, "ssestress %s: %d runs into %s-1.db ... %s-%d.db; summary %s\n", cfg.command, cfg.runs, stem, stem, cfg.runs, summaryPath)
	ss := seriesSummary{Command: cfg.command, Args: cfg.args, Repeat: cfg.runs, Expect: cfg.expect, Runs: []seriesRun{}}
	var (
		completed []string
		runErr    error
	)
	for i := 1; i <= cfg.runs; i++ {
		if ctx.Err() != nil {
			ss.Interrupted = true
			break
		}
		path := fmt.Sprintf("%s-%d.db", stem, i)
		sum, err := once(ctx, path)
		if err != nil {
			runErr = fmt.Errorf("run %d of %d: %w", i, cfg.runs, err)
			break
		}
		ss.Runs = append(ss.Runs, seriesRun{Run: i, SessionFile: path, Summary: sum})
		errs := "no errors"
		if len(sum.Errors) > 0 {
			errs = "errors " + clients.FormatErrors(sum.Errors)
		}
		state := "ended"
		if sum.Interrupted {
			state = "interrupted"
			ss.Interrupted = true
		} else {
			completed = append(completed, path)
		}
		fmt.Fprintf(errOut, "ssestress %s: run %d of %d %s: %d clients, %s; %s\n", cfg.command, i, cfg.runs, state, sum.Clients, errs, path)
		if sum.Interrupted {
			break
		}
	}
	ss.Completed = len(completed)
	if len(completed) > 0 {
		if ss.Reproduction, err = analysis.Reproduction(completed, cfg.expect); err != nil {
			return fmt.Errorf("%s: reproduction: %w", cfg.command, err)
		}
	}
	if cfg.thresholds != nil {
		var ran []string
		for _, r := range ss.Runs {
			ran = append(ran, r.SessionFile)
		}
		if ss.Thresholds, err = cfg.thresholds.series(ran); err != nil {
			return fmt.Errorf("%s: %w", cfg.command, err)
		}
	}
	if len(ss.Runs) > 0 {
		raw, err := json.MarshalIndent(ss, "", "  ")
		if err != nil {
			return err
		}
		if err := outfile.WriteFile(summaryPath, append(raw, '\n'), 0o644, false); err != nil {
			return fmt.Errorf("%s: summary file: %w", cfg.command, err)
		}
	}
	if runErr != nil {
		if len(ss.Runs) > 0 {
			fmt.Fprintf(errOut, "ssestress %s: the %d runs before the failure are in %s\n", cfg.command, len(ss.Runs), summaryPath)
		}
		return runErr
	}
	if cfg.json {
		if err := json.NewEncoder(stdout).Encode(ss); err != nil {
			return err
		}
		return thresholdsFailed(cfg.command+" series", ss.Thresholds)
	}
	if ss.Interrupted {
		fmt.Fprintf(stdout, "interrupted: %d of %d runs completed; the rate below is over those\n", ss.Completed, cfg.runs)
	}
	if ss.Reproduction == nil {
		fmt.Fprintln(stdout, "no run completed: no reproduction rate")
	} else if err := analysis.RenderDoc(stdout, ss.Reproduction.Doc(), "table"); err != nil {
		return err
	}
	printSeriesThresholds(stdout, ss)
	if len(ss.Runs) > 0 {
		fmt.Fprintf(stdout, "summary file: %s (ssestress report --reproduction %s-*.db)\n", summaryPath, stem)
	}
	return thresholdsFailed(cfg.command+" series", ss.Thresholds)
}

// describePlan says in words what the scenario will open.
func describePlan(cfg runConfig, plan clients.Plan) string {
	s := fmt.Sprintf("%d connections opened at %s/s", cfg.Connections, cfg.Rate)
	switch cfg.Scenario {
	case clients.Churn:
		s += fmt.Sprintf(", one replaced every %s", dur.Format(plan.Churn))
	case clients.Mixed:
		s = fmt.Sprintf("%d steady + %d-%d variable connections (changing every %s)",
			cfg.Connections, plan.VariableMin, plan.VariableMax, dur.Format(plan.Churn))
	}
	switch sh := plan.Shard; {
	case sh.Count == 1:
		s = "shard 1/1 (all connections) of " + s
	case sh.Count > 1:
		s = fmt.Sprintf("shard %s (connections c%04d, c%04d, ...: every %d%s) of %s", sh, sh.Index-1, sh.Index-1+sh.Count, sh.Count, ordinalSuffix(sh.Count), s)
	}
	return s
}

// ordinalSuffix is "st", "nd", "rd" or "th" for n.
func ordinalSuffix(n int) string {
	if n%100 >= 11 && n%100 <= 13 {
		return "th"
	}
	switch n % 10 {
	case 1:
		return "st"
	case 2:
		return "nd"
	case 3:
		return "rd"
	}
	return "th"
}

// printRunSummary renders the summary table: one column per scenario.
func printRunSummary(w io.Writer, s session.Summary, maxLag time.Duration) error {
	errs := "0"
	if len(s.Errors) > 0 {
		errs = clients.FormatErrors(s.Errors)
	}
	rows := [][]string{
		{"duration", summaryDuration(s)},
		{"clients", strconv.FormatInt(s.Clients, 10)},
		{"connection attempts", strconv.FormatInt(s.Attempts, 10)},
		{"max active", strconv.FormatInt(s.ActiveMax, 10)},
		{"events", strconv.FormatInt(s.Events, 10)},
		{"events/s", strconv.FormatFloat(s.EventsPerS, 'f', 1, 64)},
		{"reconnects", strconv.FormatInt(s.Reconnects, 10)},
		{"errors", errs},
		{"peak memory", clients.Bytes(s.MemoryPeakBytes)},
	}
	if maxLag > 0 {
		rows = append(rows, []string{"max timer lag", maxLag.Round(10 * time.Microsecond).String()})
	}
	return printSummaryTable(w, s, rows)
}

// printProxySummary prints a proxy's end-of-run totals: its own counts
// (client connections, requests, events forwarded, fault firings, failures
// per hop), not a load run's.
func printProxySummary(w io.Writer, s session.Summary, p session.ProxyInfo) error {
	errs := "0"
	if len(p.Errors) > 0 {
		errs = clients.FormatErrors(p.Errors)
	}
	rows := [][]string{
		{"duration", summaryDuration(s)},
		{"client connections", strconv.FormatInt(p.Connections, 10)},
		{"requests", strconv.FormatInt(p.Requests, 10)},
		{"max active connections", strconv.FormatInt(p.ActiveMax, 10)},
		{"events forwarded", strconv.FormatInt(p.Events, 10)},
		{"events/s", strconv.FormatFloat(s.EventsPerS, 'f', 1, 64)},
		{"fault firings", strconv.FormatInt(p.FaultsFired, 10)},
		{"failures by hop", errs},
		{"peak memory", clients.Bytes(s.MemoryPeakBytes)},
	}
	rows = append(rows, unrecordedRows(p)...)
	return printSummaryTable(w, s, rows)
}

func summaryDuration(s session.Summary) string {
	dur := (time.Duration(s.DurationS * float64(time.Second))).Round(time.Millisecond).String()
	if s.Interrupted {
		dur += " (interrupted)"
	}
	return dur
}

func printSummaryTable(w io.Writer, s session.Summary, rows [][]string) error {
	if s.RecordsDropped > 0 {
		rows = append(rows, []string{"records dropped", strconv.FormatUint(s.RecordsDropped, 10)})
	}
	t := tablewriter.NewTable(w, tablewriter.WithHeaderAutoFormat(tw.Off))
	t.Header("", s.Scenario)
	if err := t.Bulk(rows); err != nil {
		return err
	}
	return t.Render()
}

// lockedWriter serialises writes from the monitor and the session writer's
// error callback; with stamp, each write (a line) starts with the time, as
// the proxy's log does.
type lockedWriter struct {
	mu    sync.Mutex
	w     io.Writer
	stamp bool
}

func (s *lockedWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stamp {
		if _, err := io.WriteString(s.w, time.Now().Format("15:04:05.000")+" "); err != nil {
			return 0, err
		}
	}
	return s.w.Write(p)
}

// writerIsTerminal reports whether w is a terminal (then the status line is
// rewritten in place).
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
