package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/inputfile"
)

// runConfig is a run's configuration. Its JSON form is the config file of
// run --config, whose keys are the flags' names (one rule for every config
// file: a key is the flag it stands for, kebab case). The seed's
// TestConfig names are accepted as aliases (symbolGroups, churnRate,
// messageRate, monitorInterval; see configFields); flags override the
// file. A zero value means the scenario's default. Durations are strings
// with a unit ("30s", "72h", "3d"): a bare number is refused with both of
// its readings.
type runConfig struct {
	Scenario        string       `json:"scenario"`
	Target          string       `json:"target,omitempty"` // empty: the embedded server
	Connections     int          `json:"connections"`      // steady (mixed), base (churn) or all
	Duration        dur.Duration `json:"duration"`
	SymbolGroups    [][]string   `json:"symbol-groups"`
	ChurnRate       float64      `json:"churn-rate,omitempty"` // per minute
	EventRate       string       `json:"event-rate,omitempty"` // embedded server, SSE events per minute per group
	MonitorInterval dur.Duration `json:"monitor-interval"`
	Rate            string       `json:"rate"`               // connections opened per second: 5 or 1-5
	Variable        string       `json:"variable,omitempty"` // mixed: size range of the variable set
	Path            string       `json:"path"`               // request template, {symbols} = the group
	Seed            uint64       `json:"seed"`               // pacing and variable-set draws
	// GroupPaths[i], when not empty, is the request template of
	// SymbolGroups[i] instead of Path. In the file a group with its own
	// path is an object: {"symbols": ["AAPL"], "path": "/v2/stream?s={symbols}"}.
	GroupPaths []string `json:"-"`
}

// MarshalJSON writes the config as the config file reads it: a group with
// its own path as an object, the others as arrays.
func (c runConfig) MarshalJSON() ([]byte, error) {
	type plain runConfig
	groups := make([]any, len(c.SymbolGroups))
	for i, g := range c.SymbolGroups {
		groups[i] = g
		if i < len(c.GroupPaths) && c.GroupPaths[i] != "" {
			groups[i] = groupObject{Symbols: g, Path: c.GroupPaths[i]}
		}
	}
	return json.Marshal(struct {
		plain
		SymbolGroups []any `json:"symbol-groups"`
	}{plain(c), groups})
}

// groupObject is a symbol group with its own request path.
type groupObject struct {
	Symbols []string `json:"symbols"`
	Path    string   `json:"path"`
}

// configField is one key of the config file and the flag of the same
// name.
type configField struct {
	name  string // the flag's name and the config file's key
	alias string // the seed's TestConfig name, accepted in a config file ("" when the same)
	// duration: the value is a duration, typed with a unit.
	duration bool
	usage    string
	// values is what completion offers for the flag's value.
	values valueSpec
	// fromJSON and fromText set the field from a JSON value or a flag
	// string; their errors say what is wrong with the value, not where.
	fromJSON func(c *runConfig, raw json.RawMessage) error
	fromText func(c *runConfig, s string) error
}

// minMonitorInterval keeps the monitor from costing more than it measures.
const minMonitorInterval = 100 * time.Millisecond

// maxConnections is far above what one process can hold; it only rejects
// typos such as 2000000.
const maxConnections = 1_000_000

var configFields = []configField{
	{"scenario", "", false, "`NAME` of the scenario: " + strings.Join(clients.Scenarios, ", "), words(clients.Scenarios...),
		func(c *runConfig, raw json.RawMessage) error { return configString(raw, c.setScenario) },
		(*runConfig).setScenario},
	{"target", "", false, "`URL` of the SSE service (default: start the embedded server); {symbols} marks where the group goes", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error { return configString(raw, c.setTarget) },
		(*runConfig).setTarget},
	{"connections", "", false, "`N` connections: all (flood, long-running), steady (mixed) or base (churn)", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error {
			n, err := configInt(raw)
			if err != nil {
				return err
			}
			return c.setConnections(n)
		},
		func(c *runConfig, s string) error {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("must be a positive integer, got %q", s)
			}
			return c.setConnections(n)
		}},
	{"duration", "", true, "run length `D`: 30s, 1h, 72h, 3d", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error { return c.setDuration(&c.Duration, raw, 0) },
		func(c *runConfig, s string) error { return c.setDurationText(&c.Duration, s, 0) }},
	{"symbol-groups", "symbolGroups", false, "symbol `GROUPS` assigned round-robin: 'AAPL,MSFT;AMZN,META' (groups separated by ;)", valueSpec{},
		(*runConfig).groupsFromJSON,
		func(c *runConfig, s string) error {
			var groups [][]string
			for _, g := range strings.Split(s, ";") {
				groups = append(groups, strings.Split(g, ","))
			}
			c.GroupPaths = nil // the flag replaces the file's groups, paths included
			return c.setGroups(groups)
		}},
	{"churn-rate", "churnRate", false, "`N` per minute: connections replaced (churn), changes of the variable set (mixed)", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error {
			var v float64
			if err := json.Unmarshal(raw, &v); err != nil {
				return errors.New("must be a number (per minute)")
			}
			return c.setChurnRate(v)
		},
		func(c *runConfig, s string) error {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				return fmt.Errorf("must be a number (per minute), got %q", s)
			}
			return c.setChurnRate(v)
		}},
	{"event-rate", "messageRate", false, "embedded server's `RATE` in SSE events per minute per symbol group: 600 or 100-1000", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error { return configNumberOrString(raw, c.setEventRate) },
		(*runConfig).setEventRate},
	{"monitor-interval", "monitorInterval", true, "`D` between stored samples of the metrics", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error {
			return c.setDuration(&c.MonitorInterval, raw, minMonitorInterval)
		},
		func(c *runConfig, s string) error {
			return c.setDurationText(&c.MonitorInterval, s, minMonitorInterval)
		}},
	{"rate", "", false, "`RATE` of connections opened per second while ramping up: 5 or 1-5", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error { return configNumberOrString(raw, c.setRate) },
		(*runConfig).setRate},
	{"variable", "", false, "mixed: size `RANGE` of the variable set, e.g. 5-10", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error { return configNumberOrString(raw, c.setVariable) },
		(*runConfig).setVariable},
	{"path", "", false, "request `PATH` and query template; {symbols} becomes the group (default " + clients.DefaultPath + ")", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error { return configString(raw, c.setPath) },
		(*runConfig).setPath},
	{"seed", "", false, "`SEED` of the pacing and variable-set draws (same seed, same schedule)", valueSpec{},
		func(c *runConfig, raw json.RawMessage) error {
			n, err := configInt(raw)
			if err != nil || n < 0 {
				return errors.New("must be a non-negative integer")
			}
			c.Seed = uint64(n)
			return nil
		},
		func(c *runConfig, s string) error {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return fmt.Errorf("must be a non-negative integer, got %q", s)
			}
			c.Seed = n
			return nil
		}},
}

func (c *runConfig) setScenario(s string) error {
	if !slices.Contains(clients.Scenarios, s) {
		return fmt.Errorf("unknown scenario %q (use %s)", s, strings.Join(clients.Scenarios, ", "))
	}
	c.Scenario = s
	return nil
}

func (c *runConfig) setTarget(s string) error {
	if _, err := clients.StreamURL(s, "", []string{"X"}); err != nil {
		return err
	}
	c.Target = s
	return nil
}

func (c *runConfig) setConnections(n int) error {
	if n <= 0 || n > maxConnections {
		return fmt.Errorf("must be a positive integer up to %d, got %d", maxConnections, n)
	}
	c.Connections = n
	return nil
}

func (c *runConfig) setDuration(d *dur.Duration, raw json.RawMessage, minimum time.Duration) error {
	var v dur.Duration
	if err := v.UnmarshalJSON(raw); err != nil {
		return err // a *dur.BareNumberError for a number without a unit
	}
	return checkDuration(d, v, minimum)
}

func (c *runConfig) setDurationText(d *dur.Duration, s string, minimum time.Duration) error {
	var v dur.Duration
	if err := v.Set(s); err != nil {
		return err
	}
	return checkDuration(d, v, minimum)
}

func checkDuration(d *dur.Duration, v dur.Duration, minimum time.Duration) error {
	if v <= 0 {
		return errors.New("must be positive")
	}
	if time.Duration(v) < minimum {
		return fmt.Errorf("must be at least %v, got %v", minimum, time.Duration(v))
	}
	*d = v
	return nil
}

func (c *runConfig) setGroups(groups [][]string) error {
	if len(groups) == 0 {
		return errors.New("needs at least one group")
	}
	out := make([][]string, 0, len(groups))
	for i, g := range groups {
		var syms []string
		for _, s := range g {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if strings.ContainsAny(s, " \t/?#&;") {
				return fmt.Errorf("group %d: symbol %q contains a space or URL delimiter", i+1, s)
			}
			syms = append(syms, s)
		}
		if len(syms) == 0 {
			return fmt.Errorf("group %d is empty", i+1)
		}
		out = append(out, syms)
	}
	c.SymbolGroups = out
	return nil
}

// groupsFromJSON reads symbolGroups: an array whose elements are arrays of
// symbols, "A,B" strings, or {"symbols": ..., "path": ...} objects.
func (c *runConfig) groupsFromJSON(raw json.RawMessage) error {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return errors.New(`must be an array of groups, e.g. [["AAPL","MSFT"],["AMZN"]] or ["AAPL,MSFT","AMZN"]`)
	}
	groups := make([][]string, len(elems))
	paths := make([]string, len(elems))
	anyPath := false
	for i, e := range elems {
		var err error
		groups[i], paths[i], err = groupFromJSON(e)
		if err != nil {
			return fmt.Errorf("group %d: %v", i+1, err)
		}
		anyPath = anyPath || paths[i] != ""
	}
	if err := c.setGroups(groups); err != nil {
		return err
	}
	c.GroupPaths = nil
	if anyPath {
		c.GroupPaths = paths
	}
	return nil
}

// groupFromJSON reads one element of symbolGroups.
func groupFromJSON(raw json.RawMessage) ([]string, string, error) {
	symbols := func(raw json.RawMessage) ([]string, error) {
		var list []string
		if err := json.Unmarshal(raw, &list); err == nil {
			return list, nil
		}
		var joined string
		if err := json.Unmarshal(raw, &joined); err == nil {
			return strings.Split(joined, ","), nil
		}
		return nil, fmt.Errorf(`symbols must be an array of strings or "A,B", got %s`, raw)
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		syms, err := symbols(raw)
		return syms, "", err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, "", fmt.Errorf("invalid object: %v", err)
	}
	for k := range obj {
		if k != "symbols" && k != "path" {
			return nil, "", fmt.Errorf(`unknown field %q (a group object has "symbols" and "path")`, k)
		}
	}
	rawSyms, ok := obj["symbols"]
	if !ok {
		return nil, "", errors.New(`a group object needs "symbols"`)
	}
	syms, err := symbols(rawSyms)
	if err != nil {
		return nil, "", err
	}
	path := ""
	if rawPath, ok := obj["path"]; ok {
		if err := json.Unmarshal(rawPath, &path); err != nil {
			return nil, "", fmt.Errorf("path must be a string, got %s", rawPath)
		}
		if !strings.HasPrefix(path, "/") {
			return nil, "", fmt.Errorf("path must start with /, got %q", path)
		}
	}
	return syms, path, nil
}

func (c *runConfig) setChurnRate(v float64) error {
	if !(v > 0) || math.IsInf(v, 0) {
		return fmt.Errorf("must be a positive number (per minute), got %v", v)
	}
	c.ChurnRate = v
	return nil
}

func (c *runConfig) setEventRate(s string) error {
	r, err := feed.ParseRate(s)
	if err != nil {
		return err
	}
	c.EventRate = r.String()
	return nil
}

func (c *runConfig) setRate(s string) error {
	r, err := clients.ParseRate(s)
	if err != nil {
		return err
	}
	c.Rate = r.String()
	return nil
}

func (c *runConfig) setVariable(s string) error {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	min, err1 := strconv.Atoi(strings.TrimSpace(lo))
	max, err2 := min, error(nil)
	if found {
		max, err2 = strconv.Atoi(strings.TrimSpace(hi))
	}
	if err1 != nil || err2 != nil || min < 0 || max < min || max > maxConnections {
		return fmt.Errorf("invalid range %q (use e.g. 5-10)", s)
	}
	c.Variable = strconv.Itoa(min) + "-" + strconv.Itoa(max)
	return nil
}

func (c *runConfig) setPath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("must start with /, got %q", s)
	}
	c.Path = s
	return nil
}

// variableRange is the mixed scenario's variable-set size range.
func (c *runConfig) variableRange() (int, int) {
	lo, hi, _ := strings.Cut(c.Variable, "-")
	min, _ := strconv.Atoi(lo)
	max, _ := strconv.Atoi(hi)
	return min, max
}

// withDefaults fills every unset field from the scenario's defaults.
func (c runConfig) withDefaults() runConfig {
	if c.Scenario == "" {
		c.Scenario = clients.Flood
	}
	d := clients.ScenarioDefaults[c.Scenario]
	if c.Connections == 0 {
		c.Connections = d.Connections
	}
	if c.Duration == 0 {
		c.Duration = dur.Duration(d.Duration)
	}
	if len(c.SymbolGroups) == 0 {
		c.SymbolGroups = clients.DefaultGroups
	}
	if c.ChurnRate == 0 && d.ChurnRate > 0 {
		c.ChurnRate = d.ChurnRate
	}
	if c.EventRate == "" {
		c.EventRate = d.MessageRate
	}
	if c.MonitorInterval == 0 {
		c.MonitorInterval = dur.Duration(d.MonitorInterval)
	}
	if c.Rate == "" {
		c.Rate = d.Rate.String()
	}
	if c.Variable == "" && d.VariableMax > 0 {
		c.Variable = fmt.Sprintf("%d-%d", d.VariableMin, d.VariableMax)
	}
	if c.Path == "" {
		c.Path = clients.DefaultPath
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// plan is the scenario's pacing for this configuration.
func (c runConfig) plan() (clients.Plan, error) {
	ramp, err := clients.ParseRate(c.Rate)
	if err != nil {
		return clients.Plan{}, err
	}
	vmin, vmax := 0, 0
	if c.Scenario == clients.Mixed {
		vmin, vmax = c.variableRange()
	}
	return clients.PlanFor(c.Scenario, c.Connections, ramp, c.ChurnRate, vmin, vmax, c.Seed)
}

// maxRunConfigSize caps the config file: a config is a few hundred bytes;
// /dev/zero or a mistaken log file must not fill the memory.
const maxRunConfigSize = 1 << 20

// loadRunConfig reads a config file strictly: unknown keys, values of the
// wrong type or out of range, and anything after the object are errors
// naming the file, the line and the key.
func loadRunConfig(path string) (runConfig, error) {
	raw, err := inputfile.ReadFile(path, maxRunConfigSize)
	if err != nil {
		return runConfig{}, fmt.Errorf("--config: %w", err)
	}
	return parseRunConfig(path, raw)
}

func parseRunConfig(name string, raw []byte) (runConfig, error) {
	var c runConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	where := func(off int64) string {
		line := 1 + bytes.Count(raw[:min(int(off), len(raw))], []byte{'\n'})
		return fmt.Sprintf("%s:%d", name, line)
	}
	syntax := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(raw[:min(int(se.Offset), len(raw))], []byte{'\n'})
			return fmt.Errorf("%s:%d: invalid JSON: %v", name, line, se)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%s: invalid JSON: unexpected end of file", name)
		}
		return fmt.Errorf("%s: invalid JSON: %v", name, err)
	}
	tok, err := dec.Token()
	if err != nil {
		return c, syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return c, fmt.Errorf("%s:1: the config must be a JSON object {...}", name)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return c, syntax(err)
		}
		key := tok.(string) // inside an object, json.Decoder only yields string keys here
		at := where(dec.InputOffset())
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return c, syntax(err)
		}
		f := fieldByKey(key)
		if f == nil {
			return c, fmt.Errorf("%s: unknown key %q%s", at, key, suggestConfigKey(key))
		}
		if seen[f.name] {
			return c, fmt.Errorf("%s: %q given twice%s", at, key, f.twice())
		}
		seen[f.name] = true
		if string(val) == "null" {
			return c, fmt.Errorf("%s: %q: null is not a value (leave the key out for the default)", at, key)
		}
		if err := f.fromJSON(&c, val); err != nil {
			var bare *dur.BareNumberError
			if errors.As(err, &bare) {
				return c, fmt.Errorf("%s: %q: %s — %s", at, key, bare.Text, bare.Hint())
			}
			return c, fmt.Errorf("%s: %q: %v", at, key, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return c, syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, fmt.Errorf("%s: unexpected data after the JSON object", where(dec.InputOffset()))
	}
	return c, nil
}

// fieldByKey finds a config key: a flag's name or the seed's alias of it.
func fieldByKey(key string) *configField {
	for i := range configFields {
		if f := &configFields[i]; f.name == key || (f.alias != "" && f.alias == key) {
			return f
		}
	}
	return nil
}

// twice says, for a key given twice, that its alias counts as it.
func (f *configField) twice() string {
	if f.alias == "" {
		return ""
	}
	return fmt.Sprintf(" (%q and %q are one key)", f.name, f.alias)
}

// suggestConfigKey names the closest known key to a misspelt one, or lists them.
func suggestConfigKey(key string) string {
	best, bestDist := "", 3
	var keys []string
	lower := strings.ToLower(key)
	for _, f := range configFields {
		keys = append(keys, f.name)
		for _, k := range []string{f.name, f.alias} {
			if k == "" {
				continue
			}
			known := strings.ToLower(k)
			d := editDistance(lower, known)
			if commonPrefix(lower, known) >= 5 {
				d = min(d, 1) // "symbols" for "symbolGroups", "durationSeconds" for "duration"
			}
			if d < bestDist {
				best, bestDist = f.name, d
			}
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	sort.Strings(keys)
	return " (known keys: " + strings.Join(keys, ", ") + ")"
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func configString(raw json.RawMessage, set func(string) error) error {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("must be a string, got %s", raw)
	}
	return set(s)
}

func configNumberOrString(raw json.RawMessage, set func(string) error) error {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return set(s)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return fmt.Errorf("must be a number or a string such as \"1-5\", got %s", raw)
	}
	return set(n.String())
}

func configInt(raw json.RawMessage) (int, error) {
	var n json.Number
	if len(raw) > 0 && raw[0] == '"' {
		return 0, fmt.Errorf("must be an integer, got %s", raw)
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("must be an integer, got %s", raw)
	}
	v, err := strconv.Atoi(n.String())
	if err != nil {
		return 0, fmt.Errorf("must be an integer, got %s", raw)
	}
	return v, nil
}
