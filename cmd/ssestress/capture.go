package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ssestress/ssestress/capture"
	"github.com/ssestress/ssestress/internal/session"
)

const captureExamples = `  ssestress capture --iface lo --port 8080 --port 8090 --pcap trace.pcap --duration 10m
  ssestress capture --target 127.0.0.1:8090 --port 8090 --out capture.db
  ssestress capture analyze trace.pcap
  ssestress capture analyze trace.pcap --session run.db          (roles and client errors from the run)
  tcpdump -i any -w other.pcap 'tcp port 8090' && ssestress capture analyze other.pcap --port 8090`

const analyzeExamples = `  ssestress capture analyze trace.pcap
  ssestress capture analyze trace.pcap --port 8090 --json
  ssestress capture analyze trace.pcap --session run.db
  ssestress capture analyze trace.pcap --session run.db --store   (keep the resets in run.db for report)`

// portList is a repeatable --port flag that also takes "8080,8090".
type portList []int

func (p *portList) String() string {
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (p *portList) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("%q is not a TCP port (1-65535)", f)
		}
		*p = append(*p, n)
	}
	return nil
}

// captureOptions are the flags of ssestress capture.
type captureOptions struct {
	iface    string
	target   string
	ports    portList
	pcap     string
	duration time.Duration
	snaplen  int
	out      string // the session file (optional)
	json     bool
	args     []string
}

var captureCmd = &command{
	name:    "capture",
	summary: "capture packets and tell who sent each TCP reset, on which hop; analyze pcap files",
	synopsis: "capture [--iface IF | --target HOST:PORT] --port P [--port P] [--pcap FILE] [--duration D] [--out FILE]\n" +
		"capture analyze FILE [--session FILE] [--port P] [--store] [--json]",
	about:    "To read a pcap file (this tool's or tcpdump's): ssestress capture analyze FILE.",
	examples: captureExamples,
	args:     argSpec{none: "to read a file: ssestress capture analyze FILE"},
	setup: func(fs *flagSet) action {
		var o captureOptions
		fs.StringVar(&o.iface, "iface", "", "`INTERFACE` to capture on (default: the route to --target, lo for loopback)")
		fs.StringVar(&o.target, "target", "", "`HOST:PORT` or URL the traffic goes to, to pick the interface")
		fs.Var(&o.ports, "port", "TCP `PORT` of the topology (server, proxy); repeat or comma-separate; none: every TCP packet")
		fs.StringVar(&o.pcap, "pcap", "", "pcap `FILE` to write (default capture-<timestamp>.pcap; never overwritten)")
		fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
		fs.IntVar(&o.snaplen, "snaplen", capture.DefaultSnaplen, "bytes kept of each packet")
		fs.Var((*captureOut)(&o.out), "out", "also write flow summaries and attributed resets to this new session `FILE`")
		fs.deprecated("session", "out", "--out names the session file a command writes")
		fs.BoolVar(&o.json, "json", false, "print the result as one JSON object")
		fs.values(wordsOf(interfaceNames), "iface")
		fs.values(files(), "pcap", "out")
		return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
			o.args = fs.argv
			return o.run(ctx, stdout, stderr)
		}
	},
	subs: []*command{{
		name: "analyze", summary: "attribute the resets of a pcap or pcapng file, with a run's session file for roles",
		synopsis: "capture analyze FILE [--session FILE] [--port P] [--store] [--json]", examples: analyzeExamples,
		args: argSpec{name: "FILE", what: "pcap file", min: 1, max: 1, values: files()},
		setup: func(fs *flagSet) action {
			var o analyzeOptions
			fs.Var(&o.ports, "port", "server-side TCP `PORT` (orients flows whose handshake is missing); repeatable")
			fs.StringVar(&o.session, "session", "", "session `FILE` of the run: topology, client errors and proxy records")
			fs.BoolVar(&o.store, "store", false, "store the file's flows and the attributed resets into --session (for report)")
			fs.BoolVar(&o.json, "json", false, "print the result as one JSON object")
			fs.values(files(), "session")
			return func(ctx context.Context, files []string, stdout, stderr io.Writer) error {
				return o.run(ctx, files[0], stdout, stderr)
			}
		},
	}},
}

// captureOut is capture's --out, the session file. Until the flags were
// renamed capture's --out was the pcap file and --session the session
// file: a pcap name is refused, and so is a second value (--out and the
// old --session together), rather than written over.
type captureOut string

func (c *captureOut) String() string { return string(*c) }
func (c *captureOut) Set(v string) error {
	if ext := strings.ToLower(filepath.Ext(v)); ext == ".pcap" || ext == ".pcapng" {
		return errors.New("--out names the session file now; the pcap file is --pcap FILE")
	}
	if *c != "" {
		return fmt.Errorf("the session file is given twice (%s and %s; --session is now --out)", string(*c), v)
	}
	*c = captureOut(v)
	return nil
}

// run is ssestress capture: a stand-alone live capture that writes a pcap
// file (and, with --out, the flow summaries and the attributed resets into
// a new session file), then prints who sent each RST.
func (o *captureOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	if o.duration < 0 || o.snaplen < 64 {
		return usageErrorf("capture: --duration must not be negative and --snaplen at least 64")
	}
	if o.iface == "" && o.target == "" {
		o.target = "127.0.0.1"
	}

	if o.pcap == "" {
		o.pcap = freshName("capture", ".pcap", time.Now())
	}
	var (
		w   *session.Writer
		err error
	)
	info := session.RunInfo{Tool: "ssestress " + version, Command: "capture", Args: o.args, Target: o.target,
		PID: os.Getpid(), StartedAt: time.Now()}
	info.Host, _ = os.Hostname()
	if o.out != "" {
		if w, err = session.Create(o.out, session.Options{}); err != nil {
			return sessionExists(err, "--out")
		}
		w.PutMeta(session.MetaRun, info)
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	c, err := capture.Start(ctx, capture.Config{Iface: o.iface, Target: o.target, Ports: o.ports, Out: o.pcap,
		Snaplen: o.snaplen, Session: w})
	if err != nil {
		if w != nil {
			// Nothing was captured: the session file would hold only the
			// run's start.
			w.Close()
			os.Remove(o.out)
		}
		if errors.Is(err, capture.ErrNotPermitted) {
			return fmt.Errorf("capture: %w: run as root, or give the binary the capability (setcap cap_net_raw+ep ssestress)", err)
		}
		return err
	}
	what := "every TCP packet"
	if len(o.ports) > 0 {
		what = "TCP ports " + o.ports.String()
	}
	if !o.json {
		fmt.Fprintf(stdout, "capturing %s on %s into %s; Ctrl-C stops\n", what, c.Iface(), o.pcap)
	}
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-progress.C:
			p := c.Progress()
			fmt.Fprintf(stderr, "capture: %d packets (%.0f/s), %d dropped by the kernel, %d RSTs\n",
				p.Packets, p.PacketsPerSecond(), p.KernelDrops, p.Resets)
		}
	}
	st, stopErr := c.Stop()
	var res *capture.Result
	if w != nil {
		info.EndedAt = time.Now()
		w.PutMeta(session.MetaRun, info)
		if err := w.Close(); err != nil {
			return err
		}
		if res, err = capture.AttributeFile(context.WithoutCancel(ctx), o.out, capture.AnalyzeOptions{Ports: o.ports}); err != nil {
			return err
		}
	} else {
		ev := &capture.Evidence{Flows: c.ResetFlows(), Ports: o.ports}
		res = capture.Summarize(ev, capture.Attribute(ev))
		res.Flows = int(st.Flows)
	}
	if o.json {
		if err := json.NewEncoder(stdout).Encode(struct {
			Capture     capture.Stats   `json:"capture"`
			Pcap        string          `json:"pcap"`
			SessionFile string          `json:"session_file,omitempty"`
			Result      *capture.Result `json:"result"`
		}{st, o.pcap, o.out, res}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "captured %d packets in %s (%.0f packets/s) on %s; the kernel passed %d and dropped %d; %d flows, %d RSTs → %s\n",
			st.Packets, st.Stopped.Sub(st.Started).Round(time.Millisecond), st.PacketsPerSecond(), st.Iface,
			st.KernelPackets, st.KernelDrops, st.Flows, st.Resets, o.pcap)
		if err := printResets(stdout, res); err != nil {
			return err
		}
	}
	return stopErr
}

// analyzeOptions are the flags of ssestress capture analyze.
type analyzeOptions struct {
	ports   portList
	session string
	store   bool
	json    bool
}

// run is ssestress capture analyze FILE: the attribution of a pcap or
// pcapng file, from this tool or from tcpdump, optionally with the
// topology and client errors of a run's session file.
func (o *analyzeOptions) run(ctx context.Context, file string, stdout, stderr io.Writer) error {
	if o.store && o.session == "" {
		return usageErrorf("capture analyze: --store needs --session")
	}
	fr, err := capture.ReadFile(file, o.ports)
	if err != nil {
		if fr == nil {
			return err
		}
		fmt.Fprintf(stderr, "ssestress: %v (analyzing the packets before it)\n", err)
	}
	var res *capture.Result
	if o.session != "" {
		res, err = capture.AttributeFile(ctx, o.session, capture.AnalyzeOptions{Pcap: fr, Ports: o.ports, DryRun: !o.store})
		if err != nil {
			return err
		}
	} else {
		ev := &capture.Evidence{Flows: fr.Flows, Ports: o.ports}
		res = capture.Summarize(ev, capture.Attribute(ev))
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(struct {
			File   string              `json:"file"`
			Read   *capture.FileResult `json:"read"`
			Result *capture.Result     `json:"result"`
		}{file, fr, res})
	}
	fmt.Fprintf(stdout, "%s: %s, link type %s, %d TCP packets (%d other frames), %d flows, %d RSTs\n",
		file, fr.Format, linkName(fr.LinkType), fr.Packets, fr.Skipped, len(fr.Flows), fr.Resets)
	if fr.Truncated {
		fmt.Fprintln(stdout, "the file ends in the middle of a packet (a capture that was killed): the packets before it are analyzed")
	}
	if err := printResets(stdout, res); err != nil {
		return err
	}
	if o.store {
		fmt.Fprintf(stdout, "stored %d flows and %d resets in %s\n", len(fr.Flows), len(res.Resets), o.session)
	}
	return nil
}

func linkName(t int) string {
	names := map[int]string{0: "BSD loopback", 1: "Ethernet", 12: "raw IP", 14: "raw IP", 101: "raw IP",
		108: "OpenBSD loopback", 113: "Linux cooked", 228: "IPv4", 229: "IPv6", 276: "Linux cooked v2"}
	if n, ok := names[t]; ok {
		return fmt.Sprintf("%d (%s)", t, n)
	}
	return strconv.Itoa(t)
}

// printResets prints the attributed resets as a table, then the chains
// that explain client errors.
func printResets(w io.Writer, res *capture.Result) error {
	if len(res.Resets) == 0 {
		fmt.Fprintln(w, "no RST")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tHOP\tSENDER\tRECEIVER\tAGE s\tIDLE s\tWHAT\tCONFIDENCE\tCLIENT ERROR")
	for _, r := range res.Resets {
		hop := r.Link
		if r.Proxy != "" {
			hop = r.Proxy + "/" + r.Hop
		}
		sender := r.SenderRole + " " + r.SenderAddr
		if r.SenderRole == session.RoleProxy && r.SenderName != "" {
			sender = "proxy " + r.SenderName + " " + r.SenderAddr
		}
		what := r.Reason
		switch {
		case r.Forged:
			what = "forged"
		case r.Injected:
			what = "injected (" + r.FaultName + ")"
		}
		clientErr := "-"
		if r.Error != nil {
			clientErr = r.Error.ClientID + " " + r.Error.Class
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format("15:04:05.000000"), hop, sender,
			r.ReceiverRole, r.ReceiverAddr, capture.Seconds(r.Age.D()), capture.Seconds(r.Idle.D()), what, r.Confidence, clientErr)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var chains []session.Reset
	for _, r := range res.Resets {
		if r.Root && r.Error != nil {
			chains = append(chains, r)
		}
	}
	if len(chains) > 0 {
		fmt.Fprintf(w, "\n%d of %d client errors explained:\n", len(chains), res.Errors)
		for _, r := range chains {
			fmt.Fprintf(w, "  %s %s: %s\n", r.Error.ClientID, r.Error.Class, r.Chain)
		}
	}
	for _, r := range res.Resets {
		if r.Forged {
			fmt.Fprintf(w, "\nforged RST %s → %s: %s\n", r.SenderAddr, r.ReceiverAddr, strings.Join(r.Evidence, "; "))
		}
	}
	return nil
}
