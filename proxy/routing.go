package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/ssestress/ssestress/internal/errclass"
	"github.com/ssestress/ssestress/internal/sse"
)

// goproxy's hooks: every request it routes goes upstream through the
// proxy's own round trip (upstream.go), and every response it gets back
// is recorded and, when streamed, given a streamBody (body.go).

// onRequest is goproxy's request handler: every request goes upstream
// through roundTrip, which bounds the wait for the response headers.
func (p *Proxy) onRequest(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	if st := streamFrom(r.Context()); st != nil {
		ctx.RoundTripper = goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
			return p.roundTrip(req, st)
		})
	}
	return r, nil
}

// onResponse is goproxy's response handler: it answers 502 (504 for a
// header timeout) for an upstream that failed before responding, records
// the status, and puts a streamBody in place of the body.
func (p *Proxy) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	st := streamFrom(ctx.Req.Context())
	if st == nil {
		return resp
	}
	now := time.Now()
	if resp == nil {
		st.abortIfAsked()
		err := ctx.Error
		if err == nil {
			err = errors.New("no response")
		}
		code := http.StatusBadGateway
		var hte *headerTimeoutError
		if errors.As(err, &hte) {
			code = http.StatusGatewayTimeout
		}
		class := errclass.Classify(err)
		if !st.cut.Load() && st.ctx.Err() == nil {
			st.setClientClass(errclass.HTTP(code))
			if up := st.upstream.Load(); up != nil {
				up.setClass(class)
			}
			p.logf("%s: upstream %s: %v (%s): answered %d", st.client.connID, ctx.Req.URL.Host, err, class, code)
		}
		st.client.setStatus(code)
		body := fmt.Sprintf("ssestress proxy %s: upstream failed (%s): %v\n", p.name, class, err)
		r := &http.Response{
			StatusCode: code, Status: strconv.Itoa(code) + " " + http.StatusText(code),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			Body:          io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: ctx.Req,
		}
		st.rec.Response(r.StatusCode, r.Header, now)
		return r
	}
	st.client.setStatus(resp.StatusCode)
	if up := st.upstream.Load(); up != nil {
		up.setStatus(resp.StatusCode)
	}
	st.rec.Response(resp.StatusCode, resp.Header, now)
	if resp.Header.Get(FaultHeader) != "" {
		return resp // made up by an http-status fault
	}
	isSSE := strings.HasPrefix(strings.ToLower(resp.Header.Get("Content-Type")), "text/event-stream")
	if resp.Body != nil && resp.Body != http.NoBody && (isSSE || resp.ContentLength < 0) {
		sb := &streamBody{st: st, body: resp.Body, isSSE: isSSE, split: sse.Splitter{EventsOnly: true}}
		if isSSE && st.rec != nil {
			sb.split, sb.shared = st.rec.Splitter(), true
		}
		resp.Body = sb
	}
	return resp
}
