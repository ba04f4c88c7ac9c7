package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/capture"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/size"
	"github.com/ssestress/ssestress/proxy"
)

// The concept families "durations" and "sizes", walked across every flag
// of every command, every config key and the JSON the tool writes: one
// name per concept, and one unit: a duration is typed with a unit (a bare
// number is refused with both readings) and is seconds in a JSON key
// ending _s; a size is bytes or a number with an SI or IEC unit meaning
// what it says, and bytes in a JSON key ending _bytes.

// durationFlags is every flag that takes a duration, by command. A flag
// that takes a duration and is not listed, or is listed and does not take
// one, fails the test: a new one is added here on purpose.
var durationFlags = map[string][]string{
	"run":          {"duration", "monitor-interval", "backoff", "keepalive", "client-keepalive"},
	"replay run":   {"duration", "monitor-interval", "keepalive", "client-keepalive"},
	"proxy":        {"keepalive", "upstream-header-timeout", "monitor-interval"},
	"serve":        {"group-expiry", "heartbeat", "retry"},
	"capture":      {"duration"},
	"bench":        {"window"},
	"bisect":       {"duration", "monitor-interval", "backoff", "client-keepalive"}, // run's, passed on
	"replay serve": nil,
}

// sizeFlags is every flag that takes a size, by command.
var sizeFlags = map[string][]string{
	"run":        {"max-file-size", "max-memory"},
	"proxy":      {"max-event-size", "max-file-size", "max-memory"},
	"bisect":     {"max-file-size", "max-memory"},
	"replay run": {"max-memory"},
}

// allFlagSets returns every command's flag set by full name.
func allFlagSets() map[string]*flagSet {
	out := map[string]*flagSet{}
	var walk func(c *command)
	walk = func(c *command) {
		if c.setup != nil {
			out[c.fullName()] = c.flags()
		}
		for _, s := range c.subs {
			walk(s)
		}
	}
	for _, n := range commandNames() {
		walk(commands[n])
	}
	return out
}

// takesDuration reports whether a flag's value is read as a duration: its
// type, or for bisect's passed-on flags the run flag it stands for.
func takesDuration(fs *flagSet, f *flag.Flag) bool {
	switch f.Value.(type) {
	case *durationValue, *dur.Duration, *configDuration:
		return true
	case *passedFlag:
		return fs.meta[f.Name].placeholder == "D"
	}
	return false
}

func takesSize(fs *flagSet, f *flag.Flag) bool {
	switch f.Value.(type) {
	case *size.Bytes, *memoryFlags:
		return true
	case *passedFlag:
		return fs.meta[f.Name].placeholder == "SIZE"
	}
	return false
}

func TestConceptDurations(t *testing.T) {
	found := map[string][]string{}
	for name, fs := range allFlagSets() {
		for _, f := range fs.visible() {
			if !takesDuration(fs, f) {
				// A plain number of seconds or milliseconds is what this
				// family forbids.
				if fs.takesValue(f.Name) {
					for _, word := range []string{"interval", "timeout", "duration", "keepalive", "backoff", "heartbeat", "window", "delay"} {
						if strings.Contains(f.Name, word) {
							t.Errorf("%s --%s is not read as a duration: a duration takes a unit", name, f.Name)
						}
					}
				}
				continue
			}
			found[name] = append(found[name], f.Name)
			if _, ok := f.Value.(*passedFlag); ok {
				continue // run's own flag is checked under run
			}
			// A unit is required; a bare number says both readings.
			err := f.Value.Set("20000")
			var bare *dur.BareNumberError
			if !errors.As(err, &bare) || !strings.Contains(err.Error(), `write "20000ms" (20 s) or "20000s" (5 h 33 min)`) {
				t.Errorf("%s --%s 20000: %v, want the both-readings refusal", name, f.Name, err)
			}
			if err := f.Value.Set("1m30s"); err != nil {
				t.Errorf("%s --%s 1m30s: %v", name, f.Name, err)
			}
			if err := f.Value.Set("2d"); err != nil {
				t.Errorf("%s --%s 2d: %v", name, f.Name, err)
			}
			// It prints rounded, in the syntax it reads.
			f.Value.Set("1.23456789s")
			if got := f.Value.String(); got != "1.235s" {
				t.Errorf("%s --%s prints %q, want 1.235s", name, f.Name, got)
			}
			if word, _ := fs.placeholder(f); word != "D" {
				t.Errorf("%s --%s: help calls its value %s, want D", name, f.Name, word)
			}
		}
	}
	for name := range durationFlags {
		sort.Strings(found[name])
		want := append([]string(nil), durationFlags[name]...)
		sort.Strings(want)
		if fmt.Sprint(found[name]) != fmt.Sprint(want) {
			t.Errorf("%s: duration flags %q, the table says %q", name, found[name], want)
		}
	}
	for name, names := range found {
		if _, ok := durationFlags[name]; !ok {
			t.Errorf("%s has duration flags %q the table does not list", name, names)
		}
	}

	// Config keys are the flags' names; the same refusal, with the key
	// and the file's line.
	for _, f := range configFields {
		isDuration := f.name == "duration" || f.name == "monitor-interval"
		_, err := parseRunConfig("c.json", []byte(`{"`+f.name+`": 20000}`))
		if got := err != nil && strings.Contains(err.Error(), `c.json:1: "`+f.name+`": 20000 — write "20000ms" (20 s) or "20000s" (5 h 33 min)`); got != isDuration {
			t.Errorf("run config %q: %v", f.name, err)
		}
		if isDuration && !contains(durationFlags["run"], f.name) {
			t.Errorf("run config key %q is not the name of a duration flag", f.name)
		}
		if f.alias != "" {
			if _, err := parseRunConfig("c.json", []byte(`{"`+f.alias+`": 20000}`)); isDuration != (err != nil && strings.Contains(err.Error(), `"`+f.alias+`": 20000 — write`)) {
				t.Errorf("run config alias %q: %v", f.alias, err)
			}
		}
	}
	for _, key := range []string{"upstream-header-timeout", "keepalive"} {
		if !contains(durationFlags["proxy"], key) {
			t.Errorf("proxy config key %q is not the name of a proxy duration flag", key)
		}
		_, err := proxy.ParseConfig("p.json", []byte(`{"`+key+`": 20000}`))
		if err == nil || !strings.Contains(err.Error(), `p.json:1: bad proxy config: "`+key+`": 20000 — write "20000ms" (20 s) or "20000s" (5 h 33 min)`) {
			t.Errorf("proxy config %q: %v", key, err)
		}
		if _, err := proxy.ParseConfig("p.json", []byte(`{"`+key+`": "1m30s"}`)); err != nil {
			t.Errorf("proxy config %q 1m30s: %v", key, err)
		}
	}
	// The control API: a fault key and after.
	if _, err := proxy.ParseFault("latency:delay=50"); err == nil || !strings.Contains(err.Error(), `delay: 50 has no unit — write "50ms" (50 ms) or "50s" (50 s)`) {
		t.Errorf("fault key without a unit: %v", err)
	}

	// JSON: every duration the tool writes is seconds under a key ending
	// _s; no key ends _ns, _ms or _us, and no time.Duration is written as
	// nanoseconds.
	for _, v := range jsonOutputs() {
		checkJSONUnits(t, reflect.TypeOf(v), reflect.TypeOf(v).String(), map[reflect.Type]bool{})
	}
	spec, _ := proxy.ParseFault("reset:after=90s")
	raw, _ := json.Marshal(spec)
	if !strings.Contains(string(raw), `"after_s":90`) {
		t.Errorf("a fault's after in JSON: %s", raw)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// jsonOutputs are the types the tool writes as JSON: session records and
// meta, --json outputs, the control API's.
func jsonOutputs() []any {
	return []any{
		session.RunInfo{}, session.Summary{}, session.ConnRecord{}, session.ErrorRecord{}, session.HopConn{},
		session.Reset{}, session.Sample{}, session.ProxyInfo{}, session.RecStream{}, session.RecEvent{},
		session.FaultEvent{}, session.Flow{}, session.KernelEvent{},
		proxy.ConnInfo{}, proxy.Stats{}, attribution.Result{}, capture.Stats{}, analysis.Report{},
		tailEvent{}, tailError{}, tailRetry{}, tailReconnect{}, inspectReport{}, seriesSummary{},
	}
}

var (
	distType     = reflect.TypeOf(analysis.Dist{}) // a distribution of seconds, under a key ending _s
	durationType = reflect.TypeOf(time.Duration(0))
	secondsType  = reflect.TypeOf(session.Seconds(0))
)

// checkJSONUnits walks a type's JSON fields.
func checkJSONUnits(t *testing.T, typ reflect.Type, path string, seen map[reflect.Type]bool) {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map || typ.Kind() == reflect.Array {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() == "time" {
		return
	}
	seen[typ] = true
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && tag == "" {
			checkJSONUnits(t, f.Type, path, seen)
			continue
		}
		name := tag
		if name == "" {
			name = f.Name
		}
		where := path + "." + name
		for _, bad := range []string{"_ns", "_ms", "_us"} {
			if strings.HasSuffix(name, bad) {
				t.Errorf("%s: a duration in JSON is seconds under a key ending _s", where)
			}
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == durationType:
			t.Errorf("%s: a time.Duration is written as nanoseconds; use session.Seconds and a key ending _s", where)
		case ft == secondsType && !strings.HasSuffix(name, "_s"):
			t.Errorf("%s: seconds under a key not ending _s", where)
		case strings.HasSuffix(name, "_s") && ft != secondsType && ft.Kind() != reflect.Float64 && ft != distType:
			t.Errorf("%s ends _s but holds %s", where, ft)
		case strings.HasSuffix(name, "_bytes") && !(ft.Kind() >= reflect.Int && ft.Kind() <= reflect.Uint64):
			t.Errorf("%s ends _bytes but holds %s", where, ft)
		}
		checkJSONUnits(t, f.Type, where, seen)
	}
}

func TestConceptSizes(t *testing.T) {
	found := map[string][]string{}
	for name, fs := range allFlagSets() {
		for _, f := range fs.visible() {
			if !takesSize(fs, f) {
				if strings.HasSuffix(f.Name, "-size") {
					t.Errorf("%s --%s is not read as a size", name, f.Name)
				}
				continue
			}
			found[name] = append(found[name], f.Name)
			if _, ok := f.Value.(*passedFlag); ok {
				continue
			}
			for text, want := range map[string]int64{"16MB": 16_000_000, "16MiB": 16_777_216, "1500": 1500, "2GiB": 2 << 30} {
				if err := f.Value.Set(text); err != nil || f.Value.String() != size.Format(want) {
					t.Errorf("%s --%s %s: %v, %s; want %d bytes", name, f.Name, text, err, f.Value, want)
				}
			}
			if err := f.Value.Set("16M"); err == nil || !strings.Contains(err.Error(), "M could be MB or MiB") {
				t.Errorf("%s --%s 16M: %v, want refused", name, f.Name, err)
			}
			if word, _ := fs.placeholder(f); word != "SIZE" {
				t.Errorf("%s --%s: help calls its value %s, want SIZE", name, f.Name, word)
			}
		}
	}
	for name, want := range sizeFlags {
		sort.Strings(found[name])
		sort.Strings(want)
		if fmt.Sprint(found[name]) != fmt.Sprint(want) {
			t.Errorf("%s: size flags %q, the table says %q", name, found[name], want)
		}
	}
	for name, names := range found {
		if _, ok := sizeFlags[name]; !ok {
			t.Errorf("%s has size flags %q the table does not list", name, names)
		}
	}
	// The proxy config's key is the flag's name, with the same meaning.
	for text, want := range map[string]int64{`"16MB"`: 16_000_000, `"16MiB"`: 16_777_216, `4096`: 4096} {
		cfg, err := proxy.ParseConfig("p.json", []byte(`{"max-event-size": `+text+`}`))
		if err != nil || cfg.MaxEventSize != want {
			t.Errorf("proxy config max-event-size %s: %d, %v; want %d", text, cfg.MaxEventSize, err, want)
		}
	}
	// Fault keys that are sizes.
	for text, want := range map[string]string{"limit-data:bytes=1KB": "1000", "limit-data:bytes=1KiB": "1024"} {
		if _, err := proxy.ParseFault(text); err != nil {
			t.Errorf("%s: %v (want %s bytes)", text, err, want)
		}
	}
}
