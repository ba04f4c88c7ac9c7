package proxy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	cases := []struct {
		in   string
		want string // the canonical Spec
	}{
		{"reset", "reset:hop=client,direction=down"},
		{"reset:hop=upstream,after=5s,toxicity=0.5", "reset:hop=upstream,direction=down,toxicity=0.5,after=5s"},
		{" latency : delay=50ms , jitter=5ms ", "latency:hop=client,direction=down,delay=50ms,jitter=5ms"},
		{"idle-timeout:idle=300ms,action=rst", "idle-timeout:hop=client,direction=both,action=rst,idle=300ms"},
		{"drop-events:every=3,match=/stream?symbols=A,B,C", "drop-events:hop=client,every=3,match=/stream?symbols=A,B,C"},
		{"drop-events:match=/s?a=1,b=2,every=3", "drop-events:hop=client,every=3,match=/s?a=1,b=2"},
		{"http-status:code=524,timeout=100s,name=cf", "http-status:hop=client,code=524,timeout=100s,name=cf"},
		{"preset:aws-alb", "preset:aws-alb"},
		{"preset:nginx:toxicity=0.25,after=1d", "preset:nginx:toxicity=0.25,after=24h0m0s"},
		{"down:hop=upstream", "down:hop=upstream"},
		{"max-age:age=10m", "max-age:hop=client,age=10m"},
	}
	for _, c := range cases {
		f, err := ParseFault(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if f.Spec != c.want {
			t.Errorf("%q: spec %q, want %q", c.in, f.Spec, c.want)
		}
		// The canonical text reads back to the same spec.
		g, err := ParseFault(f.Spec)
		if err != nil || g.Spec != f.Spec || g.Name != f.Name {
			t.Errorf("%q: round trip gave %+v, %v", f.Spec, g, err)
		}
	}
}

func TestParseFaultErrors(t *testing.T) {
	cases := []struct{ in, msg string }{
		{"", `empty fault`},
		{"lag:delay=5ms", `unknown fault kind "lag" (kinds: bandwidth, delay-events, down,`},
		{"latency:dealy=5ms", `unknown key "dealy" for latency (keys: delay, jitter, name, hop, direction, toxicity, match, after)`},
		{"latency:delay=5", `delay: 5 has no unit — write "5ms" (5 ms) or "5s" (5 s)`},
		{"latency:delay", `"delay" is not key=value`},
		{"reset:toxicity=1.5", `toxicity "1.5" is not a probability between 0 and 1`},
		{"reset:hop=server", `hop "server" must be client or upstream`},
		{"reset:direction=sideways", `direction "sideways" must be down, up or both`},
		{"max-age:age=1m,direction=up", `key direction does not apply to max-age`},
		{"reset:bytes=10,events=2", `give bytes or events, not both`},
		{"reset:after=5s,after=6s", `key "after" given twice`},
		{"idle-timeout", `idle-timeout needs idle=DURATION`},
		{"idle-timeout:idle=1s,action=drop", `action "drop" must be fin or rst`},
		{"idle-timeout:idle=1s,scope=sometimes", `scope "sometimes" must be always or between-requests`},
		{"http-status:code=200", `code "200" must be a status between 400 and 599`},
		{"http-status:hop=upstream", `http-status acts on hop client only`},
		{"bandwidth", `bandwidth needs rate=BYTES per second`},
		{"bandwidth:rate=fast", `rate: invalid size "fast"`},
		{"slicer:size=4,variation=4", `variation (4) must be smaller than size (4)`},
		{"drop-events:every=0", `every must be at least 1`},
		{"reset:match=stream", `match "stream" must be a path prefix starting with /`},
		{"preset:aws", `unknown preset "aws" (presets: aws-alb, aws-nat, cloudflare, nginx, node-keepalive)`},
		{"preset:nginx:hop=client", `a preset sets its own hops`},
		{"preset:nginx:idle=5s", `key "idle" does not apply to a preset`},
		{"down:action=refuse,toxicity=0.5", `closes the whole listener`},
	}
	for _, c := range cases {
		_, err := ParseFault(c.in)
		if err == nil || !errors.Is(err, ErrBadFault) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: error %v, want one containing %q", c.in, err, c.msg)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: message on several lines: %q", c.in, err)
		}
	}
}

// TestPresetsParse: every preset's faults parse, on the hops stated.
func TestPresetsParse(t *testing.T) {
	for _, name := range PresetNames() {
		spec, err := ParseFault("preset:" + name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := newFault(spec, 1)
		if err != nil || len(f.parts) == 0 {
			t.Fatalf("%s: %v", name, err)
		}
		for _, part := range f.parts {
			if !strings.HasPrefix(part.Spec.Name, "preset:"+name+"/") {
				t.Errorf("%s: part named %q", name, part.Spec.Name)
			}
		}
	}
	f, _ := newFault(mustParse(t, "preset:aws-alb:after=1s"), 60)
	if f.parts[0].after != time.Second/60 {
		t.Errorf("time scale: after = %v", f.parts[0].after)
	}
}

func mustParse(t *testing.T, s string) FaultSpec {
	t.Helper()
	f, err := ParseFault(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFaultJSONForms(t *testing.T) {
	var list []FaultSpec
	err := json.Unmarshal([]byte(`["reset:after=5s", {"kind": "latency", "delay": "50ms", "toxicity": 0.5},
		{"kind": "preset", "preset": "aws-alb"}, {"kind": "drop-events", "every": 2, "match": "/s?a=1,b=2"}]`), &list)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"reset:hop=client,direction=down,after=5s", "latency:hop=client,direction=down,delay=50ms,toxicity=0.5",
		"preset:aws-alb", "drop-events:hop=client,every=2,match=/s?a=1,b=2"}
	for i, f := range list {
		if f.Spec != want[i] {
			t.Errorf("fault %d: %q, want %q", i, f.Spec, want[i])
		}
	}
	for _, bad := range []string{`{"delay": "5ms"}`, `{"kind": "latency", "dealy": "5ms"}`, `{"kind": "latency", "delay": [1]}`, `17`} {
		var f FaultSpec
		if err := json.Unmarshal([]byte(bad), &f); !errors.Is(err, ErrBadFault) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{
  "listen": "127.0.0.1:0",
  "upstream": "http://127.0.0.1:8090",
  "name": "edge",
  "fault": ["reset:hop=upstream,after=5s", {"kind": "idle-timeout", "idle": "60s"}],
  "on-upstream-error": "abort",
  "time-scale": 10,
  "tls-self-signed": true,
  "tls-cert-out": "proxy.pem",
  "upstream-insecure": true,
  "upstream-header-timeout": "5s",
  "max-event-size": "1MiB",
  "keepalive": "45s"
}`), 0o644)
	cfg, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "edge" || len(cfg.Faults) != 2 || cfg.OnUpstreamError != "abort" || cfg.TimeScale != 10 ||
		!cfg.TLSSelfSigned || cfg.TLSCertOut != "proxy.pem" || !cfg.UpstreamInsecure ||
		cfg.UpstreamHeaderTimeout != 5*time.Second || cfg.MaxEventSize != 1<<20 || cfg.Keepalive != 45*time.Second {
		t.Fatalf("%+v", cfg)
	}
	if cfg, err := ParseConfig("c.json", []byte(`{"upstream-header-timeout": "0", "max-event-size": 4096, "keepalive": "0"}`)); err != nil ||
		cfg.UpstreamHeaderTimeout >= 0 || cfg.MaxEventSize != 4096 || cfg.Keepalive >= 0 {
		t.Fatalf("%+v %v", cfg, err)
	}
	// SI and IEC sizes mean what they say.
	if cfg, err := ParseConfig("c.json", []byte(`{"max-event-size": "16MB"}`)); err != nil || cfg.MaxEventSize != 16_000_000 {
		t.Fatalf("16MB: %d %v", cfg.MaxEventSize, err)
	}
	cases := []struct{ data, msg string }{
		{``, `bad.json: bad proxy config: empty file`},
		{`{"listen": "x",}`, `bad.json:1: bad proxy config: invalid character '}'`},
		{"{\n  \"lisen\": \"x\"\n}", `bad.json:2: bad proxy config: unknown key "lisen" (keys: listen, upstream,`},
		{"{\n\"time-scale\": \"fast\"}", `bad.json:2: bad proxy config: key "time-scale" must be float64, not string`},
		{"{\"fault\": [\n\"reset\",\n\"latency:dealy=1s\"]}", `bad.json:3: fault 2: bad fault "latency:dealy=1s": unknown key "dealy"`},
		{`{} {}`, `bad.json:1: bad proxy config: data after the config object`},
		{`{"listen": `, `bad.json: bad proxy config: unexpected end of file`},
		{"{\n\"upstream-header-timeout\": \"soon\"}", `bad.json:2: bad proxy config: "upstream-header-timeout": invalid duration "soon" (use e.g. 30s, 1h, 72h, 3d) (e.g. "30s"; "0" for no limit)`},
		{"{\n\"upstream-header-timeout\": 30}", `bad.json:2: bad proxy config: "upstream-header-timeout": 30 — write "30ms" (30 ms) or "30s" (30 s)`},
		{"{\"keepalive\": \"20000\"}", `bad.json:1: bad proxy config: "keepalive": 20000 — write "20000ms" (20 s) or "20000s" (5 h 33 min)`},
		{"{\n\n\"max-event-size\": \"big\"}", `bad.json:3: bad proxy config: max-event-size: invalid size "big"`},
		{"{\"max-event-size\": \"16M\"}", `bad.json:1: bad proxy config: max-event-size: invalid size "16M": M could be MB or MiB`},
		{"{\"max-event-size\": -1}", `bad.json:1: bad proxy config: max-event-size: invalid size "-1"`},
	}
	for _, c := range cases {
		_, err := ParseConfig("bad.json", []byte(c.data))
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: %v, want %q", c.data, err, c.msg)
		}
	}
}

func FuzzParseFault(f *testing.F) {
	for _, s := range []string{"reset:hop=upstream,after=5s,toxicity=0.5", "latency:delay=1s,jitter=1ms",
		"drop-events:every=3,match=/s?a=1,b=2", "preset:aws-alb:toxicity=0.1", "slicer:size=4,variation=1,delay=1ms",
		"http-status:code=524,timeout=1m", "bandwidth:rate=10KB", ":", "a:b=c=d,,", "reset:bytes=9999999999999GB",
		"reset_peer:timeout=5000", "slicer:average_size=8,size_variation=2,delay=3", "latency:latency=1.5,stream=upstream", "limit_data:bytes=10,match=/a,b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseFault(s)
		if err != nil {
			if !errors.Is(err, ErrBadFault) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%q: bad error %v", s, err)
			}
			return
		}
		again, err := ParseFault(spec.Spec)
		if err != nil || again.Spec != spec.Spec {
			t.Fatalf("%q → %q does not read back: %v %q", s, spec.Spec, err, again.Spec)
		}
		if _, err := newFault(spec, 7); err != nil {
			t.Fatalf("%q parses but does not build: %v", s, err)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"listen": "127.0.0.1:0", "fault": ["reset", {"kind": "latency"}]}`))
	f.Add([]byte(`{"fault": [{"kind": "preset", "preset": "nginx"}], "time-scale": 1e9}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseConfig("fuzz.json", data)
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("message on several lines: %q", err)
		}
	})
}
