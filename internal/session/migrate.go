package session

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is the one place that knows older schemas. A Reader of an
// older file passes every value through Upgrade, so every consumer sees
// only the current records.
//
// Version 1 differed from version 2 by names and units only (durations
// were integer nanoseconds in keys ending in _ns), plus facts the proxy
// now states instead of leaving them to be guessed: whether a fault firing
// ended its connection. Version 1 proxies wrote the fault's action with
// the same names, and ActionEnding is what those actions did (the
// producer's knowledge, not a consumer's guess).

// v1CaptureID is the capture ID given to the one capture a version 1 file
// could hold (meta "capture"), and to its flows.
const v1CaptureID = "capture"

// v1MetaCapture is the meta key of version 1's single CaptureInfo.
const v1MetaCapture = "capture"

// Upgrade returns val, a value of bucket in a file of schema version, as
// the current schema writes it. Values of the current version are
// returned as they are.
func Upgrade(version int, bucket string, key, val []byte) ([]byte, error) {
	if version >= SchemaVersion {
		return val, nil
	}
	if bucket == BucketMeta && string(key) == MetaSchema {
		return val, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(val, &m); err != nil {
		return nil, err
	}
	if m == nil { // JSON null
		return val, nil
	}
	upgradeV1(bucket, string(key), m)
	return json.Marshal(m)
}

func upgradeV1(bucket, key string, m map[string]json.RawMessage) {
	switch bucket {
	case BucketMeta:
		switch key {
		case MetaSummary:
			if !strings.HasPrefix(str(m["scenario"]), "proxy") {
				rename(m, "connections_opened", "clients")
			}
			delete(m, "connections_opened")
			rename(m, "messages", "events")
			rename(m, "messages_per_s", "events_per_s")
		case v1MetaCapture:
			upgradeV1Capture(m)
		case MetaRun:
			if _, ok := m["time_scale"]; !ok {
				if scale := v1TimeScale(m); scale != 1 {
					m["time_scale"], _ = json.Marshal(scale)
				}
			}
		}
	case BucketTopology:
		if str(m["role"]) == RoleProxy && str(m["side"]) == HopUpstream {
			// Version 1 wrote a proxy's upstream as a proxy endpoint on its
			// upstream side: the address it sends to, not its own.
			m["role"] = quote(RoleTarget)
			delete(m, "side")
		}
		rename(m, "side", "hop")
	case BucketConns:
		rename(m, "conn_id", "client_id")
		nanosToSeconds(m, "max_gap")
		nanosToSeconds(m, "retry")
		mapValue(m, "closed_by", map[string]string{"client": ClosedBySelf, "server": ClosedByPeer})
	case BucketErrors:
		if proxy, ok := strings.CutPrefix(str(m["source"]), "proxy:"); ok {
			m["source"], m["proxy"] = quote(SourceProxy), quote(proxy)
		} else {
			rename(m, "conn_id", "client_id")
			if str(m["source"]) == "" {
				m["source"] = quote(SourceClient)
			}
		}
		nanosToSeconds(m, "age")
		renameNanos(m, "since_last_byte_ns", "idle_s")
	case BucketSamples:
		for _, k := range []string{"uptime", "timer_lag", "cpu_user", "cpu_system"} {
			nanosToSeconds(m, k)
		}
		rename(m, "messages", "events")
		rename(m, "opened", "attempts")
	case BucketHopConns:
		rename(m, "open", "opened")
		rename(m, "close", "closed")
		rename(m, "how", "ending")
		lower(m, "ending")
		mapValue(m, "closed_by", map[string]string{"proxy": ClosedBySelf, "client": ClosedByPeer, "server": ClosedByPeer})
		rename(m, "upstream_error_action", "on_upstream_error")
		var firings []map[string]json.RawMessage
		if json.Unmarshal(m["faults"], &firings) == nil && firings != nil {
			for _, f := range firings {
				upgradeV1Firing(f)
			}
			m["faults"], _ = json.Marshal(firings)
		}
	case BucketFaults:
		upgradeV1Firing(m)
	case BucketFlows:
		rename(m, "client", "dialer")
		rename(m, "server", "listener")
		rename(m, "from_client", "from_dialer")
		rename(m, "from_server", "from_listener")
		rename(m, "resets", "rsts")
		rename(m, "resets_omitted", "rsts_omitted")
		m["capture"] = quote(v1CaptureID)
		var rsts []map[string]json.RawMessage
		if json.Unmarshal(m["rsts"], &rsts) == nil && rsts != nil {
			for _, r := range rsts {
				mapValue(r, "from", map[string]string{"client": FromDialer, "server": FromListener})
			}
			m["rsts"], _ = json.Marshal(rsts)
		}
	case BucketResets:
		rename(m, "sender", "sender_addr")
		rename(m, "receiver", "receiver_addr")
		rename(m, "fault", "fault_name")
		nanosToSeconds(m, "age")
		nanosToSeconds(m, "idle")
		if hop := str(m["hop"]); hop != "" && hop != HopClient && hop != HopUpstream {
			m["link"] = m["hop"]
			delete(m, "hop")
		}
		var ref map[string]json.RawMessage
		if json.Unmarshal(m["error"], &ref) == nil && ref != nil {
			rename(ref, "conn_id", "client_id")
			m["error"], _ = json.Marshal(ref)
		}
	case BucketRecStreams:
		nanosToSeconds(m, "resp_at")
		nanosToSeconds(m, "end")
		rename(m, "closed_by", "ended_by")
		mapValue(m, "ended_by", map[string]string{"server": EndedByUpstream})
		rename(m, "how", "ending")
		lower(m, "ending")
	case BucketRecEvents:
		nanosToSeconds(m, "offset")
		nanosToSeconds(m, "retry")
	}
}

// upgradeV1Firing upgrades a v1 fault firing (inside a HopConn, or a
// FaultEvent) and states whether it ended its connection.
func upgradeV1Firing(m map[string]json.RawMessage) {
	rename(m, "fault", "fault_name")
	rename(m, "kind", "fault_kind")
	if ending := ActionEnding(strings.ToLower(str(m["action"]))); ending != "" {
		m["ending"] = quote(ending)
	}
}

// upgradeV1Capture turns v1's meta "capture" into a CaptureInfo of the
// captures bucket.
func upgradeV1Capture(m map[string]json.RawMessage) {
	m["id"] = quote(v1CaptureID)
	rename(m, "out", "pcap")
	rename(m, "resets", "rst_segments")
}

func rename(m map[string]json.RawMessage, from, to string) {
	if v, ok := m[from]; ok {
		delete(m, from)
		m[to] = v
	}
}

// nanosToSeconds turns "<name>_ns" (integer nanoseconds) into "<name>_s".
func nanosToSeconds(m map[string]json.RawMessage, name string) {
	renameNanos(m, name+"_ns", name+"_s")
}

func renameNanos(m map[string]json.RawMessage, from, to string) {
	v, ok := m[from]
	if !ok {
		return
	}
	delete(m, from)
	n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
	if err != nil {
		var f float64
		if json.Unmarshal(v, &f) != nil {
			m[to] = v // left for the decoder to refuse
			return
		}
		n = int64(f)
	}
	m[to] = AppendSeconds(nil, time.Duration(n))
}

func mapValue(m map[string]json.RawMessage, key string, table map[string]string) {
	if to, ok := table[str(m[key])]; ok {
		m[key] = quote(to)
	}
}

func lower(m map[string]json.RawMessage, key string) {
	if s := str(m[key]); s != "" {
		m[key] = quote(strings.ToLower(s))
	}
}

// str is a JSON string value, "" for anything else.
func str(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

func quote(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// v1TimeScale finds the time scale a version 1 run was started with, which
// it did not state: a --time-scale flag in its arguments, or a
// "time_scale" (or "timeScale", "time-scale") number anywhere in its
// config. It returns 1 when there is none.
func v1TimeScale(run map[string]json.RawMessage) float64 {
	var args []string
	json.Unmarshal(run["args"], &args)
	for i, arg := range args {
		arg = strings.TrimLeft(arg, "-")
		if v, ok := strings.CutPrefix(arg, "time-scale="); ok {
			if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
				return s
			}
		}
		if arg == "time-scale" && i+1 < len(args) {
			if s, err := strconv.ParseFloat(args[i+1], 64); err == nil && s > 0 {
				return s
			}
		}
	}
	cfg := run["config"]
	if len(cfg) == 0 {
		return 1
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(cfg))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return 1
	}
	if s, ok := findNumber(v, "time_scale", "timeScale", "time-scale"); ok && s > 0 {
		return s
	}
	return 1
}

// findNumber looks for the first of keys anywhere in a decoded JSON value,
// visiting object keys in sorted order.
func findNumber(v any, keys ...string) (float64, bool) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range keys {
			if n, ok := v[k].(json.Number); ok {
				if f, err := n.Float64(); err == nil {
					return f, true
				}
			}
		}
		names := make([]string, 0, len(v))
		for k := range v {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			if f, ok := findNumber(v[k], keys...); ok {
				return f, true
			}
		}
	case []any:
		for _, e := range v {
			if f, ok := findNumber(e, keys...); ok {
				return f, true
			}
		}
	}
	return 0, false
}
