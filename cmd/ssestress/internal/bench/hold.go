package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ssestress/ssestress/internal/limits"
)

// Targets of the conns row (issue 7).
const (
	targetClientStreams  = 15000
	targetClientKiB      = 24
	targetProxyStreams   = 9000
	targetProxyIdleKiB   = 32
	targetProxyTrafficKB = 64
)

// fdReserve is what internal/limits keeps free per process for files,
// listeners and the runtime.
const fdReserve = 64

// capacity is how many connections of perConn descriptors fit in limit.
func capacity(limit uint64, perConn int) int {
	if limit <= fdReserve {
		return 0
	}
	return int(limit-fdReserve) / perConn
}

// waitStreams polls the clients child until n streams are open and each
// has seen two heartbeats since.
func waitStreams(ctx context.Context, c *childProc, n int) (Usage, error) {
	limit := time.Duration(n)*time.Second/openRate + 90*time.Second
	deadline := time.Now().Add(limit)
	var u Usage
	var err error
	for {
		if u, err = c.stat(); err != nil {
			return u, err
		}
		if u.Active >= int64(n) {
			break
		}
		if time.Now().After(deadline) {
			return u, fmt.Errorf("only %d of %d streams open after %v (%d errors)", u.Active, n, limit, u.Errors)
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return u, ctx.Err()
		}
	}
	// Heartbeats flowing: two more per stream.
	want := u.Comments + 2*int64(n)
	hbDeadline := time.Now().Add(30 * time.Second)
	for u.Comments < want && time.Now().Before(hbDeadline) {
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return u, ctx.Err()
		}
		if u, err = c.stat(); err != nil {
			return u, err
		}
	}
	if u.Comments < want {
		return u, fmt.Errorf("heartbeats not flowing: %d of %d comments", u.Comments, want)
	}
	return u, nil
}

// runConns is row 2: how many streams one client process and one proxy
// process hold, and the memory and goroutines each stream costs.
func runConns(ctx context.Context, s *suite) error {
	if s.cfg.Spawn == nil {
		s.skip(RowConns, "held streams", errNoSpawn.Error())
		return nil
	}
	asked := s.cfg.HoldStreams
	// The bench process holds the server side of every stream.
	parentLimit, err := limits.RaiseNoFile()
	if err != nil {
		return err
	}
	srv, err := startHoldServer()
	if err != nil {
		return err
	}
	defer srv.close()

	s.holdClients(ctx, srv, asked, parentLimit)
	srv.dropAll()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.holdProxy(ctx, srv, asked, parentLimit)
	return ctx.Err()
}

// limitNote says why n streams were held instead of asked.
func limitNote(asked, n int, who string, limit uint64, perConn int) string {
	if n >= asked {
		return ""
	}
	return fmt.Sprintf("asked for %s; %s can hold %s: its file descriptor limit is %d (the hard limit) and each stream takes %d descriptor(s) there, plus %d kept free (raise the hard limit, ulimit -Hn or systemd LimitNOFILE, or spread the load with --shard)",
		fmtCount(float64(asked)), who, fmtCount(float64(n)), limit, perConn, fdReserve)
}

func (s *suite) holdClients(ctx context.Context, srv *holdServer, asked int, parentLimit uint64) {
	c, err := s.startChild(ctx, RoleClients)
	if err != nil {
		s.skip(RowConns, "client streams held", oneLine(err.Error()))
		return
	}
	defer c.stop()
	n, note := asked, ""
	if capN := capacity(c.hello.FDLimit, 1); capN < n {
		n, note = capN, limitNote(asked, capN, "one client process", c.hello.FDLimit, 1)
	}
	if capN := capacity(parentLimit, 1); capN < n {
		n, note = capN, limitNote(asked, capN, "the bench process (the server side)", parentLimit, 1)
	}
	s.logf("conns: client engine holding %d streams", n)
	u0, err := c.statGC()
	if err == nil {
		_, err = c.do("open " + srv.URL + "/stream " + strconv.Itoa(n))
	}
	var u1 Usage
	if err == nil {
		u1, err = waitStreams(ctx, c, n)
	}
	if err == nil {
		u1, err = c.statGC()
	}
	if err != nil {
		s.skip(RowConns, "client streams held", oneLine(err.Error()))
		return
	}
	c.do("close")

	held := Figure{Row: RowConns, Name: "client streams held, one process", Value: float64(n), Text: fmtCount(float64(n)),
		Target: "15,000 with heartbeats flowing"}
	s.judgeHeld(&held, asked, n, targetClientStreams, note)
	s.add(held)
	rss := float64(int64(u1.RSS)-int64(u0.RSS)) / float64(n)
	f := Figure{Row: RowConns, Name: "client RSS per stream", Value: rss / 1024, Unit: "KiB", Text: fmtKiB(rss),
		Versus: "target 24 KiB", Ratio: rss / 1024 / targetClientKiB, Target: "≤ 24 KiB",
		Note: fmt.Sprintf("process RSS after a GC, holding %s streams, minus before (fixed costs are spread over the streams: fewer streams read higher); Go heap + stacks %s per stream (issue's references: goroutine+bufio client 20 KiB, net/http 38 KiB, Node eventsource 68 KiB)",
			fmtCount(float64(n)), fmtKiB(float64(int64(u1.HeapInuse+u1.StackInuse)-int64(u0.HeapInuse+u0.StackInuse))/float64(n)))}
	f.atMost(rss/1024, targetClientKiB, " KiB")
	s.add(f)
	s.add(Figure{Row: RowConns, Name: "client goroutines per stream", Value: float64(u1.Goroutines-u0.Goroutines) / float64(n),
		Text: fmtNum(float64(u1.Goroutines-u0.Goroutines) / float64(n))})
}

// judgeHeld marks a held-streams line: met only when the run asked for
// at least the target and held all of it.
func (s *suite) judgeHeld(f *Figure, asked, n, target int, note string) {
	switch {
	case n >= target:
		f.Status = Met
	case asked < target:
		f.Status = Untried
		f.Note = fmt.Sprintf("this run asked for %s (try the target with --only conns --streams %d)", fmtCount(float64(asked)), target)
	default:
		f.Status = Short
		f.Shortfall = "short by " + fmtCount(float64(target-n))
		f.Note = note
	}
	if note != "" && f.Status != Short {
		f.Note = note
	}
}

func (s *suite) holdProxy(ctx context.Context, srv *holdServer, asked int, parentLimit uint64) {
	out := s.tempPath("ssestress-bench-hold-*.db")
	p, err := s.startChild(ctx, RoleProxy, "--upstream", srv.URL, "--out", out)
	if err != nil {
		s.skip(RowConns, "proxied streams held", oneLine(err.Error()))
		return
	}
	defer func() { p.stop(); os.Remove(out) }()
	c, err := s.startChild(ctx, RoleClients)
	if err != nil {
		s.skip(RowConns, "proxied streams held", oneLine(err.Error()))
		return
	}
	defer c.stop()
	n, note := asked, ""
	if capN := capacity(p.hello.FDLimit, 2); capN < n {
		n, note = capN, limitNote(asked, capN, "one proxy process", p.hello.FDLimit, 2)
	}
	if capN := capacity(c.hello.FDLimit, 1); capN < n {
		n, note = capN, limitNote(asked, capN, "the client process", c.hello.FDLimit, 1)
	}
	if capN := capacity(parentLimit, 1); capN < n {
		n, note = capN, limitNote(asked, capN, "the bench process (the server side)", parentLimit, 1)
	}
	s.logf("conns: proxy holding %d streams", n)
	p0, err := p.statGC()
	if err == nil {
		_, err = c.do("open " + p.hello.URL + "/stream " + strconv.Itoa(n))
	}
	if err == nil {
		_, err = waitStreams(ctx, c, n)
	}
	var p1, p2 Usage
	if err == nil {
		p1, err = p.statGC()
	}
	// Under traffic: events spread over every stream at up to 20,000/s in
	// all, measured while they flow.
	rate := min(20*n, 20000)
	var c0, c1 Usage
	if err == nil {
		c0, err = c.stat()
	}
	if err == nil {
		srv.traffic.Store(int64(rate))
		if !sleepCtx(ctx, 3*time.Second) {
			err = ctx.Err()
		}
	}
	if err == nil {
		p2, err = p.statGC()
	}
	srv.traffic.Store(0)
	if err == nil {
		c1, err = c.stat()
	}
	if err != nil {
		s.skip(RowConns, "proxied streams held", oneLine(err.Error()))
		return
	}
	c.do("close")

	held := Figure{Row: RowConns, Name: "proxied streams held, one process", Value: float64(n), Text: fmtCount(float64(n)),
		Target: "9,000 (two sockets each)"}
	s.judgeHeld(&held, asked, n, targetProxyStreams, note)
	if c1.Errors > 0 {
		held.Note += fmt.Sprintf("; %d client errors", c1.Errors)
	}
	s.add(held)
	idle := float64(int64(p1.RSS)-int64(p0.RSS)) / float64(n)
	f := Figure{Row: RowConns, Name: "proxy RSS per idle stream", Value: idle / 1024, Unit: "KiB", Text: fmtKiB(idle),
		Versus: "target 32 KiB", Ratio: idle / 1024 / targetProxyIdleKiB, Target: "≤ 32 KiB",
		Note: fmt.Sprintf("heartbeat every second; Go heap + stacks %s per stream (issue's references: raw relay 16-21 KiB, Toxiproxy 44 KiB idle, about 140 KiB under traffic)",
			fmtKiB(float64(int64(p1.HeapInuse+p1.StackInuse)-int64(p0.HeapInuse+p0.StackInuse))/float64(n)))}
	f.atMost(idle/1024, targetProxyIdleKiB, " KiB")
	s.add(f)
	busy := float64(int64(p2.RSS)-int64(p0.RSS)) / float64(n)
	f = Figure{Row: RowConns, Name: "proxy RSS per stream under traffic", Value: busy / 1024, Unit: "KiB", Text: fmtKiB(busy),
		Versus: "target 64 KiB", Ratio: busy / 1024 / targetProxyTrafficKB, Target: "≤ 64 KiB",
		Note: fmt.Sprintf("%s events/s offered over the %s streams, measured while flowing (the clients received %s events in those 3 s)",
			fmtCount(float64(rate)), fmtCount(float64(n)), fmtCount(float64(c1.Messages-c0.Messages)))}
	f.atMost(busy/1024, targetProxyTrafficKB, " KiB")
	s.add(f)
	g := float64(p1.Goroutines-p0.Goroutines) / float64(n)
	f = Figure{Row: RowConns, Name: "proxy goroutines per idle stream", Value: g, Text: fmtNum(g), Target: "≤ 2",
		Note: "the connection's goroutine (the copy loop) and the watcher of the client socket"}
	f.atMost(g, 2, "")
	s.add(f)
}
