package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/listenaddr"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/replay"
)

const replaySynopsis = "replay serve|run --recording FILE [flags]"

const replayServeSynopsis = "replay serve --recording FILE [--listen ADDR] [--speed F] [--loop] [--no-endings] [--http ADDR]"

const replayServeExamples = `  ssestress replay serve --recording session.db --listen 127.0.0.1:8091
  ssestress replay serve --recording session.db --speed 10 --loop --http 127.0.0.1:9091
  ssestress tail 'http://127.0.0.1:8091/stream?symbols=AAPL,MSFT'`

const replayRunSynopsis = "replay run --recording FILE --target URL [--scale N] [--scenario S] [--duration D] [--out FILE] [flags]"

const replayRunExamples = `  ssestress replay run --recording session.db --target http://127.0.0.1:8090 --scale 20
  ssestress replay run --recording session.db --target http://staging:8080 --scenario churn --duration 10m
  ssestress replay run --recording session.db --target http://127.0.0.1:8091 --scale 10 --out replay.db --json
  ssestress replay run --recording session.db --target https://staging.example --token-env FEED_TOKEN --ca staging.pem
  ssestress replay run --recording session.db --target http://127.0.0.1:8090 --fault preset:aws-alb --time-scale 60 --http 127.0.0.1:9090
  ssestress replay run --recording session.db --target http://127.0.0.1:8090 --fault reset:hop=upstream,after=2s,toxicity=0.3 --repeat 10 --expect ECONNRESET

Without --scenario the recorded client population is replayed: each recorded stream becomes
--scale connections opened at the recorded offsets (spread until the next recorded start) with
the recorded path, query and headers (redacted ones left out; --header, --cookie and the
--token-* flags add or replace) and an X-Ssestress-Replay header naming the recorded stream
(replay serve answers with that one). Each makes one attempt and keeps its recorded ending: a
stream the client ended is closed at its recorded age; one the server side ended (reset, cut,
clean end) is held until the server ends it (at most twice its age, and 5 s past it). The
summary compares, per ending kind, the recorded streams with their replayed connections
(also in report). --scenario keeps the mix of requests but opens and closes the connections
as the scenario does (see ssestress run --help), and they reconnect.
--via-proxy, --fault and --capture put the in-process fault proxy and the packet capture between
the clients and the target, as in run.`

var replayCmd = &command{
	name:     "replay",
	summary:  "replay a recording: serve it as the SSE server, or re-drive its clients at --scale",
	synopsis: replaySynopsis,
	examples: replayServeExamples + "\n" + strings.SplitN(replayRunExamples, "\n\n", 2)[0],
	subs: []*command{
		{name: "serve", summary: "stand in for the recorded server: recorded headers, events, gaps and endings",
			synopsis: replayServeSynopsis, examples: replayServeExamples, args: argSpec{none: "the file goes after --recording"},
			setup: func(fs *flagSet) action {
				var o replayServeOptions
				fs.StringVar(&o.recording, "recording", "", "session `FILE` holding the recording (required)")
				fs.StringVar(&o.listen, "listen", replay.DefaultListen, "`ADDR` to listen on (loopback by default)")
				fs.Float64Var(&o.cfg.Speed, "speed", 1, "replay speed: 2 halves every recorded gap")
				fs.BoolVar(&o.cfg.Loop, "loop", false, "start each stream over after its last frame, ids kept increasing")
				fs.BoolVar(&o.cfg.NoEndings, "no-endings", false, "hold every stream open after its last frame instead of reproducing its recorded end (reset, cut, clean end)")
				fs.StringVar(&o.httpAddr, "http", "", "serve a live view on `ADDR` (loopback when no host is given): /metrics (Prometheus)")
				fs.values(files(), "recording")
				return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
					return o.run(ctx, stdout, stderr)
				}
			}},
		{name: "run", summary: "re-drive the recorded clients against a target, at --scale, into a session file",
			synopsis: replayRunSynopsis, examples: replayRunExamples + "\n\n" + thresholdHelp, args: argSpec{none: "the file goes after --recording"},
			setup: func(fs *flagSet) action {
				o := newReplayRunOptions(fs)
				return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
					o.args, o.flags = fs.argv, fs
					return o.run(ctx, stdout, stderr)
				}
			}},
	},
}

// replayServeOptions are the flags of ssestress replay serve.
type replayServeOptions struct {
	recording string
	listen    string
	httpAddr  string // --http: live view address; empty: none
	cfg       replay.Config
}

func (o *replayServeOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	if o.recording == "" {
		return usageErrorf("replay serve: --recording FILE is required")
	}
	if !(o.cfg.Speed > 0) || o.cfg.Speed > 1e6 {
		return usageErrorf("replay serve: --speed must be a positive number (got %v)", o.cfg.Speed)
	}
	if o.httpAddr != "" {
		if _, err := liveListenAddr(o.httpAddr); err != nil {
			return usageErrorf("replay serve: %v", err)
		}
	}
	rec, err := loadRecording(o.recording, stderr)
	if err != nil {
		return err
	}
	o.listen = listenaddr.Loopback(o.listen, replay.DefaultListen) // a bare port is loopback
	srv, err := replay.Start(o.listen, rec, o.cfg)
	if err != nil {
		return badValue("replay serve: --listen "+o.listen, err)
	}
	fmt.Fprintf(stdout, "replaying %d recorded streams (%d frames) from %s on %s (speed %v%s)\n",
		len(rec.Streams), rec.Frames(), o.recording, srv.URL, o.cfg.Speed, serveModes(o.cfg))
	if o.httpAddr != "" {
		live, err := startLiveView(liveConfig{addr: o.httpAddr, registry: replayServeRegistry(srv.Server)})
		if err != nil {
			srv.Shutdown()
			return err
		}
		defer live.close()
		fmt.Fprintf(stdout, "live view on %s/metrics\n", live.URL)
	}
	<-ctx.Done()
	srv.Shutdown()
	st := srv.Stats()
	fmt.Fprintf(stdout, "stopped: %d streams served, %d frames sent\n", st.Served, st.Frames)
	return nil
}

func serveModes(c replay.Config) string {
	s := ""
	if c.Loop {
		s += ", looping"
	}
	if c.NoEndings {
		s += ", endings not reproduced"
	}
	return s
}

// replayRunOptions are the flags of ssestress replay run.
type replayRunOptions struct {
	flags           *flagSet      // the parsed command line (its secrets are warned about)
	mem             memoryFlags   // --max-memory
	memory          processMemory // the budget as started
	recording       string
	target          string
	scale           int
	scenario        string
	duration        dur.Duration
	monitorInterval dur.Duration
	out             string
	req             requestFlags
	setup           *requestSetup  // headers (added to the recorded ones), TLS, transport
	hop             hopFlags       // --via-proxy, --fault, --capture
	failOn          thresholdFlags // --fail-on
	httpAddr        string         // --http: live view address; empty: none
	repeat          int            // --repeat: runs of the series (0: one run)
	expect          string         // --expect: the error class a series counts
	json            bool
	args            []string
	notes           []string
}

// replayRunConfig is stored as the run's config in the session file.
type replayRunConfig struct {
	Recording       string       `json:"recording"`
	Target          string       `json:"target"`
	Scale           int          `json:"scale"`
	Scenario        string       `json:"scenario,omitempty"`
	Duration        dur.Duration `json:"duration"`
	MonitorInterval dur.Duration `json:"monitorInterval"`
	// Header holds the headers added to the recorded ones, credentials
	// redacted.
	Header http.Header `json:"header,omitempty"`
}

// newReplayRunOptions registers replay run's flags on fs.
func newReplayRunOptions(fs *flagSet) *replayRunOptions {
	o := &replayRunOptions{}
	fs.StringVar(&o.recording, "recording", "", "session `FILE` holding the recording (required)")
	fs.StringVar(&o.target, "target", "", "base `URL` of the service to drive, e.g. http://127.0.0.1:8090 (required)")
	fs.IntVar(&o.scale, "scale", 1, "connections per recorded one")
	fs.StringVar(&o.scenario, "scenario", "", "apply this `SCENARIO`'s connection pattern ("+strings.Join(clients.Scenarios, ", ")+") to the recorded mix of requests")
	fs.Var(&o.duration, "duration", "run length `D` (default: the recording's length; with --scenario, the scenario's)")
	o.monitorInterval = dur.Duration(time.Second)
	fs.Var(&o.monitorInterval, "monitor-interval", "interval `D` of the stored metric samples")
	fs.StringVar(&o.out, "out", "", "session `FILE` to write (default ssestress-replay-<timestamp>.db; never overwritten)")
	o.req.register(fs)
	o.hop.register(fs)
	o.mem.register(fs)
	o.failOn.register(fs)
	fs.StringVar(&o.httpAddr, "http", "", "serve a live view on `ADDR` (loopback when no host is given): a live page at /, /metrics (Prometheus), /report")
	fs.IntVar(&o.repeat, "repeat", 0, "replay `N` times, into <out>-1.db ... <out>-N.db, and report the reproduction rate (also in <out>-repeat.json)")
	fs.StringVar(&o.expect, "expect", "", "with --repeat: the error `CLASS` whose reproduction counts, e.g. ECONNRESET (default: any error)")
	fs.BoolVar(&o.json, "json", false, "print the summary as one JSON object")
	fs.values(files(), "recording", "out")
	fs.values(words(clients.Scenarios...), "scenario")
	fs.values(wordsOf(func() []string { return errorClasses }), "expect")
	return o
}

// run is ssestress replay run, once its flags are parsed.
func (o *replayRunOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	switch {
	case o.recording == "":
		return usageErrorf("replay run: --recording FILE is required")
	case o.target == "":
		return usageErrorf("replay run: --target URL is required (replay serve, or ssestress serve, can be one)")
	case o.scale < 1 || o.scale > 100000:
		return usageErrorf("replay run: --scale must be between 1 and 100000 (got %d)", o.scale)
	case o.monitorInterval <= 0:
		return usageErrorf("replay run: --monitor-interval must be positive")
	}
	if o.scenario != "" {
		if _, ok := clients.ScenarioDefaults[o.scenario]; !ok {
			return usageErrorf("replay run: unknown --scenario %q (use %s)", o.scenario, strings.Join(clients.Scenarios, ", "))
		}
	}
	if _, err := clients.ParseTarget(o.target); err != nil {
		return usageErrorf("replay run: --target: %v", err)
	}
	notes, err := checkRepeatFlags("replay run", o.repeat, &o.expect)
	if err != nil {
		return err
	}
	o.notes = append(o.notes, notes...)
	setup, err := o.req.build()
	if err != nil {
		return usageErrorf("replay run: %v", err)
	}
	o.setup = setup
	notes, err = o.hop.check("replay run", setup.http2)
	if err != nil {
		return err
	}
	setup.secrets = append(setup.secrets, o.hop.secrets()...)
	if err := o.failOn.check("replay run"); err != nil {
		return err
	}
	o.notes = append(o.notes, notes...)
	if o.httpAddr != "" {
		if _, err := liveListenAddr(o.httpAddr); err != nil {
			return usageErrorf("replay run: %v", err)
		}
	}
	if o.flags != nil {
		warnSecrets(o.flags, stderr)
	}
	rec, err := loadRecording(o.recording, stderr)
	if err != nil {
		return err
	}
	return o.execute(ctx, rec, stdout, stderr)
}

// population builds the run's client population: the recorded pattern, or
// with --scenario that scenario's over the recorded mix.
func (o *replayRunOptions) population(rec *recording.Recording) (*replay.Population, error) {
	pop, err := replay.NewPopulation(rec, replay.PopulationOptions{
		Scale: o.scale, Scenario: o.scenario, Duration: time.Duration(o.duration), Seed: uint64(time.Now().UnixNano()),
	})
	switch {
	case errors.Is(err, replay.ErrNoStreams):
		return nil, fmt.Errorf("replay run: %s holds no recorded stream to replay", o.recording)
	case err != nil:
		return nil, usageErrorf("replay run: %v", err)
	}
	return pop, nil
}

func (o *replayRunOptions) execute(ctx context.Context, rec *recording.Recording, stdout, stderr io.Writer) error {
	errOut := &lockedWriter{w: stderr}
	for _, n := range o.notes {
		fmt.Fprintln(errOut, "ssestress: note:", n)
	}
	if o.setup == nil {
		o.setup = &requestSetup{}
	}
	defer o.setup.close()
	first, err := o.population(rec)
	if err != nil {
		return err
	}
	if err := checkCapacity(first.Concurrent, descriptorsPerStream(false, o.hop.viaProxy)); err != nil {
		return err
	}
	if o.memory, err = o.mem.start("replay run"); err != nil {
		return err
	}
	o.hop.budget = o.memory.buffers
	if err := o.setup.probe(ctx, "target ", o.target); err != nil {
		return err
	}
	if o.repeat > 0 {
		return runSeries(ctx, seriesConfig{
			command: "replay run", args: redactArgs(o.args, o.setup.secrets), runs: o.repeat, expect: o.expect,
			out: o.out, name: "replay", json: o.json, thresholds: &o.failOn,
		}, func(ctx context.Context, path string) (session.Summary, error) {
			p, err := o.population(rec)
			if err != nil {
				return session.Summary{}, err
			}
			res, err := o.runOnce(ctx, rec, p, path, errOut)
			if err != nil {
				return session.Summary{}, err
			}
			return res.sum, nil
		}, stdout, errOut)
	}

	path := o.out
	if path == "" {
		path = defaultSessionPath("replay", time.Now())
	}
	res, err := o.runOnce(ctx, rec, first, path, errOut)
	if err != nil {
		return err
	}
	if o.json {
		if err := json.NewEncoder(stdout).Encode(struct {
			session.Summary
			Replay *session.ReplayEndings `json:"replay,omitempty"`
		}{res.sum, res.endings}); err != nil {
			return err
		}
		return thresholdsFailed("replay run", res.sum.Thresholds)
	}
	if err := printRunSummary(stdout, res.sum, res.maxLag); err != nil {
		return err
	}
	if err := printReplayEndings(stdout, res.endings); err != nil {
		return err
	}
	printThresholds(stdout, "thresholds (--fail-on):", res.sum.Thresholds)
	fmt.Fprintf(stdout, "session file: %s (ssestress inspect %s)\n", path, path)
	return thresholdsFailed("replay run", res.sum.Thresholds)
}

// runOnce replays the population once into the session file at path,
// through the proxy and capture of --via-proxy/--fault/--capture, with the
// live view of --http.
func (o *replayRunOptions) runOnce(ctx context.Context, rec *recording.Recording, p *replay.Population, path string, errOut *lockedWriter) (*replayResult, error) {
	setup := o.setup
	cfgJSON, _ := json.Marshal(replayRunConfig{
		Recording: o.recording, Target: redactURL(o.target), Scale: o.scale, Scenario: o.scenario,
		Duration: dur.Duration(p.Duration), MonitorInterval: o.monitorInterval, Header: redactHeader(setup.header),
	})
	targetURL, _ := url.Parse(strings.TrimSuffix(o.target, "/"))
	targetAddr := clients.HostPort(targetURL)
	ss, err := openSession(sessionSpec{
		command: "replay run", path: path, flagName: "--out", maxPending: o.memory.writer, errOut: errOut,
		info: session.RunInfo{
			Args: redactArgs(o.args, setup.secrets), Scenario: p.Scenario, Target: redactURL(o.target), Config: cfgJSON,
			TimeScale: o.hop.runTimeScale(), Keepalive: applyClientKeepalive(time.Duration(o.hop.clientKeepalive), setup),
		},
		endpoints: []session.Endpoint{{Role: session.RoleTarget, Addr: targetAddr, URL: redactURL(o.target)}},
	})
	if err != nil {
		return nil, err
	}
	defer ss.close()
	// The proxy and the capture go between the clients and the target, as
	// in run.
	clientURL, hops, err := o.hop.start(ctx, strings.TrimSuffix(o.target, "/"), setup.tlsConfig, []string{targetAddr}, ss.w, path, errOut)
	if err != nil {
		return nil, err
	}
	defer hops.stop()
	base, err := url.Parse(clientURL)
	if err != nil {
		return nil, err
	}

	pattern := "the recorded pattern"
	if o.scenario != "" {
		pattern = "the " + o.scenario + " pattern"
	}
	fmt.Fprintf(errOut, "ssestress replay run: %d recorded streams ×%d with %s for %s against %s; monitor every %s; session file %s\n",
		len(rec.Streams), o.scale, pattern, dur.Format(p.Duration), redactURL(o.target), dur.Format(time.Duration(o.monitorInterval)), path)

	counters := &clients.Counters{}
	endings := replay.NewEndings(p, ss.w)
	baseOpts := clients.Options{
		Transport: setup.transport, Redact: setup.redact,
		UserAgent: "ssestress/" + version, Scenario: p.Scenario, Recorder: endings, Counters: counters, Budget: o.memory.buffers,
		Checkpoint: max(time.Duration(o.monitorInterval), time.Second),
	}
	live := newClientsLive("replay run", p.Scenario, counters, setup, hops.proxy, false, 0)
	live.observe(&baseOpts)
	if err := ss.serveLive(o.httpAddr, time.Duration(o.monitorInterval), live); err != nil {
		return nil, err
	}
	mon := &clients.Monitor{
		Interval: time.Duration(o.monitorInterval), Counters: counters,
		Out: errOut, Terminal: writerIsTerminal(errOut.w), Start: ss.startedAt(),
	}
	ss.monitor(mon)

	start := ss.startedAt()
	res := clients.Drive(ctx, clients.DriveConfig{
		Schedule: p.Schedule(), Duration: p.Duration, Start: start,
		NewStream: p.Streams(base, baseOpts, setup.header, fmt.Sprintf("%s@%d", filepath.Base(path), start.UnixNano())),
		OnError:   func(n int, err error) { fmt.Fprintf(errOut, "ssestress: connection %d: %v\n", n, err) },
	})
	ss.stopMonitor()
	setup.close()
	hops.stop()

	sum := clientSummary(p.Scenario, res.Elapsed, counters, mon, res.Interrupted)
	var cmp *session.ReplayEndings
	if p.Recorded() {
		r := endings.Result(o.recording, o.scale)
		cmp = &r
		ss.w.PutMeta(session.MetaReplay, r)
	}
	judgeErr := o.failOn.judge(ss.w, &sum) // into the summary, before it is written
	if err := ss.end(&sum); err != nil {
		return nil, err
	}
	if o.hop.explains() {
		ss.attribute(ctx, errOut)
	}
	ss.close()
	if judgeErr != nil {
		return nil, judgeErr
	}
	return &replayResult{runResult: runResult{sum: sum, maxLag: mon.MaxLag()}, endings: cmp}, nil
}

// replayResult is one replay run's outcome: run's, and the comparison of
// the recorded and replayed endings (nil under a scenario).
type replayResult struct {
	runResult
	endings *session.ReplayEndings
}

// printReplayEndings prints the recorded-against-replayed endings block.
func printReplayEndings(w io.Writer, e *session.ReplayEndings) error {
	if e == nil || len(e.Endings) == 0 {
		return nil
	}
	t := tablewriter.NewTable(w, tablewriter.WithHeaderAutoFormat(tw.Off))
	t.Header("ending", "recorded", "replayed", "age recorded p50/p95", "age replayed p50/p95", "age error p95", "ended otherwise")
	for _, k := range e.Endings {
		share := "-"
		if k.Expected > 0 {
			share = fmt.Sprintf("%d of %d (%.0f%%)", k.Replayed, k.Expected, 100*float64(k.Replayed)/float64(k.Expected))
		}
		t.Append(k.Kind, strconv.FormatInt(k.Recorded, 10), share, agePair(k.RecordedAge), agePair(k.ReplayedAge),
			ageOne(k.AgeError), otherEndings(k.Other))
	}
	return t.Render()
}

func agePair(d session.AgeDist) string {
	if d.N == 0 {
		return "-"
	}
	return d.P50.D().Round(time.Millisecond).String() + " / " + d.P95.D().Round(time.Millisecond).String()
}

func ageOne(d session.AgeDist) string {
	if d.N == 0 {
		return "-"
	}
	return d.P95.D().Round(100 * time.Microsecond).String()
}

func otherEndings(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	return clients.FormatErrors(m)
}

// redactHeader returns h with the values of credential headers replaced,
// for the stored config.
func redactHeader(h http.Header) http.Header {
	if len(h) == 0 {
		return nil
	}
	out := h.Clone()
	for name, values := range out {
		if sensitiveHeader(name) {
			for i := range values {
				values[i] = redactedValue
			}
		}
	}
	return out
}
