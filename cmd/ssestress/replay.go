package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/metrics"
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
--token-* flags add or replace), each held as long as it was recorded. --scenario keeps that mix
of requests but opens and closes the connections as the scenario does (see ssestress run --help).
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
					return o.run(ctx, stdout)
				}
			}},
		{name: "run", summary: "re-drive the recorded clients against a target, at --scale, into a session file",
			synopsis: replayRunSynopsis, examples: replayRunExamples, args: argSpec{none: "the file goes after --recording"},
			setup: func(fs *flagSet) action {
				o := newReplayRunOptions(fs)
				return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
					o.args = fs.argv
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

func (o *replayServeOptions) run(ctx context.Context, stdout io.Writer) error {
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
	rec, err := recording.Load(o.recording)
	if err != nil {
		return err
	}
	srv, err := replay.Start(o.listen, rec, o.cfg)
	if err != nil {
		return badValue("replay serve: --listen "+o.listen, err)
	}
	fmt.Fprintf(stdout, "replaying %d recorded streams (%d frames) from %s on %s (speed %v%s)\n",
		len(rec.Streams), rec.Frames(), o.recording, srv.URL, o.cfg.Speed, serveModes(o.cfg))
	if o.httpAddr != "" {
		live, err := startLiveView(liveConfig{addr: o.httpAddr, collect: replayServeMetrics(srv.Server, time.Now())})
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

// replayServeMetrics returns the /metrics families of replay serve, read
// from the server's own counters.
func replayServeMetrics(srv *replay.Server, start time.Time) func() []metrics.Family {
	return func() []metrics.Family {
		st := srv.Stats()
		fams := []metrics.Family{
			{Name: "ssestress_info", Kind: metrics.Gauge, Help: "The command of this process (always 1).",
				Samples: []metrics.Sample{{Labels: metrics.L("command", "replay serve", "version", version), Value: 1}}},
			metrics.One("ssestress_uptime_seconds", "Seconds since the replay server started.", metrics.Gauge, time.Since(start).Seconds()),
			metrics.One("ssestress_replay_streams_served_total", "Requests answered with a recorded stream.", metrics.Counter, float64(st.Served)),
			metrics.One("ssestress_replay_streams_active", "Recorded streams being sent now.", metrics.Gauge, float64(st.Active)),
			metrics.One("ssestress_replay_frames_total", "Recorded frames (events, comments, retry) sent.", metrics.Counter, float64(st.Frames)),
		}
		return append(fams, metrics.ProcessFamilies(metrics.Self())...)
	}
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
	recording       string
	target          string
	scale           int
	scenario        string
	duration        dur.Duration
	monitorInterval dur.Duration
	out             string
	req             requestFlags
	setup           *requestSetup // headers (added to the recorded ones), TLS, transport
	hop             hopFlags      // --via-proxy, --fault, --capture
	httpAddr        string        // --http: live view address; empty: none
	repeat          int           // --repeat: runs of the series (0: one run)
	expect          string        // --expect: the error class a series counts
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
	fs.StringVar(&o.httpAddr, "http", "", "serve a live view on `ADDR` (loopback when no host is given): /metrics (Prometheus), /report")
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
	o.notes = append(o.notes, notes...)
	if o.httpAddr != "" {
		if _, err := liveListenAddr(o.httpAddr); err != nil {
			return usageErrorf("replay run: %v", err)
		}
	}
	rec, err := recording.Load(o.recording)
	if err != nil {
		return err
	}
	return o.execute(ctx, rec, stdout, stderr)
}

// replaySchedule is the connection pattern of a replay run: which
// connection opens or closes when. Connections are numbered; conn n uses
// spec(n).
type replaySchedule interface {
	Peek() (clients.Action, bool)
	Next() (clients.Action, bool)
}

// recordedSchedule opens each spec at its offset and closes it after its
// hold: the recorded pattern, scaled.
type recordedSchedule struct {
	actions []clients.Action
	i       int
}

func newRecordedSchedule(specs []replay.ConnSpec) *recordedSchedule {
	s := &recordedSchedule{}
	for n, c := range specs {
		s.actions = append(s.actions, clients.Action{At: c.Offset, Open: true, Conn: n})
		if c.Hold > 0 {
			s.actions = append(s.actions, clients.Action{At: c.Offset + c.Hold, Open: false, Conn: n})
		}
	}
	sort.SliceStable(s.actions, func(i, j int) bool { return s.actions[i].At < s.actions[j].At })
	return s
}

func (s *recordedSchedule) Peek() (clients.Action, bool) {
	if s.i >= len(s.actions) {
		return clients.Action{}, false
	}
	return s.actions[s.i], true
}

func (s *recordedSchedule) Next() (clients.Action, bool) {
	a, ok := s.Peek()
	if ok {
		s.i++
	}
	return a, ok
}

// recordingLength is how long the recorded population was active: from the
// first stream's start to the last moment any stream was known to be open.
func recordingLength(rec *recording.Recording) time.Duration {
	if len(rec.Streams) == 0 {
		return 0
	}
	origin := rec.Streams[0].Start
	var end time.Duration
	for _, s := range rec.Streams {
		end = max(end, s.Start.Sub(origin)+held(s))
	}
	return end
}

// replayPattern is the connection pattern of one replay run: a fresh
// schedule (schedules are consumed), the spec of each connection, and how
// long and how many at once.
type replayPattern struct {
	sched    replaySchedule
	spec     func(n int) replay.ConnSpec
	duration time.Duration
	scenario string
	concur   int
}

// pattern builds the run's connection pattern. Without --scenario it is
// the recorded one; with it, the scenario's over the recorded mix.
func (o *replayRunOptions) pattern(rec *recording.Recording) (*replayPattern, error) {
	p := &replayPattern{duration: time.Duration(o.duration), scenario: "replay"}
	if o.scenario == "" {
		specs := replay.Plan(rec, replay.PlanOptions{Scale: o.scale})
		p.sched = newRecordedSchedule(specs)
		p.spec = func(n int) replay.ConnSpec { return specs[n] }
		if p.duration == 0 {
			p.duration = max(recordingLength(rec)+100*time.Millisecond, time.Second)
		}
		p.concur = len(specs)
		return p, nil
	}
	// The scenario's pattern over the recorded mix: connection n asks
	// what the (n mod streams)-th recorded stream asked.
	p.scenario = o.scenario
	specs := replay.Plan(rec, replay.PlanOptions{Scale: 1})
	if len(specs) == 0 {
		return nil, fmt.Errorf("replay run: %s holds no recorded stream", o.recording)
	}
	def := clients.ScenarioDefaults[o.scenario]
	plan, err := clients.PlanFor(o.scenario, len(specs)*o.scale, def.Rate, def.ChurnRate,
		def.VariableMin*o.scale, def.VariableMax*o.scale, uint64(time.Now().UnixNano()))
	if err != nil {
		return nil, usageErrorf("replay run: %v", err)
	}
	p.sched = plan.Schedule()
	p.spec = func(n int) replay.ConnSpec { return specs[n%len(specs)] }
	if p.duration == 0 {
		p.duration = def.Duration
	}
	p.concur = plan.Concurrent()
	return p, nil
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
	first, err := o.pattern(rec)
	if err != nil {
		return err
	}
	if err := checkCapacity(first.concur, 1); err != nil {
		return err
	}
	if err := o.setup.probe(ctx, "target ", o.target); err != nil {
		return err
	}
	if o.repeat > 0 {
		return runSeries(ctx, seriesConfig{
			command: "replay run", args: redactArgs(o.args, o.setup.secrets), runs: o.repeat, expect: o.expect,
			out: o.out, name: "replay", json: o.json,
		}, func(ctx context.Context, path string) (session.Summary, error) {
			p, err := o.pattern(rec)
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
		return json.NewEncoder(stdout).Encode(res.sum)
	}
	if err := printRunSummary(stdout, res.sum, res.maxLag); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "session file: %s (ssestress inspect %s)\n", path, path)
	return nil
}

// runOnce replays the population once into the session file at path,
// through the proxy and capture of --via-proxy/--fault/--capture, with the
// live view of --http.
func (o *replayRunOptions) runOnce(ctx context.Context, rec *recording.Recording, p *replayPattern, path string, errOut *lockedWriter) (*runResult, error) {
	setup := o.setup
	cfgJSON, _ := json.Marshal(replayRunConfig{
		Recording: o.recording, Target: redactURL(o.target), Scale: o.scale, Scenario: o.scenario,
		Duration: dur.Duration(p.duration), MonitorInterval: o.monitorInterval, Header: redactHeader(setup.header),
	})
	targetURL, _ := url.Parse(strings.TrimSuffix(o.target, "/"))
	targetAddr := clients.HostPort(targetURL)
	ss, err := openSession(sessionSpec{
		command: "replay run", path: path, flagName: "--out", errOut: errOut,
		info: session.RunInfo{
			Args: redactArgs(o.args, setup.secrets), Scenario: p.scenario, Target: redactURL(o.target), Config: cfgJSON,
			TimeScale: o.hop.runTimeScale(), Keepalive: session.Seconds(clients.DefaultKeepalive),
		},
		endpoints: []session.Endpoint{{Role: session.RoleServer, Name: "target", Addr: targetAddr, URL: redactURL(o.target)}},
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
		len(rec.Streams), o.scale, pattern, dur.Format(p.duration), redactURL(o.target), dur.Format(time.Duration(o.monitorInterval)), path)

	counters := &clients.Counters{}
	baseOpts := clients.Options{
		Transport: setup.transport, Redact: setup.redact,
		UserAgent: "ssestress/" + version, Scenario: p.scenario, Recorder: ss.w, Counters: counters,
		Checkpoint: max(time.Duration(o.monitorInterval), time.Second),
	}
	optsFor := optionsByHeader(&baseOpts, setup.header)
	if err := ss.serveLive(o.httpAddr, runMetrics("replay run", p.scenario, ss.startedAt(), counters, ss.w, setup, 0)); err != nil {
		return nil, err
	}
	mon := &clients.Monitor{
		Interval: time.Duration(o.monitorInterval), Counters: counters,
		Out: errOut, Terminal: writerIsTerminal(errOut.w), Start: ss.startedAt(),
	}
	ss.monitor(mon)

	start := ss.startedAt()
	interrupted := driveReplay(ctx, start, p.duration, p.sched, func(n int) (*clients.Stream, error) {
		c := p.spec(n)
		u, err := base.Parse(base.Path + c.RequestURI)
		if err != nil {
			return nil, err
		}
		s := clients.NewStream(clients.ClientID(n), c.Group, u, optsFor(c.Header))
		if c.LastEventID != "" {
			s.SetLastEventID(c.LastEventID)
		}
		return s, nil
	}, errOut)
	elapsed := time.Since(start)
	ss.stopMonitor()
	setup.close()
	hops.stop()

	sum := clientSummary(p.scenario, elapsed, counters, mon, interrupted)
	if err := ss.end(&sum); err != nil {
		return nil, err
	}
	if o.hop.viaProxy || o.hop.capture {
		ss.attribute(ctx, errOut)
	}
	ss.close()
	return &runResult{sum: sum, maxLag: mon.MaxLag()}, nil
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

// optionsByHeader returns, for a recorded header set, client Options that
// send it (with the --header values added or replacing). Options are shared
// by every stream with the same headers.
func optionsByHeader(base *clients.Options, extra http.Header) func(http.Header) *clients.Options {
	cache := map[string]*clients.Options{}
	return func(h http.Header) *clients.Options {
		merged := h.Clone()
		if merged == nil {
			merged = http.Header{}
		}
		for k, vs := range extra {
			merged[k] = vs
		}
		var key strings.Builder
		names := make([]string, 0, len(merged))
		for k := range merged {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(&key, "%s:%q\n", k, merged[k])
		}
		if o := cache[key.String()]; o != nil {
			return o
		}
		o := *base
		o.Header = merged
		cache[key.String()] = &o
		return &o
	}
}

// driveReplay runs sched until duration (measured from start, so delays do
// not accumulate) or ctx ends, opening streams made by newStream and
// closing them as told. At the end every stream is closed by the client and
// waited for. It reports whether ctx ended first.
func driveReplay(ctx context.Context, start time.Time, duration time.Duration, sched replaySchedule,
	newStream func(n int) (*clients.Stream, error), errOut io.Writer) (interrupted bool) {
	streamsCtx, closeAll := context.WithCancel(context.Background())
	defer closeAll()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		cancels = map[int]context.CancelFunc{}
	)
	open := func(n int) {
		s, err := newStream(n)
		if err != nil {
			fmt.Fprintf(errOut, "ssestress: connection %d: %v\n", n, err)
			return
		}
		sctx, cancel := context.WithCancel(streamsCtx)
		mu.Lock()
		cancels[n] = cancel
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			s.Run(sctx)
		}()
	}
	shut := func(n int) {
		mu.Lock()
		cancel := cancels[n]
		delete(cancels, n)
		mu.Unlock()
		if cancel != nil {
			cancel()
		}
	}
	end := time.NewTimer(time.Until(start.Add(duration)))
	defer end.Stop()
	next := time.NewTimer(time.Hour)
	defer next.Stop()
loop:
	for {
		var due <-chan time.Time
		if a, ok := sched.Peek(); ok && a.At < duration {
			next.Reset(time.Until(start.Add(a.At)))
			due = next.C
		}
		select {
		case <-ctx.Done():
			interrupted = true
			break loop
		case <-end.C:
			break loop
		case <-due:
			elapsed := time.Since(start)
			for {
				a, ok := sched.Peek()
				if !ok || a.At > elapsed || a.At >= duration {
					break
				}
				sched.Next()
				if a.Open {
					open(a.Conn)
				} else {
					shut(a.Conn)
				}
			}
		}
	}
	closeAll()
	wg.Wait()
	return interrupted
}
