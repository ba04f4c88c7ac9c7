package attribution

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssestress/ssestress/capture/kernel"
	"github.com/ssestress/ssestress/internal/session"
)

// Kernel evidence (session.KernelEvent, written by capture/kernel) is one
// more observation of a RST segment, beside a captured packet. A
// send_reset event of host H, LocalAddr→RemoteAddr at Time, is the
// segment sent by the end of the connection whose socket is LocalAddr,
// found by 4-tuple and time (Engine.lookup, as a flow is) and stamped on
// H's clock (aligned as H's records are). It says the end's own stack
// sent the segment (so it was not forged), why (the kernel's reason) and
// in whose task: for a reset that follows a system call (a close with
// unread data, SO_LINGER 0) the task is the process that did it; for one
// the kernel sent on its own (a timer, an answer to a segment) the task
// is incidental and the socket's owner, when the socket table named it,
// stands in. A receive_reset event marks the segment's arrival at the
// other end. The same event traced by several processes of one host is
// counted once (session.SameKernelEvent).

// KernelReset is what a host's kernel said of a reset it sent.
type KernelReset struct {
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"` // enum sk_rst_reason: TCP_ABORT_ON_CLOSE, NO_SOCKET, ...
	// Meaning explains the reason (capture/kernel.Reasons); "" for a
	// reason this build does not know.
	Meaning string `json:"meaning,omitempty"`
	// State is the socket's state when it sent the RST; "" when the
	// kernel had no socket for the segment it answered.
	State string `json:"state,omitempty"`
	// PID, TID and Comm are the task in whose context the kernel sent it:
	// the process that did it when Softirq is false; when Softirq is true
	// the task only happened to be running (TaskIncidental).
	PID            int    `json:"pid"`
	TID            int    `json:"tid,omitempty"`
	Comm           string `json:"comm,omitempty"`
	Softirq        bool   `json:"softirq,omitempty"`
	TaskIncidental bool   `json:"task_incidental,omitempty"`
	// OwnerPID and OwnerComm are the process that held the socket, when
	// the socket table named it.
	OwnerPID  int    `json:"owner_pid,omitempty"`
	OwnerComm string `json:"owner_comm,omitempty"`
	// Host is the host that traced it (the file's RunInfo.Host).
	Host string `json:"host,omitempty"`
}

// process names the process the reset is to be laid at: the task when
// the reason follows its system call and it ran in its own context,
// else the socket's owner; "" when neither is known.
func (k *KernelReset) process() string {
	r, _ := kernel.ExplainReason(k.Reason)
	switch {
	case r.ByProcess && !k.Softirq && k.PID > 0 && k.Comm != "":
		return fmt.Sprintf("%s (pid %d)", k.Comm, k.PID)
	case k.OwnerPID > 0 && k.OwnerComm != "":
		return fmt.Sprintf("%s (pid %d)", k.OwnerComm, k.OwnerPID)
	}
	return ""
}

// deed is what was done, for n connections: "closed the sockets with
// unread data".
func (k *KernelReset) deed(n int64) string {
	r, ok := kernel.ExplainReason(k.Reason)
	if !ok {
		return "reset the connections"
	}
	if n == 1 {
		return kernel.Singular(r.Deed)
	}
	return r.Deed
}

// byProcess says whether the reason follows a process's system call and
// a process is known to name.
func (k *KernelReset) byProcess() bool {
	r, _ := kernel.ExplainReason(k.Reason)
	return r.ByProcess && k.process() != ""
}

// kind is the reason's kind (kernel.Kind*); abort when unknown.
func kernelKind(reason string) string {
	if r, ok := kernel.ExplainReason(reason); ok {
		return r.Kind
	}
	return kernel.KindAbort
}

// kernelRec is one kernel event, once, joined to its connection.
type kernelRec struct {
	ev            *session.KernelEvent
	file          int
	t             time.Time // on the reference clock
	local, remote netip.AddrPort
	conn          *conn
	end           int  // the end of conn whose socket the event is about
	used          bool // a refused connect's error has taken it
}

func (k *kernelRec) send() bool { return k.ev.Event == session.KernelSendReset }

// reset is the event as an Explanation or a Segment carries it.
func (e *Engine) kernelReset(k *kernelRec) *KernelReset {
	ev := k.ev
	r := &KernelReset{Time: k.t, Reason: ev.Reason, State: ev.State, PID: ev.PID, TID: ev.TID, Comm: ev.Comm, Softirq: ev.Softirq,
		OwnerPID: ev.OwnerPID, OwnerComm: ev.OwnerComm}
	if x, ok := kernel.ExplainReason(ev.Reason); ok {
		r.Meaning = x.Meaning
		r.TaskIncidental = ev.Softirq || !x.ByProcess
	} else {
		r.TaskIncidental = ev.Softirq
	}
	if k.file >= 0 && k.file < len(e.in.Files) {
		r.Host = e.in.Files[k.file].Run.Host
	}
	return r
}

// buildKernel takes each reset event once per host (copies traced by
// several processes of one host differ by microseconds) and joins it to
// the connection of its 4-tuple at its time, making one when nothing
// else saw the connection.
func (e *Engine) buildKernel() {
	if len(e.in.Kernel) == 0 {
		return
	}
	byHost := map[string][]*Rec[session.KernelEvent]{}
	for i := range e.in.Kernel {
		r := &e.in.Kernel[i]
		if r.R.Event != session.KernelSendReset && r.R.Event != session.KernelReceiveReset {
			continue
		}
		host := "file " + strconv.Itoa(r.File)
		if r.File >= 0 && r.File < len(e.in.Files) && e.in.Files[r.File].Run.Host != "" {
			host = "host " + e.in.Files[r.File].Run.Host
		}
		byHost[host] = append(byHost[host], r)
	}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	window := session.KernelDedupWindow.Seconds()
	for _, h := range hosts {
		evs := byHost[h]
		slices.SortStableFunc(evs, func(a, b *Rec[session.KernelEvent]) int {
			switch {
			case a.R.KernelTime < b.R.KernelTime:
				return -1
			case a.R.KernelTime > b.R.KernelTime:
				return 1
			}
			return 0
		})
		var kept []*Rec[session.KernelEvent]
		for _, r := range evs {
			dup := false
			for j := len(kept) - 1; j >= 0 && r.R.KernelTime-kept[j].R.KernelTime <= window; j-- {
				if session.SameKernelEvent(kept[j].R, r.R) {
					if kept[j].R.OwnerPID == 0 && r.R.OwnerPID != 0 {
						kept[j].R.OwnerPID, kept[j].R.OwnerComm = r.R.OwnerPID, r.R.OwnerComm
					}
					dup = true
					break
				}
			}
			if !dup {
				kept = append(kept, r)
			}
		}
		for _, r := range kept {
			e.joinKernel(r)
		}
	}
	for _, c := range e.all {
		slices.SortStableFunc(c.kernel, func(a, b *kernelRec) int { return a.t.Compare(b.t) })
	}
	for _, ks := range e.noSocket {
		slices.SortStableFunc(ks, func(a, b *kernelRec) int { return a.t.Compare(b.t) })
	}
	for k, cs := range e.conns {
		slices.SortFunc(cs, func(a, b *conn) int { return a.start.Compare(b.start) })
		e.conns[k] = cs
	}
}

// joinKernel joins one event to its connection.
func (e *Engine) joinKernel(r *Rec[session.KernelEvent]) {
	local, ok1 := parseAP(r.R.LocalAddr)
	remote, ok2 := parseAP(r.R.RemoteAddr)
	if !ok1 || !ok2 {
		return
	}
	k := &kernelRec{ev: &r.R, file: r.File, t: e.at(r.File, r.R.Time), local: local, remote: remote}
	c := e.lookup(local, remote, k.t, k.t)
	if c == nil {
		d, l := local, remote
		rl, rr := e.topo.lookup(local), e.topo.lookup(remote)
		switch {
		case rl.listens() && !rr.listens():
			d, l = remote, local
		case rr.listens() && !rl.listens():
		case local.Port() < remote.Port():
			// Nothing says: the lower port is the listener's more often
			// than not (ephemeral ports are high).
			d, l = remote, local
		}
		c = &conn{start: k.t, end: k.t}
		e.all = append(e.all, c)
		e.index(c, d, l)
		c.addAddr(endDialer, d)
		c.addAddr(endListener, l)
	} else if !c.end.IsZero() && k.t.After(c.end) {
		c.end = k.t
	}
	k.conn = c
	switch {
	case c.hops[endDialer] != nil && c.hops[endDialer].local == local:
		k.end = endDialer
	case c.hops[endListener] != nil && c.hops[endListener].local == local:
		k.end = endListener
	case slices.Contains(c.addrs[endListener], local) && !slices.Contains(c.addrs[endDialer], local):
		k.end = endListener
	default:
		k.end = endDialer
	}
	c.kernel = append(c.kernel, k)
	e.kernel = append(e.kernel, k)
	if k.send() && k.ev.State == "" && kernelKind(k.ev.Reason) == kernel.KindNoSocket {
		if e.noSocket == nil {
			e.noSocket = map[netip.AddrPort][]*kernelRec{}
		}
		e.noSocket[local] = append(e.noSocket[local], k)
	}
}

// refusal finds the kernel's answer to a connect refused at t toward
// remote, when the client's error has no local address to join by (a
// refused connect never had one): a send_reset from remote with no
// socket, within sameDeed, each taken by one error while any is left.
func (e *Engine) refusal(remote netip.AddrPort, t time.Time) *kernelRec {
	var best, bestUsed *kernelRec
	ks := e.noSocket[remote] // by time
	i, _ := slices.BinarySearchFunc(ks, t.Add(-sameDeed), func(k *kernelRec, from time.Time) int { return k.t.Compare(from) })
	for _, k := range ks[i:] {
		if k.t.After(t.Add(sameDeed)) {
			break
		}
		d := absDur(k.t.Sub(t))
		if k.used {
			if bestUsed == nil || d < absDur(bestUsed.t.Sub(t)) {
				bestUsed = k
			}
			continue
		}
		if best == nil || d < absDur(best.t.Sub(t)) {
			best = k
		}
	}
	if best == nil {
		return bestUsed
	}
	best.used = true
	return best
}

// attachKernel adds a connection's kernel events to its segments: a
// send_reset is the segment its end sent (the nearest one of that end not
// yet traced, or a segment of its own when no packet saw it); a
// receive_reset marks the arrival of the nearest segment of the other
// end.
func (e *Engine) attachKernel(c *conn) {
	for _, k := range c.kernel {
		if !k.send() {
			continue
		}
		var best *segment
		for _, s := range c.segs {
			if s.end != k.end || s.kernel != nil || absDur(s.t.Sub(k.t)) > twinWindow {
				continue
			}
			if best == nil || absDur(s.t.Sub(k.t)) < absDur(best.t.Sub(k.t)) {
				best = s
			}
		}
		if best == nil {
			best = &segment{t: k.t, end: k.end, conn: c, idle: -1}
			c.segs = append(c.segs, best)
		}
		best.kernel = k
	}
	for _, k := range c.kernel {
		if k.send() {
			continue
		}
		var best *segment
		for _, s := range c.segs {
			if s.end != other(k.end) || s.received != nil || absDur(s.t.Sub(k.t)) > twinWindow {
				continue
			}
			if best == nil || absDur(s.t.Sub(k.t)) < absDur(best.t.Sub(k.t)) {
				best = s
			}
		}
		if best != nil {
			best.received = k
		}
	}
	slices.SortStableFunc(c.segs, func(a, b *segment) int { return a.t.Compare(b.t) })
}

// kernelReason says why a segment only the kernel saw was sent, in the
// terms the packets use (Reason*).
func (e *Engine) kernelReason(s *segment) string {
	c := s.conn
	earlier := slices.ContainsFunc(c.segs, func(x *segment) bool { return x != s && x.t.Before(s.t) })
	closed := func() bool {
		for _, t := range c.fins {
			if !t.IsZero() && t.Before(s.t) {
				return true
			}
		}
		return false
	}
	switch kernelKind(s.kernel.ev.Reason) {
	case kernel.KindNoSocket:
		switch {
		case earlier:
			return ReasonReply
		case closed():
			return ReasonAfterClose
		case s.end == endListener && !e.connected(c):
			return ReasonRefused
		}
		return ReasonAnswer
	case kernel.KindAfterClose:
		return ReasonAfterClose
	case kernel.KindOutOfStep:
		if earlier {
			return ReasonReply
		}
	}
	return ReasonAbort
}

// connected says whether anything shows c was established: a proxy's
// record of either socket, a captured handshake, or a client that
// recorded it by its local address (a refused connect has none).
func (e *Engine) connected(c *conn) bool {
	if c.hops[endDialer] != nil || c.hops[endListener] != nil {
		return true
	}
	for _, fr := range c.flows {
		if !fr.f.SYNACK.IsZero() || fr.f.Midstream {
			return true
		}
	}
	for _, a := range c.addrs[endDialer] {
		if len(e.errorsByLocal[a]) > 0 || e.clientLocal[a] {
			return true
		}
	}
	return false
}

// kernelStep is the step of a chain that says what the sender's kernel
// traced: "sse-server (pid 4242) on the server 127.0.0.1:8090 closed the
// socket with unread data (TCP_ABORT_ON_CLOSE) 61.2 s into the stream",
// or "the kernel of the server 127.0.0.1:8090 had no socket for the
// connection (NO_SOCKET)".
func kernelStep(k *KernelReset, sender Party, age time.Duration) string {
	into := ""
	if age > 0 {
		into = " " + words(age) + " into the stream"
	}
	if k.byProcess() {
		return fmt.Sprintf("%s on %s %s%s", k.process(), sender.Words(), withReason(k.deed(1), k.Reason), into)
	}
	if r, _ := kernel.ExplainReason(k.Reason); r.ByProcess {
		return fmt.Sprintf("a process on %s %s%s", sender.Words(), withReason(k.deed(1), k.Reason), into)
	}
	owner := ""
	if p := k.process(); p != "" {
		owner = ", whose socket " + p + " held,"
	}
	return fmt.Sprintf("the kernel of %s%s %s%s", sender.Words(), owner, withReason(k.deed(1), k.Reason), into)
}

// kernelClause is the kernel's why in a verdict's first sentence, for n
// incidents: ", because sse-server (pid 4242) closed the sockets with
// unread data (TCP_ABORT_ON_CLOSE)".
func kernelClause(k *KernelReset, n int64) string {
	if k == nil {
		return ""
	}
	if k.byProcess() {
		return fmt.Sprintf(", because %s %s", k.process(), withReason(k.deed(n), k.Reason))
	}
	if r, _ := kernel.ExplainReason(k.Reason); r.ByProcess {
		return fmt.Sprintf(", because its process %s", withReason(k.deed(n), k.Reason))
	}
	return fmt.Sprintf(", because its kernel %s", withReason(k.deed(n), k.Reason))
}

// withReason puts the reason's name after a deed: "closed the socket with
// unread data (TCP_ABORT_ON_CLOSE)"; a deed that ends in a remark in
// parentheses gets the name inside them: "aborted the socket (TCP_STATE:
// SO_LINGER 0, a disconnect, or a socket destroyed)".
func withReason(deed, reason string) string {
	if i := strings.LastIndex(deed, " ("); i >= 0 && strings.HasSuffix(deed, ")") {
		return deed[:i] + " (" + reason + ": " + deed[i+2:]
	}
	return deed + " (" + reason + ")"
}

// keyOfKernel is what a cause's group key takes of its kernel evidence:
// the reason and the process's name, not its pid.
func keyOfKernel(k *KernelReset) string {
	if k == nil {
		return ""
	}
	comm := ""
	if k.byProcess() {
		comm = strings.SplitN(k.process(), " ", 2)[0]
	}
	return "|kernel " + k.Reason + " " + comm
}
