package proxy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestToxiproxyAliases: Toxiproxy's type names and attributes on --fault
// mean what they mean in Toxiproxy, in its units.
func TestToxiproxyAliases(t *testing.T) {
	for in, want := range map[string]string{
		"reset_peer:timeout=5000":                         "reset:hop=client,direction=down,after=5s",
		"reset_peer":                                      "reset:hop=client,direction=down",
		"reset_peer:stream=upstream,timeout=250":          "reset:hop=upstream,direction=up,after=250ms",
		"reset_peer:timeout=2s":                           "reset:hop=client,direction=down,after=2s",
		"slow_close:delay=100":                            "slow-close:hop=client,delay=100ms",
		"slow_close:stream=upstream,delay=100":            "slow-close:hop=upstream,delay=100ms",
		"limit_data:bytes=1000":                           "limit-data:hop=client,direction=down,bytes=1000",
		"limit_data:bytes=64KB,stream=upstream":           "limit-data:hop=upstream,direction=up,bytes=64KB",
		"latency:latency=100,jitter=10":                   "latency:hop=client,direction=down,delay=100ms,jitter=10ms",
		"latency:latency=1.5":                             "latency:hop=client,direction=down,delay=1.5ms,jitter=0ms",
		"slicer:average_size=64,size_variation=8,delay=3": "slicer:hop=client,direction=down,delay=3us,size=64,variation=8",
		"latency:stream=upstream,latency=20":              "latency:hop=upstream,direction=up,delay=20ms,jitter=0ms",
		"reset_peer:timeout=100,toxicity=0.5,name=rp":     "reset:hop=client,direction=down,toxicity=0.5,after=100ms,name=rp",
		"reset_peer:timeout=100,hop=upstream":             "reset:hop=upstream,direction=down,after=100ms",
		// Our own forms stay ours.
		"latency:delay=50ms":   "latency:hop=client,direction=down,delay=50ms",
		"bandwidth:rate=100KB": "bandwidth:hop=client,direction=down,rate=100KB",
		"timeout:timeout=5s":   "timeout:hop=client,direction=both,timeout=5s",
	} {
		fs, err := ParseFault(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if fs.Spec != want {
			t.Errorf("%s: spec %s, want %s", in, fs.Spec, want)
		}
	}
}

// TestBareUnitsRefused: our own keys need units; Toxiproxy's bandwidth
// rate in particular is never guessed.
func TestBareUnitsRefused(t *testing.T) {
	for in, want := range map[string]string{
		"bandwidth:rate=100":                     "100 has no unit — write 100KB (Toxiproxy's KB/s: 100000 bytes/s) or 100B (100 bytes/s)",
		"timeout:timeout=5000":                   `5000 has no unit — write "5000ms"`,
		"latency:jitter=10":                      `10 has no unit`,
		"reset_peer:timeout=-5":                  `not a number of ms`,
		"slicer:average_size=0":                  "average_size must be at least 1 byte",
		"slicer:average_size=8,size_variation=8": "size_variation (8) must be smaller than average_size (8)",
		"latency:latency=10,delay=5ms":           `unknown attribute "delay" for latency`,
		"reset_peer:timeout=10,after=1s":         `unknown attribute "after" for reset_peer`,
		"reset_peer:stream=sideways":             `stream "sideways" must be upstream or downstream`,
		"limit_data:bytes=1.5":                   "not a whole number of bytes",
		"slow_close:delay=10,direction=up":       "key direction does not apply to slow-close",
	} {
		_, err := ParseFault(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	if fs, err := ParseFault("bandwidth:rate=10KB/s"); err != nil || fs.Params["rate"] != "10KB/s" {
		t.Errorf("rate with /s: %v %v", fs, err)
	}
}

// TestToxicRoundTrip: every fault shown as a toxic reads back to the same
// fault, and Toxiproxy's types show in Toxiproxy's units.
func TestToxicRoundTrip(t *testing.T) {
	for _, text := range []string{
		"latency:delay=50ms,jitter=10ms", "latency", "latency:hop=upstream,direction=down,delay=1.5ms",
		"bandwidth:rate=16KiB,direction=up", "slicer:size=64,variation=8,delay=250us", "slicer",
		"slow-close:delay=2s,hop=upstream", "timeout:timeout=5s,action=rst", "timeout",
		"reset:after=5s", "reset:hop=upstream,after=30s,toxicity=0.5", "reset:bytes=1000", "reset:events=3,direction=down",
		"limit-data:bytes=64KB", "idle-timeout:idle=60s,action=rst", "nat-drop:idle=350s,hop=upstream",
		"drop-events:every=3", "http-status:code=503", "down:action=rst", "max-age:age=10m,after=1s,match=/stream?symbols=A,B",
		"preset:aws-alb", "preset:nginx:toxicity=0.5,after=2s", "stall:events=2,name=st",
	} {
		fs, err := ParseFault(text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		toxic := ToxicOf(fs)
		raw, err := json.Marshal(toxic)
		if err != nil {
			t.Fatal(err)
		}
		var back Toxic
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		got, err := SpecOfToxic(back)
		if err != nil {
			t.Errorf("%s → %s: %v", text, raw, err)
			continue
		}
		a, _ := newFault(fs, 1)
		b, _ := newFault(got, 1)
		if got.Name != fs.Name || got.Hop != fs.Hop || got.Direction != fs.Direction || got.Toxicity != fs.Toxicity ||
			got.After != fs.After || got.Match != fs.Match || got.Kind != fs.Kind || !reflect.DeepEqual(behaviours(a), behaviours(b)) {
			t.Errorf("%s → %s → %s", fs.Spec, raw, got.Spec)
		}
	}
	fs, _ := ParseFault("latency:delay=50ms,jitter=10ms")
	if got := ToxicOf(fs); got.Type != "latency" || got.Stream != StreamDown || got.Attributes["latency"] != 50.0 || got.Attributes["jitter"] != 10.0 {
		t.Errorf("latency shows as %+v", got)
	}
	fs, _ = ParseFault("bandwidth:rate=16KB,direction=up,hop=upstream")
	if got := ToxicOf(fs); got.Type != "bandwidth" || got.Stream != StreamUp || got.Attributes["rate"] != 16.0 || len(got.Attributes) != 1 {
		t.Errorf("bandwidth shows as %+v", got)
	}
	fs, _ = ParseFault("reset:after=1500ms")
	if got := ToxicOf(fs); got.Type != "reset_peer" || got.Attributes["timeout"] != 1500.0 {
		t.Errorf("reset shows as %+v", got)
	}
	fs, _ = ParseFault("idle-timeout:idle=60s")
	if got := ToxicOf(fs); got.Type != "idle-timeout" || got.Attributes["idle"] != "60s" || got.Attributes["direction"] != "both" {
		t.Errorf("idle-timeout shows as %+v", got)
	}
}

// behaviours are the built behaviours of a fault (a preset's parts').
func behaviours(f *Fault) []behaviour {
	var out []behaviour
	for _, l := range f.leaves() {
		out = append(out, l.b)
	}
	return out
}

// TestToxiproxyDefaults: what a toxic shows for a key a fault left out is
// the kind's own default.
func TestToxiproxyDefaults(t *testing.T) {
	for name, tt := range toxiTypes {
		for _, a := range tt.attrs {
			if a.def == "" {
				continue
			}
			bare := tt.kind
			with := bare + ":" + a.key + "=" + a.def
			if tt.kind == "bandwidth" || tt.kind == "limit-data" {
				continue
			}
			f1, err1 := ParseFault(bare)
			f2, err2 := ParseFault(with)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: %v %v", name, err1, err2)
			}
			if a.key == "after" {
				if f1.After != f2.After {
					t.Errorf("%s: after default %s", name, a.def)
				}
				continue
			}
			b1, _ := kinds[tt.kind].build(f1, 1)
			b2, _ := kinds[tt.kind].build(f2, 1)
			if !reflect.DeepEqual(b1, b2) {
				t.Errorf("%s.%s: shown default %s is not %s's default (%+v vs %+v)", name, a.name, a.def, tt.kind, b1, b2)
			}
		}
	}
}

// TestSpecOfToxicErrors: bad toxics are refused with what is wrong.
func TestSpecOfToxicErrors(t *testing.T) {
	for _, c := range []struct {
		toxic Toxic
		want  string
	}{
		{Toxic{Type: "wobble"}, `unknown toxic type "wobble"`},
		{Toxic{Type: "latency", Toxicity: 1, Attributes: map[string]any{"latancy": 5.0}}, `unknown attribute "latancy" for latency (attributes: latency (ms), jitter (ms)`},
		{Toxic{Type: "latency", Toxicity: 2}, "toxicity 2 is not a probability"},
		{Toxic{Type: "bandwidth", Toxicity: 1}, "rate must be more than 0 KB/s"},
		{Toxic{Type: "latency", Toxicity: 1, Attributes: map[string]any{"latency": []any{1.0}}}, "must be a number or a string"},
		{Toxic{Type: "idle-timeout", Toxicity: 1, Attributes: map[string]any{"idle": 60.0}}, "60 has no unit"},
		{Toxic{Type: "http-status", Stream: "upstream", Toxicity: 1}, "http-status acts on hop client only"},
		{Toxic{Type: "preset", Toxicity: 1, Attributes: map[string]any{"preset": "f5"}}, `preset "f5" is not a preset`},
	} {
		_, err := SpecOfToxic(c.toxic)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.toxic, err, c.want)
		}
	}
	fs, err := SpecOfToxic(Toxic{Type: "latency", Toxicity: 1, Attributes: map[string]any{"latency": 100.0}})
	if err != nil || fs.Name != "latency_downstream" {
		t.Errorf("default name: %+v %v", fs, err)
	}
	if d, _ := paramDuration(fs, "delay", 0); d != 100*time.Millisecond {
		t.Errorf("latency 100 is %v", d)
	}
}

// FuzzToxicRoundTrip: every fault that parses shows as a toxic that reads
// back, through its JSON, to a fault that acts the same.
func FuzzToxicRoundTrip(f *testing.F) {
	for _, s := range []string{"reset:after=5s", "latency:delay=1.5ms,jitter=1us", "reset_peer:timeout=7,stream=upstream",
		"slicer:size=4,variation=1,delay=1ms", "idle-timeout:idle=60s,direction=up,hop=upstream", "preset:nginx:after=1s",
		"timeout:action=rst,timeout=1s", "bandwidth:rate=1.5KB", "max-age:age=1h,match=/s?x=1,2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := ParseFault(s)
		if err != nil || !utf8.ValidString(s) { // JSON carries UTF-8 only
			return
		}
		raw, err := json.Marshal(ToxicOf(fs))
		if err != nil {
			t.Fatalf("%s: %v", fs.Spec, err)
		}
		var toxic Toxic
		if err := json.Unmarshal(raw, &toxic); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		got, err := SpecOfToxic(toxic)
		if err != nil {
			t.Fatalf("%s → %s does not read back: %v", fs.Spec, raw, err)
		}
		a, err1 := newFault(fs, 1)
		b, err2 := newFault(got, 1)
		if err1 != nil || err2 != nil || got.Hop != fs.Hop || got.Direction != fs.Direction || got.Toxicity != fs.Toxicity ||
			got.After != fs.After || got.Match != fs.Match || !reflect.DeepEqual(behaviours(a), behaviours(b)) {
			t.Fatalf("%s → %s → %s (%v %v)", fs.Spec, raw, got.Spec, err1, err2)
		}
	})
}
