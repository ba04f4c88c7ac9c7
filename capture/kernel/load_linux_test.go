package kernel

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/session"
)

// resetCounter counts, for one server port, the resets the clients send
// (SO_LINGER 0: TCP_STATE) and the server sockets receive.
type resetCounter struct {
	port             string
	sends, receives  atomic.Uint64
	stall            time.Duration // the first event blocks the reader this long
	stalled          atomic.Bool
	otherSendReasons atomic.Uint64
}

func (r *resetCounter) sink(e session.KernelEvent) {
	if r.stall > 0 && r.stalled.CompareAndSwap(false, true) {
		time.Sleep(r.stall)
	}
	switch {
	case e.Event == session.KernelSendReset && portOf(e.RemoteAddr) == r.port:
		if e.Reason == "TCP_STATE" {
			r.sends.Add(1)
		} else {
			r.otherSendReasons.Add(1)
		}
	case e.Event == session.KernelReceiveReset && portOf(e.LocalAddr) == r.port:
		r.receives.Add(1)
	}
}

func portOf(addr string) string {
	a, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ""
	}
	return strconv.Itoa(int(a.Port()))
}

// resetLoad opens conns connections to a server child, rounds times, and
// resets them from this process (SO_LINGER 0) every interval (0: as fast
// as it can). It returns the resets sent and how long resetting took.
func resetLoad(t *testing.T, server *child, addr netip.AddrPort, conns, rounds int, interval time.Duration) (int, time.Duration) {
	t.Helper()
	var resetting time.Duration
	accepted := 0
	for r := 0; r < rounds; r++ {
		cs := make([]*net.TCPConn, 0, conns)
		for i := 0; i < conns; i++ {
			c, err := net.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatalf("connection %d of round %d: %v", i, r, err)
			}
			cs = append(cs, c)
		}
		for ; accepted < (r+1)*conns; accepted++ {
			server.expect(t, "ACCEPTED ")
		}
		start := time.Now()
		var tick *time.Ticker
		if interval > 0 {
			tick = time.NewTicker(interval)
		}
		for _, c := range cs {
			if tick != nil {
				<-tick.C
			}
			c.SetLinger(0)
			c.Close()
		}
		if tick != nil {
			tick.Stop()
		}
		resetting += time.Since(start)
	}
	return conns * rounds, resetting
}

// waitCount waits until n reaches want or stops growing for a second.
func waitCount(n *atomic.Uint64, want uint64) {
	last, lastChange := n.Load(), time.Now()
	for end := time.Now().Add(deadline); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		v := n.Load()
		if v >= want {
			return
		}
		if v != last {
			last, lastChange = v, time.Now()
		} else if time.Since(lastChange) > time.Second {
			return
		}
	}
}

// TestLoadResets: 200 connections reset at about 1,000 resets per second,
// five times over (twice with -short): every reset's send_reset and
// receive_reset is kept or counted as lost. Run with -v for the figures
// (none lost here, with or without -race).
func TestLoadResets(t *testing.T) {
	needTracing(t)
	server := startChild(t, "server", "ssk-load", []string{"ADDR=127.0.0.1:0"})
	addr := mustAddrPort(t, server.expect(t, "LISTEN "))
	count := &resetCounter{port: strconv.Itoa(int(addr.Port()))}
	c, _ := startCollector(t, Options{Filter: Filter{Ports: []uint16{addr.Port()}}, Sink: count.sink})
	rounds := 5
	if testing.Short() {
		rounds = 2
	}
	total, took := resetLoad(t, server, addr, 200, rounds, time.Millisecond)
	waitCount(&count.sends, uint64(total))
	waitCount(&count.receives, uint64(total))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	t.Logf("%d resets in %v (%.0f/s): %d send_reset and %d receive_reset kept; events read %d, kept %d, lost %d (reported %d, overrun %d); buffer %d KiB per CPU",
		total, took.Round(time.Millisecond), float64(total)/took.Seconds(), count.sends.Load(), count.receives.Load(),
		st.Read, st.Kept, st.Lost, st.LostReported, st.Overrun, c.bufferKB)
	checkAccounting(t, count, st, total)
	if st.Lost != 0 {
		t.Logf("NOTE: %d events lost (counted) at %.0f resets/s: a slow machine or a large -race slowdown", st.Lost, float64(total)/took.Seconds())
	}
}

// checkAccounting: every reset is either kept or counted as lost.
func checkAccounting(t *testing.T, count *resetCounter, st Stats, total int) {
	t.Helper()
	if n := count.otherSendReasons.Load(); n != 0 {
		t.Errorf("%d resets with another reason than TCP_STATE", n)
	}
	if st.Lost == 0 {
		if count.sends.Load() != uint64(total) || count.receives.Load() != uint64(total) {
			t.Errorf("no loss counted, but %d send_reset and %d receive_reset of %d resets", count.sends.Load(), count.receives.Load(), total)
		}
		return
	}
	if count.sends.Load()+st.Lost < uint64(total) || count.receives.Load()+st.Lost < uint64(total) {
		t.Errorf("%d send_reset, %d receive_reset kept and %d lost: fewer than the %d resets", count.sends.Load(), count.receives.Load(), st.Lost, total)
	}
}

// TestLostEventsCounted: a reader stalled for a second behind a tiny
// buffer loses events, and says how many.
func TestLostEventsCounted(t *testing.T) {
	needTracing(t)
	server := startChild(t, "server", "ssk-lossy", []string{"ADDR=127.0.0.1:0"})
	addr := mustAddrPort(t, server.expect(t, "LISTEN "))
	count := &resetCounter{port: strconv.Itoa(int(addr.Port())), stall: 1500 * time.Millisecond}
	c, _ := startCollector(t, Options{Filter: Filter{Ports: []uint16{addr.Port()}}, Sink: count.sink, BufferSizeKB: 4, OwnerInterval: -1})
	total, took := resetLoad(t, server, addr, 200, 3, 0)
	waitCount(&count.receives, uint64(total))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	t.Logf("%d resets in %v with a 4 KiB buffer and a reader stalled %v: %d send_reset and %d receive_reset kept; lost %d (reported %d, overrun %d)",
		total, took.Round(time.Millisecond), count.stall, count.sends.Load(), count.receives.Load(), st.Lost, st.LostReported, st.Overrun)
	if st.Lost == 0 {
		t.Fatal("no loss counted: the stall did not overflow the buffer")
	}
	checkAccounting(t, count, st, total)
	if info := c.Info(); info.EventsLost != st.Lost {
		t.Errorf("Info says %d lost, Stats %d", info.EventsLost, st.Lost)
	}
}

// TestLoadUnpaced resets as fast as this process can and reports the rate
// and any loss (skipped with -short; run with -v for the figures).
func TestLoadUnpaced(t *testing.T) {
	if testing.Short() {
		t.Skip("the unpaced load figure is not needed for -short")
	}
	needTracing(t)
	server := startChild(t, "server", "ssk-fast", []string{"ADDR=127.0.0.1:0"})
	addr := mustAddrPort(t, server.expect(t, "LISTEN "))
	count := &resetCounter{port: strconv.Itoa(int(addr.Port()))}
	c, _ := startCollector(t, Options{Filter: Filter{Ports: []uint16{addr.Port()}}, Sink: count.sink})
	total, took := resetLoad(t, server, addr, 200, 10, 0)
	waitCount(&count.receives, uint64(total))
	c.Close()
	st := c.Stats()
	t.Logf("unpaced: %d resets in %v (%.0f/s): %d send_reset, %d receive_reset kept; lost %d", total, took.Round(time.Millisecond),
		float64(total)/took.Seconds(), count.sends.Load(), count.receives.Load(), st.Lost)
	checkAccounting(t, count, st, total)
}

// benchLines are the trace lines of one reset between two local sockets,
// as this kernel prints them: the closing side's state change and
// send_reset, the peer's receive_reset and state change.
func benchLines(pid int) [][]byte {
	p := strconv.Itoa(pid)
	return [][]byte{
		[]byte(`      kernel.test-` + p + `   (  ` + p + `) [000] .....   308.198448: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=54729 dport=35038 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_ESTABLISHED newstate=TCP_CLOSE`),
		[]byte(`      kernel.test-` + p + `   (  ` + p + `) [000] ..s2.   308.198478: tcp_receive_reset: family=AF_INET sport=35038 dport=54729 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 sock_cookie=2`),
		[]byte(`      kernel.test-` + p + `   (  ` + p + `) [000] ..s2.   308.198481: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=35038 dport=54729 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_ESTABLISHED newstate=TCP_CLOSE`),
		[]byte(`      kernel.test-` + p + `   (  ` + p + `) [000] .....   308.198483: tcp_send_reset: skbaddr=0000000000000000 skaddr=00000000066e4e6d src=127.0.0.1:54729 dest=127.0.0.1:35038 state=TCP_CLOSE reason=TCP_ABORT_ON_CLOSE`),
	}
}

// BenchmarkTracedReset is the collector's cost per traced reset: parsing
// its four trace lines, the process and owner lookups, the filter and the
// record handed to Sink (no tracefs needed). Compare the filters in one
// run: go test -run '^$' -bench TracedReset ./capture/kernel
func BenchmarkTracedReset(b *testing.B) {
	self := os.Getpid()
	lines := benchLines(self)
	for _, bc := range []struct {
		name   string
		filter Filter
	}{
		{"all", Filter{}},
		{"ports", Filter{Ports: []uint16{54729}}},
		{"own", Filter{OwnSockets: true}},
		{"foreign", Filter{Ports: []uint16{1}}}, // parsed, then dropped
	} {
		b.Run(bc.name, func(b *testing.B) {
			var kept int
			c, now := benchCollector(bc.filter, func(session.KernelEvent) { kept++ })
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, l := range lines {
					c.handleLine(l, now)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(kept)/float64(b.N), "kept/reset")
		})
	}
}

// benchCollector is a collector with no tracefs, fed benchLines by hand:
// both sockets of the reset known to the owner table, as after a sample.
func benchCollector(filter Filter, sink func(session.KernelEvent)) (*Collector, time.Time) {
	self := os.Getpid()
	c := &Collector{opts: Options{Sink: sink}, filter: compileFilter(filter), self: self,
		procs: newProcCache(), sampleReq: make(chan struct{}, 1)}
	c.owners = newOwnerTable(time.Second, nil, c.procs)
	now := time.Now()
	for _, k := range []tuple{{netip.MustParseAddrPort("127.0.0.1:54729"), netip.MustParseAddrPort("127.0.0.1:35038")},
		{netip.MustParseAddrPort("127.0.0.1:35038"), netip.MustParseAddrPort("127.0.0.1:54729")}} {
		s := &sockInfo{cookie: 2, inode: 1, pid: self, comm: "kernel.test", seen: now, resolved: true}
		c.owners.byTuple[k], c.owners.byCookie[s.cookie] = s, s
	}
	off := measureClockOffset()
	c.clock.Store(&off)
	return c, now
}

// BenchmarkParseLine is the parsing part alone, per line.
func BenchmarkParseLine(b *testing.B) {
	lines := benchLines(4242)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		l, _, _ := parseLine(lines[i%len(lines)])
		parseFields(l.name, l.body)
	}
}

// BenchmarkOwnerSample is one socket-table sample with 200 open loopback
// connections in this process (400 sockets): "steady" when every socket
// is known, "fresh" when all are new (their owners resolved, and a scan of
// every process's descriptors). Needs root for nothing but the count of
// other processes' descriptors; runs without it.
func BenchmarkOwnerSample(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 256) // kept open (a dropped conn is closed by its finalizer)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	procs := newProcCache()
	b.Run("steady", func(b *testing.B) {
		t := newOwnerTable(time.Second, nil, procs)
		t.sample(time.Now())
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t.sample(time.Now())
		}
		b.ReportMetric(float64(t.size()), "sockets")
	})
	b.Run("fresh", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			t := newOwnerTable(time.Second, nil, procs)
			t.sample(time.Now())
		}
	})
}
