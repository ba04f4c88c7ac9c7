package analysis

import (
	"bytes"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// TestOverheadCPU: the report states each process's CPU from the CPU times
// its samples carry (measured between the first and the last sample, so
// start-up does not count), and says "not recorded" for a file without
// them: an older client file, or a proxy file without samples.
func TestOverheadCPU(t *testing.T) {
	dir := t.TempDir()
	var clientRecs, oldRecs, proxyRecs []session.Record
	for i := 0; i <= 10; i++ {
		// The client: 1 s of start-up CPU, then 0.4 s user + 0.1 s system
		// per second (50% of one core) over 10 s.
		clientRecs = append(clientRecs, session.Sample{
			Time: at(time.Duration(i) * time.Second), Uptime: session.Seconds(time.Duration(i) * time.Second), Active: 5,
			TimerLag:  session.Seconds(ms(2)),
			CPUUser:   session.Seconds(time.Second + time.Duration(i)*400*time.Millisecond),
			CPUSystem: session.Seconds(time.Duration(i) * 100 * time.Millisecond),
		})
		oldRecs = append(oldRecs, session.Sample{Time: at(time.Duration(i) * time.Second), Uptime: session.Seconds(time.Duration(i) * time.Second), TimerLag: session.Seconds(ms(1))})
		// The proxy: 150 ms per second, one sample every 2 s.
		if i%2 == 0 {
			proxyRecs = append(proxyRecs, session.Sample{Time: at(time.Duration(i) * time.Second), Uptime: session.Seconds(time.Duration(i) * time.Second),
				CPUUser: session.Seconds(time.Duration(i) * 100 * time.Millisecond), CPUSystem: session.Seconds(time.Duration(i) * 50 * time.Millisecond)})
		}
	}
	run := session.RunInfo{Tool: "ssestress test", Command: "run", Scenario: "flood", StartedAt: t0}
	client := writeSession(t, filepath.Join(dir, "client.db"), run, nil, clientRecs)
	old := writeSession(t, filepath.Join(dir, "old.db"), run, nil, oldRecs)
	run.Command = "proxy"
	proxySampled := writeSession(t, filepath.Join(dir, "proxy.db"), run, nil, proxyRecs)
	proxyBare := writeSession(t, filepath.Join(dir, "proxy-bare.db"), run, nil, nil)

	rep, err := LoadFiles(client, old, proxySampled, proxyBare)
	if err != nil {
		t.Fatal(err)
	}
	byProcess := map[string]Overhead{}
	for _, o := range rep.Overhead {
		byProcess[o.Process] = o
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 0.01 }
	if o := byProcess["run (client.db)"]; !near(o.CPUPercent, 50) || !near(o.CPUUserS, 5) || !near(o.CPUSystemS, 1) ||
		!strings.Contains(o.Note, "CPU used: user 5.0 s, system 1.0 s") {
		t.Errorf("client overhead %+v, want 50%% CPU, 5 s user, 1 s system", o)
	}
	if o := byProcess["proxy (proxy.db)"]; !near(o.CPUPercent, 15) {
		t.Errorf("proxy overhead %+v, want 15%% CPU", o)
	}
	if o := byProcess["run (old.db)"]; o.CPUPercent != -1 || o.Samples != 11 {
		t.Errorf("file without CPU times: %+v, want CPU -1 (not recorded)", o)
	}
	if o := byProcess["proxy (proxy-bare.db)"]; o.CPUPercent != -1 || o.Samples != 0 {
		t.Errorf("proxy file without samples: %+v", o)
	}

	var out bytes.Buffer
	if err := Render(&out, rep, "table"); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	section := text[strings.Index(text, "Tool overhead"):]
	if end := strings.Index(section[1:], "\n\n"); end > 0 {
		section = section[:end+1]
	}
	t.Logf("overhead section:\n%s", section)
	for _, want := range []string{"50%", "15%", "not recorded"} {
		if !strings.Contains(section, want) {
			t.Errorf("overhead section lacks %q:\n%s", want, section)
		}
	}
	if strings.Count(section, "not recorded") != 2 {
		t.Errorf("want two processes without CPU (old client file, bare proxy file):\n%s", section)
	}
}

// TestOverheadCPUOneSample: a single sample (a run killed early) gives the
// CPU since the start over the uptime.
func TestOverheadCPUOneSample(t *testing.T) {
	path := writeSession(t, filepath.Join(t.TempDir(), "one.db"),
		session.RunInfo{Tool: "ssestress test", Command: "run", StartedAt: t0}, nil,
		[]session.Record{session.Sample{Time: at(4 * time.Second), Uptime: session.Seconds(4 * time.Second), CPUUser: session.Seconds(time.Second), CPUSystem: session.Seconds(time.Second)}})
	rep, err := LoadFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Overhead) != 1 || math.Abs(rep.Overhead[0].CPUPercent-50) > 0.01 {
		t.Fatalf("overhead %+v, want 50%%", rep.Overhead)
	}
}
