package session_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
)

// fuzzMetaKeys are the meta keys a fuzzed value may be stored under when the
// fuzzer picks the meta bucket: the ones readers decode, and a free one.
var fuzzMetaKeys = []string{session.MetaRun, session.MetaSummary, v1MetaCapture, ""}

// v1MetaCapture is the meta key of a version 1 file's capture description
// (version 2 keeps captures in a bucket of their own).
const v1MetaCapture = "capture"

// FuzzSessionRecordDecode writes arbitrary bytes under an arbitrary key of
// any bucket of a real bbolt file (and an arbitrary schema version), then
// reads the file through every reader a user can reach: session.Open, Meta,
// Decode/All of each record type, recording.Read (replay, recordings) and
// analysis.Load (report, the live view). Each must return a value or an
// error, never panic; a value that is not JSON must be an error naming the
// file and bucket; the file must still pass bbolt's consistency check.
//
// Run longer with:
//
//	go test -run '^$' -fuzz '^FuzzSessionRecordDecode$' -fuzztime 5m ./internal/session/
func FuzzSessionRecordDecode(f *testing.F) {
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	seed := func(bucket string, key string, v any) {
		raw, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bucketIndex(bucket), []byte(key), raw, "2")
	}
	seed(session.BucketMeta, session.MetaRun, session.RunInfo{Tool: "ssestress test", Command: "run", StartedAt: start})
	seed(session.BucketMeta, session.MetaSummary, session.Summary{Scenario: "flood", Errors: map[string]int64{"ECONNRESET": 2}})
	f.Add(bucketIndex(session.BucketMeta), []byte(v1MetaCapture), []byte(`{"iface":"lo","out":"x.pcap","resets":3}`), "1")
	seed(session.BucketCaptures, "lo", session.CaptureInfo{ID: "lo"})
	seed(session.BucketProxies, "p1", session.ProxyInfo{Name: "p1"})
	seed(session.BucketTopology, "\x00\x00\x00\x00\x00\x00\x00\x01", session.Endpoint{Role: session.RoleServer, Addr: "127.0.0.1:1"})
	seed(session.BucketConns, "c0001/00000", session.ConnRecord{ClientID: "c0001", Start: start, End: start.Add(time.Second), EndClass: "ECONNRESET"})
	seed(session.BucketErrors, "\x00\x00\x00\x00\x00\x00\x00\x01", session.ErrorRecord{Time: start, ClientID: "c0001", Class: "ECONNRESET", Age: session.Seconds(time.Second)})
	seed(session.BucketSamples, "\x00\x00\x00\x00\x00\x00\x00\x01", session.Sample{Time: start, Active: 3, CPUUser: session.Seconds(time.Second)})
	seed(session.BucketHopConns, "p1/client/1", session.HopConn{})
	seed(session.BucketFaults, "\x00\x00\x00\x00\x00\x00\x00\x01", session.FaultEvent{})
	seed(session.BucketFlows, "x", session.Flow{})
	seed(session.BucketResets, "x", session.Reset{})
	seed(session.BucketRecStreams, "p1/p1-1", session.RecStream{Proxy: "p1", ConnID: "p1-1", Start: start})
	seed(session.BucketRecEvents, "p1/p1-1/0000000000", session.RecEvent{Proxy: "p1", ConnID: "p1-1", Kind: session.RecKindEvent, Data: "x"})
	f.Add(bucketIndex(session.BucketConns), []byte("c/0"), []byte(`{"conn_id":1e999,"start":"yesterday"}`), "1")
	f.Add(bucketIndex(session.BucketErrors), []byte("k"), []byte(`{"source":"proxy:p1","conn_id":"p1-1","age_ns":5,"since_last_byte_ns":"x"}`), "1")
	f.Add(bucketIndex(session.BucketHopConns), []byte("p1/p1-1/client"), []byte(`{"how":"RST","closed_by":"proxy","faults":[{"fault":"r","kind":"reset","action":"rst"}]}`), "1")
	f.Add(bucketIndex(session.BucketSamples), []byte("k"), []byte(`{"errors":{"A":-9223372036854775808},"uptime_ns":1e30}`), "1")
	f.Add(bucketIndex(session.BucketErrors), []byte("k"), []byte(`null`), "1")
	f.Add(bucketIndex(session.BucketRecEvents), []byte("k"), []byte(`[1,2,3]`), "1")
	f.Add(bucketIndex(session.BucketMeta), []byte("run"), []byte(`{"started_at":"2026-13-45T99:99:99Z"}`), "1")
	f.Add(bucketIndex(session.BucketErrors), []byte("k"), []byte("\xff\xfe garbage {"), "1")
	f.Add(bucketIndex(session.BucketConns), []byte("k"), []byte(`{}`), "2")
	f.Add(bucketIndex(session.BucketConns), []byte("k"), []byte(`{}`), "-1")
	f.Add(bucketIndex(session.BucketConns), []byte("k"), []byte(`{}`), "one")

	f.Fuzz(func(t *testing.T, which uint8, key, val []byte, schema string) {
		bucket := session.Buckets[int(which)%len(session.Buckets)]
		if bucket == session.BucketMeta {
			if k := fuzzMetaKeys[int(which/16)%len(fuzzMetaKeys)]; k != "" {
				key = []byte(k)
			}
		}
		if len(key) == 0 || len(key) > bolt.MaxKeySize || len(val) > 1<<20 {
			return // bbolt refuses such keys; huge values only slow the fuzzer
		}
		if bucket == session.BucketMeta && string(key) == session.MetaSchema {
			return // the schema is the fourth input
		}
		path := filepath.Join(fuzzDir(t), "fuzz.db")
		writeRaw(t, path, schema, bucket, key, val)

		r, err := session.Open(path)
		if err != nil {
			if !errors.Is(err, session.ErrNotSession) && !errors.Is(err, session.ErrNewerSchema) {
				t.Fatalf("Open: unexpected error kind: %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("Open error does not name the file: %v", err)
			}
			return
		}
		defer r.Close()
		if err := r.Check(); err != nil {
			t.Fatalf("consistency check of a freshly written file: %v", err)
		}

		var run session.RunInfo
		var sum session.Summary
		var capInfo session.CaptureInfo
		metaErrs := []error{}
		for _, m := range []struct {
			key string
			v   any
		}{{session.MetaRun, &run}, {session.MetaSummary, &sum}, {v1MetaCapture, &capInfo}} {
			_, err := r.Meta(m.key, m.v)
			metaErrs = append(metaErrs, err)
		}
		if bucket == session.BucketMeta && !json.Valid(val) {
			for i, k := range []string{session.MetaRun, session.MetaSummary, v1MetaCapture} {
				if string(key) == k && metaErrs[i] == nil {
					t.Fatalf("meta %q holds invalid JSON %q, Meta returned no error", k, val)
				}
			}
		}

		decoded := map[string]error{
			session.BucketTopology:   decodeAll[session.Endpoint](r, session.BucketTopology),
			session.BucketConns:      decodeAll[session.ConnRecord](r, session.BucketConns),
			session.BucketErrors:     decodeAll[session.ErrorRecord](r, session.BucketErrors),
			session.BucketSamples:    decodeAll[session.Sample](r, session.BucketSamples),
			session.BucketProxies:    decodeAll[session.ProxyInfo](r, session.BucketProxies),
			session.BucketCaptures:   decodeAll[session.CaptureInfo](r, session.BucketCaptures),
			session.BucketHopConns:   decodeAll[session.HopConn](r, session.BucketHopConns),
			session.BucketFaults:     decodeAll[session.FaultEvent](r, session.BucketFaults),
			session.BucketFlows:      decodeAll[session.Flow](r, session.BucketFlows),
			session.BucketResets:     decodeAll[session.Reset](r, session.BucketResets),
			session.BucketRecStreams: decodeAll[session.RecStream](r, session.BucketRecStreams),
			session.BucketRecEvents:  decodeAll[session.RecEvent](r, session.BucketRecEvents),
		}
		if err, typed := decoded[bucket]; typed && !json.Valid(val) {
			if err == nil {
				t.Fatalf("bucket %s holds invalid JSON %q, Decode returned no error", bucket, val)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), bucket) {
				t.Fatalf("Decode error does not name the file and bucket: %v", err)
			}
		}

		// The readers behind the commands: they may refuse the value, but
		// must not panic.
		r.Captures()
		recording.Read(r)
		analysis.Load(r)
	})
}

// bucketIndex is the fuzz input that selects bucket.
func bucketIndex(bucket string) uint8 {
	for i, b := range session.Buckets {
		if b == bucket {
			return uint8(i)
		}
	}
	panic("unknown bucket " + bucket)
}

// decodeAll decodes every record of bucket as T.
func decodeAll[T any](r *session.Reader, bucket string) error {
	_, err := session.All[T](r, bucket)
	return err
}

// fuzzDir is a directory for one fuzz input's file: on a memory file
// system where there is one, since bbolt syncs every new file and a loaded
// disk stalls the fuzzer for seconds on those syncs.
func fuzzDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "ssestress-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// writeRaw makes a session file as a Writer would (every bucket, the
// schema version) holding one raw value, bypassing the Writer's encoder.
func writeRaw(t *testing.T, path, schema, bucket string, key, val []byte) {
	t.Helper()
	// NoSync: the file is read back by this process only; the fuzzer
	// makes thousands.
	db, err := bolt.Open(path, 0o644, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range session.Buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte(session.BucketMeta)).Put([]byte(session.MetaSchema), []byte(schema)); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucket)).Put(key, val)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}
