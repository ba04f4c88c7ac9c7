package main

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/dur"
)

// TestParseRunConfig reads a full config file in both accepted shapes of
// symbolGroups, then every kind of bad file, each with the exact message.
func TestParseRunConfig(t *testing.T) {
	good := `{
  "scenario": "churn",
  "target": "http://127.0.0.1:8090",
  "connections": 10,
  "duration": "3d",
  "symbolGroups": [["AAPL", "MSFT"], ["AMZN"]],
  "churnRate": 2,
  "messageRate": "100-1000",
  "monitorInterval": "300s",
  "rate": 5,
  "path": "/sse?s={symbols}",
  "seed": 42
}`
	c, err := parseRunConfig("custom-test.json", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := runConfig{
		Scenario: "churn", Target: "http://127.0.0.1:8090", Connections: 10,
		Duration: dur.Duration(72 * time.Hour), SymbolGroups: [][]string{{"AAPL", "MSFT"}, {"AMZN"}},
		ChurnRate: 2, MessageRate: "100-1000", MonitorInterval: dur.Duration(5 * time.Minute),
		Rate: "5", Path: "/sse?s={symbols}", Seed: 42,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	flat, err := parseRunConfig("f.json", []byte(`{"symbolGroups": ["AAPL,MSFT", " AMZN "]}`))
	if err != nil || !reflect.DeepEqual(flat.SymbolGroups, [][]string{{"AAPL", "MSFT"}, {"AMZN"}}) {
		t.Fatalf("flat groups: %v, %v", flat.SymbolGroups, err)
	}
	// The resolved config written into the session file reads back the same.
	full := c.withDefaults()
	raw, _ := json.Marshal(full)
	back, err := parseRunConfig("back.json", raw)
	if err != nil || !reflect.DeepEqual(back, full) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, back, full)
	}

	for _, tc := range []struct{ name, file, msg string }{
		{"empty", ``, `c.json: invalid JSON: unexpected end of file`},
		{"not an object", `[1, 2]`, `c.json:1: the config must be a JSON object {...}`},
		{"truncated", "{\n  \"connections\": 20,\n", `c.json: invalid JSON: unexpected end of file`},
		{"syntax", "{\n  \"connections\": 20,\n  }", `c.json:3: invalid JSON: invalid character '}' looking for beginning of object key string`},
		{"trailing data", `{"connections": 20} {}`, `c.json:1: unexpected data after the JSON object`},
		{"unknown field, close to a known one", "{\n  \"conections\": 20\n}", `c.json:2: unknown field "conections" (did you mean "connections"?)`},
		{"unknown field", `{"colour": "red"}`, `c.json:1: unknown field "colour" (known fields: churnRate, connections, duration, messageRate, monitorInterval, path, rate, scenario, seed, symbolGroups, target, variable)`},
		{"twice", `{"connections": 1, "connections": 2}`, `c.json:1: field "connections" given twice`},
		{"null", `{"duration": null}`, `c.json:1: field "duration": null is not a value (leave the field out for the default)`},
		{"string for int", `{"connections": "20"}`, `c.json:1: field "connections": must be an integer, got "20"`},
		{"fraction", `{"connections": 2.5}`, `c.json:1: field "connections": must be an integer, got 2.5`},
		{"zero connections", `{"connections": 0}`, `c.json:1: field "connections": must be a positive integer up to 1000000, got 0`},
		{"bad duration", "{\n\"scenario\": \"flood\",\n\"duration\": \"forever\"}", `c.json:3: field "duration": invalid duration "forever" (use e.g. 30s, 1h, 72h, 3d)`},
		{"negative duration", `{"duration": -5}`, `c.json:1: field "duration": invalid duration "-5": negative`},
		{"zero duration", `{"duration": "0s"}`, `c.json:1: field "duration": must be positive`},
		{"bad scenario", `{"scenario": "storm"}`, `c.json:1: field "scenario": unknown scenario "storm" (use flood, long-running, churn, mixed)`},
		{"bad target", `{"target": "127.0.0.1:8090"}`, `c.json:1: field "target": invalid URL "127.0.0.1:8090" (use e.g. http://127.0.0.1:8090)`},
		{"bad target scheme", `{"target": "ftp://h/x"}`, `c.json:1: field "target": invalid URL "ftp://h/x": scheme must be http or https`},
		{"groups not arrays", `{"symbolGroups": "AAPL"}`, `c.json:1: field "symbolGroups": must be an array of groups, e.g. [["AAPL","MSFT"],["AMZN"]] or ["AAPL,MSFT","AMZN"]`},
		{"empty group", `{"symbolGroups": [["AAPL"], []]}`, `c.json:1: field "symbolGroups": group 2 is empty`},
		{"symbol with space", `{"symbolGroups": [["AA PL"]]}`, `c.json:1: field "symbolGroups": group 1: symbol "AA PL" contains a space or URL delimiter`},
		{"negative churn", `{"churnRate": -1}`, `c.json:1: field "churnRate": must be a positive number (per minute), got -1`},
		{"bad message rate", `{"messageRate": "lots"}`, `c.json:1: field "messageRate": invalid message rate "lots" (use messages per minute, e.g. 600 or 100-1000)`},
		{"short monitor interval", `{"monitorInterval": "10ms"}`, `c.json:1: field "monitorInterval": must be at least 100ms, got 10ms`},
		{"bad rate", `{"rate": "5-1"}`, `c.json:1: field "rate": invalid rate "5-1" (use connections per second, e.g. 5 or 1-5)`},
		{"bad rate type", `{"rate": true}`, `c.json:1: field "rate": must be a number or a string such as "1-5", got true`},
		{"bad variable", `{"variable": "10-5"}`, `c.json:1: field "variable": invalid range "10-5" (use e.g. 5-10)`},
		{"bad path", `{"path": "stream"}`, `c.json:1: field "path": must start with /, got "stream"`},
		{"bad seed", `{"seed": -1}`, `c.json:1: field "seed": must be a non-negative integer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRunConfig("c.json", []byte(tc.file))
			if err == nil {
				t.Fatalf("accepted %s", tc.file)
			}
			if err.Error() != tc.msg {
				t.Fatalf("message\n got: %s\nwant: %s", err, tc.msg)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "abc", 0}, {"conections", "connections", 1}, {"rate", "seed", 4}, {"", "abc", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// FuzzParseRunConfig: no input makes the config parser panic, and whatever
// it accepts has values in range.
func FuzzParseRunConfig(f *testing.F) {
	f.Add([]byte(`{"scenario":"mixed","connections":15,"duration":"48h","variable":"5-10","churnRate":1}`))
	f.Add([]byte(`{"symbolGroups":[["A"],["B","C"]],"messageRate":600,"monitorInterval":"5m"}`))
	f.Add([]byte(`{"connections": 1e3}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := parseRunConfig("f.json", raw)
		if err != nil {
			return
		}
		if c.Connections < 0 || c.Duration < 0 || c.ChurnRate < 0 || (c.MonitorInterval != 0 && time.Duration(c.MonitorInterval) < minMonitorInterval) {
			t.Fatalf("accepted out-of-range values: %+v", c)
		}
	})
}
