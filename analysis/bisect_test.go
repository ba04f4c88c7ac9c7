package analysis

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssestress/ssestress/internal/session"
)

func TestBisect(t *testing.T) {
	dir := t.TempDir()
	resets := idleTimeoutSession(t, dir)
	resets2 := middleboxSession(t, dir, "mb.db", "", 0)
	quiet := writeSession(t, filepath.Join(dir, "quiet.db"), session.RunInfo{Command: "run", StartedAt: t0}, nil, nil)
	quiet2 := writeSession(t, filepath.Join(dir, "quiet2.db"), session.RunInfo{Command: "run", StartedAt: t0}, nil, nil)
	e := func(name, file string) BisectEntry { return BisectEntry{Name: name, URL: "http://" + name, File: file} }

	res, err := Bisect([]BisectEntry{e("lb", resets), e("nginx", resets2), e("app", quiet)})
	if err != nil {
		t.Fatal(err)
	}
	if res.From != "nginx" || res.To != "app" || !res.Monotone ||
		res.Statement != "The resets and cuts enter on the hop nginx → app: nginx: 25 resets and 0 cuts in 30 connection attempts; app: 0 resets and 0 cuts in 0 connection attempts." {
		t.Errorf("%+v", res)
	}
	if fp := res.Points[0].Fingerprint; fp == nil || fp.Hop != "p1/client" || fp.Class != "ECONNRESET" {
		t.Errorf("lb fingerprint %+v", fp)
	}
	for i := range res.Points {
		res.Points[i].File = filepath.Base(res.Points[i].File)
	}
	goldenDoc(t, "bisect", res.Doc())

	res, _ = Bisect([]BisectEntry{e("lb", quiet), e("app", resets)})
	if res.From != "app" || res.To != "" || res.Monotone || !strings.HasPrefix(res.Statement, "Even the innermost entry point shows resets or cuts") ||
		!strings.Contains(res.Statement, "Not conclusive: lb, outside it, showed none") {
		t.Errorf("%+v", res)
	}
	res, _ = Bisect([]BisectEntry{e("lb", quiet), e("app", quiet2)})
	if res.From != "" || !strings.HasPrefix(res.Statement, "No resets or cuts at any of the 2 entry points") {
		t.Errorf("%+v", res)
	}
}
