package analysis

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./analysis -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs at line %d:\n got: %q\nwant: %q\n(run with -update if the change is intended)", path, i+1, g, w)
			}
		}
	}
}

// stable removes what differs between test runs (the temp dir).
func stable(rep *Report) *Report {
	for i := range rep.Files {
		rep.Files[i].Path = rep.Files[i].Name
	}
	return rep
}

func loadIdle(t *testing.T) *Report {
	t.Helper()
	rep, err := LoadFiles(idleTimeoutSession(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return stable(rep)
}

func loadCapture(t *testing.T) *Report {
	t.Helper()
	rep, err := LoadFiles(captureSession(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return stable(rep)
}

func loadShards(t *testing.T) *Report {
	t.Helper()
	dir := t.TempDir()
	a := middleboxSession(t, dir, "shard1.db", "1/2", 0)
	b := middleboxSession(t, dir, "shard2.db", "2/2", 100)
	rep, err := LoadFiles(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return stable(rep)
}

// formatExt maps each format to its golden file extension.
var formatExt = map[string]string{"table": "txt", "markdown": "md", "csv": "csv", "json": "json", "html": "html"}

// tablePresent reports whether table tb shows up in out of format.
func tablePresent(format string, tb Table, out string) bool {
	switch format {
	case "table":
		return strings.Contains(out, "== "+tb.Title+" ==")
	case "markdown":
		return strings.Contains(out, "## "+tb.Title+"\n")
	case "csv":
		return strings.Contains(out, "# section "+tb.ID+"\n")
	case "html":
		return strings.Contains(out, `<h2 id="`+tb.ID+`">`)
	}
	return true
}

func TestGolden(t *testing.T) {
	fixtures := map[string]func(*testing.T) *Report{"idle": loadIdle, "shards": loadShards, "capture": loadCapture}
	for name, load := range fixtures {
		t.Run(name, func(t *testing.T) { goldenDoc(t, name, load(t).Doc()) })
	}
}

func TestRenderUnknownFormat(t *testing.T) {
	err := Render(&bytes.Buffer{}, loadIdle(t), "yaml")
	if err == nil || !strings.Contains(err.Error(), "unknown report format \"yaml\"") {
		t.Fatalf("got %v", err)
	}
}

// TestIdleTimeoutFingerprintAndVerdict is the acceptance test:
// resets injected at 1.0 s idle on the client hop of proxy p1 (time-scaled
// preset), natural closes elsewhere. An injected fault is named as the
// fault it is, never as a middlebox that shares its number.
func TestIdleTimeoutFingerprintAndVerdict(t *testing.T) {
	rep := loadIdle(t)
	var idle *Cluster
	for i, c := range rep.Fingerprints {
		if c.Class == errclass.ECONNRESET && c.Dimension == "idle" {
			idle = &rep.Fingerprints[i]
		}
	}
	if idle == nil {
		t.Fatalf("no ECONNRESET idle cluster in %+v", rep.Fingerprints)
	}
	if idle.Count != 48 || idle.CenterS < 1.0 || idle.CenterS > 1.05 || idle.MatchKind != "injected" {
		t.Errorf("idle cluster = %+v, want 48 resets at 1.0–1.05 s, injected", idle)
	}
	for _, want := range []string{"cluster at 1.0 s idle", "matches the injected idle-timeout on proxy p1 client hop"} {
		if !strings.Contains(idle.Match, want) {
			t.Errorf("fingerprint %q does not say %q", idle.Match, want)
		}
	}
	for _, never := range []string{"nginx", "stands for", "load balancer"} {
		if strings.Contains(idle.Match, never) {
			t.Errorf("fingerprint %q names an injected fault as %q", idle.Match, never)
		}
	}
	// The idle table's 1–2 s row carries the fingerprint; the buckets where
	// only natural closes fell say "not in a cluster".
	var sawMatch, sawNoMatch bool
	for _, b := range rep.IdleBuckets {
		if b.LoS == 1 && strings.Contains(b.Fingerprint, "injected idle-timeout") {
			sawMatch = true
		}
		if b.LoS == 0.1 && b.Fingerprint == "not in a cluster" {
			sawNoMatch = true
		}
	}
	if !sawMatch || !sawNoMatch {
		t.Errorf("idle buckets: match %v, no match %v: %+v", sawMatch, sawNoMatch, rep.IdleBuckets)
	}
	v := rep.Verdict
	x := v.Cause
	if x == nil || x.Kind != attribution.KindInjected || x.Proxy != "p1" || x.Hop != session.HopClient || x.FaultKind != "idle-timeout" || v.Confidence != ConfidenceHigh {
		t.Fatalf("verdict = %+v", v)
	}
	if want := "Proxy p1 injected the resets, on its client hop (fault aws-alb/idle-timeout): 48 of 51 client errors (ECONNRESET 48), high confidence."; attribution.FirstSentence(v.Statement) != want {
		t.Errorf("statement %q\n want %q", v.Statement, want)
	}
	if v.Resets != 48 || v.Cuts != 3 || v.ClientErrors != 62 {
		t.Errorf("counts: %d resets, %d cuts, %d client errors; want 48, 3, 62", v.Resets, v.Cuts, v.ClientErrors)
	}
	// Natural closes are put on the server, through the proxy; refused
	// connects are refusals of the proxy's address.
	want := map[string]ErrorPattern{
		errclass.EOF:           {Hop: "p1/upstream", Origin: "server", Cause: attribution.KindNatural, Via: "p1", Confidence: ConfidenceMedium, Count: 8},
		errclass.UnexpectedEOF: {Hop: "p1/upstream", Origin: "server", Cause: attribution.KindNatural, Via: "p1", Confidence: ConfidenceMedium, Count: 3},
		errclass.ECONNREFUSED:  {Hop: "p1/client", Origin: "proxy p1", Cause: attribution.KindNatural, Confidence: ConfidenceLow, Count: 3},
		errclass.ECONNRESET:    {Hop: "p1/client", Origin: "proxy p1", Cause: attribution.KindInjected, Confidence: ConfidenceHigh, Fault: "idle-timeout", Count: 48},
	}
	if len(rep.Patterns) != len(want) {
		t.Fatalf("patterns %+v", rep.Patterns)
	}
	for _, p := range rep.Patterns {
		w := want[p.Class]
		if p.Hop != w.Hop || p.Origin != w.Origin || p.Cause != w.Cause || p.Via != w.Via || p.Confidence != w.Confidence || p.Fault != w.Fault || p.Count != w.Count {
			t.Errorf("pattern %+v, want %+v", p, w)
		}
	}
	if len(rep.Heartbeat.Warnings) == 0 || !strings.Contains(rep.Heartbeat.Warnings[0], "idle timeout of proxy p1 client hop") {
		t.Errorf("heartbeat warnings %q", rep.Heartbeat.Warnings)
	}
	// Chains grouped by cause, one row per cause, not per reset.
	if len(rep.ResetChains) != 4 || rep.ResetChains[0].Count != 48 || !strings.Contains(rep.ResetChains[0].Chain, "a client saw ECONNRESET") {
		t.Errorf("chains %+v", rep.ResetChains)
	}
}

// TestNotEnoughEvidence: resets at 60 s idle on a direct path, no proxy,
// no capture, to an address no file describes. The verdict must not name
// a sender; it says what to enable, and what the timing alone suggests.
func TestNotEnoughEvidence(t *testing.T) {
	rep := loadShards(t)
	v := rep.Verdict
	if first := attribution.FirstSentence(v.Statement); first != "Not enough evidence to name who sent the resets: 50 of 50 client errors (ECONNRESET 50), seen on the link client→203.0.113.10:443." {
		t.Errorf("statement %q", v.Statement)
	}
	if v.Confidence != ConfidenceNone || v.Cause == nil || v.Cause.Kind != attribution.KindUnknown ||
		!strings.Contains(v.Statement, "Timing alone suggests a middlebox, with low confidence") || !strings.Contains(v.Statement, "load balancer / nginx idle timeout (60 s)") {
		t.Errorf("verdict %+v", v)
	}
	if len(v.Enable) != 3 || !strings.Contains(v.Enable[0], "--capture") || !strings.Contains(v.Enable[1], "--via-proxy") {
		t.Errorf("enable %q", v.Enable)
	}
}

// TestCapturedResets: RSTs a capture saw (forged in the server's name by a
// NAT gateway after 350 s of silence or more, a few sent by the server)
// decide the origin, recomputed from the flows alone; the forged ones
// form a threshold fingerprint that matches the NAT gateway.
func TestCapturedResets(t *testing.T) {
	rep := loadCapture(t)
	v := rep.Verdict
	x := v.Cause
	if x == nil || x.Kind != attribution.KindForged || x.Sender.Role != session.RoleMiddlebox || x.Link != session.LinkDirect || v.Confidence != ConfidenceHigh {
		t.Fatalf("verdict %+v", v)
	}
	if first := attribution.FirstSentence(v.Statement); !strings.HasPrefix(first, "A middlebox forged the resets, on the direct client–server connections") ||
		!strings.Contains(first, "in the name of the server 10.1.2.3:8080: 12 of 16 client errors") {
		t.Errorf("statement %q", v.Statement)
	}
	if !strings.Contains(v.Statement, "The other 4: The server 10.1.2.3:8080 sent the resets") {
		t.Errorf("statement %q", v.Statement)
	}
	if len(rep.ResetChains) != 2 || rep.ResetChains[0].Count != 12 || !rep.ResetChains[0].Forged || rep.ResetChains[1].Sender != session.RoleServer {
		t.Errorf("chains %+v", rep.ResetChains)
	}
	for _, p := range rep.Patterns {
		if p.Evidence != attribution.EvidencePacket || p.Confidence != ConfidenceHigh {
			t.Errorf("pattern %+v not from the packets", p)
		}
	}
	var threshold *Cluster
	for i, c := range rep.Fingerprints {
		if c.Shape == "threshold" {
			threshold = &rep.Fingerprints[i]
		}
	}
	if threshold == nil || threshold.Count != 12 || threshold.MatchKind != "known" || !strings.Contains(threshold.Match, "NAT gateway idle timeout (350 s)") ||
		!strings.HasPrefix(threshold.Match, "every ECONNRESET from middlebox after ≥ 350 s idle") {
		t.Errorf("threshold fingerprint %+v in %+v", threshold, rep.Fingerprints)
	}
	if len(v.Enable) != 0 {
		t.Errorf("enable %q with every reset explained", v.Enable)
	}
	if v.RSTSegments != 16 {
		t.Errorf("%d RST segments, want 16", v.RSTSegments)
	}
}

// TestMergeShards: two shards add up; the duration of shards that ran side
// by side counts once.
func TestMergeShards(t *testing.T) {
	dir := t.TempDir()
	one, err := LoadFiles(middleboxSession(t, dir, "one.db", "", 0))
	if err != nil {
		t.Fatal(err)
	}
	both := loadShards(t)
	if len(both.Scenarios) != 1 || len(one.Scenarios) != 1 {
		t.Fatalf("scenarios %+v / %+v", both.Scenarios, one.Scenarios)
	}
	s1, s2 := one.Scenarios[0], both.Scenarios[0]
	if s2.Attempts != 2*s1.Attempts || s2.Errors != 2*s1.Errors || s2.Events != 2*s1.Events || s2.Files != 2 {
		t.Errorf("merged %+v, single %+v", s2, s1)
	}
	if s2.DurationS != s1.DurationS || s2.DurationS != 600 {
		t.Errorf("duration merged %v, single %v, want 600", s2.DurationS, s1.DurationS)
	}
	for class, n := range s1.ErrorsBy {
		if s2.ErrorsBy[class] != 2*n {
			t.Errorf("%s: merged %d, single %d", class, s2.ErrorsBy[class], n)
		}
	}
}

// TestProxyFileSeparate: the proxy's records in a file of their own (proxy
// --record) still explain the client's errors in the run's file.
func TestProxyFileSeparate(t *testing.T) {
	dir := t.TempDir()
	src, err := session.Open(idleTimeoutSession(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	var clientRecs, proxyRecs []session.Record
	var run session.RunInfo
	src.Meta(session.MetaRun, &run)
	conns, _ := session.All[session.ConnRecord](src, session.BucketConns)
	errs, _ := session.All[session.ErrorRecord](src, session.BucketErrors)
	hops, _ := session.All[session.HopConn](src, session.BucketHopConns)
	faults, _ := session.All[session.FaultEvent](src, session.BucketFaults)
	src.Close()
	for _, c := range conns {
		clientRecs = append(clientRecs, c)
	}
	for _, e := range errs {
		clientRecs = append(clientRecs, e)
	}
	for _, h := range hops {
		proxyRecs = append(proxyRecs, h)
	}
	for _, f := range faults {
		proxyRecs = append(proxyRecs, f)
	}
	a := writeSession(t, filepath.Join(dir, "client.db"), run, nil, clientRecs)
	run.Command = "proxy"
	b := writeSession(t, filepath.Join(dir, "proxy.db"), run, nil, proxyRecs)
	rep, err := LoadFiles(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if x := rep.Verdict.Cause; x == nil || x.Where() != "p1/client" || x.FaultKind != "idle-timeout" {
		t.Errorf("verdict %+v", rep.Verdict)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(); err != ErrNoFiles {
		t.Errorf("Load() = %v", err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "notes.txt")
	os.WriteFile(bad, []byte("not a session file, just text that is long enough"), 0o644)
	_, err := LoadFiles(bad)
	if err == nil || !strings.Contains(err.Error(), "is not an ssestress session file") {
		t.Errorf("LoadFiles(text) = %v", err)
	}
	_, err = LoadFiles(filepath.Join(dir, "missing.db"))
	if err == nil || !os.IsNotExist(err) {
		t.Errorf("LoadFiles(missing) = %v", err)
	}
}

// TestEmptySession: a file with nothing but run info renders in every
// format with the "none" notes and no panic.
func TestEmptySession(t *testing.T) {
	dir := t.TempDir()
	p := writeSession(t, filepath.Join(dir, "empty.db"), session.RunInfo{Command: "run", StartedAt: t0}, nil, nil)
	rep, err := LoadFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict.Statement != "No client error was recorded and no proxy's client connection ended in a reset or a cut: nothing to explain." || rep.Verdict.Cause != nil {
		t.Errorf("verdict %q", rep.Verdict.Statement)
	}
	for format := range formatExt {
		var buf bytes.Buffer
		if err := Render(&buf, rep, format); err != nil {
			t.Errorf("%s: %v", format, err)
		}
	}
}

func TestWriteGraphs(t *testing.T) {
	rep := loadIdle(t)
	dir := t.TempDir()
	paths, err := WriteGraphs(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"active-connections", "events-per-second", "memory", "file-descriptors", "errors-by-class", "resets-and-cuts-by-hop"}
	if len(paths) != len(want) {
		t.Fatalf("wrote %v", paths)
	}
	for i, id := range want {
		if filepath.Base(paths[i]) != id+".svg" {
			t.Errorf("graph %d = %s, want %s.svg", i, paths[i], id)
		}
		b, _ := os.ReadFile(paths[i])
		if !bytes.HasPrefix(b, []byte(`<svg xmlns="http://www.w3.org/2000/svg"`)) || !bytes.Contains(b, []byte(`class="series"`)) {
			t.Errorf("%s is not an SVG chart with series: %.200s", paths[i], b)
		}
	}
	golden(t, "idle.errors-by-class.svg", mustRead(t, filepath.Join(dir, "errors-by-class.svg")))
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// consoleLine is how headless Chromium logs a console message on stderr.
var consoleLine = regexp.MustCompile(`:CONSOLE[:(]\d+`)

// chromiumFlags are the flags Chromium needs headless here, as root, with
// no network (/work/.library/env/machines/go.md).
func chromiumFlags(t *testing.T) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + t.TempDir()}
}

// chromium finds the browser, or skips the test saying what was not checked.
func chromium(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (apt-get install -y chromium; .ci/run installs it): the HTML report's graphs were not checked in a browser")
	}
	return bin
}

// chromiumRun runs Chromium on a file with extra flags and returns its
// stdout and the console messages it logged.
func chromiumRun(t *testing.T, bin, htmlPath string, extra ...string) (stdout string, console []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append(chromiumFlags(t), "--enable-logging=stderr", "--v=0")
	args = append(append(args, extra...), "file://"+htmlPath)
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, errOut.String())
	}
	for _, line := range strings.Split(errOut.String(), "\n") {
		if consoleLine.MatchString(line) {
			console = append(console, line)
		}
	}
	return out.String(), console
}

// seriesProbe is put into a copy of the report: it measures every drawn
// series and legend entry of every chart as the browser laid them out,
// and writes what it found into the page, which --dump-dom prints.
const seriesProbe = `<script>
const found = [];
for (const svg of document.querySelectorAll("svg.chart")) {
  const g = {id: svg.id, series: [], legend: []};
  for (const el of svg.querySelectorAll(".series")) {
    const b = el.getBBox(), cs = getComputedStyle(el);
    g.series.push({name: el.dataset.series, w: b.width, h: b.height, stroke: cs.stroke, strokeWidth: parseFloat(cs.strokeWidth),
      fill: cs.fill, dash: cs.strokeDasharray, marks: el.querySelectorAll("rect").length});
  }
  for (const el of svg.querySelectorAll(".legend")) g.legend.push(el.dataset.series);
  found.push(g);
}
const pre = document.createElement("pre");
pre.id = "series-probe";
pre.textContent = JSON.stringify(found);
document.body.appendChild(pre);
</script>`

type probedSeries struct {
	Name        string  `json:"name"`
	W           float64 `json:"w"`
	H           float64 `json:"h"`
	Stroke      string  `json:"stroke"`
	StrokeWidth float64 `json:"strokeWidth"`
	Fill        string  `json:"fill"`
	Dash        string  `json:"dash"`
	Marks       int     `json:"marks"`
}

// probeGraphs loads doc's HTML with seriesProbe in Chromium and returns
// what it measured per chart id.
func probeGraphs(t *testing.T, bin string, doc *Document) map[string]struct {
	Series []probedSeries
	Legend []string
} {
	t.Helper()
	var buf bytes.Buffer
	if err := RenderHTML(&buf, doc); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(t.TempDir(), "report.html")
	os.WriteFile(page, bytes.Replace(buf.Bytes(), []byte("</body>"), []byte(seriesProbe+"</body>"), 1), 0o644)
	dom, console := chromiumRun(t, bin, page, "--dump-dom")
	if len(console) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(console, "\n"))
	}
	m := regexp.MustCompile(`(?s)<pre id="series-probe">(.*?)</pre>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the probe wrote nothing: %.500s", dom)
	}
	var found []struct {
		ID     string `json:"id"`
		Series []probedSeries
		Legend []string
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &found); err != nil {
		t.Fatal(err)
	}
	out := map[string]struct {
		Series []probedSeries
		Legend []string
	}{}
	for _, g := range found {
		out[strings.TrimPrefix(g.ID, "graph-")] = struct {
			Series []probedSeries
			Legend []string
		}{g.Series, g.Legend}
	}
	return out
}

// TestGraphsInChromium opens the HTML report in headless Chromium and
// checks, as the browser drew them, that every series of every graph is
// there with a non-zero size and a visible colour, that each has a legend
// entry, and that the series of a graph can be told apart (colour and dash
// or hatching). The shards' two files have the same samples: their series
// lie on each other, and a screenshot shows both colours, so neither hides
// the other. A page with a script error is opened too, to show the check
// sees console errors.
func TestGraphsInChromium(t *testing.T) {
	bin := chromium(t)
	for name, load := range map[string]func(*testing.T) *Report{"idle": loadIdle, "shards": loadShards} {
		rep := load(t)
		probed := probeGraphs(t, bin, rep.Doc())
		for _, g := range rep.Graphs {
			p, ok := probed[g.ID]
			if !ok {
				t.Errorf("%s: graph %s not in the page", name, g.ID)
				continue
			}
			if len(p.Series) != len(g.Series) || len(p.Legend) != len(g.Series) {
				t.Errorf("%s: graph %s: %d series and %d legend entries drawn for %d series", name, g.ID, len(p.Series), len(p.Legend), len(g.Series))
				continue
			}
			styles := map[string]string{}
			for i, s := range p.Series {
				if s.Name != g.Series[i].Name || p.Legend[i] != s.Name {
					t.Errorf("%s: graph %s: series %d is %q, legend %q, want %q", name, g.ID, i, s.Name, p.Legend[i], g.Series[i].Name)
				}
				if s.W <= 0 && s.H <= 0 {
					t.Errorf("%s: graph %s: series %q has no size", name, g.ID, s.Name)
				}
				style := s.Fill
				if g.Kind == GraphCounts {
					if s.Fill == "none" || s.Fill == "rgb(255, 255, 255)" || s.Marks == 0 && sum(g.Series[i].Y) > 0 {
						t.Errorf("%s: graph %s: bars of %q not visible: %+v", name, g.ID, s.Name, s)
					}
				} else {
					if s.Stroke == "none" || s.Stroke == "rgb(255, 255, 255)" || s.StrokeWidth <= 0 {
						t.Errorf("%s: graph %s: line of %q not visible: %+v", name, g.ID, s.Name, s)
					}
					style = s.Stroke + " " + s.Dash
				}
				if other, dup := styles[style]; dup {
					t.Errorf("%s: graph %s: %q and %q are drawn alike (%s)", name, g.ID, other, s.Name, style)
				}
				styles[style] = s.Name
			}
		}
	}

	// Overlapping series: both shards' active connections lie on each
	// other; the screenshot of that graph alone (legend hidden) shows both
	// colours.
	rep := loadShards(t)
	var g Graph
	for _, x := range rep.Graphs {
		if x.ID == "active-connections" {
			g = x
		}
	}
	if len(g.Series) != 2 || !slices.Equal(g.Series[0].Y, g.Series[1].Y) {
		t.Fatalf("the shards' active connections are not two equal series: %+v", g.Series)
	}
	var buf bytes.Buffer
	if err := WriteSVG(&buf, g); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "overlap.html")
	os.WriteFile(page, []byte(`<!DOCTYPE html><html><head><style>body{margin:0} .legend{display:none}</style></head><body>`+buf.String()+`</body></html>`), 0o644)
	shot := filepath.Join(dir, "overlap.png")
	chromiumRun(t, bin, page, "--window-size=800,400", "--screenshot="+shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.Series {
		if n := colourPixels(img, palette[i]); n < 50 {
			t.Errorf("series %q (%s) shows in %d pixels where it overlaps the other", g.Series[i].Name, palette[i], n)
		}
	}

	bad := filepath.Join(dir, "bad.html")
	os.WriteFile(bad, []byte(`<!DOCTYPE html><html><body><script>notDefined();</script></body></html>`), 0o644)
	if _, console := chromiumRun(t, bin, bad, "--dump-dom"); len(console) == 0 {
		t.Error("a page with a script error logged no console message: the check cannot see errors")
	}
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

// colourPixels counts the pixels of img within a small distance of the
// colour "#rrggbb" (anti-aliasing blurs the edges of a line, not its core).
func colourPixels(img image.Image, hex string) int {
	var r0, g0, b0 int
	fmt.Sscanf(hex, "#%02x%02x%02x", &r0, &g0, &b0)
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			dr, dg, db := int(r>>8)-r0, int(g>>8)-g0, int(b>>8)-b0
			if dr*dr+dg*dg+db*db < 30*30 {
				n++
			}
		}
	}
	return n
}

// TestConnViewMatchesSchema: every field connView decodes exists in
// session.ConnRecord under the same JSON name and type.
func TestConnViewMatchesSchema(t *testing.T) {
	rec := reflect.TypeFor[session.ConnRecord]()
	byName := map[string]reflect.StructField{}
	for i := range rec.NumField() {
		f := rec.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		byName[name] = f
	}
	view := reflect.TypeFor[connView]()
	for i := range view.NumField() {
		f := view.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		rf, ok := byName[name]
		if !ok || rf.Type != f.Type {
			t.Errorf("connView.%s (json %q, %s) is not in session.ConnRecord with that name and type", f.Name, name, f.Type)
		}
	}
}

// TestBucketLabelledByCluster: resets clustered around 60 s idle fall on
// both sides of the 1 min bucket edge; each bucket is labelled by the
// cluster its errors belong to, not by where the cluster's centre lies,
// and a bucket with errors of no cluster says how many.
func TestBucketLabelledByCluster(t *testing.T) {
	dir := t.TempDir()
	run := session.RunInfo{Command: "run", Scenario: "direct", Target: "https://quotes.example/stream", StartedAt: t0, EndedAt: at(20 * time.Minute)}
	var recs []session.Record
	idles := []float64{59.95, 59.99, 60.02, 60.05, 60.1, 60.2, 60.3, 35, 200}
	for i, idle := range idles {
		end := at(time.Duration(i+2) * time.Minute)
		recs = append(recs, session.ErrorRecord{Time: end, Source: "client", ClientID: fmt.Sprintf("c%04d", i), Scenario: "direct",
			Class: errclass.ECONNRESET, Message: "read: connection reset by peer", RemoteAddr: "203.0.113.10:443",
			Age: session.Seconds(time.Duration((idle + 5) * float64(time.Second))), Idle: session.Seconds(time.Duration(idle * float64(time.Second)))})
	}
	rep, err := LoadFiles(writeSession(t, filepath.Join(dir, "edge.db"), run, nil, recs))
	if err != nil {
		t.Fatal(err)
	}
	var cluster *Cluster
	for i, c := range rep.Fingerprints {
		if c.Dimension == "idle" && c.Shape != "threshold" {
			cluster = &rep.Fingerprints[i]
		}
	}
	if cluster == nil || cluster.Count != 7 || cluster.CenterS < 60 {
		t.Fatalf("idle cluster %+v in %+v", cluster, rep.Fingerprints)
	}
	want := map[float64]string{
		30:  "ECONNRESET " + cluster.Match + " (2); 1 not in a cluster", // 59.95, 59.99 and the 35 s one
		60:  "ECONNRESET " + cluster.Match,                              // 60.02 … 60.3
		120: "not in a cluster",                                         // 200 s
	}
	for _, b := range rep.IdleBuckets {
		if w, ok := want[b.LoS]; ok {
			if b.Fingerprint != w {
				t.Errorf("bucket %s: %q, want %q", b.Label, b.Fingerprint, w)
			}
			delete(want, b.LoS)
		}
	}
	if len(want) > 0 {
		t.Errorf("buckets not found: %v in %+v", want, rep.IdleBuckets)
	}
}
