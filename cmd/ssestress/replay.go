package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/replay"
)

const replaySynopsis = "replay serve|run --recording FILE [flags]"

const replayServeSynopsis = "replay serve --recording FILE [--listen ADDR] [--speed F] [--loop] [--no-endings]"

const replayServeExamples = `  ssestress replay serve --recording session.db --listen 127.0.0.1:8091
  ssestress replay serve --recording session.db --speed 10 --loop
  ssestress tail 'http://127.0.0.1:8091/stream?symbols=AAPL,MSFT'`

const replayRunSynopsis = "replay run --recording FILE --target URL [--scale N] [--scenario S] [--duration D] [--out FILE] [flags]"

const replayRunExamples = `  ssestress replay run --recording session.db --target http://127.0.0.1:8090 --scale 20
  ssestress replay run --recording session.db --target http://staging:8080 --scenario churn --duration 10m
  ssestress replay run --recording session.db --target http://127.0.0.1:8091 --scale 10 --out replay.db --json

Without --scenario the recorded client population is replayed: each recorded stream becomes
--scale connections opened at the recorded offsets (spread until the next recorded start) with
the recorded path, query and headers (redacted ones left out; --header adds or replaces), each
held as long as it was recorded. --scenario keeps that mix of requests but opens and closes the
connections as the scenario does (see ssestress run --help).`

// runReplay is ssestress replay: serve a recording as a server, or re-drive
// its clients against a target.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stdout, "Usage: ssestress %s\n\n", replaySynopsis)
		fmt.Fprintln(stdout, "  serve   stand in for the recorded server: recorded headers, events, gaps and endings")
		fmt.Fprintln(stdout, "  run     re-drive the recorded clients against a target, at --scale, into a session file")
		fmt.Fprintf(stdout, "\nExamples:\n%s\n%s\n", replayServeExamples, strings.SplitN(replayRunExamples, "\n\n", 2)[0])
		if len(args) == 0 {
			return usageErrorf("replay: give serve or run")
		}
		return errHelp
	}
	switch args[0] {
	case "serve":
		return replayServe(ctx, args[1:], stdout, stderr)
	case "run":
		return replayRun(ctx, args[1:], stdout, stderr)
	}
	return usageErrorf("replay: unknown subcommand %q (use serve or run)", args[0])
}

// replayServeOptions are the flags of ssestress replay serve.
type replayServeOptions struct {
	recording string
	listen    string
	cfg       replay.Config
}

func replayServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o replayServeOptions
	fs := newFlags("replay serve")
	fs.StringVar(&o.recording, "recording", "", "session file holding the recording (required)")
	fs.StringVar(&o.listen, "listen", replay.DefaultListen, "address to listen on (loopback by default)")
	fs.Float64Var(&o.cfg.Speed, "speed", 1, "replay speed: 2 halves every recorded gap")
	fs.BoolVar(&o.cfg.Loop, "loop", false, "start each stream over after its last frame, ids kept increasing")
	fs.BoolVar(&o.cfg.NoEndings, "no-endings", false, "hold every stream open after its last frame instead of reproducing its recorded end (reset, cut, clean end)")
	if err := parseFlags(fs, args, stdout, replayServeSynopsis, replayServeExamples); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("replay serve: unexpected argument %q (the file goes after --recording)", fs.Arg(0))
	}
	if o.recording == "" {
		return usageErrorf("replay serve: --recording FILE is required")
	}
	if !(o.cfg.Speed > 0) || o.cfg.Speed > 1e6 {
		return usageErrorf("replay serve: --speed must be a positive number (got %v)", o.cfg.Speed)
	}
	rec, err := recording.Load(o.recording)
	if err != nil {
		return err
	}
	srv, err := replay.Start(o.listen, rec, o.cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", o.recording, err)
	}
	fmt.Fprintf(stdout, "replaying %d recorded streams (%d frames) from %s on %s (speed %v%s)\n",
		len(rec.Streams), rec.Frames(), o.recording, srv.URL, o.cfg.Speed, serveModes(o.cfg))
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
	recording       string
	target          string
	scale           int
	scenario        string
	duration        dur.Duration
	monitorInterval dur.Duration
	out             string
	header          http.Header
	json            bool
	args            []string
}

// replayRunConfig is stored as the run's config in the session file.
type replayRunConfig struct {
	Recording       string       `json:"recording"`
	Target          string       `json:"target"`
	Scale           int          `json:"scale"`
	Scenario        string       `json:"scenario,omitempty"`
	Duration        dur.Duration `json:"duration"`
	MonitorInterval dur.Duration `json:"monitorInterval"`
	Header          http.Header  `json:"header,omitempty"`
}

func replayRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := replayRunOptions{args: args}
	fs := newFlags("replay run")
	fs.StringVar(&o.recording, "recording", "", "session file holding the recording (required)")
	fs.StringVar(&o.target, "target", "", "base URL of the service to drive, e.g. http://127.0.0.1:8090 (required)")
	fs.IntVar(&o.scale, "scale", 1, "connections per recorded one")
	fs.StringVar(&o.scenario, "scenario", "", "apply this scenario's connection pattern ("+strings.Join(clients.Scenarios, ", ")+") to the recorded mix of requests")
	fs.Var(&o.duration, "duration", "run length (default: the recording's length; with --scenario, the scenario's)")
	o.monitorInterval = dur.Duration(time.Second)
	fs.Var(&o.monitorInterval, "monitor-interval", "interval of the stored metric samples")
	fs.StringVar(&o.out, "out", "", "session file to write (default ssestress-replay-<timestamp>.db; never overwritten)")
	var headers stringList
	fs.Var(&headers, "header", "request header 'Name: value' added to (or replacing) the recorded ones (repeatable)")
	fs.BoolVar(&o.json, "json", false, "print the summary as one JSON object")
	if err := parseFlags(fs, args, stdout, replayRunSynopsis, replayRunExamples); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("replay run: unexpected argument %q (the file goes after --recording)", fs.Arg(0))
	}
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
	h, err := parseHeaderFlags(headers)
	if err != nil {
		return usageErrorf("replay run: %v", err)
	}
	o.header = h
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

func (o *replayRunOptions) execute(ctx context.Context, rec *recording.Recording, stdout, stderr io.Writer) error {
	errOut := &lockedWriter{w: stderr}
	var (
		specs    []replay.ConnSpec
		sched    replaySchedule
		spec     func(n int) replay.ConnSpec
		duration = time.Duration(o.duration)
		scenario = "replay"
		concur   int
	)
	if o.scenario == "" {
		specs = replay.Plan(rec, replay.PlanOptions{Scale: o.scale})
		sched = newRecordedSchedule(specs)
		spec = func(n int) replay.ConnSpec { return specs[n] }
		if duration == 0 {
			duration = max(recordingLength(rec)+100*time.Millisecond, time.Second)
		}
		concur = len(specs)
	} else {
		// The scenario's pattern over the recorded mix: connection n asks
		// what the (n mod streams)-th recorded stream asked.
		scenario = o.scenario
		specs = replay.Plan(rec, replay.PlanOptions{Scale: 1})
		def := clients.ScenarioDefaults[o.scenario]
		plan, err := clients.PlanFor(o.scenario, len(specs)*o.scale, def.Rate, def.ChurnRate,
			def.VariableMin*o.scale, def.VariableMax*o.scale, uint64(time.Now().UnixNano()))
		if err != nil {
			return usageErrorf("replay run: %v", err)
		}
		sched = plan.Schedule()
		spec = func(n int) replay.ConnSpec { return specs[n%len(specs)] }
		if duration == 0 {
			duration = def.Duration
		}
		concur = plan.Connections + plan.VariableMax
	}
	if err := checkRunFDLimit(runConfig{Target: o.target}, clients.Plan{Connections: concur}); err != nil {
		return err
	}
	if err := clients.Probe(ctx, o.target, probeTimeout); err != nil {
		return fmt.Errorf("cannot reach target %s: %v (%s)", o.target, err, errclass.Classify(err))
	}
	base, _ := url.Parse(strings.TrimSuffix(o.target, "/"))

	start := time.Now()
	path := o.out
	if path == "" {
		path = defaultSessionPath("replay", start)
	}
	w, err := session.Create(path, session.Options{OnError: func(err error) { fmt.Fprintln(errOut, "ssestress:", err) }})
	if err != nil {
		return err
	}
	defer w.Close()
	cfgJSON, _ := json.Marshal(replayRunConfig{
		Recording: o.recording, Target: o.target, Scale: o.scale, Scenario: o.scenario,
		Duration: dur.Duration(duration), MonitorInterval: o.monitorInterval, Header: o.header,
	})
	host, _ := os.Hostname()
	info := session.RunInfo{
		Tool: "ssestress " + version, Command: "replay run", Args: o.args, Scenario: scenario,
		Target: o.target, Config: cfgJSON, Host: host, PID: os.Getpid(), StartedAt: start,
	}
	w.PutMeta(session.MetaRun, info)
	w.Put(session.Endpoint{Role: session.RoleServer, Name: "target", Addr: clients.HostPort(base), URL: o.target})
	w.Flush()

	pattern := "the recorded pattern"
	if o.scenario != "" {
		pattern = "the " + o.scenario + " pattern"
	}
	fmt.Fprintf(errOut, "ssestress replay run: %d recorded streams ×%d with %s for %v against %s; session file %s\n",
		len(rec.Streams), o.scale, pattern, duration, o.target, path)

	counters := &clients.Counters{}
	baseOpts := clients.Options{
		UserAgent: "ssestress/" + version, Scenario: scenario, Recorder: w, Counters: counters,
		Checkpoint: max(time.Duration(o.monitorInterval), time.Second),
	}
	optsFor := optionsByHeader(&baseOpts, o.header)
	mon := &clients.Monitor{
		Interval: time.Duration(o.monitorInterval), Counters: counters, Recorder: w,
		Out: errOut, Terminal: writerIsTerminal(stderr), Start: start,
	}
	monCtx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.Run(monCtx) }()

	interrupted := driveReplay(ctx, start, duration, sched, func(n int) (*clients.Stream, error) {
		c := spec(n)
		u, err := base.Parse(base.Path + c.RequestURI)
		if err != nil {
			return nil, err
		}
		s := clients.NewStream(clients.ConnID(n), c.Group, u, optsFor(c.Header))
		if c.LastEventID != "" {
			s.SetLastEventID(c.LastEventID)
		}
		return s, nil
	}, errOut)
	elapsed := time.Since(start)
	stopMon()
	<-monDone

	sum := session.Summary{
		Scenario:          scenario,
		DurationS:         elapsed.Seconds(),
		ConnectionsOpened: counters.Streams.Load(),
		ActiveMax:         counters.ActiveMax.Load(),
		Messages:          counters.Messages.Load(),
		Reconnects:        counters.Reconnects.Load(),
		Errors:            counters.Errors(),
		MemoryPeakBytes:   mon.PeakMemory(),
		SessionFile:       path,
		Interrupted:       interrupted,
		RecordsDropped:    w.Dropped(),
	}
	if s := elapsed.Seconds(); s > 0 {
		sum.MessagesPerS = float64(sum.Messages) / s
	}
	info.EndedAt = time.Now()
	w.PutMeta(session.MetaRun, info)
	w.PutMeta(session.MetaSummary, sum)
	if err := w.Close(); err != nil {
		return fmt.Errorf("session file %s: %w", path, err)
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(sum)
	}
	if err := printRunSummary(stdout, sum, mon.MaxLag()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "session file: %s (ssestress inspect %s)\n", path, path)
	return nil
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
