package analysis

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// TestReportKernelEvidence: a run's file with kernel reset events and a
// collector that lost some: the report counts the events per file, says
// a collector ran and what it lost, in JSON and in the verdict's
// evidence, and names the process in the first sentence.
func TestReportKernelEvidence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.db")
	w, err := session.Create(path, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	w.PutMeta(session.MetaRun, session.RunInfo{Command: "run", Host: "h1", StartedAt: t0})
	w.Put(session.Endpoint{Role: session.RoleServer, Addr: "127.0.0.1:8090"})
	w.Put(session.ErrorRecord{Time: t0.Add(3 * time.Second), Source: session.SourceClient, ClientID: "c0001", Class: "ECONNRESET",
		LocalAddr: "127.0.0.1:40001", RemoteAddr: "127.0.0.1:8090", Age: session.Seconds(3 * time.Second)})
	w.Put(session.KernelEvent{Time: t0.Add(3 * time.Second), KernelTime: 1003, Event: session.KernelSendReset,
		LocalAddr: "127.0.0.1:8090", RemoteAddr: "127.0.0.1:40001", State: "TCP_CLOSE", Reason: "TCP_ABORT_ON_CLOSE", PID: 4242, Comm: "node"})
	w.PutMeta(session.MetaKernel, session.KernelInfo{EventsRead: 50, EventsKept: 1, EventsLost: 7})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := LoadFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Evidence.Kernel || rep.Evidence.KernelEventsLost != 7 || rep.Files[0].Records[session.BucketKernelEvents] != 1 {
		t.Errorf("evidence %+v, records %v", rep.Evidence, rep.Files[0].Records)
	}
	v := rep.Verdict
	if v.KernelResets != 1 || v.KernelEventsLost != 7 || !strings.Contains(strings.Join(v.Evidence, "\n"), "7 events lost") ||
		!strings.Contains(v.Statement, "because node (pid 4242) closed the socket with unread data (TCP_ABORT_ON_CLOSE)") {
		t.Errorf("verdict %+v", v)
	}
	var js bytes.Buffer
	if err := Render(&js, rep, "json"); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Evidence map[string]any `json:"evidence"`
		Verdict  struct {
			Cause struct {
				Kernel map[string]any `json:"kernel"`
			} `json:"cause"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal(js.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	k := out.Verdict.Cause.Kernel
	if k["reason"] != "TCP_ABORT_ON_CLOSE" || k["comm"] != "node" || k["pid"] != float64(4242) || out.Evidence["kernel_events_lost"] != float64(7) {
		t.Errorf("JSON kernel %v, evidence %v", k, out.Evidence)
	}
}
