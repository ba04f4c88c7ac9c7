package analysis

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
)

// t0 is the start of every fixture run: fixed so golden files are stable.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// writeSession creates a session file in dir from records, the way the
// producers do: run info first, records through Put, summary, Close.
func writeSession(t testing.TB, path string, run session.RunInfo, summary *session.Summary, records []session.Record) string {
	t.Helper()
	w, err := session.Create(path, session.Options{MaxPending: 4_000_000})
	if err != nil {
		t.Fatal(err)
	}
	w.PutMeta(session.MetaRun, run)
	for _, r := range records {
		w.Put(r)
	}
	if summary != nil {
		w.PutMeta(session.MetaSummary, *summary)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Dropped() != 0 {
		t.Fatalf("%s: %d records dropped", path, w.Dropped())
	}
	return path
}

// clientAddr is the ephemeral address of fixture client n.
func clientAddr(n int) string { return fmt.Sprintf("127.0.0.1:%d", 41000+n) }

// proxyUpAddr is the ephemeral upstream address of proxy connection n.
func proxyUpAddr(n int) string { return fmt.Sprintf("127.0.0.1:%d", 52000+n) }

const (
	proxyListen = "127.0.0.1:9001"
	serverAddr  = "127.0.0.1:8090"
)

// proxied adds one client attempt through proxy p1, with both hop records
// and, when fault is set, the fault event: what run --via-proxy writes.
type proxied struct {
	n        int // client/connection number
	group    string
	start    time.Duration
	events   int64
	comments int64
	lastByte time.Duration // since start: when the last byte arrived
	end      time.Duration // since start: when the error was seen
	class    string        // "" closes cleanly at the end of the run
	message  string
	// How the proxy saw it end.
	clientClosedBy, clientHow     string
	upstreamClosedBy, upstreamHow string
	fault                         string // fault kind on the client hop
	faultDetail                   string
}

func (p proxied) records(attempt int) []session.Record {
	connID := fmt.Sprintf("c%04d", p.n)
	proxyConn := fmt.Sprintf("p1-%d", p.n*10+attempt)
	local := clientAddr(p.n*10 + attempt)
	start, end := at(p.start), at(p.start+p.end)
	c := session.ConnRecord{
		ClientID: connID, Attempt: attempt, Scenario: "quotes", Group: p.group,
		URL: "http://" + proxyListen + "/stream?symbols=" + p.group, LocalAddr: local, RemoteAddr: proxyListen,
		Start: start, Connected: start.Add(ms(1)), FirstByte: start.Add(ms(3)), FirstEvent: start.Add(ms(20 + p.n%7*10)),
		End: end, Status: 200, Events: p.events, Comments: p.comments, Bytes: p.events * 120,
		MaxGap: session.Seconds(p.end - p.lastByte + ms(50)), EndClass: p.class, EndMessage: p.message,
	}
	if p.class == "" {
		c.ClosedBy = session.ClosedBySelf
	} else {
		c.ClosedBy = session.ClosedByPeer
	}
	var faults []session.FaultFiring
	var out []session.Record
	if p.fault != "" {
		faults = []session.FaultFiring{{FaultName: "aws-alb/" + p.fault, FaultKind: p.fault, Action: "rst", Ending: session.EndingRST, Time: end.Add(-ms(2))}}
		out = append(out, session.FaultEvent{
			Time: end.Add(-ms(2)), Proxy: "p1", ConnID: proxyConn, Hop: session.HopClient, FaultName: "aws-alb/" + p.fault,
			FaultKind: p.fault, Direction: "both", Action: "rst", Ending: session.EndingRST, Detail: p.faultDetail,
			LocalAddr: proxyListen, RemoteAddr: local,
		})
	}
	out = append(out,
		c,
		session.HopConn{
			Proxy: "p1", ConnID: proxyConn, Hop: session.HopClient, LocalAddr: proxyListen, RemoteAddr: local,
			Method: "GET", Path: "/stream?symbols=" + p.group, Status: 200, Opened: start.Add(ms(1)), Closed: end.Add(-ms(1)),
			ClosedBy: p.clientClosedBy, Ending: p.clientHow, Class: p.class, BytesUp: 180, BytesDown: p.events * 120,
			EventsDown: p.events, Faults: faults,
		},
		session.HopConn{
			Proxy: "p1", ConnID: proxyConn, Hop: session.HopUpstream, LocalAddr: proxyUpAddr(p.n*10 + attempt), RemoteAddr: serverAddr,
			Method: "GET", Path: "/stream?symbols=" + p.group, Status: 200, Opened: start.Add(ms(2)), Closed: end.Add(-ms(1)),
			ClosedBy: p.upstreamClosedBy, Ending: p.upstreamHow, BytesUp: 180, BytesDown: p.events * 120, EventsDown: p.events,
		},
	)
	if p.class != "" {
		out = append(out, session.ErrorRecord{
			Time: end, Source: "client", ClientID: connID, Attempt: attempt, Scenario: "quotes", Group: p.group,
			Hop: session.HopClient, Class: p.class, Message: p.message, LocalAddr: local, RemoteAddr: proxyListen,
			Age: session.Seconds(p.end), Idle: session.Seconds(p.end - p.lastByte), Events: p.events, LastEventID: fmt.Sprint(p.events),
		})
	}
	return out
}

var groups = []string{"AAPL,MSFT", "GOOG", "TSLA,NVDA,AMD"}

// idleTimeoutSession writes the session of a time-scaled run through proxy
// p1 whose client hop resets streams idle for 1 s (the aws-alb preset's 60 s
// idle-timeout at --time-scale 60, action rst), with natural closes elsewhere:
// server EOFs at spread-out ages, a few upstream resets by the server and
// refused connects that nothing explains.
func idleTimeoutSession(t testing.TB, dir string) string {
	return idleSession(t, filepath.Join(dir, "idle.db"), 24)
}

// idleSession writes the idle-timeout run to path with resetStreams of the
// 24 idle streams reset by the fault (each twice); the others get
// heartbeats in time and run to the end, as after a fix.
func idleSession(t testing.TB, path string, resetStreams int) string {
	cfg, _ := json.Marshal(map[string]any{"proxy": map[string]any{"name": "p1", "faults": []string{"preset:aws-alb"}, "time_scale": 60}})
	run := session.RunInfo{
		Tool: "ssestress test", Command: "run", Args: []string{"--via-proxy", "--fault", "preset:aws-alb", "--time-scale", "60", "--duration", "30s"},
		Scenario: "quotes", Target: "http://" + serverAddr + "/stream", Config: cfg, Host: "fixture", PID: 4242,
		StartedAt: t0, EndedAt: at(30 * time.Second), TimeScale: 60,
	}
	recs := []session.Record{
		session.Endpoint{Role: session.RoleClient, Addr: "127.0.0.1:0"},
		session.Endpoint{Role: session.RoleProxy, Name: "p1", Hop: session.HopClient, Addr: proxyListen},
		session.Endpoint{Role: session.RoleTarget, Addr: "127.0.0.1:0"},
		session.Endpoint{Role: session.RoleServer, Addr: serverAddr, URL: "http://" + serverAddr + "/stream"},
	}
	resetMsg := func(n int) string {
		return fmt.Sprintf("read tcp %s->%s: read: connection reset by peer", clientAddr(n), proxyListen)
	}
	var messages, errs int64
	n := 0
	// 24 streams go idle and are reset 1.0–1.04 s later by the fault; each
	// reconnects and is reset again once.
	for i := range 24 {
		if i >= resetStreams {
			p := proxied{
				n: n, group: groups[i%3], start: ms(i * 350), events: int64(60 + i), comments: 40,
				lastByte: 30*time.Second - ms(i*350+200), end: 30*time.Second - ms(i*350+100),
				clientClosedBy: session.ClosedByPeer, clientHow: session.EndingFIN, upstreamClosedBy: session.ClosedBySelf, upstreamHow: session.EndingFIN,
			}
			recs = append(recs, p.records(0)...)
			messages += p.events
			n++
			continue
		}
		for attempt := range 2 {
			idle := ms(1000 + (i*7+attempt*13)%40)
			busy := ms(300 + i*90 + attempt*400)
			p := proxied{
				n: n, group: groups[i%3], start: ms(i*350+attempt*9000) + ms(attempt*10), events: int64(3 + i%5 + attempt),
				comments: 0, lastByte: busy, end: busy + idle,
				class: errclass.ECONNRESET, message: resetMsg(n*10 + attempt),
				clientClosedBy: session.ClosedBySelf, clientHow: session.EndingRST, upstreamClosedBy: session.ClosedBySelf, upstreamHow: session.EndingFIN,
				fault: "idle-timeout", faultDetail: fmt.Sprintf("idle %s (idle bound 1s)", idle-ms(2)),
			}
			recs = append(recs, p.records(attempt)...)
			messages += p.events
			errs++
		}
		n++
	}
	// 8 streams end naturally: the server closes them (EOF) at spread-out
	// ages, shortly after an event.
	for i := range 8 {
		age := ms(2100 + i*2300)
		p := proxied{
			n: n, group: groups[i%3], start: ms(500 + i*600), events: int64(20 + i*9), comments: int64(i % 3),
			lastByte: age - ms(80+i*30), end: age, class: errclass.EOF, message: "EOF",
			clientClosedBy: session.ClosedBySelf, clientHow: session.EndingFIN, upstreamClosedBy: session.ClosedByPeer, upstreamHow: session.EndingFIN,
		}
		recs = append(recs, p.records(0)...)
		messages += p.events
		errs++
		n++
	}
	// 3 streams are cut by the server with a reset on the upstream hop; the
	// proxy passes it on as an unexpected EOF.
	for i := range 3 {
		age := ms(4000 + i*5100)
		p := proxied{
			n: n, group: groups[i%3], start: ms(1200 + i*2500), events: int64(40 + i), comments: 1,
			lastByte: age - ms(400+i*250), end: age, class: errclass.UnexpectedEOF, message: "unexpected EOF",
			clientClosedBy: session.ClosedBySelf, clientHow: session.EndingFIN, upstreamClosedBy: session.ClosedByPeer, upstreamHow: session.EndingRST,
		}
		recs = append(recs, p.records(0)...)
		messages += p.events
		errs++
		n++
	}
	// 5 streams run to the end of the run and are closed by the client.
	for i := range 5 {
		p := proxied{
			n: n, group: groups[i%3], start: ms(100 + i*50), events: int64(200 + i*11), comments: int64(6 + i),
			lastByte: 30*time.Second - ms(i*100+100), end: 30*time.Second - ms(100+i*50),
			clientClosedBy: session.ClosedByPeer, clientHow: session.EndingFIN, upstreamClosedBy: session.ClosedBySelf, upstreamHow: session.EndingFIN,
		}
		recs = append(recs, p.records(0)...)
		messages += p.events
		n++
	}
	// 3 connects refused before the proxy was listening: no address, no
	// evidence.
	for i := range 3 {
		connID := fmt.Sprintf("c%04d", n)
		start := ms(5 + i*3)
		recs = append(recs,
			session.ConnRecord{ClientID: connID, Scenario: "quotes", Group: groups[i%3], URL: "http://" + proxyListen + "/stream",
				Start: at(start), End: at(start + ms(1)), EndClass: errclass.ECONNREFUSED,
				EndMessage: "dial tcp " + proxyListen + ": connect: connection refused"},
			session.ErrorRecord{Time: at(start + ms(1)), Source: "client", ClientID: connID, Scenario: "quotes", Group: groups[i%3],
				Hop: session.HopClient, Class: errclass.ECONNREFUSED, Message: "dial tcp " + proxyListen + ": connect: connection refused",
				RemoteAddr: proxyListen, Age: session.Seconds(ms(1))},
		)
		errs++
		n++
	}
	// The monitor: one sample a second.
	var msgs int64
	errorsSoFar := map[string]int64{}
	for s := 0; s <= 30; s++ {
		msgs = messages * int64(s) / 30
		errorsSoFar[errclass.ECONNRESET] = int64(48 * s / 30)
		recs = append(recs, session.Sample{
			Time: at(time.Duration(s) * time.Second), Uptime: session.Seconds(time.Duration(s) * time.Second),
			Active: int64(min(s*6, 30) - s%4), Attempts: int64(min(s*7, 91)), Events: msgs, Reconnects: int64(s * 24 / 30),
			Errors:    map[string]int64{errclass.ECONNRESET: errorsSoFar[errclass.ECONNRESET]},
			HeapAlloc: uint64(6+s/5) << 20, RSS: uint64(18+s/3) << 20, Goroutines: 40 + 2*min(s*6, 30), FDs: 12 + min(s*6, 30),
			TimerLag:  session.Seconds(time.Duration(200+(s*37)%900) * time.Microsecond),
			ServerPID: 4321, ServerRSS: uint64(40+s) << 20, ServerFDs: 20 + min(s*7, 35) + s/3,
		})
	}
	summary := &session.Summary{
		Scenario: "quotes", DurationS: 30, Clients: int64(n + 24), ActiveMax: 30, Events: messages,
		EventsPerS: float64(messages) / 30, Reconnects: 24, Errors: map[string]int64{errclass.ECONNRESET: 48},
		MemoryPeakBytes: 28 << 20, SessionFile: "idle.db",
	}
	_ = errs
	summary.SessionFile = filepath.Base(path)
	return writeSession(t, path, run, summary, recs)
}

// middleboxSession writes a direct run (no proxy, no capture) whose streams
// are reset after 60 s of silence by something on the path, and a few that
// fail at random ages: the verdict must say there is not enough evidence.
func middleboxSession(t testing.TB, dir, name string, shard string, offset int) string {
	run := session.RunInfo{
		Tool: "ssestress test", Command: "run", Args: []string{"--target", "https://quotes.example/stream", "--duration", "10m"},
		Scenario: "direct", Target: "https://quotes.example/stream", Shard: shard, Host: "fixture", PID: 77,
		StartedAt: t0, EndedAt: at(10 * time.Minute),
	}
	var recs []session.Record
	remote := "203.0.113.10:443"
	for i := range 30 {
		n := offset + i
		connID := fmt.Sprintf("c%04d", n)
		start := time.Duration(i) * 7 * time.Second
		busy := time.Duration(5+i%9) * time.Second
		idle := 60*time.Second + ms(20+(i*53)%400)
		class, msg := errclass.ECONNRESET, fmt.Sprintf("read tcp 10.0.0.5:%d->%s: read: connection reset by peer", 30000+n, remote)
		if i%6 == 5 {
			idle = time.Duration(1+i%4) * time.Second
			busy = time.Duration(20+i*3) * time.Second
			class, msg = errclass.HTTP(502), "HTTP status 502"
		}
		end := start + busy + idle
		recs = append(recs,
			session.ConnRecord{ClientID: connID, Scenario: "direct", Group: "AAPL", URL: run.Target,
				LocalAddr: fmt.Sprintf("10.0.0.5:%d", 30000+n), RemoteAddr: remote,
				Start: at(start), Connected: at(start + ms(30)), FirstByte: at(start + ms(90)), FirstEvent: at(start + ms(150+i*5)),
				End: at(end), Status: 200, Events: int64(4 + i%7), Comments: 0, MaxGap: session.Seconds(idle), EndClass: class, EndMessage: msg, ClosedBy: session.ClosedByPeer},
			session.ErrorRecord{Time: at(end), Source: "client", ClientID: connID, Scenario: "direct", Group: "AAPL", Hop: session.HopClient,
				Class: class, Message: msg, LocalAddr: fmt.Sprintf("10.0.0.5:%d", 30000+n), RemoteAddr: remote,
				Age: session.Seconds(busy + idle), Idle: session.Seconds(idle), Events: int64(4 + i%7)},
		)
	}
	for s := 0; s <= 10; s++ {
		recs = append(recs, session.Sample{
			Time: at(time.Duration(s) * time.Minute), Uptime: session.Seconds(time.Duration(s) * time.Minute), Active: int64(10 - s/2),
			Events: int64(s * 12), HeapAlloc: 5 << 20, RSS: uint64(20+s) << 20, Goroutines: 30, FDs: 20,
			TimerLag: session.Seconds(time.Duration(100+s*10) * time.Microsecond),
		})
	}
	return writeSession(t, filepath.Join(dir, name), run, nil, recs)
}

// captureSession writes a direct run with a packet capture: a NAT gateway
// on the path forges RSTs in the server's name once a stream was silent
// for 350 s or more (its RSTs arrive with TTL 63, the server's packets
// with 61), and the server itself resets a few streams at random ages
// (TTL 61). Only raw flows: the attribution is recomputed from them.
func captureSession(t testing.TB, dir string) string {
	run := session.RunInfo{
		Tool: "ssestress test", Command: "run", Args: []string{"--target", "http://10.1.2.3:8080/stream", "--capture", "--duration", "1h"},
		Scenario: "nat", Target: "http://10.1.2.3:8080/stream", Host: "fixture", PID: 99,
		StartedAt: t0, EndedAt: at(time.Hour),
	}
	server := "10.1.2.3:8080"
	recs := []session.Record{
		session.Endpoint{Role: session.RoleServer, Addr: server, URL: run.Target},
	}
	for i := range 16 {
		connID := fmt.Sprintf("c%04d", i)
		local := fmt.Sprintf("10.0.0.9:%d", 40000+i)
		start := time.Duration(i) * 90 * time.Second
		busy := time.Duration(10+i*7) * time.Second
		idle := 350*time.Second + time.Duration(i*37)*time.Second + ms(150+i*61%300)
		forged := i%4 != 3
		ttl := uint8(63)
		if !forged {
			idle, ttl = time.Duration(2+i)*time.Second, 61
		}
		end := start + busy + idle
		msg := fmt.Sprintf("read tcp %s->%s: read: connection reset by peer", local, server)
		lastData := at(end - idle)
		recs = append(recs,
			session.ConnRecord{ClientID: connID, Scenario: "nat", Group: "EURUSD", URL: run.Target, LocalAddr: local, RemoteAddr: server,
				Start: at(start), Connected: at(start + ms(2)), FirstByte: at(start + ms(9)), FirstEvent: at(start + ms(40)),
				End: at(end), Status: 200, Events: int64(30 + i), MaxGap: session.Seconds(idle), EndClass: errclass.ECONNRESET, EndMessage: msg, ClosedBy: session.ClosedByPeer},
			session.ErrorRecord{Time: at(end), Source: "client", ClientID: connID, Scenario: "nat", Group: "EURUSD", Hop: session.HopClient,
				Class: errclass.ECONNRESET, Message: msg, LocalAddr: local, RemoteAddr: server, Age: session.Seconds(busy + idle), Idle: session.Seconds(idle), Events: int64(30 + i)},
			session.Flow{Capture: "eth0", Dialer: local, Listener: server, First: at(start), Last: at(end - ms(1)), SYN: at(start), SYNACK: at(start + ms(1)),
				FromDialer:   session.FlowDirection{Packets: 12, Bytes: 200, ISN: uint32(1000 + i), TTLMin: 64, TTLMax: 64, LastData: at(start + ms(3))},
				FromListener: session.FlowDirection{Packets: int64(40 + i), Bytes: int64(4000 + i*100), ISN: uint32(9000 + i), TTLMin: 61, TTLMax: 61, LastData: lastData},
				RSTs: []session.RSTPacket{{Time: at(end - ms(1)), From: session.FromListener, TTL: ttl, HasAck: true, SeqKnown: true, InSequence: true,
					SenderLastData: lastData, ReceiverLastData: at(start + ms(3))}}},
		)
	}
	w, err := session.Create(filepath.Join(dir, "capture.db"), session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.PutMeta(session.MetaRun, run)
	w.Put(session.CaptureInfo{ID: "eth0", Iface: "eth0", Ports: []int{8080}, Started: t0, Stopped: at(time.Hour),
		Packets: 18234, KernelPackets: 18234, KernelDrops: 0, Flows: 16, RSTSegments: 16})
	for _, r := range recs {
		w.Put(r)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "capture.db")
}
