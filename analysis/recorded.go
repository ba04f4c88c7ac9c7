package analysis

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// ReplayComparison is a replay run's comparison of how the recorded streams
// ended with how their replayed connections ended, as the run stored it
// (meta "replay").
type ReplayComparison struct {
	File string `json:"file"`
	session.ReplayEndings
}

// UnrecordedTunnel is a CONNECT target whose tunnels a recording proxy
// passed through without recording them (ProxyInfo.UnrecordedTunnels).
type UnrecordedTunnel struct {
	File    string `json:"file"`
	Proxy   string `json:"proxy"`
	Target  string `json:"target"`
	Tunnels int64  `json:"tunnels"`
}

// recordedFacts are what a file says about recording and replay.
type recordedFacts struct {
	replay     []ReplayComparison
	unrecorded []UnrecordedTunnel
}

// readRecorded reads the file's replay comparison and its proxies'
// unrecorded tunnels.
func (a *accumulator) readRecorded(r *session.Reader) error {
	var cmp session.ReplayEndings
	found, err := r.Meta(session.MetaReplay, &cmp)
	if err != nil {
		return fmt.Errorf("%s: replay comparison: %w", r.Path(), err)
	}
	name := filepath.Base(r.Path())
	if found {
		a.recorded.replay = append(a.recorded.replay, ReplayComparison{File: name, ReplayEndings: cmp})
	}
	return session.Decode(r, session.BucketProxies, func(p *session.ProxyInfo) error {
		targets := make([]string, 0, len(p.UnrecordedTunnels))
		for t := range p.UnrecordedTunnels {
			targets = append(targets, t)
		}
		sort.Strings(targets)
		for _, t := range targets {
			a.recorded.unrecorded = append(a.recorded.unrecorded, UnrecordedTunnel{File: name, Proxy: p.Name, Target: t, Tunnels: p.UnrecordedTunnels[t]})
		}
		return nil
	})
}

// recordedTables are the tables of recording and replay facts, only when
// the files hold some.
func recordedTables(rep *Report) []Table {
	var out []Table
	live := newTable("files_being_written", "Files still being written", "file", "what its writer had committed at=snapshot_at")
	live.Intro = []string{"These files were held by a running ssestress (a proxy recording into them): the report reads a snapshot of what had been committed; run it again for more."}
	for _, f := range rep.Files {
		if !f.SnapshotAt.IsZero() {
			live.addRow(f.Name, cell{Text: f.SnapshotAt.UTC().Format("2006-01-02 15:04:05.000Z"), Data: []string{f.SnapshotAt.UTC().Format(time.RFC3339Nano)}})
		}
	}
	if len(live.Rows) > 0 {
		out = append(out, live)
	}
	if len(rep.Replay) > 0 {
		t := newTable("replay_endings", "Replayed endings against the recording", "file", "ending", "recorded#", "replayed#=replayed#,expected#",
			"age recorded p50#=age_recorded_p50_s#", "age recorded p95#=age_recorded_p95_s#", "age replayed p50#=age_replayed_p50_s#",
			"age replayed p95#=age_replayed_p95_s#", "age error p95#=age_error_p95_s#", "ended otherwise")
		t.Key = 2
		t.Intro = []string{"Each connection of a replay run's recorded pattern replays one recorded stream: how many ended as their recorded stream did, and at which ages."}
		for _, c := range rep.Replay {
			if len(c.Endings) == 0 {
				t.addRow(c.File, "(pattern "+c.Pattern+": connections replay no one stream)", none("", 1), none("", 2), none("", 1), none("", 1),
					none("", 1), none("", 1), none("", 1), none("", 1))
			}
			for _, e := range c.Endings {
				replayed := cell{Text: fmt.Sprintf("%d of %d", e.Replayed, e.Expected), Data: []string{count(e.Replayed), count(e.Expected)}}
				t.addRow(c.File, e.Kind, count(e.Recorded), replayed,
					ageCell(e.RecordedAge, e.RecordedAge.P50), ageCell(e.RecordedAge, e.RecordedAge.P95),
					ageCell(e.ReplayedAge, e.ReplayedAge.P50), ageCell(e.ReplayedAge, e.ReplayedAge.P95),
					ageCell(e.AgeError, e.AgeError.P95), listCell(otherText(e.Other)))
			}
		}
		out = append(out, t)
	}
	if len(rep.UnrecordedTunnels) > 0 {
		t := newTable("unrecorded_tunnels", "Tunnels passed through without recording", "file", "proxy", "target", "tunnels#")
		t.Intro = []string{"CONNECT tunnels carrying TLS are recorded only with ssestress proxy --mitm; these were not."}
		for _, u := range rep.UnrecordedTunnels {
			t.add(u.File, u.Proxy, u.Target, count(u.Tunnels))
		}
		out = append(out, t)
	}
	return out
}

func ageCell(d session.AgeDist, v session.Seconds) cell {
	if d.N == 0 {
		return none("-", 1)
	}
	return secondsCell(v.Seconds())
}

func otherText(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := sortedKeys(m)
	sortByCount(keys, m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
