package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/redact"
	"github.com/ssestress/ssestress/internal/session"
)

const inspectExamples = `  ssestress inspect ssestress-flood-20250102-150405.db
  ssestress inspect --json run.db`

// inspectReport is what inspect prints (and, with --json, its JSON form).
type inspectReport struct {
	File    string           `json:"file"`
	Run     *session.RunInfo `json:"run,omitempty"`
	Counts  map[string]int   `json:"counts"` // bucket → records
	Conns   connTotals       `json:"conns"`
	Errors  map[string]int64 `json:"errors"` // class → count, from the errors bucket
	Summary *session.Summary `json:"summary,omitempty"`
	// Proxies are the ssestress proxies whose records the file holds.
	Proxies []session.ProxyInfo `json:"proxies,omitempty"`
	// MaxTimerLag is the largest monitor timer lag among the samples.
	MaxTimerLag session.Seconds `json:"max_timer_lag_s"`
	// Complete: the run recorded its end (a file left by kill -9 is not).
	Complete bool `json:"complete"`
	// Unreadable counts, per bucket, the records that could not be
	// decoded and were skipped (meta counts a run info or summary).
	Unreadable map[string]session.Unreadable `json:"unreadable,omitempty"`
	// SummaryUnreadable: the file holds a summary that did not decode.
	SummaryUnreadable bool `json:"summary_unreadable,omitempty"`
}

// connTotals adds up the conns bucket.
type connTotals struct {
	Clients  int   `json:"clients"` // distinct client ids
	Attempts int   `json:"attempts"`
	Open     int   `json:"open"` // attempts without an end: still open when the file was last written
	Events   int64 `json:"events"`
}

var inspectCmd = &command{
	name:     "inspect",
	summary:  "print what a session file holds: run info, record counts, summary",
	synopsis: "inspect FILE [--json]",
	examples: inspectExamples,
	args:     argSpec{name: "FILE", what: "session file", min: 1, max: 1, values: files()},
	setup: func(fs *flagSet) action {
		asJSON := fs.Bool("json", false, "print one JSON object")
		return func(ctx context.Context, files []string, stdout, stderr io.Writer) error {
			return runInspect(files[0], *asJSON, stdout)
		}
	},
}

// runInspect is ssestress inspect FILE: run info, record counts by bucket
// and the summary. It reads the file read-only, so it works on a file left
// by a killed run and never changes one.
func runInspect(file string, asJSON bool, stdout io.Writer) error {
	rep, err := inspectFile(file)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	return printInspect(stdout, rep)
}

// inspectFile reads everything inspect shows.
func inspectFile(path string) (*inspectReport, error) {
	r, err := session.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rep := &inspectReport{File: path, Counts: map[string]int{}, Errors: map[string]int64{}, Unreadable: map[string]session.Unreadable{}}
	// One bad record costs that record: it is counted under its bucket and
	// the rest is read.
	skip := func(bucket string, u session.Unreadable) {
		if u.Records > 0 {
			t := rep.Unreadable[bucket]
			if t.Records == 0 {
				t.First = u.First
			}
			t.Records += u.Records
			rep.Unreadable[bucket] = t
		}
	}
	meta := func(key string, v any) (bool, error) {
		ok, err := r.Meta(key, v)
		if err != nil && !errors.Is(err, session.ErrDamaged) {
			// Not the file: the value did not decode.
			var u session.Unreadable
			u.Add([]byte(key), err)
			skip(session.BucketMeta, u)
			return false, nil
		}
		return ok, err
	}
	var info session.RunInfo
	if ok, err := meta(session.MetaRun, &info); err != nil {
		return nil, fmt.Errorf("%s: run info: %w", path, err)
	} else if ok {
		redactRunInfo(&info) // a file written before secrets were redacted at the source
		rep.Run = &info
		rep.Complete = !info.EndedAt.IsZero()
	}
	var sum session.Summary
	before := rep.Unreadable[session.BucketMeta].Records
	if ok, err := meta(session.MetaSummary, &sum); err != nil {
		return nil, fmt.Errorf("%s: summary: %w", path, err)
	} else if ok {
		rep.Summary = &sum
	}
	rep.SummaryUnreadable = rep.Unreadable[session.BucketMeta].Records > before
	for _, b := range session.Buckets {
		if b != session.BucketMeta {
			rep.Counts[b] = r.Count(b)
		}
	}
	ids := map[string]bool{}
	u, err := session.DecodeEach(r, session.BucketConns, func(c *session.ConnRecord) error {
		ids[c.ClientID] = true
		rep.Conns.Attempts++
		rep.Conns.Events += c.Events
		if c.End.IsZero() {
			rep.Conns.Open++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	skip(session.BucketConns, u)
	rep.Conns.Clients = len(ids)
	u, err = session.DecodeEach(r, session.BucketProxies, func(p *session.ProxyInfo) error {
		rep.Proxies = append(rep.Proxies, *p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	skip(session.BucketProxies, u)
	u, err = session.DecodeEach(r, session.BucketSamples, func(s *session.Sample) error {
		rep.MaxTimerLag = max(rep.MaxTimerLag, s.TimerLag)
		return nil
	})
	if err != nil {
		return nil, err
	}
	skip(session.BucketSamples, u)
	u, err = session.DecodeEach(r, session.BucketErrors, func(e *session.ErrorRecord) error {
		rep.Errors[e.Class]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	skip(session.BucketErrors, u)
	return rep, nil
}

func printInspect(w io.Writer, rep *inspectReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "session file  %s\n", rep.File)
	if run := rep.Run; run != nil {
		fmt.Fprintf(&b, "written by    %s %s (pid %d on %s)\n", run.Tool, run.Command, run.PID, run.Host)
		if len(run.Args) > 0 {
			fmt.Fprintf(&b, "arguments     %s\n", strings.Join(run.Args, " "))
		}
		if run.Scenario != "" {
			fmt.Fprintf(&b, "scenario      %s\n", run.Scenario)
		}
		if run.Target != "" {
			fmt.Fprintf(&b, "target        %s\n", run.Target)
		}
		fmt.Fprintf(&b, "started       %s\n", run.StartedAt.Format(time.RFC3339))
		if rep.Complete {
			fmt.Fprintf(&b, "ended         %s (after %v)\n", run.EndedAt.Format(time.RFC3339), run.EndedAt.Sub(run.StartedAt).Round(time.Second))
		} else {
			fmt.Fprintf(&b, "ended         not recorded: the run was killed or is still running\n")
		}
	} else {
		fmt.Fprintf(&b, "run info      none\n")
	}
	buckets := make([]string, 0, len(rep.Counts))
	for k := range rep.Counts {
		buckets = append(buckets, k)
	}
	sort.Slice(buckets, func(i, j int) bool { return inspectBucketOrder(buckets[i]) < inspectBucketOrder(buckets[j]) })
	fmt.Fprintf(&b, "records\n")
	for _, k := range buckets {
		if n := rep.Counts[k]; n > 0 {
			fmt.Fprintf(&b, "  %-13s %d\n", k, n)
		}
	}
	if rep.Conns.Attempts > 0 {
		fmt.Fprintf(&b, "clients       %d (%d connection attempts, %d open when last written), %d events\n",
			rep.Conns.Clients, rep.Conns.Attempts, rep.Conns.Open, rep.Conns.Events)
	}
	for _, p := range rep.Proxies {
		fmt.Fprintf(&b, "proxy         %s: %s listener %s", p.Name, p.Mode, p.Listen)
		if p.Upstream != "" {
			fmt.Fprintf(&b, " → %s", p.Upstream)
		}
		keepalive := "off"
		if p.Keepalive > 0 {
			keepalive = p.Keepalive.String()
		}
		fmt.Fprintf(&b, ", keepalive %s, on upstream error %s\n", keepalive, p.OnUpstreamError)
		state := "still running or killed"
		if !p.Stopped.IsZero() {
			state = "at stop"
		}
		fmt.Fprintf(&b, "              %d client connections, %d requests, %d events forwarded, %d fault firings (%s)\n",
			p.Connections, p.Requests, p.Events, p.FaultsFired, state)
	}
	if len(rep.Errors) > 0 {
		fmt.Fprintf(&b, "errors        %s\n", clients.FormatErrors(rep.Errors))
	}
	if s := session.UnreadableSummary(rep.Unreadable); s != "" {
		fmt.Fprintf(&b, "unreadable    %s records skipped (first: %s)\n", s, firstUnreadable(rep.Unreadable))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if rep.SummaryUnreadable {
		_, err := fmt.Fprintln(w, "summary       unreadable (see above)")
		return err
	}
	if rep.Summary == nil {
		_, err := fmt.Fprintln(w, "summary       none (the run did not finish)")
		return err
	}
	fmt.Fprintln(w, "summary")
	if rep.Run != nil && rep.Run.Command == "proxy" && len(rep.Proxies) == 1 {
		return printProxySummary(w, *rep.Summary, rep.Proxies[0])
	}
	return printRunSummary(w, *rep.Summary, rep.MaxTimerLag.D())
}

// inspectBucketOrder sorts buckets as the schema lists them.
func inspectBucketOrder(name string) int {
	for i, b := range session.Buckets {
		if b == name {
			return i
		}
	}
	return len(session.Buckets)
}

// firstUnreadable is the first skipped record's problem, in bucket order.
func firstUnreadable(byBucket map[string]session.Unreadable) string {
	for _, b := range session.Buckets {
		if u := byBucket[b]; u.Records > 0 {
			return "bucket " + b + " " + u.First
		}
	}
	return ""
}

// redactRunInfo replaces the credentials a run's arguments, target and
// config may hold (older ssestress versions stored some): what inspect
// shows never holds a secret, whoever wrote the file.
func redactRunInfo(info *session.RunInfo) {
	info.Args = redactArgs(info.Args, nil)
	info.Target = redactURL(info.Target)
	if len(info.Config) == 0 {
		return
	}
	var cfg map[string]any
	if json.Unmarshal(info.Config, &cfg) != nil {
		info.Config = nil // not an object: not shown
		return
	}
	for k, v := range cfg {
		str, ok := v.(string)
		switch {
		case !ok:
		case secretFlagNames[k] && str != "":
			cfg[k] = redactedValue
		case strings.Contains(str, "://"):
			cfg[k] = redactURL(str)
		default:
			cfg[k] = redact.Text(str)
		}
	}
	if b, err := json.Marshal(cfg); err == nil {
		info.Config = b
	}
}
