package kernel

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ssestress/ssestress/internal/session"
)

// Lines as this machine's kernel (6.18) printed them.
const (
	lineNoSocket    = `         python3-20549   (  20549) [001] ..s1.   389.272019: tcp_send_reset: skbaddr=00000000b12f94e0 skaddr=0000000000000000 src=127.0.0.1:1 dest=127.0.0.1:46878 state=UNKNOWN reason=NO_SOCKET`
	lineAbortClose  = `         python3-16303   (  16303) [000] .....   308.198483: tcp_send_reset: skbaddr=0000000000000000 skaddr=00000000066e4e6d src=127.0.0.1:54729 dest=127.0.0.1:35038 state=TCP_CLOSE reason=TCP_ABORT_ON_CLOSE`
	lineReceive     = `         python3-16303   (  16303) [000] ..s2.   308.198478: tcp_receive_reset: family=AF_INET sport=35038 dport=54729 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 sock_cookie=2a`
	lineState       = `          <idle>-0       (-------) [001] ..s2.   308.011015: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=34450 dport=443 saddr=192.0.2.2 daddr=203.0.113.80 saddrv6=::ffff:192.0.2.2 daddrv6=::ffff:203.0.113.80 oldstate=TCP_SYN_SENT newstate=TCP_ESTABLISHED`
	lineNoTgid      = `           <...>-16301   [000] .....   308.010625: inet_sock_set_state: family=AF_INET6 protocol=IPPROTO_TCP sport=8080 dport=50000 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=2001:db8::1 daddrv6=2001:db8::2 oldstate=TCP_ESTABLISHED newstate=TCP_FIN_WAIT1`
	lineSendReset6  = `            node-4242    (   4240) [003] d.s3.  1234567.000001: tcp_send_reset: skbaddr=0000000000000000 skaddr=00000000deadbeef src=[2001:db8::1]:443 dest=[2001:db8::2]:51000 state=TCP_ESTABLISHED reason=TCP_KEEPALIVE_TIMEOUT`
	lineMappedReset = `              go-1       (      1) [000] .....     1.5: tcp_send_reset: skbaddr=0000000000000000 skaddr=00000000deadbeef src=[::ffff:10.0.0.1]:80 dest=[::ffff:10.0.0.2]:9 state=TCP_CLOSE reason=TCP_STATE`
)

func TestParseLine(t *testing.T) {
	for _, c := range []struct {
		name, line string
		comm       string
		tid, tgid  int
		cpu        int
		softirq    bool
		micros     int64
		event      string
	}{
		{"no socket", lineNoSocket, "python3", 20549, 20549, 1, true, 389_272019, tpSendReset},
		{"abort on close", lineAbortClose, "python3", 16303, 16303, 0, false, 308_198483, tpSendReset},
		{"idle, tgid unknown", lineState, "<idle>", 0, 0, 1, true, 308_011015, tpSetState},
		{"no tgid column", lineNoTgid, "<...>", 16301, 0, 0, false, 308_010625, tpSetState},
		{"tgid differs, hardirq-off flags", lineSendReset6, "node", 4242, 4240, 3, true, 1234567_000001, tpSendReset},
		{"short fraction", lineMappedReset, "go", 1, 1, 0, false, 1_500000, tpSendReset},
		// comm may hold spaces, dashes and even a fake CPU column.
		{"awkward comm", `  a-1 [9] x-b c-77     (     70) [002] ..s1.    10.000002: tcp_receive_reset: family=AF_INET`, "a-1 [9] x-b c", 77, 70, 2, true, 10_000002, tpReceiveReset},
	} {
		l, lost, ok := parseLine([]byte(c.line))
		if !ok || lost != 0 {
			t.Errorf("%s: not parsed", c.name)
			continue
		}
		if string(l.comm) != c.comm || l.tid != c.tid || l.tgid != c.tgid || l.cpu != c.cpu || l.softirq != c.softirq || l.micros != c.micros || string(l.name) != c.event {
			t.Errorf("%s: got comm=%q tid=%d tgid=%d cpu=%d softirq=%v micros=%d name=%q", c.name, l.comm, l.tid, l.tgid, l.cpu, l.softirq, l.micros, l.name)
		}
	}
}

func TestParseLineLostAndGarbage(t *testing.T) {
	_, lost, ok := parseLine([]byte("CPU:1 [LOST 1234 EVENTS]\n"))
	if ok || lost != 1234 {
		t.Errorf("LOST line: lost=%d ok=%v", lost, ok)
	}
	for _, s := range []string{"", "garbage", "[", "x-1 [0]", "x-1 [0] ..... abc: tcp_send_reset: a=b", "x-y [0] ..... 1.0: e: f", "x-1 [0] ..q.. 1.0: e: f"} {
		if _, lost, ok := parseLine([]byte(s)); ok || lost != 0 {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestParseFields(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		line          string
		want          tcpFields
		local, remote string
	}{
		{lineNoSocket, tcpFields{event: session.KernelSendReset, reason: "NO_SOCKET"}, "127.0.0.1:1", "127.0.0.1:46878"},
		{lineAbortClose, tcpFields{event: session.KernelSendReset, state: "TCP_CLOSE", reason: "TCP_ABORT_ON_CLOSE"}, "127.0.0.1:54729", "127.0.0.1:35038"},
		{lineReceive, tcpFields{event: session.KernelReceiveReset, cookie: 0x2a}, "127.0.0.1:35038", "127.0.0.1:54729"},
		{lineState, tcpFields{event: session.KernelState, oldState: "TCP_SYN_SENT", newState: "TCP_ESTABLISHED"}, "192.0.2.2:34450", "203.0.113.80:443"},
		{lineNoTgid, tcpFields{event: session.KernelState, oldState: "TCP_ESTABLISHED", newState: "TCP_FIN_WAIT1"}, "[2001:db8::1]:8080", "[2001:db8::2]:50000"},
		{lineSendReset6, tcpFields{event: session.KernelSendReset, state: "TCP_ESTABLISHED", reason: "TCP_KEEPALIVE_TIMEOUT"}, "[2001:db8::1]:443", "[2001:db8::2]:51000"},
		{lineMappedReset, tcpFields{event: session.KernelSendReset, state: "TCP_CLOSE", reason: "TCP_STATE"}, "10.0.0.1:80", "10.0.0.2:9"},
		// The layout of kernels before 6.10 (no src/dest): read from ports and addresses.
		{`x-1 [0] ..... 1.000000: tcp_send_reset: family=AF_INET sport=80 dport=9 saddr=10.0.0.1 daddr=10.0.0.2 saddrv6=::ffff:10.0.0.1 daddrv6=::ffff:10.0.0.2 state=TCP_ESTABLISHED`,
			tcpFields{event: session.KernelSendReset, state: "TCP_ESTABLISHED"}, "10.0.0.1:80", "10.0.0.2:9"},
	} {
		l, _, ok := parseLine([]byte(c.line))
		if !ok {
			t.Fatalf("%s: line not parsed", c.line)
		}
		f, ok := parseFields(l.name, l.body)
		if !ok {
			t.Errorf("%s: fields not parsed", c.line)
			continue
		}
		c.want.local, c.want.remote = ap(c.local), ap(c.remote)
		if f != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.line, f, c.want)
		}
	}
	// Other protocols are marked, other events refused.
	l, _, _ := parseLine([]byte(`x-1 [0] ..... 1.000000: inet_sock_set_state: family=AF_INET protocol=IPPROTO_SCTP sport=1 dport=2 saddr=10.0.0.1 daddr=10.0.0.2 oldstate=TCP_CLOSE newstate=TCP_LISTEN`))
	if f, ok := parseFields(l.name, l.body); !ok || !f.notTCP {
		t.Errorf("SCTP state: %+v %v", f, ok)
	}
	l, _, _ = parseLine([]byte(`x-1 [0] ..... 1.000000: tracing_mark_write: hello`))
	if _, ok := parseFields(l.name, l.body); ok {
		t.Error("a marker parsed as a TCP event")
	}
	l, _, _ = parseLine([]byte(`x-1 [0] ..... 1.000000: tcp_send_reset: src=nonsense dest=1.2.3.4:5`))
	if _, ok := parseFields(l.name, l.body); ok {
		t.Error("a reset with a broken address parsed")
	}
}

func TestParseFormat(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "format-6.18", "tcp_send_reset"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseFormat(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "tcp_send_reset" || !f.Fields["reason"] || !f.Fields["saddr"] || !f.Fields["skaddr"] {
		t.Errorf("format: %+v", f)
	}
	reasons := f.Symbols["reason"]
	if len(reasons) != 26 || reasons[0] != "NOT_SPECIFIED" || reasons[11] != "TCP_ABORT_ON_CLOSE" || reasons[25] != "MAX" {
		t.Errorf("reasons %q", reasons)
	}
	if s := f.Symbols["state"]; len(s) != 12 || s[0] != "TCP_ESTABLISHED" {
		t.Errorf("states %q", s)
	}
	b, _ = os.ReadFile(filepath.Join("testdata", "format-no-reason-tcp_send_reset"))
	if f, err := parseFormat(string(b)); err != nil || f.Fields["reason"] || !f.Fields["sport"] {
		t.Errorf("format without reason: %+v %v", f, err)
	}
	if _, err := parseFormat("hello"); err == nil {
		t.Error("garbage accepted as a format file")
	}
}

// TestReasonsCoverKernel: every reason this kernel's format prints (the
// copy in testdata, 6.18) has an explanation, in the kernel's order.
func TestReasonsCoverKernel(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "format-6.18", "tcp_send_reset"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := parseFormat(string(b))
	if got := ReasonNames(); !slices.Equal(got, f.Symbols["reason"]) {
		t.Errorf("ReasonNames %q\nkernel prints %q", got, f.Symbols["reason"])
	}
	for _, name := range f.Symbols["reason"] {
		r, ok := ExplainReason(name)
		if !ok || r.Meaning == "" || r.Causes == "" {
			t.Errorf("%s: no explanation", name)
		}
	}
	if _, ok := ExplainReason("SOMETHING_NEWER"); ok {
		t.Error("an unknown reason explained")
	}
}

func TestKernelPortFilter(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, ""},
		{Filter{Ports: []uint16{8080}}, "sport == 8080 || dport == 8080"},
		{Filter{Ports: []uint16{9000, 80}, Endpoints: []netip.AddrPort{ap("127.0.0.1:80")}}, "sport == 80 || dport == 80 || sport == 9000 || dport == 9000"},
		{Filter{Ports: []uint16{80}, OwnSockets: true}, ""},
		{Filter{Ports: []uint16{80}, Live: NewEndpointSet()}, ""},
		{Filter{Ports: []uint16{80}, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}, ""},
		{Filter{Ports: []uint16{80}, Match: func(Event) bool { return false }}, ""},
	} {
		if got := compileFilter(c.f).kernelPortFilter(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.f, got, c.want)
		}
	}
}

func TestFilterKeep(t *testing.T) {
	ap := netip.MustParseAddrPort
	self := 100
	ev := func(local, remote string, pid int, softirq bool, owner int) Event {
		e := Event{Local: ap(local), Remote: ap(remote)}
		e.PID, e.Softirq, e.OwnerPID = pid, softirq, owner
		return e
	}
	ownTuple := func(l, r netip.AddrPort) bool { return l == ap("127.0.0.1:5000") && r == ap("127.0.0.1:80") }
	noOwn := func(l, r netip.AddrPort) bool { return false }
	live := NewEndpointSet()
	live.Add(ap("[::ffff:127.0.0.1]:6000"))
	for _, c := range []struct {
		name string
		f    Filter
		e    Event
		own  func(l, r netip.AddrPort) bool
		want bool
	}{
		{"zero keeps all", Filter{}, ev("10.0.0.1:1", "10.0.0.2:2", 7, true, 0), noOwn, true},
		{"endpoint local", Filter{Endpoints: []netip.AddrPort{ap("127.0.0.1:80")}}, ev("127.0.0.1:80", "127.0.0.1:5000", 7, false, 0), noOwn, true},
		{"endpoint remote, mapped", Filter{Endpoints: []netip.AddrPort{ap("[::ffff:127.0.0.1]:80")}}, ev("127.0.0.1:5000", "127.0.0.1:80", 7, false, 0), noOwn, true},
		{"endpoint other", Filter{Endpoints: []netip.AddrPort{ap("127.0.0.1:80")}}, ev("127.0.0.1:81", "127.0.0.1:5000", 7, false, 0), noOwn, false},
		{"addr", Filter{Addrs: []netip.Addr{netip.MustParseAddr("10.9.0.2")}}, ev("10.9.0.1:5", "10.9.0.2:6", 7, false, 0), noOwn, true},
		{"port", Filter{Ports: []uint16{6}}, ev("10.9.0.1:5", "10.9.0.2:6", 7, false, 0), noOwn, true},
		{"live", Filter{Live: live}, ev("127.0.0.1:6000", "127.0.0.1:80", 7, true, 0), noOwn, true},
		{"live other", Filter{Live: live}, ev("127.0.0.1:6001", "127.0.0.1:80", 7, true, 0), noOwn, false},
		{"own: owner", Filter{OwnSockets: true}, ev("127.0.0.1:1", "127.0.0.1:2", 7, true, self), noOwn, true},
		{"own: our task", Filter{OwnSockets: true}, ev("127.0.0.1:1", "127.0.0.1:2", self, false, 0), noOwn, true},
		{"own: our task in softirq is incidental", Filter{OwnSockets: true}, ev("127.0.0.1:1", "127.0.0.1:2", self, true, 0), noOwn, false},
		{"own: our socket is the peer", Filter{OwnSockets: true}, ev("127.0.0.1:80", "127.0.0.1:5000", 7, false, 8), ownTuple, true},
		{"own: someone else's", Filter{OwnSockets: true}, ev("127.0.0.1:80", "127.0.0.1:5001", 7, false, 8), ownTuple, false},
		{"match", Filter{Match: func(e Event) bool { return e.PID == 7 }}, ev("1.1.1.1:1", "2.2.2.2:2", 7, false, 0), noOwn, true},
	} {
		if got := compileFilter(c.f).keep(&c.e, self, c.own); got != c.want {
			t.Errorf("%s: keep = %v", c.name, got)
		}
	}
}

func TestUnavailableErrorOneLine(t *testing.T) {
	err := error(&UnavailableError{Err: ErrNoReason, Detail: "this kernel (Linux 6.1.0) does not say why it resets; Linux 6.10 or later does"})
	want := "kernel evidence unavailable: tcp_send_reset has no reason field: this kernel (Linux 6.1.0) does not say why it resets; Linux 6.10 or later does"
	if err.Error() != want {
		t.Errorf("%q", err)
	}
	if !errors.Is(err, ErrNoReason) || errors.Is(err, ErrNoTracefs) {
		t.Error("errors.Is does not tell the sentinel")
	}
}

func FuzzParseLine(f *testing.F) {
	for _, l := range []string{lineNoSocket, lineAbortClose, lineReceive, lineState, lineNoTgid, lineSendReset6, lineMappedReset, "CPU:0 [LOST 5 EVENTS]"} {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, _, ok := parseLine(b)
		if !ok {
			return
		}
		if f, ok := parseFields(l.name, l.body); ok {
			if !f.local.IsValid() || !f.remote.IsValid() || f.local.Addr().Is4In6() {
				t.Fatalf("%q: fields %+v", b, f)
			}
		}
	})
}
