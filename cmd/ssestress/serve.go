package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ssestress/ssestress/internal/feed"
)

// serveOptions are the flags of ssestress serve.
type serveOptions struct {
	listen    string
	rate      string
	heartbeat time.Duration
	retry     time.Duration
	history   int
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o serveOptions
	fs := newFlags("serve")
	fs.StringVar(&o.listen, "listen", feed.DefaultListen, "address to listen on (loopback by default)")
	fs.StringVar(&o.rate, "message-rate", "600", "messages per minute per symbol group: N or MIN-MAX")
	fs.DurationVar(&o.heartbeat, "heartbeat", 15*time.Second, "interval of comment heartbeats (0 disables)")
	fs.DurationVar(&o.retry, "retry", 3*time.Second, "reconnection time advertised with retry: (0 sends none)")
	fs.IntVar(&o.history, "history", 10000, "events kept per symbol group for Last-Event-ID resumption")
	err := parseFlags(fs, args, stdout, "serve [--listen ADDR] [--message-rate N|MIN-MAX] [--heartbeat D]",
		`  ssestress serve --listen 127.0.0.1:8090
  ssestress serve --message-rate 100-1000 --heartbeat 5s
  curl -N 'http://127.0.0.1:8090/stream?symbols=AAPL,MSFT'`)
	if err != nil {
		return err
	}
	rate, err := feed.ParseRate(o.rate)
	if err != nil {
		return usageErrorf("serve: --message-rate: %v", err)
	}
	if o.history <= 0 {
		return usageErrorf("serve: --history must be positive")
	}
	cfg := feed.Config{Rate: rate, Heartbeat: negIfZero(o.heartbeat), Retry: negIfZero(o.retry), History: o.history}
	srv, err := feed.Start(o.listen, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "serving SSE quote feed on %s/stream?symbols=AAPL,MSFT (%s msg/min per group, heartbeat %s)\n",
		srv.URL, rate, o.heartbeat)
	<-ctx.Done()
	srv.Shutdown()
	st := srv.Stats()
	fmt.Fprintf(stdout, "stopped: %d streams served, %d events sent\n", st.Opened, st.Sent)
	return nil
}

// negIfZero maps a flag's "0 disables" onto a Config's "negative disables".
func negIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
