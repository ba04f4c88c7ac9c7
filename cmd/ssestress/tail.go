package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ssestress/ssestress/clients"
	"github.com/ssestress/ssestress/internal/dur"
	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/session"
	"github.com/ssestress/ssestress/internal/sse"
)

// tailOptions are the flags of ssestress tail.
type tailOptions struct {
	warn             func() // prints the command line's secret warnings (once it is checked)
	url              string
	json             bool
	count            int
	req              requestFlags
	retryOnHTTPError bool
	lastEventID      string
}

const tailSynopsis = "tail URL [--json] [--count N] [--header 'Name: value'] [--token-env VAR] [--ca FILE | --insecure] [--http2]"

const tailExamples = `  ssestress tail 'http://127.0.0.1:8090/stream?symbols=AAPL,MSFT'
  ssestress tail --json --count 5 'http://127.0.0.1:8090/stream?symbols=AAPL'
  ssestress tail --header 'Authorization: Bearer xyz' https://feed.example/stream
  ssestress tail --token-file ~/.feed-token --cookie 'region=eu' --http2 'https://feed.example/stream?symbols=AAPL'
  ssestress tail --ca feed-cert.pem 'https://127.0.0.1:8443/stream?symbols=AAPL'

With --json, one object per line:
  {"type":"event","id":"41","event":"quote","data":"{...}","time":"2025-01-02T15:04:05.123456789Z"}
  {"type":"retry","retry_s":3}
  {"type":"error","class":"ECONNRESET","message":"read tcp ...: connection reset by peer"}
  {"type":"reconnect","attempt":1,"delay_s":3,"last_event_id":"41"}`

// The JSON lines of tail --json. Field order is the order printed.
type (
	tailEvent struct {
		Type  string `json:"type"` // "event"
		ID    string `json:"id"`   // the last event ID at dispatch
		Event string `json:"event"`
		Data  string `json:"data"`
		Time  string `json:"time"` // receive time, RFC 3339 with nanoseconds
	}
	tailError struct {
		Type    string `json:"type"` // "error"
		Class   string `json:"class"`
		Message string `json:"message"`
	}
	tailRetry struct {
		Type  string          `json:"type"` // "retry"
		Retry session.Seconds `json:"retry_s"`
	}
	tailReconnect struct {
		Type        string          `json:"type"`    // "reconnect"
		Attempt     int             `json:"attempt"` // 1 for the first reconnect
		Delay       session.Seconds `json:"delay_s"`
		LastEventID string          `json:"last_event_id"` // sent as Last-Event-ID ("" sends none)
	}
)

var tailCmd = &command{
	name:     "tail",
	summary:  "print the events of one SSE stream as they arrive (like curl -N, but parsed)",
	synopsis: tailSynopsis,
	examples: tailExamples,
	args:     argSpec{name: "URL", min: 1, max: 1},
	setup: func(fs *flagSet) action {
		var o tailOptions
		fs.BoolVar(&o.json, "json", false, "print one JSON object per line")
		fs.IntVar(&o.count, "count", 0, "exit after `N` events (0: until interrupted)")
		o.req.register(fs)
		fs.BoolVar(&o.retryOnHTTPError, "retry-on-http-error", false, "reconnect after a non-200 status or wrong Content-Type (browsers give up)")
		fs.StringVar(&o.lastEventID, "last-event-id", "", "send this Last-Event-`ID` on the first request too (resume a stream)")
		return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			o.url = args[0]
			o.warn = func() { warnSecrets(fs, stderr) }
			return o.run(ctx, stdout)
		}
	},
}

// run is ssestress tail: one EventSource-correct client printing every
// event, retry field, error and reconnect.
func (o *tailOptions) run(ctx context.Context, stdout io.Writer) error {
	if o.count < 0 {
		return usageErrorf("tail: --count must not be negative")
	}
	u, err := clients.ParseTarget(o.url)
	if err != nil {
		return usageErrorf("tail: %v", err)
	}
	setup, err := o.req.build()
	if err != nil {
		return usageErrorf("tail: %v", err)
	}
	defer setup.close()
	if o.warn != nil {
		o.warn()
	}
	if err := setup.probe(ctx, "", o.url); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &tailPrinter{w: stdout, json: o.json}
	events := 0
	opts := &clients.Options{
		Transport: setup.transport, Header: setup.header, Redact: setup.redact,
		UserAgent: "ssestress/" + version, RetryOnHTTPError: o.retryOnHTTPError,
		OnFrame: func(_ *clients.Stream, f *sse.Frame, at time.Time) {
			if o.count > 0 && events >= o.count {
				return
			}
			switch f.Kind {
			case sse.KindEvent:
				events++
				p.event(f, at)
				if o.count > 0 && events >= o.count {
					cancel()
				}
			case sse.KindRetry:
				p.retry(f.Retry)
			}
		},
		OnError: func(_ *clients.Stream, rec *session.ErrorRecord) {
			if ctx.Err() == nil {
				p.error(rec.Class, rec.Message)
			}
		},
		OnReconnect: func(s *clients.Stream, attempt int, delay time.Duration) {
			p.reconnect(attempt, delay, s.LastEventID())
		},
	}
	s := clients.NewStream("tail", "", u, opts)
	if o.lastEventID != "" {
		s.SetLastEventID(o.lastEventID)
	}
	if err := s.Run(ctx); err != nil {
		return fmt.Errorf("stream failed: %s (%s)", setup.redact(err.Error()), errclass.Classify(err))
	}
	return p.err
}

// tailPrinter writes tail's lines, as JSON or as text.
type tailPrinter struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	err  error // first write error (stdout closed)
}

func (p *tailPrinter) emit(v any, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if p.json {
		err = json.NewEncoder(p.w).Encode(v)
	} else {
		_, err = io.WriteString(p.w, text+"\n")
	}
	if err != nil && p.err == nil {
		p.err = err
	}
}

func (p *tailPrinter) event(f *sse.Frame, at time.Time) {
	data := string(f.Data)
	text := ""
	if !p.json {
		id := ""
		if f.ID != "" {
			id = " id=" + f.ID
		}
		text = fmt.Sprintf("%s %s%s: %s", at.Format("15:04:05.000"), f.Type, id,
			strings.ReplaceAll(data, "\n", "\n    "))
	}
	p.emit(tailEvent{Type: "event", ID: f.ID, Event: f.Type, Data: data, Time: at.UTC().Format(time.RFC3339Nano)}, text)
}

func (p *tailPrinter) retry(d time.Duration) {
	p.emit(tailRetry{Type: "retry", Retry: session.Seconds(d)},
		fmt.Sprintf("%s retry %s", time.Now().Format("15:04:05.000"), dur.Format(d)))
}

func (p *tailPrinter) error(class, msg string) {
	p.emit(tailError{Type: "error", Class: class, Message: msg},
		fmt.Sprintf("%s error %s: %s", time.Now().Format("15:04:05.000"), class, msg))
}

func (p *tailPrinter) reconnect(attempt int, delay time.Duration, lastID string) {
	text := fmt.Sprintf("%s reconnect #%d after %s", time.Now().Format("15:04:05.000"), attempt, dur.Format(delay))
	if lastID != "" {
		text += " with Last-Event-ID " + lastID
	}
	p.emit(tailReconnect{Type: "reconnect", Attempt: attempt, Delay: session.Seconds(delay), LastEventID: lastID}, text)
}
