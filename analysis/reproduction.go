package analysis

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"
)

// Fingerprint is what identifies a failure across runs: the class, where
// it came from, and the cluster its errors formed.
type Fingerprint struct {
	Class  string `json:"class"`
	Hop    string `json:"hop"`
	Origin string `json:"origin"`
	Fault  string `json:"fault,omitempty"`
	// Dimension and CenterS are the densest cluster of the class ("" and 0
	// when its errors did not cluster).
	Dimension string  `json:"dimension,omitempty"`
	CenterS   float64 `json:"center_s,omitempty"`
}

// String writes the fingerprint in one line.
func (f Fingerprint) String() string {
	o := f.Origin
	if f.Fault != "" {
		o += " (" + f.Fault + ")"
	}
	s := f.Class + " · " + o + " on " + f.Hop
	if f.Hop == HopUnknown {
		s = f.Class + " · " + o + " origin, hop unknown"
	}
	if f.Dimension != "" {
		s += " · " + f.Dimension + " " + fmtSeconds(f.CenterS)
	} else {
		s += " · no cluster"
	}
	return s
}

// same reports whether two fingerprints are the same failure: equal in
// everything but the cluster centre, which may differ by the matching
// tolerance.
func (f Fingerprint) same(g Fingerprint) bool {
	if f.Class != g.Class || f.Hop != g.Hop || f.Origin != g.Origin || f.Fault != g.Fault || f.Dimension != g.Dimension {
		return false
	}
	return f.Dimension == "" || math.Abs(f.CenterS-g.CenterS) <= matchTolerance*max(f.CenterS, g.CenterS)
}

// RunResult is one run of a repeated scenario.
type RunResult struct {
	File       string `json:"file"`
	Errors     int64  `json:"errors"`
	Matching   int64  `json:"matching"` // errors of the expected class
	Reproduced bool   `json:"reproduced"`
	// FirstS is the time from the run's start to its first matching error
	// (-1 when there was none).
	FirstS      float64      `json:"first_s"`
	Fingerprint *Fingerprint `json:"fingerprint,omitempty"`
}

// ReproductionResult is the reporting half of run --repeat N.
type ReproductionResult struct {
	// Expect is the error class asked for; "" means any error.
	Expect     string      `json:"expect"`
	Runs       []RunResult `json:"runs"`
	Reproduced int         `json:"reproduced"`
	Total      int         `json:"total"`
	Rate       float64     `json:"rate"`
	// FirstS is the time to the first matching error over the runs that
	// reproduced it (min, p50 as median, max).
	FirstS Dist `json:"time_to_first_s"`
	// Fingerprints are the distinct fingerprints of the runs that
	// reproduced, with how many runs had each; SameFingerprint is true when
	// there is exactly one.
	Fingerprints    []FingerprintCount `json:"fingerprints"`
	SameFingerprint bool               `json:"same_fingerprint"`
	Statement       string             `json:"statement"`
}

// FingerprintCount is one distinct fingerprint and its runs.
type FingerprintCount struct {
	Fingerprint Fingerprint `json:"fingerprint"`
	Runs        int         `json:"runs"`
}

// Reproduction reads the session files of repeated runs of one scenario
// (one file per run) and says how consistently the expected error class
// (expect, "" for any error) appeared: in how many runs, how soon, and
// whether its fingerprint was the same every time.
func Reproduction(files []string, expect string) (*ReproductionResult, error) {
	if len(files) == 0 {
		return nil, ErrNoFiles
	}
	res := &ReproductionResult{Expect: expect, Total: len(files)}
	var firsts []float64
	for _, path := range files {
		rep, err := LoadFiles(path)
		if err != nil {
			return nil, err
		}
		run := reproductionRun(rep, expect)
		run.File = filepath.Base(path)
		if run.Reproduced {
			res.Reproduced++
			firsts = append(firsts, run.FirstS)
			res.addFingerprint(*run.Fingerprint)
		}
		res.Runs = append(res.Runs, run)
	}
	res.Rate = float64(res.Reproduced) / float64(res.Total)
	res.FirstS = distOf(firsts)
	res.SameFingerprint = len(res.Fingerprints) == 1
	res.Statement = res.statement()
	return res, nil
}

func (res *ReproductionResult) addFingerprint(f Fingerprint) {
	for i := range res.Fingerprints {
		if res.Fingerprints[i].Fingerprint.same(f) {
			res.Fingerprints[i].Runs++
			return
		}
	}
	res.Fingerprints = append(res.Fingerprints, FingerprintCount{Fingerprint: f, Runs: 1})
}

func (res *ReproductionResult) what() string {
	if res.Expect == "" {
		return "an error"
	}
	return res.Expect
}

func (res *ReproductionResult) statement() string {
	s := fmt.Sprintf("Reproduced %s in %d of %d runs (%.0f%%).", res.what(), res.Reproduced, res.Total, 100*res.Rate)
	if res.Reproduced == 0 {
		return s
	}
	s += fmt.Sprintf(" Time to the first: %s min, %s median, %s max.", fmtSeconds(res.FirstS.Min), fmtSeconds(res.FirstS.P50), fmtSeconds(res.FirstS.Max))
	if res.SameFingerprint {
		return s + " The same fingerprint in every run that reproduced it: " + res.Fingerprints[0].Fingerprint.String() + "."
	}
	var parts []string
	for _, f := range res.Fingerprints {
		parts = append(parts, fmt.Sprintf("%s (%d %s)", f.Fingerprint.String(), f.Runs, plural(int64(f.Runs), "run")))
	}
	return s + fmt.Sprintf(" %d different fingerprints: %s.", len(res.Fingerprints), strings.Join(parts, "; "))
}

// reproductionRun measures one run's report against expect.
func reproductionRun(rep *Report, expect string) RunResult {
	run := RunResult{FirstS: -1}
	raw := rep.raw
	if raw == nil {
		return run
	}
	run.Errors = int64(len(raw.points))
	matches := func(class string) bool { return expect == "" || class == expect }
	first := int64(math.MaxInt64)
	firstFile := 0
	attrCount := map[[2]int32]int64{} // class, attr
	for _, p := range raw.points {
		if !matches(raw.classes[p.class]) {
			continue
		}
		run.Matching++
		attrCount[[2]int32{int32(p.class), p.attr}]++
		if p.at < first {
			first, firstFile = p.at, int(p.file)
		}
	}
	if run.Matching == 0 {
		return run
	}
	run.Reproduced = true
	run.FirstS = time.Duration(first - raw.fileStarts[firstFile]).Seconds()
	var best [2]int32
	var bestN int64 = -1
	for k, n := range attrCount {
		if n > bestN || n == bestN && (k[0] < best[0] || k[0] == best[0] && k[1] < best[1]) {
			best, bestN = k, n
		}
	}
	at := raw.attrs[best[1]]
	f := Fingerprint{Class: raw.classes[best[0]], Hop: at.Hop, Origin: at.Origin, Fault: at.Fault}
	for _, c := range rep.Fingerprints {
		if c.Class == f.Class {
			f.Dimension, f.CenterS = c.Dimension, c.CenterS
			break
		}
	}
	run.Fingerprint = &f
	return run
}

// Doc lays the reproduction result out.
func (res *ReproductionResult) Doc() *Document {
	d := &Document{Title: "ssestress report: reproduction rate", Lead: res.Statement, Value: res,
		Conclusive: res.Reproduced == res.Total && res.SameFingerprint}
	for _, r := range res.Runs {
		d.Files = append(d.Files, r.File)
	}
	st := newTable("reproduction", "Reproduction rate", "measure", "value")
	st.addLead("statement", res.Statement)
	st.add("expected error", res.what())
	st.add("runs that reproduced it", fmt.Sprintf("%d of %d (%.0f%%)", res.Reproduced, res.Total, 100*res.Rate))
	if res.Reproduced > 0 {
		st.add("time to first: min", fmtSeconds(res.FirstS.Min))
		st.add("time to first: median", fmtSeconds(res.FirstS.P50))
		st.add("time to first: max", fmtSeconds(res.FirstS.Max))
		st.add("same fingerprint in every run", fmt.Sprint(res.SameFingerprint))
	}
	rt := newTable("runs", "Runs", "run", "errors#", "matching#", "reproduced", "first#=first_s#", "fingerprint")
	for _, r := range res.Runs {
		first, fp, rep := none("-", 1), none("-", 1), "no"
		if r.Reproduced {
			first, fp, rep = secondsCell(r.FirstS), textCell(r.Fingerprint.String()), "yes"
		}
		rt.addRow(r.File, count(r.Errors), count(r.Matching), rep, first, fp)
	}
	ft := newTable("run_fingerprints", "Distinct fingerprints", "fingerprint", "runs#")
	ft.Empty = "no run reproduced it"
	for _, f := range res.Fingerprints {
		ft.add(f.Fingerprint.String(), fmt.Sprint(f.Runs))
	}
	d.Tables = []Table{st, rt, ft}
	return d
}
