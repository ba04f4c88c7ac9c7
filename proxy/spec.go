package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/size"
)

// ErrBadFault wraps every error of ParseFault and of the fault JSON forms,
// so callers can tell a bad fault from other failures.
var ErrBadFault = errors.New("bad fault")

// Directions a fault acts in.
const (
	DirDown = "down" // toward the client
	DirUp   = "up"   // toward the server
	DirBoth = "both"
)

// Actions of the faults that close a connection (the session schema's
// names; each firing records the action and how it ended the connection).
const (
	ActionRST    = session.ActionRST    // SetLinger(0) + Close: the peer sees ECONNRESET
	ActionFIN    = session.ActionFIN    // a normal close
	ActionRefuse = session.ActionRefuse // down only: nothing accepts (ECONNREFUSED)
)

// FaultSpec is one fault as the user wrote it: on the command line
// (--fault KIND[:key=value,...]), in the config file, or through the control
// API. The common keys have fields; the kind's own keys stay in Params as
// typed and are checked by the kind when the spec is parsed.
//
// Its JSON form (GET /faults, the session file's stored config) is read
// back by UnmarshalJSON: what the control API lists can be POSTed again.
// Durations in it are seconds in keys ending _s (after_s), as everywhere
// in ssestress's JSON.
type FaultSpec struct {
	// Name identifies the fault in records and in the control API: the
	// name= key, or else the spec text.
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Preset is the preset's name when Kind is "preset".
	Preset string `json:"preset,omitempty"`
	// Hop is client (client ↔ proxy) or upstream (proxy ↔ server); empty
	// for a preset, whose faults say their own.
	Hop string `json:"hop,omitempty"`
	// Direction is down, up or both, for the kinds that act on one
	// direction of the data.
	Direction string `json:"direction,omitempty"`
	// Toxicity is the probability (0–1) that the fault applies to a given
	// connection; it is drawn once per connection.
	Toxicity float64 `json:"toxicity"`
	// Match limits the fault to requests whose path and query start with it.
	Match string `json:"match,omitempty"`
	// After delays the start of the fault from the moment it applies to a
	// connection (its open, its request when Match is set, or when the fault
	// is added at run time).
	After  time.Duration     `json:"-"` // after_s in JSON
	Params map[string]string `json:"params,omitempty"`
	// Spec is the text form, which ParseFault reads back to the same spec.
	Spec string `json:"spec"`
}

// commonKeys are accepted by every kind (direction only by the kinds that
// have a direction).
var commonKeys = []string{"name", "hop", "direction", "toxicity", "match", "after"}

// ParseFault reads one --fault value: KIND[:key=value,...], or
// preset:NAME[:key=value,...] where the keys may be name, toxicity, match
// and after and apply to every fault of the preset. Toxiproxy's toxic types
// are aliases with its attributes and units (reset_peer:timeout=5000 is
// reset:after=5s; see toxiproxy.go). Values run to the next
// comma, except match, which takes commas up to the next known key (put it
// last when it holds a query such as symbols=A,B). Every key is checked
// here, including the kind's own, so a spec that parses starts.
func ParseFault(spec string) (FaultSpec, error) {
	text := strings.TrimSpace(spec)
	if text == "" {
		return FaultSpec{}, fmt.Errorf("%w: empty fault (use KIND[:key=value,...], e.g. reset:after=5s)", ErrBadFault)
	}
	kindName, rest, _ := strings.Cut(text, ":")
	kindName = strings.TrimSpace(kindName)
	fs := FaultSpec{Kind: kindName}
	var pairs [][2]string
	var err error
	if kindName == "preset" {
		name, opts, _ := strings.Cut(rest, ":")
		fs.Preset = strings.TrimSpace(name)
		if _, ok := presets[fs.Preset]; !ok {
			return FaultSpec{}, badFault(text, "unknown preset %q (presets: %s)", fs.Preset, strings.Join(PresetNames(), ", "))
		}
		if pairs, err = splitPairs(opts); err != nil {
			return FaultSpec{}, badFault(text, "%v", err)
		}
	} else if pairs, err = splitPairs(rest); err != nil {
		return FaultSpec{}, badFault(text, "%v", err)
	} else if kind, conv, ok, err := toxiproxyForm(kindName, pairs); err != nil {
		return FaultSpec{}, badFault(text, "%v", err)
	} else if ok {
		// Toxiproxy's names and units (toxiproxy.go).
		fs.Kind, pairs = kind, conv
	}
	if err := fs.set(pairs); err != nil {
		return FaultSpec{}, badFault(text, "%v", err)
	}
	if fs.Name == "" {
		fs.Name = fs.format(false)
	}
	fs.Spec = fs.format(fs.Name != fs.format(false))
	return fs, nil
}

// specFromPairs builds and checks a fault of kind (not a preset) from its
// keys, as ParseFault does from text.
func specFromPairs(kind string, pairs [][2]string) (FaultSpec, error) {
	fs := FaultSpec{Kind: kind}
	if err := fs.set(pairs); err != nil {
		return FaultSpec{}, err
	}
	if fs.Name == "" {
		fs.Name = fs.format(false)
	}
	fs.Spec = fs.format(fs.Name != fs.format(false))
	return fs, nil
}

func badFault(text, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrBadFault, text, fmt.Sprintf(format, args...))
}

// splitPairs splits "k=v,k=v". A piece without '=' or whose key is not a
// known key continues the value of a preceding match key.
func splitPairs(s string) ([][2]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var pairs [][2]string
	for _, piece := range strings.Split(s, ",") {
		k, v, found := strings.Cut(piece, "=")
		k = strings.TrimSpace(k)
		if n := len(pairs); n > 0 && pairs[n-1][0] == "match" && (!found || !knownKey(k)) {
			pairs[n-1][1] += "," + piece
			continue
		}
		if !found {
			return nil, fmt.Errorf("%q is not key=value", strings.TrimSpace(piece))
		}
		if k == "match" {
			pairs = append(pairs, [2]string{k, v})
		} else {
			pairs = append(pairs, [2]string{k, strings.TrimSpace(v)})
		}
	}
	return pairs, nil
}

func knownKey(k string) bool {
	if isToxiproxyKey(k) {
		return true
	}
	for _, c := range commonKeys {
		if k == c {
			return true
		}
	}
	for _, kd := range kinds {
		for _, p := range kd.keys {
			if p.name == k {
				return true
			}
		}
	}
	return false
}

// set fills fs from key/value pairs and validates them against the kind.
func (fs *FaultSpec) set(pairs [][2]string) error {
	var kd *kind
	if fs.Kind != "preset" {
		k, ok := kinds[fs.Kind]
		if !ok {
			return fmt.Errorf("unknown fault kind %q (kinds: %s, preset:NAME)", fs.Kind, strings.Join(KindNames(), ", "))
		}
		kd = k
	}
	fs.Toxicity = 1
	seen := map[string]bool{}
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		if seen[k] {
			return fmt.Errorf("key %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "name":
			if v == "" {
				return fmt.Errorf("name is empty")
			}
			fs.Name = v
		case "toxicity":
			t, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(t) || t < 0 || t > 1 {
				return fmt.Errorf("toxicity %q is not a probability between 0 and 1", v)
			}
			fs.Toxicity = t
		case "match":
			if v == "" || v[0] != '/' {
				return fmt.Errorf("match %q must be a path prefix starting with /", v)
			}
			fs.Match = v
		case "after":
			d, err := dur.Parse(v)
			if err != nil {
				return fmt.Errorf("after: %v", err)
			}
			fs.After = d
		case "hop":
			if kd == nil {
				return fmt.Errorf("a preset sets its own hops: key hop does not apply")
			}
			if v != session.HopClient && v != session.HopUpstream {
				return fmt.Errorf("hop %q must be client or upstream", v)
			}
			fs.Hop = v
		case "direction":
			if kd == nil || !kd.directional {
				return fmt.Errorf("key direction does not apply to %s", fs.Kind)
			}
			if v != DirDown && v != DirUp && v != DirBoth {
				return fmt.Errorf("direction %q must be down, up or both", v)
			}
			fs.Direction = v
		default:
			if kd == nil {
				return fmt.Errorf("key %q does not apply to a preset (keys: name, toxicity, match, after)", k)
			}
			if kd.key(k) == nil {
				return fmt.Errorf("unknown key %q for %s (keys: %s)", k, fs.Kind, strings.Join(kd.keyNames(), ", "))
			}
			if fs.Params == nil {
				fs.Params = map[string]string{}
			}
			fs.Params[k] = v
		}
	}
	if kd == nil {
		return nil
	}
	if fs.Hop == "" {
		fs.Hop = kd.defaultHop()
	}
	if len(kd.hops) > 0 && !containsString(kd.hops, fs.Hop) {
		return fmt.Errorf("%s acts on hop %s only", fs.Kind, strings.Join(kd.hops, " or "))
	}
	if kd.directional && fs.Direction == "" {
		fs.Direction = kd.defaultDir
	}
	// Build once to check the kind's keys; the result is discarded.
	if _, err := kd.build(*fs, 1); err != nil {
		return err
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// format writes the spec back as text, keys in a stable order; withName
// adds the name= key.
func (fs FaultSpec) format(withName bool) string {
	var b strings.Builder
	b.WriteString(fs.Kind)
	if fs.Kind == "preset" {
		b.WriteString(":" + fs.Preset)
	}
	var parts []string
	if fs.Kind != "preset" {
		parts = append(parts, "hop="+fs.Hop)
		if fs.Direction != "" {
			parts = append(parts, "direction="+fs.Direction)
		}
	}
	keys := make([]string, 0, len(fs.Params))
	for k := range fs.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+fs.Params[k])
	}
	if fs.Toxicity != 1 {
		parts = append(parts, "toxicity="+strconv.FormatFloat(fs.Toxicity, 'g', -1, 64))
	}
	if fs.After > 0 {
		parts = append(parts, "after="+fs.After.String())
	}
	if withName {
		parts = append(parts, "name="+fs.Name)
	}
	if fs.Match != "" {
		parts = append(parts, "match="+fs.Match) // last: it may hold commas
	}
	if len(parts) > 0 {
		b.WriteString(":")
		b.WriteString(strings.Join(parts, ","))
	}
	return b.String()
}

// MarshalJSON writes the spec with After in seconds (after_s).
func (fs FaultSpec) MarshalJSON() ([]byte, error) {
	type plain FaultSpec // its After is json:"-"
	return json.Marshal(struct {
		plain
		After session.Seconds `json:"after_s,omitempty"`
	}{plain(fs), session.Seconds(fs.After)})
}

// UnmarshalJSON accepts a fault in every JSON form of the config file and
// the control API: a string in the --fault syntax; an object whose keys are
// the same keys ({"kind": "latency", "delay": "50ms", "hop": "client"}; for
// a preset {"kind": "preset", "preset": "aws-alb"}); or the object the API
// lists (MarshalJSON's), with after_s in seconds, the kind's keys under
// params, and spec, the text form of the other keys, which is read only
// when the object has no kind. A name equal to spec (a fault named by
// nothing is listed under its spec text) or to the name the keys give
// anyway is not a name= key. Values may be strings, numbers
// or booleans; durations need a unit except in after_s. Unknown keys are
// errors.
func (fs *FaultSpec) UnmarshalJSON(b []byte) error {
	var text string
	if err := json.Unmarshal(b, &text); err == nil {
		spec, err := ParseFault(text)
		if err != nil {
			return err
		}
		*fs = spec
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("%w: a fault is a string such as \"reset:after=5s\" or an object such as {\"kind\": \"reset\", \"after\": \"5s\"}", ErrBadFault)
	}
	var name string
	if raw, ok := obj["name"]; ok {
		if err := json.Unmarshal(raw, &name); err != nil {
			return fmt.Errorf("%w: key \"name\" must be a string", ErrBadFault)
		}
		delete(obj, "name")
	}
	if rawSpec, ok := obj["spec"]; ok {
		delete(obj, "spec")
		var listed string
		if err := json.Unmarshal(rawSpec, &listed); err != nil {
			return fmt.Errorf("%w: key \"spec\" must be a string", ErrBadFault)
		}
		// A fault named by nothing lists its spec text as its name: that
		// name was derived, not chosen, and follows the keys as edited.
		if name == listed {
			name = ""
		}
		if _, hasKind := obj["kind"]; !hasKind {
			if len(obj) > 0 {
				return fmt.Errorf("%w: an object with \"spec\" and no \"kind\" holds nothing else but \"name\"", ErrBadFault)
			}
			text = listed
		}
	}
	if text == "" {
		var err error
		if text, err = objectSpec(obj); err != nil {
			return err
		}
	}
	spec, err := ParseFault(text)
	if err != nil {
		return err
	}
	if name != "" && name != spec.Name {
		if spec, err = ParseFault(withName(text, name)); err != nil {
			return err
		}
	}
	*fs = spec
	return nil
}

// withName adds name= to a spec's text (before a match, which runs to the
// end).
func withName(text, name string) string {
	head, rest, hasKeys := strings.Cut(text, ":")
	if head == "preset" {
		preset, opts, hasOpts := strings.Cut(rest, ":")
		if !hasOpts || opts == "" {
			return "preset:" + preset + ":name=" + name
		}
		return "preset:" + preset + ":name=" + name + "," + opts
	}
	if !hasKeys || rest == "" {
		return head + ":name=" + name
	}
	return head + ":name=" + name + "," + rest
}

// objectSpec turns the object form into the text form.
func objectSpec(obj map[string]json.RawMessage) (string, error) {
	str := func(k string, raw json.RawMessage) (string, error) {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", fmt.Errorf("%w: key %q: %v", ErrBadFault, k, err)
		}
		switch v := v.(type) {
		case string:
			if strings.Contains(v, ",") && k != "match" {
				return "", fmt.Errorf("%w: key %q: value %q must not contain a comma", ErrBadFault, k, v)
			}
			return v, nil
		case float64:
			return strconv.FormatFloat(v, 'g', -1, 64), nil
		case bool:
			return strconv.FormatBool(v), nil
		}
		return "", fmt.Errorf("%w: key %q: value must be a string, number or boolean", ErrBadFault, k)
	}
	rawKind, ok := obj["kind"]
	if !ok {
		return "", fmt.Errorf("%w: object has no \"kind\"", ErrBadFault)
	}
	// The listed form: the kind's keys under params, after in seconds.
	if raw, ok := obj["params"]; ok {
		var params map[string]json.RawMessage
		if err := json.Unmarshal(raw, &params); err != nil {
			return "", fmt.Errorf("%w: key \"params\" must be an object of the kind's keys", ErrBadFault)
		}
		delete(obj, "params")
		for k, v := range params {
			if _, dup := obj[k]; dup {
				return "", fmt.Errorf("%w: key %q given twice (at the top and in params)", ErrBadFault, k)
			}
			obj[k] = v
		}
	}
	if raw, ok := obj["after_s"]; ok {
		if _, dup := obj["after"]; dup {
			return "", fmt.Errorf("%w: give after (with a unit) or after_s (seconds), not both", ErrBadFault)
		}
		var secs float64
		if err := json.Unmarshal(raw, &secs); err != nil || secs < 0 {
			return "", fmt.Errorf("%w: after_s must be a number of seconds, got %s", ErrBadFault, raw)
		}
		delete(obj, "after_s")
		obj["after"] = json.RawMessage(strconv.Quote(time.Duration(secs * float64(time.Second)).String()))
	}
	// Keys the listed form writes empty are left out.
	for _, k := range []string{"hop", "direction", "match", "preset"} {
		if string(obj[k]) == `""` {
			delete(obj, k)
		}
	}
	kindName, err := str("kind", rawKind)
	if err != nil {
		return "", err
	}
	head := kindName
	if kindName == "preset" {
		raw, ok := obj["preset"]
		if !ok {
			return "", fmt.Errorf("%w: a preset object needs \"preset\": NAME", ErrBadFault)
		}
		name, err := str("preset", raw)
		if err != nil {
			return "", err
		}
		head += ":" + name
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		if k == "kind" || (kindName == "preset" && k == "preset") {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	var match string
	for _, k := range keys {
		v, err := str(k, obj[k])
		if err != nil {
			return "", err
		}
		if k == "match" {
			match = v
			continue
		}
		parts = append(parts, k+"="+v)
	}
	if match != "" {
		parts = append(parts, "match="+match)
	}
	if len(parts) == 0 {
		return head, nil
	}
	return head + ":" + strings.Join(parts, ","), nil
}

// matches reports whether a request path (with query) is in the fault's
// scope.
func (fs FaultSpec) matches(pathQuery string) bool {
	return fs.Match == "" || strings.HasPrefix(pathQuery, fs.Match)
}

// Parameter readers for the kinds' constructors.

// paramDuration reads a duration key; def when absent.
func paramDuration(fs FaultSpec, key string, def time.Duration) (time.Duration, error) {
	v, ok := fs.Params[key]
	if !ok {
		return def, nil
	}
	d, err := dur.Parse(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", key, err)
	}
	return d, nil
}

// paramBytes reads a byte count: bytes, or with a unit as internal/size
// reads it (64KB = 64,000 bytes, 64KiB = 65,536). It returns -1 when
// absent.
func paramBytes(fs FaultSpec, key string) (int64, error) {
	v, ok := fs.Params[key]
	if !ok {
		return -1, nil
	}
	n, err := parseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", key, err)
	}
	return n, nil
}

func parseBytes(v string) (int64, error) { return size.Parse(v) }

// paramInt reads a non-negative integer key; -1 when absent.
func paramInt(fs FaultSpec, key string) (int64, error) {
	v, ok := fs.Params[key]
	if !ok {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q is not a non-negative integer", key, v)
	}
	return n, nil
}

// paramAction reads action; it must be one of allowed, def when absent.
func paramAction(fs FaultSpec, def string, allowed ...string) (string, error) {
	v, ok := fs.Params["action"]
	if !ok {
		return def, nil
	}
	if !containsString(allowed, v) {
		return "", fmt.Errorf("action %q must be %s", v, strings.Join(allowed, " or "))
	}
	return v, nil
}

// scaled shrinks d by the time scale.
func scaled(d time.Duration, scale float64) time.Duration {
	if scale <= 0 || scale == 1 {
		return d
	}
	return time.Duration(float64(d) / scale)
}

// pathQuery is the path and query of u as match compares them.
func pathQuery(u *url.URL) string {
	if u == nil {
		return ""
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p
}

// KindInfo describes a fault kind for help and shell completion: its
// name, what it does, its own keys, whether it takes direction, and the
// hops it may act on.
type KindInfo struct {
	Name        string
	Summary     string
	Keys        []string // the kind's own keys (the common ones are commonKeys)
	Directional bool
	Hops        []string
}

// Kinds lists the fault kinds in name order.
func Kinds() []KindInfo {
	var out []KindInfo
	for _, n := range KindNames() {
		k := kinds[n]
		info := KindInfo{Name: n, Summary: k.summary, Directional: k.directional, Hops: k.hops}
		if len(info.Hops) == 0 {
			info.Hops = []string{session.HopClient, session.HopUpstream}
		}
		for _, kd := range k.keys {
			info.Keys = append(info.Keys, kd.name)
		}
		out = append(out, info)
	}
	return out
}

// PresetInfo describes a preset: its name, what it stands for, and its
// faults in the --fault syntax.
type PresetInfo struct {
	Name    string
	Summary string
	Faults  []string
}

// Presets lists the presets in name order.
func Presets() []PresetInfo {
	var out []PresetInfo
	for _, n := range PresetNames() {
		out = append(out, PresetInfo{Name: n, Summary: presets[n].summary, Faults: presets[n].faults})
	}
	return out
}
