package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ssestress/ssestress/capture"
	"github.com/ssestress/ssestress/internal/session"
)

const captureExamples = `  ssestress capture --iface lo --port 8080 --port 8090 --out trace.pcap --duration 10m
  ssestress capture --target 127.0.0.1:8090 --port 8090 --session capture.db
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
	out      string
	duration time.Duration
	snaplen  int
	session  string
	json     bool
}

// runCapture is ssestress capture: a stand-alone live capture that writes a
// pcap file (and, with --session, the flow summaries and the attributed
// resets into a new session file), then prints who sent each RST.
// "capture analyze FILE" reads a pcap file instead.
func runCapture(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "analyze" {
		return runCaptureAnalyze(ctx, args[1:], stdout, stderr)
	}
	var o captureOptions
	fs := newFlags("capture")
	fs.StringVar(&o.iface, "iface", "", "interface to capture on (default: the route to --target, lo for loopback)")
	fs.StringVar(&o.target, "target", "", "host:port or URL the traffic goes to, to pick the interface")
	fs.Var(&o.ports, "port", "TCP port of the topology (server, proxy); repeat or comma-separate; none: every TCP packet")
	fs.StringVar(&o.out, "out", "trace.pcap", "pcap file to write (never overwritten)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	fs.IntVar(&o.snaplen, "snaplen", capture.DefaultSnaplen, "bytes kept of each packet")
	fs.StringVar(&o.session, "session", "", "also write flow summaries and attributed resets to this new session file")
	fs.BoolVar(&o.json, "json", false, "print the result as one JSON object")
	err := parseFlags(fs, args, stdout,
		"capture [--iface IF | --target HOST:PORT] --port P [--port P] [--out FILE] [--duration D] [--session FILE]\n"+
			"       ssestress capture analyze FILE [--session FILE] [--port P] [--store] [--json]", captureExamples)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("capture: unexpected argument %q (to read a file: ssestress capture analyze FILE)", fs.Arg(0))
	}
	if o.duration < 0 || o.snaplen < 64 {
		return usageErrorf("capture: --duration must not be negative and --snaplen at least 64")
	}
	if o.iface == "" && o.target == "" {
		o.target = "127.0.0.1"
	}

	var w *session.Writer
	info := session.RunInfo{Tool: "ssestress " + version, Command: "capture", Args: args, Target: o.target,
		PID: os.Getpid(), StartedAt: time.Now()}
	info.Host, _ = os.Hostname()
	if o.session != "" {
		if w, err = session.Create(o.session, session.Options{}); err != nil {
			return sessionExists(err, "--session")
		}
		w.PutMeta(session.MetaRun, info)
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	c, err := capture.Start(ctx, capture.Config{Iface: o.iface, Target: o.target, Ports: o.ports, Out: o.out,
		Snaplen: o.snaplen, Session: w})
	if err != nil {
		if w != nil {
			w.Close()
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
		fmt.Fprintf(stdout, "capturing %s on %s into %s; Ctrl-C stops\n", what, c.Iface(), o.out)
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
		if res, err = capture.AttributeFile(context.WithoutCancel(ctx), o.session, capture.AnalyzeOptions{Ports: o.ports}); err != nil {
			return err
		}
	} else {
		ev := &capture.Evidence{Flows: c.ResetFlows(), Ports: o.ports}
		res = capture.Summarize(ev, capture.Attribute(ev))
		res.Flows = int(st.Flows)
	}
	if o.json {
		if err := json.NewEncoder(stdout).Encode(struct {
			Capture capture.Stats   `json:"capture"`
			Out     string          `json:"out"`
			Result  *capture.Result `json:"result"`
		}{st, o.out, res}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "captured %d packets in %s (%.0f packets/s) on %s; the kernel passed %d and dropped %d; %d flows, %d RSTs → %s\n",
			st.Packets, st.Stopped.Sub(st.Started).Round(time.Millisecond), st.PacketsPerSecond(), st.Iface,
			st.KernelPackets, st.KernelDrops, st.Flows, st.Resets, o.out)
		if err := printResets(stdout, res); err != nil {
			return err
		}
	}
	return stopErr
}

// runCaptureAnalyze is ssestress capture analyze FILE: the attribution of a
// pcap or pcapng file, from this tool or from tcpdump, optionally with the
// topology and client errors of a run's session file.
func runCaptureAnalyze(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("capture analyze")
	var ports portList
	fs.Var(&ports, "port", "server-side TCP port (orients flows whose handshake is missing); repeatable")
	sessionPath := fs.String("session", "", "session file of the run: topology, client errors and proxy records")
	store := fs.Bool("store", false, "store the file's flows and the attributed resets into --session (for report)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	var files []string
	for rest := args; ; {
		if err := parseFlags(fs, rest, stdout, "capture analyze FILE [--session FILE] [--port P] [--store] [--json]", analyzeExamples); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 1 {
		return usageErrorf("capture analyze: give one pcap file (usage: ssestress capture analyze FILE [--session FILE])")
	}
	if *store && *sessionPath == "" {
		return usageErrorf("capture analyze: --store needs --session")
	}
	fr, err := capture.ReadFile(files[0], ports)
	if err != nil {
		if fr == nil {
			return err
		}
		fmt.Fprintf(stderr, "ssestress: %v (analyzing the packets before it)\n", err)
	}
	var res *capture.Result
	if *sessionPath != "" {
		res, err = capture.AttributeFile(ctx, *sessionPath, capture.AnalyzeOptions{Pcap: fr, Ports: ports, DryRun: !*store})
		if err != nil {
			return err
		}
	} else {
		ev := &capture.Evidence{Flows: fr.Flows, Ports: ports}
		res = capture.Summarize(ev, capture.Attribute(ev))
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			File   string              `json:"file"`
			Read   *capture.FileResult `json:"read"`
			Result *capture.Result     `json:"result"`
		}{files[0], fr, res})
	}
	fmt.Fprintf(stdout, "%s: %s, link type %s, %d TCP packets (%d other frames), %d flows, %d RSTs\n",
		files[0], fr.Format, linkName(fr.LinkType), fr.Packets, fr.Skipped, len(fr.Flows), fr.Resets)
	if fr.Truncated {
		fmt.Fprintln(stdout, "the file ends in the middle of a packet (a capture that was killed): the packets before it are analyzed")
	}
	if err := printResets(stdout, res); err != nil {
		return err
	}
	if *store {
		fmt.Fprintf(stdout, "stored %d flows and %d resets in %s\n", len(fr.Flows), len(res.Resets), *sessionPath)
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
