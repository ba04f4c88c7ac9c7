package analysis

import (
	"github.com/ssestress/ssestress/analysis/attribution"
	"github.com/ssestress/ssestress/internal/session"
)

// resetsExporter is the export kind "resets": one row per TCP reset (RST
// segment) as the attribution engine explains the files read together,
// recomputed from their raw records and captures (never the resets
// bucket, a cache of an earlier attribution). A reset seen in packets (a
// capture, the kernel's trace) is one row per segment, each once, whatever
// saw it (seen_by "packets"); a reset known only from the records (a fault
// firing, a proxy's record of its own socket) is one row per root cause
// of a client error or failed proxy connection (seen_by "records"): its
// time is then when the error was seen.
var resetsExporter = exporter{
	about: "one row per TCP reset (RST segment) as the attribution engine explains the files read together: sender, hop or link, cause, fault, the client error it caused",
	columns: []string{"time", "time_unix_s", "seen_by", "sender_role", "sender_name", "sender_addr", "in_name_of_addr",
		"receiver_role", "receiver_name", "receiver_addr", "proxy", "hop", "link", "cause", "fault_name", "fault_kind", "reason",
		"age_s", "idle_s", "confidence", "captures", "caused_source", "caused_client_id", "caused_attempt", "caused_conn_id",
		"caused_class", "chain"},
	together: func(readers []*session.Reader, emit func([]any) error) ([]ExportSkip, error) {
		in := &attribution.Input{}
		for _, r := range readers {
			if _, err := in.ReadFile(r, true); err != nil {
				return nil, err
			}
		}
		var skipped []ExportSkip
		for i, f := range in.Files {
			for _, bucket := range sortedKeys(in.Skipped[i]) {
				skipped = append(skipped, ExportSkip{File: f.Name, Bucket: bucket, Unreadable: in.Skipped[i][bucket]})
			}
		}
		res := attribution.Analyze(in, attribution.Options{})
		explained := map[attribution.Incident]bool{}
		for _, s := range res.Segments {
			if s.Explains != nil {
				explained[*s.Explains] = true
			}
			idle := any(s.Idle)
			if s.Idle < 0 {
				idle = nil // unknown
			}
			inNameOf := ""
			if s.InNameOf != nil {
				inNameOf = s.InNameOf.Addr
			}
			if err := emit(append([]any{s.Time, unixSeconds(s.Time), "packets",
				s.Sender.Role, s.Sender.Name, s.Sender.Addr, inNameOf, s.Receiver.Role, s.Receiver.Name, s.Receiver.Addr,
				s.Proxy, s.Hop, s.Link, s.Kind, s.FaultName, s.FaultKind, s.Reason, s.Age, idle, s.Confidence, len(s.Captures)},
				caused(s.Explains, s.Chain)...)); err != nil {
				return skipped, err
			}
		}
		for _, x := range res.Explanations {
			if x.Ending != session.EndingRST || explained[x.Incident] {
				continue
			}
			inNameOf := ""
			if x.InNameOf != nil {
				inNameOf = x.InNameOf.Addr
			}
			inc := x.Incident
			if err := emit(append([]any{inc.Time, unixSeconds(inc.Time), "records",
				x.Sender.Role, x.Sender.Name, x.Sender.Addr, inNameOf, x.Receiver.Role, x.Receiver.Name, x.Receiver.Addr,
				x.Proxy, x.Hop, x.Link, x.Kind, x.FaultName, x.FaultKind, "", inc.Age, x.Idle, x.Confidence, 0},
				caused(&inc, x.ChainText())...)); err != nil {
				return skipped, err
			}
		}
		return skipped, nil
	},
}

// caused are the columns of the incident a reset caused (empty cells when
// it caused none a file recorded).
func caused(inc *attribution.Incident, chain string) []any {
	if inc == nil {
		return []any{"", "", nil, "", "", chain}
	}
	var attempt any
	if inc.Source == session.SourceClient {
		attempt = inc.Attempt
	}
	return []any{inc.Source, inc.ClientID, attempt, inc.ConnID, inc.Class, chain}
}
