package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/metrics"
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
	httpAddr         string   // --http: live view address; empty: none
	serverPID        int      // --server-pid: sampled into the samples and /metrics
	hop              hopFlags // --via-proxy, --fault, --capture
	maxFileSize      int64    // --max-file-size: bbolt MaxSize of the session file
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
    (then: curl 127.0.0.1:9090/metrics, curl '127.0.0.1:9090/report?format=markdown')

Scenarios and their defaults (the seed test plan):
  flood         20 connections opened at 1-5 per second, 1h
  long-running  20 steady connections, 72h, monitor every 5m
  churn         10 base connections, one closed and a new one opened per minute, 24h
  mixed         15 steady + 5-10 variable connections, server message rate 100-1000/min, 48h

A config file holds the same settings as JSON, e.g.
  {"scenario": "churn", "connections": 10, "duration": "24h", "churnRate": 1,
   "symbolGroups": [["AAPL","MSFT"],["AMZN","META"]], "monitorInterval": "5m"}
A group may be served under its own path:
  "symbolGroups": [{"symbols": ["AAPL","MSFT"], "path": "/v2/quotes?s={symbols}"}, ["AMZN"]]`

// runRun is ssestress run.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseRunArgs(args, stdout)
	if err != nil {
		return err
	}
	return o.execute(ctx, stdout, stderr)
}

// parseRunArgs parses and checks the command line, loading --config.
func parseRunArgs(args []string, stdout io.Writer) (*runOptions, error) {
	o := &runOptions{args: args}
	fs := newFlags("run")
	fs.StringVar(&o.configFile, "config", "", "JSON config file (the seed's TestConfig fields; flags override it)")
	texts := map[string]string{}
	for _, f := range configFields {
		flag := f.flag
		fs.Func(flag, f.usage, func(s string) error { texts[flag] = s; return nil })
	}
	fs.StringVar(&o.out, "out", "", "session file to write (default ssestress-<scenario>-<timestamp>.db; never overwritten)")
	fs.BoolVar(&o.json, "json", false, "print the summary as one JSON object")
	o.req.register(fs)
	fs.StringVar(&o.httpAddr, "http", "", "serve a live view on `ADDR` (loopback when no host is given): /metrics (Prometheus), /report")
	fs.IntVar(&o.serverPID, "server-pid", 0, "`PID` of the server process: its memory and open fds are sampled beside the run's")
	fs.DurationVar(&o.backoff, "backoff", 0, "cap of exponential reconnect backoff with jitter (0: wait the server's retry, as browsers do)")
	fs.BoolVar(&o.retryOnHTTPError, "retry-on-http-error", false, "reconnect after a non-200 status or wrong Content-Type (browsers give up)")
	o.hop.register(fs)
	fs.Func("max-file-size", "stop recording (the run goes on) once the session file would pass `SIZE` (e.g. 500MB, 2GiB)", func(s string) error {
		n, err := parseSize(s)
		o.maxFileSize = n
		return err
	})
	if err := parseFlags(fs, args, stdout, runSynopsis, runExamples); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageErrorf("run: unexpected argument %q (settings are flags, e.g. --duration=30s)", fs.Arg(0))
	}
	if o.backoff < 0 {
		return nil, usageErrorf("run: --backoff must not be negative")
	}
	setup, err := o.req.build()
	if err != nil {
		return nil, usageErrorf("run: %v", err)
	}
	o.setup = setup
	notes, err := o.hop.check("run", setup.http2)
	if err != nil {
		return nil, err
	}
	o.notes = append(o.notes, notes...)
	if o.httpAddr != "" {
		if _, err := liveListenAddr(o.httpAddr); err != nil {
			return nil, usageErrorf("run: %v", err)
		}
	}
	if o.serverPID < 0 {
		return nil, usageErrorf("run: --server-pid must be a process id")
	}
	if o.serverPID > 0 {
		if _, err := procstat.Read(o.serverPID); err != nil && !errors.Is(err, procstat.ErrUnsupported) {
			return nil, usageErrorf("run: --server-pid %d: no such process readable here", o.serverPID)
		}
	}

	var cfg runConfig
	if o.configFile != "" {
		if cfg, err = loadRunConfig(o.configFile); err != nil {
			return nil, usageErrorf("run: %v", err)
		}
	}
	for _, f := range configFields {
		if s, ok := texts[f.flag]; ok {
			if err := f.fromText(&cfg, s); err != nil {
				return nil, usageErrorf("run: --%s: %v", f.flag, err)
			}
		}
	}
	given := cfg // before defaults: what the user set
	cfg = cfg.withDefaults()
	if given.Variable != "" && cfg.Scenario != clients.Mixed {
		return nil, usageErrorf("run: variable applies to the mixed scenario only (scenario is %s)", cfg.Scenario)
	}
	if given.ChurnRate > 0 && cfg.Scenario != clients.Churn && cfg.Scenario != clients.Mixed {
		o.notes = append(o.notes, fmt.Sprintf("churnRate is used by the churn and mixed scenarios; ignored for %s", cfg.Scenario))
	}
	if given.MessageRate != "" && cfg.Target != "" {
		o.notes = append(o.notes, "messageRate sets the embedded server's rate; ignored with a target")
	}
	if _, err := cfg.plan(); err != nil {
		return nil, usageErrorf("run: %v", err)
	}
	o.cfg = cfg
	return o, nil
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
// server started on a free loopback port with the scenario's message rate.
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
			{Role: session.RoleServer, Name: "target", Addr: clients.HostPort(u), URL: redactURL(cfg.Target)},
		}}, nil
	}
	rate, err := feed.ParseRate(cfg.MessageRate)
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

// execute runs the configured scenario and prints its summary.
func (o *runOptions) execute(ctx context.Context, stdout, stderr io.Writer) error {
	cfg := o.cfg
	plan, err := cfg.plan()
	if err != nil {
		return usageErrorf("run: %v", err)
	}
	if err := checkRunFDLimit(cfg, plan); err != nil {
		return err
	}
	errOut := &lockedWriter{w: stderr}
	for _, n := range o.notes {
		fmt.Fprintln(errOut, "ssestress: note:", n)
	}
	setup := o.setup
	if setup == nil {
		setup = &requestSetup{}
	}

	tgt, err := startRunTarget(cfg, setup.http2)
	if err != nil {
		return err
	}
	defer tgt.stop()
	if tgt.certPEM != nil {
		if err := setup.trust(tgt.certPEM); err != nil {
			return err
		}
	}
	defer setup.close()
	if tgt.embedded == nil {
		if err := setup.probe(ctx, "target ", tgt.url); err != nil {
			return err
		}
	}

	start := time.Now()
	path := o.out
	if path == "" {
		path = defaultSessionPath(cfg.Scenario, start)
	}
	w, err := session.Create(path, session.Options{MaxSize: int(o.maxFileSize), OnError: func(err error) {
		fmt.Fprintln(errOut, "ssestress:", err)
	}})
	if err != nil {
		return err
	}
	defer w.Close()
	stored := cfg
	stored.Target = redactURL(cfg.Target)
	cfgJSON, _ := json.Marshal(stored)
	host, _ := os.Hostname()
	info := session.RunInfo{
		Tool: "ssestress " + version, Command: "run", Args: redactArgs(o.args, setup.secrets), Scenario: cfg.Scenario,
		Target: redactURL(tgt.url), Config: cfgJSON, Host: host, PID: os.Getpid(), StartedAt: start,
	}
	w.PutMeta(session.MetaRun, info)
	var targetAddrs []string
	for _, e := range tgt.endpoints {
		w.Put(e)
		targetAddrs = append(targetAddrs, e.Addr)
	}
	w.Flush() // the run's identity is on disk before the first connection
	// The proxy and the capture go between the clients and the target; the
	// proxy records its own endpoints.
	clientURL, hops, err := o.hop.start(ctx, tgt.url, setup.tlsConfig, targetAddrs, w, path, errOut)
	if err != nil {
		return err
	}
	defer hops.stop()

	which := "embedded server, " + cfg.MessageRate + " msg/min per group"
	if tgt.embedded == nil {
		which = "target"
	}
	if setup.http2 {
		which += ", HTTP/2"
	}
	fmt.Fprintf(errOut, "ssestress run: %s, %s for %v against %s (%s); session file %s\n",
		cfg.Scenario, describePlan(cfg, plan), cfg.Duration, redactURL(tgt.url), which, path)

	counters := &clients.Counters{}
	opts := &clients.Options{
		Transport: setup.transport, Header: setup.header, Redact: setup.redact,
		UserAgent: "ssestress/" + version, Scenario: cfg.Scenario,
		RetryOnHTTPError: o.retryOnHTTPError, Recorder: w, Counters: counters,
		// Open connections are rewritten with their progress as often as
		// the monitor samples, but at most once a second each.
		Checkpoint: max(time.Duration(cfg.MonitorInterval), time.Second),
	}
	if o.backoff > 0 {
		opts.Backoff = clients.Backoff{Max: o.backoff, Jitter: 0.5}
	}
	mon := &clients.Monitor{
		Interval: time.Duration(cfg.MonitorInterval), Counters: counters, Recorder: w,
		Out: errOut, Terminal: writerIsTerminal(stderr), Start: start, ServerPID: o.serverPID,
	}

	// fileMu keeps the live /report off the file while the writer closes
	// it; afterwards the report reads the closed file.
	var (
		fileMu     sync.RWMutex
		fileClosed bool
		live       *liveView
	)
	if o.httpAddr != "" {
		live, err = startLiveView(liveConfig{
			addr:    o.httpAddr,
			collect: runMetrics(cfg.Scenario, start, counters, w, setup, o.serverPID),
			report: func(out io.Writer, format string) error {
				fileMu.RLock()
				defer fileMu.RUnlock()
				var (
					rep *analysis.Report
					err error
				)
				if fileClosed {
					rep, err = analysis.LoadFiles(path)
				} else {
					rep, err = analysis.Load(w.Reader())
				}
				if err != nil {
					return err
				}
				return analysis.Render(out, rep, format)
			},
			session: path,
		})
		if err != nil {
			return err
		}
		defer live.close()
		fmt.Fprintf(errOut, "ssestress run: live view on %s/metrics and %s/report\n", live.URL, live.URL)
	}

	monCtx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.Run(monCtx) }()

	res, runErr := clients.Run(ctx, clients.RunConfig{
		Plan: plan, Duration: time.Duration(cfg.Duration), Target: clientURL, Path: cfg.Path,
		Groups: cfg.SymbolGroups, GroupPaths: cfg.GroupPaths, Options: opts,
	})
	stopMon()
	<-monDone
	setup.close()
	hops.stop()

	sum := session.Summary{
		Scenario:          cfg.Scenario,
		DurationS:         res.Elapsed.Seconds(),
		ConnectionsOpened: counters.Streams.Load(),
		ActiveMax:         counters.ActiveMax.Load(),
		Messages:          counters.Messages.Load(),
		Reconnects:        counters.Reconnects.Load(),
		Errors:            counters.Errors(),
		MemoryPeakBytes:   mon.PeakMemory(),
		SessionFile:       path,
		Interrupted:       res.Interrupted,
		RecordsDropped:    w.Dropped(),
	}
	if s := res.Elapsed.Seconds(); s > 0 {
		sum.MessagesPerS = float64(sum.Messages) / s
	}
	info.EndedAt = time.Now()
	w.PutMeta(session.MetaRun, info)
	w.PutMeta(session.MetaSummary, sum)
	fileMu.Lock()
	fileClosed = true
	closeErr := w.Close()
	fileMu.Unlock()
	if closeErr != nil {
		return fmt.Errorf("session file %s: %w", path, closeErr)
	}
	o.hop.attribute(ctx, path, errOut)
	if o.afterRun != nil {
		o.afterRun(live)
	}
	live.close()
	if runErr != nil {
		return runErr
	}

	if o.json {
		if err := json.NewEncoder(stdout).Encode(sum); err != nil {
			return err
		}
	} else {
		if err := printRunSummary(stdout, sum, mon.MaxLag()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "session file: %s (ssestress inspect %s)\n", path, path)
	}
	if res.AllFailed {
		return fmt.Errorf("every connection failed for good (%s); nothing left to run", clients.FormatErrors(sum.Errors))
	}
	return nil
}

// describePlan says in words what the scenario will open.
func describePlan(cfg runConfig, plan clients.Plan) string {
	s := fmt.Sprintf("%d connections opened at %s/s", cfg.Connections, cfg.Rate)
	switch cfg.Scenario {
	case clients.Churn:
		s += fmt.Sprintf(", one replaced every %v", plan.Churn.Round(time.Millisecond))
	case clients.Mixed:
		s = fmt.Sprintf("%d steady + %d-%d variable connections (changing every %v)",
			cfg.Connections, plan.VariableMin, plan.VariableMax, plan.Churn.Round(time.Millisecond))
	}
	return s
}

// defaultSessionPath is ssestress-<scenario>-<timestamp>.db in the working
// directory, with a -2, -3 ... suffix if that file exists.
func defaultSessionPath(scenario string, now time.Time) string {
	base := "ssestress-" + scenario + "-" + now.Format("20060102-150405")
	name := base + ".db"
	for i := 2; i < 1000; i++ {
		if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		name = base + "-" + strconv.Itoa(i) + ".db"
	}
	return name
}

// printRunSummary renders the summary table: one column per scenario.
func printRunSummary(w io.Writer, s session.Summary, maxLag time.Duration) error {
	errs := "0"
	if len(s.Errors) > 0 {
		errs = clients.FormatErrors(s.Errors)
	}
	dur := (time.Duration(s.DurationS * float64(time.Second))).Round(time.Millisecond).String()
	if s.Interrupted {
		dur += " (interrupted)"
	}
	rows := [][]string{
		{"duration", dur},
		{"connections opened", strconv.FormatInt(s.ConnectionsOpened, 10)},
		{"max active", strconv.FormatInt(s.ActiveMax, 10)},
		{"messages", strconv.FormatInt(s.Messages, 10)},
		{"messages/s", strconv.FormatFloat(s.MessagesPerS, 'f', 1, 64)},
		{"reconnects", strconv.FormatInt(s.Reconnects, 10)},
		{"errors", errs},
		{"peak memory", clients.Bytes(s.MemoryPeakBytes)},
	}
	if maxLag > 0 {
		rows = append(rows, []string{"max timer lag", maxLag.Round(10 * time.Microsecond).String()})
	}
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
// error callback.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *lockedWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
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

// checkRunFDLimit raises the soft limit on open files to the hard limit and
// refuses a run that cannot hold its connections: each takes a descriptor,
// and with the embedded server in the same process, two.
func checkRunFDLimit(cfg runConfig, plan clients.Plan) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil // not knowable here: let the run find out
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	concurrent := uint64(plan.Connections + plan.VariableMax)
	perConn := uint64(1)
	if cfg.Target == "" {
		perConn = 2
	}
	const reserve = 64 // session file, listener, stdio, DNS, ...
	if need := concurrent*perConn + reserve; need > lim.Cur {
		return fmt.Errorf("%d connections need about %d file descriptors, but the limit is %d (raise it with ulimit -n, or use fewer connections)",
			concurrent, need, lim.Cur)
	}
	return nil
}

// runMetrics returns the /metrics families of a run, read from the same
// counters the summary and the samples are made of, so that at the end of
// a run they agree with the session file.
func runMetrics(scenario string, start time.Time, c *clients.Counters, w *session.Writer, setup *requestSetup, serverPID int) func() []metrics.Family {
	procs := []metrics.Process{metrics.Self()}
	if serverPID > 0 {
		procs = append(procs, metrics.Process{Role: "server", PID: serverPID})
	}
	return func() []metrics.Family {
		errs := metrics.Family{Name: "ssestress_errors_total", Kind: metrics.Counter,
			Help: "Classified failures of the generated clients by error class and hop (client: between the clients and the first hop)."}
		errs.Samples = metrics.CountsByLabel(c.Errors(), "class", metrics.Label{Name: "hop", Value: session.HopClient})
		fams := []metrics.Family{
			{Name: "ssestress_info", Kind: metrics.Gauge, Help: "The command and scenario of this process (always 1).",
				Samples: []metrics.Sample{{Labels: metrics.L("command", "run", "scenario", scenario, "version", version), Value: 1}}},
			metrics.One("ssestress_uptime_seconds", "Seconds since the run started.", metrics.Gauge, time.Since(start).Seconds()),
			metrics.One("ssestress_streams_active", "Streams with an open event-stream response now.", metrics.Gauge, float64(c.Active.Load())),
			metrics.One("ssestress_streams_active_max", "Most streams open at once so far.", metrics.Gauge, float64(c.ActiveMax.Load())),
			metrics.One("ssestress_connections_opened_total", "Logical client connections (EventSources) started.", metrics.Counter, float64(c.Streams.Load())),
			metrics.One("ssestress_connection_attempts_total", "Connection attempts: first connects and reconnects.", metrics.Counter, float64(c.Attempts.Load())),
			metrics.One("ssestress_reconnects_total", "Reconnects after a failure.", metrics.Counter, float64(c.Reconnects.Load())),
			metrics.One("ssestress_messages_total", "SSE events dispatched to the clients.", metrics.Counter, float64(c.Messages.Load())),
			metrics.One("ssestress_comments_total", "SSE comments (heartbeats) received.", metrics.Counter, float64(c.Comments.Load())),
			errs,
			metrics.One("ssestress_session_records_committed_total", "Records written to the session file.", metrics.Counter, float64(w.Committed())),
			metrics.One("ssestress_session_records_dropped_total", "Records not written (queue or file full).", metrics.Counter, float64(w.Dropped())),
		}
		if setup != nil && setup.h2 != nil {
			fams = append(fams, metrics.One("ssestress_http2_connections", "TCP connections the HTTP/2 streams share.", metrics.Gauge, float64(setup.h2.Connections())))
		}
		return append(fams, metrics.ProcessFamilies(procs...)...)
	}
}
