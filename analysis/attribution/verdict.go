package attribution

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// Group is the explanations of one cause: same root, same place, same
// relays, same thing seen.
type Group struct {
	// Example is the group's first explanation: its chain and cause stand
	// for the group.
	Example    *Explanation
	Count      int64
	Classes    map[string]int64
	Confidence map[string]int64
	// IdleMin and IdleMax span the incidents' idle times.
	IdleMin, IdleMax time.Duration
}

// confidence is the group's confidence: the most common, the lower on a
// tie.
func (g *Group) confidence() string {
	best, n := ConfidenceNone, int64(-1)
	for _, c := range []string{ConfidenceNone, ConfidenceLow, ConfidenceMedium, ConfidenceHigh} {
		if g.Confidence[c] > n {
			best, n = c, g.Confidence[c]
		}
	}
	return best
}

// Tally groups explanations by cause. Add is cheap; Groups and Verdict
// read it.
type Tally struct {
	groups map[string]*Group
	// ClientErrors and ProxyConnections count the incidents by source.
	ClientErrors, ProxyConnections int64
}

// Key groups explanations: the cause without the client's own address,
// where, how it was passed on, and what the client saw.
func (x *Explanation) Key() string {
	if x.key != "" {
		return x.key
	}
	var b strings.Builder
	// A client's address and id, and the ephemeral port of a proxy's
	// upstream socket, differ for every incident of one cause.
	sender := x.Sender
	switch sender.Role {
	case session.RoleClient:
		sender.Addr, sender.Name = "", ""
	case session.RoleProxy:
		sender.Addr = ""
	}
	fmt.Fprintf(&b, "%s|%s|%s|%s|%s|%s|%s|%s|%s|%s", x.Incident.Source, x.Kind, sender.Role, sender.Name, sender.Addr,
		x.Ending, x.Where(), x.FaultName, x.Seen, x.Class)
	if x.InNameOf != nil {
		fmt.Fprintf(&b, "|as %s %s", x.InNameOf.Role, x.InNameOf.Name)
	}
	b.WriteString(keyOfKernel(x.Kernel))
	for _, r := range x.Relays {
		fmt.Fprintf(&b, "|%s %s>%s %s", r.Proxy, r.Received, r.Sent, r.Policy)
	}
	if x.Kind == KindLostState {
		fmt.Fprintf(&b, "|%s", x.RevealedBy)
	}
	x.key = b.String()
	return x.key
}

// Add counts one explanation.
func (t *Tally) Add(x *Explanation) { t.add(x, x.Incident.Idle.D()) }

// add counts one incident of explanation x, whose idle time was idle.
func (t *Tally) add(x *Explanation, idle time.Duration) {
	if t.groups == nil {
		t.groups = map[string]*Group{}
	}
	if x.Incident.Source == session.SourceProxy && x.Class == "" {
		t.ProxyConnections++
	} else {
		t.ClientErrors++
	}
	k := x.Key()
	g := t.groups[k]
	if g == nil {
		g = &Group{Example: x, Classes: map[string]int64{}, Confidence: map[string]int64{}, IdleMin: idle, IdleMax: idle}
		t.groups[k] = g
	}
	g.Count++
	class := x.Class
	if class == "" {
		class = "proxy client hop " + x.Seen
	}
	g.Classes[class]++
	g.Confidence[x.Confidence]++
	g.IdleMin, g.IdleMax = min(g.IdleMin, idle), max(g.IdleMax, idle)
}

// Groups are the groups, largest first: broken streams (resets, cuts)
// before other errors, client errors before proxies' connections.
func (t *Tally) Groups() []*Group {
	out := slices.Collect(maps.Values(t.groups))
	slices.SortFunc(out, func(a, b *Group) int {
		if ab, bb := broken(a.Example), broken(b.Example); ab != bb {
			if ab {
				return -1
			}
			return 1
		}
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Example.Key(), b.Example.Key())
	})
	return out
}

func broken(x *Explanation) bool {
	switch x.Seen {
	case SeenReset, SeenCut, SeenStreamReset, SeenGoAway:
		return true
	}
	return false
}

// Verdict is the conclusion: its Statement's first sentence is the
// answer.
type Verdict struct {
	Statement  string `json:"statement"`
	Confidence string `json:"confidence"`
	// ClientErrors counts the generated clients' errors explained;
	// ProxyConnections the proxies' client connections that ended in a
	// reset or a cut with no client record (a proxy's file alone).
	ClientErrors     int64 `json:"client_errors"`
	ProxyConnections int64 `json:"proxy_connections"`
	// Resets and Cuts count those incidents by what the client felt: a
	// reset (ECONNRESET, EPIPE; a RST on a proxy's client hop), or a cut
	// (UNEXPECTED_EOF: a FIN inside the stream; an HTTP/2 stream reset or
	// GOAWAY).
	Resets int64 `json:"resets"`
	Cuts   int64 `json:"cuts"`
	// RSTSegments counts the RST segments captured or traced by a
	// kernel, each once.
	RSTSegments int64 `json:"rst_segments"`
	// KernelResets counts the resets the kernels traced, each once
	// (send_reset events); KernelEventsLost the events the collectors'
	// trace buffers overflowed with (their hosts' events, not only the
	// files' own): resets that may lack their kernel reason.
	KernelResets     int64  `json:"kernel_resets,omitempty"`
	KernelEventsLost uint64 `json:"kernel_events_lost,omitempty"`
	// Cause is the main cause (an example explanation, with its chain);
	// nil when nothing needs explaining.
	Cause *Explanation `json:"cause,omitempty"`
	// Causes are all the groups.
	Causes    []CauseCount `json:"causes"`
	Evidence  []string     `json:"evidence"`
	Enable    []string     `json:"enable,omitempty"`
	Conflicts []string     `json:"conflicts,omitempty"`
}

// CauseCount is one group of the verdict.
type CauseCount struct {
	Summary    string           `json:"summary"` // the cause in words
	Cause      Cause            `json:"cause"`
	Relays     []Relay          `json:"relays,omitempty"`
	Seen       string           `json:"seen"`
	Source     string           `json:"source"` // client (errors) or proxy (client connections)
	Count      int64            `json:"count"`
	Classes    map[string]int64 `json:"classes"`
	Confidence string           `json:"confidence"`
	Evidence   string           `json:"evidence"`
	Chain      string           `json:"chain"` // an example
}

// VerdictContext is what the verdict says beside the explanations.
type VerdictContext struct {
	RSTSegments int64
	// Reasons counts the segments by why they were sent (Segment.Reason).
	Reasons    map[string]int64
	Captures   int
	HopRecords bool
	// CaptureDisabled says why an asked-for capture did not run;
	// CaptureDrops counts packets the kernel dropped.
	CaptureDisabled string
	CaptureDrops    uint64
	// KernelResets, KernelLost and KernelDisabled are the kernel evidence:
	// the resets traced, the events lost, why an asked-for collector did
	// not run. Engine.Verdict fills them from the files.
	KernelResets   int64
	KernelLost     uint64
	KernelDisabled string
}

// Tally is the engine's tally of every explanation so far.
func (e *Engine) Tally() *Tally { return &e.tally }

// Verdict concludes from the engine's tally, with the kernel evidence of
// the files.
func (e *Engine) Verdict(ctx VerdictContext) Verdict {
	for _, k := range e.kernel {
		if k.send() {
			ctx.KernelResets++
		}
	}
	for _, r := range e.in.KernelInfo {
		ctx.KernelLost += r.R.EventsLost
		if r.R.Disabled != "" && ctx.KernelDisabled == "" {
			ctx.KernelDisabled = r.R.Disabled
		}
	}
	return e.tally.Verdict(ctx)
}

// Verdict concludes from the explanations added.
func (t *Tally) Verdict(ctx VerdictContext) Verdict {
	v := Verdict{ClientErrors: t.ClientErrors, ProxyConnections: t.ProxyConnections, RSTSegments: ctx.RSTSegments,
		KernelResets: ctx.KernelResets, KernelEventsLost: ctx.KernelLost}
	groups := t.Groups()
	// Client errors are what is explained when there are any; a proxy's
	// client connections otherwise.
	source := session.SourceClient
	if t.ClientErrors == 0 {
		source = session.SourceProxy
	}
	var main []*Group
	var total, brokenTotal int64
	for _, g := range groups {
		switch g.Example.Seen {
		case SeenReset:
			v.Resets += g.Count
		case SeenCut, SeenStreamReset, SeenGoAway:
			v.Cuts += g.Count
		}
		v.Causes = append(v.Causes, CauseCount{Summary: causeSummary(g.Example, g.Count), Cause: g.Example.Cause,
			Relays: g.Example.Relays, Seen: g.Example.Seen, Source: g.Example.Incident.Source, Count: g.Count,
			Classes: g.Classes, Confidence: g.confidence(), Evidence: g.Example.Evidence, Chain: g.Example.ChainText()})
		if g.Example.Incident.Source != source && !(source == session.SourceProxy && g.Example.Class != "") {
			continue
		}
		main = append(main, g)
		total += g.Count
		if broken(g.Example) {
			brokenTotal += g.Count
		}
	}
	if len(main) == 0 {
		v.Confidence = ConfidenceNone
		v.Statement = "No client error was recorded and no proxy's client connection ended in a reset or a cut: nothing to explain."
		if ctx.RSTSegments > 0 {
			v.Statement += fmt.Sprintf(" %d RST %s were captured, behind no error (%s).", ctx.RSTSegments, plural(ctx.RSTSegments, "segment"), reasonList(ctx.Reasons))
		}
		v.Evidence = append(v.Evidence, kernelEvidence(ctx)...)
		return v
	}
	top := main[0]
	x := top.Example
	v.Cause, v.Confidence = x, top.confidence()
	noun := incidentNoun(source, main)
	of := total
	if broken(x) {
		of = brokenTotal
	}
	var b strings.Builder
	if x.Kind == KindUnknown {
		fmt.Fprintf(&b, "Not enough evidence to name who %s: %d of %d %s (%s)", unknownVerb(x), top.Count, of, noun, classList(top.Classes))
		if where := x.Where(); where != "?" {
			fmt.Fprintf(&b, ", seen on %s", placeOfCause(&x.Cause))
		}
		b.WriteString(".")
	} else {
		fmt.Fprintf(&b, "%s: %d of %d %s (%s), %s confidence.", causeSummary(x, top.Count), top.Count, of, noun, classList(top.Classes), v.Confidence)
	}
	var others []string
	rest := map[string]int64{}
	for _, g := range main[1:] {
		if broken(g.Example) != broken(x) {
			for c, n := range g.Classes {
				rest[c] += n
			}
			continue
		}
		if len(others) == 3 {
			others = append(others, "…")
			continue
		}
		others = append(others, fmt.Sprintf("%s (%d)", causeSummary(g.Example, g.Count), g.Count))
	}
	if !broken(x) {
		// Said after the cause, so the first sentence stays the answer.
		fmt.Fprintf(&b, " No reset and no cut: %d %s of other kinds.", total, noun)
	}
	if len(others) > 0 {
		fmt.Fprintf(&b, " The other %d: %s.", of-top.Count, strings.Join(others, "; "))
	}
	if n := total - of; n > 0 && broken(x) {
		fmt.Fprintf(&b, " Besides, %d %s that are neither resets nor cuts (%s).", n, noun, classList(rest))
	}
	v.Statement = b.String()
	for i, g := range groups {
		if i == 8 {
			v.Evidence = append(v.Evidence, fmt.Sprintf("… and %d more causes", len(groups)-8))
			break
		}
		nounG := "client errors"
		if g.Example.Incident.Source == session.SourceProxy && g.Example.Class == "" {
			nounG = "proxy client connections"
		}
		v.Evidence = append(v.Evidence, fmt.Sprintf("%d %s (%s): %s; by %s, %s confidence; e.g. %s",
			g.Count, nounG, classList(g.Classes), causeSummary(g.Example, g.Count), g.Example.Evidence, g.confidence(), g.Example.ChainText()))
		for _, c := range g.Example.Conflicts {
			if !slices.Contains(v.Conflicts, c) {
				v.Conflicts = append(v.Conflicts, c)
			}
		}
	}
	if ctx.CaptureDrops > 0 {
		v.Evidence = append(v.Evidence, fmt.Sprintf("the kernel dropped %d of the captured packets: some RSTs may be missing", ctx.CaptureDrops))
	}
	v.Evidence = append(v.Evidence, kernelEvidence(ctx)...)
	for _, g := range main {
		if confidenceRank[g.confidence()] >= confidenceRank[ConfidenceHigh] {
			continue
		}
		for _, m := range g.Example.Missing {
			if ctx.CaptureDisabled != "" && strings.Contains(m, "--capture") {
				m = "--capture was asked for but did not run (" + ctx.CaptureDisabled + "): run as root or with CAP_NET_RAW"
			}
			if !slices.Contains(v.Enable, m) {
				v.Enable = append(v.Enable, m)
			}
		}
	}
	return v
}

// reasonWords says why segments were sent, for people.
var reasonWords = map[string]string{
	ReasonAbort:      "closed with a reset",
	ReasonAfterClose: "sent by a socket that had closed and got more data",
	ReasonReply:      "answers to late segments after a reset",
	ReasonRefused:    "refused connections",
	ReasonAnswer:     "answers from a peer that no longer knew the connection",
}

func reasonList(m map[string]int64) string {
	keys := slices.Collect(maps.Keys(m))
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], reasonWords[k]))
	}
	return strings.Join(parts, ", ")
}

// incidentNoun names what was counted.
func incidentNoun(source string, main []*Group) string {
	if source == session.SourceClient {
		return "client errors"
	}
	var proxies []string
	for _, g := range main {
		if p := g.Example.Incident.Proxy; p != "" && !slices.Contains(proxies, p) {
			proxies = append(proxies, p)
		}
	}
	slices.Sort(proxies)
	return "failed client connections of " + plural(int64(len(proxies)), "proxy") + " " + joinAnd(proxies)
}

func unknownVerb(x *Explanation) string {
	switch x.Seen {
	case SeenReset:
		return "sent the resets"
	case SeenCut, SeenClose:
		return "closed the streams"
	}
	return "ended the connections"
}

// causeSummary is a group's cause in words, the verdict's first sentence
// without its counts.
func causeSummary(x *Explanation, n int64) string {
	c := &x.Cause
	var s string
	switch c.Kind {
	case KindInjected:
		s = fmt.Sprintf("Proxy %s injected the %s, on its %s hop (fault %s)", c.Proxy, endingNoun(c.Ending, n), c.Hop, c.FaultName)
		if k := c.Kernel; k != nil {
			s += "; " + strings.TrimPrefix(kernelClause(k, n), ", because ")
		}
	case KindForged:
		s = fmt.Sprintf("A middlebox forged the %s, on %s: sent to %s in the name of %s",
			endingNoun(c.Ending, n), placeOfCause(c), groupWords(c.Receiver, n), groupWords(*c.InNameOf, n))
	case KindLostState:
		peer := c.Sender
		answer := "by " + peer.Noun() + "'s host, which no longer knew the connection"
		if c.InNameOf != nil {
			peer = *c.InNameOf
			answer = "by a middlebox in " + peer.Noun() + "'s name"
		}
		if c.Kernel != nil && c.InNameOf == nil {
			answer += " (its kernel: " + c.Kernel.Reason + ")"
		}
		s = fmt.Sprintf("State was lost between %s and %s, on %s: %s%s was answered with a reset %s (a NAT, conntrack or firewall timeout, or a reset forged toward %s)",
			c.Receiver.Words(), peer.Words(), placeOfCause(c), afterIdle(c.Idle.D()), c.RevealedBy, answer, peer.Noun())
	case KindNatural:
		switch {
		case c.Ending == session.EndingRefused && c.Kernel != nil:
			s = fmt.Sprintf("The connections to %s were refused%s", c.Sender.Words(), kernelClause(c.Kernel, n))
		case c.Ending == session.EndingRefused:
			s = fmt.Sprintf("The connections to %s were refused (nothing listened there, or a firewall rejected them)", c.Sender.Words())
		case c.Ending == endingTimeout && c.Kernel != nil:
			s = fmt.Sprintf("%s %s, on %s, so the kernel of %s %s", capitalize(c.Sender.Words()), naturalVerb(c.Ending, n), placeOfCause(c),
				groupWords(c.Receiver, n), withReason(c.Kernel.deed(n), c.Kernel.Reason))
		case c.Sender.Role == session.RoleProxy:
			s = fmt.Sprintf("Proxy %s itself %s on its %s hop, with no fault firing", c.Sender.Name, naturalVerb(c.Ending, n), c.Hop)
			if c.Class != "" {
				s += " (" + c.Class + ")"
			}
			s += kernelClause(c.Kernel, n)
		case c.Sender.Role == session.RoleClient:
			s = fmt.Sprintf("The clients %s, on %s", clientVerb(c.Ending), placeOfCause(c)) + kernelClause(c.Kernel, n)
		case c.Ending == session.EndingRST && (x.Evidence == EvidencePeer || x.Evidence == EvidenceClient):
			// Only the receiver's word: a reset forged in the sender's name
			// reads the same.
			s = fmt.Sprintf("%s (or a middlebox in its name: without packets the two look the same) %s, on %s",
				capitalize(c.Sender.Words()), naturalVerb(c.Ending, n), placeOfCause(c))
		default:
			s = fmt.Sprintf("%s %s, on %s", capitalize(c.Sender.Words()), naturalVerb(c.Ending, n), placeOfCause(c)) + kernelClause(c.Kernel, n)
		}
	default:
		s = fmt.Sprintf("Unknown sender of the %s, on %s", endingNoun(c.Ending, n), placeOfCause(c))
	}
	return s + relayWords(x.Relays)
}

// groupWords names a party for a group of n incidents: clients differ
// from one incident to the next.
func groupWords(p Party, n int64) string {
	if p.Role == session.RoleClient && n > 1 {
		return "the clients"
	}
	return p.Words()
}

// placeOfCause names the place of a cause in a sentence.
func placeOfCause(c *Cause) string {
	switch {
	case c.Proxy != "":
		return fmt.Sprintf("proxy %s's %s hop", c.Proxy, c.Hop)
	case c.Link == LinkDirect:
		return "the direct client–server connections"
	case c.Link != "":
		return "the link " + c.Link
	}
	return "an unknown hop"
}

// relayWords says how proxies passed the ending on: "; proxy B turned
// them into resets for its clients (--on-upstream-error=reset)".
func relayWords(rs []Relay) string {
	if len(rs) == 0 {
		return ""
	}
	var names []string
	turned := false
	policy := ""
	for _, r := range rs {
		names = append(names, r.Proxy)
		if r.Received != "" && r.Sent != "" && r.Received != r.Sent {
			turned = true
		}
		if r.Policy != "" {
			policy = r.Policy
		}
	}
	who := plural(int64(len(names)), "proxy") + " " + joinAnd(names)
	sent := rs[len(rs)-1].Sent
	var s string
	switch {
	case turned:
		s = fmt.Sprintf("; %s turned them into %s for the clients", who, endingNoun(sent, 2))
	default:
		s = fmt.Sprintf("; %s relayed them to the clients", who)
	}
	if policy != "" {
		s += " (--on-upstream-error=" + policy + ")"
	}
	return s
}

func endingNoun(ending string, n int64) string {
	switch ending {
	case session.EndingRST:
		return plural(n, "reset")
	case session.EndingFIN:
		return plural(n, "close") + " (FIN)"
	case session.EndingRefused:
		return plural(n, "refusal")
	case session.EndingStream:
		return plural(n, "stream ending")
	case endingTimeout:
		return plural(n, "timeout")
	}
	return plural(n, "ending")
}

func naturalVerb(ending string, n int64) string {
	streams := plural(n, "stream")
	switch ending {
	case session.EndingRST:
		return "sent the " + plural(n, "reset")
	case session.EndingFIN:
		return "closed the " + streams + " (FIN)"
	case session.EndingRefused:
		return "refused the connections"
	case session.EndingStream:
		return "ended the " + streams
	case endingTimeout:
		return "stopped answering"
	}
	return "ended the connections"
}

func clientVerb(ending string) string {
	switch ending {
	case session.EndingRST:
		return "reset their connections"
	case session.EndingFIN:
		return "closed their connections (FIN)"
	}
	return "ended their connections"
}

func classList(m map[string]int64) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func plural(n int64, word string) string {
	if n == 1 {
		return word
	}
	switch {
	case strings.HasSuffix(word, "y"):
		return word[:len(word)-1] + "ies"
	case strings.HasSuffix(word, "x"), strings.HasSuffix(word, "s"):
		return word + "es"
	}
	return word + "s"
}

func joinAnd(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// kernelEvidence are the verdict's lines about the kernel evidence: the
// resets traced, the events lost, a collector that did not run.
func kernelEvidence(ctx VerdictContext) []string {
	var out []string
	if ctx.KernelResets > 0 {
		out = append(out, fmt.Sprintf("the kernel traced %d %s: why each was sent and in which process are the sending kernel's own word",
			ctx.KernelResets, plural(ctx.KernelResets, "reset")))
	}
	if ctx.KernelLost > 0 {
		out = append(out, fmt.Sprintf("the kernel's trace buffer overflowed: %d %s lost (counted for the whole host): some resets may lack their kernel reason",
			ctx.KernelLost, plural(int64(ctx.KernelLost), "event")))
	}
	if ctx.KernelDisabled != "" {
		out = append(out, "kernel evidence was asked for but did not run ("+ctx.KernelDisabled+")")
	}
	return out
}
