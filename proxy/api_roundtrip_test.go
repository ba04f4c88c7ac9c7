package proxy

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestAPIFaultsRoundTrip: what GET /faults lists can be POSTed back as it
// is, to the same proxy after a DELETE, and lists the same again: names,
// presets, kind keys under params, after in seconds (after_s), match with
// commas.
func TestAPIFaultsRoundTrip(t *testing.T) {
	srv := startFeedT(t)
	specs := withFaults(t,
		"reset:hop=upstream,after=1m30s,toxicity=0.5",
		"latency:delay=50ms,jitter=10ms,name=slow",
		"preset:aws-alb:toxicity=0.2",
		"drop-events:every=3,match=/stream?symbols=A,B",
		"bandwidth:rate=16KiB,direction=up",
	)
	p := startProxy(t, Config{Upstream: srv, Name: "edge", API: "127.0.0.1:0", Faults: specs})
	list := func() []json.RawMessage {
		t.Helper()
		code, body := api(t, p, "", "GET", "/faults", "")
		var v struct{ Faults []json.RawMessage }
		if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("GET /faults: %d %s", code, body)
		}
		return v.Faults
	}
	before := list()
	if len(before) != len(specs) {
		t.Fatalf("%d faults listed, want %d", len(before), len(specs))
	}
	if !strings.Contains(string(before[0]), `"after_s": 90`) || strings.Contains(string(before[0]), "_ns") {
		t.Fatalf("after is not in seconds: %s", before[0])
	}
	for _, raw := range before {
		var f FaultSpec
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatalf("listed fault does not read back: %v\n%s", err, raw)
		}
		if code, body := api(t, p, "", "DELETE", "/faults/"+url.PathEscape(f.Name), ""); code != 204 {
			t.Fatalf("DELETE %s: %d %s", f.Name, code, body)
		}
		if code, body := api(t, p, "", "POST", "/faults", string(raw)); code != 201 {
			t.Fatalf("POST back %s: %d %s", raw, code, body)
		}
	}
	after := list()
	byName := func(l []json.RawMessage) map[string]FaultSpec {
		m := map[string]FaultSpec{}
		for _, raw := range l {
			var f FaultSpec
			json.Unmarshal(raw, &f)
			m[f.Name] = f
		}
		return m
	}
	if got, want := byName(after), byName(before); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the round trip:\n%v\nwant\n%v", got, want)
	}
	for i, s := range specs {
		if byName(after)[s.Name].Spec != s.Spec {
			t.Errorf("fault %d: spec %q, want %q", i, byName(after)[s.Name].Spec, s.Spec)
		}
	}
	// The listed form edited and sent back: a changed toxicity is taken.
	var f map[string]any
	json.Unmarshal(before[0], &f)
	f["toxicity"] = 0.25
	edited, _ := json.Marshal(f)
	if code, body := api(t, p, "", "PUT", "/faults/"+url.PathEscape(specs[0].Name), string(edited)); code != 200 || !strings.Contains(body, `"toxicity": 0.25`) {
		t.Fatalf("PUT edited: %d %s", code, body)
	}
	// Durations need a unit except in after_s; a bare number says both
	// readings.
	if code, body := api(t, p, "", "POST", "/faults", `{"kind": "latency", "delay": 50}`); code != 400 ||
		!strings.Contains(body, `delay: 50 has no unit — write \"50ms\" (50 ms) or \"50s\" (50 s)`) {
		t.Fatalf("bare delay: %d %s", code, body)
	}
	if code, body := api(t, p, "", "POST", "/faults", `{"kind": "reset", "after": "2s", "after_s": 2}`); code != 400 ||
		!strings.Contains(body, "not both") {
		t.Fatalf("after and after_s: %d %s", code, body)
	}
}
