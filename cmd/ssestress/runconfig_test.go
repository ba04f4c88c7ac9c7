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
  "symbol-groups": [["AAPL", "MSFT"], ["AMZN"]],
  "churn-rate": 2,
  "event-rate": "100-1000",
  "monitor-interval": "300s",
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
		ChurnRate: 2, EventRate: "100-1000", MonitorInterval: dur.Duration(5 * time.Minute),
		Rate: "5", Path: "/sse?s={symbols}", Seed: 42,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	flat, err := parseRunConfig("f.json", []byte(`{"symbol-groups": ["AAPL,MSFT", " AMZN "]}`))
	if err != nil || !reflect.DeepEqual(flat.SymbolGroups, [][]string{{"AAPL", "MSFT"}, {"AMZN"}}) {
		t.Fatalf("flat groups: %v, %v", flat.SymbolGroups, err)
	}
	// The seed's TestConfig names are aliases of the same keys.
	seed, err := parseRunConfig("seed.json", []byte(`{"scenario": "churn", "target": "http://127.0.0.1:8090", "connections": 10,
  "duration": "3d", "symbolGroups": [["AAPL", "MSFT"], ["AMZN"]], "churnRate": 2, "messageRate": "100-1000",
  "monitorInterval": "5m", "rate": 5, "path": "/sse?s={symbols}", "seed": 42}`))
	if err != nil || !reflect.DeepEqual(seed, c) {
		t.Fatalf("seed's names: %v\n%+v\n%+v", err, seed, c)
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
		{"unknown key, close to a known one", "{\n  \"conections\": 20\n}", `c.json:2: unknown key "conections" (did you mean "connections"?)`},
		{"unknown key close to an alias", "{\n  \"churnrate\": 20\n}", `c.json:2: unknown key "churnrate" (did you mean "churn-rate"?)`},
		{"unknown key", `{"colour": "red"}`, `c.json:1: unknown key "colour" (known keys: churn-rate, connections, duration, event-rate, monitor-interval, path, rate, scenario, seed, symbol-groups, target, variable)`},
		{"alias and name", `{"monitorInterval": "5s", "monitor-interval": "6s"}`, `c.json:1: "monitor-interval" given twice ("monitor-interval" and "monitorInterval" are one key)`},
		{"bare duration", "{\n  \"scenario\": \"flood\",\n  \"duration\": 20000\n}", `c.json:3: "duration": 20000 — write "20000ms" (20 s) or "20000s" (5 h 33 min)`},
		{"bare duration in a string", `{"duration": "20000"}`, `c.json:1: "duration": 20000 — write "20000ms" (20 s) or "20000s" (5 h 33 min)`},
		{"bare monitor interval", `{"monitorInterval": 5000}`, `c.json:1: "monitorInterval": 5000 — write "5000ms" (5 s) or "5000s" (1 h 23 min)`},
		{"twice", `{"connections": 1, "connections": 2}`, `c.json:1: "connections" given twice`},
		{"null", `{"duration": null}`, `c.json:1: "duration": null is not a value (leave the key out for the default)`},
		{"string for int", `{"connections": "20"}`, `c.json:1: "connections": must be an integer, got "20"`},
		{"fraction", `{"connections": 2.5}`, `c.json:1: "connections": must be an integer, got 2.5`},
		{"zero connections", `{"connections": 0}`, `c.json:1: "connections": must be a positive integer up to 1000000, got 0`},
		{"bad duration", "{\n\"scenario\": \"flood\",\n\"duration\": \"forever\"}", `c.json:3: "duration": invalid duration "forever" (use e.g. 30s, 1h, 72h, 3d)`},
		{"negative duration", `{"duration": -5}`, `c.json:1: "duration": invalid duration "-5": negative`},
		{"zero duration", `{"duration": "0s"}`, `c.json:1: "duration": must be positive`},
		{"bad scenario", `{"scenario": "storm"}`, `c.json:1: "scenario": unknown scenario "storm" (use flood, long-running, churn, mixed)`},
		{"bad target", `{"target": "127.0.0.1:8090"}`, `c.json:1: "target": invalid URL "127.0.0.1:8090" (use e.g. http://127.0.0.1:8090)`},
		{"bad target scheme", `{"target": "ftp://h/x"}`, `c.json:1: "target": invalid URL "ftp://h/x": scheme must be http or https`},
		{"groups not arrays", `{"symbolGroups": "AAPL"}`, `c.json:1: "symbolGroups": must be an array of groups, e.g. [["AAPL","MSFT"],["AMZN"]] or ["AAPL,MSFT","AMZN"]`},
		{"empty group", `{"symbolGroups": [["AAPL"], []]}`, `c.json:1: "symbolGroups": group 2 is empty`},
		{"symbol with space", `{"symbolGroups": [["AA PL"]]}`, `c.json:1: "symbolGroups": group 1: symbol "AA PL" contains a space or URL delimiter`},
		{"negative churn", `{"churnRate": -1}`, `c.json:1: "churnRate": must be a positive number (per minute), got -1`},
		{"bad message rate", `{"messageRate": "lots"}`, `c.json:1: "messageRate": invalid message rate "lots" (use messages per minute, e.g. 600 or 100-1000)`},
		{"short monitor interval", `{"monitorInterval": "10ms"}`, `c.json:1: "monitorInterval": must be at least 100ms, got 10ms`},
		{"bad rate", `{"rate": "5-1"}`, `c.json:1: "rate": invalid rate "5-1" (use connections per second, e.g. 5 or 1-5)`},
		{"bad rate type", `{"rate": true}`, `c.json:1: "rate": must be a number or a string such as "1-5", got true`},
		{"bad variable", `{"variable": "10-5"}`, `c.json:1: "variable": invalid range "10-5" (use e.g. 5-10)`},
		{"bad path", `{"path": "stream"}`, `c.json:1: "path": must start with /, got "stream"`},
		{"bad seed", `{"seed": -1}`, `c.json:1: "seed": must be a non-negative integer`},
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
	f.Add([]byte(`{"symbol-groups":[["A"]],"event-rate":"600","monitor-interval":"5m","duration":20000}`))
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
