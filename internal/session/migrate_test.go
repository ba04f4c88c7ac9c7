package session

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestSecondsJSON: durations are written as exact decimal seconds and read
// back to the nanosecond, whatever their size or sign.
func TestSecondsJSON(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		text string
	}{
		{0, "0"}, {time.Nanosecond, "0.000000001"}, {1500 * time.Millisecond, "1.5"},
		{61*time.Second + 250*time.Millisecond, "61.25"}, {-time.Nanosecond, "-0.000000001"},
		{72 * time.Hour, "259200"}, {1<<63 - 1, "9223372036.854775807"}, {-1 << 63, "-9223372036.854775808"},
	} {
		b, err := json.Marshal(Seconds(c.d))
		if err != nil || string(b) != c.text {
			t.Errorf("%v: %s %v, want %s", c.d, b, err, c.text)
		}
		var back Seconds
		if err := json.Unmarshal(b, &back); err != nil || back.D() != c.d {
			t.Errorf("%s read back as %v (%v), want %v", b, back.D(), err, c.d)
		}
	}
	for text, want := range map[string]time.Duration{"1e-3": time.Millisecond, "2.5E1": 25 * time.Second, "0.0000000015": 2 * time.Nanosecond} {
		var s Seconds
		if err := json.Unmarshal([]byte(text), &s); err != nil || s.D() != want {
			t.Errorf("%s = %v (%v), want %v", text, s.D(), err, want)
		}
	}
	for _, bad := range []string{`"1s"`, "1e300", "NaN", "-", "1.", ".5x", "true"} {
		var s Seconds
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("%s accepted as %v", bad, s.D())
		}
	}
}

// TestReadVersion1: a file written by a version 1 ssestress (its records
// written here as that version wrote them) reads as the current schema,
// through Decode, Meta, Captures and Each alike.
func TestReadVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	v1 := map[string]map[string]string{
		BucketMeta: {
			MetaSchema:  "1",
			MetaRun:     `{"tool":"ssestress dev","command":"run","args":["--fault","reset:after=1s","--time-scale","60"],"pid":1,"started_at":"2026-11-27T10:00:00Z"}`,
			MetaSummary: `{"scenario":"flood","duration_s":30,"connections_opened":20,"messages":900,"messages_per_s":30,"reconnects":15,"errors":{"ECONNRESET":15}}`,
			"capture":   `{"iface":"lo","ports":[8080],"out":"run.pcap","packets":10,"resets":2}`,
		},
		BucketTopology: {
			"1": `{"role":"proxy","name":"p1","side":"client","addr":"127.0.0.1:8080"}`,
			"2": `{"role":"proxy","name":"p1","side":"upstream","addr":"127.0.0.1:3000"}`,
		},
		BucketConns: {"c0001/00000": `{"conn_id":"c0001","attempt":0,"start":"2026-11-27T10:00:00Z","max_gap_ns":1500000000,"retry_ns":3000000000,"closed_by":"server","end_class":"ECONNRESET"}`},
		BucketErrors: {
			"1": `{"time":"2026-11-27T10:00:05Z","source":"client","conn_id":"c0001","attempt":0,"class":"ECONNRESET","age_ns":5000000001,"since_last_byte_ns":2000000000}`,
			"2": `{"time":"2026-11-27T10:00:05Z","source":"proxy:p1","conn_id":"p1-3","hop":"upstream","class":"ECONNRESET","age_ns":1,"since_last_byte_ns":0}`,
		},
		BucketSamples: {"1": `{"time":"2026-11-27T10:00:01Z","uptime_ns":1000000000,"opened":20,"messages":50,"timer_lag_ns":1500,"cpu_user_ns":2000000}`},
		BucketHopConns: {"p1/p1-3/client": `{"proxy":"p1","conn_id":"p1-3","hop":"client","local_addr":"127.0.0.1:8080","remote_addr":"127.0.0.1:50000","open":"2026-11-27T10:00:00Z","close":"2026-11-27T10:00:05Z","closed_by":"proxy","how":"RST","upstream_error_action":"reset",` +
			`"faults":[{"fault":"r","kind":"reset","action":"rst","time":"2026-11-27T10:00:05Z"},{"fault":"l","kind":"latency","action":"delay","time":"2026-11-27T10:00:01Z"}]}`},
		BucketFaults: {
			"1": `{"time":"2026-11-27T10:00:05Z","proxy":"p1","conn_id":"p1-3","hop":"client","fault":"r","kind":"reset","action":"rst"}`,
			"2": `{"time":"2026-11-27T10:00:05Z","proxy":"p1","conn_id":"p1-3","hop":"client","fault":"d","kind":"drop-events","action":"drop"}`,
			"3": `{"time":"2026-11-27T10:00:05Z","proxy":"p1","conn_id":"p1-4","hop":"client","fault":"s","kind":"http-status","action":"status"}`,
		},
		BucketFlows:      {"k": `{"client":"127.0.0.1:50000","server":"127.0.0.1:8080","first":"2026-11-27T10:00:00Z","from_client":{"packets":3},"from_server":{"packets":4},"resets":[{"time":"2026-11-27T10:00:05Z","from":"server","seq":9}],"resets_omitted":1}`},
		BucketResets:     {"k": `{"id":"k","hop":"direct","sender":"127.0.0.1:8080","receiver":"127.0.0.1:50000","sender_role":"server","age_ns":5000000000,"idle_ns":-1,"fault":"r","error":{"conn_id":"c0001","class":"ECONNRESET"}}`},
		BucketRecStreams: {"p1/p1-3": `{"proxy":"p1","conn_id":"p1-3","method":"GET","path":"/s","start":"2026-11-27T10:00:00Z","resp_at_ns":1000,"ended":true,"end_ns":5000000000,"closed_by":"server","how":"RST","frames":1,"bytes":10}`},
		BucketRecEvents:  {"p1/p1-3/0000000000": `{"proxy":"p1","conn_id":"p1-3","seq":0,"offset_ns":2000,"kind":"retry","retry_ns":3000000000}`},
	}
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for bucket, kv := range v1 {
			b, err := tx.CreateBucketIfNotExists([]byte(bucket))
			if err != nil {
				return err
			}
			for k, v := range kv {
				if err := b.Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	r := openChecked(t, path)
	if r.Version() != 1 {
		t.Fatalf("version %d", r.Version())
	}
	var run RunInfo
	var sum Summary
	if _, err := r.Meta(MetaRun, &run); err != nil || run.TimeScale != 60 {
		t.Errorf("run %+v (%v): the time scale of the arguments, typed", run, err)
	}
	if _, err := r.Meta(MetaSummary, &sum); err != nil || sum.Clients != 20 || sum.Events != 900 || sum.EventsPerS != 30 {
		t.Errorf("summary %+v (%v)", sum, err)
	}
	caps, err := r.Captures()
	if err != nil || len(caps) != 1 || caps[0].ID != v1CaptureID || caps[0].Pcap != "run.pcap" || caps[0].RSTSegments != 2 {
		t.Errorf("captures %+v (%v)", caps, err)
	}
	topo, _ := All[Endpoint](r, BucketTopology)
	if len(topo) != 2 || topo[0].Hop != HopClient || topo[1].Role != RoleTarget || topo[1].Hop != "" {
		t.Errorf("topology %+v", topo)
	}
	conns, _ := All[ConnRecord](r, BucketConns)
	if len(conns) != 1 || conns[0].ClientID != "c0001" || conns[0].MaxGap.D() != 1500*time.Millisecond || conns[0].Retry.D() != 3*time.Second || conns[0].ClosedBy != ClosedByPeer {
		t.Errorf("conns %+v", conns)
	}
	errs, _ := All[ErrorRecord](r, BucketErrors)
	if len(errs) != 2 || errs[0].ClientID != "c0001" || errs[0].Age.D() != 5*time.Second+1 || errs[0].Idle.D() != 2*time.Second || errs[0].Source != SourceClient ||
		errs[1].Source != SourceProxy || errs[1].Proxy != "p1" || errs[1].ConnID != "p1-3" || errs[1].ClientID != "" {
		t.Errorf("errors %+v", errs)
	}
	samples, _ := All[Sample](r, BucketSamples)
	if len(samples) != 1 || samples[0].Attempts != 20 || samples[0].Events != 50 || samples[0].Uptime.D() != time.Second || samples[0].TimerLag.D() != 1500 || samples[0].CPUUser.D() != 2*time.Millisecond {
		t.Errorf("samples %+v", samples)
	}
	hops, _ := All[HopConn](r, BucketHopConns)
	if len(hops) != 1 || hops[0].Opened.IsZero() || hops[0].Closed.IsZero() || hops[0].ClosedBy != ClosedBySelf || hops[0].Ending != EndingRST ||
		hops[0].OnUpstreamError != "reset" || len(hops[0].Faults) != 2 || hops[0].Faults[0].FaultName != "r" || hops[0].Faults[0].Ending != EndingRST || hops[0].Faults[1].Ends() {
		t.Errorf("hop conns %+v", hops)
	}
	faults, _ := All[FaultEvent](r, BucketFaults)
	if len(faults) != 3 || faults[0].FaultKind != "reset" || faults[0].Ending != EndingRST || faults[1].Ends() || faults[2].Ending != EndingStream {
		t.Errorf("faults %+v", faults)
	}
	flows, _ := All[Flow](r, BucketFlows)
	if len(flows) != 1 || flows[0].Dialer != "127.0.0.1:50000" || flows[0].Listener != "127.0.0.1:8080" || flows[0].Capture != v1CaptureID ||
		flows[0].FromDialer.Packets != 3 || flows[0].FromListener.Packets != 4 || len(flows[0].RSTs) != 1 || flows[0].RSTs[0].From != FromListener || flows[0].RSTsOmitted != 1 {
		t.Errorf("flows %+v", flows)
	}
	resets, _ := All[Reset](r, BucketResets)
	if len(resets) != 1 || resets[0].Link != LinkDirect || resets[0].Hop != "" || resets[0].SenderAddr != "127.0.0.1:8080" || resets[0].Idle.D() != -1 ||
		resets[0].FaultName != "r" || resets[0].Error == nil || resets[0].Error.ClientID != "c0001" {
		t.Errorf("resets %+v", resets)
	}
	streams, _ := All[RecStream](r, BucketRecStreams)
	if len(streams) != 1 || streams[0].EndedBy != EndedByUpstream || streams[0].Ending != EndingRST || streams[0].End.D() != 5*time.Second || streams[0].RespAt.D() != 1000 {
		t.Errorf("rec streams %+v", streams)
	}
	events, _ := All[RecEvent](r, BucketRecEvents)
	if len(events) != 1 || events[0].Offset.D() != 2000 || events[0].Retry.D() != 3*time.Second {
		t.Errorf("rec events %+v", events)
	}
	// Each gives the upgraded bytes too.
	n := 0
	r.Each(BucketConns, func(k, v []byte) error {
		var c ConnRecord
		if err := json.Unmarshal(v, &c); err != nil || c.ClientID != "c0001" {
			t.Errorf("Each: %s (%v)", v, err)
		}
		n++
		return nil
	})
	if n != 1 {
		t.Errorf("Each visited %d", n)
	}
}
