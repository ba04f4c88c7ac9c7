package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/limits"
	"github.com/ssestress/ssestress/internal/procstat"
	"github.com/ssestress/ssestress/internal/recording"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/proxy"
)

// Child roles: what a child process of the bench binary runs.
const (
	RoleRelay   = "relay"   // a minimal io.Copy TCP relay: --upstream HOST:PORT
	RoleProxy   = "proxy"   // the proxy: --upstream URL --out FILE [--fault SPEC]... [--record]
	RoleClients = "clients" // the client engine, holding the streams the "open" command asks for
)

// Usage is what a child reports about its own process: the CPU it used
// (user + system, getrusage), its resident memory and descriptors
// (/proc/self), its goroutines and Go allocations, and the counters of its
// role.
type Usage struct {
	PID        int           `json:"pid"`
	CPU        time.Duration `json:"cpu_ns"`
	RSS        uint64        `json:"rss"`
	FDs        int           `json:"fds"`
	Goroutines int           `json:"goroutines"`
	Mallocs    uint64        `json:"mallocs"`
	HeapInuse  uint64        `json:"heap_inuse"`
	StackInuse uint64        `json:"stack_inuse"`

	// Clients: streams with an open response, events and comments
	// received, failures.
	Active   int64 `json:"active,omitempty"`
	Messages int64 `json:"messages,omitempty"`
	Comments int64 `json:"comments,omitempty"`
	Errors   int64 `json:"errors,omitempty"`
	// Proxy: requests proxied, and the session writer's records.
	Streams   int64  `json:"streams,omitempty"`
	Committed uint64 `json:"committed,omitempty"`
	Dropped   uint64 `json:"dropped,omitempty"`
	// Frames counts the recorded frames (events, comments) committed to
	// the session file.
	Frames uint64 `json:"frames,omitempty"`

	Err string `json:"error,omitempty"`
}

// hello is a child's first line: where it listens, or why it could not start.
type hello struct {
	URL     string `json:"url,omitempty"`
	PID     int    `json:"pid"`
	FDLimit uint64 `json:"fd_limit"`
	Err     string `json:"error,omitempty"`
}

// role is a started child role.
type role struct {
	url   string
	fill  func(*Usage)                      // adds the role's counters
	cmd   func(op string, f []string) error // role-specific commands (clients: open, close)
	close func()
}

// Child runs a child role: it starts it, writes one JSON line (the URL it
// listens on, or an error), then answers each line read from in with one
// JSON line until in ends or says quit:
//
//	stat          Usage now
//	stat gc       Usage after a GC that returns freed memory to the OS
//	open URL N    (clients) open N more streams to URL, paced; answers at once
//	close         (clients) close every stream and wait for them
//	quit          stop and exit
//
// The parent reads the child's process from the inside this way, so the
// figures are the child's alone. A child whose stdin closes (the parent
// died) stops.
func Child(ctx context.Context, roleName string, args []string, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fdLimit, _ := limits.RaiseNoFile()
	enc := json.NewEncoder(out)
	r, err := startRole(ctx, roleName, args)
	if err != nil {
		enc.Encode(hello{PID: os.Getpid(), Err: err.Error()})
		return err
	}
	defer r.close()
	if err := enc.Encode(hello{URL: r.url, PID: os.Getpid(), FDLimit: fdLimit}); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var u Usage
		switch f[0] {
		case "quit":
			return nil
		case "stat":
			if len(f) > 1 && f[1] == "gc" {
				runtime.GC()
				debug.FreeOSMemory()
			}
		default:
			if r.cmd == nil {
				u.Err = fmt.Sprintf("unknown command %q", f[0])
			} else if err := r.cmd(f[0], f[1:]); err != nil {
				u.Err = err.Error()
			}
		}
		readSelf(&u)
		if r.fill != nil {
			r.fill(&u)
		}
		if err := enc.Encode(u); err != nil {
			return err
		}
	}
	return sc.Err()
}

// readSelf fills the process figures of u.
func readSelf(u *Usage) {
	u.PID = os.Getpid()
	u.CPU = processCPU()
	if st, err := procstat.Self(); err == nil {
		u.RSS, u.FDs = st.RSS, st.FDs
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	u.Goroutines = runtime.NumGoroutine()
	u.Mallocs, u.HeapInuse, u.StackInuse = ms.Mallocs, ms.HeapInuse, ms.StackInuse
}

// processCPU is the calling process's user + system CPU time.
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startRole(ctx context.Context, name string, args []string) (*role, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch name {
	case RoleRelay:
		upstream := fs.String("upstream", "", "HOST:PORT")
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return startRelay(*upstream)
	case RoleProxy:
		var faults multiFlag
		upstream := fs.String("upstream", "", "URL")
		out := fs.String("out", "", "session file")
		record := fs.Bool("record", false, "record the streams")
		fs.Var(&faults, "fault", "fault spec (repeatable)")
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return startProxy(ctx, *upstream, *out, *record, faults)
	case RoleClients:
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return startClients(ctx), nil
	}
	return nil, fmt.Errorf("unknown child role %q (roles: %s, %s, %s)", name, RoleRelay, RoleProxy, RoleClients)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// startRelay is the floor any proxy pays: accept, dial the upstream, and
// two io.Copy per connection (on Linux, TCPConn.ReadFrom splices).
func startRelay(upstream string) (*role, error) {
	if upstream == "" {
		return nil, errors.New("relay: --upstream HOST:PORT is required")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	track := func(c net.Conn, on bool) {
		mu.Lock()
		if on {
			conns[c] = struct{}{}
		} else {
			delete(conns, c)
		}
		mu.Unlock()
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				u, err := net.Dial("tcp", upstream)
				if err != nil {
					c.Close()
					return
				}
				track(c, true)
				track(u, true)
				go func() { io.Copy(u, c); u.Close() }()
				io.Copy(c, u)
				c.Close()
				track(c, false)
				track(u, false)
			}()
		}
	}()
	return &role{url: "http://" + ln.Addr().String(), close: func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}}, nil
}

// startProxy starts the proxy as ssestress proxy does: a session file for
// its records and, with record, a recorder writing the streams into it.
func startProxy(ctx context.Context, upstream, out string, record bool, faults []string) (*role, error) {
	if upstream == "" || out == "" {
		return nil, errors.New("proxy: --upstream URL and --out FILE are required")
	}
	cfg := proxy.Config{Listen: "127.0.0.1:0", Upstream: upstream, Name: "bench"}
	for _, text := range faults {
		spec, err := proxy.ParseFault(text)
		if err != nil {
			return nil, err
		}
		cfg.Faults = append(cfg.Faults, spec)
	}
	w, err := session.Create(out, session.Options{})
	if err != nil {
		return nil, err
	}
	w.PutMeta(session.MetaRun, session.RunInfo{Tool: "ssestress bench", Command: "proxy", Target: upstream, PID: os.Getpid(), StartedAt: time.Now()})
	cfg.Session = w
	if record {
		cfg.Recorder = recording.New(w, cfg.Name, recording.Options{})
	}
	p, err := proxy.Start(ctx, cfg)
	if err != nil {
		w.Close()
		return nil, err
	}
	return &role{
		url: p.URL(),
		fill: func(u *Usage) {
			u.Streams = p.Stats().Streams
			u.Committed, u.Dropped, u.Frames = w.Committed(), w.Dropped(), w.CommittedFrames()
		},
		close: func() { p.Close(); w.Close() },
	}, nil
}

// openRate paces the client role's connects, so that a listen backlog is
// never flooded (a dropped SYN costs a second).
const openRate = 2000 // streams per second

// startClients is the client engine holding streams on command.
func startClients(ctx context.Context) *role {
	counters := &clients.Counters{}
	opts := &clients.Options{Counters: counters, UserAgent: "ssestress-bench"}
	var (
		mu   sync.Mutex // guards sctx, cancel and next
		wg   sync.WaitGroup
		next int
	)
	sctx, cancel := context.WithCancel(ctx)
	closeAll := func() {
		mu.Lock()
		cancel()
		mu.Unlock()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		mu.Lock()
		sctx, cancel = context.WithCancel(ctx)
		mu.Unlock()
	}
	return &role{
		fill: func(u *Usage) {
			u.Active, u.Messages, u.Comments, u.Errors = counters.Active.Load(), counters.Events.Load(), counters.Comments.Load(), counters.ErrorTotal()
		},
		cmd: func(op string, f []string) error {
			switch op {
			case "open":
				if len(f) != 2 {
					return errors.New("open URL N")
				}
				target, err := url.Parse(f[0])
				if err != nil {
					return err
				}
				n, err := strconv.Atoi(f[1])
				if err != nil || n < 0 {
					return fmt.Errorf("open: bad count %q", f[1])
				}
				mu.Lock()
				runCtx, first := sctx, next
				next += n
				mu.Unlock()
				wg.Add(n)
				go func() {
					start := time.Now()
					for i := 0; i < n; i++ {
						s := clients.NewStream(clients.ClientID(first+i), "", target, opts)
						go func() { defer wg.Done(); s.Run(runCtx) }()
						if d := time.Until(start.Add(time.Duration(i+1) * time.Second / openRate)); d > 0 {
							time.Sleep(d)
						}
					}
				}()
				return nil
			case "close":
				closeAll()
				return nil
			}
			return fmt.Errorf("unknown command %q", op)
		},
		close: closeAll,
	}
}
