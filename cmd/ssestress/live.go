package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ssestress/ssestress/analysis"
	"github.com/ssestress/ssestress/internal/listenaddr"
	"github.com/ssestress/ssestress/internal/metrics"
	"github.com/ssestress/ssestress/internal/session"
)

// The live view of a long-lived command (--http ADDR of run, replay run,
// proxy, replay serve): Prometheus /metrics, the current report at
// /report, and for the producers a page at / that updates itself from the
// tool's own SSE endpoint /live/events (livefeed.go, livepage.html).

// liveConfig configures a live view.
type liveConfig struct {
	// addr is the --http value: "127.0.0.1:9090", ":9090" or "9090"
	// (a missing host means loopback), "127.0.0.1:0" for any free port.
	addr string
	// registry is what /metrics serves.
	registry *metrics.Registry
	// source feeds the page and /live/events; nil leaves both out (the
	// index at / is then a list of the endpoints).
	source *liveSource
	// report writes the current report in format (one of analysis.Formats);
	// nil leaves /report out.
	report func(w io.Writer, format string) error
	// verdict computes the verdict so far from the session file; nil: the
	// page shows none.
	verdict func() (analysis.Verdict, error)
	// interval is the monitor interval: the verdict is recomputed at most
	// this often (and more rarely when it is costly, see verdictCache).
	interval time.Duration
	// session is the file being written: a hint beside it names the live
	// view, so that report on the file in use points here.
	session string
}

// liveView is a running live view.
type liveView struct {
	URL        string // http://127.0.0.1:9090
	srv        *http.Server
	done       chan struct{}
	removeHint func()
	feed       *liveFeed // nil without a source
}

// liveListenAddr reads an --http value; a missing host is loopback
// (listenaddr.Loopback), so a live view is never exposed to the network by
// accident.
func liveListenAddr(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", errors.New("--http: empty address")
	}
	addr := listenaddr.Loopback(s, "")
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return "", fmt.Errorf("--http %q: use HOST:PORT, e.g. 127.0.0.1:9090", s)
	}
	return addr, nil
}

// reportContentTypes are the media types of the report formats.
var reportContentTypes = map[string]string{
	"json": "application/json",
	"html": "text/html; charset=utf-8",
	"csv":  "text/csv; charset=utf-8",
}

// startLiveView listens and serves /metrics, /report, and the page with
// its /live/events (or an index) at /.
func startLiveView(cfg liveConfig) (*liveView, error) {
	addr, err := liveListenAddr(cfg.addr)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, badValue("--http", err) // a bad value like any other: exit 2
	}
	lv := &liveView{URL: "http://" + ln.Addr().String(), done: make(chan struct{}), removeHint: func() {}}
	mux := http.NewServeMux()
	if cfg.registry == nil {
		cfg.registry = metrics.New(metrics.Options{Version: version})
	}
	mux.Handle("GET /metrics", cfg.registry.Handler())
	if cfg.report != nil {
		var one sync.Mutex // a report reads the whole file: one at a time
		mux.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) {
			format := r.URL.Query().Get("format")
			if format == "" {
				format = "table"
			}
			if !slices.Contains(analysis.Formats(), format) {
				http.Error(w, fmt.Sprintf("unknown format %q (use %s)", format, strings.Join(analysis.Formats(), ", ")), http.StatusBadRequest)
				return
			}
			one.Lock()
			var buf bytes.Buffer
			err := cfg.report(&buf, format)
			one.Unlock()
			if err != nil {
				http.Error(w, "report: "+err.Error(), http.StatusInternalServerError)
				return
			}
			ct, ok := reportContentTypes[format]
			if !ok {
				ct = "text/plain; charset=utf-8"
			}
			w.Header().Set("Content-Type", ct)
			w.Header().Set("Cache-Control", "no-store")
			w.Write(buf.Bytes())
		})
	}
	if cfg.source != nil {
		lv.feed = newLiveFeed(cfg.source, cfg.verdict, cfg.interval)
		mux.HandleFunc("GET /live/events", lv.feed.serveEvents)
		mux.HandleFunc("GET /{$}", serveLivePage)
	} else {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "ssestress live view")
			fmt.Fprintln(w, "  /metrics   Prometheus text format")
			if cfg.report != nil {
				fmt.Fprintf(w, "  /report    the current report (?format=%s)\n", strings.Join(analysis.Formats(), "|"))
			}
		})
	}
	lv.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(lv.done)
		lv.srv.Serve(ln)
	}()
	if cfg.session != "" {
		remove, err := session.WriteLiveURL(cfg.session, lv.URL)
		if err == nil {
			lv.removeHint = remove
		}
	}
	return lv, nil
}

// close removes the hint, ends the pages' event streams (they are told
// the run ended) and stops the server, letting a scrape in progress finish
// (at most two seconds).
func (l *liveView) close() {
	if l == nil {
		return
	}
	l.removeHint()
	l.feed.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if l.srv.Shutdown(ctx) != nil {
		l.srv.Close()
	}
	<-l.done
	l.feed.wait()
}
