package proxy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ssestress/ssestress/internal/session"
)

// kind is one entry of the registry: its documentation and constructor.
type kind struct {
	summary     string
	keys        []keyDoc
	directional bool
	defaultDir  string
	hops        []string // hops it may act on (empty: both); the first is the default
	build       func(fs FaultSpec, scale float64) (behaviour, error)
}

// keyDoc documents one key of a kind.
type keyDoc struct{ name, doc string }

func (k *kind) key(name string) *keyDoc {
	for i := range k.keys {
		if k.keys[i].name == name {
			return &k.keys[i]
		}
	}
	return nil
}

func (k *kind) keyNames() []string {
	var names []string
	for _, kd := range k.keys {
		names = append(names, kd.name)
	}
	for _, c := range commonKeys {
		if c == "direction" && !k.directional {
			continue
		}
		names = append(names, c)
	}
	return names
}

func (k *kind) defaultHop() string {
	if len(k.hops) > 0 {
		return k.hops[0]
	}
	return session.HopClient
}

// kinds is the registry of fault kinds, by name: each kind lives in its own
// file (fault_<kind>.go) and is registered here.
var kinds = map[string]*kind{
	"latency":       latencyKind,
	"bandwidth":     bandwidthKind,
	"slicer":        slicerKind,
	"slow-close":    slowCloseKind,
	"limit-data":    limitDataKind,
	"down":          downKind,
	"timeout":       timeoutKind,
	"reset":         resetKind,
	"idle-timeout":  idleTimeoutKind,
	"max-age":       maxAgeKind,
	"nat-drop":      natDropKind,
	"drop-events":   dropEventsKind,
	"delay-events":  delayEventsKind,
	"stall":         stallKind,
	"http-status":   httpStatusKind,
	"h2-rst-stream": h2RSTStreamKind,
	"h2-goaway":     h2GoAwayKind,
}

// KindNames lists the fault kinds in order.
func KindNames() []string {
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// KindHelp is one line per kind with its keys, for --help.
func KindHelp() string {
	var b strings.Builder
	for _, n := range KindNames() {
		k := kinds[n]
		var keys []string
		for _, kd := range k.keys {
			keys = append(keys, kd.name)
		}
		fmt.Fprintf(&b, "  %-21s %s (%s)\n", n, k.summary, strings.Join(keys, ", "))
	}
	for _, n := range PresetNames() {
		fmt.Fprintf(&b, "  %-21s %s\n", "preset:"+n, presets[n].summary)
	}
	return b.String()
}
