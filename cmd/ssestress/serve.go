package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"time"

	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/feed"
	"github.com/ssestress/ssestress/internal/listenaddr"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// serveOptions are the flags of ssestress serve.
type serveOptions struct {
	listen    string
	rate      string
	heartbeat time.Duration
	retry     time.Duration
	history   int
	expiry    time.Duration
	tls       tlsutil.ServerOptions
}

var serveCmd = &command{
	name:     "serve",
	summary:  "run the embedded SSE quote feed",
	synopsis: "serve [--listen ADDR] [--event-rate N|MIN-MAX] [--heartbeat D] [--tls-self-signed [--tls-cert-out FILE] | --tls-cert FILE --tls-key FILE]",
	examples: `  ssestress serve --listen 127.0.0.1:8090
  ssestress serve --event-rate 100-1000 --heartbeat 5s
  ssestress serve --event-rate 0 --heartbeat 20s        # heartbeats only: test idle timeouts
  curl -N 'http://127.0.0.1:8090/stream?symbols=AAPL,MSFT'
  ssestress serve --listen 127.0.0.1:8443 --tls-self-signed --tls-cert-out feed-cert.pem
  ssestress tail --ca feed-cert.pem --http2 'https://127.0.0.1:8443/stream?symbols=AAPL'
  ssestress serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem`,
	setup: func(fs *flagSet) action {
		var o serveOptions
		fs.StringVar(&o.listen, "listen", feed.DefaultListen, "`ADDR` to listen on (loopback by default)")
		fs.StringVar(&o.rate, "event-rate", "600", "`RATE` of SSE events per minute per symbol group: N or MIN-MAX; 0 sends heartbeats only")
		fs.deprecated("message-rate", "event-rate", "SSE events, not messages")
		fs.DurationVar(&o.heartbeat, "heartbeat", 15*time.Second, "interval of comment heartbeats (0 disables)")
		fs.DurationVar(&o.retry, "retry", 3*time.Second, "reconnection time advertised with retry: (0 sends none)")
		fs.IntVar(&o.history, "history", 10000, "events kept per symbol group for Last-Event-ID resumption")
		fs.DurationVar(&o.expiry, "group-expiry", feed.DefaultGroupExpiry, "how long a symbol group without subscribers (and its history) is kept; its generator stops at once")
		fs.StringVar(&o.tls.CertFile, "tls-cert", "", "serve https with this PEM certificate `FILE` (with --tls-key); HTTP/2 is offered too")
		fs.StringVar(&o.tls.KeyFile, "tls-key", "", "PEM private key `FILE` of --tls-cert")
		fs.BoolVar(&o.tls.SelfSigned, "tls-self-signed", false, "serve https with a certificate generated at start for 127.0.0.1, ::1 and localhost")
		fs.StringVar(&o.tls.CertOut, "tls-cert-out", "", "write the generated certificate to `FILE`, for clients' --ca (an existing file only with --force)")
		fs.BoolVar(&o.tls.CertOutForce, "force", false, fmt.Sprintf(forceUsage, "--tls-cert-out"))
		fs.values(files(), "tls-cert", "tls-key", "tls-cert-out")
		return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
			return o.run(ctx, stdout)
		}
	},
}

func (o *serveOptions) run(ctx context.Context, stdout io.Writer) error {
	if o.tls.CertOut != "" && !o.tls.SelfSigned {
		return usageErrorf("serve: --tls-cert-out writes the certificate --tls-self-signed generates")
	}
	if err := checkOutput("serve", "--tls-cert-out", o.tls.CertOut, o.tls.CertOutForce); err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if o.tls.Enabled() {
		var err error
		tlsConfig, _, err = tlsutil.ServerConfig(o.tls)
		if err != nil {
			return usageErrorf("serve: %v", serverTLSFlags.explain(err))
		}
	}
	rate, err := feed.ParseRate(o.rate)
	if err != nil {
		return usageErrorf("serve: --event-rate: %v", err)
	}
	if o.history <= 0 {
		return usageErrorf("serve: --history must be positive")
	}
	if o.expiry <= 0 {
		return usageErrorf("serve: --group-expiry must be positive")
	}
	cfg := feed.Config{Rate: rate, Heartbeat: negIfZero(o.heartbeat), Retry: negIfZero(o.retry), History: o.history, GroupExpiry: o.expiry}
	o.listen = listenaddr.Loopback(o.listen, feed.DefaultListen) // a bare port is loopback
	srv, err := feed.StartTLS(o.listen, cfg, tlsConfig)
	if err != nil {
		return badValue("serve: --listen "+o.listen, err)
	}
	fmt.Fprintf(stdout, "serving SSE quote feed on %s/stream?symbols=AAPL,MSFT (%s events/min per group, heartbeat %s)\n",
		srv.URL, rate, dur.Format(o.heartbeat))
	if o.tls.CertOut != "" {
		fmt.Fprintf(stdout, "certificate written to %s (clients: --ca %s)\n", o.tls.CertOut, o.tls.CertOut)
	}
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
