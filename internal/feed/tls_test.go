package feed

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/ssestress/ssestress/internal/sse"
	"github.com/ssestress/ssestress/internal/tlsutil"
)

// TestStartTLSSpeaksH2AndHTTP1: with TLS the feed is https, chooses h2 for
// a client that offers it and HTTP/1.1 for one that does not, and streams
// events over both; without TLS it still answers h2c with prior knowledge.
func TestStartTLSSpeaksH2AndHTTP1(t *testing.T) {
	srvCfg, certPEM, err := tlsutil.ServerConfig(tlsutil.ServerOptions{SelfSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := StartTLS("127.0.0.1:0", Config{Rate: Rate{6000, 6000}}, srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s", srv.URL)
	}
	plain := startFeed(t, Config{Rate: Rate{6000, 6000}})
	pool, err := tlsutil.PoolOf(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	h2 := &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	h2c := &http.Client{Transport: &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}}
	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		proto  int
	}{{"HTTP/1.1 over TLS", h1, srv.URL, 1}, {"h2 over TLS", h2, srv.URL, 2}, {"h2c", h2c, plain.URL, 2}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", tc.url+"/stream?symbols=AAPL", nil)
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.ProtoMajor != tc.proto || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%s: %s, %q", tc.name, resp.Proto, resp.Header.Get("Content-Type"))
		}
		if f := nextEvent(t, sse.NewDecoder(resp.Body, 0)); f.Type != "quote" || f.ID == "" {
			t.Fatalf("%s: event %+v", tc.name, f)
		}
		resp.Body.Close()
		cancel()
	}
}
