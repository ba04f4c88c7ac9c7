package session

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestKernelEventKey(t *testing.T) {
	e := KernelEvent{KernelTime: 389.272019, Event: KernelSendReset, LocalAddr: "127.0.0.1:1", RemoteAddr: "127.0.0.1:46878", Reason: "NO_SOCKET"}
	if got, want := KernelEventKey(e), "00000000389272019 send_reset 127.0.0.1:1>127.0.0.1:46878 NO_SOCKET"; got != want {
		t.Errorf("key %q, want %q", got, want)
	}
	s := KernelEvent{KernelTime: 1234567.000001, Event: KernelState, LocalAddr: "[::1]:80", RemoteAddr: "[::1]:9", OldState: "TCP_ESTABLISHED", NewState: "TCP_CLOSE"}
	if got, want := KernelEventKey(s), "00001234567000001 state [::1]:80>[::1]:9 TCP_ESTABLISHED>TCP_CLOSE"; got != want {
		t.Errorf("key %q, want %q", got, want)
	}
	// Keys sort by kernel time.
	a, b := e, e
	a.KernelTime, b.KernelTime = 9.999999, 10.000001
	if string(a.Key()) >= string(b.Key()) {
		t.Errorf("%q sorts after %q", a.Key(), b.Key())
	}
}

// TestDedupKernelEvents: copies traced by two processes (kernel times a
// few µs apart, one with the owner) count once; distinct events stay.
func TestDedupKernelEvents(t *testing.T) {
	base := KernelEvent{KernelTime: 100.000010, Event: KernelSendReset, LocalAddr: "127.0.0.1:80", RemoteAddr: "127.0.0.1:5000", Reason: "TCP_ABORT_ON_CLOSE", PID: 7}
	copyB := base
	copyB.KernelTime = 100.000013
	copyB.OwnerPID, copyB.OwnerComm, copyB.SockCookie = 7, "node", 42
	recv := KernelEvent{KernelTime: 100.000011, Event: KernelReceiveReset, LocalAddr: "127.0.0.1:5000", RemoteAddr: "127.0.0.1:80", SockCookie: 9}
	recvOther := recv
	recvOther.SockCookie = 10 // another socket on the same 4-tuple
	later := base
	later.KernelTime = 100.5 // a second RST half a second later
	got := DedupKernelEvents([]KernelEvent{copyB, recv, later, base, recvOther})
	if len(got) != 4 {
		t.Fatalf("%d events: %+v", len(got), got)
	}
	if got[0].KernelTime != 100.000010 || got[0].OwnerPID != 7 || got[0].OwnerComm != "node" || got[0].SockCookie != 42 {
		t.Errorf("merged copy %+v", got[0])
	}
	if !SameKernelEvent(base, copyB) || SameKernelEvent(base, later) || SameKernelEvent(recv, recvOther) || SameKernelEvent(base, recv) {
		t.Error("SameKernelEvent")
	}
}

// TestKernelEventRoundTrip writes events and the meta record to a real
// session file and reads them back: the JSON names are the schema's.
func TestKernelEventRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 4, 48, 44, 451568545, time.UTC)
	e := KernelEvent{Time: at, KernelTime: 696.158049, Event: KernelReceiveReset, LocalAddr: "127.0.0.1:59772", RemoteAddr: "127.0.0.1:1", SockCookie: 3, TID: 8349, PID: 8345, Comm: "ksmoke", Softirq: true, OwnerPID: 8345, OwnerComm: "ksmoke"}
	w.Put(e)
	w.Put(e) // the same key: one record
	w.PutMeta(MetaKernel, KernelInfo{Instance: "/sys/kernel/tracing/instances/ssestress-1", Clock: "mono", EventsRead: 3, EventsKept: 1})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []KernelEvent
	var raw []map[string]any
	err = r.Each(BucketKernelEvents, func(k, v []byte) error {
		var ke KernelEvent
		var m map[string]any
		if err := json.Unmarshal(v, &ke); err != nil {
			return err
		}
		json.Unmarshal(v, &m)
		if string(k) != KernelEventKey(ke) {
			t.Errorf("key %q, record's %q", k, KernelEventKey(ke))
		}
		got, raw = append(got, ke), append(raw, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].Time.Equal(at) {
		t.Fatalf("read back %+v", got)
	}
	want := e
	want.Time = got[0].Time // same instant; the location is decoded anew
	if got[0] != want {
		t.Errorf("read back %+v\nwant %+v", got[0], want)
	}
	for _, k := range []string{"time", "kernel_time_s", "event", "local_addr", "remote_addr", "sock_cookie", "tid", "pid", "comm", "softirq", "owner_pid", "owner_comm"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("JSON has no %q: %v", k, raw[0])
		}
	}
	var info KernelInfo
	if ok, err := r.Meta(MetaKernel, &info); !ok || err != nil || info.Clock != "mono" || info.EventsKept != 1 {
		t.Errorf("meta kernel %+v %v %v", info, ok, err)
	}
}

// TestKernelEventsDamaged: a damaged kernel_events value is refused with
// the file and bucket named, like every other bucket.
func TestKernelEventsDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Put(KernelEvent{KernelTime: 1, Event: KernelSendReset, LocalAddr: "127.0.0.1:1", RemoteAddr: "127.0.0.1:2"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(BucketKernelEvents)).Put([]byte("x"), []byte(`{"kernel_time_s":"soon"`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = All[KernelEvent](r, BucketKernelEvents)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), BucketKernelEvents) {
		t.Errorf("damaged record: %v", err)
	}
}
