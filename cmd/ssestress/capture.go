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

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/capture"
	"github.com/ssestress/ssestress/internal/session"
)

const captureExamples = `  ssestress capture --iface lo --port 8080 --port 8090 --pcap trace.pcap --duration 10m
  ssestress capture --iface lo --iface eth0 --port 8080 --port 8090 --out capture.db   (one capture per interface)
  ssestress capture --target 127.0.0.1:8090 --port 8090 --out capture.db
  ssestress capture analyze trace.pcap
  ssestress capture analyze trace.pcap --session run.db          (roles and client errors from the run)
  ssestress capture analyze client-side.pcap server-side.pcap --session run.db --session proxy.db
  tcpdump -i any -w other.pcap 'tcp port 8090' && ssestress capture analyze other.pcap --port 8090`

const analyzeExamples = `  ssestress capture analyze trace.pcap
  ssestress capture analyze trace.pcap --port 8090 --json
  ssestress capture analyze trace.pcap --session run.db
  ssestress capture analyze a.pcap b.pcap --session run.db --session proxy.db   (several links and files, one picture)
  ssestress capture analyze trace.pcap --session run.db --store   (keep the capture in run.db for report)`

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

// ifaceList is a repeatable --iface flag that also takes "lo,eth0".
type ifaceList []string

func (l *ifaceList) String() string { return strings.Join(*l, ",") }

func (l *ifaceList) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			return fmt.Errorf("%q: empty interface name", v)
		}
		*l = append(*l, f)
	}
	return nil
}

// captureOptions are the flags of ssestress capture.
type captureOptions struct {
	flags    *flagSet // the parsed command line (--capture-payload is warned about)
	ifaces   ifaceList
	target   string
	ports    portList
	pcap     string
	duration time.Duration
	snaplen  int
	payload  bool   // --capture-payload
	out      string // the session file (optional)
	json     bool
	kernel   kernelFlag // --kernel (kernel.go): on unless --kernel=false
	args     []string
}

var captureCmd = &command{
	name:    "capture",
	summary: "capture packets and tell who sent each TCP reset, on which hop; analyze pcap files",
	synopsis: "capture [--iface IF ... | --target HOST:PORT] --port P [--port P] [--pcap FILE] [--duration D] [--out FILE]\n" +
		"capture analyze FILE... [--session FILE ...] [--port P] [--store] [--json]",
	about:    "To read pcap files (this tool's or tcpdump's, one per link or host): ssestress capture analyze FILE...",
	examples: captureExamples,
	args:     argSpec{none: "to read a file: ssestress capture analyze FILE"},
	setup: func(fs *flagSet) action {
		var o captureOptions
		fs.Var(&o.ifaces, "iface", "`INTERFACE` to capture on; repeat (or comma-separate) for one capture per interface (default: the route to --target, lo for loopback)")
		fs.StringVar(&o.target, "target", "", "`HOST:PORT` or URL the traffic goes to, to pick the interface")
		fs.Var(&o.ports, "port", "TCP `PORT` of the topology (server, proxy); repeat or comma-separate; none: every TCP packet")
		fs.StringVar(&o.pcap, "pcap", "", "pcap `FILE` to write (default capture-<timestamp>.pcap; never overwritten); with several interfaces, the second and later get -IFACE before .pcap")
		fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
		fs.IntVar(&o.snaplen, "snaplen", 0, fmt.Sprintf("bytes kept of each packet (default %d: the headers; with --capture-payload %d)", capture.HeaderSnaplen, capture.DefaultSnaplen))
		registerCapturePayload(fs, &o.payload)
		fs.Var((*captureOut)(&o.out), "out", "also write the captures and their flow summaries (and the attributed resets, as a cache) to this new session `FILE`")
		fs.deprecated("session", "out", "--out names the session file a command writes")
		fs.BoolVar(&o.json, "json", false, "print the result as one JSON object")
		o.kernel.register(fs, "also record the kernel's own word on each TCP reset of these ports: why it was sent and by which process (Linux 6.10+, root; on by default, --kernel=false turns it off). The reasons: ssestress help kernel")
		fs.values(wordsOf(interfaceNames), "iface")
		fs.values(files(), "pcap", "out")
		return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
			o.args, o.flags = fs.argv, fs
			return o.run(ctx, stdout, stderr)
		}
	},
	subs: []*command{{
		name: "analyze", summary: "attribute the resets of pcap or pcapng files (one per link or host), with session files for roles",
		synopsis: "capture analyze FILE... [--session FILE ...] [--port P] [--store] [--json]", examples: analyzeExamples,
		args: argSpec{name: "FILE", what: "pcap file", min: 1, max: -1, values: files()},
		setup: func(fs *flagSet) action {
			var o analyzeOptions
			fs.Var(&o.ports, "port", "server-side TCP `PORT` (orients flows whose handshake is missing); repeatable")
			fs.Var(&o.sessions, "session", "session `FILE` whose records join the packets (topology, client errors, proxy records, other captures); repeatable")
			fs.BoolVar(&o.store, "store", false, "store the files' captures and flows, and the attributed resets as a cache, into the first --session (for report)")
			fs.BoolVar(&o.json, "json", false, "print the result as one JSON object")
			fs.values(files(), "session")
			return func(ctx context.Context, files []string, stdout, stderr io.Writer) error {
				return o.run(ctx, files, stdout, stderr)
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

// run is ssestress capture: a stand-alone live capture, one per
// interface, that writes pcap files (and, with --out, the captures and
// their flow summaries into a new session file), then prints who sent
// each RST.
func (o *captureOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	if o.duration < 0 || o.snaplen < 0 || (o.snaplen > 0 && o.snaplen < 64) {
		return usageErrorf("capture: --duration must not be negative and --snaplen at least 64")
	}
	if len(o.ifaces) == 0 && o.target == "" {
		o.target = "127.0.0.1"
	}
	if o.flags != nil {
		warnSecrets(o.flags, stderr)
	}
	if o.pcap == "" {
		o.pcap = freshName("capture", ".pcap", time.Now())
	} else if err := checkNew("capture", "--pcap", o.pcap); err != nil {
		return err
	}
	var (
		w   *session.Writer
		err error
	)
	info := session.RunInfo{Tool: "ssestress " + version, Command: "capture", Args: redactArgs(o.args, nil), Target: redactURL(o.target),
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
	c, err := capture.StartEach(ctx, capture.Config{Target: o.target, Ports: o.ports, Out: o.pcap,
		Snaplen: o.snaplen, Payload: o.payload, Session: w}, o.ifaces)
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
	kr := o.startKernel(ctx, w, stderr)
	defer kr.stop()
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
	kinfo := kr.stop()
	var in *attribution.Input
	if w != nil {
		info.EndedAt = time.Now()
		w.PutMeta(session.MetaRun, info)
		if err := w.Close(); err != nil {
			return err
		}
		if in, err = readEvidence([]string{o.out}); err != nil {
			return err
		}
	} else {
		in = captureInput(c)
		if kr != nil {
			f := in.AddFile("kernel", session.RunInfo{Command: "capture", Host: info.Host})
			in.AddKernel(f, kinfo, kr.events())
		}
	}
	res := attribution.Analyze(in, attribution.Options{Resolve: resolver(context.WithoutCancel(ctx))})
	if w != nil && len(res.Segments) > 0 {
		if err := storeAttribution(o.out, res, nil, nil); err != nil {
			return err
		}
	}
	if o.json {
		if err := json.NewEncoder(stdout).Encode(struct {
			Capture     capture.Stats       `json:"capture"`
			Pcap        string              `json:"pcap"`
			SessionFile string              `json:"session_file,omitempty"`
			Result      *attribution.Result `json:"result"`
		}{st, o.pcap, o.out, res}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "captured %d packets in %s (%.0f packets/s) on %s; the kernel passed %d and dropped %d; %d flows, %d RST packets → %s\n",
			st.Packets, st.Stopped.Sub(st.Started).Round(time.Millisecond), st.PacketsPerSecond(), st.Iface,
			st.KernelPackets, st.KernelDrops, st.Flows, st.Resets, o.pcap)
		if err := printAttribution(stdout, res); err != nil {
			return err
		}
	}
	return stopErr
}

// analyzeOptions are the flags of ssestress capture analyze.
type analyzeOptions struct {
	ports    portList
	sessions stringList
	store    bool
	json     bool
}

// run is ssestress capture analyze FILE...: the attribution of pcap or
// pcapng files (from this tool or tcpdump, one per link or host), together
// with the records of any number of session files.
func (o *analyzeOptions) run(ctx context.Context, files []string, stdout, stderr io.Writer) error {
	ports, sessions, store, asJSON := o.ports, o.sessions, &o.store, &o.json
	if *store && len(sessions) == 0 {
		return usageErrorf("capture analyze: --store needs --session")
	}
	in, err := readEvidence(sessions)
	if err != nil {
		return err
	}
	// The topology's listening ports orient flows whose handshake the
	// files missed.
	for _, r := range in.Proxies {
		ports = appendPort(ports, r.R.Listen)
	}
	for _, r := range in.Topology {
		if r.R.Role != session.RoleClient {
			ports = appendPort(ports, r.R.Addr)
		}
	}
	type read struct {
		File string              `json:"file"`
		Read *capture.FileResult `json:"read"`
	}
	var reads []read
	var infos []session.CaptureInfo
	var flows [][]session.Flow
	for _, path := range files {
		fr, err := capture.ReadFile(path, ports)
		if err != nil {
			if fr == nil {
				return err
			}
			fmt.Fprintf(stderr, "ssestress: %v (analyzing the packets before it)\n", err)
		}
		ci := session.CaptureInfo{ID: capture.FileCaptureID(path), Pcap: path, Started: fr.First, Stopped: fr.Last,
			Packets: fr.Packets, Flows: int64(len(fr.Flows)), RSTSegments: int64(fr.Resets)}
		in.AddCapture(ci, fr.Flows)
		reads = append(reads, read{path, fr})
		infos, flows = append(infos, ci), append(flows, fr.Flows)
	}
	res := attribution.Analyze(in, attribution.Options{Resolve: resolver(ctx)})
	if *store {
		if err := storeAttribution(sessions[0], res, infos, flows); err != nil {
			return err
		}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			Files  []read              `json:"files"`
			Result *attribution.Result `json:"result"`
		}{reads, res})
	}
	for _, r := range reads {
		fr := r.Read
		fmt.Fprintf(stdout, "%s: %s, link type %s, %d TCP packets (%d other frames), %d flows, %d RST packets\n",
			r.File, fr.Format, linkName(fr.LinkType), fr.Packets, fr.Skipped, len(fr.Flows), fr.Resets)
		if fr.Truncated {
			fmt.Fprintln(stdout, "the file ends in the middle of a packet (a capture that was killed): the packets before it are analyzed")
		}
	}
	if err := printAttribution(stdout, res); err != nil {
		return err
	}
	if *store {
		var n int
		for _, f := range flows {
			n += len(f)
		}
		fmt.Fprintf(stdout, "stored %d %s (%d flows) and %d RST segments in %s\n", len(infos), pluralWord(len(infos), "capture"), n, len(res.Segments), sessions[0])
	}
	return nil
}

// appendPort adds the port of host:port to ports, once.
func appendPort(ports portList, addr string) portList {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return ports
	}
	n, err := strconv.Atoi(addr[i+1:])
	if err != nil || n <= 0 || n > 65535 {
		return ports
	}
	for _, p := range ports {
		if p == n {
			return ports
		}
	}
	return append(ports, n)
}

func pluralWord(n int, w string) string {
	if n == 1 {
		return w
	}
	return w + "s"
}

func linkName(t int) string {
	names := map[int]string{0: "BSD loopback", 1: "Ethernet", 12: "raw IP", 14: "raw IP", 101: "raw IP",
		108: "OpenBSD loopback", 113: "Linux cooked", 228: "IPv4", 229: "IPv6", 276: "Linux cooked v2"}
	if n, ok := names[t]; ok {
		return fmt.Sprintf("%d (%s)", t, n)
	}
	return strconv.Itoa(t)
}

// printAttribution prints the verdict, the causes with their counts and
// an example chain each, then every RST segment (each once, whatever
// number of captures saw it).
func printAttribution(w io.Writer, res *attribution.Result) error {
	v := res.Verdict
	fmt.Fprintln(w, v.Statement)
	for _, c := range v.Causes {
		noun := "client errors"
		if c.Source == session.SourceProxy {
			noun = "proxy client connections"
		}
		fmt.Fprintf(w, "  %d %s: %s\n      %s\n", c.Count, noun, c.Summary, c.Chain)
	}
	for _, c := range v.Conflicts {
		fmt.Fprintf(w, "  conflict: %s\n", c)
	}
	for _, e := range v.Enable {
		fmt.Fprintf(w, "  for more certainty: %s\n", e)
	}
	if len(res.Segments) == 0 {
		fmt.Fprintln(w, "no RST segment captured")
		return nil
	}
	fmt.Fprintf(w, "\n%d RST %s (each once):\n", len(res.Segments), pluralWord(len(res.Segments), "segment"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tWHERE\tSENDER\tRECEIVER\tAGE s\tIDLE s\tREASON\tKIND\tCAPTURES\tKERNEL\tEXPLAINS")
	for _, s := range res.Segments {
		sender := s.Sender.Words()
		if s.InNameOf != nil {
			sender += " as " + s.InNameOf.Words()
		}
		kind := s.Kind
		if s.FaultName != "" {
			kind += " (" + s.FaultName + ")"
		}
		explains := "-"
		if s.Explains != nil {
			explains = s.Explains.ClientID + " " + s.Explains.Class
			if s.Explains.Source == session.SourceProxy {
				explains = "proxy " + s.Explains.Proxy + " " + s.Explains.ConnID
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.Time.Local().Format("15:04:05.000000"), s.Where(), sender,
			s.Receiver.Words(), seconds(s.Age.D()), seconds(s.Idle.D()), s.Reason, kind, len(s.Captures), kernelColumn(s.Kernel), explains)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range res.Segments {
		if len(s.Evidence) > 0 && s.Kind != attribution.KindNatural && s.Kind != attribution.KindInjected {
			fmt.Fprintf(w, "\n%s RST %s → %s: %s\n", s.Kind, s.Sender.Words(), s.Receiver.Words(), strings.Join(s.Evidence, "; "))
		}
	}
	return nil
}

// seconds formats a duration in seconds with one decimal, "-" when unknown.
func seconds(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
}
