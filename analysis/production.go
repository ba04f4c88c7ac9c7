package analysis

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/errclass"
)

// ErrProduction is wrapped by every problem with a production error file.
var ErrProduction = errors.New("production errors")

// ProductionColumns maps the columns (CSV header names, or JSON keys) of a
// production error file onto what the comparison needs. Empty fields are
// looked for under their usual names (see productionDefaults).
type ProductionColumns struct {
	Time    string // required: when the error happened
	Class   string // the error class; or Message, classified
	Message string
	Age     string // connection age at the error (optional)
	Idle    string // idle time before the error (optional)
	Client  string // client address (optional)
	Server  string // server address (optional)
	// Unit is the unit of plain numbers in Age and Idle (default seconds);
	// values with a unit ("1.5s", "1500ms") are read as written.
	Unit time.Duration
}

// productionDefaults are the names tried, in order, for unmapped columns.
var productionDefaults = map[string][]string{
	"time":    {"time", "timestamp", "ts", "@timestamp", "date"},
	"class":   {"class", "error_class", "code", "error_code", "errno"},
	"message": {"message", "msg", "error", "error_message"},
	"age":     {"age", "age_s", "connection_age", "conn_age", "age_ns"},
	"idle":    {"idle", "idle_s", "idle_time", "since_last_byte", "since_last_byte_ns"},
	"client":  {"client", "client_addr", "local_addr", "source"},
	"server":  {"server", "server_addr", "remote_addr", "upstream"},
}

// ProductionError is one error from production.
type ProductionError struct {
	Time    time.Time `json:"time"`
	Class   string    `json:"class"`
	Message string    `json:"message,omitempty"`
	AgeS    float64   `json:"age_s"`  // NaN when not given
	IdleS   float64   `json:"idle_s"` // NaN when not given
	Client  string    `json:"client,omitempty"`
	Server  string    `json:"server,omitempty"`
}

// ReadProduction reads production errors from CSV (with a header row) or
// JSON lines; which one is decided by the first non-blank character. name
// is used in messages ("errors.csv:12: ...").
func ReadProduction(r io.Reader, name string, cols ProductionColumns) ([]ProductionError, error) {
	br := bufio.NewReader(r)
	for {
		b, err := br.Peek(1)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is empty", ErrProduction, name)
		}
		if b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t' {
			br.ReadByte()
			continue
		}
		if b[0] == '{' {
			return readProductionJSON(br, name, cols)
		}
		return readProductionCSV(br, name, cols)
	}
}

// rowReader turns one row's fields into a ProductionError.
type rowReader struct {
	name  string
	cols  ProductionColumns
	index map[string]string // role → column name found
}

func newRowReader(name string, cols ProductionColumns, has func(string) bool) (*rowReader, error) {
	rr := &rowReader{name: name, cols: cols, index: map[string]string{}}
	given := map[string]string{"time": cols.Time, "class": cols.Class, "message": cols.Message, "age": cols.Age,
		"idle": cols.Idle, "client": cols.Client, "server": cols.Server}
	for role, col := range given {
		if col != "" {
			if !has(col) {
				return nil, fmt.Errorf("%w: %s has no column %q (--production-%s)", ErrProduction, name, col, role)
			}
			rr.index[role] = col
			continue
		}
		for _, guess := range productionDefaults[role] {
			if has(guess) {
				rr.index[role] = guess
				break
			}
		}
	}
	if rr.index["time"] == "" {
		return nil, fmt.Errorf("%w: %s has no time column (tried %s; name it with --production-time)",
			ErrProduction, name, strings.Join(productionDefaults["time"], ", "))
	}
	if rr.index["class"] == "" && rr.index["message"] == "" {
		return nil, fmt.Errorf("%w: %s has neither an error class nor a message column (name one with --production-class or --production-message)",
			ErrProduction, name)
	}
	return rr, nil
}

func (rr *rowReader) row(line int, get func(col string) string) (ProductionError, error) {
	pe := ProductionError{AgeS: math.NaN(), IdleS: math.NaN()}
	where := func(role string) string {
		return fmt.Sprintf("%s:%d: column %q", rr.name, line, rr.index[role])
	}
	t, err := parseTimestamp(get(rr.index["time"]))
	if err != nil {
		return pe, fmt.Errorf("%w: %s: %v", ErrProduction, where("time"), err)
	}
	pe.Time = t
	if c := rr.index["message"]; c != "" {
		pe.Message = get(c)
	}
	if c := rr.index["class"]; c != "" {
		pe.Class = ClassifyText(get(c))
	}
	if pe.Class == "" || pe.Class == errclass.Other && pe.Message != "" {
		if m := ClassifyText(pe.Message); m != "" {
			pe.Class = m
		}
	}
	if pe.Class == "" {
		pe.Class = errclass.Other
	}
	for _, role := range []string{"age", "idle"} {
		c := rr.index[role]
		if c == "" {
			continue
		}
		v := strings.TrimSpace(get(c))
		if v == "" {
			continue
		}
		unit := rr.cols.Unit
		if unit == 0 {
			unit = time.Second
			if strings.HasSuffix(c, "_ns") {
				unit = time.Nanosecond
			}
		}
		s, err := parseSeconds(v, unit)
		if err != nil {
			return pe, fmt.Errorf("%w: %s: %v", ErrProduction, where(role), err)
		}
		if role == "age" {
			pe.AgeS = s
		} else {
			pe.IdleS = s
		}
	}
	if c := rr.index["client"]; c != "" {
		pe.Client = get(c)
	}
	if c := rr.index["server"]; c != "" {
		pe.Server = get(c)
	}
	return pe, nil
}

func readProductionCSV(r io.Reader, name string, cols ProductionColumns) ([]ProductionError, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: header: %v", ErrProduction, name, err)
	}
	pos := map[string]int{}
	for i, h := range header {
		pos[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	rr, err := newRowReader(name, cols, func(c string) bool { _, ok := pos[c]; return ok })
	if err != nil {
		return nil, err
	}
	var out []ProductionError
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrProduction, name, err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		pe, err := rr.row(line, func(c string) string {
			if i, ok := pos[c]; ok && i < len(rec) {
				return rec[i]
			}
			return ""
		})
		if err != nil {
			return nil, err
		}
		out = append(out, pe)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s has a header but no rows", ErrProduction, name)
	}
	return out, nil
}

func readProductionJSON(r io.Reader, name string, cols ProductionColumns) ([]ProductionError, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	var rr *rowReader
	var out []ProductionError
	for line := 1; sc.Scan(); line++ {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		obj := map[string]any{}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil {
			return nil, fmt.Errorf("%w: %s:%d: not a JSON object: %v", ErrProduction, name, line, err)
		}
		if rr == nil {
			var err error
			rr, err = newRowReader(name, cols, func(c string) bool { _, ok := obj[c]; return ok })
			if err != nil {
				return nil, err
			}
		}
		pe, err := rr.row(line, func(c string) string {
			switch v := obj[c].(type) {
			case nil:
				return ""
			case string:
				return v
			case json.Number:
				return v.String()
			default:
				return fmt.Sprint(v)
			}
		})
		if err != nil {
			return nil, err
		}
		out = append(out, pe)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrProduction, name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s holds no error", ErrProduction, name)
	}
	return out, nil
}

// timestampLayouts are the text forms of a time the production reader
// accepts.
var timestampLayouts = []string{
	time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999",
	"02/Jan/2006:15:04:05 -0700", time.RFC1123Z, time.RFC1123,
}

// parseTimestamp reads a time as text or as Unix seconds, milliseconds or
// microseconds (told apart by magnitude).
func parseTimestamp(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, errors.New("empty timestamp")
	}
	for _, l := range timestampLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
		switch {
		case f > 1e17:
			return time.Unix(0, int64(f)).UTC(), nil
		case f > 1e14:
			return time.UnixMicro(int64(f)).UTC(), nil
		case f > 1e11:
			return time.UnixMilli(int64(f)).UTC(), nil
		default:
			sec, frac := math.Modf(f)
			return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read %q as a time (use RFC 3339 or Unix seconds)", s)
}

// parseSeconds reads a duration with a unit ("1.5s", "3d") or a plain
// number in unit.
func parseSeconds(s string, unit time.Duration) (float64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		// Through whole nanoseconds, as the session file keeps them, so the
		// same duration gives the same float on both sides.
		return time.Duration(math.Round(f * float64(unit))).Seconds(), nil
	}
	d, err := dur.Parse(s)
	if err != nil {
		return 0, err
	}
	return d.Seconds(), nil
}

var (
	httpStatusText = regexp.MustCompile(`(?i)\b(?:http[ _/]?(?:status)?|status(?: code)?)[ :_=]*([1-5]\d\d)\b`)
	classToken     = regexp.MustCompile(`\b(ECONNRESET|ECONNABORTED|EPIPE|ECONNREFUSED|ETIMEDOUT|EMFILE|ENFILE|EADDRNOTAVAIL|ENOTFOUND|EAI_AGAIN|HTTP_\d{3}|UNEXPECTED_EOF|BAD_CONTENT_TYPE|LINE_TOO_LONG|OTHER)\b`)
)

// ClassifyText maps an error class or message as production logs write it
// onto the taxonomy of errclass: "read ECONNRESET" and "connection reset by
// peer" are ECONNRESET, "502 Bad Gateway" with "status" is HTTP_502. Log
// text has no errno to test, so this is the one place that matches words.
// It returns "" for empty text and errclass.Other for text it does not know.
func ClassifyText(text string) string {
	t := strings.TrimSpace(text)
	if t == "" {
		return ""
	}
	if m := classToken.FindString(strings.ToUpper(t)); m != "" {
		switch m {
		case "ECONNABORTED":
			return errclass.ECONNRESET
		case "ENFILE":
			return errclass.EMFILE
		case "ENOTFOUND", "EAI_AGAIN":
			return errclass.DNS
		}
		return m
	}
	lower := strings.ToLower(t)
	switch {
	case strings.Contains(lower, "connection reset"), strings.Contains(lower, "socket hang up"):
		return errclass.ECONNRESET
	case strings.Contains(lower, "broken pipe"):
		return errclass.EPIPE
	case strings.Contains(lower, "connection refused"):
		return errclass.ECONNREFUSED
	case strings.Contains(lower, "timed out"), strings.Contains(lower, "timeout"), strings.Contains(lower, "deadline exceeded"):
		return errclass.ETIMEDOUT
	case strings.Contains(lower, "unexpected eof"), strings.Contains(lower, "unexpected_eof"), strings.Contains(lower, "premature close"),
		strings.Contains(lower, "incomplete chunked"), strings.Contains(lower, "terminated"):
		return errclass.UnexpectedEOF
	case lower == "eof", strings.HasSuffix(lower, ": eof"), strings.Contains(lower, "stream ended"):
		return errclass.EOF
	case strings.Contains(lower, "too many open files"):
		return errclass.EMFILE
	case strings.Contains(lower, "no such host"):
		return errclass.DNS
	case strings.Contains(lower, "tls"), strings.Contains(lower, "certificate"):
		return errclass.TLS
	}
	if m := httpStatusText.FindStringSubmatch(t); m != nil {
		return errclass.HTTP(atoi(m[1]))
	}
	if n, err := strconv.Atoi(t); err == nil && n >= 100 && n <= 599 {
		return errclass.HTTP(n)
	}
	return errclass.Other
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// ProductionComparison sets production errors beside the reproduction's.
type ProductionComparison struct {
	Production   int     `json:"production_errors"`
	Reproduction int     `json:"reproduction_errors"`
	ProdSpanS    float64 `json:"production_span_s"`
	// Classes is the class mix side by side; ClassDistance its total
	// variation distance (0 = the same mix, 1 = no class in common).
	Classes       []ClassShare `json:"classes"`
	ClassDistance float64      `json:"class_distance"`
	// Age and Idle compare the distributions (absent when production gave
	// none).
	Age  *DistComparison `json:"age,omitempty"`
	Idle *DistComparison `json:"idle,omitempty"`
	// Match is the one-line judgement's verdict; Judgement the line.
	Match     bool   `json:"match"`
	Judgement string `json:"judgement"`
}

// ClassShare is one class in both mixes.
type ClassShare struct {
	Class           string  `json:"class"`
	Production      int64   `json:"production"`
	ProductionShare float64 `json:"production_share"`
	Reproduction    int64   `json:"reproduction"`
	ReproShare      float64 `json:"reproduction_share"`
}

// DistComparison compares one distribution (age or idle, seconds).
type DistComparison struct {
	Dimension    string `json:"dimension"`
	Production   Dist   `json:"production"`
	Reproduction Dist   `json:"reproduction"`
	// KS is the two-sample Kolmogorov–Smirnov distance; Critical the
	// distance above which the samples differ at the 5 % level.
	KS       float64 `json:"ks"`
	Critical float64 `json:"critical"`
	Differ   bool    `json:"differ"`
	// Buckets are both distributions over the report's age buckets, as
	// shares.
	Buckets []BucketShare `json:"buckets"`
}

// BucketShare is one bucket of a side-by-side distribution.
type BucketShare struct {
	Label        string  `json:"label"`
	LoS          float64 `json:"lo_s"`
	HiS          float64 `json:"hi_s"` // 0 for the open last bucket
	Production   float64 `json:"production"`
	Reproduction float64 `json:"reproduction"`
}

// Thresholds of the production judgement.
const (
	// maxClassDistance is the largest total variation distance between the
	// class mixes that still counts as the same mix.
	maxClassDistance = 0.2
	// minKSDistance: below it, two distributions count as the same even
	// when large samples make the KS test reject a trivial difference.
	minKSDistance = 0.1
)

// CompareProduction sets prod beside the errors of rep.
func CompareProduction(rep *Report, prod []ProductionError) *ProductionComparison {
	pc := &ProductionComparison{Production: len(prod)}
	var raw rawErrors
	if rep.raw != nil {
		raw = *rep.raw
	}
	pc.Reproduction = len(raw.points)
	first, last := prod[0].Time, prod[0].Time
	prodClass := map[string]int64{}
	var prodAge, prodIdle []float64
	for _, p := range prod {
		prodClass[p.Class]++
		if !math.IsNaN(p.AgeS) {
			prodAge = append(prodAge, p.AgeS)
		}
		if !math.IsNaN(p.IdleS) {
			prodIdle = append(prodIdle, p.IdleS)
		}
		if p.Time.Before(first) {
			first = p.Time
		}
		if p.Time.After(last) {
			last = p.Time
		}
	}
	pc.ProdSpanS = last.Sub(first).Seconds()
	reproClass := map[string]int64{}
	reproAge := make([]float64, 0, len(raw.points))
	reproIdle := make([]float64, 0, len(raw.points))
	for _, p := range raw.points {
		reproClass[raw.classes[p.class]]++
		reproAge = append(reproAge, p.age)
		reproIdle = append(reproIdle, p.idle)
	}
	classes := map[string]bool{}
	for c := range prodClass {
		classes[c] = true
	}
	for c := range reproClass {
		classes[c] = true
	}
	for _, c := range sortedKeys(classes) {
		cs := ClassShare{Class: c, Production: prodClass[c], Reproduction: reproClass[c]}
		cs.ProductionShare = float64(cs.Production) / float64(max(1, pc.Production))
		cs.ReproShare = float64(cs.Reproduction) / float64(max(1, pc.Reproduction))
		pc.ClassDistance += math.Abs(cs.ProductionShare-cs.ReproShare) / 2
		pc.Classes = append(pc.Classes, cs)
	}
	slices.SortStableFunc(pc.Classes, func(x, y ClassShare) int {
		return cmpFloat(y.ProductionShare+y.ReproShare, x.ProductionShare+x.ReproShare)
	})
	if len(prodAge) > 0 && len(reproAge) > 0 {
		pc.Age = compareDist("age", prodAge, reproAge)
	}
	if len(prodIdle) > 0 && len(reproIdle) > 0 {
		pc.Idle = compareDist("idle", prodIdle, reproIdle)
	}

	var reasons []string
	if pc.Reproduction == 0 {
		reasons = append(reasons, "the reproduction has no errors")
	}
	if pc.ClassDistance > maxClassDistance {
		top := pc.Classes[0]
		reasons = append(reasons, fmt.Sprintf("the class mix differs (distance %.2f > %.2f; %s is %s of production, %s of the reproduction)",
			pc.ClassDistance, maxClassDistance, top.Class, share(top.ProductionShare), share(top.ReproShare)))
	}
	for _, d := range []*DistComparison{pc.Age, pc.Idle} {
		if d != nil && d.Differ {
			reasons = append(reasons, fmt.Sprintf("the %s distributions differ (KS %.2f > %.2f; median %s in production, %s in the reproduction)",
				d.Dimension, d.KS, max(d.Critical, minKSDistance), fmtSeconds(d.Production.P50), fmtSeconds(d.Reproduction.P50)))
		}
	}
	compared := "class mix"
	if pc.Age != nil {
		compared += ", age"
	}
	if pc.Idle != nil {
		compared += ", idle time"
	}
	if len(reasons) == 0 {
		pc.Match = true
		pc.Judgement = fmt.Sprintf("The reproduction matches production (%s compared; class distance %.2f%s).", compared, pc.ClassDistance, ksSummary(pc))
	} else {
		pc.Judgement = "The reproduction does not match production: " + strings.Join(reasons, "; ") + "."
	}
	return pc
}

func ksSummary(pc *ProductionComparison) string {
	var s string
	for _, d := range []*DistComparison{pc.Age, pc.Idle} {
		if d != nil {
			s += fmt.Sprintf(", %s KS %.2f", d.Dimension, d.KS)
		}
	}
	return s
}

func compareDist(dim string, prod, repro []float64) *DistComparison {
	d := &DistComparison{Dimension: dim}
	d.KS = ksDistance(prod, repro) // sorts both
	d.Critical = ksCritical(len(prod), len(repro))
	d.Differ = d.KS > max(d.Critical, minKSDistance)
	d.Production = distOf(prod)
	d.Reproduction = distOf(repro)
	pb, rb := make([]int, len(durationEdges)), make([]int, len(durationEdges))
	for _, v := range prod {
		pb[bucketIndex(v)]++
	}
	for _, v := range repro {
		rb[bucketIndex(v)]++
	}
	lo, hi := len(durationEdges), -1
	for i := range durationEdges {
		if pb[i]+rb[i] > 0 {
			lo, hi = min(lo, i), max(hi, i)
		}
	}
	for i := lo; i <= hi; i++ {
		b := newBuckets()[i]
		d.Buckets = append(d.Buckets, BucketShare{Label: b.Label, LoS: b.LoS, HiS: b.HiS,
			Production: float64(pb[i]) / float64(len(prod)), Reproduction: float64(rb[i]) / float64(len(repro))})
	}
	return d
}

// Doc lays the production comparison out.
func (pc *ProductionComparison) Doc(rep *Report, prodName string) *Document {
	d := &Document{Title: "ssestress report: reproduction versus production", Lead: pc.Judgement, Conclusive: pc.Match, Value: pc}
	for _, f := range rep.Files {
		d.Files = append(d.Files, f.Name)
	}
	d.Files = append(d.Files, "production: "+prodName)
	j := newTable("judgement", "Judgement", "item", "detail")
	j.addLead("judgement", pc.Judgement)
	j.add("match", strconv.FormatBool(pc.Match))
	ct := newTable("class_mix", "Error classes: production versus reproduction", "class", "production#", "share#=production_share#", "reproduction#", "share#=reproduction_share#")
	ct.Intro = append(ct.Intro, fmt.Sprintf("%d production errors over %s; %d reproduction errors. Total variation distance %.2f (a match is at most %.2f).",
		pc.Production, fmtSeconds(pc.ProdSpanS), pc.Reproduction, pc.ClassDistance, maxClassDistance))
	for _, c := range pc.Classes {
		ct.addRow(c.Class, count(c.Production), shareCell(c.ProductionShare), count(c.Reproduction), shareCell(c.ReproShare))
	}
	dt := newTable("distributions", "Age and idle time: production versus reproduction", "dimension", "side", "n#", "p10#=p10_s#", "p50#=p50_s#", "p90#=p90_s#", "max#=max_s#", "KS distance#", "limit#=ks_limit#", "same?=same")
	dt.Key = 2
	dt.Empty = "production gave no connection age or idle time"
	bt := newTable("distribution_buckets", "Age and idle time by bucket (share of errors)", "dimension", "bucket=lo_s#,hi_s#", "production#=production_share#", "reproduction#=reproduction_share#")
	bt.Key = 2
	bt.Empty = "production gave no connection age or idle time"
	for _, dc := range []*DistComparison{pc.Age, pc.Idle} {
		if dc == nil {
			continue
		}
		same := "yes"
		if dc.Differ {
			same = "no"
		}
		lim := max(dc.Critical, minKSDistance)
		limit := cell{Text: strconv.FormatFloat(lim, 'f', 3, 64), Data: []string{numData(lim)}}
		ks := cell{Text: strconv.FormatFloat(dc.KS, 'f', 3, 64), Data: []string{numData(dc.KS)}}
		for _, side := range []struct {
			name string
			d    Dist
		}{{"production", dc.Production}, {"reproduction", dc.Reproduction}} {
			dt.addRow(dc.Dimension, side.name, strconv.Itoa(side.d.N), secondsCell(side.d.P10), secondsCell(side.d.P50),
				secondsCell(side.d.P90), secondsCell(side.d.Max), ks, limit, same)
		}
		for _, b := range dc.Buckets {
			bt.addRow(dc.Dimension, bucketCell(DurationBucket{Label: b.Label, LoS: b.LoS, HiS: b.HiS}), shareCell(b.Production), shareCell(b.Reproduction))
		}
	}
	d.Tables = []Table{j, ct, dt, bt}
	return d
}
