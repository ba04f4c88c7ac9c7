package proxy

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/size"
)

// Toxiproxy's toxics as ssestress faults. Toxiproxy 2.5's seven toxic
// types (github.com/Shopify/toxiproxy/v2/toxics) map onto fault kinds, their
// attributes onto the kinds' keys in Toxiproxy's units: latency, jitter and
// timeouts in milliseconds, the bandwidth rate in KB/s (1,000 bytes), the
// slicer's delay in microseconds, sizes in bytes. Its stream maps onto a hop
// and a direction: downstream (the data toward the client) is the client
// hop, direction down; upstream (toward the server) the upstream hop,
// direction up. The map serves the Toxiproxy API (toxiproxy_api.go) and
// --fault, where Toxiproxy's type names are aliases (reset_peer:timeout=5000).
// The kinds Toxiproxy does not have appear as toxic types of their own
// names, with their own keys and syntax (units required).

// Toxiproxy's streams.
const (
	StreamDown = "downstream" // toward the client: hop client, direction down
	StreamUp   = "upstream"   // toward the server: hop upstream, direction up
)

// Toxic is a fault as Toxiproxy's API shows and takes it (the JSON of
// Toxiproxy's ToxicWrapper).
type Toxic struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Stream string `json:"stream"`
	// Toxicity is the probability (0–1) that the toxic applies to a
	// connection, drawn once per connection.
	Toxicity float64 `json:"toxicity"`
	// Attributes are Toxiproxy's attributes of Type, numbers in its units;
	// for ssestress's own kinds, the kind's keys in ssestress's syntax
	// ("60s"). Either may add hop, direction, after and match.
	Attributes map[string]any `json:"attributes"`
}

// toxiUnit is the unit of a Toxiproxy attribute: how a number in it becomes
// a key's value in ssestress's syntax, and back.
type toxiUnit struct {
	name   string // for messages
	text   func(n float64) (string, error)
	number func(v string) (float64, error)
}

var (
	unitMs = &toxiUnit{name: "ms",
		text:   func(n float64) (string, error) { return formatNumber(n) + "ms", nil },
		number: func(v string) (float64, error) { d, err := dur.Parse(v); return float64(d) / 1e6, err },
	}
	unitUs = &toxiUnit{name: "µs",
		text:   func(n float64) (string, error) { return formatNumber(n) + "us", nil },
		number: func(v string) (float64, error) { d, err := dur.Parse(v); return float64(d) / 1e3, err },
	}
	unitKBps = &toxiUnit{name: "KB/s",
		text:   func(n float64) (string, error) { return formatNumber(n) + "KB", nil },
		number: func(v string) (float64, error) { r, err := parseRate(v); return float64(r) / 1e3, err },
	}
	unitBytes = &toxiUnit{name: "bytes",
		text: func(n float64) (string, error) {
			if n != math.Trunc(n) {
				return "", fmt.Errorf("%s is not a whole number of bytes", formatNumber(n))
			}
			return formatNumber(n), nil
		},
		number: func(v string) (float64, error) { n, err := size.Parse(v); return float64(n), err },
	}
)

// formatNumber writes n without an exponent.
func formatNumber(n float64) string { return strconv.FormatFloat(n, 'f', -1, 64) }

// toxiAttr is one attribute of a Toxiproxy toxic type.
type toxiAttr struct {
	name string    // Toxiproxy's attribute
	key  string    // the kind's key it sets ("after": the common key)
	unit *toxiUnit // Toxiproxy's unit
	// def is the kind's value when the key is absent, in ssestress's
	// syntax, for showing a fault given without it ("" when the key is
	// required). TestToxiproxyDefaults checks them against the kinds.
	def string
}

// toxiType is a Toxiproxy toxic type and the kind it maps onto.
type toxiType struct {
	kind  string
	attrs []toxiAttr
	// extras are the kind's keys that Toxiproxy has no attribute for,
	// accepted (and shown) as attributes in ssestress's syntax.
	extras []string
	// shows reports whether a fault of the kind is shown as this type
	// (nil: every fault of the kind).
	shows func(FaultSpec) bool
	// check refuses values Toxiproxy's own toxic would misbehave on, by
	// the attributes' names; values are in Toxiproxy's units.
	check func(v map[string]float64) error
}

// toxiTypes are Toxiproxy 2.5's toxic types.
var toxiTypes = map[string]*toxiType{
	"latency": {kind: "latency", attrs: []toxiAttr{
		{"latency", "delay", unitMs, "100ms"}, {"jitter", "jitter", unitMs, "0s"}}},
	"bandwidth": {kind: "bandwidth", attrs: []toxiAttr{{"rate", "rate", unitKBps, ""}},
		check: func(v map[string]float64) error {
			if v["rate"] <= 0 {
				return fmt.Errorf("rate must be more than 0 KB/s (Toxiproxy's bandwidth passes nothing at 0)")
			}
			return nil
		}},
	"slicer": {kind: "slicer", attrs: []toxiAttr{
		{"average_size", "size", unitBytes, "8"}, {"size_variation", "variation", unitBytes, "0"}, {"delay", "delay", unitUs, "0s"}},
		check: func(v map[string]float64) error {
			if v["average_size"] < 1 {
				return fmt.Errorf("average_size must be at least 1 byte")
			}
			if v["size_variation"] >= v["average_size"] {
				return fmt.Errorf("size_variation (%s) must be smaller than average_size (%s)", formatNumber(v["size_variation"]), formatNumber(v["average_size"]))
			}
			return nil
		}},
	"slow_close": {kind: "slow-close", attrs: []toxiAttr{{"delay", "delay", unitMs, "1s"}}},
	"timeout":    {kind: "timeout", attrs: []toxiAttr{{"timeout", "timeout", unitMs, "0s"}}, extras: []string{"action"}},
	"reset_peer": {kind: "reset", attrs: []toxiAttr{{"timeout", "after", unitMs, "0s"}},
		shows: func(fs FaultSpec) bool { _, b := fs.Params["bytes"]; _, e := fs.Params["events"]; return !b && !e }},
	"limit_data": {kind: "limit-data", attrs: []toxiAttr{{"bytes", "bytes", unitBytes, ""}}},
}

// ToxicTypes lists Toxiproxy's toxic types with the kind each maps onto
// and their attributes with units and keys ("latency (ms) as delay"), in
// name order.
func ToxicTypes() [][3]string {
	var out [][3]string
	for _, name := range sortedToxiTypes() {
		tt := toxiTypes[name]
		var attrs []string
		for _, a := range tt.attrs {
			attrs = append(attrs, a.name+" ("+a.unit.name+") as "+a.key)
		}
		out = append(out, [3]string{name, tt.kind, strings.Join(attrs, ", ")})
	}
	return out
}

// ToxiproxyHelp lists Toxiproxy's toxic types as --fault aliases, for
// --help.
func ToxiproxyHelp() string {
	var b strings.Builder
	b.WriteString("\nToxiproxy's toxic types are aliases, with Toxiproxy's attributes and units (a number is in its\nunit; stream=downstream|upstream is hop client, direction down | hop upstream, direction up):\n")
	for _, t := range ToxicTypes() {
		fmt.Fprintf(&b, "  %-21s %s: %s\n", t[0], t[1], t[2])
	}
	return b.String()
}

func sortedToxiTypes() []string {
	names := make([]string, 0, len(toxiTypes))
	for n := range toxiTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ownToxicType reports whether name is one of ssestress's kinds that is
// a toxic type of its own name (a kind Toxiproxy's types do not shadow).
func ownToxicType(name string) bool {
	_, shadowed := toxiTypes[name]
	_, ok := kinds[name]
	return ok && !shadowed
}

// isToxiproxyKey reports whether k is a key only Toxiproxy's forms use: an
// attribute name that is no kind's key, or stream.
func isToxiproxyKey(k string) bool {
	if k == "stream" {
		return true
	}
	for _, tt := range toxiTypes {
		for _, a := range tt.attrs {
			if a.name == k {
				return true
			}
		}
	}
	return false
}

// streamHop is the hop and direction of a stream.
func streamHop(stream string) (hop, dir string, err error) {
	switch strings.ToLower(stream) {
	case "", StreamDown:
		return session.HopClient, DirDown, nil
	case StreamUp:
		return session.HopUpstream, DirUp, nil
	}
	return "", "", fmt.Errorf("stream %q must be upstream or downstream", stream)
}

// toxiproxyForm reads a --fault written in Toxiproxy's form: one of its
// type names that ssestress does not have (reset_peer, slow_close,
// limit_data), or a shared name with one of Toxiproxy's own attributes
// (latency:latency=100, slicer:average_size=8) or stream. Numbers are in
// Toxiproxy's units; a value with a unit is taken as written. It returns
// the kind and the keys in ssestress's syntax; ok is false for a spec that
// is not in Toxiproxy's form.
func toxiproxyForm(typeName string, pairs [][2]string) (kind string, out [][2]string, ok bool, err error) {
	tt, isType := toxiTypes[typeName]
	if !isType {
		return "", nil, false, nil
	}
	if tt.kind == typeName {
		own := kinds[typeName]
		toxi := false
		for _, kv := range pairs {
			if kv[0] == "stream" || (isToxiproxyKey(kv[0]) && own.key(kv[0]) == nil) {
				toxi = true
			}
		}
		if !toxi {
			return "", nil, false, nil
		}
	}
	out, err = fromToxiproxy(typeName, pairs)
	return tt.kind, out, err == nil, err
}

// fromToxiproxy turns the keys of a toxic of Toxiproxy's type typeName, or
// of one of ssestress's kinds under its own name, into the kind's keys:
// Toxiproxy's attributes (numbers in its units, absent ones 0 as in
// Toxiproxy), stream, and the common keys (name, toxicity, hop, direction,
// after, match) with the kind's keys Toxiproxy has no attribute for.
func fromToxiproxy(typeName string, pairs [][2]string) ([][2]string, error) {
	tt := toxiTypes[typeName]
	kindName := typeName
	if tt != nil {
		kindName = tt.kind
	}
	kd, ok := kinds[kindName]
	if !ok {
		return nil, fmt.Errorf("unknown toxic type %q (Toxiproxy's: %s; ssestress's own: %s)", typeName,
			strings.Join(sortedToxiTypes(), ", "), strings.Join(ownToxicTypes(), ", "))
	}
	given := map[string]string{}
	stream := ""
	var out [][2]string
	for _, kv := range pairs {
		if _, dup := given[kv[0]]; dup || (kv[0] == "stream" && stream != "") {
			return nil, fmt.Errorf("key %q given twice", kv[0])
		}
		if kv[0] == "stream" {
			stream = kv[1]
			if stream == "" {
				stream = StreamDown
			}
			continue
		}
		given[kv[0]] = kv[1]
	}
	hop, dir, err := streamHop(stream)
	if err != nil {
		return nil, err
	}
	mapped := map[string]bool{}
	if tt != nil {
		values := map[string]float64{}
		for _, a := range tt.attrs {
			v, has := given[a.name]
			delete(given, a.name)
			n := 0.0
			if has {
				if n, err = toxiNumber(a, v); err != nil {
					return nil, err
				}
			}
			values[a.name] = n
			text := v
			if !has || isPlainNumber(v) {
				if text, err = a.unit.text(n); err != nil {
					return nil, fmt.Errorf("%s: %v", a.name, err)
				}
			}
			out = append(out, [2]string{a.key, text})
			mapped[a.key] = true
		}
		if tt.check != nil {
			if err := tt.check(values); err != nil {
				return nil, err
			}
		}
	}
	allowed := append([]string(nil), commonKeys...)
	if tt == nil {
		for _, k := range kd.keys {
			allowed = append(allowed, k.name)
		}
	} else {
		allowed = append(allowed, tt.extras...)
	}
	keys := make([]string, 0, len(given))
	for k := range given {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if mapped[k] || !containsString(allowed, k) {
			var names []string
			if tt != nil {
				for _, a := range tt.attrs {
					names = append(names, a.name+" ("+a.unit.name+")")
				}
			}
			for _, a := range allowed {
				if !mapped[a] && a != "name" && a != "toxicity" {
					names = append(names, a)
				}
			}
			return nil, fmt.Errorf("unknown attribute %q for %s (attributes: %s)", k, typeName, strings.Join(names, ", "))
		}
		out = append(out, [2]string{k, given[k]})
	}
	if _, ok := given["hop"]; !ok {
		out = append(out, [2]string{"hop", hop})
	}
	if _, ok := given["direction"]; !ok && kd.directional {
		out = append(out, [2]string{"direction", dir})
	}
	return out, nil
}

// toxiNumber reads an attribute's value: a number in Toxiproxy's unit, or
// a value with a unit of its own (as ssestress reads it).
func toxiNumber(a toxiAttr, v string) (float64, error) {
	if isPlainNumber(v) {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 || math.IsInf(n, 0) {
			return 0, fmt.Errorf("%s: %q is not a number of %s", a.name, v, a.unit.name)
		}
		return n, nil
	}
	n, err := a.unit.number(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %v (a number of %s, or a value with its unit)", a.name, err, a.unit.name)
	}
	return n, nil
}

// isPlainNumber reports whether v is a decimal number without a unit.
func isPlainNumber(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" || strings.Trim(v, "0123456789.+-eE") != "" {
		return false
	}
	_, err := strconv.ParseFloat(v, 64)
	return err == nil
}

// ownToxicTypes are ssestress's kinds that are toxic types of their own.
func ownToxicTypes() []string {
	var out []string
	for _, n := range KindNames() {
		if ownToxicType(n) {
			out = append(out, n)
		}
	}
	return append(out, "preset")
}

// ToxicOf shows a fault as Toxiproxy's API does: as the Toxiproxy type its
// kind maps onto, with attributes in Toxiproxy's units, or as a type of
// its kind's own name. What a fault says that Toxiproxy cannot (a hop other
// than its stream's, direction both, after, match, keys Toxiproxy lacks)
// is added as attributes in ssestress's syntax. SpecOfToxic reads it back
// to the same fault.
func ToxicOf(fs FaultSpec) Toxic {
	t := Toxic{Name: fs.Name, Type: fs.Kind, Stream: StreamDown, Toxicity: fs.Toxicity, Attributes: map[string]any{}}
	if fs.Kind == "preset" {
		t.Attributes["preset"] = fs.Preset
		if fs.After > 0 {
			t.Attributes["after"] = fs.After.String()
		}
		if fs.Match != "" {
			t.Attributes["match"] = fs.Match
		}
		return t
	}
	mapped := map[string]bool{}
	for name, tt := range toxiTypes {
		if tt.kind != fs.Kind || (tt.shows != nil && !tt.shows(fs)) {
			continue
		}
		t.Type = name
		for _, a := range tt.attrs {
			v, has := fs.Params[a.key]
			if a.key == "after" {
				v, has = fs.After.String(), true
			}
			if !has {
				v = a.def
			}
			if n, err := a.unit.number(v); err == nil {
				t.Attributes[a.name] = n
			} else {
				t.Attributes[a.name] = v // not reached for a spec that parsed
			}
			mapped[a.key] = true
		}
	}
	for k, v := range fs.Params {
		if !mapped[k] {
			t.Attributes[k] = paramValue(v)
		}
	}
	if fs.After > 0 && !mapped["after"] {
		t.Attributes["after"] = fs.After.String()
	}
	if fs.Match != "" {
		t.Attributes["match"] = fs.Match
	}
	kd := kinds[fs.Kind]
	if kd == nil {
		return t
	}
	if kd.directional {
		if fs.Direction == DirUp {
			t.Stream = StreamUp
		}
		if fs.Direction == DirBoth {
			t.Attributes["direction"] = DirBoth
		}
	} else if fs.Hop == session.HopUpstream {
		t.Stream = StreamUp
	}
	if hop, _, _ := streamHop(t.Stream); hop != fs.Hop {
		t.Attributes["hop"] = fs.Hop
	}
	return t
}

// paramValue shows a key's value: a number as a JSON number, anything else
// as written.
func paramValue(v string) any {
	if isPlainNumber(v) {
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			return n
		}
	}
	return v
}

// SpecOfToxic builds the fault a toxic describes: Toxiproxy's types in its
// units, ssestress's kinds under their own names, or "preset" with the
// attribute preset. An empty stream is downstream and an empty name
// Toxiproxy's default, "<type>_<stream>".
func SpecOfToxic(t Toxic) (FaultSpec, error) {
	if t.Stream == "" {
		t.Stream = StreamDown
	}
	if t.Name == "" {
		t.Name = t.Type + "_" + strings.ToLower(t.Stream)
	}
	if math.IsNaN(t.Toxicity) || t.Toxicity < 0 || t.Toxicity > 1 {
		return FaultSpec{}, fmt.Errorf("%w: toxicity %v is not a probability between 0 and 1", ErrBadFault, t.Toxicity)
	}
	pairs := [][2]string{{"name", t.Name}, {"toxicity", formatNumber(t.Toxicity)}}
	keys := make([]string, 0, len(t.Attributes))
	for k := range t.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([][2]string, 0, len(keys))
	for _, k := range keys {
		v, err := attributeText(k, t.Attributes[k])
		if err != nil {
			return FaultSpec{}, fmt.Errorf("%w: toxic %s: %v", ErrBadFault, t.Name, err)
		}
		if k == "name" || k == "toxicity" || k == "stream" {
			return FaultSpec{}, fmt.Errorf("%w: toxic %s: %s is a field of the toxic, not an attribute", ErrBadFault, t.Name, k)
		}
		attrs = append(attrs, [2]string{k, v})
	}
	if t.Type == "preset" {
		if _, _, err := streamHop(t.Stream); err != nil || strings.ToLower(t.Stream) != StreamDown {
			return FaultSpec{}, fmt.Errorf("%w: toxic %s: a preset sets its own hops: stream must be downstream", ErrBadFault, t.Name)
		}
		fs := FaultSpec{Kind: "preset"}
		for _, kv := range attrs {
			if kv[0] == "preset" {
				fs.Preset = kv[1]
				continue
			}
			pairs = append(pairs, kv)
		}
		if _, ok := presets[fs.Preset]; !ok {
			return FaultSpec{}, fmt.Errorf("%w: toxic %s: attribute preset %q is not a preset (%s)", ErrBadFault, t.Name, fs.Preset, strings.Join(PresetNames(), ", "))
		}
		if err := fs.set(pairs); err != nil {
			return FaultSpec{}, fmt.Errorf("%w: toxic %s: %v", ErrBadFault, t.Name, err)
		}
		fs.Spec = fs.format(fs.Name != fs.format(false))
		return fs, nil
	}
	if _, isToxi := toxiTypes[t.Type]; !isToxi && !ownToxicType(t.Type) {
		return FaultSpec{}, fmt.Errorf("%w: toxic %s: unknown toxic type %q (Toxiproxy's: %s; ssestress's own: %s)", ErrBadFault, t.Name, t.Type,
			strings.Join(sortedToxiTypes(), ", "), strings.Join(ownToxicTypes(), ", "))
	}
	conv, err := fromToxiproxy(t.Type, append(attrs, [2]string{"stream", t.Stream}))
	if err != nil {
		return FaultSpec{}, fmt.Errorf("%w: toxic %s: %v", ErrBadFault, t.Name, err)
	}
	kind := t.Type
	if tt := toxiTypes[t.Type]; tt != nil {
		kind = tt.kind
	}
	fs, err := specFromPairs(kind, append(pairs, conv...))
	if err != nil {
		return FaultSpec{}, fmt.Errorf("%w: toxic %s: %v", ErrBadFault, t.Name, err)
	}
	return fs, nil
}

// attributeText is an attribute's JSON value as text.
func attributeText(k string, v any) (string, error) {
	switch v := v.(type) {
	case string:
		if strings.Contains(v, ",") && k != "match" {
			return "", fmt.Errorf("attribute %s: %q must not contain a comma", k, v)
		}
		return v, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", fmt.Errorf("attribute %s: %v is not a number", k, v)
		}
		return formatNumber(v), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", fmt.Errorf("attribute %s must be a number or a string", k)
}
